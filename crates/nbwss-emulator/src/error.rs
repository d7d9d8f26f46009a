//! Every error the REST API returns: an HTTP status with NetBackup's JSON error body
//! `{errorCode, errorMessage, errorDetails}`, never an empty body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

/// An error answer of the REST API.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: i64,
    pub(crate) message: String,
    pub(crate) details: Vec<String>,
    pub(crate) attribute_errors: Option<Box<Map<String, Value>>>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: i64, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), details: Vec::new(), attribute_errors: None }
    }

    pub(crate) fn detail(mut self, detail: impl Into<String>) -> Self {
        self.details.push(detail.into());
        self
    }

    /// 400 for an invalid request.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, 9, message)
    }

    /// 400 naming the attribute that is wrong.
    pub(crate) fn bad_attribute(attribute: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        let mut error = Self::bad_request(format!("Invalid value for attribute {attribute}."));
        error.details.push(format!("{attribute}: {reason}"));
        error.attribute_errors.get_or_insert_default().insert(attribute.to_owned(), Value::String(reason));
        error
    }

    pub(crate) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            8000,
            "The request is not authorized: the Authorization header is missing, the token is invalid, or \
             you do not have permission for this operation.",
        )
    }

    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, 227, what)
    }

    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, 9010, message)
    }

    pub(crate) fn precondition_failed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PRECONDITION_FAILED, 9011, message)
    }

    pub(crate) fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_ACCEPTABLE, 9012, message)
    }

    pub(crate) fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, 9013, message)
    }

    pub(crate) fn body(&self) -> Value {
        let mut body = json!({
            "errorCode": self.code,
            "errorMessage": self.message,
            "errorDetails": self.details,
        });
        if let Some(errors) = &self.attribute_errors {
            body["attributeErrors"] = Value::Object((**errors).clone());
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// The result of a handler.
pub(crate) type ApiResult<T> = Result<T, ApiError>;

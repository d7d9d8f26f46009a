//! Errors of the app API as JSON bodies: `{"error": {"code": "...", "message": "..."}}`. Internal
//! details go to the log, never to the client.

use axum::extract::rejection::QueryRejection;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::json;

/// An app API error.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None }
    }

    /// Asks the client to wait `seconds` before trying again (`Retry-After`).
    pub fn retry_after(&mut self, seconds: u32) {
        self.retry_after = Some(seconds);
    }

    /// Status, code, message and `Retry-After` seconds (to pass the error on to another replica).
    pub fn parts(&self) -> (StatusCode, &'static str, &str, Option<u32>) {
        (self.status, self.code, &self.message, self.retry_after)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API key is required in the X-NBWSS-API-Key header",
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message)
    }

    /// A method the route does not answer; the router adds the `Allow` header naming those it does.
    pub fn method_not_allowed(method: &Method) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("this route does not answer {method}; the Allow header lists the methods it answers"),
        )
    }

    /// A path no route answers.
    pub fn no_route(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "no_route",
            format!("no route answers {path}; see /api/v1/openapi.json"),
        )
    }

    /// Logs the real cause and answers a generic 500.
    pub fn internal(error: &anyhow::Error) -> Self {
        tracing::error!("internal error: {error:#}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the endpoint's log")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, Json(json!({ "error": { "code": self.code, "message": self.message } })))
                .into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        Self::internal(&error)
    }
}

/// `axum::extract::Query` whose rejection is an `ApiError` (the JSON error body, 400) rather than axum's
/// plain-text one.
pub(crate) struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(query_rejection(&rejection)),
        }
    }
}

fn query_rejection(rejection: &QueryRejection) -> ApiError {
    ApiError::bad_request(rejection.body_text())
}

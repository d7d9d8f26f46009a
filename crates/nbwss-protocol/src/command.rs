//! COMMAND: one NetBackup REST API call carried over NBWSS (D6–D10).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::fields::{type_name, Fields};
use crate::FieldError;

/// Response header that marks an error produced by the service itself rather than the primary server (D8).
pub const HEADER_ORIGIN: &str = "x-nbwss-origin";
/// Value of [`HEADER_ORIGIN`] on the service's own errors.
pub const ORIGIN_SERVICE: &str = "service";

/// The HTTP methods a COMMAND may use (D6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// GET
    Get,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
    /// HEAD
    Head,
    /// OPTIONS
    Options,
}

impl Method {
    /// Every method, in the order D6 lists them.
    pub const ALL: [Method; 7] =
        [Self::Get, Self::Post, Self::Put, Self::Patch, Self::Delete, Self::Head, Self::Options];

    /// The wire spelling (upper case).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Head => "HEAD",
            Self::Options => "OPTIONS",
        }
    }

    /// Parses a method name, case-insensitively.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|method| method.as_str().eq_ignore_ascii_case(text))
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// HTTP headers in the order given, names compared case-insensitively (D6).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// The first value of `name`, compared case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    /// Replaces every value of `name` with `value`.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        self.remove(&name);
        self.0.push((name, value.into()));
    }

    /// Adds a value, keeping any other value of the same name.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    /// Removes every value of `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(key, _)| !key.eq_ignore_ascii_case(name));
    }

    /// The headers in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(key, value)| (key.as_str(), value.as_str()))
    }

    /// How many header values there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn encode(&self) -> Value {
        let mut map = Map::new();
        for (name, value) in &self.0 {
            match map.get_mut(name) {
                // A JSON object cannot repeat a key: repeated values are joined as HTTP allows.
                Some(Value::String(existing)) => {
                    existing.push_str(", ");
                    existing.push_str(value);
                }
                _ => {
                    map.insert(name.clone(), Value::String(value.clone()));
                }
            }
        }
        Value::Object(map)
    }

    /// Reads a headers object. Values are strings; arrays of strings (a multi-value map, as some
    /// HTTP stacks serialise headers) are joined with `, ` when `lenient` is set.
    fn decode(fields: &Fields<'_>, lenient: bool) -> Result<Self, FieldError> {
        let mut headers = Self::new();
        for (name, value) in fields.entries() {
            let path = fields.path_of(name);
            if name.is_empty() || !name.bytes().all(is_header_name_byte) {
                return Err(FieldError::new(path, "is not a valid HTTP header name"));
            }
            let text = match value {
                Value::String(text) => text.clone(),
                Value::Array(items) if lenient => {
                    let mut parts = Vec::with_capacity(items.len());
                    for (index, item) in items.iter().enumerate() {
                        match item {
                            Value::String(text) => parts.push(text.as_str()),
                            other => {
                                return Err(FieldError::new(
                                    format!("{path}[{index}]"),
                                    format!("must be a string, not {}", type_name(other)),
                                ))
                            }
                        }
                    }
                    parts.join(", ")
                }
                other => {
                    return Err(FieldError::new(path, format!("must be a string, not {}", type_name(other))))
                }
            };
            // HTTP field values are visible characters, spaces and tabs: a CR or LF would split the header.
            if text.chars().any(|c| c.is_control() && c != '\t') {
                return Err(FieldError::new(
                    path,
                    "must not contain line breaks or NUL (nor any other control character but tab)",
                ));
            }
            headers.append(name.clone(), text);
        }
        Ok(headers)
    }
}

pub(crate) fn is_header_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Headers {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        Self(iter.into_iter().map(|(key, value)| (key.into(), value.into())).collect())
    }
}

/// `COMMAND`/`REQUEST` payload: one REST call for the service to run against its primary server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRequest {
    /// Server-relative path with the `/netbackup/` prefix, optionally with a query string.
    pub uri: String,
    /// HTTP method.
    pub method: Method,
    /// Request headers, passed through (the cloud application's own `Authorization` included).
    pub headers: Headers,
    /// Request body as a string; `None` when there is none.
    pub parameters: Option<String>,
}

impl CommandRequest {
    /// A request without headers or body.
    pub fn new(method: Method, uri: impl Into<String>) -> Self {
        Self { uri: uri.into(), method, headers: Headers::new(), parameters: None }
    }

    /// The path part of `uri` (before any `?`).
    pub fn path(&self) -> &str {
        self.uri.split_once('?').map_or(self.uri.as_str(), |(path, _)| path)
    }

    pub(crate) fn decode(payload: &Fields<'_>) -> Result<Self, FieldError> {
        let uri = payload.string("uri")?;
        crate::check_command_uri(uri).map_err(|rule| FieldError::new(payload.path_of("uri"), rule))?;
        let method_text = payload.string("method")?;
        let method = Method::parse(method_text).ok_or_else(|| {
            FieldError::new(
                payload.path_of("method"),
                format!("'{method_text}' is not one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"),
            )
        })?;
        let headers = match payload.get("headers") {
            None => Headers::new(),
            Some(_) => Headers::decode(&payload.object("headers")?, false)?,
        };
        let parameters = payload.opt_string("parameters")?.map(str::to_owned);
        Ok(Self { uri: uri.to_owned(), method, headers, parameters })
    }

    pub(crate) fn encode(&self) -> Value {
        let mut map = Map::new();
        map.insert("uri".into(), Value::String(self.uri.clone()));
        map.insert("method".into(), Value::String(self.method.as_str().into()));
        map.insert("headers".into(), self.headers.encode());
        if let Some(parameters) = &self.parameters {
            map.insert("parameters".into(), Value::String(parameters.clone()));
        }
        Value::Object(map)
    }
}

/// `COMMAND`/`RESPONSE` payload (D7): the primary server's answer, or the service's own error (D8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResponse {
    /// HTTP status code.
    pub status_code: u16,
    /// Response headers, names in lower case; hop-by-hop headers dropped.
    pub headers: Headers,
    /// Response entity as a string; empty when there is none.
    pub body: String,
}

/// The NetBackup error body: `{"errorCode", "errorMessage", "errorDetails"}`, the one type for it on the
/// service's side (its COMMAND errors, D8, its admin API and its local ingest).
///
/// `errorDetails` is optional in the guide: [`ErrorBody::new`] leaves it out when there are no details, as
/// the service's COMMAND errors do; `Some(vec![])` writes it as `[]`, as the admin API does on every error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// A status code (NetBackup's or, for the service's own errors, the HTTP status).
    pub error_code: i64,
    /// What went wrong.
    pub error_message: String,
    /// More about it: `None` leaves the key out, `Some` writes it, empty or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_details: Option<Vec<String>>,
}

impl ErrorBody {
    /// An error body whose `errorDetails` is left out when `details` is empty.
    pub fn new(error_code: i64, message: impl Into<String>, details: Vec<String>) -> Self {
        Self {
            error_code,
            error_message: message.into(),
            error_details: (!details.is_empty()).then_some(details),
        }
    }

    /// The details, empty when `errorDetails` is absent.
    pub fn details(&self) -> &[String] {
        self.error_details.as_deref().unwrap_or_default()
    }
}

impl CommandResponse {
    /// An error the service produces itself (D8): the given status, a NetBackup-style JSON error body and
    /// the `x-nbwss-origin: service` header.
    pub fn service_error(status_code: u16, message: impl Into<String>, details: Vec<String>) -> Self {
        let body = ErrorBody::new(i64::from(status_code), message, details);
        let mut headers = Headers::new();
        headers.set("content-type", "application/json");
        headers.set(HEADER_ORIGIN, ORIGIN_SERVICE);
        let body = serde_json::to_string(&body).unwrap_or_default();
        Self { status_code, headers, body }
    }

    /// Whether this response was produced by the service rather than the primary server.
    pub fn is_from_service(&self) -> bool {
        self.headers.get(HEADER_ORIGIN) == Some(ORIGIN_SERVICE)
    }

    /// The body read as a NetBackup error body, if it is one.
    pub fn error_body(&self) -> Option<ErrorBody> {
        serde_json::from_str(&self.body).ok()
    }

    /// Reads a response payload, accepting the tolerated variants of D7: `statusCode` as an integer, or as
    /// a reason string plus `statusCodeValue`; `body` as a string, any JSON value, or absent.
    pub(crate) fn decode(payload: &Fields<'_>) -> Result<Self, FieldError> {
        let status_path = payload.path_of("statusCode");
        let status = match payload.value("statusCode")? {
            Value::Number(number) => number.as_i64(),
            Value::String(_) => Some(payload.integer("statusCodeValue").map_err(|error| {
                FieldError::new(error.path, format!("{} (statusCode is a reason string)", error.rule))
            })?),
            other => {
                return Err(FieldError::new(
                    status_path,
                    format!("must be an integer HTTP status, not {}", type_name(other)),
                ))
            }
        };
        let status_code = status
            .and_then(|status| u16::try_from(status).ok())
            .filter(|status| (100..=599).contains(status))
            .ok_or_else(|| FieldError::new(&status_path, "must be an HTTP status between 100 and 599"))?;
        let headers = match payload.get("headers") {
            None => Headers::new(),
            Some(_) => Headers::decode(&payload.object("headers")?, true)?,
        };
        let body = match payload.get("body") {
            None => String::new(),
            Some(Value::String(text)) => text.clone(),
            Some(other) => other.to_string(),
        };
        Ok(Self { status_code, headers, body })
    }

    pub(crate) fn encode(&self) -> Value {
        let mut map = Map::new();
        map.insert("statusCode".into(), Value::from(self.status_code));
        map.insert("headers".into(), self.headers.encode());
        map.insert("body".into(), Value::String(self.body.clone()));
        Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_smuggling_is_refused() {
        use crate::Codec;
        let decode = |headers: Value| {
            let text = serde_json::json!({"version": "1.0", "id": "I", "type": "COMMAND", "subType": "REQUEST",
                "timeStamp": 1, "payload": {"uri": "/netbackup/admin/jobs", "method": "GET", "headers": headers}});
            Codec::default().decode(&text.to_string())
        };
        for (headers, rule) in [
            (serde_json::json!({"X": "a\r\nEvil: 1"}), "line breaks"),
            (serde_json::json!({"X": "a\nEvil: 1"}), "line breaks"),
            (serde_json::json!({"X": "a\u{0}"}), "NUL"),
            (serde_json::json!({"X": "a\u{1b}[31m"}), "control character"),
            (serde_json::json!({"X": "a\u{7f}"}), "control character"),
            (serde_json::json!({"X": "a\u{85}"}), "control character"),
            (serde_json::json!({"X\r\nEvil": "1"}), "not a valid HTTP header name"),
            (serde_json::json!({"X Y": "1"}), "not a valid HTTP header name"),
            (serde_json::json!({"X:Y": "1"}), "not a valid HTTP header name"),
            (serde_json::json!({"Ünicode": "1"}), "not a valid HTTP header name"),
            (serde_json::json!({"": "1"}), "not a valid HTTP header name"),
        ] {
            let error = decode(headers.clone()).expect_err(&headers.to_string());
            assert!(error.to_string().contains(rule), "{headers}: {error}");
        }
        for allowed in [serde_json::json!({"X": "a\tb"}), serde_json::json!({"X-Name": "café, ok"})] {
            assert!(decode(allowed.clone()).is_ok(), "{allowed}");
        }
    }

    #[test]
    fn headers_are_case_insensitive() {
        let mut headers: Headers = [("Content-Type", "application/json")].into_iter().collect();
        assert_eq!(headers.get("content-type"), Some("application/json"));
        headers.set("CONTENT-TYPE", "text/plain");
        assert_eq!(headers.len(), 1);
        assert_eq!(headers.get("Content-Type"), Some("text/plain"));
    }

    #[test]
    fn service_error_is_marked() {
        let response = CommandResponse::service_error(403, "refused", vec!["why".into()]);
        assert!(response.is_from_service());
        let body = response.error_body().unwrap();
        assert_eq!(body.error_code, 403);
        assert_eq!(body.details(), ["why"]);
    }

    #[test]
    fn error_details_are_left_out_only_when_absent() {
        let without = CommandResponse::service_error(502, "unreachable", Vec::new());
        assert_eq!(without.body, r#"{"errorCode":502,"errorMessage":"unreachable"}"#);
        assert_eq!(without.error_body().unwrap().details(), [] as [String; 0]);
        let with = CommandResponse::service_error(403, "refused", vec!["why".into()]);
        assert_eq!(with.body, r#"{"errorCode":403,"errorMessage":"refused","errorDetails":["why"]}"#);
        let kept =
            ErrorBody { error_details: Some(Vec::new()), ..ErrorBody::new(404, "No such API.", Vec::new()) };
        let text = serde_json::to_string(&kept).unwrap();
        assert_eq!(text, r#"{"errorCode":404,"errorMessage":"No such API.","errorDetails":[]}"#);
        assert_eq!(serde_json::from_str::<ErrorBody>(&text).unwrap(), kept);
    }
}

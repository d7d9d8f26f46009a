//! Decoding errors that name the JSON path and the rule broken.

use std::fmt;

/// A field of a JSON document that breaks a rule: `payload.uri: must start with /netbackup/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the offending value, e.g. `payload.data[0].jobId`; empty for the document itself.
    pub path: String,
    /// The rule broken, phrased so that it completes "path: ...".
    pub rule: String,
}

impl FieldError {
    /// A new error at `path`.
    pub fn new(path: impl Into<String>, rule: impl Into<String>) -> Self {
        Self { path: path.into(), rule: rule.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.rule)
        } else {
            write!(f, "{}: {}", self.path, self.rule)
        }
    }
}

impl std::error::Error for FieldError {}

/// What went wrong when decoding a message, and therefore how a receiver must react.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// Larger than the configured limit: close with 1009 (`TOO_BIG`).
    TooBig {
        /// Size of the message in bytes.
        size: usize,
        /// The configured limit in bytes.
        limit: usize,
    },
    /// Not valid JSON: close with 1007 (`NOT_CONSISTENT`) unless decoder errors are ignored.
    NotJson,
    /// Valid JSON but not an NBWSS envelope (no usable `id`, `type` or `subType`): close with 1002
    /// (`PROTOCOL_ERROR`) unless decoder errors are ignored.
    NotEnvelope,
    /// A readable envelope whose content breaks a rule. The message has an `id`, so a request can be
    /// answered (a COMMAND REQUEST gets a 400 COMMAND RESPONSE).
    Invalid,
}

/// A message that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// How the receiver must react.
    pub kind: DecodeErrorKind,
    /// The offending field and the rule broken.
    pub field: FieldError,
    /// The envelope's `id`, when it could be read.
    pub id: Option<String>,
    /// The envelope's `type` and `subType`, when they could be read.
    pub message_type: Option<(crate::MessageType, crate::SubType)>,
}

impl DecodeError {
    pub(crate) fn new(kind: DecodeErrorKind, field: FieldError) -> Self {
        Self { kind, field, id: None, message_type: None }
    }

    /// The `id` of a RESPONSE that could not be decoded whole (an unsupported version, a missing or odd
    /// `timeStamp`, a payload that breaks its rules). D11: a response is matched by its `id` before its
    /// payload is judged, so the receiver still completes the request it answers, and logs this error.
    pub fn response_id(&self) -> Option<&str> {
        match (&self.kind, self.message_type) {
            (DecodeErrorKind::Invalid, Some((_, crate::SubType::Response))) => self.id.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            DecodeErrorKind::TooBig { size, limit } => {
                write!(f, "message of {size} bytes is larger than the limit of {limit} bytes")
            }
            DecodeErrorKind::NotJson => write!(f, "not valid JSON: {}", self.field),
            DecodeErrorKind::NotEnvelope => write!(f, "not an NBWSS message: {}", self.field),
            DecodeErrorKind::Invalid => write!(f, "{}", self.field),
        }
    }
}

impl std::error::Error for DecodeError {}

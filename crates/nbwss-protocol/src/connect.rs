//! CONNECT: NetBackup presents the endpoint's token; the endpoint accepts or refuses it.

use serde_json::{json, Value};

use crate::fields::Fields;
use crate::{FieldError, Secret};

/// `CONNECT`/`REQUEST` payload: `{"token": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// The application validation token saved with the WebSocket server.
    pub token: Secret,
}

/// `CONNECT`/`RESPONSE` payload: `{"valid": true|false}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectResponse {
    /// Whether the endpoint accepts the token; `false` makes NetBackup close the connection.
    pub valid: bool,
}

impl ConnectRequest {
    pub(crate) fn decode(payload: &Fields<'_>) -> Result<Self, FieldError> {
        Ok(Self { token: Secret::new(payload.non_empty_string("token")?) })
    }

    pub(crate) fn encode(&self) -> Value {
        json!({ "token": self.token.expose() })
    }
}

impl ConnectResponse {
    pub(crate) fn decode(payload: &Fields<'_>) -> Result<Self, FieldError> {
        Ok(Self { valid: payload.boolean("valid")? })
    }

    pub(crate) fn encode(&self) -> Value {
        json!({ "valid": self.valid })
    }
}

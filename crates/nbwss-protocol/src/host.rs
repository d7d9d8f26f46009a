//! The WebSocket-server host object of NetBackup's `wssendpoints` REST API (§8.5).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::details::decode_location;
use crate::fields::Fields;
use crate::open_enum::open_enum;
use crate::{FieldError, Secret};

open_enum! {
    /// Whether the service may connect to a WebSocket server.
    HostState {
        /// The service connects to it (subject to priority and group rules).
        Activated = "ACTIVATED",
        /// The service does not connect to it.
        Deactivated = "DEACTIVATED",
    }
}

open_enum! {
    /// Whether the service is connected to a WebSocket server right now.
    ConnectionState {
        /// Connected and past the CONNECT handshake.
        Connected = "CONNECTED",
        /// Not connected.
        Disconnected = "DISCONNECTED",
    }
}

open_enum! {
    /// Kind of endpoint, as NetBackup reports it.
    EndpointType {
        /// NetBackup's own cloud management service.
        Gms = "GMS",
        /// Any other cloud application.
        Others = "OTHERS",
    }
}

open_enum! {
    /// Why the last connection to a WebSocket server closed (Java's WebSocket close reasons).
    CloseStatus {
        /// 1000.
        NormalClosure = "NORMAL_CLOSURE",
        /// 1001.
        GoingAway = "GOING_AWAY",
        /// 1002.
        ProtocolError = "PROTOCOL_ERROR",
        /// 1003.
        CannotAccept = "CANNOT_ACCEPT",
        /// 1005.
        NoStatusCode = "NO_STATUS_CODE",
        /// 1006.
        ClosedAbnormally = "CLOSED_ABNORMALLY",
        /// 1007.
        NotConsistent = "NOT_CONSISTENT",
        /// 1008.
        ViolatedPolicy = "VIOLATED_POLICY",
        /// 1009.
        TooBig = "TOO_BIG",
        /// 1010.
        NoExtension = "NO_EXTENSION",
        /// 1011.
        UnexpectedCondition = "UNEXPECTED_CONDITION",
        /// 1012.
        ServiceRestart = "SERVICE_RESTART",
        /// 1013.
        TryAgainLater = "TRY_AGAIN_LATER",
        /// 1015.
        TlsHandshakeFailure = "TLS_HANDSHAKE_FAILURE",
        /// Any other close.
        GenericClose = "GENERIC_CLOSE",
    }
}

impl CloseStatus {
    /// The WebSocket close code for this status, where it has one.
    pub fn code(&self) -> Option<u16> {
        Some(match self {
            Self::NormalClosure => 1000,
            Self::GoingAway => 1001,
            Self::ProtocolError => 1002,
            Self::CannotAccept => 1003,
            Self::NoStatusCode => 1005,
            Self::ClosedAbnormally => 1006,
            Self::NotConsistent => 1007,
            Self::ViolatedPolicy => 1008,
            Self::TooBig => 1009,
            Self::NoExtension => 1010,
            Self::UnexpectedCondition => 1011,
            Self::ServiceRestart => 1012,
            Self::TryAgainLater => 1013,
            Self::TlsHandshakeFailure => 1015,
            Self::GenericClose | Self::Other(_) => return None,
        })
    }

    /// The status for a WebSocket close code.
    pub fn from_code(code: u16) -> Self {
        match code {
            1000 => Self::NormalClosure,
            1001 => Self::GoingAway,
            1002 => Self::ProtocolError,
            1003 => Self::CannotAccept,
            1005 => Self::NoStatusCode,
            1006 => Self::ClosedAbnormally,
            1007 => Self::NotConsistent,
            1008 => Self::ViolatedPolicy,
            1009 => Self::TooBig,
            1010 => Self::NoExtension,
            1011 => Self::UnexpectedCondition,
            1012 => Self::ServiceRestart,
            1013 => Self::TryAgainLater,
            1015 => Self::TlsHandshakeFailure,
            _ => Self::GenericClose,
        }
    }
}

/// A WebSocket server as the `wssendpoints` API carries it: what the administrator supplies
/// (`hostName`, `url`, `groupId`, `priority`, `token`, `certificate`) and what the service reports.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostObject {
    /// Host name or IP address; the identity of the WebSocket server.
    pub host_name: String,
    /// `wss://` URL of the endpoint.
    pub url: String,
    /// Server group.
    pub group_id: String,
    /// Priority within the group; lower is tried first.
    pub priority: i64,
    /// The token sent in CONNECT. Never returned by a listing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// The endpoint's certificate (PEM) that the administrator accepted; the service pins it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// Activated or deactivated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<HostState>,
    /// Connected or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_state: Option<ConnectionState>,
    /// GMS or OTHERS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_type: Option<EndpointType>,
    /// Identifier of the stored credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
    /// Why the last connection closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_status: Option<CloseStatus>,
    /// Subject of the endpoint's certificate (validatehost answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// SHA-1 fingerprint of the endpoint's certificate (validatehost answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha1_fingerprints: Option<String>,
    /// SHA-256 fingerprint of the endpoint's certificate (validatehost answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256_fingerprint: Option<String>,
}

impl HostObject {
    /// Reads a host object from an API request body, checking the fields an administrator supplies:
    /// `hostName`, a `wss://` `url`, `groupId`, an integer `priority`, and string `token`/`certificate`
    /// when present. Which of `token`/`certificate` are required depends on the call.
    pub fn from_value(value: &Value) -> Result<Self, FieldError> {
        let fields = Fields::of(value, "")?;
        let (host_name, url, group_id, priority) = decode_location(&fields)?;
        let token = fields.opt_string("token")?.map(Secret::new);
        if token.as_ref().is_some_and(Secret::is_empty) {
            return Err(FieldError::new("token", "must not be empty"));
        }
        let certificate = fields.opt_string("certificate")?.map(str::to_owned);
        Ok(Self { host_name, url, group_id, priority, token, certificate, ..Self::default() })
    }
}

/// Body of `POST /config/servers/wssendpoints/update`: activate or deactivate a WebSocket server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateUpdate {
    /// The WebSocket server.
    pub host_name: String,
    /// The new state.
    pub state: HostState,
}

impl StateUpdate {
    /// Reads an update body; `state` must be `ACTIVATED` or `DEACTIVATED`.
    pub fn from_value(value: &Value) -> Result<Self, FieldError> {
        let fields = Fields::of(value, "")?;
        let host_name = fields.non_empty_string("hostName")?.to_owned();
        let state_text = fields.string("state")?;
        let state = HostState::from(state_text);
        if let HostState::Other(_) = state {
            return Err(FieldError::new("state", format!("'{state_text}' is not ACTIVATED or DEACTIVATED")));
        }
        Ok(Self { host_name, state })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn host_object_round_trip_hides_token_in_debug() {
        let value = json!({"hostName": "h", "url": "wss://h:8443/nbwss", "groupId": "g", "priority": 2,
            "token": "t0k", "certificate": "PEM"});
        let host = HostObject::from_value(&value).unwrap();
        assert_eq!(host.priority, 2);
        assert!(!format!("{host:?}").contains("t0k"));
        let encoded = serde_json::to_value(&host).unwrap();
        assert_eq!(encoded, value);
    }

    #[test]
    fn host_object_refusals() {
        let error = HostObject::from_value(&json!({"hostName": "h", "url": "ws://h/", "groupId": "g",
            "priority": 1}))
        .unwrap_err();
        assert!(error.to_string().starts_with("url: must start with wss://"), "{error}");
        let error = StateUpdate::from_value(&json!({"hostName": "h", "state": "ON"})).unwrap_err();
        assert_eq!(error.to_string(), "state: 'ON' is not ACTIVATED or DEACTIVATED");
    }

    #[test]
    fn close_codes_map_both_ways() {
        for text in CloseStatus::known() {
            let status = CloseStatus::from(*text);
            if let Some(code) = status.code() {
                assert_eq!(CloseStatus::from_code(code), status);
            }
        }
        assert_eq!(CloseStatus::from_code(4000), CloseStatus::GenericClose);
    }
}

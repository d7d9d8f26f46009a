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

open_enum! {
    /// Why the last connection attempt to a WebSocket server failed, or its last connection closed, as the
    /// administrator needs to know it (this project's list; `closeStatus` keeps NetBackup's own enum).
    CloseReason {
        /// The endpoint presented a certificate other than the pinned one.
        CertificateChanged = "CERTIFICATE_CHANGED",
        /// The TLS handshake failed for another reason (protocol versions, a broken peer).
        TlsHandshakeFailed = "TLS_HANDSHAKE_FAILED",
        /// The endpoint accepted TCP but did not finish the TLS handshake in `connect.handshakeTimeout`.
        TlsHandshakeTimedOut = "TLS_HANDSHAKE_TIMED_OUT",
        /// No TCP connection: name resolution, refused, unreachable, or the proxy failed.
        EndpointUnreachable = "ENDPOINT_UNREACHABLE",
        /// The WebSocket upgrade was refused or timed out (wrong path, a rate limit, not a WebSocket server).
        WebSocketUpgradeFailed = "WEBSOCKET_UPGRADE_FAILED",
        /// CONNECT answered `valid: false`.
        TokenRefused = "TOKEN_REFUSED",
        /// No CONNECT RESPONSE in `connect.responseTimeout`.
        ConnectTimedOut = "CONNECT_TIMED_OUT",
        /// The CONNECT RESPONSE carried another id, or could not be read.
        ConnectResponseInvalid = "CONNECT_RESPONSE_INVALID",
        /// `keepAlive.maxPongMissAllowed` pings in a row went unanswered.
        KeepaliveTimedOut = "KEEPALIVE_TIMED_OUT",
        /// A message larger than `message.maxBytes`.
        MessageTooBig = "MESSAGE_TOO_BIG",
        /// The endpoint sent something that is not an NBWSS message.
        ProtocolError = "PROTOCOL_ERROR",
        /// The endpoint closed the connection.
        ClosedByEndpoint = "CLOSED_BY_ENDPOINT",
        /// The connection broke without a close (reset, end of stream, a write that failed).
        ConnectionLost = "CONNECTION_LOST",
        /// The administrator deactivated, deleted or changed the WebSocket server.
        ServerChanged = "SERVER_CHANGED",
        /// The service was stopping.
        ServiceStopping = "SERVICE_STOPPING",
        /// The saved URL or host name cannot be used.
        InvalidUrl = "INVALID_URL",
    }
}

impl CloseReason {
    /// The reason in a few words, for a table.
    pub fn words(&self) -> &str {
        match self {
            Self::CertificateChanged => "certificate changed",
            Self::TlsHandshakeFailed => "TLS handshake failed",
            Self::TlsHandshakeTimedOut => "TLS handshake timed out",
            Self::EndpointUnreachable => "endpoint unreachable",
            Self::WebSocketUpgradeFailed => "WebSocket upgrade failed",
            Self::TokenRefused => "token refused by the endpoint",
            Self::ConnectTimedOut => "CONNECT timed out",
            Self::ConnectResponseInvalid => "invalid CONNECT RESPONSE",
            Self::KeepaliveTimedOut => "keepalive pongs missed",
            Self::MessageTooBig => "message too big",
            Self::ProtocolError => "protocol error",
            Self::ClosedByEndpoint => "closed by the endpoint",
            Self::ConnectionLost => "connection lost",
            Self::ServerChanged => "server changed by the administrator",
            Self::ServiceStopping => "service stopping",
            Self::InvalidUrl => "invalid URL",
            Self::Other(other) => other,
        }
    }
}

/// Why and when the last connection attempt to a WebSocket server failed or its connection closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastClose {
    /// The reason, as a code.
    pub reason: CloseReason,
    /// What happened, in a sentence naming the values involved (never a token).
    pub description: String,
    /// When, RFC 3339 UTC.
    pub at: String,
}

/// A certificate a WebSocket server presented instead of the pinned one (a renewal, or an impostor: the
/// administrator decides).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresentedCertificate {
    /// Subject distinguished name.
    pub subject: String,
    /// SHA-256 fingerprint, upper-case colon hex.
    pub sha256_fingerprint: String,
    /// When it was last presented, RFC 3339 UTC.
    pub seen_at: String,
    /// The command that shows it beside the pinned one and, once accepted, pins it.
    pub accept_command: String,
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
    /// Why the last connection attempt failed or the last connection closed, in words, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_close: Option<LastClose>,
    /// Connection attempts that failed since the last connection was established (CONNECT accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts_since_last_success: Option<u32>,
    /// A certificate the endpoint presents instead of the pinned one, when the last attempt met one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presented_certificate: Option<PresentedCertificate>,
    /// The token's fingerprint, never the token: `sha256:` and the first 16 lower-case hexadecimal digits
    /// of the SHA-256 of its UTF-8 bytes. The endpoint shows the same for the tokens it issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_fingerprint: Option<String>,
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

/// Body of `POST /config/servers/wssendpoints/update`. NetBackup's call changes a server's `state`; this
/// implementation also renews a server in place: a new `certificate` (re-validated and pinned), optionally
/// with new details (`url`, `groupId`, `priority`, given together as in a host object) and a new `token`.
/// The server keeps what is not given, including its credential id and its group's notification backlog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostUpdate {
    /// The WebSocket server.
    pub host_name: String,
    /// The new state.
    pub state: Option<HostState>,
    /// New `url`, `groupId` and `priority`.
    pub location: Option<(String, String, i64)>,
    /// A new token.
    pub token: Option<Secret>,
    /// The certificate (PEM) the administrator accepted.
    pub certificate: Option<String>,
}

impl HostUpdate {
    /// A state change, as NetBackup sends it.
    pub fn state(host_name: impl Into<String>, state: HostState) -> Self {
        Self {
            host_name: host_name.into(),
            state: Some(state),
            location: None,
            token: None,
            certificate: None,
        }
    }

    /// Reads an update body: `hostName` and at least one change; `state` must be `ACTIVATED` or
    /// `DEACTIVATED`; `url`, `groupId` and `priority` come together and follow the host object's rules.
    pub fn from_value(value: &Value) -> Result<Self, FieldError> {
        let fields = Fields::of(value, "")?;
        let host_name = fields.non_empty_string("hostName")?.to_owned();
        let state = match fields.opt_string("state")? {
            None => None,
            Some(text) => match HostState::from(text) {
                HostState::Other(_) => {
                    return Err(FieldError::new("state", format!("'{text}' is not ACTIVATED or DEACTIVATED")))
                }
                state => Some(state),
            },
        };
        let location = if ["url", "groupId", "priority"].iter().any(|key| fields.get(key).is_some()) {
            let (_, url, group_id, priority) = decode_location(&fields)?;
            Some((url, group_id, priority))
        } else {
            None
        };
        let token = fields.opt_string("token")?.map(Secret::new);
        if token.as_ref().is_some_and(Secret::is_empty) {
            return Err(FieldError::new("token", "must not be empty"));
        }
        let certificate = fields.opt_string("certificate")?.map(str::to_owned);
        if state.is_none() && location.is_none() && token.is_none() && certificate.is_none() {
            return Err(FieldError::new(
                "",
                "names nothing to change: give state, or certificate (with url, groupId and priority to change them), or token",
            ));
        }
        Ok(Self { host_name, state, location, token, certificate })
    }

    /// The body as JSON (the token included: it is a request body).
    pub fn to_value(&self) -> Value {
        let mut map = serde_json::Map::new();
        map.insert("hostName".into(), Value::String(self.host_name.clone()));
        if let Some(state) = &self.state {
            map.insert("state".into(), Value::String(state.as_str().to_owned()));
        }
        if let Some((url, group_id, priority)) = &self.location {
            map.insert("url".into(), Value::String(url.clone()));
            map.insert("groupId".into(), Value::String(group_id.clone()));
            map.insert("priority".into(), Value::from(*priority));
        }
        if let Some(token) = &self.token {
            map.insert("token".into(), Value::String(token.expose().to_owned()));
        }
        if let Some(certificate) = &self.certificate {
            map.insert("certificate".into(), Value::String(certificate.clone()));
        }
        Value::Object(map)
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
        let error = HostUpdate::from_value(&json!({"hostName": "h", "state": "ON"})).unwrap_err();
        assert_eq!(error.to_string(), "state: 'ON' is not ACTIVATED or DEACTIVATED");
        let error = HostUpdate::from_value(&json!({"hostName": "h"})).unwrap_err();
        assert!(error.to_string().starts_with("names nothing to change"), "{error}");
        let error = HostUpdate::from_value(&json!({"hostName": "h", "url": "wss://h/", "certificate": "P"}))
            .unwrap_err();
        assert_eq!(error.to_string(), "groupId: missing");
    }

    #[test]
    fn host_update_round_trips() {
        let renewal = json!({"hostName": "h", "url": "wss://h:1/x", "groupId": "g", "priority": 2,
            "token": "t", "certificate": "PEM"});
        let update = HostUpdate::from_value(&renewal).unwrap();
        assert_eq!(update.location, Some(("wss://h:1/x".to_owned(), "g".to_owned(), 2)));
        assert_eq!(update.to_value(), renewal);
        let state = HostUpdate::state("h", HostState::Deactivated);
        assert_eq!(state.to_value(), json!({"hostName": "h", "state": "DEACTIVATED"}));
        assert_eq!(HostUpdate::from_value(&state.to_value()).unwrap(), state);
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

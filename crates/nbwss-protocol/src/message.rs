//! The message envelope and the typed body of every (type, subType) pair.

use std::fmt;

use serde_json::Value;

use crate::{CommandRequest, CommandResponse, ConnectRequest, ConnectResponse, NotificationGroup};

/// The only message-format version the guide defines; every message we send carries it.
pub const PROTOCOL_VERSION: &str = "1.0";

/// The `type` of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// The handshake: NetBackup presents its token, the endpoint accepts or refuses it.
    Connect,
    /// One NetBackup REST API call, asked by the endpoint and run by the service.
    Command,
    /// Job and image events, pushed by the service and acknowledged by the endpoint.
    Notification,
}

impl MessageType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::Command => "COMMAND",
            Self::Notification => "NOTIFICATION",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "CONNECT" => Some(Self::Connect),
            "COMMAND" => Some(Self::Command),
            "NOTIFICATION" => Some(Self::Notification),
            _ => None,
        }
    }
}

/// The `subType` of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubType {
    /// A request; it gets exactly one response with the same `id`.
    Request,
    /// The response to the request with the same `id`.
    Response,
}

impl SubType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "REQUEST",
            Self::Response => "RESPONSE",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "REQUEST" => Some(Self::Request),
            "RESPONSE" => Some(Self::Response),
            _ => None,
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for SubType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The payload of a message, typed by its (type, subType) pair. The set is closed: these six are all
/// the messages NBWSS has.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// `CONNECT`/`REQUEST`, NetBackup → endpoint.
    ConnectRequest(ConnectRequest),
    /// `CONNECT`/`RESPONSE`, endpoint → NetBackup.
    ConnectResponse(ConnectResponse),
    /// `COMMAND`/`REQUEST`, endpoint → NetBackup.
    CommandRequest(CommandRequest),
    /// `COMMAND`/`RESPONSE`, NetBackup → endpoint.
    CommandResponse(CommandResponse),
    /// `NOTIFICATION`/`REQUEST`, NetBackup → endpoint: one or more notification groups.
    NotificationRequest(Vec<NotificationGroup>),
    /// `NOTIFICATION`/`RESPONSE`, endpoint → NetBackup: the acknowledgement. We send `[]`; any payload
    /// received (`{}`, an object, `null`; `Value::Null` when there is none) is accepted and kept as it was
    /// (D11).
    NotificationResponse(Value),
}

impl Body {
    /// The message's `type`.
    pub fn message_type(&self) -> MessageType {
        match self {
            Self::ConnectRequest(_) | Self::ConnectResponse(_) => MessageType::Connect,
            Self::CommandRequest(_) | Self::CommandResponse(_) => MessageType::Command,
            Self::NotificationRequest(_) | Self::NotificationResponse(_) => MessageType::Notification,
        }
    }

    /// The message's `subType`.
    pub fn sub_type(&self) -> SubType {
        match self {
            Self::ConnectRequest(_) | Self::CommandRequest(_) | Self::NotificationRequest(_) => {
                SubType::Request
            }
            Self::ConnectResponse(_) | Self::CommandResponse(_) | Self::NotificationResponse(_) => {
                SubType::Response
            }
        }
    }

    /// The acknowledgement payload that D11 prescribes: an empty array.
    pub fn notification_ack() -> Self {
        Self::NotificationResponse(Value::Array(Vec::new()))
    }
}

/// One NBWSS message: the envelope plus its typed body.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Message-format version; `"1.0"` for everything we send.
    pub version: String,
    /// Message id; a response carries its request's id.
    pub id: String,
    /// Unix time in seconds when the message was built.
    pub time_stamp: i64,
    /// The typed payload.
    pub body: Body,
}

impl Message {
    /// A new request (or any message) with a fresh upper-case UUID and the current time.
    pub fn new(body: Body) -> Self {
        Self::with_id(new_message_id(), body)
    }

    /// A message with the given id (a response echoes its request's id) and the current time.
    pub fn with_id(id: impl Into<String>, body: Body) -> Self {
        Self { version: PROTOCOL_VERSION.to_owned(), id: id.into(), time_stamp: unix_now(), body }
    }

    /// The message's `type`.
    pub fn message_type(&self) -> MessageType {
        self.body.message_type()
    }

    /// The message's `subType`.
    pub fn sub_type(&self) -> SubType {
        self.body.sub_type()
    }

    /// A one-line human summary, e.g. `COMMAND REQUEST 9CD2…: GET /netbackup/admin/jobs`.
    pub fn summary(&self) -> String {
        let detail = match &self.body {
            Body::ConnectRequest(_) => "token ***".to_owned(),
            Body::ConnectResponse(response) => format!("valid: {}", response.valid),
            Body::CommandRequest(request) => {
                let body = match &request.parameters {
                    Some(parameters) => format!(", body of {} bytes", parameters.len()),
                    None => String::new(),
                };
                format!("{} {}{body}", request.method, request.uri)
            }
            Body::CommandResponse(response) => {
                format!("status {}, body of {} bytes", response.status_code, response.body.len())
            }
            Body::NotificationRequest(groups) => {
                let parts: Vec<String> = groups
                    .iter()
                    .map(|group| format!("{} {} record(s)", group.record_count(), group.object()))
                    .collect();
                parts.join(", ")
            }
            Body::NotificationResponse(_) => "acknowledgement".to_owned(),
        };
        format!("{} {} {}: {detail}", self.message_type(), self.sub_type(), self.id)
    }
}

/// A fresh message id: an upper-case 8-4-4-4-12 UUID (D2).
pub fn new_message_id() -> String {
    uuid::Uuid::new_v4().to_string().to_uppercase()
}

/// The current Unix time in seconds (D3).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

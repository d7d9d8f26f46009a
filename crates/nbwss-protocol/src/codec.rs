//! Text ⇄ message: the one place that applies the size limit, the version check and the payload rules.

use serde_json::{Map, Value};

use crate::fields::{type_name, Fields};
use crate::{
    Body, CommandRequest, CommandResponse, ConnectRequest, ConnectResponse, DecodeError, DecodeErrorKind,
    FieldError, Message, MessageType, NotificationGroup, SubType,
};

/// Default maximum size of one message: 16 MiB (D4).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Longest message id accepted from a peer (D2).
pub(crate) const MAX_ID_BYTES: usize = 128;

/// Encodes and decodes NBWSS messages with a size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    max_message_bytes: usize,
}

impl Default for Codec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_MESSAGE_BYTES)
    }
}

impl Codec {
    /// A codec that refuses messages larger than `max_message_bytes`.
    pub fn new(max_message_bytes: usize) -> Self {
        Self { max_message_bytes }
    }

    /// The size limit in bytes.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// Decodes one message from its text.
    pub fn decode(&self, text: &str) -> Result<Message, DecodeError> {
        self.check_size(text)?;
        // Every relayed call is two COMMAND messages: read them without a tree when they follow the rules.
        if text.contains("\"COMMAND\"") {
            if let Some(message) = crate::direct::decode(text) {
                return Ok(message);
            }
        }
        self.decode_value(&self.parse(text)?)
    }

    fn check_size(&self, text: &str) -> Result<(), DecodeError> {
        if text.len() > self.max_message_bytes {
            return Err(DecodeError::new(
                DecodeErrorKind::TooBig { size: text.len(), limit: self.max_message_bytes },
                FieldError::new("", "message too big"),
            ));
        }
        Ok(())
    }

    /// The text as JSON, within the size limit.
    pub(crate) fn parse(&self, text: &str) -> Result<Value, DecodeError> {
        self.check_size(text)?;
        serde_json::from_str(text).map_err(|error| {
            DecodeError::new(DecodeErrorKind::NotJson, FieldError::new("", error.to_string()))
        })
    }

    /// Decodes one message from an already parsed JSON value (no size check).
    pub fn decode_value(&self, value: &Value) -> Result<Message, DecodeError> {
        let not_envelope = |field: FieldError| DecodeError::new(DecodeErrorKind::NotEnvelope, field);
        let envelope = Fields::of(value, "").map_err(|_| {
            not_envelope(FieldError::new("", format!("must be a JSON object, not {}", type_name(value))))
        })?;
        let id = envelope.non_empty_string("id").map_err(not_envelope)?;
        if id.len() > MAX_ID_BYTES {
            return Err(not_envelope(FieldError::new("id", format!("must be at most {MAX_ID_BYTES} bytes"))));
        }
        let type_text = envelope.string("type").map_err(not_envelope)?;
        let message_type = MessageType::parse(type_text).ok_or_else(|| {
            not_envelope(FieldError::new(
                "type",
                format!("'{type_text}' is not one of CONNECT, COMMAND, NOTIFICATION"),
            ))
        })?;
        let sub_type_text = envelope.string("subType").map_err(not_envelope)?;
        let sub_type = SubType::parse(sub_type_text).ok_or_else(|| {
            not_envelope(FieldError::new(
                "subType",
                format!("'{sub_type_text}' is not one of REQUEST, RESPONSE"),
            ))
        })?;

        // From here on the message has an id and a kind: errors can be answered.
        let invalid = |field: FieldError| DecodeError {
            kind: DecodeErrorKind::Invalid,
            field,
            id: Some(id.to_owned()),
            message_type: Some((message_type, sub_type)),
        };
        let version = envelope.string("version").map_err(invalid)?;
        if version.split('.').next() != Some("1") {
            return Err(invalid(FieldError::new(
                "version",
                format!("'{version}' is not supported (this implementation speaks 1.x)"),
            )));
        }
        let time_stamp = envelope.integer("timeStamp").map_err(invalid)?;
        let body = decode_body(message_type, sub_type, &envelope).map_err(invalid)?;
        Ok(Message { version: version.to_owned(), id: id.to_owned(), time_stamp, body })
    }

    /// Encodes a message as compact JSON text, keys in the guide's order.
    pub fn encode(&self, message: &Message) -> String {
        crate::direct::encode(message).unwrap_or_else(|| encode_value(message).to_string())
    }
}

/// The message as a JSON value, keys in the guide's order.
pub(crate) fn encode_value(message: &Message) -> Value {
    let payload = match &message.body {
        Body::ConnectRequest(request) => request.encode(),
        Body::ConnectResponse(response) => response.encode(),
        Body::CommandRequest(request) => request.encode(),
        Body::CommandResponse(response) => response.encode(),
        Body::NotificationRequest(groups) => {
            Value::Array(groups.iter().map(NotificationGroup::encode).collect())
        }
        Body::NotificationResponse(payload) => payload.clone(),
    };
    let mut map = Map::new();
    map.insert("version".into(), Value::String(message.version.clone()));
    map.insert("id".into(), Value::String(message.id.clone()));
    map.insert("type".into(), Value::String(message.message_type().as_str().into()));
    map.insert("subType".into(), Value::String(message.sub_type().as_str().into()));
    map.insert("timeStamp".into(), Value::from(message.time_stamp));
    map.insert("payload".into(), payload);
    Value::Object(map)
}

impl Message {
    /// The message as a JSON value, keys in the guide's order.
    pub fn to_value(&self) -> Value {
        encode_value(self)
    }
}

fn decode_body(
    message_type: MessageType,
    sub_type: SubType,
    envelope: &Fields<'_>,
) -> Result<Body, FieldError> {
    if (message_type, sub_type) == (MessageType::Notification, SubType::Response) {
        // D11: an acknowledgement is its id; whatever payload it carries (`[]`, `{}`, an object, `null` or
        // none at all) is kept as received and never judged.
        return Ok(Body::NotificationResponse(envelope.get("payload").cloned().unwrap_or(Value::Null)));
    }
    let payload = envelope.value("payload")?;
    let object = || -> Result<Fields<'_>, FieldError> {
        match payload {
            Value::Object(_) => Fields::of(payload, "payload"),
            other => Err(FieldError::new(
                "payload",
                format!("must be an object for {message_type} messages, not {}", type_name(other)),
            )),
        }
    };
    let array = || -> Result<&Vec<Value>, FieldError> {
        match payload {
            Value::Array(items) => Ok(items),
            other => Err(FieldError::new(
                "payload",
                format!("must be an array for NOTIFICATION messages, not {}", type_name(other)),
            )),
        }
    };
    Ok(match (message_type, sub_type) {
        (MessageType::Connect, SubType::Request) => Body::ConnectRequest(ConnectRequest::decode(&object()?)?),
        (MessageType::Connect, SubType::Response) => {
            Body::ConnectResponse(ConnectResponse::decode(&object()?)?)
        }
        (MessageType::Command, SubType::Request) => Body::CommandRequest(CommandRequest::decode(&object()?)?),
        (MessageType::Command, SubType::Response) => {
            Body::CommandResponse(CommandResponse::decode(&object()?)?)
        }
        (MessageType::Notification, SubType::Request) => Body::NotificationRequest(
            array()?
                .iter()
                .enumerate()
                .map(|(index, item)| {
                    NotificationGroup::decode(&Fields::of(item, &format!("payload[{index}]"))?)
                })
                .collect::<Result<_, _>>()?,
        ),
        (MessageType::Notification, SubType::Response) => Body::NotificationResponse(payload.clone()),
    })
}

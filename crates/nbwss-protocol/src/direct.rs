//! COMMAND messages read and written without a `serde_json::Value` tree: every relayed call is one
//! COMMAND REQUEST and one COMMAND RESPONSE, and building, hashing (`preserve_order`) and copying a tree
//! of their fields cost more than the rest of the codec's work.
//!
//! [`decode`] reads well-formed COMMAND messages straight into their types and gives up (`None`) on
//! anything else, including every message the rules of `codec.rs` and `command.rs` refuse or read in a
//! tolerated variant (D7): the codec then reads the text through the tree, which gives the same result
//! or the error naming the field. [`encode`] writes exactly the text `encode_value(...).to_string()`
//! writes (the tests compare them).

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::{Body, CommandRequest, CommandResponse, Headers, Message, Method};

/// The envelope with its COMMAND payload, read in one pass: the payload's type is known from `type` and
/// `subType`, which must come before it (as every NBWSS implementation writes them) for this reader.
struct Envelope<'a> {
    version: Cow<'a, str>,
    id: Cow<'a, str>,
    time_stamp: i64,
    payload: Payload<'a>,
}

enum Payload<'a> {
    Request(Request<'a>),
    Response(Response<'a>),
}

/// A string borrowed from the text when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Of;
        impl<'de> Visitor<'de> for Of {
            type Value = Text<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E>(self, text: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(Of)
    }
}

impl<'de> Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = Envelope<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a COMMAND message")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
                use serde::de::Error as _;
                let (mut version, mut id, mut kind, mut sub_type, mut time_stamp, mut payload) =
                    (None, None, None, None, None, None);
                let repeated = || A::Error::custom("a repeated key");
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    match key.0.as_ref() {
                        "version" if version.is_none() => version = Some(map.next_value::<Text<'de>>()?.0),
                        "id" if id.is_none() => id = Some(map.next_value::<Text<'de>>()?.0),
                        "type" if kind.is_none() => kind = Some(map.next_value::<Text<'de>>()?.0),
                        "subType" if sub_type.is_none() => sub_type = Some(map.next_value::<Text<'de>>()?.0),
                        "timeStamp" if time_stamp.is_none() => time_stamp = Some(map.next_value::<i64>()?),
                        "payload" if payload.is_none() => {
                            if kind.as_deref() != Some("COMMAND") {
                                return Err(A::Error::custom("not a COMMAND, or its type after its payload"));
                            }
                            payload = Some(match sub_type.as_deref() {
                                Some("REQUEST") => Payload::Request(map.next_value()?),
                                Some("RESPONSE") => Payload::Response(map.next_value()?),
                                _ => return Err(A::Error::custom("no subType before the payload")),
                            });
                        }
                        "version" | "id" | "type" | "subType" | "timeStamp" | "payload" => {
                            return Err(repeated())
                        }
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                let missing = || A::Error::custom("a missing key");
                Ok(Envelope {
                    version: version.ok_or_else(missing)?,
                    id: id.ok_or_else(missing)?,
                    time_stamp: time_stamp.ok_or_else(missing)?,
                    payload: payload.ok_or_else(missing)?,
                })
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow)]
    uri: Cow<'a, str>,
    #[serde(borrow)]
    method: Cow<'a, str>,
    #[serde(default)]
    headers: Option<StringHeaders>,
    #[serde(default, borrow)]
    parameters: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Response<'a> {
    #[serde(rename = "statusCode")]
    status_code: i64,
    #[serde(default)]
    headers: Option<StringHeaders>,
    #[serde(default, borrow)]
    body: Option<Cow<'a, str>>,
}

/// A headers object whose values are all strings and whose names are all distinct, in order.
struct StringHeaders(Vec<(String, String)>);

impl<'de> Deserialize<'de> for StringHeaders {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = StringHeaders;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("an object of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StringHeaders, A::Error> {
                let mut entries: Vec<(String, String)> = Vec::new();
                while let Some((name, value)) = map.next_entry::<String, String>()? {
                    // A repeated key: the tree keeps the last value at the first position; let it read it.
                    if entries.iter().any(|(known, _)| *known == name) {
                        return Err(serde::de::Error::custom("repeated header name"));
                    }
                    entries.push((name, value));
                }
                Ok(StringHeaders(entries))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

/// Reads a COMMAND message that follows every rule, or `None` for the codec to read through the tree.
pub(crate) fn decode(text: &str) -> Option<Message> {
    let envelope: Envelope<'_> = serde_json::from_str(text).ok()?;
    if envelope.id.trim().is_empty()
        || envelope.id.len() > crate::codec::MAX_ID_BYTES
        || envelope.version.split('.').next() != Some("1")
    {
        return None;
    }
    let body = match envelope.payload {
        Payload::Request(request) => {
            crate::check_command_uri(&request.uri).ok()?;
            let method = Method::parse(&request.method)?;
            Body::CommandRequest(CommandRequest {
                uri: request.uri.into_owned(),
                method,
                headers: checked(request.headers)?,
                parameters: request.parameters.map(Cow::into_owned),
            })
        }
        Payload::Response(response) => {
            let status_code =
                u16::try_from(response.status_code).ok().filter(|status| (100..=599).contains(status))?;
            Body::CommandResponse(CommandResponse {
                status_code,
                headers: checked(response.headers)?,
                body: response.body.map(Cow::into_owned).unwrap_or_default(),
            })
        }
    };
    Some(Message {
        version: envelope.version.into_owned(),
        id: envelope.id.into_owned(),
        time_stamp: envelope.time_stamp,
        body,
    })
}

/// Headers that pass `Headers::decode`'s rules, or `None`.
fn checked(headers: Option<StringHeaders>) -> Option<Headers> {
    let entries = headers.map(|headers| headers.0).unwrap_or_default();
    let valid = entries.iter().all(|(name, value)| {
        !name.is_empty()
            && name.bytes().all(crate::command::is_header_name_byte)
            && !value.chars().any(|c| c.is_control() && c != '\t')
    });
    valid.then(|| entries.into_iter().collect())
}

/// Writes a COMMAND message, or `None` for any other message.
pub(crate) fn encode(message: &Message) -> Option<String> {
    let (sub_type, payload_size) = match &message.body {
        Body::CommandRequest(request) => {
            ("REQUEST", request.uri.len() + request.parameters.as_ref().map_or(0, String::len))
        }
        Body::CommandResponse(response) => ("RESPONSE", response.body.len()),
        _ => return None,
    };
    let mut out = Vec::with_capacity(payload_size + payload_size / 8 + 256);
    out.extend_from_slice(b"{\"version\":");
    string(&mut out, &message.version);
    out.extend_from_slice(b",\"id\":");
    string(&mut out, &message.id);
    out.extend_from_slice(b",\"type\":\"COMMAND\",\"subType\":\"");
    out.extend_from_slice(sub_type.as_bytes());
    out.extend_from_slice(b"\",\"timeStamp\":");
    out.extend_from_slice(message.time_stamp.to_string().as_bytes());
    out.extend_from_slice(b",\"payload\":{");
    match &message.body {
        Body::CommandRequest(request) => {
            out.extend_from_slice(b"\"uri\":");
            string(&mut out, &request.uri);
            out.extend_from_slice(b",\"method\":\"");
            out.extend_from_slice(request.method.as_str().as_bytes());
            out.extend_from_slice(b"\",\"headers\":");
            headers(&mut out, &request.headers);
            if let Some(parameters) = &request.parameters {
                out.extend_from_slice(b",\"parameters\":");
                string(&mut out, parameters);
            }
        }
        Body::CommandResponse(response) => {
            out.extend_from_slice(b"\"statusCode\":");
            out.extend_from_slice(response.status_code.to_string().as_bytes());
            out.extend_from_slice(b",\"headers\":");
            headers(&mut out, &response.headers);
            out.extend_from_slice(b",\"body\":");
            string(&mut out, &response.body);
        }
        _ => return None,
    }
    out.extend_from_slice(b"}}");
    // Only UTF-8 went in: strings and their JSON escapes.
    String::from_utf8(out).ok()
}

/// A JSON string, escaped as serde_json escapes it.
fn string(out: &mut Vec<u8>, text: &str) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// The headers as a JSON object: values of a repeated name joined with `, `, at the name's first
/// position, as `Headers::encode` does.
fn headers(out: &mut Vec<u8>, headers: &Headers) {
    let mut joined: Vec<(&str, Cow<'_, str>)> = Vec::with_capacity(headers.len());
    for (name, value) in headers.iter() {
        match joined.iter_mut().find(|(known, _)| *known == name) {
            Some((_, existing)) => {
                let existing = existing.to_mut();
                existing.push_str(", ");
                existing.push_str(value);
            }
            None => joined.push((name, Cow::Borrowed(value))),
        }
    }
    out.push(b'{');
    for (index, (name, value)) in joined.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        string(out, name);
        out.push(b':');
        string(out, value);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::codec::encode_value;
    use crate::Codec;

    fn request() -> CommandRequest {
        let mut request = CommandRequest::new(Method::Post, "/netbackup/admin/jobs?page%5Blimit%5D=10");
        request.headers = [
            ("Authorization", "token \"quoted\" \\ é"),
            ("Accept", "application/vnd.netbackup+json;version=4.0"),
            ("X-Repeated", "a"),
            ("X-Repeated", "b"),
        ]
        .into_iter()
        .collect();
        request.parameters = Some("{\"data\":{\"line\":\"a\\nb\\u0001\"}}".to_owned());
        request
    }

    fn response() -> CommandResponse {
        CommandResponse {
            status_code: 200,
            headers: [("content-type", "application/json"), ("x-tab", "a\tb")].into_iter().collect(),
            body: "{\"data\":[{\"id\":\"1\",\"name\":\"ünïcödé \u{1F600}\",\"control\":\"\u{7}\"}]}"
                .to_owned(),
        }
    }

    #[test]
    fn writes_what_the_tree_writes() {
        let mut bare = CommandRequest::new(Method::Get, "/netbackup/admin/jobs/1");
        bare.parameters = None;
        for body in [
            Body::CommandRequest(request()),
            Body::CommandRequest(bare),
            Body::CommandResponse(response()),
            Body::CommandResponse(CommandResponse {
                status_code: 204,
                headers: Headers::new(),
                body: String::new(),
            }),
        ] {
            let message = Message::with_id("ID-\"1\"", body);
            assert_eq!(encode(&message).unwrap(), encode_value(&message).to_string());
        }
        assert!(encode(&Message::with_id("N", Body::NotificationResponse(json!([])))).is_none());
    }

    #[test]
    fn reads_what_the_tree_reads() {
        let codec = Codec::default();
        for body in [Body::CommandRequest(request()), Body::CommandResponse(response())] {
            let text = encode_value(&Message::with_id("ID-2", body)).to_string();
            let direct = decode(&text).expect("a well-formed COMMAND");
            let tree = codec.decode_value(&serde_json::from_str(&text).unwrap()).unwrap();
            assert_eq!(direct, tree);
        }
    }

    #[test]
    fn leaves_everything_else_to_the_tree() {
        let envelope = |payload: serde_json::Value| {
            json!({"version": "1.0", "id": "I", "type": "COMMAND", "subType": "RESPONSE", "timeStamp": 1,
                "payload": payload})
            .to_string()
        };
        for text in [
            // Tolerated variants (D7).
            envelope(json!({"statusCode": "OK", "statusCodeValue": 200, "body": ""})),
            envelope(json!({"statusCode": 200, "headers": {"a": ["1", "2"]}, "body": ""})),
            envelope(json!({"statusCode": 200, "body": {"an": "object"}})),
            // Refused.
            envelope(json!({"statusCode": 99, "body": ""})),
            envelope(json!({"statusCode": 200, "headers": {"a\r\nb": "1"}})),
            envelope(json!({"statusCode": 200, "headers": {"a": "1\r\nb: 2"}})),
            envelope(json!("not an object")),
            json!({"version": "2.0", "id": "I", "type": "COMMAND", "subType": "REQUEST", "timeStamp": 1,
                "payload": {"uri": "/netbackup/admin/jobs", "method": "GET"}})
            .to_string(),
            json!({"version": "1.0", "id": " ", "type": "COMMAND", "subType": "REQUEST", "timeStamp": 1,
                "payload": {"uri": "/netbackup/admin/jobs", "method": "GET"}})
            .to_string(),
            json!({"version": "1.0", "id": "I", "type": "COMMAND", "subType": "REQUEST", "timeStamp": 1,
                "payload": {"uri": "//evil/netbackup/admin/jobs", "method": "GET"}})
            .to_string(),
            json!({"version": "1.0", "id": "I", "type": "COMMAND", "subType": "REQUEST", "timeStamp": 1,
                "payload": {"uri": "/netbackup/admin/jobs", "method": "TRACE"}})
            .to_string(),
            // Repeated keys: the tree keeps the last.
            r#"{"version":"1.0","id":"I","type":"COMMAND","subType":"RESPONSE","timeStamp":1,"payload":{"statusCode":200,"headers":{"a":"1","a":"2"},"body":""}}"#.to_owned(),
            // The payload before the type.
            r#"{"payload":{"statusCode":200,"body":""},"version":"1.0","id":"I","type":"COMMAND","subType":"RESPONSE","timeStamp":1}"#.to_owned(),
            // Another type.
            json!({"version": "1.0", "id": "I", "type": "NOTIFICATION", "subType": "RESPONSE", "timeStamp": 1,
                "payload": []})
            .to_string(),
        ] {
            assert!(decode(&text).is_none(), "{text}");
        }
    }

    #[test]
    fn nulls_read_as_absent_as_in_the_tree() {
        let text = r#"{"version":"1.0","id":"I","type":"COMMAND","subType":"REQUEST","timeStamp":1,"payload":{"uri":"/netbackup/admin/jobs","method":"get","headers":null,"parameters":null}}"#;
        let direct = decode(text).unwrap();
        let tree = Codec::default().decode_value(&serde_json::from_str(text).unwrap()).unwrap();
        assert_eq!(direct, tree);
    }
}

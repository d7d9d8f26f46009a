//! Wire facts checked on the raw JSON a peer sent, field by field, without the codec of the implementation
//! under test: each function states one rule of `docs/protocol.md` and says precisely what broke it.

use serde_json::{Map, Value};

use crate::rule::Mode;

/// The longest id a peer may send (D2).
pub(crate) const MAX_ID_BYTES: usize = 128;
/// How far a `timeStamp` may be from the kit's clock and still count as Unix seconds (D3): a day covers
/// clocks in local time instead of UTC (the guide's own examples are 5 hours off) but not milliseconds.
const TIMESTAMP_TOLERANCE_SECONDS: i64 = 86_400;
/// Headers that describe one HTTP hop and must not be relayed (D7).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];
/// The methods a COMMAND may use (D6).
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// A message a peer sent, as parsed JSON.
#[derive(Debug, Clone)]
pub(crate) struct Incoming {
    pub value: Value,
}

impl Incoming {
    pub fn id(&self) -> Option<&str> {
        self.value.get("id").and_then(Value::as_str)
    }

    /// `(type, subType)` when both are strings.
    pub fn kind(&self) -> Option<(&str, &str)> {
        Some((self.value.get("type")?.as_str()?, self.value.get("subType")?.as_str()?))
    }

    pub fn is(&self, message_type: &str, sub_type: &str) -> bool {
        self.kind() == Some((message_type, sub_type))
    }

    pub fn payload(&self) -> Option<&Value> {
        self.value.get("payload")
    }

    /// `TYPE SUBTYPE id`, for reasons.
    pub fn describe(&self) -> String {
        let (message_type, sub_type) = self.kind().unwrap_or(("?", "?"));
        format!("{message_type} {sub_type} {}", self.id().unwrap_or("(no id)"))
    }
}

/// The (type, subType) pairs each side sends (§3).
fn may_send(sender: Mode, message_type: &str, sub_type: &str) -> bool {
    let pairs: &[(&str, &str)] = match sender {
        Mode::Endpoint => &[("CONNECT", "RESPONSE"), ("COMMAND", "REQUEST"), ("NOTIFICATION", "RESPONSE")],
        Mode::Service => &[("CONNECT", "REQUEST"), ("COMMAND", "RESPONSE"), ("NOTIFICATION", "REQUEST")],
    };
    pairs.contains(&(message_type, sub_type))
}

/// R-ENV-2: one JSON object with the six keys.
pub(crate) fn envelope_keys(value: &Value) -> Result<(), String> {
    let Some(object) = value.as_object() else {
        return Err(format!("a message is {}, not a JSON object", type_name(value)));
    };
    let missing: Vec<&str> = ["version", "id", "type", "subType", "timeStamp", "payload"]
        .into_iter()
        .filter(|key| !object.contains_key(*key))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("{} has no {}", describe_value(value), missing.join(", ")))
    }
}

/// R-ENV-3: `version` is "1.0".
pub(crate) fn version(value: &Value) -> Result<(), String> {
    match value.get("version") {
        Some(Value::String(text)) if text == "1.0" => Ok(()),
        Some(other) => Err(format!("{}: version is {other}, not \"1.0\"", describe_value(value))),
        None => Err(format!("{}: no version", describe_value(value))),
    }
}

/// R-ENV-4: `id` is a non-empty string of at most 128 bytes.
pub(crate) fn id(value: &Value) -> Result<(), String> {
    match value.get("id") {
        Some(Value::String(text)) if text.trim().is_empty() => {
            Err(format!("{}: id is empty", describe_value(value)))
        }
        Some(Value::String(text)) if text.len() > MAX_ID_BYTES => {
            Err(format!("{}: id is {} bytes long, over {MAX_ID_BYTES}", describe_value(value), text.len()))
        }
        Some(Value::String(_)) => Ok(()),
        Some(other) => Err(format!("{}: id is {}, not a string", describe_value(value), type_name(other))),
        None => Err(format!("{}: no id", describe_value(value))),
    }
}

/// R-ENV-5: `type` and `subType` are a pair `sender` sends.
pub(crate) fn kind(value: &Value, sender: Mode) -> Result<(), String> {
    let message_type = value.get("type").and_then(Value::as_str);
    let sub_type = value.get("subType").and_then(Value::as_str);
    match (message_type, sub_type) {
        (Some(message_type), Some(sub_type)) if may_send(sender, message_type, sub_type) => Ok(()),
        (Some(message_type), Some(sub_type)) => Err(format!(
            "the {} sent a {message_type} {sub_type}, which only the other side sends (or no side)",
            sender.as_str()
        )),
        _ => Err(format!("{}: type and subType must both be strings", describe_value(value))),
    }
}

/// R-ENV-6: `timeStamp` is an integer, Unix seconds.
pub(crate) fn time_stamp(value: &Value, now: i64) -> Result<(), String> {
    let what = describe_value(value);
    match value.get("timeStamp") {
        Some(Value::Number(number)) => match number.as_i64() {
            Some(seconds) if (seconds - now).abs() <= TIMESTAMP_TOLERANCE_SECONDS => Ok(()),
            Some(seconds) if seconds > now * 100 => {
                Err(format!("{what}: timeStamp {seconds} looks like milliseconds; it must be Unix seconds"))
            }
            Some(seconds) => Err(format!(
                "{what}: timeStamp {seconds} is more than a day from now ({now}): not Unix seconds"
            )),
            None => Err(format!("{what}: timeStamp {number} is not an integer")),
        },
        Some(other) => Err(format!("{what}: timeStamp is {}, not an integer", type_name(other))),
        None => Err(format!("{what}: no timeStamp")),
    }
}

/// R-ENV-7: `payload` is an object for CONNECT and COMMAND, an array for NOTIFICATION.
pub(crate) fn payload_type(value: &Value) -> Result<(), String> {
    let what = describe_value(value);
    let payload = value.get("payload").unwrap_or(&Value::Null);
    match value.get("type").and_then(Value::as_str) {
        Some("CONNECT" | "COMMAND") if payload.is_object() => Ok(()),
        Some("NOTIFICATION") if payload.is_array() => Ok(()),
        Some(message_type @ ("CONNECT" | "COMMAND")) => Err(format!(
            "{what}: payload is {}, a {message_type} payload must be an object",
            type_name(payload)
        )),
        Some("NOTIFICATION") => {
            Err(format!("{what}: payload is {}, a NOTIFICATION payload must be an array", type_name(payload)))
        }
        _ => Ok(()), // an unknown type is R-ENV-5's finding
    }
}

/// R-COMMAND-1: a COMMAND REQUEST payload as §5.2 and D6 describe it.
pub(crate) fn command_request(payload: &Value) -> Result<(), String> {
    let object = payload.as_object().ok_or("payload is not an object")?;
    let uri = string_field(object, "uri")?;
    if uri.contains("://") || !uri.starts_with("/netbackup/") {
        return Err(format!("payload.uri '{uri}' is not a path under /netbackup/"));
    }
    let method = string_field(object, "method")?;
    if !METHODS.contains(&method) {
        return Err(format!("payload.method '{method}' is not one of {}", METHODS.join(", ")));
    }
    if let Some(headers) = object.get("headers") {
        string_map(headers, "payload.headers")?;
    }
    match object.get("parameters") {
        None | Some(Value::String(_)) => Ok(()),
        Some(other) => {
            Err(format!("payload.parameters is {}, not a string (the body as text)", type_name(other)))
        }
    }
}

/// R-COMMAND-5: a COMMAND RESPONSE payload as D7 prescribes (what this project's side sends): an integer
/// `statusCode`, a `headers` object of strings and `body` as a string. Returns the status.
pub(crate) fn command_response(payload: &Value) -> Result<u16, String> {
    let object = payload.as_object().ok_or("payload is not an object")?;
    let status = match object.get("statusCode") {
        Some(Value::Number(number)) => number
            .as_u64()
            .and_then(|status| u16::try_from(status).ok())
            .filter(|status| (100..=599).contains(status))
            .ok_or_else(|| format!("payload.statusCode {number} is not an HTTP status"))?,
        Some(other) => return Err(format!("payload.statusCode is {}, not an integer", type_name(other))),
        None => return Err("payload has no statusCode".into()),
    };
    match object.get("headers") {
        Some(headers) => string_map(headers, "payload.headers")?,
        None => return Err("payload has no headers".into()),
    }
    match object.get("body") {
        Some(Value::String(_)) => Ok(status),
        Some(other) => Err(format!("payload.body is {}, not a string", type_name(other))),
        None => Err("payload has no body (\"\" when there is none)".into()),
    }
}

/// R-COMMAND-6: response header names in lower case, no hop-by-hop header.
pub(crate) fn response_headers(payload: &Value) -> Result<(), String> {
    let Some(headers) = payload.get("headers").and_then(Value::as_object) else {
        return Ok(()); // no headers object is R-COMMAND-5's finding
    };
    for name in headers.keys() {
        if name.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(format!("header '{name}' is not in lower case"));
        }
        if HOP_BY_HOP.contains(&name.as_str()) {
            return Err(format!("hop-by-hop header '{name}' was relayed"));
        }
    }
    Ok(())
}

/// R-COMMAND-7/8/9: an error the service produced itself (D8): one of `statuses`, the origin header and a
/// NetBackup error body.
pub(crate) fn service_error(payload: &Value, statuses: &[u16]) -> Result<(), String> {
    let status = command_response(payload)?;
    if !statuses.contains(&status) {
        let expected: Vec<String> = statuses.iter().map(u16::to_string).collect();
        return Err(format!("answered {status}, not {}", expected.join(" or ")));
    }
    let origin = payload
        .get("headers")
        .and_then(Value::as_object)
        .and_then(|headers| headers.iter().find(|(name, _)| name.eq_ignore_ascii_case("x-nbwss-origin")))
        .and_then(|(_, value)| value.as_str());
    if origin != Some("service") {
        return Err(format!("answered {status} without the header x-nbwss-origin: service"));
    }
    let body = payload.get("body").and_then(Value::as_str).unwrap_or_default();
    let parsed: Value = serde_json::from_str(body).map_err(|_| {
        format!("answered {status}, but the body is not a NetBackup error body: {}", clip(body))
    })?;
    let object = parsed.as_object().ok_or_else(|| format!("the {status} body is not a JSON object"))?;
    if !object.get("errorCode").is_some_and(Value::is_i64) {
        return Err(format!("the {status} body has no integer errorCode"));
    }
    if !object.get("errorMessage").is_some_and(Value::is_string) {
        return Err(format!("the {status} body has no errorMessage string"));
    }
    match object.get("errorDetails") {
        None => Ok(()),
        Some(Value::Array(details)) if details.iter().all(Value::is_string) => Ok(()),
        Some(_) => Err(format!("the {status} body's errorDetails is not an array of strings")),
    }
}

/// R-NOTIF-6: payload elements with `notificationType`, `object` and a non-empty `data` array.
pub(crate) fn notification_payload(payload: &Value) -> Result<(), String> {
    let elements = payload.as_array().ok_or("payload is not an array")?;
    if elements.is_empty() {
        return Err("payload is an empty array: a NOTIFICATION REQUEST carries at least one element".into());
    }
    for (index, element) in elements.iter().enumerate() {
        let object = element.as_object().ok_or_else(|| format!("payload[{index}] is not an object"))?;
        for key in ["notificationType", "object"] {
            match object.get(key) {
                Some(Value::String(text)) if !text.is_empty() => {}
                _ => return Err(format!("payload[{index}].{key} is not a non-empty string")),
            }
        }
        match object.get("data") {
            Some(Value::Array(data)) if !data.is_empty() => {}
            Some(Value::Array(_)) => return Err(format!("payload[{index}].data is empty")),
            _ => return Err(format!("payload[{index}].data is not an array")),
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Integer,
    OneOf(&'static [&'static str]),
}

const JOB_KEYS: [(&str, Kind); 10] = [
    ("scheduleType", Kind::Text),
    ("clientName", Kind::Text),
    ("status", Kind::Integer),
    ("startTime", Kind::Integer),
    ("state", Kind::OneOf(&["QUEUED", "ACTIVE", "DONE"])),
    ("policyName", Kind::Text),
    ("parentJobId", Kind::Integer),
    ("jobId", Kind::Integer),
    ("policyType", Kind::Text),
    ("jobType", Kind::Text),
];

const IMAGE_KEYS: [(&str, Kind); 6] = [
    ("clientType", Kind::Text),
    ("clientName", Kind::Text),
    ("backupTime", Kind::Integer),
    ("createdTime", Kind::Integer),
    ("operationId", Kind::OneOf(&["CREATE", "UPDATE", "DELETE", "NO_LOCAL_COPY_AVAILABLE"])),
    ("backupId", Kind::Text),
];

/// R-NOTIF-7: JOB and IMAGE records carry exactly the guide's keys with their types (D14); returns how
/// many records were checked (elements of other objects are not described by the guide and not checked).
pub(crate) fn notification_records(payload: &Value) -> Result<usize, String> {
    let mut checked = 0;
    for (index, element) in payload.as_array().into_iter().flatten().enumerate() {
        let keys: &[(&str, Kind)] = match element.get("object").and_then(Value::as_str) {
            Some("JOB") => &JOB_KEYS,
            Some("IMAGE") => &IMAGE_KEYS,
            _ => continue,
        };
        if element.get("notificationType").and_then(Value::as_str) != Some("INFO") {
            return Err(format!("payload[{index}].notificationType is not \"INFO\""));
        }
        for (position, record) in
            element.get("data").and_then(Value::as_array).into_iter().flatten().enumerate()
        {
            let path = format!("payload[{index}].data[{position}]");
            let object = record.as_object().ok_or_else(|| format!("{path} is not an object"))?;
            for (key, kind) in keys {
                let value = object.get(*key).ok_or_else(|| format!("{path} has no {key}"))?;
                let good = match kind {
                    Kind::Text => value.is_string(),
                    Kind::Integer => value.is_i64(),
                    Kind::OneOf(allowed) => value.as_str().is_some_and(|text| allowed.contains(&text)),
                };
                if !good {
                    let expected = match kind {
                        Kind::Text => "a string".to_owned(),
                        Kind::Integer => "an integer".to_owned(),
                        Kind::OneOf(allowed) => format!("one of {}", allowed.join(", ")),
                    };
                    return Err(format!("{path}.{key} is {value}, not {expected}"));
                }
            }
            if let Some(extra) = object.keys().find(|key| !keys.iter().any(|(known, _)| known == key)) {
                return Err(format!("{path} has key '{extra}' beyond the guide's {}", keys.len()));
            }
            checked += 1;
        }
    }
    Ok(checked)
}

fn string_field<'a>(object: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    match object.get(key) {
        Some(Value::String(text)) => Ok(text),
        Some(other) => Err(format!("payload.{key} is {}, not a string", type_name(other))),
        None => Err(format!("payload has no {key}")),
    }
}

fn string_map(value: &Value, path: &str) -> Result<(), String> {
    let object = value.as_object().ok_or_else(|| format!("{path} is {}, not an object", type_name(value)))?;
    match object.iter().find(|(_, value)| !value.is_string()) {
        Some((name, value)) => Err(format!("{path}.{name} is {}, not a string", type_name(value))),
        None => Ok(()),
    }
}

/// The JSON type of a value, as reasons name it.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `TYPE SUBTYPE id` of any JSON value, for reasons.
pub(crate) fn describe_value(value: &Value) -> String {
    let text = |key: &str| value.get(key).and_then(Value::as_str).unwrap_or("?").to_owned();
    format!(
        "{} {} {}",
        text("type"),
        text("subType"),
        value.get("id").and_then(Value::as_str).unwrap_or("(no id)")
    )
}

/// At most 80 characters of a text, for reasons.
pub(crate) fn clip(text: &str) -> String {
    let mut clipped: String = text.chars().take(80).collect();
    if clipped.len() < text.len() {
        clipped.push('…');
    }
    clipped
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/../nbwss-protocol/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_guide_examples_pass_the_checks_that_do_not_depend_on_the_clock() {
        for (name, sender) in [
            ("connect-request.json", Mode::Service),
            ("connect-response.json", Mode::Endpoint),
            ("command-request-post-vmservers.json", Mode::Endpoint),
            ("notification-backup-A-parent-job-start.json", Mode::Service),
            ("notification-restore-job-done.json", Mode::Service),
            ("notification-image-deletion.json", Mode::Service),
        ] {
            let value = fixture(name);
            envelope_keys(&value).unwrap();
            version(&value).unwrap();
            id(&value).unwrap();
            kind(&value, sender).unwrap();
            payload_type(&value).unwrap();
            let stamp = value["timeStamp"].as_i64().unwrap();
            time_stamp(&value, stamp + 3600).unwrap();
            match value["type"].as_str() {
                Some("COMMAND") => command_request(&value["payload"]).unwrap(),
                Some("NOTIFICATION") => {
                    notification_payload(&value["payload"]).unwrap();
                    assert!(notification_records(&value["payload"]).unwrap() >= 1, "{name}");
                }
                _ => {}
            }
        }
    }

    #[test]
    fn each_check_names_what_broke_it() {
        let message = json!({"version": "1.0", "id": "A", "type": "CONNECT", "subType": "RESPONSE",
            "timeStamp": 1_000, "payload": []});
        assert!(envelope_keys(&json!([])).unwrap_err().contains("not a JSON object"));
        assert!(envelope_keys(&json!({"id": "A"})).unwrap_err().contains("has no version, type"));
        assert!(version(&json!({"version": "2.0"})).unwrap_err().contains("not \"1.0\""));
        assert!(id(&json!({"id": "x".repeat(129)})).unwrap_err().contains("129 bytes"));
        assert!(kind(&message, Mode::Service).unwrap_err().contains("only the other side"));
        assert!(time_stamp(&message, 1_000_000).unwrap_err().contains("more than a day"));
        assert!(time_stamp(&json!({"timeStamp": 1_700_000_000_000i64}), 1_700_000_000)
            .unwrap_err()
            .contains("milliseconds"));
        assert!(payload_type(&message).unwrap_err().contains("must be an object"));
        assert!(command_request(&json!({"uri": "/other", "method": "GET"}))
            .unwrap_err()
            .contains("/netbackup/"));
        assert!(command_request(&json!({"uri": "/netbackup/x", "method": "get"})).is_err());
        assert!(command_response(&json!({"statusCode": "OK", "headers": {}, "body": ""})).is_err());
        assert!(response_headers(&json!({"headers": {"Date": "x"}})).unwrap_err().contains("lower case"));
        assert!(response_headers(&json!({"headers": {"connection": "close"}}))
            .unwrap_err()
            .contains("hop-by-hop"));
        let error = json!({"statusCode": 400, "headers": {"x-nbwss-origin": "service"},
            "body": "{\"errorCode\": 400, \"errorMessage\": \"bad\", \"errorDetails\": [\"uri\"]}"});
        service_error(&error, &[400]).unwrap();
        assert!(service_error(&error, &[403]).unwrap_err().contains("not 403"));
        let no_origin = json!({"statusCode": 400, "headers": {}, "body": "{}"});
        assert!(service_error(&no_origin, &[400]).unwrap_err().contains("x-nbwss-origin"));
        assert!(notification_payload(&json!([])).unwrap_err().contains("empty array"));
        let extra = json!([{"notificationType": "INFO", "object": "IMAGE", "data": [{"clientType": "STANDARD",
            "clientName": "c", "backupTime": 1, "createdTime": 2, "operationId": "CREATE", "backupId": "c_1",
            "more": 1}]}]);
        assert!(notification_records(&extra).unwrap_err().contains("'more'"));
    }
}

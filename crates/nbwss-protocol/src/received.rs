//! Liberal reception of NOTIFICATION REQUESTs (an endpoint's side): every record is kept as it was
//! received, with what in it does not conform to the guide's record layout (§6.3, D14), so that a record a
//! peer shapes differently is stored and acknowledged, never refused and resent for ever.

use serde_json::{Map, Value};

use crate::codec::Codec;
use crate::fields::type_name;
use crate::{Body, DecodeError, DecodeErrorKind, FieldError, MessageType, SubType};

/// The keys of a JOB record, in the guide's order, and whether each is an integer (else a string).
pub const JOB_KEYS: [(&str, bool); 10] = [
    ("scheduleType", false),
    ("clientName", false),
    ("status", true),
    ("startTime", true),
    ("state", false),
    ("policyName", false),
    ("parentJobId", true),
    ("jobId", true),
    ("policyType", false),
    ("jobType", false),
];

/// The keys of an IMAGE record, in the guide's order, and whether each is an integer (else a string).
pub const IMAGE_KEYS: [(&str, bool); 6] = [
    ("clientType", false),
    ("clientName", false),
    ("backupTime", true),
    ("createdTime", true),
    ("operationId", false),
    ("backupId", false),
];

/// A NOTIFICATION REQUEST as received: its id and every record, each with what does not conform.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedNotification {
    /// The message id (the acknowledgement echoes it).
    pub id: String,
    /// Every record of every payload element, in order.
    pub records: Vec<ReceivedRecord>,
    /// What does not conform in the message itself (a `timeStamp`, a payload without records).
    pub problems: Vec<FieldError>,
}

/// One record as received.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedRecord {
    /// The element's `notificationType` (`""` when it has none that is a string).
    pub notification_type: String,
    /// The element's `object` (`""` when it has none that is a string).
    pub object: String,
    /// The record exactly as received, unknown keys included.
    pub record: Value,
    /// What does not conform, in the record, its element or its message; empty when it conforms.
    pub problems: Vec<FieldError>,
}

impl ReceivedRecord {
    /// Whether the record, its element and its message follow the guide's layout.
    pub fn conforms(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Codec {
    /// Reads a NOTIFICATION REQUEST liberally. It fails only when the message cannot be acknowledged
    /// meaningfully: too big, not JSON, no `id`, not a NOTIFICATION REQUEST, or an unsupported `version`
    /// (D1). Anything else (a missing `timeStamp`, an element without `data`, a record with a key missing,
    /// null, of another type, or unknown) is kept and named in the problems.
    pub fn decode_notification_request(&self, text: &str) -> Result<ReceivedNotification, DecodeError> {
        let value = self.parse(text)?;
        let mut problems = Vec::new();
        match self.decode_value(&value) {
            Ok(message) if matches!(message.body, Body::NotificationRequest(_)) => {}
            Ok(message) => {
                return Err(DecodeError::new(
                    DecodeErrorKind::NotEnvelope,
                    FieldError::new(
                        "type",
                        format!(
                            "{} {} is not a NOTIFICATION REQUEST",
                            message.message_type(),
                            message.sub_type()
                        ),
                    ),
                ))
            }
            Err(error)
                if error.kind == DecodeErrorKind::Invalid
                    && error.message_type == Some((MessageType::Notification, SubType::Request))
                    && error.field.path != "version" =>
            {
                if value.get("timeStamp").is_none_or(|time| time.as_i64().is_none()) {
                    let found = value.get("timeStamp").map_or("missing".to_owned(), |time| {
                        format!("must be an integer, not {}", type_name(time))
                    });
                    problems.push(FieldError::new("timeStamp", found));
                }
            }
            Err(error) => return Err(error),
        }
        let id = value.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
        let elements: Vec<(String, &Value)> = match value.get("payload") {
            Some(Value::Array(items)) => {
                items.iter().enumerate().map(|(index, item)| (format!("payload[{index}]"), item)).collect()
            }
            None | Some(Value::Null) => {
                problems.push(FieldError::new("payload", "missing: the message carries no records"));
                Vec::new()
            }
            Some(other) => {
                problems.push(FieldError::new(
                    "payload",
                    format!("must be an array of notification groups, not {}", type_name(other)),
                ));
                vec![("payload".to_owned(), other)]
            }
        };
        let mut records = Vec::new();
        for (path, element) in elements {
            read_element(&path, element, &problems, &mut records);
        }
        Ok(ReceivedNotification { id, records, problems })
    }
}

/// Reads one payload element into records; an element without a `data` array is kept as one record.
fn read_element(path: &str, element: &Value, inherited: &[FieldError], records: &mut Vec<ReceivedRecord>) {
    let mut problems = inherited.to_vec();
    let Value::Object(map) = element else {
        problems.push(FieldError::new(path, format!("must be an object, not {}", type_name(element))));
        records.push(ReceivedRecord {
            notification_type: String::new(),
            object: String::new(),
            record: element.clone(),
            problems,
        });
        return;
    };
    let text = |key: &str, problems: &mut Vec<FieldError>| match map.get(key) {
        Some(Value::String(text)) if !text.trim().is_empty() => text.clone(),
        Some(Value::String(_)) => {
            problems.push(FieldError::new(format!("{path}.{key}"), "must not be empty"));
            String::new()
        }
        Some(other) => {
            problems.push(FieldError::new(
                format!("{path}.{key}"),
                format!("must be a string, not {}", type_name(other)),
            ));
            String::new()
        }
        None => {
            problems.push(FieldError::new(format!("{path}.{key}"), "missing"));
            String::new()
        }
    };
    let notification_type = text("notificationType", &mut problems);
    let object = text("object", &mut problems);
    match map.get("data") {
        Some(Value::Array(data)) => {
            for record in data {
                let mut problems = problems.clone();
                problems.extend(record_problems(&object, record));
                records.push(ReceivedRecord {
                    notification_type: notification_type.clone(),
                    object: object.clone(),
                    record: record.clone(),
                    problems,
                });
            }
        }
        other => {
            let found = other
                .map_or("missing".to_owned(), |data| format!("must be an array, not {}", type_name(data)));
            problems.push(FieldError::new(
                format!("{path}.data"),
                format!("{found} (the element is kept whole)"),
            ));
            records.push(ReceivedRecord { notification_type, object, record: element.clone(), problems });
        }
    }
}

/// What in a record does not follow the guide's layout for its object (D14: exactly the guide's keys, with
/// their types). Paths are relative to the record.
pub fn record_problems(object: &str, record: &Value) -> Vec<FieldError> {
    let keys: &[(&str, bool)] = match object {
        "JOB" => &JOB_KEYS,
        "IMAGE" => &IMAGE_KEYS,
        other => return vec![FieldError::new("object", format!("'{other}' is not JOB or IMAGE"))],
    };
    let Value::Object(map) = record else {
        return vec![FieldError::new("", format!("must be an object, not {}", type_name(record)))];
    };
    let mut problems = Vec::new();
    for (key, integer) in keys {
        let expected = if *integer { "an integer" } else { "a string" };
        match map.get(*key) {
            None => problems.push(FieldError::new(*key, "missing")),
            Some(value) if *integer && value.as_i64().is_some() => {}
            Some(Value::String(_)) if !*integer => {}
            Some(value) => {
                problems.push(FieldError::new(*key, format!("must be {expected}, not {}", type_name(value))))
            }
        }
    }
    problems.extend(unknown_keys(map, keys).map(|key| {
        FieldError::new(
            key,
            format!("is not a key of a{} {object} record (kept)", if object == "IMAGE" { "n" } else { "" }),
        )
    }));
    problems
}

fn unknown_keys<'a>(
    map: &'a Map<String, Value>,
    keys: &'a [(&str, bool)],
) -> impl Iterator<Item = &'a String> {
    map.keys().filter(|key| !keys.iter().any(|(known, _)| known == key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = r#"{"scheduleType":"ST_FULL","clientName":"c","status":0,"startTime":1,"state":"DONE",
        "policyName":"p","parentJobId":1,"jobId":1,"policyType":"STANDARD","jobType":"BACKUP"}"#;

    fn message(payload: &str) -> String {
        format!(
            r#"{{"version":"1.0","id":"N1","type":"NOTIFICATION","subType":"REQUEST","timeStamp":1,"payload":{payload}}}"#
        )
    }

    fn shown(record: &ReceivedRecord) -> Vec<String> {
        record.problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_conforming_message_reads_as_received_without_problems() {
        let text =
            message(&format!(r#"[{{"notificationType":"INFO","object":"JOB","data":[{JOB},{JOB}]}}]"#));
        let received = Codec::default().decode_notification_request(&text).unwrap();
        assert_eq!((received.id.as_str(), received.records.len()), ("N1", 2));
        assert!(received.records.iter().all(ReceivedRecord::conforms));
        assert_eq!(received.records[0].record, serde_json::from_str::<Value>(JOB).unwrap());
        assert_eq!(
            (received.records[0].object.as_str(), received.records[0].notification_type.as_str()),
            ("JOB", "INFO")
        );
    }

    #[test]
    fn records_that_differ_are_kept_and_their_problems_named() {
        let extra = JOB.replace(r#""status":0"#, r#""status":0,"retries":2"#);
        let null = JOB.replace(r#""policyName":"p""#, r#""policyName":null"#);
        let string = JOB.replace(r#""jobId":1"#, r#""jobId":"1""#);
        let missing = JOB.replace(r#""state":"DONE","#, "");
        let text = message(&format!(
            r#"[{{"notificationType":"INFO","object":"JOB","data":[{extra},{null},{string},{missing}]}},
               {{"notificationType":"INFO","object":"POLICY","data":[{{"x":1}}]}},
               {{"object":"IMAGE","records":[]}}, 7]"#
        ));
        let received = Codec::default().decode_notification_request(&text).unwrap();
        let problems: Vec<Vec<String>> = received.records.iter().map(shown).collect();
        assert_eq!(
            problems,
            [
                vec!["retries: is not a key of a JOB record (kept)".to_owned()],
                vec!["policyName: must be a string, not null".to_owned()],
                vec!["jobId: must be an integer, not a string".to_owned()],
                vec!["state: missing".to_owned()],
                vec!["object: 'POLICY' is not JOB or IMAGE".to_owned()],
                vec![
                    "payload[2].notificationType: missing".to_owned(),
                    "payload[2].data: missing (the element is kept whole)".to_owned()
                ],
                vec!["payload[3]: must be an object, not a number".to_owned()],
            ]
        );
        assert_eq!(received.records[0].record["retries"], 2, "unknown keys are kept");
        assert_eq!(received.records[2].record["jobId"], "1", "values are kept as received");
    }

    #[test]
    fn only_an_unusable_envelope_is_refused() {
        let codec = Codec::default();
        let no_time = message("[]").replace(r#""timeStamp":1,"#, "");
        let received = codec.decode_notification_request(&no_time).unwrap();
        assert_eq!(received.problems[0].to_string(), "timeStamp: missing");
        let object_payload =
            message(&format!(r#"{{"notificationType":"INFO","object":"JOB","data":[{JOB}]}}"#));
        let received = codec.decode_notification_request(&object_payload).unwrap();
        assert_eq!(received.records.len(), 1);
        assert!(shown(&received.records[0])[0].starts_with("payload: must be an array"), "{received:?}");
        for refused in [
            message("[]").replace(r#""version":"1.0""#, r#""version":"2.0""#),
            message("[]").replace(r#""id":"N1","#, ""),
            message("[]").replace("REQUEST", "RESPONSE"),
            "not json".to_owned(),
        ] {
            assert!(codec.decode_notification_request(&refused).is_err(), "{refused}");
        }
    }
}

//! The messages the kit sends. Well-formed ones are built with `nbwss-protocol` (its encoder is checked
//! against the guide's examples by golden tests); deliberate deviations (extra keys, padding to a size,
//! malformed COMMANDs) are made on the JSON value afterwards.

use nbwss_protocol::{
    unix_now, Body, Codec, CommandRequest, CommandResponse, ConnectRequest, ConnectResponse, ImageOperation,
    ImageRecord, JobRecord, JobState, JobType, Message, Method, NotificationGroup, ScheduleType, Secret,
};
use serde_json::{json, Value};

use crate::error::SetupError;

/// Client name in the records the kit sends, so that an endpoint's operator can find and delete them.
pub const CONFORMANCE_CLIENT: &str = "conformance.nbwss.invalid";
/// Policy name in the job records the kit sends.
pub const CONFORMANCE_POLICY: &str = "nbwss-conformance";
/// Unknown key used to pad messages to an exact size (D1: unknown keys are ignored).
const PADDING_KEY: &str = "nbwssConformancePadding";

/// A message ready to send: its id and text.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub id: String,
    pub text: String,
}

impl Outgoing {
    fn of(message: &Message) -> Self {
        Self { id: message.id.clone(), text: Codec::default().encode(message) }
    }

    fn of_value(id: String, value: &Value) -> Self {
        Self { id, text: value.to_string() }
    }
}

pub(crate) fn connect_request(token: &str) -> Outgoing {
    Outgoing::of(&Message::new(Body::ConnectRequest(ConnectRequest { token: Secret::new(token) })))
}

pub(crate) fn connect_response(id: &str, valid: bool) -> Outgoing {
    Outgoing::of(&Message::with_id(id, Body::ConnectResponse(ConnectResponse { valid })))
}

/// A JOB record of the kit's own, recognisable by its client and policy names.
fn job(job_id: i64) -> JobRecord {
    JobRecord {
        schedule_type: ScheduleType::Full,
        client_name: CONFORMANCE_CLIENT.into(),
        status: 0,
        start_time: unix_now(),
        state: JobState::Done,
        policy_name: CONFORMANCE_POLICY.into(),
        parent_job_id: job_id,
        job_id,
        policy_type: "STANDARD".into(),
        job_type: JobType::Backup,
    }
}

fn image(backup_time: i64) -> ImageRecord {
    ImageRecord {
        client_type: "STANDARD".into(),
        client_name: CONFORMANCE_CLIENT.into(),
        backup_time,
        created_time: unix_now(),
        operation_id: ImageOperation::Create,
        backup_id: format!("{CONFORMANCE_CLIENT}_{backup_time}"),
    }
}

/// A NOTIFICATION REQUEST with one JOB record.
pub(crate) fn notification_single(job_id: i64) -> Outgoing {
    Outgoing::of(&Message::new(Body::NotificationRequest(vec![NotificationGroup::jobs(vec![job(job_id)])])))
}

/// A NOTIFICATION REQUEST with a JOB element and an IMAGE element of two records each.
pub(crate) fn notification_batch(job_id: i64) -> Outgoing {
    let now = unix_now();
    Outgoing::of(&Message::new(Body::NotificationRequest(vec![
        NotificationGroup::jobs(vec![job(job_id), job(job_id + 1)]),
        NotificationGroup::images(vec![image(now - job_id % 1000), image(now - job_id % 1000 - 1)]),
    ])))
}

/// A NOTIFICATION REQUEST with unknown keys in the envelope, the element and the record.
pub(crate) fn notification_with_extra_keys(job_id: i64) -> Outgoing {
    let message = Message::new(Body::NotificationRequest(vec![NotificationGroup::jobs(vec![job(job_id)])]));
    let mut value = message.to_value();
    value["nbwssConformanceExtra"] = json!({"note": "unknown keys must be ignored (D1)"});
    value["payload"][0]["nbwssConformanceExtra"] = json!(true);
    value["payload"][0]["data"][0]["nbwssConformanceExtra"] = json!(1);
    Outgoing::of_value(message.id, &value)
}

/// A NOTIFICATION REQUEST of exactly `size` bytes, padded with an unknown envelope key.
pub(crate) fn notification_of_size(job_id: i64, size: usize) -> Result<Outgoing, SetupError> {
    let message = Message::new(Body::NotificationRequest(vec![NotificationGroup::jobs(vec![job(job_id)])]));
    padded(message.id.clone(), message.to_value(), size)
}

/// A COMMAND REQUEST.
pub(crate) fn command(method: Method, uri: &str) -> Message {
    let mut request = CommandRequest::new(method, uri);
    request.headers.set("Accept", "application/vnd.netbackup+json;version=1.0");
    Message::new(Body::CommandRequest(request))
}

pub(crate) fn command_text(method: Method, uri: &str) -> Outgoing {
    Outgoing::of(&command(method, uri))
}

/// A GET COMMAND with unknown keys in the envelope and the payload.
pub(crate) fn command_with_extra_keys(uri: &str) -> Outgoing {
    let message = command(Method::Get, uri);
    let mut value = message.to_value();
    value["nbwssConformanceExtra"] = json!({"note": "unknown keys must be ignored (D1)"});
    value["payload"]["nbwssConformanceExtra"] = json!(true);
    Outgoing::of_value(message.id, &value)
}

/// A GET COMMAND of exactly `size` bytes, padded with an unknown envelope key.
pub(crate) fn command_of_size(uri: &str, size: usize) -> Result<Outgoing, SetupError> {
    let message = command(Method::Get, uri);
    padded(message.id.clone(), message.to_value(), size)
}

/// A COMMAND REQUEST changed by `change`, with a fresh id (malformed on purpose).
pub(crate) fn command_changed(uri: &str, change: impl FnOnce(&mut Value)) -> Outgoing {
    let message = command(Method::Get, uri);
    let mut value = message.to_value();
    change(&mut value);
    Outgoing::of_value(message.id, &value)
}

/// The kit's answer to a COMMAND when it plays the service: 200 with a JSON body naming the request's id
/// (D7 as this project sends it).
pub(crate) fn command_response(id: &str) -> Outgoing {
    let mut response = CommandResponse {
        status_code: 200,
        headers: Default::default(),
        body: json!({"nbwssConformance": id}).to_string(),
    };
    response.headers.set("content-type", "application/json");
    Outgoing::of(&Message::with_id(id, Body::CommandResponse(response)))
}

/// The same answer in the Spring style D7 asks endpoints to accept too: `statusCode` as a reason string,
/// `statusCodeValue`, and `body` as a JSON value.
pub(crate) fn command_response_spring(id: &str) -> Outgoing {
    let mut value = Message::with_id(
        id,
        Body::CommandResponse(CommandResponse {
            status_code: 200,
            headers: Default::default(),
            body: String::new(),
        }),
    )
    .to_value();
    value["payload"] = json!({
        "statusCode": "OK",
        "statusCodeValue": 200,
        "headers": {"content-type": ["application/json"]},
        "body": {"nbwssConformance": id},
    });
    Outgoing::of_value(id.to_owned(), &value)
}

/// A NOTIFICATION RESPONSE with `payload` (`[]` as D11 prescribes, or anything to check leniency).
pub(crate) fn acknowledgement(id: &str, payload: Value) -> Outgoing {
    Outgoing::of(&Message::with_id(id, Body::NotificationResponse(payload)))
}

/// `value` as text of exactly `size` bytes, padded with an unknown envelope key.
fn padded(id: String, mut value: Value, size: usize) -> Result<Outgoing, SetupError> {
    value[PADDING_KEY] = Value::String(String::new());
    let base = value.to_string().len();
    let Some(fill) = size.checked_sub(base) else {
        return Err(SetupError::new(format!(
            "--max-message-bytes {size} is smaller than the smallest message the kit sends ({base} bytes)"
        )));
    };
    value[PADDING_KEY] = Value::String("x".repeat(fill));
    let text = value.to_string();
    debug_assert_eq!(text.len(), size);
    Ok(Outgoing { id, text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_messages_have_exactly_the_size_asked_and_decode() {
        for size in [2_000, 65_536, 65_537] {
            let message = notification_of_size(7, size).unwrap();
            assert_eq!(message.text.len(), size);
            let decoded = Codec::new(size).decode(&message.text).unwrap();
            assert_eq!(decoded.id, message.id);
            assert_eq!(command_of_size("/netbackup/ping", size).unwrap().text.len(), size);
        }
        assert!(notification_of_size(7, 10).is_err());
    }

    #[test]
    fn spring_style_answers_decode_as_the_same_answer() {
        let codec = Codec::default();
        let plain = codec.decode(&command_response("ID").text).unwrap();
        let spring = codec.decode(&command_response_spring("ID").text).unwrap();
        let (Body::CommandResponse(plain), Body::CommandResponse(spring)) = (plain.body, spring.body) else {
            panic!("not COMMAND RESPONSEs");
        };
        assert_eq!(plain.status_code, spring.status_code);
        assert_eq!(
            serde_json::from_str::<Value>(&plain.body).unwrap(),
            serde_json::from_str::<Value>(&spring.body).unwrap()
        );
    }
}

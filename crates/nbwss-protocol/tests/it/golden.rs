//! The guide's example messages, run through one data-driven check.
//!
//! Complete examples must decode to the expected typed message and re-encode to an equal JSON value.
//! Partial examples (cut off in the guide) must decode as far as their keys go: either fully, or failing only
//! on a key the cut removed.

use nbwss_protocol::{
    Body, Codec, CommandRequest, ConnectRequest, ConnectResponse, DecodeErrorKind, ImageOperation,
    ImageRecord, JobRecord, JobState, JobType, Message, Method, NotificationGroup, ScheduleType, Secret,
};
use serde_json::Value;

use crate::fixtures;

/// What a partial example may lack: the JSON path the decoder must stop at.
const PARTIAL_CUTS: &[(&str, &str)] = &[
    ("command-response-get-vcenter2.partial.json", "payload.statusCode"),
    ("notification-request-format-example.partial.json", "payload[0].data"),
    // The AIR example is cut after its first record, which is itself complete: it decodes fully.
    ("notification-air-image-multiple.partial.json", ""),
];

fn read(name: &str) -> String {
    std::fs::read_to_string(fixtures().join(name)).unwrap_or_else(|error| panic!("{name}: {error}"))
}

fn headers(pairs: &[(&str, &str)]) -> nbwss_protocol::Headers {
    pairs.iter().copied().collect()
}

const VMSERVER_BODY: &str = "{\"serverName\": \"vcenterServer1\", \"proxyServerName\": \"\",\"vmType\": \"VMWARE_VIRTUAL_CENTER_SERVER\",\"userId\": \"administrator\", \"password\": \"password@123\",\"port\": 0 }";
const JWT: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1N";

fn expected(name: &str) -> Option<Message> {
    let message = |id: &str, time_stamp: i64, body: Body| Message {
        version: "1.0".into(),
        id: id.into(),
        time_stamp,
        body,
    };
    let vnd = "application/vnd.netbackup+json;version=1.0";
    Some(match name {
        "connect-request.json" => message(
            "0CEAB6C2-0BBF-4F60-974D-C1F3EF39B872",
            1444944181,
            Body::ConnectRequest(ConnectRequest { token: Secret::new("qwerrtrtrtrt2234344===") }),
        ),
        "connect-response.json" => message(
            "0CEAB6C2-0BBF-4F60-974D-C1F3EF39B872",
            1444944191,
            Body::ConnectResponse(ConnectResponse { valid: true }),
        ),
        "command-request-get-vcenter1.json" => message(
            "9CD2B69F-0BBF-3F60-974D-C1F2EF37B872",
            1444806222,
            Body::CommandRequest(CommandRequest {
                uri: "/netbackup/config/servers/vmservers/vCenter1.domain.com".into(),
                method: Method::Get,
                headers: headers(&[("Content-Type", vnd)]),
                parameters: None,
            }),
        ),
        "command-request-get-vcenter2.json" => message(
            "9CD2B89F-0BBF-4F60-974D-C1F3EF39B872",
            1444806222,
            Body::CommandRequest(CommandRequest {
                uri: "/netbackup/config/servers/vmservers/vCenter2.domain.com".into(),
                method: Method::Get,
                headers: headers(&[("Content-Type", vnd), ("Authorization", JWT)]),
                parameters: None,
            }),
        ),
        "command-request-post-vmservers.json" | "command-request-post-vmservers-nbu80.json" => {
            let content_type = if name.contains("nbu80") { "application/json" } else { vnd };
            message(
                "99B9BD8C-9E3E-406A-A7EE-33B88531C7D9",
                1444856264,
                Body::CommandRequest(CommandRequest {
                    uri: "/netbackup/config/servers/vmservers".into(),
                    method: Method::Post,
                    headers: headers(&[("Content-Type", content_type), ("Authorization", JWT)]),
                    parameters: Some(VMSERVER_BODY.into()),
                }),
            )
        }
        "notification-backup-A-parent-job-start.json" => message(
            "EDD85CD7-8555-47E4-8A19-01C35093F220",
            1459811679,
            Body::NotificationRequest(vec![NotificationGroup::jobs(vec![JobRecord {
                schedule_type: ScheduleType::Full,
                client_name: "masterserver2.domain.com".into(),
                status: 0,
                start_time: 1459829674,
                state: JobState::Active,
                policy_name: "vmware2".into(),
                parent_job_id: 144,
                job_id: 144,
                policy_type: "VMWARE".into(),
                job_type: JobType::Backup,
            }])]),
        ),
        "notification-restore-job-done.json" => message(
            "8E909940-AD50-4543-8AEA-B52003818925",
            1459812309,
            Body::NotificationRequest(vec![NotificationGroup::jobs(vec![JobRecord {
                schedule_type: ScheduleType::Full,
                client_name: "masterserver2.domain.com".into(),
                status: 0,
                start_time: 1459830185,
                state: JobState::Done,
                policy_name: String::new(),
                parent_job_id: 147,
                job_id: 147,
                policy_type: "STANDARD".into(),
                job_type: JobType::Restore,
            }])]),
        ),
        "notification-image-deletion.json" => message(
            "15AAF7BA-C082-4996-A55D-7C4745D4D1E9",
            1459814495,
            Body::NotificationRequest(vec![NotificationGroup::images(vec![ImageRecord {
                client_type: "VMWARE".into(),
                client_name: "localhost".into(),
                backup_time: 1458601200,
                created_time: 1459832492,
                operation_id: ImageOperation::Delete,
                backup_id: "localhost_1458601200".into(),
            }])]),
        ),
        "notification-air-image-multiple.partial.json" => message(
            "E38DD102-98BC-4590-8E09-85B0A0EA31CE",
            1471471464,
            Body::NotificationRequest(vec![NotificationGroup::images(vec![ImageRecord {
                client_type: "STANDARD".into(),
                client_name: "localhost".into(),
                backup_time: 1471469619,
                created_time: 1471485862,
                operation_id: ImageOperation::Update,
                backup_id: "localhost_1471469619".into(),
            }])]),
        ),
        _ => return None,
    })
}

#[test]
fn every_guide_example_is_checked() {
    let codec = Codec::default();
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 12, "the guide has 12 example files: {names:?}");
    for name in &names {
        let text = read(name);
        let original: Value = serde_json::from_str(&text).unwrap();
        let decoded = codec.decode(&text);
        match PARTIAL_CUTS.iter().find(|(partial, _)| partial == name) {
            None => {
                let message = decoded.unwrap_or_else(|error| panic!("{name}: {error}"));
                assert_eq!(Some(&message), expected(name).as_ref(), "{name}: typed message");
                let encoded: Value = serde_json::from_str(&codec.encode(&message)).unwrap();
                assert_eq!(encoded, original, "{name}: re-encoding");
                // The guide's key order is kept too.
                assert_eq!(codec.encode(&message), original.to_string(), "{name}: key order");
            }
            Some((_, "")) => {
                let message = decoded.unwrap_or_else(|error| panic!("{name}: {error}"));
                assert_eq!(Some(&message), expected(name).as_ref(), "{name}: typed message");
            }
            Some((_, cut)) => {
                let error = decoded.expect_err(name);
                assert_eq!(error.kind, DecodeErrorKind::Invalid, "{name}: {error}");
                assert_eq!(error.field.path, *cut, "{name}: {error}");
                assert_eq!(error.field.rule, "missing", "{name}: {error}");
                // The envelope before the cut was read.
                assert_eq!(error.id.as_deref(), original["id"].as_str(), "{name}");
            }
        }
    }
}

#[test]
fn partial_command_response_headers_are_what_the_guide_shows() {
    // Complete the cut-off response with the keys of D7 and check the guide's headers survive.
    let mut value: Value = serde_json::from_str(&read("command-response-get-vcenter2.partial.json")).unwrap();
    value["payload"]["statusCode"] = 200.into();
    let message = Codec::default().decode(&value.to_string()).unwrap();
    let Body::CommandResponse(response) = message.body else { panic!("not a COMMAND RESPONSE") };
    assert_eq!(response.status_code, 200);
    assert_eq!(response.headers.get("date"), Some("Thu, 14 Jan 2016 20:58:11 GMT"));
    assert_eq!(response.headers.get("cache-control"), Some("private"));
    assert_eq!(response.body, "");
}

/// D11: an acknowledgement is matched by its id whatever its payload. Each shape an endpoint written from
/// the guide alone might send decodes to a NOTIFICATION RESPONSE carrying the payload as received.
#[test]
fn every_acknowledgement_payload_shape_is_an_acknowledgement() {
    let id = "EDD85CD7-8555-47E4-8A19-01C35093F220";
    let envelope = |payload: Option<&str>| {
        let payload = payload.map(|payload| format!(r#","payload":{payload}"#)).unwrap_or_default();
        format!(
            r#"{{"version":"1.0","id":"{id}","type":"NOTIFICATION","subType":"RESPONSE","timeStamp":1459811680{payload}}}"#
        )
    };
    let shapes: [(Option<&str>, Value); 6] = [
        (Some("[]"), serde_json::json!([])),
        (Some("{}"), serde_json::json!({})),
        (Some(r#"{"status":"RECEIVED"}"#), serde_json::json!({"status": "RECEIVED"})),
        (Some(r#"[{"id":"x","status":"OK"}]"#), serde_json::json!([{"id": "x", "status": "OK"}])),
        (Some("null"), Value::Null),
        (None, Value::Null),
    ];
    let codec = Codec::default();
    for (payload, expected) in shapes {
        let text = envelope(payload);
        let message = codec.decode(&text).unwrap_or_else(|error| panic!("{text}: {error}"));
        assert_eq!(message.id, id, "{text}");
        assert_eq!(message.body, Body::NotificationResponse(expected), "{text}");
    }
}

/// A RESPONSE whose envelope is malformed past its id still names the request it answers (D11); a request
/// or an unreadable envelope does not.
#[test]
fn a_malformed_response_still_names_its_request() {
    let codec = Codec::default();
    let answering = [
        r#"{"version":"2.0","id":"A1","type":"NOTIFICATION","subType":"RESPONSE","timeStamp":1,"payload":[]}"#,
        r#"{"version":"1.0","id":"A2","type":"NOTIFICATION","subType":"RESPONSE","timeStamp":"1","payload":[]}"#,
        r#"{"id":"A3","type":"NOTIFICATION","subType":"RESPONSE","payload":{}}"#,
        r#"{"version":"1.0","id":"A4","type":"COMMAND","subType":"RESPONSE","timeStamp":1,"payload":{"statusCode":"x"}}"#,
        r#"{"version":"1.0","id":"A5","type":"CONNECT","subType":"RESPONSE","timeStamp":1,"payload":{"valid":"yes"}}"#,
    ];
    for (index, text) in answering.iter().enumerate() {
        let error = codec.decode(text).expect_err(text);
        assert_eq!(error.response_id(), Some(format!("A{}", index + 1).as_str()), "{text}: {error}");
    }
    let not_answering = [
        r#"{"version":"1.0","id":"R1","type":"COMMAND","subType":"REQUEST","timeStamp":1,"payload":{}}"#,
        r#"{"version":"1.0","id":"R2","type":"NOTIFY","subType":"RESPONSE","timeStamp":1,"payload":[]}"#,
        r#"{"version":"1.0","type":"NOTIFICATION","subType":"RESPONSE","timeStamp":1,"payload":[]}"#,
    ];
    for text in not_answering {
        let error = codec.decode(text).expect_err(text);
        assert_eq!(error.response_id(), None, "{text}: {error}");
    }
}

//! Malformed messages, each with the error it must produce; and the tolerated variants of D7.

use nbwss_protocol::{Body, Codec, DecodeErrorKind, MessageType, SubType};
use serde_json::{json, Value};

fn envelope(message_type: &str, sub_type: &str, payload: Value) -> Value {
    json!({"version": "1.0", "id": "ID-1", "type": message_type, "subType": sub_type,
           "timeStamp": 1444944181, "payload": payload})
}

fn command(payload: Value) -> String {
    envelope("COMMAND", "REQUEST", payload).to_string()
}

fn with(mut value: Value, key: &str, replacement: Option<Value>) -> String {
    let object = value.as_object_mut().unwrap();
    match replacement {
        Some(replacement) => object.insert(key.into(), replacement),
        None => object.remove(key),
    };
    value.to_string()
}

#[test]
fn each_malformed_message_gets_its_error() {
    use DecodeErrorKind::{Invalid, NotEnvelope, NotJson};
    let connect = envelope("CONNECT", "REQUEST", json!({"token": "t"}));
    let get = json!({"uri": "/netbackup/admin/jobs", "method": "GET", "headers": {}});
    let job = json!({"scheduleType": "ST_FULL", "clientName": "c", "status": 0, "startTime": 1, "state": "DONE",
                     "policyName": "p", "parentJobId": 1, "jobId": 1, "policyType": "STANDARD", "jobType": "BACKUP"});
    let mut job_without_id = job.clone();
    job_without_id.as_object_mut().unwrap().remove("jobId");
    let cases: Vec<(String, DecodeErrorKind, &str)> = vec![
        ("{\"version\": ".into(), NotJson, "not valid JSON: EOF while parsing"),
        ("[1, 2]".into(), NotEnvelope, "not an NBWSS message: must be a JSON object, not an array"),
        (with(connect.clone(), "id", None), NotEnvelope, "not an NBWSS message: id: missing"),
        (with(connect.clone(), "id", Some(json!(""))), NotEnvelope, "id: must not be empty"),
        (with(connect.clone(), "id", Some(json!(7))), NotEnvelope, "id: must be a string, not a number"),
        (
            with(connect.clone(), "id", Some(json!("x".repeat(129)))),
            NotEnvelope,
            "id: must be at most 128 bytes",
        ),
        (
            with(connect.clone(), "type", Some(json!("HELLO"))),
            NotEnvelope,
            "type: 'HELLO' is not one of CONNECT, COMMAND, NOTIFICATION",
        ),
        (with(connect.clone(), "type", Some(json!("connect"))), NotEnvelope, "type: 'connect' is not one of"),
        (
            with(connect.clone(), "subType", Some(json!("REPLY"))),
            NotEnvelope,
            "subType: 'REPLY' is not one of REQUEST, RESPONSE",
        ),
        (with(connect.clone(), "subType", None), NotEnvelope, "subType: missing"),
        (
            with(connect.clone(), "version", Some(json!("2.0"))),
            Invalid,
            "version: '2.0' is not supported (this implementation speaks 1.x)",
        ),
        (with(connect.clone(), "version", None), Invalid, "version: missing"),
        (
            with(connect.clone(), "timeStamp", Some(json!("1444944181"))),
            Invalid,
            "timeStamp: must be an integer, not a string",
        ),
        (with(connect.clone(), "payload", None), Invalid, "payload: missing"),
        (
            with(connect.clone(), "payload", Some(json!([]))),
            Invalid,
            "payload: must be an object for CONNECT messages, not an array",
        ),
        (envelope("CONNECT", "REQUEST", json!({})).to_string(), Invalid, "payload.token: missing"),
        (
            envelope("CONNECT", "RESPONSE", json!({"valid": "true"})).to_string(),
            Invalid,
            "payload.valid: must be a boolean (true or false), not a string",
        ),
        (
            envelope("NOTIFICATION", "REQUEST", json!({"data": []})).to_string(),
            Invalid,
            "payload: must be an array for NOTIFICATION messages, not an object",
        ),
        (
            envelope("COMMAND", "REQUEST", json!([get])).to_string(),
            Invalid,
            "payload: must be an object for COMMAND messages, not an array",
        ),
        (command(json!({"method": "GET"})), Invalid, "payload.uri: missing"),
        (
            command(json!({"uri": "/api/jobs", "method": "GET"})),
            Invalid,
            "payload.uri: must start with /netbackup/",
        ),
        (
            command(json!({"uri": "https://other:1556/netbackup/admin/jobs", "method": "GET"})),
            Invalid,
            "payload.uri: must be a path on the primary server, not an absolute URL",
        ),
        (
            command(json!({"uri": "/netbackup/../admin", "method": "GET"})),
            Invalid,
            "payload.uri: must not contain . or .. segments",
        ),
        (command(json!({"uri": "/netbackup/admin/jobs"})), Invalid, "payload.method: missing"),
        (
            command(json!({"uri": "/netbackup/admin/jobs", "method": "TRACE"})),
            Invalid,
            "payload.method: 'TRACE' is not one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS",
        ),
        (
            command(json!({"uri": "/netbackup/login", "method": "POST", "parameters": {"userName": "u"}})),
            Invalid,
            "payload.parameters: must be a string, not an object",
        ),
        (
            command(json!({"uri": "/netbackup/admin/jobs", "method": "GET", "headers": ["Accept"]})),
            Invalid,
            "payload.headers: must be an object, not an array",
        ),
        (
            command(json!({"uri": "/netbackup/admin/jobs", "method": "GET", "headers": {"Accept": 1}})),
            Invalid,
            "payload.headers.Accept: must be a string, not a number",
        ),
        (
            command(
                json!({"uri": "/netbackup/admin/jobs", "method": "GET", "headers": {"X": "a\r\nEvil: 1"}}),
            ),
            Invalid,
            "payload.headers.X: must not contain line breaks or NUL",
        ),
        (
            command(json!({"uri": "/netbackup/admin/jobs", "method": "GET", "headers": {"Bad Name": "v"}})),
            Invalid,
            "payload.headers.Bad Name: is not a valid HTTP header name",
        ),
        (
            envelope("COMMAND", "RESPONSE", json!({"statusCode": 99, "headers": {}})).to_string(),
            Invalid,
            "payload.statusCode: must be an HTTP status between 100 and 599",
        ),
        (
            envelope("COMMAND", "RESPONSE", json!({"statusCode": "OK"})).to_string(),
            Invalid,
            "payload.statusCodeValue: missing (statusCode is a reason string)",
        ),
        (
            envelope("COMMAND", "RESPONSE", json!({"statusCode": true})).to_string(),
            Invalid,
            "payload.statusCode: must be an integer HTTP status, not a boolean",
        ),
        (
            envelope(
                "NOTIFICATION",
                "REQUEST",
                json!([{"notificationType": "INFO", "object": "JOB",
            "data": [job, job_without_id]}]),
            )
            .to_string(),
            Invalid,
            "payload[0].data[1].jobId: missing",
        ),
        (
            envelope(
                "NOTIFICATION",
                "REQUEST",
                json!([{"notificationType": "INFO", "object": "IMAGE",
            "data": [{"clientType": "STANDARD", "clientName": "c", "backupTime": "1", "createdTime": 2,
                      "operationId": "CREATE", "backupId": "c_1"}]}]),
            )
            .to_string(),
            Invalid,
            "payload[0].data[0].backupTime: must be an integer, not a string",
        ),
        (
            envelope("NOTIFICATION", "REQUEST", json!([{"object": "JOB", "data": []}])).to_string(),
            Invalid,
            "payload[0].notificationType: missing",
        ),
    ];
    let codec = Codec::default();
    for (text, kind, expected) in cases {
        let error = codec.decode(&text).expect_err(&text);
        let shown = error.to_string();
        assert_eq!(error.kind, kind, "{text}: {shown}");
        assert!(shown.contains(expected), "{text}:\n  got      {shown}\n  expected {expected}");
        if kind == Invalid {
            assert_eq!(error.id.as_deref(), Some("ID-1"), "{text}: an invalid message keeps its id");
            assert!(error.message_type.is_some());
        } else {
            assert_eq!(error.id, None, "{text}");
        }
    }
}

#[test]
fn oversize_message_is_refused_before_parsing() {
    let codec = Codec::new(1024);
    let text = command(json!({"uri": "/netbackup/login", "method": "POST", "parameters": "x".repeat(2000)}));
    let error = codec.decode(&text).unwrap_err();
    assert_eq!(error.kind, DecodeErrorKind::TooBig { size: text.len(), limit: 1024 });
    assert!(error.to_string().contains("larger than the limit of 1024 bytes"));
    assert!(Codec::new(text.len()).decode(&text).is_ok(), "a message exactly at the limit passes");
}

#[test]
fn an_invalid_command_can_be_answered() {
    let error = Codec::default().decode(&command(json!({"uri": "/etc", "method": "GET"}))).unwrap_err();
    assert_eq!(error.message_type, Some((MessageType::Command, SubType::Request)));
    assert_eq!(error.field.path, "payload.uri");
}

#[test]
fn tolerated_command_response_variants() {
    let codec = Codec::default();
    let spring = envelope(
        "COMMAND",
        "RESPONSE",
        json!({"statusCode": "CREATED", "statusCodeValue": 201,
               "headers": {"Content-Type": ["application/json"], "Vary": ["a", "b"]},
               "body": {"data": {"id": "5"}}}),
    );
    let Body::CommandResponse(response) = codec.decode(&spring.to_string()).unwrap().body else {
        panic!("not a COMMAND RESPONSE")
    };
    assert_eq!(response.status_code, 201);
    assert_eq!(response.headers.get("content-type"), Some("application/json"));
    assert_eq!(response.headers.get("vary"), Some("a, b"));
    assert_eq!(serde_json::from_str::<Value>(&response.body).unwrap(), json!({"data": {"id": "5"}}));

    let plain = envelope("COMMAND", "RESPONSE", json!({"statusCode": 204, "headers": {}}));
    let Body::CommandResponse(response) = codec.decode(&plain.to_string()).unwrap().body else {
        panic!("not a COMMAND RESPONSE")
    };
    assert_eq!((response.status_code, response.body.as_str()), (204, ""));
}

#[test]
fn peers_may_add_keys_and_unknown_values() {
    let mut value = envelope(
        "NOTIFICATION",
        "REQUEST",
        json!([{"notificationType": "WARNING", "object": "POLICY", "data": [{"x": 1}], "extra": true},
               {"notificationType": "INFO", "object": "JOB", "data": [{"scheduleType": "ST_SYNTH",
                "clientName": "c", "status": 0, "startTime": 1, "state": "SUSPENDED", "policyName": "p",
                "parentJobId": 1, "jobId": 1, "policyType": "ORACLE", "jobType": "DBBACKUP", "extra": 1}]}]),
    );
    value["futureKey"] = json!({"anything": 1});
    let message = Codec::default().decode(&value.to_string()).unwrap();
    let Body::NotificationRequest(groups) = &message.body else { panic!("not a NOTIFICATION REQUEST") };
    assert_eq!(groups[0].object().as_str(), "POLICY");
    assert_eq!(groups[0].record_count(), 1);
    let nbwss_protocol::NotificationGroup::Jobs { records, .. } = &groups[1] else { panic!("not jobs") };
    assert_eq!(records[0].schedule_type.as_str(), "ST_SYNTH");
    assert_eq!(records[0].state.as_str(), "SUSPENDED");
    assert_eq!(records[0].job_type.as_str(), "DBBACKUP");
    // Unknown values survive a re-encode.
    let again = Codec::default().decode(&Codec::default().encode(&message)).unwrap();
    assert_eq!(again, message);
}

//! The transparent relay: HTTP in, COMMAND out, COMMAND RESPONSE back as HTTP.

use std::time::{Duration, Instant};

use nbwss_protocol::CommandResponse;
use serde_json::{json, Value};

use crate::util::{within, Harness, Primary};

#[tokio::test]
async fn methods_bodies_headers_and_statuses_pass_through() {
    let harness = Harness::start().await;
    harness.echo_primary("primary1").await;
    let cases = [
        (reqwest::Method::GET, "admin/jobs?page%5Blimit%5D=10&filter=jobType%20eq%20%27BACKUP%27", None, 200),
        (
            reqwest::Method::POST,
            "config/servers/vmservers",
            Some(r#"{"serverName": "vcenter1", "port": 0}"#),
            201,
        ),
        (reqwest::Method::PUT, "config/policies/policy1", Some(r#"{"data": {"type": "policy"}}"#), 204),
        (reqwest::Method::DELETE, "config/policies/policy1", None, 404),
        (reqwest::Method::PATCH, "admin/jobs/5", Some("{}"), 500),
    ];
    for (method, path, body, status) in cases {
        let mut request = harness
            .http
            .request(method.clone(), harness.relay_url("primary1", path))
            .header("X-NBWSS-API-Key", &harness.api_key)
            .header("Authorization", "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1N")
            .header("Content-Type", "application/vnd.netbackup+json;version=3.0")
            .header("X-Test-Status", status.to_string());
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{method} {path}");
        assert_eq!(response.headers()["x-test-echo"], "yes");
        assert_eq!(response.headers()["content-type"], "application/vnd.netbackup+json;version=1.0");
        if status == 204 {
            continue; // no body allowed
        }
        let echoed: Value = response.json().await.unwrap();
        assert_eq!(echoed["method"], method.as_str());
        assert_eq!(echoed["uri"], format!("/netbackup/{path}"));
        assert_eq!(echoed["parameters"], body.map_or(Value::Null, Value::from));
        let headers = echoed["headers"].as_object().unwrap();
        assert_eq!(
            headers["authorization"], "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1N",
            "Authorization passes untouched"
        );
        assert_eq!(headers["content-type"], "application/vnd.netbackup+json;version=3.0");
        assert!(!headers.contains_key("x-nbwss-api-key"), "the API key never reaches NetBackup");
        assert!(!headers.contains_key("host"));
        assert!(!headers.contains_key("content-length"));
    }
    let entry = harness.primary("primary1").await;
    assert_eq!(entry["commands"], 5);
    harness.endpoint.shutdown().await;
}

/// Request shapes of the NetBackup API code samples: log in, then list jobs with the raw token in
/// `Authorization`, the client pointed at the capability base URL (its only change).
#[tokio::test]
async fn a_sample_style_client_works_through_the_capability_url() {
    let harness = Harness::start().await;
    let mut primary = Primary::connect(&harness.endpoint, &harness.token("primary1")).await.unwrap();
    let base = format!("{}/relay/{}/primary1/netbackup", harness.endpoint.url(), harness.api_key);
    let content_type = "application/vnd.netbackup+json; version=1.0";

    let login = tokio::spawn({
        let (http, base) = (harness.http.clone(), base.clone());
        async move {
            http.post(format!("{base}/login"))
                .header("Content-Type", content_type)
                .body(r#"{"domainType": "unixpwd", "domainName": "primary1", "userName": "admin", "password": "secret"}"#)
                .send()
                .await
                .unwrap()
        }
    });
    let (id, request) = primary.next_command().await;
    assert_eq!(request.uri, "/netbackup/login");
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.headers.get("content-type"), Some(content_type));
    let credentials: Value = serde_json::from_str(request.parameters.as_deref().unwrap()).unwrap();
    assert_eq!(credentials["userName"], "admin");
    let mut answer = CommandResponse {
        status_code: 201,
        headers: Default::default(),
        body: r#"{"token": "JWT-TOKEN-1"}"#.into(),
    };
    answer.headers.set("content-type", "application/vnd.netbackup+json;version=1.0");
    primary.respond(&id, answer).await;
    let login = within(login).await.unwrap();
    assert_eq!(login.status(), 201);
    let token: Value = login.json().await.unwrap();
    assert_eq!(token["token"], "JWT-TOKEN-1");

    let jobs = tokio::spawn({
        let (http, base) = (harness.http.clone(), base.clone());
        async move {
            http.get(format!("{base}/admin/jobs?page[limit]=2"))
                .header("Content-Type", content_type)
                .header("Authorization", "JWT-TOKEN-1")
                .send()
                .await
                .unwrap()
        }
    });
    let (id, request) = primary.next_command().await;
    assert_eq!(request.uri, "/netbackup/admin/jobs?page[limit]=2");
    assert_eq!(request.headers.get("authorization"), Some("JWT-TOKEN-1"));
    assert_eq!(request.parameters, None);
    // A Spring-style answer whose body is a JSON value, not a string.
    let spring = json!({
        "version": "1.0", "id": id, "type": "COMMAND", "subType": "RESPONSE", "timeStamp": 1,
        "payload": {
            "statusCode": "OK", "statusCodeValue": 200,
            "headers": {"content-type": ["application/vnd.netbackup+json;version=1.0"]},
            "body": {"data": [{"type": "job", "id": "5", "attributes": {"jobId": 5}}], "meta": {"pagination": {"count": 1}}}
        }
    });
    primary.send_text(spring.to_string()).await;
    let jobs = within(jobs).await.unwrap();
    assert_eq!(jobs.status(), 200);
    assert_eq!(jobs.headers()["content-type"], "application/vnd.netbackup+json;version=1.0");
    let body: Value = jobs.json().await.unwrap();
    assert_eq!(body["data"][0]["attributes"]["jobId"], 5);

    // A wrong capability key is refused and relays nothing.
    let refused = harness
        .http
        .get(format!("{}/relay/not-a-key/primary1/netbackup/admin/jobs", harness.endpoint.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn not_connected_is_503_and_unknown_is_404() {
    let harness = Harness::start().await;
    harness.token("primary1");
    let response = harness.get("/api/v1/primaries/primary1/netbackup/admin/jobs").await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["x-nbwss-origin"], "endpoint");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_connected");
    let response = harness.get("/api/v1/primaries/nobody/netbackup/admin/jobs").await;
    assert_eq!(response.status(), 404);
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "unknown_primary");
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn an_unanswered_call_is_504_after_the_timeout() {
    let harness = Harness::start_with(|config| config.limits.relay_timeout_ms = 300).await;
    let mut primary = Primary::connect(&harness.endpoint, &harness.token("primary1")).await.unwrap();
    let call = harness.spawn_relay_get("primary1", "admin/jobs");
    let (id, _) = primary.next_command().await;
    let response = within(call).await.unwrap().unwrap();
    assert_eq!(response.status(), 504);
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "timeout");
    // A late answer is dropped; the session stays usable.
    primary
        .respond(&id, CommandResponse { status_code: 200, headers: Default::default(), body: String::new() })
        .await;
    let call = harness.spawn_relay_get("primary1", "admin/jobs");
    let (id, _) = primary.next_command().await;
    primary
        .respond(
            &id,
            CommandResponse { status_code: 418, headers: Default::default(), body: "teapot".into() },
        )
        .await;
    let response = within(call).await.unwrap().unwrap();
    assert_eq!(response.status(), 418);
    assert_eq!(response.text().await.unwrap(), "teapot");
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn calls_in_flight_fail_fast_when_the_connection_drops() {
    let harness = Harness::start_with(|config| config.limits.relay_timeout_ms = 60_000).await;
    let mut primary = Primary::connect(&harness.endpoint, &harness.token("primary1")).await.unwrap();
    let calls: Vec<_> = (0..3).map(|_| harness.spawn_relay_get("primary1", "admin/jobs")).collect();
    for _ in 0..3 {
        primary.next_command().await;
    }
    let started = Instant::now();
    drop(primary); // the TCP connection drops without a close frame
    for call in calls {
        let response = within(call).await.unwrap().unwrap();
        assert_eq!(response.status(), 502);
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "disconnected");
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    let response = harness.get("/api/v1/primaries/primary1/netbackup/admin/jobs").await;
    assert_eq!(response.status(), 503);
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn calls_over_the_in_flight_limit_are_429() {
    let harness = Harness::start_with(|config| config.limits.max_in_flight_per_primary = 1).await;
    let mut primary = Primary::connect(&harness.endpoint, &harness.token("primary1")).await.unwrap();
    let first = harness.spawn_relay_get("primary1", "admin/jobs");
    let (id, _) = primary.next_command().await;
    let second = harness.get("/api/v1/primaries/primary1/netbackup/admin/jobs").await;
    assert_eq!(second.status(), 429);
    primary
        .respond(&id, CommandResponse { status_code: 200, headers: Default::default(), body: "{}".into() })
        .await;
    assert_eq!(within(first).await.unwrap().unwrap().status(), 200);
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn an_invalid_command_response_is_502() {
    let harness = Harness::start().await;
    let mut primary = Primary::connect(&harness.endpoint, &harness.token("primary1")).await.unwrap();
    // Each answer is matched to its call by id (D11), whatever else is wrong with it: the call fails at once
    // with 502 instead of waiting for its timeout, and the session stays up for the next one.
    let answers: [fn(&str) -> Value; 4] = [
        |id| {
            json!({"version": "1.0", "id": id, "type": "COMMAND", "subType": "RESPONSE", "timeStamp": 1,
            "payload": {"statusCode": 999, "headers": {}, "body": ""}})
        },
        |id| {
            json!({"version": "1.0", "id": id, "type": "COMMAND", "subType": "RESPONSE", "timeStamp": 1,
            "payload": null})
        },
        |id| {
            json!({"version": "1.0", "id": id, "type": "COMMAND", "subType": "RESPONSE",
            "payload": {"statusCode": 200, "headers": {}, "body": ""}})
        },
        |id| {
            json!({"version": "9.0", "id": id, "type": "COMMAND", "subType": "RESPONSE", "timeStamp": 1,
            "payload": {"statusCode": 200, "headers": {}, "body": ""}})
        },
    ];
    for answer in answers {
        let call = harness.spawn_relay_get("primary1", "admin/jobs");
        let (id, _) = primary.next_command().await;
        primary.send_text(answer(&id).to_string()).await;
        let response = within(call).await.unwrap().unwrap();
        assert_eq!(response.status(), 502);
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "invalid_response");
    }
    harness.endpoint.shutdown().await;
}

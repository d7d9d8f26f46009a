//! The WebSocket endpoint: CONNECT validation, session replacement, frame rules, rate limit, keepalive.

use std::time::Duration;

use futures_util::SinkExt;
use nbwss_protocol::{Body, CommandResponse, ConnectRequest, Message, NotificationGroup, Secret};

use crate::util::{eventually, within, Connected, Harness, Primary};

#[tokio::test]
async fn a_valid_token_connects_and_names_the_primary() {
    let harness = Harness::start().await;
    let token = harness.token("primary1");
    let primary = Primary::connect(&harness.endpoint, &token).await.expect("valid: true");
    harness.wait_connected("primary1", true).await;
    let entry = harness.primary("primary1").await;
    assert_eq!(entry["groupId"], "sg1");
    assert!(entry["remoteAddress"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(entry["connectedSince"].is_string());
    assert_eq!(harness.endpoint.connected_primaries(), vec!["primary1".to_owned()]);
    primary.close().await;
    harness.wait_connected("primary1", false).await;
    assert!(harness.primary("primary1").await["lastDisconnectedAt"].is_string());
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn an_invalid_token_is_answered_valid_false_then_closed() {
    let harness = Harness::start().await;
    harness.token("primary1");
    let Connected::Refused(mut primary) =
        Primary::handshake(&harness.endpoint, &Secret::new("not-a-token")).await
    else {
        panic!("an unknown token must be refused");
    };
    // We do not close: the endpoint closes after a while (policy violation).
    assert_eq!(primary.closed_with().await, Some(1008));
    assert!(harness.endpoint.connected_primaries().is_empty());
    let metrics = harness.http.get(format!("{}/metrics", harness.endpoint.url())).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    assert!(text.contains("nbwss_endpoint_connect_failures_total{reason=\"bad_token\"} 1"), "{text}");
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn a_revoked_or_rotated_token_no_longer_connects() {
    let harness = Harness::start().await;
    let old = harness.token("primary1");
    let new = harness.token("primary1");
    assert!(matches!(Primary::handshake(&harness.endpoint, &old).await, Connected::Refused(_)));
    let primary = Primary::connect(&harness.endpoint, &new).await.unwrap();
    harness.wait_connected("primary1", true).await;
    assert!(harness.endpoint.revoke_token("primary1").unwrap());
    let mut primary = primary;
    assert_eq!(primary.closed_with().await, Some(1008));
    assert!(matches!(Primary::handshake(&harness.endpoint, &new).await, Connected::Refused(_)));
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn connect_must_come_first() {
    let harness = Harness::start().await;
    let mut primary = Primary::open(&harness.endpoint).await.unwrap();
    primary.send(&Message::new(Body::NotificationRequest(vec![NotificationGroup::jobs(vec![])]))).await;
    assert_eq!(primary.closed_with().await, Some(1008));
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn binary_and_oversized_messages_close_the_session() {
    let harness = Harness::start_with(|config| config.limits.max_message_bytes = 4096).await;
    let token = harness.token("primary1");
    let mut primary = Primary::connect(&harness.endpoint, &token).await.unwrap();
    primary.socket.send(tokio_tungstenite::tungstenite::Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    assert_eq!(primary.closed_with().await, Some(1003));

    let mut primary = Primary::connect(&harness.endpoint, &token).await.unwrap();
    let big = Message::with_id(
        "BIG",
        Body::CommandResponse(CommandResponse {
            status_code: 200,
            headers: Default::default(),
            body: "x".repeat(8000),
        }),
    );
    primary.send(&big).await;
    assert_eq!(primary.closed_with().await, Some(1009));

    // Not JSON at all: 1007.
    let mut primary = Primary::connect(&harness.endpoint, &token).await.unwrap();
    primary.send_text("{not json".to_owned()).await;
    assert_eq!(primary.closed_with().await, Some(1007));
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn plain_ws_is_not_served() {
    let harness = Harness::start().await;
    let url = harness.endpoint.websocket_url().replace("wss://", "ws://");
    assert!(tokio_tungstenite::connect_async(url).await.is_err());
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn a_new_connection_replaces_the_old_session_and_fails_its_calls_fast() {
    let harness = Harness::start_with(|config| config.limits.relay_timeout_ms = 60_000).await;
    let token = harness.token("primary1");
    let mut old = Primary::connect(&harness.endpoint, &token).await.unwrap();
    harness.wait_connected("primary1", true).await;
    let old_remote = harness.primary("primary1").await["remoteAddress"].clone();

    // A call in flight on the old session, never answered there.
    let call = harness
        .http
        .get(harness.relay_url("primary1", "admin/jobs"))
        .header("X-NBWSS-API-Key", &harness.api_key)
        .send();
    let call = tokio::spawn(call);
    let (_id, request) = old.next_command().await;
    assert_eq!(request.uri, "/netbackup/admin/jobs");

    let started = std::time::Instant::now();
    let new = Primary::connect(&harness.endpoint, &token).await.unwrap();
    let response = within(call).await.unwrap().unwrap();
    assert_eq!(response.status(), 502);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "disconnected");
    assert!(started.elapsed() < Duration::from_secs(10), "failed fast");
    assert_eq!(old.closed_with().await, Some(1000));

    eventually(|| async { harness.primary("primary1").await["remoteAddress"] != old_remote }).await;
    assert_eq!(harness.primary("primary1").await["connected"], true);
    // The new session serves calls.
    tokio::spawn(new.answer(crate::util::echo));
    let response = harness
        .http
        .get(harness.relay_url("primary1", "admin/jobs"))
        .header("X-NBWSS-API-Key", &harness.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn failed_connects_are_rate_limited_per_source() {
    let harness = Harness::start_with(|config| config.limits.max_failed_connects_per_minute = 2).await;
    let good = harness.token("primary1");
    for _ in 0..2 {
        assert!(matches!(
            Primary::handshake(&harness.endpoint, &Secret::new("wrong")).await,
            Connected::Refused(_)
        ));
    }
    let error = Primary::open(&harness.endpoint).await.expect_err("refused before the handshake");
    match error {
        tokio_tungstenite::tungstenite::Error::Http(response) => assert_eq!(response.status(), 429),
        other => panic!("expected HTTP 429, got {other:?}"),
    }
    // Even a good token is refused from that address while the limit holds.
    assert!(Primary::open(&harness.endpoint).await.is_err());
    let _ = good;
    let text = harness
        .http
        .get(format!("{}/metrics", harness.endpoint.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("reason=\"rate_limited\""), "{text}");
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn a_silent_session_is_closed_by_keepalive() {
    let harness = Harness::start_with(|config| {
        config.keepalive.ping_interval_ms = 100;
        config.keepalive.max_missed_pongs = 2;
    })
    .await;
    let token = harness.token("primary1");
    // Answers pings (tungstenite does, while reading): stays connected over many intervals.
    let answering = Primary::connect(&harness.endpoint, &token).await.unwrap();
    let reader = tokio::spawn(answering.answer(crate::util::echo));
    harness.wait_connected("primary1", true).await;
    // Never reads: no pongs, so the endpoint closes the session.
    let silent_token = harness.token("primary2");
    let silent = Primary::connect(&harness.endpoint, &silent_token).await.unwrap();
    harness.wait_connected("primary2", true).await;
    harness.wait_connected("primary2", false).await;
    assert_eq!(harness.primary("primary1").await["connected"], true);
    drop(silent);
    reader.abort();
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn connect_response_echoes_the_request_id() {
    let harness = Harness::start().await;
    let token = harness.token("primary1");
    let mut primary = Primary::open(&harness.endpoint).await.unwrap();
    let request = Message::with_id(
        "0CEAB6C2-0BBF-4F60-974D-C1F3EF39B872",
        Body::ConnectRequest(ConnectRequest { token }),
    );
    primary.send(&request).await;
    let answer = within(primary.recv()).await.unwrap();
    assert_eq!(answer.id, "0CEAB6C2-0BBF-4F60-974D-C1F3EF39B872");
    assert_eq!(answer.to_value()["payload"], serde_json::json!({"valid": true}));
    harness.endpoint.shutdown().await;
}

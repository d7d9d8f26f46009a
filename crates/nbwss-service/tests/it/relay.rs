//! The COMMAND relay: the guide's examples against the emulator, concurrency, every D8 error, decoder
//! errors with and without `exception.ignoreDecoder`, and the audit log.

use std::sync::Arc;
use std::time::Duration;

use nbwss_emulator::{Emulator, EmulatorConfig};
use nbwss_protocol::{CommandResponse, Method, Properties};
use nbwss_service::{AllowRule, PolicyConfig};
use serde_json::Value;

use crate::util::*;

const VND: &str = "application/vnd.netbackup+json;version=1.0";

/// A service connected to one endpoint; returns the live peer.
pub(crate) async fn connected(
    dir: &std::path::Path,
    base_url: &str,
    cert_pem: &str,
    properties: Properties,
    edit: impl FnOnce(&mut nbwss_service::ServiceConfig),
) -> (nbwss_service::ServiceHandle, TestEndpoint, Arc<Peer>) {
    let endpoint = TestEndpoint::start(Mode::Valid).await;
    let mut config = config(dir, base_url, cert_pem);
    edit(&mut config);
    let (service, client) = start(config, properties).await;
    add(&client, &endpoint, "ep1", "sg1", 1, "t").await;
    let peer = endpoint.next_accepted_peer().await;
    (service, endpoint, peer)
}

pub(crate) fn assert_service_error(response: &CommandResponse, status: u16) {
    assert_eq!(response.status_code, status, "{response:?}");
    assert!(response.is_from_service(), "{response:?}");
    let body = response.error_body().unwrap();
    assert_eq!(body.error_code, i64::from(status));
    assert!(!body.error_message.is_empty());
}

#[tokio::test]
async fn the_guides_examples_run_against_the_emulator() {
    let emulator = Emulator::start(EmulatorConfig::for_tests()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (service, _endpoint, peer) =
        connected(dir.path(), &emulator.base_url(), &emulator.certificate_pem(), fast_properties(), |_| {})
            .await;

    // Log in through the relay; the app's Accept-Encoding is not passed on, so the answer is identity.
    let login = peer
        .command(command(
            Method::Post,
            "/netbackup/login",
            &[("Content-Type", VND), ("Accept-Encoding", "gzip")],
            Some(r#"{"userName": "admin", "password": "password"}"#),
        ))
        .await;
    assert_eq!(login.status_code, 201, "{login:?}");
    assert!(!login.is_from_service());
    let token = serde_json::from_str::<Value>(&login.body).unwrap()["token"].as_str().unwrap().to_owned();
    assert!(login.headers.iter().all(|(name, _)| name == name.to_ascii_lowercase()), "{:?}", login.headers);
    assert!(login.headers.get("transfer-encoding").is_none() && login.headers.get("connection").is_none());
    assert!(login.headers.get("content-type").is_some());
    assert!(login.headers.get("content-encoding").is_none(), "{:?}", login.headers);

    // The guide's POST on vmservers, with the token as the raw Authorization header.
    let parameters = r#"{"serverName": "vcenterServer1", "proxyServerName": "","vmType": "VMWARE_VIRTUAL_CENTER_SERVER","userId": "administrator", "password": "password@123","port": 0 }"#;
    let created = peer
        .command(command(
            Method::Post,
            "/netbackup/config/servers/vmservers",
            &[("Content-Type", VND), ("Authorization", &token)],
            Some(parameters),
        ))
        .await;
    assert_eq!(created.status_code, 201, "{created:?}");
    assert_eq!(created.body, "");

    // The guide's GET on one VM server.
    let got = peer
        .command(command(
            Method::Get,
            "/netbackup/config/servers/vmservers/vcenterServer1",
            &[("Content-Type", VND), ("Authorization", &token)],
            None,
        ))
        .await;
    assert_eq!(got.status_code, 200, "{got:?}");
    let body: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(body["data"]["attributes"]["vmServer"]["serverName"], "vcenterServer1", "{body}");

    // The primary server's own errors pass through unchanged (not marked as the service's).
    let unauthorized = peer
        .command(command(Method::Get, "/netbackup/config/servers/vmservers", &[("Content-Type", VND)], None))
        .await;
    assert_eq!(unauthorized.status_code, 401);
    assert!(!unauthorized.is_from_service());

    // The audit log names each call and never holds the password or the token.
    let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert_eq!(audit.lines().count(), 4, "{audit}");
    assert!(audit.contains("/netbackup/login") && audit.contains("\"status\":201"), "{audit}");
    assert!(!audit.contains("\"password\":\"password\"") && !audit.contains("password@123"), "{audit}");
    assert!(!audit.contains(&token), "the token must never be logged");
    service.shutdown().await;
    emulator.shutdown().await;
}

#[tokio::test]
async fn concurrent_commands_are_answered_out_of_order_by_id() {
    let primary = TestPrimary::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (service, _endpoint, peer) =
        connected(dir.path(), &primary.base_url, &primary.cert_pem, fast_properties(), |_| {}).await;
    let slow = peer.send_command(command(Method::Get, "/netbackup/gate", &[], None));
    let fast = peer.send_command(command(
        Method::Put,
        "/netbackup/echo?x=1&page%5Blimit%5D=2",
        &[("X-Custom", "v"), ("Connection", "close"), ("Host", "evil.example")],
        Some("body text"),
    ));
    let (first, response) = peer.recv_response().await;
    assert_eq!(first, fast, "the fast COMMAND is answered first");
    assert_eq!(response.status_code, 200);
    assert_eq!(response.headers.get("x-test"), Some("echo"));
    let echoed: Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(echoed["method"], "PUT");
    let uri = echoed["uri"].as_str().unwrap();
    assert!(uri.ends_with("/netbackup/echo?x=1&page%5Blimit%5D=2"), "{uri}");
    assert_eq!(echoed["body"], "body text");
    assert_eq!(echoed["headers"]["x-custom"], "v");
    assert_ne!(echoed["headers"]["host"], "evil.example", "Host is not forwarded");
    primary.gate.notify_one();
    let (second, response) = peer.recv_response().await;
    assert_eq!(second, slow);
    assert_eq!(response.body, "opened");

    // Many at once: every one answered once, matched by id.
    let mut ids = std::collections::HashMap::new();
    for index in 0..40 {
        let id = peer.send_command(command(Method::Post, "/netbackup/echo", &[], Some(&format!("n{index}"))));
        ids.insert(id, format!("n{index}"));
    }
    for _ in 0..40 {
        let (id, response) = peer.recv_response().await;
        let expected = ids.remove(&id).expect("a response to a pending COMMAND, once");
        let echoed: Value = serde_json::from_str(&response.body).unwrap();
        assert_eq!(echoed["body"], expected.as_str());
    }
    service.shutdown().await;
}

#[tokio::test]
async fn service_errors_400_403_413_429_504() {
    let primary = TestPrimary::start().await;
    let dir = tempfile::tempdir().unwrap();
    let properties = Properties {
        command_max_in_flight: 1,
        command_timeout: Duration::from_millis(700),
        message_max_bytes: 16 * 1024,
        ..fast_properties()
    };
    let (service, _endpoint, peer) =
        connected(dir.path(), &primary.base_url, &primary.cert_pem, properties, |config| {
            config.policy = PolicyConfig {
                allow: vec![
                    AllowRule { method: "*".into(), path: "/netbackup/echo".into() },
                    AllowRule { method: "GET".into(), path: "/netbackup/big".into() },
                    AllowRule { method: "GET".into(), path: "/netbackup/slow".into() },
                    AllowRule { method: "GET".into(), path: "/netbackup/gate".into() },
                ],
            };
        })
        .await;

    // 400: a malformed COMMAND with a readable id.
    peer.send_text(r#"{"version":"1.0","id":"BAD-1","type":"COMMAND","subType":"REQUEST","timeStamp":1,"payload":{"uri":"/etc/passwd","method":"GET","headers":{}}}"#);
    let (id, response) = peer.recv_response().await;
    assert_eq!(id, "BAD-1");
    assert_service_error(&response, 400);
    assert!(response.error_body().unwrap().details()[0].contains("uri"), "{response:?}");
    peer.send_text(r#"{"version":"2.0","id":"BAD-2","type":"COMMAND","subType":"REQUEST","timeStamp":1,"payload":{"uri":"/netbackup/echo","method":"GET","headers":{}}}"#);
    let (id, response) = peer.recv_response().await;
    assert_eq!(id, "BAD-2");
    assert_service_error(&response, 400);

    // 403: outside the allow-list.
    assert_service_error(&peer.command(command(Method::Delete, "/netbackup/big", &[], None)).await, 403);
    // 413: larger than message.maxBytes.
    assert_service_error(&peer.command(command(Method::Get, "/netbackup/big", &[], None)).await, 413);
    // 504: no answer within command.timeout.
    assert_service_error(&peer.command(command(Method::Get, "/netbackup/slow", &[], None)).await, 504);
    // 429: more than command.maxInFlight at once.
    let held = peer.send_command(command(Method::Get, "/netbackup/gate", &[], None));
    let refused = peer.send_command(command(Method::Get, "/netbackup/echo", &[], None));
    let (id, response) = peer.recv_response().await;
    assert_eq!(id, refused);
    assert_service_error(&response, 429);
    primary.gate.notify_one();
    let (id, response) = peer.recv_response().await;
    assert_eq!(id, held);
    assert!(response.status_code == 200 || response.status_code == 504, "{response:?}");

    let metrics = service.admin_client().unwrap().metrics().await.unwrap();
    assert!(
        metrics.contains("nbwss_command_responses_total{status=\"429\",origin=\"service\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("nbwss_command_duration_seconds_count"), "{metrics}");
    service.shutdown().await;
}

#[tokio::test]
async fn unreachable_primary_is_502() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("https://{}/netbackup", closed.local_addr().unwrap());
    drop(closed);
    let (cert, _) = certificate();
    let (service, _endpoint, peer) = connected(dir.path(), &base, &cert, fast_properties(), |_| {}).await;
    let response = peer.command(command(Method::Get, "/netbackup/admin/jobs", &[], None)).await;
    assert_service_error(&response, 502);

    // A primary server whose certificate is not the trusted one: a TLS failure, also 502.
    let primary = TestPrimary::start().await;
    service.shutdown().await;
    let dir = tempfile::tempdir().unwrap();
    let (service, _endpoint, peer) =
        connected(dir.path(), &primary.base_url, &cert, fast_properties(), |_| {}).await;
    let response = peer.command(command(Method::Get, "/netbackup/echo", &[], None)).await;
    assert_service_error(&response, 502);
    service.shutdown().await;
}

#[tokio::test]
async fn undecodable_messages_close_the_connection_by_default() {
    let primary = TestPrimary::start().await;
    for (text, code, status) in
        [("this is not JSON", 1007, "NOT_CONSISTENT"), (r#"{"hello": "world"}"#, 1002, "PROTOCOL_ERROR")]
    {
        let dir = tempfile::tempdir().unwrap();
        let (service, _endpoint, peer) =
            connected(dir.path(), &primary.base_url, &primary.cert_pem, fast_properties(), |_| {}).await;
        peer.send_text(text);
        assert_eq!(peer.closed().await, Some(code), "{text}");
        wait_close_status(&service.admin_client().unwrap(), "ep1", status).await;
        service.shutdown().await;
    }
    // Too big: 1009 whatever exception.ignoreDecoder says.
    let dir = tempfile::tempdir().unwrap();
    let properties =
        Properties { message_max_bytes: 2048, ignore_decoder_exceptions: true, ..fast_properties() };
    let (service, _endpoint, peer) =
        connected(dir.path(), &primary.base_url, &primary.cert_pem, properties, |_| {}).await;
    peer.send_text(&format!("{{\"x\": \"{}\"}}", "y".repeat(4096)));
    assert_eq!(peer.closed().await, Some(1009));
    wait_close_status(&service.admin_client().unwrap(), "ep1", "TOO_BIG").await;
    service.shutdown().await;
}

#[tokio::test]
async fn ignore_decoder_keeps_the_connection() {
    let primary = TestPrimary::start().await;
    let dir = tempfile::tempdir().unwrap();
    let properties = Properties { ignore_decoder_exceptions: true, ..fast_properties() };
    let (service, _endpoint, peer) =
        connected(dir.path(), &primary.base_url, &primary.cert_pem, properties, |_| {}).await;
    peer.send_text("this is not JSON");
    peer.send_text(r#"{"hello": "world"}"#);
    peer.send_binary(vec![1, 2, 3]);
    let response = peer.command(command(Method::Get, "/netbackup/echo", &[], None)).await;
    assert_eq!(response.status_code, 200);
    assert!(peer.is_open());
    service.shutdown().await;
}

#[tokio::test]
async fn no_command_runs_before_connect_is_accepted() {
    let primary = TestPrimary::start().await;
    let dir = tempfile::tempdir().unwrap();
    let endpoint = TestEndpoint::start(Mode::CommandFirst).await;
    let (service, client) =
        start(config(dir.path(), &primary.base_url, &primary.cert_pem), fast_properties()).await;
    add(&client, &endpoint, "ep1", "sg1", 1, "t").await;
    let peer = endpoint.next_accepted_peer().await;
    let id = peer.send_command(command(Method::Get, "/netbackup/echo", &[], None));
    let (got, response) = peer.recv_response().await;
    assert_eq!(got, id, "the COMMAND sent before valid:true is not run (D5)");
    assert_eq!(response.status_code, 200);
    let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert!(!audit.contains("EARLY"), "{audit}");
    service.shutdown().await;
}

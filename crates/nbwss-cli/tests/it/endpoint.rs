//! `nbwss endpoint`: tokens and API keys on a data directory, `run` serving over TLS, and revocation from
//! the command line reaching the running endpoint.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use nbwss_protocol::{Body, Codec, ConnectRequest, Message, Secret};
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::running_endpoint::RunningEndpoint;
use crate::util::nbwss;

/// A configuration file for an endpoint on a free port, with `extra` TOML appended.
fn config_file(dir: &Path, extra: &str) -> PathBuf {
    let data = dir.to_str().unwrap();
    let config = dir.join("endpoint.toml");
    std::fs::write(&config, format!("bind = \"127.0.0.1:0\"\ndata_dir = {data:?}\n{extra}")).unwrap();
    config
}

#[test]
fn tokens_and_api_keys_are_managed_offline() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let created = nbwss(
        &["endpoint", "token", "create", "primary1", "--group", "sg1", "--priority", "2", "--data-dir", data],
        "",
    );
    assert_eq!(created.status, 0, "{}", created.stderr);
    let details = nbwss_protocol::parse_endpoint_details(&created.stdout).unwrap();
    assert_eq!(details[0].url, "wss://127.0.0.1:8443/nbwss");
    assert_eq!(details[0].host_name, "127.0.0.1");
    assert_eq!(details[0].group_id, "sg1");
    assert_eq!(details[0].priority, 2);
    let token = details[0].token.expose().to_owned();
    assert!(token.len() >= 43);

    let url = nbwss(
        &[
            "endpoint",
            "token",
            "create",
            "--name",
            "primary2",
            "--url",
            "wss://cloud.example.com/nbwss",
            "--data-dir",
            data,
        ],
        "",
    );
    assert_eq!(url.status, 0, "{}", url.stderr);
    assert!(url.stdout.contains("\"hostName\": \"cloud.example.com\""), "{}", url.stdout);
    // The deprecated `--name NAME` spelling still works, and says what to write instead.
    assert!(url.stderr.contains("deprecated; write `token create NAME`"), "{}", url.stderr);

    let listed = nbwss(&["endpoint", "token", "list", "--data-dir", data], "");
    assert_eq!(listed.status, 0);
    assert!(listed.stdout.contains("primary1\tgroup sg1\tpriority 2"), "{}", listed.stdout);
    assert!(listed.stdout.contains("primary2"));
    assert!(!listed.stdout.contains(&token), "tokens are never shown again");
    let listed = nbwss(&["endpoint", "token", "list", "--json", "--data-dir", data], "");
    assert_eq!(listed.status, 0, "{}", listed.stderr);
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(listed[0]["name"], "primary1");
    assert_eq!(listed[0]["groupId"], "sg1");
    assert_eq!(listed[0]["priority"], 2);
    assert!(listed[0]["tokenFingerprint"].as_str().unwrap().starts_with("sha256:"));
    assert!(!listed.to_string().contains(&token), "tokens are never shown again");

    let revoked = nbwss(&["endpoint", "token", "revoke", "primary2", "--data-dir", data], "");
    assert_eq!(revoked.status, 0);
    assert!(!nbwss(&["endpoint", "token", "list", "--data-dir", data], "").stdout.contains("primary2"));
    let missing = nbwss(&["endpoint", "token", "revoke", "primary2", "--data-dir", data], "");
    assert_ne!(missing.status, 0);
    assert!(missing.stderr.contains("no token named 'primary2'"), "{}", missing.stderr);

    let key = nbwss(&["endpoint", "apikey", "create", "app1", "--data-dir", data], "");
    assert_eq!(key.status, 0, "{}", key.stderr);
    let key = key.stdout.trim().to_owned();
    assert!(key.len() >= 43);
    let keys = nbwss(&["endpoint", "apikey", "list", "--data-dir", data], "");
    assert!(keys.stdout.starts_with("app1\tcreated "), "{}", keys.stdout);
    assert!(!keys.stdout.contains(&key));
    let keys = nbwss(&["endpoint", "apikey", "list", "--json", "--data-dir", data], "");
    let keys: serde_json::Value = serde_json::from_str(&keys.stdout).unwrap();
    assert_eq!(keys[0]["name"], "app1");
    assert!(keys[0]["createdAt"].is_string());
    assert!(!keys.to_string().contains(&key));
    assert_eq!(nbwss(&["endpoint", "apikey", "revoke", "app1", "--data-dir", data], "").status, 0);
    assert!(!nbwss(&["endpoint", "apikey", "list", "--data-dir", data], "").stdout.contains("app1"));

    let bad = nbwss(&["endpoint", "token", "create", "a b", "--data-dir", data], "");
    assert_ne!(bad.status, 0);
}

#[test]
fn run_serves_the_endpoint_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), "[limits]\nrelay_timeout_ms = 5000\n");
    let key =
        nbwss(&["endpoint", "apikey", "create", "app1", "--config", config.to_str().unwrap()], "").stdout;
    let endpoint = RunningEndpoint::start_with_open_files(&config, 256);
    let url = endpoint.url.clone();
    assert_eq!(endpoint.fingerprint.len(), 95);
    // Every connection is a file descriptor: started with a soft limit of 256, the endpoint raised it to
    // the hard limit.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", endpoint.pid())).unwrap();
    let open_files: Vec<&str> =
        limits.lines().find(|line| line.starts_with("Max open files")).unwrap().split_whitespace().collect();
    assert_eq!(open_files[3], open_files[4], "soft and hard limits of open files: {open_files:?}");
    let certificate = std::fs::read(dir.path().join(nbwss_endpoint::GENERATED_CERT_FILE)).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status = runtime.block_on(async {
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&certificate).unwrap())
            .build()
            .unwrap();
        let health = http.get(format!("{url}/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        http.get(format!("{url}/api/v1/primaries"))
            .header("X-NBWSS-API-Key", key.trim())
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);
}

/// A primary server's WebSocket connection with CONNECT accepted, trusting the endpoint's certificate.
async fn connect(websocket_url: &str, certificate: &[u8], token: &str) -> Connection {
    let mut roots = rustls::RootCertStore::empty();
    for der in
        <rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::pem_slice_iter(certificate)
    {
        roots.add(der.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let (mut socket, _) = tokio_tungstenite::connect_async_tls_with_config(
        websocket_url,
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(Arc::new(tls))),
    )
    .await
    .unwrap();
    let connect = Message::new(Body::ConnectRequest(ConnectRequest { token: Secret::new(token) }));
    socket.send(Frame::Text(Codec::default().encode(&connect).into())).await.unwrap();
    let Some(Ok(Frame::Text(answer))) = socket.next().await else { panic!("no CONNECT RESPONSE") };
    match Codec::default().decode(answer.as_str()).unwrap().body {
        Body::ConnectResponse(response) => assert!(response.valid, "CONNECT refused"),
        other => panic!("expected a CONNECT RESPONSE, got {other:?}"),
    }
    socket
}

type Connection =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Waits for the endpoint to close `socket`; returns the close code and how long it took.
async fn closed(socket: &mut Connection) -> (Option<u16>, Duration) {
    let started = Instant::now();
    let code = tokio::time::timeout(crate::util::DEADLINE, async {
        loop {
            match socket.next().await {
                Some(Ok(Frame::Close(frame))) => return frame.map(|frame| u16::from(frame.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .expect("the endpoint closed the session");
    (code, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_from_the_command_line_reaches_the_running_endpoint_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), "");
    let config = config.to_str().unwrap();
    let url = ["--url", "wss://127.0.0.1/nbwss"];
    let token = |name: &str| {
        let created = nbwss(&["endpoint", "token", "create", name, url[0], url[1], "--config", config], "");
        assert_eq!(created.status, 0, "{}", created.stderr);
        nbwss_protocol::parse_endpoint_details(&created.stdout).unwrap()[0].token.expose().to_owned()
    };
    let (first, second) = (token("primary1"), token("primary2"));
    let key =
        nbwss(&["endpoint", "apikey", "create", "app1", "--config", config], "").stdout.trim().to_owned();
    let endpoint = RunningEndpoint::start(Path::new(config), None);
    let certificate = std::fs::read(dir.path().join(nbwss_endpoint::GENERATED_CERT_FILE)).unwrap();
    let mut revoked = connect(&endpoint.websocket_url, &certificate, &first).await;
    let mut rotated = connect(&endpoint.websocket_url, &certificate, &second).await;
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&certificate).unwrap())
        .build()
        .unwrap();
    let stream = http
        .get(format!("{}/api/v1/notifications/stream", endpoint.url))
        .header("X-NBWSS-API-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);

    let revoke = nbwss(&["endpoint", "token", "revoke", "primary1", "--config", config], "");
    assert_eq!(revoke.status, 0, "{}", revoke.stderr);
    let (code, took) = closed(&mut revoked).await;
    assert_eq!(code, Some(1008));
    assert!(took < Duration::from_secs(5), "the session lasted {took:?} after the revocation");

    let rotate = nbwss(&["endpoint", "token", "rotate", "primary2", url[0], url[1], "--config", config], "");
    assert_eq!(rotate.status, 0, "{}", rotate.stderr);
    let (code, took) = closed(&mut rotated).await;
    assert_eq!(code, Some(1008));
    assert!(took < Duration::from_secs(5), "the session lasted {took:?} after the rotation");
    let details = nbwss_protocol::parse_endpoint_details(&rotate.stdout).unwrap();
    assert_eq!(details[0].group_id, "default", "rotation keeps the group");
    let _again = connect(&endpoint.websocket_url, &certificate, details[0].token.expose()).await;
    let missing = nbwss(&["endpoint", "token", "rotate", "nobody", url[0], url[1], "--config", config], "");
    assert_ne!(missing.status, 0);
    assert!(missing.stderr.contains("no token named 'nobody'"), "{}", missing.stderr);

    let started = Instant::now();
    let revoke = nbwss(&["endpoint", "apikey", "revoke", "app1", "--config", config], "");
    assert_eq!(revoke.status, 0, "{}", revoke.stderr);
    let text =
        tokio::time::timeout(crate::util::DEADLINE, stream.text()).await.expect("the stream ends").unwrap();
    assert!(text.contains("event: error"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5), "the stream lasted {:?}", started.elapsed());
    let refused =
        http.get(format!("{}/api/v1/primaries", endpoint.url)).header("X-NBWSS-API-Key", &key).send().await;
    assert_eq!(refused.unwrap().status(), 401);
}

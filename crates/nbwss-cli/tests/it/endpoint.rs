//! `nbwss endpoint`: tokens and API keys on a data directory, and `run` serving over TLS.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::util::nbwss;

#[test]
fn tokens_and_api_keys_are_managed_offline() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let created = nbwss(
        &[
            "endpoint",
            "token",
            "create",
            "--name",
            "primary1",
            "--group",
            "sg1",
            "--priority",
            "2",
            "--data-dir",
            data,
        ],
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

    let listed = nbwss(&["endpoint", "token", "list", "--data-dir", data], "");
    assert_eq!(listed.status, 0);
    assert!(listed.stdout.contains("primary1\tgroup sg1\tpriority 2"), "{}", listed.stdout);
    assert!(listed.stdout.contains("primary2"));
    assert!(!listed.stdout.contains(&token), "tokens are never shown again");

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
    assert_eq!(nbwss(&["endpoint", "apikey", "revoke", "app1", "--data-dir", data], "").status, 0);
    assert!(!nbwss(&["endpoint", "apikey", "list", "--data-dir", data], "").stdout.contains("app1"));

    let bad = nbwss(&["endpoint", "token", "create", "--name", "a b", "--data-dir", data], "");
    assert_ne!(bad.status, 0);
}

#[test]
fn run_serves_the_endpoint_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let config = dir.path().join("endpoint.toml");
    std::fs::write(
        &config,
        format!("bind = \"127.0.0.1:0\"\ndata_dir = {data:?}\n[limits]\nrelay_timeout_ms = 5000\n"),
    )
    .unwrap();
    let key =
        nbwss(&["endpoint", "apikey", "create", "app1", "--config", config.to_str().unwrap()], "").stdout;
    let mut child = Command::new(env!("CARGO_BIN_EXE_nbwss"))
        .args(["endpoint", "run", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut url = None;
    let mut fingerprint = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("NBWSS endpoint listening on ") {
            url = Some(rest.to_owned());
        }
        if let Some(rest) = line.strip_prefix("certificate SHA-256: ") {
            fingerprint = Some(rest.to_owned());
        }
        if line.starts_with("press Ctrl-C") {
            break;
        }
    }
    let url = url.expect("the URL is printed");
    assert_eq!(fingerprint.unwrap().len(), 95);
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
    child.kill().unwrap();
    child.wait().unwrap();
}

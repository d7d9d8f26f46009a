//! The admin API: authentication, validatehost/validateurl/save/update/delete/list with their errors,
//! /healthz and /metrics, and a restart with the store intact.

use nbwss_protocol::{HostObject, HostState, Secret};
use nbwss_service::{AdminClient, ProbeFailure};

use crate::util::*;

fn host(name: &str, url: &str) -> HostObject {
    HostObject {
        host_name: name.into(),
        url: url.into(),
        group_id: "sg1".into(),
        priority: 1,
        ..HostObject::default()
    }
}

const ADMIN_KEY: &str = "X-NBWSS-Admin-Key";
const UNAUTHORIZED: &str = r#"{"errorCode":401,"errorMessage":"Missing or wrong admin key.","errorDetails":["send the key from the data directory's admin.key in the x-nbwss-admin-key header"]}"#;
const NO_SUCH_API: &str = r#"{"errorCode":404,"errorMessage":"No such API.","errorDetails":[]}"#;
const WRONG_METHOD: &str =
    r#"{"errorCode":405,"errorMessage":"This API does not take that method.","errorDetails":[]}"#;
const NO_URL: &str = r#"{"errorCode":400,"errorMessage":"url: missing; give the provider's URL as {\"url\": \"https://...\"}","errorDetails":[]}"#;

/// The admin API's error bodies, byte for byte: NetBackup's layout in its order, `errorCode` the HTTP status
/// and `errorDetails` present on every error, `[]` when there are none.
#[tokio::test]
async fn admin_errors_are_netbackup_bodies_with_error_details_always_present() {
    let dir = tempfile::tempdir().unwrap();
    let primary = TestPrimary::start().await;
    let (service, _client) =
        start(config(dir.path(), &primary.base_url, &primary.cert_pem), fast_properties()).await;
    let http = admin_http(&service);
    let endpoints = format!("{}/netbackup/config/servers/wssendpoints", service.admin_url());
    let key = service.admin_key();
    let cases = [
        (http.get(&endpoints), 401, UNAUTHORIZED),
        (http.get(format!("{}/no/such/path", service.admin_url())).header(ADMIN_KEY, key), 404, NO_SUCH_API),
        (http.get(format!("{endpoints}/save")).header(ADMIN_KEY, key), 405, WRONG_METHOD),
        (http.post(format!("{endpoints}/validateurl")).header(ADMIN_KEY, key).body("{}"), 400, NO_URL),
    ];
    for (request, status, expected) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{expected}");
        assert_eq!(response.headers()["content-type"], "application/json", "{expected}");
        assert_eq!(response.text().await.unwrap(), expected);
    }
    service.shutdown().await;
}

#[tokio::test]
async fn admin_api_end_to_end_and_restart_keeps_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let primary = TestPrimary::start().await;
    let endpoint = TestEndpoint::start(Mode::Valid).await;
    let (service, client) =
        start(config(dir.path(), &primary.base_url, &primary.cert_pem), fast_properties()).await;

    // Files the CLI relies on; secrets are owner-only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for file in ["admin.key", "token.key", "admin-key.pem"] {
            let mode = std::fs::metadata(dir.path().join(file)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }
    let from_dir = AdminClient::from_data_dir(dir.path()).unwrap();
    assert!(from_dir.list().await.unwrap().is_empty());

    // Without the key: 401 with a JSON error body; /healthz is open.
    let wrong =
        AdminClient::new(service.admin_url(), "wrong", Some(service.admin_certificate_pem())).unwrap();
    let error = wrong.list().await.unwrap_err();
    assert_eq!(error.status(), Some(401));
    let http = admin_http(&service);
    let health = http.get(format!("{}/healthz", service.admin_url())).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let listed = http
        .get(format!("{}/netbackup/config/servers/wssendpoints", service.admin_url()))
        .header("Authorization", service.admin_key())
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200, "a raw key in Authorization works like NetBackup API keys");
    let body: serde_json::Value = http
        .get(format!("{}/netbackup/config/servers/wssendpoints", service.admin_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["errorCode"], 401);
    assert!(body["errorMessage"].is_string() && body["errorDetails"].is_array(), "{body}");

    // validatehost shows the endpoint's certificate.
    let validated = client.validate_host(&host("ep1", &endpoint.url)).await.unwrap();
    let expected = nbwss_service::CertificateInfo::from_pem(&endpoint.certificate_pem()).unwrap();
    assert_eq!(validated.sha256_fingerprint.as_deref(), Some(expected.sha256.as_str()));
    assert_eq!(validated.sha1_fingerprints.as_deref(), Some(expected.sha1.as_str()));
    assert_eq!(validated.subject.as_deref(), Some(expected.subject.as_str()));
    assert!(validated.certificate.as_deref().unwrap().contains("BEGIN CERTIFICATE"));

    // ws:// is refused everywhere; unreachable is 500.
    let error =
        client.validate_host(&host("ep1", &endpoint.url.replace("wss://", "ws://"))).await.unwrap_err();
    assert_eq!(error.status(), Some(400));
    assert!(error.to_string().contains("wss://"), "{error}");
    let mut ws_save = host("ep1", &endpoint.url.replace("wss://", "ws://"));
    ws_save.token = Some(Secret::new("t"));
    ws_save.certificate = validated.certificate.clone();
    assert_eq!(client.save(&ws_save).await.unwrap_err().status(), Some(400));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("wss://{}/nbwss", closed.local_addr().unwrap());
    drop(closed);
    let error = client.validate_host(&host("dead", &dead_url)).await.unwrap_err();
    assert_eq!(error.status(), Some(500));
    assert!(error.to_string().contains("cannot be reached"), "{error}");
    assert_eq!(error.probe_failure(), Some(ProbeFailure::Unreachable), "{error}");

    // Not a TLS server: the handshake fails, and the answer says so.
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_url = format!("wss://{}/nbwss", plain.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt as _;
        while let Ok((mut stream, _)) = plain.accept().await {
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let error = client.validate_host(&host("plain", &plain_url)).await.unwrap_err();
    assert_eq!(error.status(), Some(500));
    assert!(error.to_string().contains("TLS handshake"), "{error}");
    assert_eq!(error.probe_failure(), Some(ProbeFailure::TlsHandshake), "{error}");

    // save needs the token and the accepted certificate.
    let mut no_token = host("ep1", &endpoint.url);
    no_token.certificate = validated.certificate.clone();
    let error = client.save(&no_token).await.unwrap_err();
    assert_eq!(error.status(), Some(400));
    assert!(error.to_string().contains("token"), "{error}");
    let mut no_cert = host("ep1", &endpoint.url);
    no_cert.token = Some(Secret::new("t"));
    let error = client.save(&no_cert).await.unwrap_err();
    assert!(error.to_string().contains("certificate"), "{error}");

    let mut good = host("ep1", &endpoint.url);
    good.token = Some(Secret::new("token-ep1"));
    good.certificate = validated.certificate.clone();
    client.save(&good).await.unwrap();
    let error = client.save(&good).await.unwrap_err();
    assert_eq!(error.status(), Some(409), "{error}");
    assert_eq!(client.update("nobody", HostState::Activated).await.unwrap_err().status(), Some(404));
    assert_eq!(client.delete("nobody").await.unwrap_err().status(), Some(404));
    let bad_state = http
        .post(format!("{}/netbackup/config/servers/wssendpoints/update", service.admin_url()))
        .header("X-NBWSS-Admin-Key", service.admin_key())
        .body(r#"{"hostName":"ep1","state":"ON"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_state.status(), 400);
    let wrong_method = http
        .get(format!("{}/netbackup/config/servers/wssendpoints/save", service.admin_url()))
        .header("X-NBWSS-Admin-Key", service.admin_key())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    let body: serde_json::Value = wrong_method.json().await.unwrap();
    assert_eq!(body["errorCode"], 405);

    endpoint.next_accepted_peer().await;
    wait_connection(&client, "ep1", true).await;
    let listed = client.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].token, None);
    assert_eq!(listed[0].sha256_fingerprint.as_deref(), Some(expected.sha256.as_str()));
    let metrics = client.metrics().await.unwrap();
    assert!(metrics.contains("# TYPE nbwss_commands_in_flight gauge"), "{metrics}");
    client.update("ep1", HostState::Deactivated).await.unwrap();
    wait_connection(&client, "ep1", false).await;
    let url_before = service.admin_url().to_owned();
    service.shutdown().await;

    // The tokens are not in the database file in clear.
    let mut raw = std::fs::read(dir.path().join("servers.db")).unwrap();
    raw.extend(std::fs::read(dir.path().join("servers.db-wal")).unwrap_or_default());
    assert!(!raw.windows(9).any(|window| window == b"token-ep1"));

    // Restart on the same data directory: the store (state included) is intact; the key is the same.
    let (service, client) =
        start(config(dir.path(), &primary.base_url, &primary.cert_pem), fast_properties()).await;
    let listed = client.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, Some(HostState::Deactivated));
    let from_dir = AdminClient::from_data_dir(dir.path()).unwrap();
    assert_eq!(from_dir.url(), service.admin_url());
    let _ = url_before;
    from_dir.update("ep1", HostState::Activated).await.unwrap();
    let peer = endpoint.next_accepted_peer().await;
    assert_eq!(peer.token, "token-ep1", "the token survives the restart, decrypted");
    wait_connection(&client, "ep1", true).await;
    service.shutdown().await;
}

#[tokio::test]
async fn validateurl_reads_a_providers_details() {
    use axum::routing::get;
    let dir = tempfile::tempdir().unwrap();
    let primary = TestPrimary::start().await;
    let (cert, key) = certificate();
    let details = r#"{"hostName": "cloud.example.com", "url": "wss://cloud.example.com/nbwss", "groupId": "sg1", "priority": 1, "token": "qwerrtrtrtrt2234344==="}"#;
    let app = axum::Router::new()
        .route("/details", get(move || async move { details }))
        .route("/broken", get(|| async { r#"{"hostName": "x", "url": "ws://x"}"# }));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = nbwss_service::tls_server_config(&cert, &key).unwrap();
    let handle = axum_server::Handle::new();
    tokio::spawn(
        axum_server::from_tcp_rustls(
            listener,
            axum_server::tls_rustls::RustlsConfig::from_config(std::sync::Arc::new(tls)),
        )
        .unwrap()
        .handle(handle.clone())
        .serve(app.into_make_service()),
    );
    let ca_file = dir.path().join("provider-ca.pem");
    std::fs::write(&ca_file, &cert).unwrap();
    let mut config = config(&dir.path().join("data"), &primary.base_url, &primary.cert_pem);
    config.providers.ca_file = Some(ca_file);
    let (service, client) = start(config, fast_properties()).await;
    let hosts = client.validate_url(&format!("https://localhost:{}/details", addr.port())).await.unwrap();
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].host_name, "cloud.example.com");
    assert_eq!(hosts[0].token.as_ref().unwrap().expose(), "qwerrtrtrtrt2234344===");
    let error = client.validate_url(&format!("https://localhost:{}/broken", addr.port())).await.unwrap_err();
    assert_eq!(error.status(), Some(400));
    let error = client.validate_url("http://localhost/details").await.unwrap_err();
    assert_eq!(error.status(), Some(400));
    handle.shutdown();
    service.shutdown().await;
}

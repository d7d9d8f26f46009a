//! API keys on every app API route; the unauthenticated routes.

use reqwest::Method;
use serde_json::Value;

use crate::util::Harness;

#[tokio::test]
async fn every_app_api_route_needs_a_valid_api_key_in_its_header() {
    let harness = Harness::start().await;
    harness.echo_primary("primary1").await;
    let url = harness.endpoint.url();
    let routes = [
        (Method::GET, "/api/v1/primaries".to_owned()),
        (Method::GET, "/api/v1/primaries/primary1/netbackup/admin/jobs".to_owned()),
        (Method::POST, "/api/v1/primaries/primary1/netbackup/login".to_owned()),
        (Method::DELETE, "/api/v1/primaries/primary1/netbackup/config/policies/p".to_owned()),
        (Method::GET, "/api/v1/notifications".to_owned()),
        (Method::GET, "/api/v1/notifications/stream".to_owned()),
        (Method::GET, "/relay/wrong-key/primary1/netbackup/admin/jobs".to_owned()),
    ];
    for (method, path) in &routes {
        let none = harness.http.request(method.clone(), format!("{url}{path}")).send().await.unwrap();
        assert_eq!(none.status(), 401, "{method} {path} without a key");
        let body: Value = none.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
        let wrong = harness
            .http
            .request(method.clone(), format!("{url}{path}"))
            .header("X-NBWSS-API-Key", "wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{method} {path} with a wrong key");
        // The Authorization header is NetBackup's, never the app API's.
        let bearer = harness
            .http
            .request(method.clone(), format!("{url}{path}"))
            .header("Authorization", format!("Bearer {}", harness.api_key))
            .send()
            .await
            .unwrap();
        assert_eq!(bearer.status(), 401, "{method} {path} with the key as Authorization");
    }
    // The query parameter is accepted on the SSE stream only.
    let query =
        harness.http.get(format!("{url}/api/v1/primaries?api_key={}", harness.api_key)).send().await.unwrap();
    assert_eq!(query.status(), 401);
    // A revoked key stops working.
    let other = harness.endpoint.create_api_key("other").unwrap();
    let ok = harness
        .http
        .get(format!("{url}/api/v1/primaries"))
        .header("X-NBWSS-API-Key", &other)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(harness.endpoint.store().revoke_api_key("other").unwrap());
    let gone = harness
        .http
        .get(format!("{url}/api/v1/primaries"))
        .header("X-NBWSS-API-Key", &other)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 401);
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn health_metrics_openapi_and_dashboard_are_served() {
    let harness = Harness::start().await;
    let url = harness.endpoint.url();
    assert!(url.starts_with("https://127.0.0.1:"));
    assert!(harness.endpoint.websocket_url().starts_with("wss://127.0.0.1:"));
    assert!(harness.endpoint.websocket_url().ends_with("/nbwss"));
    let fingerprint = harness.endpoint.certificate_sha256();
    assert_eq!(fingerprint.len(), 32 * 3 - 1);
    assert!(fingerprint.chars().all(|c| c == ':' || c.is_ascii_digit() || c.is_ascii_uppercase()));

    let health: Value =
        harness.http.get(format!("{url}/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let metrics = harness.http.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
    for name in [
        "nbwss_endpoint_sessions",
        "nbwss_endpoint_connections_total",
        "nbwss_endpoint_relay_duration_seconds",
        "nbwss_endpoint_notification_records_total",
        "nbwss_endpoint_notification_duplicates_total",
    ] {
        assert!(metrics.contains(name), "{name} in {metrics}");
    }
    let openapi: Value =
        harness.http.get(format!("{url}/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3."));
    assert!(openapi["paths"]["/api/v1/notifications/stream"].is_object());
    // Every route the document names is served (none is a 404), with the API key.
    harness.token("primary1");
    for (path, item) in openapi["paths"].as_object().unwrap() {
        let path = path
            .replace("{name}", "primary1")
            .replace("{path}", "admin/jobs")
            .replace("{apiKey}", &harness.api_key);
        let method = if item.get("get").is_some() { Method::GET } else { Method::POST };
        let response = harness
            .http
            .request(method, format!("{url}{path}"))
            .header("X-NBWSS-API-Key", &harness.api_key)
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .await
            .unwrap();
        if response.status() == 404 {
            // Only a route's own "not found" (e.g. an unknown provider id), never the router's.
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert!(body["error"]["code"].is_string(), "{path}: {body}");
            assert_ne!(body["error"]["code"], "no_route", "{path} is documented but not served");
        }
    }
    let page = harness.http.get(format!("{url}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("NBWSS endpoint"));

    let details = harness.endpoint.create_token("primary1", "group-a", 3).unwrap();
    let value = details.to_value();
    assert_eq!(value["hostName"], "127.0.0.1");
    assert_eq!(value["url"], harness.endpoint.websocket_url());
    assert_eq!(value["groupId"], "group-a");
    assert_eq!(value["priority"], 3);
    assert!(value["token"].as_str().unwrap().len() >= 43);
    let parsed = nbwss_protocol::parse_endpoint_details(&value.to_string()).unwrap();
    assert_eq!(parsed[0], details);
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn a_provider_url_serves_the_details_file_once() {
    let harness = Harness::start().await;
    let url = harness
        .endpoint
        .create_token_provider_url("primary1", "sg1", 1, std::time::Duration::from_secs(600))
        .unwrap();
    assert!(url.starts_with(&format!("{}/provider/", harness.endpoint.url())));
    let first = harness.http.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let details = nbwss_protocol::parse_endpoint_details(&first.text().await.unwrap()).unwrap();
    assert_eq!(details[0].url, harness.endpoint.websocket_url());
    assert_eq!(harness.http.get(&url).send().await.unwrap().status(), 404, "one time only");
    // The token it served is the primary server's token.
    let primary = crate::util::Primary::connect(&harness.endpoint, &details[0].token).await;
    assert!(primary.is_some());
    harness.endpoint.shutdown().await;
}

/// Captured log output.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn api_keys_in_urls_never_reach_the_log() {
    // A global subscriber: a per-thread one races with other tests over tracing's callsite cache. Other
    // tests' lines land in the buffer too, which does not matter: every test has its own random key.
    static CAPTURED: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    let captured = CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        captured
    });

    let harness = Harness::start().await;
    harness.echo_primary("primary1").await;
    let url = harness.endpoint.url();
    let relayed = harness
        .http
        .get(format!("{url}/relay/{}/primary1/netbackup/admin/jobs?x=1", harness.api_key))
        .send()
        .await
        .unwrap();
    assert_eq!(relayed.status(), 200);
    let stream = harness
        .http
        .get(format!("{url}/api/v1/notifications/stream?api_key={}", harness.api_key))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    drop(stream);
    let provider = harness
        .endpoint
        .create_token_provider_url("primary2", "sg1", 1, std::time::Duration::from_secs(60))
        .unwrap();
    assert_eq!(harness.http.get(&provider).send().await.unwrap().status(), 200);
    harness.endpoint.shutdown().await;

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("/relay/***/primary1/netbackup/admin/jobs?x=1"), "requests are logged: {log}");
    assert!(log.contains("api_key=***"), "{log}");
    assert!(log.contains("/provider/***"), "{log}");
    assert!(!log.contains(&harness.api_key), "the API key leaked into the log: {log}");
    let provider_id = provider.rsplit('/').next().unwrap();
    assert!(!log.contains(provider_id), "the provider id leaked into the log");
}

#[tokio::test]
async fn certificate_and_key_files_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let mut config = nbwss_endpoint::EndpointConfig::new(dir.path().join("data"));
    config.tls = Some(nbwss_endpoint::TlsFiles { cert, key });
    let endpoint = nbwss_endpoint::Endpoint::start(config).await.unwrap();
    assert_eq!(endpoint.certificate_sha256(), nbwss_endpoint::fingerprint(generated.cert.der()));
    assert_eq!(endpoint.certificate_pem(), generated.cert.pem());
    assert!(!dir.path().join("data").join(nbwss_endpoint::GENERATED_CERT_FILE).exists());
    let http = crate::util::http_client(&generated.cert.pem());
    let health = http.get(format!("{}/healthz", endpoint.url())).send().await.unwrap();
    assert_eq!(health.status(), 200);
    endpoint.shutdown().await;
}

/// A method a route does not answer is 405 with `Allow` and the JSON error body, before the API key is checked
/// (the relay carries only a COMMAND's methods, D6); a path no route answers is 404 with the same body.
#[tokio::test]
async fn undeclared_methods_are_405_with_allow_and_unknown_paths_404_with_the_error_body() {
    let harness = Harness::start().await;
    let url = harness.endpoint.url();
    let trace = Method::from_bytes(b"TRACE").unwrap();
    let relayed = "GET,HEAD,DELETE,OPTIONS,PATCH,POST,PUT";
    for (method, path, allowed) in [
        (trace.clone(), "/api/v1/primaries/primary1/netbackup/admin/jobs", relayed),
        (trace, "/relay/not-a-key/primary1/netbackup/admin/jobs", relayed),
        (Method::DELETE, "/api/v1/primaries", "GET,HEAD"),
        (Method::PUT, "/api/v1/webhooks", "GET,HEAD,POST"),
        (Method::POST, "/healthz", "GET,HEAD"),
    ] {
        for key in [None, Some(harness.api_key.as_str())] {
            let mut request = harness.http.request(method.clone(), format!("{url}{path}"));
            if let Some(key) = key {
                request = request.header("X-NBWSS-API-Key", key);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 405, "{method} {path} (key: {})", key.is_some());
            let allow = response.headers()["allow"].to_str().unwrap().replace(' ', "");
            let mut allow: Vec<&str> = allow.split(',').collect();
            allow.sort_unstable();
            let mut expected: Vec<&str> = allowed.split(',').collect();
            expected.sort_unstable();
            assert_eq!(allow, expected, "Allow of {path}");
            assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "method_not_allowed", "{method} {path}");
        }
    }
    let response = harness.get("/api/v1/nothing-here").await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_route");
    // A capability key in an unknown path is not echoed.
    let response = harness.http.get(format!("{url}/relay/SECRET-KEY")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert!(!body.to_string().contains("SECRET-KEY"), "{body}");
    harness.endpoint.shutdown().await;
}

/// A query string that does not parse is 400 with the JSON error body, not axum's plain text.
#[tokio::test]
async fn malformed_query_strings_are_400_with_the_error_body() {
    let harness = Harness::start().await;
    for path in [
        "/api/v1/notifications?object=JOB&object=JOB",
        "/api/v1/notifications?after=soon",
        "/api/v1/stats/activity?hours=many",
        "/api/v1/stats/relay?minutes=-",
        "/api/v1/webhooks/wh_nope/deliveries?limit=x",
    ] {
        let response = harness.get(path).await;
        assert_eq!(response.status(), 400, "{path}");
        assert!(
            response.headers()["content-type"].to_str().unwrap().starts_with("application/json"),
            "{path}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "bad_request", "{path}");
        assert!(body["error"]["message"].as_str().unwrap().contains("query string"), "{path}: {body}");
    }
    let response = harness
        .http
        .post(format!("{}/api/v1/webhooks/wh_nope/resume?discardFailed=maybe", harness.endpoint.url()))
        .header("X-NBWSS-API-Key", &harness.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");
    harness.endpoint.shutdown().await;
}

/// The OpenAPI document lists the error codes the endpoint answers: every code the sources build an
/// `ApiError` with is in the Error schema's enum.
#[test]
fn every_error_code_the_endpoint_answers_is_documented() {
    let document: Value = serde_json::from_str(include_str!("../../src/openapi.json")).unwrap();
    let documented: Vec<&str> = document["components"]["schemas"]["Error"]["properties"]["error"]
        ["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap())
        .collect();
    let mut sources = Vec::new();
    let mut directories = vec![std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(directory) = directories.pop() {
        for entry in std::fs::read_dir(directory).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                directories.push(path);
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                sources.push(std::fs::read_to_string(path).unwrap());
            }
        }
    }
    let mut found = 0;
    for source in &sources {
        for constructor in
            ["ApiError::new(", "Self::new(\n            StatusCode::", "Self::new(StatusCode::"]
        {
            for (index, _) in source.match_indices(constructor) {
                // The code is the first string literal after the status.
                let rest = &source[index..];
                let rest = &rest[rest.find(',').unwrap()..];
                let start = rest.find('"').unwrap() + 1;
                let code = &rest[start..start + rest[start..].find('"').unwrap()];
                assert!(documented.contains(&code), "the code {code} is not in the Error schema's enum");
                found += 1;
            }
        }
    }
    assert!(found > 15, "the constructors were found ({found})");
}

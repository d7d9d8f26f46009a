//! Protocol behaviour: negotiation, error bodies, path normalisation, bad input.

use serde_json::json;

use crate::util::{vnd, Server};

#[tokio::test]
async fn ping_is_plain_text_without_authentication() {
    let server = Server::start().await;
    let reply =
        server.send("GET", "/ping", &[("Accept", "text/vnd.netbackup+plain;version=3.0")], None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type").unwrap(), "text/vnd.netbackup+plain;version=3.0");
    assert_eq!(reply.header("x-netbackup-api-version").unwrap(), "3.0");
    let millis: i64 = reply.text.parse().unwrap();
    assert!((millis - server.handle.now().timestamp_millis()).abs() < 60_000);
}

#[tokio::test]
async fn unknown_paths_and_methods_get_json_errors() {
    let server = Server::start().await;
    let token = server.login().await;
    server.get("/no/such/thing", &token).await.assert_error(404);
    server.send("GET", "/../../etc/passwd", &[], None).await.assert_error(404);
    let reply = server.send("GET", "/", &[], None).await;
    assert_eq!(reply.status, 404);
    server.send("PUT", "/admin/jobs", &[("Authorization", &token)], None).await.assert_error(405);
    server.send("DELETE", "/login", &[], None).await.assert_error(405);
    server.send("GET", "/login", &[], None).await.assert_error(405);
}

#[tokio::test]
async fn trailing_and_doubled_slashes_are_normalised() {
    let server = Server::start().await;
    let token = server.login().await;
    for path in [
        "/admin/jobs/",
        "//admin/jobs",
        "//admin//jobs/",
        "/config/policies/",
        "//config/policies/Standard_FS",
    ] {
        let reply = server.get(path, &token).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
    }
    let body = json!({"data": {"type": "backupRequest", "attributes": {"policyName": "Standard_FS"}}});
    let reply = server.call("POST", "//admin/manual-backup/", &token, &body).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
}

#[tokio::test]
async fn negotiation_tolerates_real_client_headers() {
    let server = Server::start().await;
    let token = server.login().await;
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "14.0"),
        (&[("Accept", "*/*"), ("Content-Type", "application/vnd.netbackup+json; version=1.0")], "1.0"),
        (&[("ContentType", "application/vnd.netbackup+json;version=1.0")], "14.0"),
        (&[("Content-Type", "application/json")], "14.0"),
        (&[("Accept", "application/json")], "14.0"),
        (&[("Accept", "application/vnd.netbackup+json;version=4.0;charset=UTF-8")], "4.0"),
        (&[("Accept", "application/vnd.netbackup+json; version=10.0")], "10.0"),
    ];
    for (headers, version) in cases {
        let mut all = vec![("Authorization", token.as_str())];
        all.extend_from_slice(headers);
        let reply = server.send("GET", "/admin/jobs", &all, None).await;
        assert_eq!(reply.status, 200, "{headers:?}: {}", reply.text);
        assert_eq!(reply.header("content-type").unwrap(), vnd(version), "{headers:?}");
    }
}

#[tokio::test]
async fn explicit_unsupported_versions_are_refused() {
    let server = Server::start().await;
    let token = server.login().await;
    let reply =
        server.send("GET", "/admin/jobs", &[("Authorization", &token), ("Accept", &vnd("99.0"))], None).await;
    reply.assert_error(406);
    let reply =
        server.send("GET", "/ping", &[("Accept", "text/vnd.netbackup+plain;version=abc")], None).await;
    reply.assert_error(406);
    let body = json!({"userName": "admin", "password": "password"}).to_string();
    let reply = server.send("POST", "/login", &[("Content-Type", &vnd("42.0"))], Some(&body)).await;
    reply.assert_error(415);
    let reply = server.send("POST", "/login", &[("Content-Type", "text/xml")], Some(&body)).await;
    reply.assert_error(415);
}

#[tokio::test]
async fn bad_input_gets_400_with_a_json_body() {
    let server = Server::start().await;
    let token = server.login().await;
    let json_type = [("Content-Type", "application/json")];
    server.send("POST", "/login", &json_type, Some("{not json")).await.assert_error(400);
    server.send("POST", "/login", &json_type, Some("")).await.assert_error(400);
    server.send("POST", "/login", &json_type, Some("[1,2]")).await.assert_error(400);
    let body = server.send("POST", "/login", &json_type, Some(r#"{"userName": 5, "password": "x"}"#)).await;
    let error = body.assert_error(400);
    assert!(error["attributeErrors"]["userName"].is_string());
    server.send("POST", "/login", &json_type, Some(r#"{"userName": "admin"}"#)).await.assert_error(400);
    let auth = [("Authorization", token.as_str()), ("Content-Type", "application/json")];
    server.send("POST", "/admin/manual-backup", &auth, Some("{\"data\": 7}")).await.assert_error(400);
    server
        .send(
            "POST",
            "/admin/manual-backup",
            &auth,
            Some(r#"{"data":{"type":"backupRequest","attributes":{"policyName":3}}}"#),
        )
        .await
        .assert_error(400);
    server
        .send(
            "POST",
            "/admin/manual-backup",
            &auth,
            Some(r#"{"data":{"type":"backupRequest","attributes":{"policyName":"nope"}}}"#),
        )
        .await
        .assert_error(400);
    server.send("POST", "/config/policies", &auth, Some("\u{0}\u{1}")).await.assert_error(400);
    for path in [
        "/admin/jobs?page[limit]=100000",
        "/admin/jobs?page[limit]=-5",
        "/admin/jobs?page[limit]=ten",
        "/admin/jobs?page[offset]=99999999999999999999",
        "/catalog/images?page[limit]=0",
        "/catalog/images?page[limit]=101",
        "/config/policies?page[limit]=501",
        "/admin/jobs?filter=nosuchfield%20eq%201",
        "/admin/jobs?sort=nosuchfield",
    ] {
        server.get(path, &token).await.assert_error(400);
    }
    // A job id that is not a number names no job.
    for path in ["/admin/jobs/abc", "/admin/jobs/-1", "/admin/jobs/null%2Cnull/file-lists"] {
        server.get(path, &token).await.assert_error(404);
    }
    // An empty parameter counts as not given, as template-filling clients send them.
    assert_eq!(
        server.get("/admin/jobs?filter=&page[after]=&page[before]=&page[limit]=", &token).await.status,
        200
    );
    server.get("/admin/jobs?page[limit]=100", &token).await;
}

/// `filter=%C2%85` (U+0085, whitespace to Unicode but once not to the tokenizer) made the emulator loop
/// forever, growing until the kernel killed it. It is a 400 now, answered at once, and so is every other
/// filter that is whitespace, control characters, too deep or too long; the emulator keeps serving.
#[tokio::test]
async fn hostile_filters_get_a_prompt_400() {
    let server = Server::start().await;
    let token = server.login().await;
    let deep = format!("{}jobId%20eq%201{}", "(".repeat(1000), ")".repeat(1000));
    let long = format!("clientName%20eq%20'{}'", "x".repeat(5000));
    // Longer than the emulator takes, shorter than the 16 KiB of headers HTTP/2 carries.
    let huge_query = format!("filter=jobId%20eq%201&pad={}", "y".repeat(13_500));
    for query in [
        "filter=%C2%85".to_owned(),
        "filter=%C2%85%C2%85%E2%80%A8".to_owned(),
        "filter=%E3%80%80jobId%E3%80%80eq%E3%80%801(".to_owned(),
        "filter=%00".to_owned(),
        "filter=%FF%FE".to_owned(),
        format!("filter={deep}"),
        format!("filter={long}"),
        huge_query,
    ] {
        let path = format!("/admin/jobs?{query}");
        let reply = tokio::time::timeout(std::time::Duration::from_secs(5), server.get(&path, &token))
            .await
            .unwrap_or_else(|_| panic!("no answer within 5 s to {}", &path[..path.len().min(80)]));
        reply.assert_error(400);
    }
    for path in
        ["/catalog/images?filter=%C2%85", "/config/policies?filter=%C2%85", "/manage/alerts?filter=%C2%85"]
    {
        server.get(path, &token).await.assert_error(400);
    }
    assert_eq!(server.get("/admin/jobs?filter=jobId%C2%85gt%C2%850", &token).await.status, 200);
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let server = Server::start().await;
    let reply = server.send("GET", "/ping", &[("X-Request-ID", "abc-123")], None).await;
    assert_eq!(reply.header("x-request-id").unwrap(), "abc-123");
    let reply = server.send("GET", "/ping", &[], None).await;
    assert!(!reply.header("x-request-id").unwrap().is_empty());
}

#[tokio::test]
async fn the_certificate_is_self_signed_for_localhost() {
    let server = Server::start().await;
    let pem = server.handle.certificate_pem();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(server.base.starts_with("https://127.0.0.1:"));
    assert!(server.base.ends_with("/netbackup"));
    // A client that trusts exactly this certificate can reach it by name too.
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .resolve("localhost", server.handle.local_addr())
        .build()
        .unwrap();
    let port = server.handle.local_addr().port();
    let reply = client.get(format!("https://localhost:{port}/netbackup/ping")).send().await.unwrap();
    assert_eq!(reply.status(), 200);
}

#[tokio::test]
async fn http2_clients_get_the_same_links() {
    let server = Server::start().await;
    let token = server.login().await;
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(server.handle.certificate_pem().as_bytes()).unwrap(),
        )
        .tls_built_in_root_certs(false)
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = client
        .get(format!("{}/admin/jobs", server.base))
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let body: serde_json::Value = response.json().await.unwrap();
    let href = body["data"][0]["links"]["self"]["href"].as_str().unwrap();
    assert!(href.starts_with(&server.base), "{href}");
}

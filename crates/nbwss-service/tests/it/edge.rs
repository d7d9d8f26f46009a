//! The relay at the edge: paths judged as the primary server reads them (the traversal table), the
//! allow-list that cannot be walked out of, answers too large for a message, bodies that cannot travel as
//! text, redirects, header floods and slow answers. Every case runs over real sockets through the service.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::any;
use nbwss_protocol::{CommandResponse, Method, Properties};
use nbwss_service::{AllowRule, PolicyConfig};
use serde_json::{json, Value};

use crate::relay::{assert_service_error, connected};
use crate::util::*;

/// What the primary server received, path percent-decoded as it routes it.
type Seen = Arc<Mutex<Vec<String>>>;

/// A primary server whose every unknown path answers 200 with the decoded path it received, plus routes
/// that answer what cannot be relayed intact.
async fn hostile_primary() -> (TestPrimary, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let extra = axum::Router::new()
        .route(
            "/netbackup/gzip",
            any(|| async { ([("content-encoding", "gzip")], vec![0x1f_u8, 0x8b, 0x08, 0x00, 0xff, 0xfe]) }),
        )
        .route(
            "/netbackup/binary",
            any(|| async {
                ([("content-type", "application/octet-stream")], vec![0x89_u8, b'P', b'N', b'G', 0xff, 0x00])
            }),
        )
        .route(
            "/netbackup/latin1-header",
            any(|| async {
                let mut headers = HeaderMap::new();
                headers.insert("x-name", HeaderValue::from_bytes(b"caf\xe9").unwrap());
                (headers, "ok")
            }),
        )
        .route("/netbackup/quotes", any(|| async { "\"".repeat(20 * 1024) }))
        .route(
            "/netbackup/redirect-here",
            any(|| async { (StatusCode::FOUND, [("location", "/netbackup/echo")], "") }),
        )
        .route(
            "/netbackup/redirect-away",
            any(|| async {
                (StatusCode::TEMPORARY_REDIRECT, [("location", "https://127.0.0.1:1/elsewhere")], "")
            }),
        )
        .route(
            "/netbackup/many-headers",
            any(|| async {
                let mut headers = HeaderMap::new();
                for index in 0..10_000 {
                    headers.insert(
                        HeaderName::from_bytes(format!("x-h{index}").as_bytes()).unwrap(),
                        HeaderValue::from_static("v"),
                    );
                }
                (headers, "flood")
            }),
        )
        .route(
            "/netbackup/trickle",
            any(|| async {
                // A large answer, sent slowly: one KiB every 20 ms, without end.
                let stream = futures_util::stream::unfold((), |()| async {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Some((Ok::<_, std::io::Error>(vec![b'x'; 1024]), ()))
                });
                axum::body::Body::from_stream(stream).into_response()
            }),
        )
        .fallback(move |uri: axum::http::Uri| {
            let record = record.clone();
            async move {
                let path = percent_encoding::percent_decode_str(uri.path()).decode_utf8_lossy().into_owned();
                record.lock().unwrap().push(path.clone());
                axum::Json(json!({"path": path}))
            }
        });
    (TestPrimary::start_with(extra).await, seen)
}

/// What a COMMAND gets.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Relayed; the primary server routes this (decoded) path.
    Reaches(&'static str),
    /// 400 from the service; the detail contains these words.
    Refused(&'static str),
}

/// Sends a COMMAND built as raw JSON (so that nothing on the sending side judges it first).
async fn raw_command(peer: &Peer, uri: &str, headers: Value) -> CommandResponse {
    let id = nbwss_protocol::new_message_id();
    let text = json!({"version": "1.0", "id": id, "type": "COMMAND", "subType": "REQUEST", "timeStamp": 1,
        "payload": {"uri": uri, "method": "GET", "headers": headers}})
    .to_string();
    peer.send_text(&text);
    let (got, response) = peer.recv_response().await;
    assert_eq!(got, id);
    response
}

fn check(uri: &str, expect: Expect, response: &CommandResponse) {
    match expect {
        Expect::Reaches(path) => {
            assert_eq!(response.status_code, 200, "{uri}: {response:?}");
            let body: Value = serde_json::from_str(&response.body).unwrap();
            assert_eq!(body["path"], path, "{uri}");
        }
        Expect::Refused(reason) => {
            assert_service_error(response, 400);
            let details = response.error_body().unwrap().details().join(" ");
            assert!(details.contains(reason), "{uri}: {details}");
        }
    }
}

const TRAVERSAL_TABLE: &[(&str, Expect)] = {
    use Expect::{Reaches, Refused};
    &[
        ("/netbackup/admin/jobs", Reaches("/netbackup/admin/jobs")),
        ("/netbackup//admin//jobs", Reaches("/netbackup/admin/jobs")),
        ("/netbackup///admin/jobs/", Reaches("/netbackup/admin/jobs/")),
        ("/netbackup/admin/%6Aobs", Reaches("/netbackup/admin/jobs")),
        ("/netbackup/admin/jobs?filter=a;b&x=..%2f", Reaches("/netbackup/admin/jobs")),
        ("/netbackup/config/policies/caf%C3%A9", Reaches("/netbackup/config/policies/café")),
        ("/netbackup/a/...", Reaches("/netbackup/a/...")),
        ("/netbackup/../config", Refused(". or ..")),
        ("/netbackup/admin/jobs/../../etc/passwd", Refused(". or ..")),
        ("/netbackup/admin/./jobs", Refused(". or ..")),
        ("/netbackup/admin/jobs/..", Refused(". or ..")),
        ("/netbackup/%2e%2e/config", Refused(". or ..")),
        ("/netbackup/%2E%2E/config", Refused(". or ..")),
        ("/netbackup/%2E./config", Refused(". or ..")),
        ("/netbackup/.%2e/config", Refused(". or ..")),
        ("/netbackup/%2e/config", Refused(". or ..")),
        ("/netbackup/admin/jobs/..;/config", Refused("; path parameters")),
        ("/netbackup/admin/jobs/..%3B/config", Refused("; path parameters")),
        ("/netbackup/admin/jobs;jsessionid=0", Refused("; path parameters")),
        ("/netbackup/admin/jobs/%252e%252e/config", Refused("percent-encoded twice")),
        ("/netbackup/admin/jobs/%252E%252E%252Fconfig", Refused("percent-encoded twice")),
        ("/netbackup/admin/jobs/%c0%ae%c0%ae/config", Refused("UTF-8")),
        ("/netbackup/admin/jobs/%e0%80%ae%e0%80%ae/config", Refused("UTF-8")),
        ("/netbackup/admin\\..\\config", Refused("backslashes")),
        ("/netbackup/admin%5c..%5cconfig", Refused("backslashes")),
        ("/netbackup/admin%5C..%5Cconfig", Refused("backslashes")),
        ("/netbackup/admin%2f..%2fconfig", Refused("encoded slash")),
        ("/netbackup/admin%2F..%2Fconfig", Refused("encoded slash")),
        ("/netbackup/admin/jobs%00.json", Refused("control characters")),
        ("/netbackup/admin/jobs\u{0}", Refused("control characters")),
        ("/netbackup/admin/jobs%0d%0aX-Injected:%201", Refused("control characters")),
        ("/netbackup/admin/jobs\r\nX-Injected: 1", Refused("control characters")),
        ("/netbackup/admin/jobs HTTP/1.1", Refused("spaces")),
        ("/netbackup/admin/jobs#fragment", Refused("fragment")),
        ("/netbackup/@evil.example/x", Refused("@")),
        ("/netbackup/%40evil.example/x", Refused("@")),
        ("//evil.example/netbackup/admin/jobs", Refused("authority")),
        ("https://evil.example/netbackup/admin/jobs", Refused("absolute URL")),
        ("/netbackup/https://evil.example/", Refused("scheme")),
        ("/NETBACKUP/admin/jobs", Refused("must start with /netbackup/")),
        ("/netbackupx/admin/jobs", Refused("must start with /netbackup/")),
        ("/netbackup%2fadmin/jobs", Refused("must start with /netbackup/")),
        ("/netbackup/admin/jobs%zz", Refused("malformed percent-escape")),
    ]
};

#[tokio::test]
async fn the_traversal_table_over_sockets() {
    assert!(TRAVERSAL_TABLE.len() >= 30);
    let (primary, seen) = hostile_primary().await;
    let dir = tempfile::tempdir().unwrap();
    let (service, endpoint, peer) =
        connected(dir.path(), &primary.base_url, &primary.cert_pem, fast_properties(), |_| {}).await;
    for (uri, expect) in TRAVERSAL_TABLE {
        check(uri, *expect, &raw_command(&peer, uri, json!({})).await);
    }
    // Headers that would split the request or smuggle another one are refused, never passed on.
    for (headers, reason) in [
        (json!({"X-A": "v\r\nX-Injected: 1"}), "line breaks"),
        (json!({"X-A": "v\nX-Injected: 1"}), "line breaks"),
        (json!({"X-A": "v\u{0}"}), "NUL"),
        (json!({"X-A": "v\u{1}"}), "control character"),
        (json!({"X-A": "v\u{7f}"}), "control character"),
        (json!({"X-A\r\nX-Injected": "1"}), "not a valid HTTP header name"),
        (json!({"X A": "1"}), "not a valid HTTP header name"),
        (json!({"X:A": "1"}), "not a valid HTTP header name"),
        (json!({"": "1"}), "not a valid HTTP header name"),
    ] {
        let response = raw_command(&peer, "/netbackup/admin/jobs", headers.clone()).await;
        assert_service_error(&response, 400);
        let details = response.error_body().unwrap().details().join(" ");
        assert!(details.contains(reason), "{headers}: {details}");
    }
    // A tab inside a value is an ordinary HTTP header value.
    let response = raw_command(&peer, "/netbackup/admin/jobs", json!({"X-A": "a\tb"})).await;
    assert_eq!(response.status_code, 200, "{response:?}");
    // Only the allowed rows reached the primary server; one bad call never cost the connection.
    let reached: Vec<&str> = TRAVERSAL_TABLE
        .iter()
        .filter_map(|(_, expect)| match expect {
            Expect::Reaches(path) => Some(*path),
            Expect::Refused(_) => None,
        })
        .chain(["/netbackup/admin/jobs"])
        .collect();
    assert_eq!(*seen.lock().unwrap(), reached);
    assert!(peer.is_open());
    assert_eq!(endpoint.connects(), 1, "the session was never replaced");
    service.shutdown().await;
}

#[tokio::test]
async fn the_allow_list_cannot_be_walked_out_of() {
    let (primary, seen) = hostile_primary().await;
    let dir = tempfile::tempdir().unwrap();
    let (service, _endpoint, peer) =
        connected(dir.path(), &primary.base_url, &primary.cert_pem, fast_properties(), |config| {
            config.policy = PolicyConfig {
                allow: vec![AllowRule { method: "GET".into(), path: "/netbackup/admin/jobs*".into() }],
            };
        })
        .await;
    for uri in [
        "/netbackup/admin/jobs/..;/config/servers",
        "/netbackup/admin/jobs/..%3b/config/servers",
        "/netbackup/admin/jobs/../config/servers",
        "/netbackup/admin/jobs/%2e%2e/config/servers",
        "/netbackup/admin/jobs/.%2E/config/servers",
        "/netbackup/admin/jobs/%252e%252e/config/servers",
        "/netbackup/admin/jobs%2f..%2f..%2fconfig",
        "/netbackup/admin/jobs\\..\\..\\config",
        "/netbackup/admin/jobs/%c0%ae%c0%ae/config",
        "/netbackup/admin/jobs/./../../config",
    ] {
        let response = raw_command(&peer, uri, json!({})).await;
        assert_service_error(&response, 400);
    }
    // The policy judges the path as the primary server routes it: other spellings of an allowed path pass,
    // other paths are refused whatever their spelling.
    for (uri, status) in [
        ("/netbackup/admin/jobs", 200),
        ("/netbackup//admin/jobs/5", 200),
        ("/netbackup/admin/%6aobs", 200),
        ("/netbackup/config/servers", 403),
        ("/netbackup//config/servers", 403),
        ("/netbackup/admin/%4aobs", 403),
    ] {
        let response = raw_command(&peer, uri, json!({})).await;
        assert_eq!(response.status_code, status, "{uri}: {response:?}");
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, ["/netbackup/admin/jobs", "/netbackup/admin/jobs/5", "/netbackup/admin/jobs"]);
    service.shutdown().await;
}

#[tokio::test]
async fn an_answer_too_large_for_a_message_is_413_and_the_connection_stays() {
    let (primary, _seen) = hostile_primary().await;
    let dir = tempfile::tempdir().unwrap();
    let properties = Properties { message_max_bytes: 32 * 1024, ..fast_properties() };
    let (service, endpoint, peer) =
        connected(dir.path(), &primary.base_url, &primary.cert_pem, properties, |_| {}).await;
    // A body over the limit, and a body under it whose JSON escaping takes the message over it.
    for uri in ["/netbackup/big", "/netbackup/quotes"] {
        let response = peer.command(command(Method::Get, uri, &[], None)).await;
        assert_service_error(&response, 413);
        assert!(response.error_body().unwrap().details()[0].contains("message.maxBytes"), "{response:?}");
    }
    // The same connection goes on serving.
    let response = peer.command(command(Method::Get, "/netbackup/echo", &[], None)).await;
    assert_eq!(response.status_code, 200);
    assert!(peer.is_open());
    assert_eq!(endpoint.connects(), 1, "the session was not replaced");
    let client = service.admin_client().unwrap();
    assert_eq!(state_of(&client, "ep1").await.unwrap().1, "CONNECTED");
    let audit = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    assert_eq!(
        audit.matches("\"status\":413").count(),
        2,
        "the audit log records what was answered: {audit}"
    );
    service.shutdown().await;
}

#[tokio::test]
async fn bodies_arrive_intact_or_fail_loudly() {
    let (primary, _seen) = hostile_primary().await;
    let dir = tempfile::tempdir().unwrap();
    let (service, _endpoint, peer) =
        connected(dir.path(), &primary.base_url, &primary.cert_pem, fast_properties(), |_| {}).await;
    // The app's Accept-Encoding is not passed on: the primary server answers identity.
    let response = peer
        .command(command(
            Method::Get,
            "/netbackup/echo",
            &[("Accept-Encoding", "gzip, br"), ("X-Kept", "1")],
            None,
        ))
        .await;
    assert_eq!(response.status_code, 200);
    let echoed: Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(echoed["headers"]["x-kept"], "1");
    assert!(echoed["headers"].get("accept-encoding").is_none(), "{echoed}");
    // Compressed anyway, binary, or a header that is not text: a 502 naming why, never a corrupted 200.
    for (uri, reason) in [
        ("/netbackup/gzip", "Content-Encoding: gzip"),
        ("/netbackup/binary", "not UTF-8 text"),
        ("/netbackup/latin1-header", "x-name header is not UTF-8"),
    ] {
        let response = peer.command(command(Method::Get, uri, &[], None)).await;
        assert_service_error(&response, 502);
        let details = response.error_body().unwrap().details().join(" ");
        assert!(details.contains(reason), "{uri}: {details}");
    }
    service.shutdown().await;
}

#[tokio::test]
async fn redirects_are_answered_never_followed() {
    let (primary, seen) = hostile_primary().await;
    let dir = tempfile::tempdir().unwrap();
    let (service, _endpoint, peer) =
        connected(dir.path(), &primary.base_url, &primary.cert_pem, fast_properties(), |_| {}).await;
    for (uri, status, location) in [
        ("/netbackup/redirect-here", 302, "/netbackup/echo"),
        ("/netbackup/redirect-away", 307, "https://127.0.0.1:1/elsewhere"),
    ] {
        let response = peer.command(command(Method::Get, uri, &[], None)).await;
        assert_eq!(response.status_code, status, "{response:?}");
        assert!(!response.is_from_service());
        assert_eq!(response.headers.get("location"), Some(location));
    }
    assert!(seen.lock().unwrap().is_empty());
    service.shutdown().await;
}

#[tokio::test]
async fn a_header_flood_and_a_slow_endless_body_cost_one_call_not_the_connection() {
    let (primary, _seen) = hostile_primary().await;
    let dir = tempfile::tempdir().unwrap();
    let properties = Properties { command_timeout: Duration::from_millis(1500), ..fast_properties() };
    let (service, endpoint, peer) =
        connected(dir.path(), &primary.base_url, &primary.cert_pem, properties, |_| {}).await;
    let flood = peer.command(command(Method::Get, "/netbackup/many-headers", &[], None)).await;
    assert_service_error(&flood, 502);
    assert!(flood.error_body().unwrap().error_message.contains("could not be read"), "{flood:?}");
    let trickle = peer.command(command(Method::Get, "/netbackup/trickle", &[], None)).await;
    assert_service_error(&trickle, 504);
    let response = peer.command(command(Method::Get, "/netbackup/echo", &[], None)).await;
    assert_eq!(response.status_code, 200);
    assert_eq!(endpoint.connects(), 1);
    service.shutdown().await;
}

#[tokio::test]
async fn notifications_are_split_to_fit_a_message_and_an_unsendable_record_is_refused() {
    use nbwss_protocol::{Body, Codec, Message, NotificationGroup};

    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = certificate();
    let limit = 2048;
    let properties = Properties { message_max_bytes: limit, ..fast_properties() };
    let (service, admin) =
        start(config(dir.path(), "https://127.0.0.1:9/netbackup", &cert), properties).await;
    let endpoint = TestEndpoint::start(Mode::Valid).await;
    add(&admin, &endpoint, "ep1", "sg1", 1, "t").await;
    let peer = endpoint.next_accepted_peer().await;

    let (http, url) = ingest_client(&service);
    let job = |id: usize, name: &str| {
        json!({"scheduleType": "ST_FULL", "clientName": name, "status": 0, "startTime": 1_459_829_674,
               "state": "DONE", "policyName": "p", "parentJobId": id, "jobId": id, "policyType": "STANDARD",
               "jobType": "BACKUP"})
    };
    let post = |body: Value| {
        http.post(&url).header("X-NBWSS-Admin-Key", service.admin_key()).body(body.to_string()).send()
    };
    let too_big = post(json!([job(1, &"c".repeat(4096))])).await.unwrap();
    assert_eq!(too_big.status().as_u16(), 413);
    assert!(too_big.text().await.unwrap().contains("message.maxBytes"));
    let records: Vec<Value> =
        (1..=60).map(|id| job(id, &format!("client-{id}-{}", "x".repeat(80)))).collect();
    assert_eq!(post(Value::Array(records)).await.unwrap().status().as_u16(), 201);

    let codec = Codec::default();
    let mut seen = Vec::new();
    let mut messages = 0;
    while seen.len() < 60 {
        let message = peer.recv().await;
        let Body::NotificationRequest(groups) = &message.body else { continue };
        let size = codec.encode(&message).len();
        assert!(size <= limit, "a {size}-byte NOTIFICATION REQUEST");
        messages += 1;
        for group in groups {
            let NotificationGroup::Jobs { records, .. } = group else { panic!("{group:?}") };
            seen.extend(records.iter().map(|record| record.job_id));
        }
        peer.send_text(&codec.encode(&Message::with_id(message.id, Body::notification_ack())));
    }
    assert_eq!(seen, (1..=60).collect::<Vec<i64>>());
    assert!(messages > 1, "split into several messages");
    assert!(peer.is_open());
    assert_eq!(endpoint.connects(), 1, "the connection was never closed for a message the service built");
    service.shutdown().await;
}

#[tokio::test]
async fn odd_numbers_from_the_primary_server_never_panic_the_detector() {
    use std::sync::atomic::{AtomicBool, Ordering};

    use nbwss_protocol::Secret;
    use nbwss_service::notify::{
        DetectError, Detector, DetectorConfig, NotifyMetrics, Outbox, OutboxConfig, PrimaryClient,
        PrimaryCredentials,
    };

    let endless = Arc::new(AtomicBool::new(true));
    let pages = endless.clone();
    let extra = axum::Router::new()
        // A validity of 1e300 seconds once panicked the detector task (Duration::from_secs_f64).
        .route("/netbackup/login", any(|| async { axum::Json(json!({"token": "t", "validity": 1e300})) }))
        .route(
            "/netbackup/admin/jobs",
            any(move || {
                let endless = pages.load(Ordering::SeqCst);
                async move {
                    axum::Json(json!({
                        "data": [{"attributes": {
                            "jobId": i64::MAX, "parentJobId": -1, "status": 1e300, "state": "DONE",
                            "startTime": "0000-01-01T00:00:00Z", "lastUpdateTime": "9999-12-31T23:59:59.999Z",
                            "scheduleType": u64::MAX, "policyType": "", "jobType": 7,
                        }}],
                        "meta": {"pagination": {"count": u64::MAX, "next": if endless { json!("same") } else { Value::Null }}},
                    }))
                }
            }),
        )
        .route(
            "/netbackup/catalog/images",
            any(|| async {
                axum::Json(json!({
                    "data": [{"id": "c_0", "attributes": {"backupTime": "0000-01-01T00:00:00Z", "copies": [{"copyNumber": 1e300}],
                              "numCopies": -1, "expiration": "9999-12-31T23:59:59Z"}}],
                    "meta": {"pagination": {"count": u64::MAX}},
                }))
            }),
        );
    let primary = TestPrimary::start_with(extra).await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(
        Outbox::open(&dir.path().join("outbox.sqlite3"), OutboxConfig::default(), NotifyMetrics::default())
            .unwrap(),
    );
    outbox.sync_groups(&[nbwss_service::notify::ConfiguredGroup::new("g", 0)]).unwrap();
    let credentials = PrimaryCredentials::Password {
        user: "u".into(),
        password: Secret::new("p"),
        domain_type: None,
        domain_name: None,
    };
    let client = PrimaryClient::new(&primary.base_url, Some(&primary.cert_pem), credentials, "9.0").unwrap();
    let config = DetectorConfig {
        poll_interval: Duration::from_millis(100),
        reconcile_interval: Duration::from_secs(3600),
        job_overlap: chrono::TimeDelta::minutes(5),
        image_lookback: chrono::TimeDelta::hours(6),
        reconcile_page_size: 100,
        reconcile_page_pause: Duration::ZERO,
    };
    let mut detector = Detector::new(client, outbox.clone(), config);
    // A cursor that never advances is an error, not an endless loop.
    let error = detector.poll_once().await.unwrap_err();
    assert!(matches!(&error, DetectError::Shape(text) if text.contains("same cursor")), "{error}");
    // Pages that end: extreme times and counts are taken without a panic; the next poll reports.
    endless.store(false, Ordering::SeqCst);
    detector.poll_once().await.unwrap();
    detector.poll_once().await.unwrap();
    let remembered = outbox.detect(|detection| detection.job(i64::MAX)).unwrap();
    assert_eq!(remembered, Some(true), "the job with the largest id was taken as DONE");
}

#[cfg(unix)]
#[tokio::test]
async fn the_audit_log_rotates_and_every_secret_file_is_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;

    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let primary = TestPrimary::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // What an older version left: an open data directory and an open audit log.
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(data.join("audit.log"), b"").unwrap();
    std::fs::set_permissions(data.join("audit.log"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let max_file_bytes = 64 * 1024;
    let (service, _endpoint, peer) =
        connected(&data, &primary.base_url, &primary.cert_pem, fast_properties(), |config| {
            config.log.audit_max_file_bytes = max_file_bytes;
            config.log.audit_max_files = 3;
            config.log.audit_body_max_bytes = 8 * 1024;
        })
        .await;
    let body = json!({"data": "x".repeat(16 * 1024)}).to_string();
    let mut last = String::new();
    for _ in 0..40 {
        last = peer.send_command(command(Method::Post, "/netbackup/echo", &[], Some(&body)));
        let (id, response) = peer.recv_response().await;
        assert_eq!((id.as_str(), response.status_code), (last.as_str(), 200));
    }
    let files: Vec<_> =
        ["audit.log", "audit.log.1", "audit.log.2"].iter().map(|name| data.join(name)).collect();
    assert!(!data.join("audit.log.3").exists(), "three files kept, audit.log included");
    let mut lines = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(text.len() as u64 <= max_file_bytes, "{}: {} bytes", file.display(), text.len());
        for line in text.lines() {
            let entry: Value = serde_json::from_str(line).unwrap();
            assert_eq!(entry["bodyTruncated"], true);
            assert!(entry["body"].as_str().unwrap().len() <= 8 * 1024);
            lines += 1;
        }
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    assert!(lines < 40, "the oldest entries were rotated away ({lines} kept)");
    assert!(std::fs::read_to_string(&files[0]).unwrap().contains(&last), "the newest entry is in audit.log");

    assert_eq!(mode(&data), 0o700, "the data directory");
    for secret in ["token.key", "admin.key", "admin-key.pem", "servers.db", "notifications.sqlite3"] {
        assert_eq!(mode(&data.join(secret)), 0o600, "{secret}");
    }
    for journal in
        ["servers.db-wal", "servers.db-shm", "notifications.sqlite3-wal", "notifications.sqlite3-shm"]
    {
        if data.join(journal).exists() {
            assert_eq!(mode(&data.join(journal)), 0o600, "{journal}");
        }
    }
    service.shutdown().await;
}

#[tokio::test]
async fn a_token_too_large_for_a_connect_is_never_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = certificate();
    let properties = Properties { message_max_bytes: 1024, ..fast_properties() };
    let (service, admin) =
        start(config(dir.path(), "https://127.0.0.1:9/netbackup", &cert), properties).await;
    let endpoint = TestEndpoint::start(Mode::Valid).await;
    add(&admin, &endpoint, "ep1", "sg1", 1, &"t".repeat(2000)).await;
    wait_close_status(&admin, "ep1", "CANNOT_ACCEPT").await;
    assert_eq!(endpoint.connects(), 0, "the endpoint never received the oversized CONNECT");
    service.shutdown().await;
}

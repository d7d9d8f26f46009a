//! Webhooks against real HTTPS receivers on loopback: signatures checked with an HMAC computed here, a
//! receiver that fails and recovers, a slow one beside a quick one, retry windows, pausing, caps, and the
//! address policy.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use nbwss_endpoint::webhooks::NewWebhook;
use nbwss_endpoint::{EndpointConfig, Store};
use nbwss_protocol::{JobState, NotificationGroup};
use serde_json::{json, Value};

use crate::notifications::{image, job};
use crate::receiver::{Receiver, Reply};
use crate::util::{eventually, Harness, Primary};

/// Loopback allowed (the receivers live there), short backoffs.
fn quick(config: &mut EndpointConfig) {
    config.webhooks.allow_networks = vec!["127.0.0.0/8".to_owned()];
    config.webhooks.min_backoff_ms = 20;
    config.webhooks.max_backoff_ms = 100;
    config.limits.revocation_check_interval_ms = 50;
}

impl Harness {
    /// `POST path` with a JSON body and the API key.
    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.endpoint.url()))
            .header("X-NBWSS-API-Key", &self.api_key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Subscribes `receiver` (trusting its certificate) with `extra` fields; returns (id, secret).
    pub async fn subscribe(&self, receiver: &Receiver, extra: Value) -> (String, String) {
        let mut body = json!({ "url": receiver.url, "caCertificate": receiver.ca_pem });
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        let response = self.post_json("/api/v1/webhooks", &body).await;
        assert_eq!(response.status(), 201);
        let created: Value = response.json().await.unwrap();
        (created["id"].as_str().unwrap().to_owned(), created["secret"].as_str().unwrap().to_owned())
    }

    pub async fn webhook(&self, id: &str) -> Value {
        self.get_json(&format!("/api/v1/webhooks/{id}")).await
    }
}

/// `count` JOB records, jobs `first..first+count`, `per_message` to a NOTIFICATION.
async fn notify_jobs(primary: &mut Primary, first: i64, count: i64, per_message: i64) {
    let mut next = first;
    while next < first + count {
        let jobs =
            (next..(next + per_message).min(first + count)).map(|id| job(id, JobState::Done)).collect();
        primary.notify(&format!("JOBS-{next}"), vec![NotificationGroup::jobs(jobs)]).await;
        next += per_message;
    }
}

fn job_ids(requests: &[crate::receiver::Request]) -> Vec<i64> {
    requests.iter().map(|r| r.json()["data"]["record"]["jobId"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn deliveries_are_signed_the_standard_webhooks_way() {
    let harness = Harness::start_with(quick).await;
    let receiver = Receiver::ok().await;
    let (id, secret) = harness.subscribe(&receiver, json!({ "description": "alerts" })).await;
    assert!(secret.starts_with("whsec_"));
    let listed = harness.get_json("/api/v1/webhooks").await;
    let listed = &listed["webhooks"][0];
    assert_eq!(listed["id"], id.as_str());
    assert_eq!(listed["createdBy"], "apikey:tests");
    assert!(listed.get("secret").is_none(), "the secret is shown only once");
    assert!(!listed.to_string().contains(&secret));

    let mut primary = Primary::connect(&harness.endpoint, &harness.token("primary1")).await.unwrap();
    primary
        .notify(
            "M1",
            vec![
                NotificationGroup::jobs(vec![job(144, JobState::Done)]),
                NotificationGroup::images(vec![image(17)]),
            ],
        )
        .await;
    eventually(|| async { receiver.delivered().len() == 2 }).await;
    let feed = harness.get_json("/api/v1/notifications").await;
    let now = chrono::Utc::now().timestamp();
    for (request, stored) in receiver.requests().iter().zip(feed["notifications"].as_array().unwrap()) {
        assert!(request.verifies(&secret), "the signature verifies: {request:?}");
        assert!(!request.verifies("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "and only with its secret");
        assert!(request.id.starts_with("msg_") && request.id.ends_with(&format!("_{}", stored["cursor"])));
        assert!(!request.id.contains('.'), "no full stop in the signed id");
        let timestamp: i64 = request.timestamp.parse().unwrap();
        assert!((now - timestamp).abs() < 300, "a current Unix time in seconds");
        assert_eq!(request.content_type, "application/json");
        let body = request.json();
        assert_eq!(body["timestamp"], stored["receivedAt"]);
        assert_eq!(body["data"], *stored, "the record as the feed serves it");
    }
    assert_eq!(receiver.requests()[0].json()["type"], "notification.job");
    assert_eq!(receiver.requests()[1].json()["type"], "notification.image");

    // A test delivery: signed with the same secret, outside the queue.
    let tested: Value =
        harness.post_json(&format!("/api/v1/webhooks/{id}/test"), &json!({})).await.json().await.unwrap();
    assert_eq!(tested["delivered"], true, "{tested}");
    assert_eq!(tested["status"], 200);
    let sample = receiver.requests().last().cloned().unwrap();
    assert_eq!(sample.id, tested["messageId"].as_str().unwrap());
    assert!(sample.id.starts_with("msg_test_"));
    assert_eq!(sample.json()["type"], "webhook.test");
    assert!(sample.verifies(&secret));

    let webhook = harness.webhook(&id).await;
    assert_eq!(webhook["counts"]["deliveredTotal"], 2, "{webhook}");
    assert_eq!(webhook["health"], "healthy");
    let metrics = harness.metrics().await;
    assert!(
        metrics.contains(&format!(
            "nbwss_endpoint_webhook_deliveries_total{{webhook=\"{id}\",outcome=\"delivered\"}} 2"
        )),
        "{metrics}"
    );
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn a_receiver_that_fails_three_times_then_succeeds_gets_every_record_once_in_order() {
    let harness = Harness::start_with(quick).await;
    let receiver = Receiver::start(|index| async move {
        if index < 3 {
            500
        } else {
            200
        }
    })
    .await;
    let (id, secret) = harness.subscribe(&receiver, json!({})).await;
    let mut primary = Primary::connect(&harness.endpoint, &harness.token("primary1")).await.unwrap();
    notify_jobs(&mut primary, 1, 12, 5).await;
    eventually(|| async { receiver.delivered().len() == 12 }).await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 15, "3 failed attempts, then each record once");
    // The first record was tried until it was acknowledged: nothing overtook it.
    assert!(requests[..4].iter().all(|r| r.id == requests[0].id));
    let delivered = receiver.delivered();
    assert_eq!(job_ids(&delivered), (1..=12).collect::<Vec<_>>(), "every record once, in order");
    let mut ids: Vec<&str> = delivered.iter().map(|r| r.id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 12);
    assert!(requests.iter().all(|r| r.verifies(&secret)), "every attempt is signed afresh");
    let webhook = harness.webhook(&id).await;
    assert_eq!(webhook["counts"]["deliveredTotal"], 12);
    assert_eq!(webhook["counts"]["pending"], 0);
    assert_eq!(webhook["lastError"], "HTTP 500 Internal Server Error: receiver says so");
    assert!(harness
        .metrics()
        .await
        .contains(&format!("nbwss_endpoint_webhook_attempt_failures_total{{webhook=\"{id}\"}} 3")));
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn a_slow_receiver_does_not_delay_another() {
    let harness = Harness::start_with(|config| {
        quick(config);
        config.webhooks.request_timeout_ms = 120_000;
    })
    .await;
    let open = Arc::new(tokio::sync::Notify::new());
    let opened = Arc::new(AtomicBool::new(false));
    let slow = {
        let (open, opened) = (open.clone(), opened.clone());
        Receiver::start(move |_| {
            let (open, opened) = (open.clone(), opened.clone());
            async move {
                if !opened.load(Ordering::SeqCst) {
                    open.notified().await;
                }
                200
            }
        })
        .await
    };
    let quick_receiver = Receiver::ok().await;
    let (slow_id, _) = harness.subscribe(&slow, json!({})).await;
    harness.subscribe(&quick_receiver, json!({})).await;
    let mut primary = Primary::connect(&harness.endpoint, &harness.token("primary1")).await.unwrap();
    notify_jobs(&mut primary, 1, 20, 4).await;
    eventually(|| async { quick_receiver.delivered().len() == 20 }).await;
    assert_eq!(job_ids(&quick_receiver.delivered()), (1..=20).collect::<Vec<_>>());
    // Meanwhile the slow one holds the first delivery, and only it: one request in flight per subscription.
    assert_eq!(slow.requests().len(), 1);
    assert_eq!(slow.delivered().len(), 0);
    assert_eq!(harness.webhook(&slow_id).await["counts"]["pending"], 20);
    opened.store(true, Ordering::SeqCst);
    open.notify_waiters();
    eventually(|| async { slow.delivered().len() == 20 }).await;
    assert_eq!(job_ids(&slow.delivered()), (1..=20).collect::<Vec<_>>());
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn a_delivery_failing_for_its_whole_window_fails_pauses_and_is_sent_first_on_resume() {
    let harness = Harness::start_with(|config| {
        quick(config);
        config.webhooks.retry_window_ms = 300;
    })
    .await;
    let healthy = Arc::new(AtomicBool::new(false));
    let receiver = {
        let healthy = healthy.clone();
        Receiver::start(move |_| {
            let healthy = healthy.load(Ordering::SeqCst);
            async move {
                if healthy {
                    Reply::from(200)
                } else {
                    Reply { status: 503, retry_after: Some(0), location: None }
                }
            }
        })
        .await
    };
    let (id, _) = harness.subscribe(&receiver, json!({})).await;
    let mut primary = Primary::connect(&harness.endpoint, &harness.token("primary1")).await.unwrap();
    notify_jobs(&mut primary, 1, 3, 3).await;
    eventually(|| async { harness.webhook(&id).await["state"] == "paused" }).await;
    let webhook = harness.webhook(&id).await;
    assert_eq!(webhook["health"], "paused");
    assert_eq!(webhook["pausedReason"], "failing");
    let detail = webhook["pauseDetail"].as_str().unwrap();
    assert!(detail.contains("HTTP 503") && detail.contains("Resume"), "{detail}");
    assert_eq!(webhook["counts"]["failed"], 1);
    assert_eq!(webhook["counts"]["failedTotal"], 1);
    assert_eq!(webhook["counts"]["pending"], 2);
    let failed = harness.get_json(&format!("/api/v1/webhooks/{id}/deliveries?state=failed")).await;
    assert_eq!(failed["deliveries"][0]["state"], "failed");
    assert_eq!(failed["deliveries"][0]["lastStatus"], 503);
    assert!(failed["deliveries"][0]["attempts"].as_u64().unwrap() >= 2);
    assert!(harness.metrics().await.contains(&format!(
        "nbwss_endpoint_webhook_deliveries_total{{webhook=\"{id}\",outcome=\"failed\"}} 1"
    )));
    assert!(harness
        .metrics()
        .await
        .contains(&format!("nbwss_endpoint_webhook_paused{{webhook=\"{id}\"}} 1")));
    // Paused: nothing more is attempted.
    let attempts = receiver.requests().len();
    let mut primary_more = primary;
    notify_jobs(&mut primary_more, 4, 1, 1).await;
    eventually(|| async { harness.webhook(&id).await["counts"]["pending"] == 3 }).await;
    assert_eq!(receiver.requests().len(), attempts);

    healthy.store(true, Ordering::SeqCst);
    let resumed = harness.post_json(&format!("/api/v1/webhooks/{id}/resume"), &json!({})).await;
    assert_eq!(resumed.status(), 200);
    eventually(|| async { receiver.delivered().len() == 4 }).await;
    assert_eq!(job_ids(&receiver.delivered()), [1, 2, 3, 4], "the failed delivery first, then the rest");
    let webhook = harness.webhook(&id).await;
    assert_eq!((webhook["state"].as_str(), webhook["counts"]["failed"].as_u64()), (Some("active"), Some(0)));
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn gone_pauses_a_webhook_redirects_are_not_followed_and_errors_hide_the_path() {
    let harness = Harness::start_with(quick).await;
    let gone = Receiver::start(|_| async { 410 }).await;
    let moving = Receiver::start(|_| async {
        Reply { status: 307, retry_after: None, location: Some("https://elsewhere.example.com/hook") }
    })
    .await;
    let (gone_id, _) = harness.subscribe(&gone, json!({})).await;
    let (moving_id, _) = harness.subscribe(&moving, json!({})).await;
    // Nothing listens there; the path is a capability, which errors (logged, listed) must not show.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let refused = harness
        .post_json(
            "/api/v1/webhooks",
            &json!({ "url": format!("https://127.0.0.1:{port}/hooks/capability-7f3a9c") }),
        )
        .await;
    let refused: Value = refused.json().await.unwrap();
    let refused_id = refused["id"].as_str().unwrap().to_owned();
    let mut primary = Primary::connect(&harness.endpoint, &harness.token("primary1")).await.unwrap();
    notify_jobs(&mut primary, 1, 1, 1).await;
    eventually(|| async { harness.webhook(&gone_id).await["pausedReason"] == "gone" }).await;
    assert_eq!(gone.requests().len(), 1, "410: no retry");
    assert_eq!(harness.webhook(&gone_id).await["counts"]["pending"], 1, "kept for a resume");
    eventually(|| async { moving.requests().len() >= 2 }).await;
    let webhook = harness.webhook(&moving_id).await;
    let error = webhook["lastError"].as_str().unwrap();
    assert!(
        error.contains("307") && error.contains("elsewhere.example.com") && error.contains("not followed"),
        "{error}"
    );
    assert_eq!(webhook["health"], "failing");
    assert_eq!(webhook["retrying"]["lastStatus"], 307);
    eventually(|| async { harness.webhook(&refused_id).await["lastError"].is_string() }).await;
    let error = harness.webhook(&refused_id).await["lastError"].as_str().unwrap().to_owned();
    assert!(error.to_lowercase().contains("connect") && !error.contains("capability-7f3a9c"), "{error}");
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn filters_choose_the_records_a_webhook_receives() {
    let harness = Harness::start_with(quick).await;
    let alerts = Receiver::ok().await;
    let images = Receiver::ok().await;
    let (alerts_id, _) = harness
        .subscribe(
            &alerts,
            json!({ "filter": { "primaries": ["primary2"], "objects": ["job"], "jobStates": ["DONE"], "nonZeroStatus": true } }),
        )
        .await;
    harness.subscribe(&images, json!({ "filter": { "objects": ["IMAGE"] } })).await;
    let filter = &harness.webhook(&alerts_id).await["filter"];
    assert_eq!(filter["objects"], json!(["JOB"]), "normalised");
    let mut one = Primary::connect(&harness.endpoint, &harness.token("primary1")).await.unwrap();
    let mut two = Primary::connect(&harness.endpoint, &harness.token("primary2")).await.unwrap();
    let failed = |id| nbwss_protocol::JobRecord { status: 96, ..job(id, JobState::Done) };
    one.notify("A", vec![NotificationGroup::jobs(vec![failed(1)])]).await;
    two.notify(
        "B",
        vec![
            NotificationGroup::jobs(vec![
                failed(2),
                job(3, JobState::Done),
                job(4, JobState::Active),
                failed(5),
            ]),
            NotificationGroup::images(vec![image(9)]),
        ],
    )
    .await;
    eventually(|| async { images.delivered().len() == 1 && alerts.delivered().len() == 2 }).await;
    assert_eq!(job_ids(&alerts.delivered()), [2, 5]);
    // Everything is considered: the cursor moves past what did not match.
    eventually(|| async { harness.webhook(&alerts_id).await["cursor"] == 6 }).await;
    assert_eq!(alerts.requests().len(), 2);
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn bad_webhooks_are_refused_with_the_reason() {
    let harness = Harness::start_with(|config| config.webhooks.max_webhooks = 1).await;
    for (body, says) in [
        (json!({ "url": "http://hooks.example.com/" }), "https://"),
        (json!({ "url": "https://127.0.0.1:9/hook" }), "webhooks.allow_networks"),
        (json!({ "url": "https://169.254.169.254/latest/meta-data/" }), "link-local"),
        (json!({ "url": "https://localhost:9/hook" }), "loopback"),
        (json!({ "url": "https://hooks.example.com/", "secret": "hunter2" }), "whsec_"),
        (json!({ "url": "https://hooks.example.com/", "filter": { "objects": ["TAPE"] } }), "filter.objects"),
        (json!({ "url": "https://hooks.example.com/", "caCertificate": "junk" }), "caCertificate"),
        (json!({ "url": "https://hooks.example.com/", "color": "red" }), "unknown field"),
        (json!({ "url": "https://hooks.example.com/", "after": -1 }), "after"),
    ] {
        let response = harness.post_json("/api/v1/webhooks", &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "bad_request");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
    let given = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let response = harness
        .post_json("/api/v1/webhooks", &json!({ "url": "https://hooks.example.com/", "secret": given }))
        .await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["secret"], given);
    let response =
        harness.post_json("/api/v1/webhooks", &json!({ "url": "https://hooks.example.com/2" })).await;
    assert_eq!(response.status(), 409);
    let error: Value = response.json().await.unwrap();
    assert!(error["error"]["message"].as_str().unwrap().contains("webhooks.max_webhooks"));
    for path in ["/api/v1/webhooks/wh_nope", "/api/v1/webhooks/wh_nope/deliveries"] {
        assert_eq!(harness.get(path).await.status(), 404, "{path}");
    }
    assert_eq!(harness.post_json("/api/v1/webhooks/wh_nope/resume", &json!({})).await.status(), 404);
    let unauthenticated =
        harness.http.get(format!("{}/api/v1/webhooks", harness.endpoint.url())).send().await.unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let id = created["id"].as_str().unwrap();
    let removed = harness
        .http
        .delete(format!("{}/api/v1/webhooks/{id}", harness.endpoint.url()))
        .header("X-NBWSS-API-Key", &harness.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    assert_eq!(harness.get_json("/api/v1/webhooks").await["webhooks"], json!([]));
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn addresses_are_checked_when_sending_not_only_when_subscribing() {
    // Subscribed while loopback was allowed, by name and by address; then the endpoint runs without it. (A
    // name resolving to a refused address is refused by the resolver: `address::tests`.)
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::ok().await;
    let permissive =
        nbwss_endpoint::Webhooks { allow_networks: vec!["127.0.0.0/8".to_owned()], ..Default::default() };
    let store = Store::open(dir.path()).unwrap();
    let mut ids = Vec::new();
    for url in [&receiver.url_by_name, &receiver.url] {
        let new = NewWebhook {
            url: url.clone(),
            ca_certificate: Some(receiver.ca_pem.clone()),
            ..Default::default()
        };
        ids.push(store.create_webhook(new, &permissive, "test").unwrap().webhook.id);
    }
    drop(store);
    let harness = Harness::start_with(|config| {
        config.data_dir = dir.path().to_owned();
        config.webhooks.min_backoff_ms = 20;
        config.webhooks.max_backoff_ms = 100;
    })
    .await;
    let mut primary = Primary::connect(&harness.endpoint, &harness.token("primary1")).await.unwrap();
    notify_jobs(&mut primary, 1, 1, 1).await;
    for (id, says) in ids.iter().zip(["loopback address", "127.0.0.1 is a loopback address"]) {
        eventually(|| async { harness.webhook(id).await["lastError"].as_str().is_some() }).await;
        let error = harness.webhook(id).await["lastError"].as_str().unwrap().to_owned();
        assert!(error.contains(says) && error.contains("webhooks.allow_networks"), "{error}");
    }
    assert!(receiver.requests().is_empty(), "nothing reached the receiver");
    // The test delivery is refused the same way.
    let tested: Value = harness
        .post_json(&format!("/api/v1/webhooks/{}/test", ids[1]), &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tested["delivered"], false);
    assert!(tested["error"].as_str().unwrap().contains("loopback"), "{tested}");
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn a_webhook_at_its_limit_stops_queuing_and_counts_what_retention_pruned() {
    let harness = Harness::start_with(|config| {
        quick(config);
        config.webhooks.max_pending_per_webhook = 3;
        config.retention.max_records = 5;
        config.retention.prune_interval_ms = 50;
    })
    .await;
    let receiver = Receiver::ok().await;
    let (id, _) = harness.subscribe(&receiver, json!({})).await;
    let paused = harness.post_json(&format!("/api/v1/webhooks/{id}/pause"), &json!({})).await;
    assert_eq!(paused.status(), 200);
    let mut primary = Primary::connect(&harness.endpoint, &harness.token("primary1")).await.unwrap();
    notify_jobs(&mut primary, 1, 3, 1).await;
    eventually(|| async { harness.webhook(&id).await["counts"]["pending"] == 3 }).await;
    notify_jobs(&mut primary, 4, 7, 1).await;
    // Records 1..=5 are pruned (5 kept); the webhook held 1..=3 (its limit), so 4 and 5 are missed.
    eventually(|| async {
        let first = harness.get_json("/api/v1/notifications?limit=1").await;
        first["notifications"][0]["cursor"] == 6
    })
    .await;
    let webhook = harness.webhook(&id).await;
    assert_eq!(webhook["counts"]["pending"], 3);
    assert_eq!(webhook["cursor"], 3);
    assert!(harness
        .metrics()
        .await
        .contains(&format!("nbwss_endpoint_webhook_held_deliveries{{webhook=\"{id}\"}} 3")));
    harness.post_json(&format!("/api/v1/webhooks/{id}/resume"), &json!({})).await;
    eventually(|| async { receiver.delivered().len() == 8 }).await;
    assert_eq!(job_ids(&receiver.delivered()), [1, 2, 3, 6, 7, 8, 9, 10], "held records survive pruning");
    let webhook = harness.webhook(&id).await;
    assert_eq!(webhook["counts"]["missedTotal"], 2, "{webhook}");
    assert!(harness
        .metrics()
        .await
        .contains(&format!("nbwss_endpoint_webhook_missed_records_total{{webhook=\"{id}\"}} 2")));
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn a_webhook_added_from_another_process_starts_and_removed_stops() {
    let harness = Harness::start_with(quick).await;
    let removed_receiver = Receiver::ok().await;
    let kept_receiver = Receiver::ok().await;
    let mut primary = Primary::connect(&harness.endpoint, &harness.token("primary1")).await.unwrap();
    notify_jobs(&mut primary, 1, 2, 2).await;
    // As `nbwss endpoint webhook add --after 0` does, on the same data directory.
    let cli = Store::open(harness._dir.path()).unwrap();
    let config =
        nbwss_endpoint::Webhooks { allow_networks: vec!["127.0.0.0/8".to_owned()], ..Default::default() };
    let mut ids = Vec::new();
    for receiver in [&removed_receiver, &kept_receiver] {
        let new = NewWebhook {
            url: receiver.url.clone(),
            ca_certificate: Some(receiver.ca_pem.clone()),
            after: Some(0),
            ..Default::default()
        };
        ids.push(cli.create_webhook(new, &config, "cli").unwrap().webhook.id);
    }
    eventually(|| async { removed_receiver.delivered().len() == 2 && kept_receiver.delivered().len() == 2 })
        .await;
    assert!(cli.remove_webhook(&ids[0]).unwrap());
    // Its task ends (its series leave /metrics with it); the other one goes on alone.
    let series = format!("webhook=\"{}\"", ids[0]);
    eventually(|| async { !harness.metrics().await.contains(&series) }).await;
    notify_jobs(&mut primary, 3, 1, 1).await;
    eventually(|| async { kept_receiver.delivered().len() == 3 }).await;
    assert_eq!(removed_receiver.requests().len(), 2);
    harness.endpoint.shutdown().await;
}

/// The program `names` finds first on the PATH; the test fails, saying what to install, when none is there.
fn program(names: &[&str], install: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!("{} not found on the PATH: docs/webhooks.md's snippets are tested with it. {install}", names[0]);
}

/// The code of the first fenced block in `language` in the guide.
fn snippet(guide: &str, language: &str) -> String {
    let start = guide.find(&format!("```{language}\n")).unwrap_or_else(|| panic!("no {language} block"));
    let code = &guide[start + language.len() + 4..];
    code[..code.find("```").unwrap()].to_owned()
}

/// Runs `program file` with `input` on stdin; its trimmed stdout.
fn run(program: &std::path::Path, file: &std::path::Path, input: &Value) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new(program)
        .arg(file)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}: {}", file.display(), String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn the_guides_python_and_javascript_verify_a_real_delivery() {
    let python = program(&["python3"], "Install it (apt-get install -y python3).");
    let node = program(&["node", "nodejs"], "Install Node.js (apt-get install -y nodejs).");
    let guide =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/webhooks.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let python_file = dir.path().join("verify.py");
    std::fs::write(
        &python_file,
        format!(
            "{}\nimport json, sys\ncase = json.load(sys.stdin)\n\
             print('valid' if verify(case['secret'], case['headers'], case['body'].encode()) else 'invalid')\n",
            snippet(&guide, "python")
        ),
    )
    .unwrap();
    let node_file = dir.path().join("verify.js");
    std::fs::write(
        &node_file,
        format!(
            "{}\nconst input = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));\n\
             console.log(verify(input.secret, input.headers, Buffer.from(input.body, 'utf8')) ? 'valid' : 'invalid');\n",
            snippet(&guide, "javascript")
        ),
    )
    .unwrap();

    // A real delivery, with characters that a careless receiver would re-encode.
    let harness = Harness::start_with(quick).await;
    let receiver = Receiver::ok().await;
    let (_, secret) = harness.subscribe(&receiver, json!({})).await;
    let mut primary = Primary::connect(&harness.endpoint, &harness.token("primary1")).await.unwrap();
    let record = nbwss_protocol::JobRecord {
        client_name: "Zürich-db01 ☃ \"quoted\"".into(),
        ..job(1, JobState::Done)
    };
    primary.notify("M1", vec![NotificationGroup::jobs(vec![record])]).await;
    eventually(|| async { receiver.delivered().len() == 1 }).await;
    let delivery = receiver.delivered().remove(0);
    assert!(delivery.body.contains("Zürich-db01 ☃"), "sent as UTF-8, not escaped: {}", delivery.body);
    let case = |secret: &str, body: &str, timestamp: &str, signature: &str| {
        json!({
            "secret": secret,
            "headers": { "webhook-id": delivery.id, "webhook-timestamp": timestamp, "webhook-signature": signature },
            "body": body,
        })
    };
    let tampered = delivery.body.replace("\"status\":0", "\"status\":1");
    assert_ne!(tampered, delivery.body);
    // Ten minutes old, correctly signed (here): refused for its age alone.
    let old = (delivery.timestamp.parse::<i64>().unwrap() - 600).to_string();
    let key =
        base64::engine::general_purpose::STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let old_signature = ring::hmac::sign(&key, format!("{}.{old}.{}", delivery.id, delivery.body).as_bytes());
    let old_signature =
        format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(old_signature.as_ref()));
    // Several signatures (while a secret is rotated): one valid is enough.
    let rotating = format!("v1,bm90IHRoaXMgb25l {}", delivery.signature);
    let (now, signature) = (delivery.timestamp.as_str(), delivery.signature.as_str());
    let other = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    for (language, program, file) in [("python", &python, &python_file), ("javascript", &node, &node_file)] {
        for (input, verdict, what) in [
            (case(&secret, &delivery.body, now, signature), "valid", "as delivered"),
            (case(&secret, &delivery.body, now, &rotating), "valid", "among two signatures"),
            (case(&secret, &tampered, now, signature), "invalid", "a tampered body"),
            (case(other, &delivery.body, now, signature), "invalid", "another secret"),
            (case(&secret, &delivery.body, &old, &old_signature), "invalid", "ten minutes old"),
        ] {
            assert_eq!(run(program, file, &input), verdict, "{language}: {what}");
        }
    }
    harness.endpoint.shutdown().await;
}

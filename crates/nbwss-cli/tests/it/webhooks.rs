//! `nbwss endpoint webhook`: managing webhooks on a data directory, testing one against a real receiver, and
//! a running `nbwss endpoint run` killed (SIGKILL) in the middle of a delivery, then restarted: every record
//! reaches the receiver, acknowledged once, in order, the interrupted one again under the same webhook-id.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nbwss_endpoint::webhooks::NewWebhook;
use nbwss_endpoint::{EndpointConfig, Store};
use nbwss_protocol::ReceivedRecord;
use serde_json::{json, Value};

use crate::receiver::Receiver;
use crate::running_endpoint::RunningEndpoint;
use crate::util::{eventually, nbwss};

/// A configuration on a free port that lets webhooks reach loopback, where the test's receiver is.
fn config_file(dir: &Path) -> PathBuf {
    let config = dir.join("endpoint.toml");
    std::fs::write(
        &config,
        format!(
            "bind = \"127.0.0.1:0\"\ndata_dir = {:?}\n[limits]\nrevocation_check_interval_ms = 100\n\
             [webhooks]\nallow_networks = [\"127.0.0.0/8\"]\nmin_backoff_ms = 50\nmax_backoff_ms = 200\n",
            dir.to_str().unwrap()
        ),
    )
    .unwrap();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_added_listed_tested_paused_resumed_and_removed_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path());
    let config = config.to_str().unwrap();
    let receiver = Receiver::ok().await;
    let ca = dir.path().join("receiver-ca.pem");
    std::fs::write(&ca, &receiver.ca_pem).unwrap();
    let ca = ca.to_str().unwrap();

    let refused = nbwss(&["endpoint", "webhook", "add", "http://hooks.example.com/", "--config", config], "");
    assert_ne!(refused.status, 0);
    assert!(refused.stderr.contains("must start with https://"), "{}", refused.stderr);
    let private = nbwss(&["endpoint", "webhook", "add", "https://10.0.0.1/", "--config", config], "");
    assert!(private.stderr.contains("webhooks.allow_networks"), "{}", private.stderr);

    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let added = nbwss(
        &[
            "endpoint",
            "webhook",
            "add",
            &receiver.url,
            "--ca-file",
            ca,
            "--object",
            "job",
            "--job-state",
            "done",
            "--nonzero-status",
            "--description",
            "failed jobs",
            "--secret-file",
            "-",
            "--json",
            "--config",
            config,
        ],
        &format!("{secret}\n"),
    );
    assert_eq!(added.status, 0, "{}", added.stderr);
    let created: Value = serde_json::from_str(&added.stdout).unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["secret"], secret);
    assert_eq!(
        created["filter"],
        json!({"primaries": [], "objects": ["JOB"], "jobStates": ["DONE"], "nonZeroStatus": true})
    );
    assert!(added.stderr.contains("shown only here"), "{}", added.stderr);

    let listed = nbwss(&["endpoint", "webhook", "list", "--config", config], "");
    assert_eq!(listed.status, 0, "{}", listed.stderr);
    let line = listed.stdout.lines().find(|line| line.starts_with(&id)).unwrap().to_owned();
    assert!(line.contains("\thealthy\t") && line.contains(&receiver.url), "{line}");
    assert!(line.contains("object JOB job-state DONE nonzero-status"), "{line}");
    assert!(!listed.stdout.contains(secret), "never the secret");

    let tested = nbwss(&["endpoint", "webhook", "test", &id, "--config", config], "");
    assert_eq!(tested.status, 0, "{}{}", tested.stdout, tested.stderr);
    assert!(tested.stdout.starts_with("delivered: HTTP 200"), "{}", tested.stdout);
    let sample = receiver.requests().pop().unwrap();
    assert!(sample.verifies(secret));
    assert_eq!(sample.json()["type"], "webhook.test");

    assert_eq!(nbwss(&["endpoint", "webhook", "pause", &id, "--config", config], "").status, 0);
    let listed = nbwss(&["endpoint", "webhook", "list", "--json", "--config", config], "");
    let listed: Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(listed["webhooks"][0]["state"], "paused");
    assert_eq!(listed["webhooks"][0]["pausedReason"], "manual");
    let resumed = nbwss(&["endpoint", "webhook", "resume", &id, "--config", config], "");
    assert_eq!(resumed.stdout.trim(), format!("webhook {id} resumed"));
    let deliveries = nbwss(&["endpoint", "webhook", "deliveries", &id, "--config", config], "");
    assert_eq!(deliveries.status, 0);
    assert!(deliveries.stderr.contains("no deliveries held"), "{}", deliveries.stderr);

    assert_eq!(nbwss(&["endpoint", "webhook", "remove", &id, "--config", config], "").status, 0);
    let again = nbwss(&["endpoint", "webhook", "remove", &id, "--config", config], "");
    assert_ne!(again.status, 0);
    assert!(again.stderr.contains(&format!("no webhook '{id}'")), "{}", again.stderr);
    let untested = nbwss(&["endpoint", "webhook", "test", &id, "--config", config], "");
    assert_ne!(untested.status, 0);

    // A receiver that refuses: `test` says so and exits non-zero.
    let down = Receiver::start(|_| async { 503 }).await;
    let added = nbwss(&["endpoint", "webhook", "add", &down.url, "--ca-file", ca, "--config", config], "");
    assert_eq!(added.status, 0, "{}", added.stderr);
    let down_id = added.stdout.lines().next().unwrap().strip_prefix("id: ").unwrap().to_owned();
    assert!(added.stdout.lines().nth(1).unwrap().starts_with("secret: whsec_"));
    // Its certificate is not the CA given: TLS verification refuses it, and says why.
    let tested = nbwss(&["endpoint", "webhook", "test", &down_id, "--config", config], "");
    assert_ne!(tested.status, 0);
    assert!(
        tested.stdout.contains("not delivered") && tested.stdout.to_lowercase().contains("certificate"),
        "{}",
        tested.stdout
    );
}

fn job(id: i64) -> ReceivedRecord {
    ReceivedRecord {
        notification_type: "INFO".into(),
        object: "JOB".into(),
        record: json!({"jobId": id, "state": "DONE", "status": 0}),
        problems: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_killed_in_the_middle_of_a_delivery_resumes_after_a_restart_without_loss() {
    const RECORDS: i64 = 30;
    const INTERRUPTED: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path());
    // The 11th request hangs until the endpoint is killed; every other one is acknowledged.
    let killed = Arc::new(AtomicBool::new(false));
    let receiver = {
        let killed = killed.clone();
        Receiver::start(move |index| {
            let hang = index == INTERRUPTED && !killed.load(Ordering::SeqCst);
            async move {
                if hang {
                    std::future::pending::<()>().await;
                }
                200
            }
        })
        .await
    };
    {
        let store = Store::open(dir.path()).unwrap();
        for first in (1..=RECORDS).step_by(5) {
            let records: Vec<ReceivedRecord> = (first..first + 5).map(job).collect();
            store.store_notification("primary1", &format!("M{first}"), &records).unwrap();
        }
        let webhooks = EndpointConfig::from_file(&config).unwrap().webhooks;
        let new = NewWebhook {
            url: receiver.url.clone(),
            ca_certificate: Some(receiver.ca_pem.clone()),
            after: Some(0),
            ..NewWebhook::default()
        };
        store.create_webhook(new, &webhooks, "test").unwrap();
    }

    let endpoint = RunningEndpoint::start(&config, Some(&dir.path().join("endpoint-1.log")));
    eventually("the interrupted delivery to be in flight", || async {
        (receiver.requests().len() > INTERRUPTED).then_some(())
    })
    .await;
    endpoint.kill();
    killed.store(true, Ordering::SeqCst);
    let interrupted = receiver.requests()[INTERRUPTED].clone();
    assert_eq!(interrupted.status, None, "killed before it was answered");

    let _endpoint = RunningEndpoint::start(&config, Some(&dir.path().join("endpoint-2.log")));
    eventually("every record to be delivered", || async {
        (receiver.delivered().len() == usize::try_from(RECORDS).unwrap()).then_some(())
    })
    .await;
    let requests = receiver.requests();
    // Sent again after the restart, first, under the same webhook-id.
    assert_eq!(requests[INTERRUPTED + 1].id, interrupted.id);
    let delivered = receiver.delivered();
    let jobs: Vec<i64> =
        delivered.iter().map(|r| r.json()["data"]["record"]["jobId"].as_i64().unwrap()).collect();
    assert_eq!(jobs, (1..=RECORDS).collect::<Vec<_>>(), "every record acknowledged once, in order");
    let ids: HashSet<&str> = delivered.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), delivered.len());
    eventually("the store to count them", || async {
        let store = Store::open(dir.path()).ok()?;
        let webhook = store.webhooks().ok()?.pop()?;
        (webhook.counts.delivered_total == u64::try_from(RECORDS).unwrap() && webhook.counts.pending == 0)
            .then_some(())
    })
    .await;
}

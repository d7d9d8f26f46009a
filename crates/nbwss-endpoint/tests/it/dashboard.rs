//! The dashboard in a real headless browser (Debian's Chromium, installed by `scripts/test`), driven over
//! the DevTools protocol so that the page runs live: it is loaded first, and a notification injected
//! afterwards must appear through its server-sent-events feed.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;

use futures_util::{SinkExt, StreamExt};
use nbwss_protocol::{JobRecord, JobState, NotificationGroup};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::notifications::{image, job};
use crate::receiver::Receiver;
use crate::util::{eventually, within, Harness, Primary, DEADLINE};

/// Chromium's path: `$CHROMIUM`, or `chromium` / `chromium-browser` on the PATH.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "chromium not found: the dashboard test needs Debian's chromium. Run scripts/test (it installs it when \
         missing), or `apt-get install -y chromium`, or set CHROMIUM to its path."
    );
}

/// A headless Chromium and a DevTools connection to one of its pages.
struct Browser {
    _child: tokio::process::Child,
    _profile: tempfile::TempDir,
    devtools: WebSocketStream<MaybeTlsStream<TcpStream>>,
    session: Option<String>,
    next_id: u64,
}

impl Browser {
    async fn launch() -> Self {
        let profile = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--ignore-certificate-errors",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromium");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = Vec::new();
        let address = within(async {
            loop {
                let Some(line) = lines.next_line().await.unwrap() else {
                    panic!("chromium exited before DevTools listened: {}", seen.join("\n"));
                };
                if let Some(address) = line.strip_prefix("DevTools listening on ") {
                    return address.trim().to_owned();
                }
                seen.push(line);
            }
        })
        .await;
        // Keep draining stderr so that Chromium never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (devtools, _) = tokio_tungstenite::connect_async(address).await.expect("DevTools connection");
        Self { _child: child, _profile: profile, devtools, session: None, next_id: 1 }
    }

    /// Sends one DevTools command and returns its result.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = &self.session {
            command["sessionId"] = json!(session);
        }
        self.devtools.send(Frame::Text(command.to_string().into())).await.unwrap();
        within(async {
            loop {
                let frame = self.devtools.next().await.expect("DevTools open").unwrap();
                let Frame::Text(text) = frame else { continue };
                let message: Value = serde_json::from_str(text.as_str()).unwrap();
                if message["id"] == id {
                    assert!(message.get("error").is_none(), "{method}: {message}");
                    return message["result"].clone();
                }
            }
        })
        .await
    }

    /// Opens `url` in a new page and attaches to it.
    async fn open(&mut self, url: &str) {
        let target = self.call("Target.createTarget", json!({ "url": url })).await;
        let attached = self
            .call("Target.attachToTarget", json!({ "targetId": target["targetId"], "flatten": true }))
            .await;
        self.session = Some(attached["sessionId"].as_str().unwrap().to_owned());
    }

    /// Evaluates a JavaScript expression in the page.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        result["result"]["value"].clone()
    }

    /// Waits until the expression is true in the page.
    async fn wait_for(&mut self, expression: &str) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if self.eval(expression).await == Value::Bool(true) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let dom = self.eval("document.documentElement.outerHTML").await;
                panic!("`{expression}` not true within {DEADLINE:?}; DOM: {dom}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn the_dashboard_shows_primaries_a_live_notification_and_runs_a_call_in_chromium() {
    let harness = Harness::start().await;
    harness.echo_primary("primary1").await;
    let mut notifier = Primary::connect(&harness.endpoint, &harness.token("primary2")).await.unwrap();
    harness.wait_connected("primary2", true).await;

    let mut browser = Browser::launch().await;
    browser.open(&format!("{}/?api_key={}", harness.endpoint.url(), harness.api_key)).await;
    browser.wait_for("!!document.querySelector('tr[data-primary=\"primary1\"] .on')").await;
    browser.wait_for("document.getElementById('feed-state').textContent === '(following)'").await;
    // The key left the address bar (it is in sessionStorage).
    assert_eq!(browser.eval("location.search").await, "");
    assert_eq!(browser.eval("sessionStorage.getItem('nbwss.apiKey')").await, harness.api_key.as_str());

    // Injected after the page loaded: it must arrive live.
    notifier.notify("DASHBOARD-1", vec![NotificationGroup::jobs(vec![job(4242, JobState::Active)])]).await;
    browser.wait_for("document.querySelector('#feed tr.notification td.id')?.textContent === '4242'").await;
    let row = browser.eval("document.querySelector('#feed tr.notification').textContent").await;
    let row = row.as_str().unwrap();
    assert!(row.contains("primary2") && row.contains("JOB") && row.contains("ACTIVE"), "{row}");

    // The console runs a NetBackup call through primary1 and shows the answer.
    browser
        .eval(
            "document.getElementById('c-primary').value = 'primary1';
             document.getElementById('c-method').value = 'POST';
             document.getElementById('c-path').value = '/netbackup/login';
             document.getElementById('c-headers').value = 'Content-Type: application/vnd.netbackup+json;version=1.0';
             document.getElementById('c-body').value = '{\"userName\": \"admin\"}';
             document.querySelector('#console button').click(); true",
        )
        .await;
    browser.wait_for("document.getElementById('c-result').textContent.startsWith('HTTP 200')").await;
    let result = browser.eval("document.getElementById('c-result').textContent").await;
    let result = result.as_str().unwrap();
    assert!(result.contains("\"uri\": \"/netbackup/login\""), "{result}");
    assert!(result.contains("\"method\": \"POST\""), "{result}");
    assert!(result.contains("x-test-echo: yes"), "{result}");
    harness.endpoint.shutdown().await;
}

/// Moves the records of one NOTIFICATION to `hours_ago` (what the store would have recorded then).
fn backdate(harness: &Harness, primary: &str, message_id: &str, hours_ago: i64) {
    let database =
        rusqlite::Connection::open(harness._dir.path().join(nbwss_endpoint::DATABASE_FILE)).unwrap();
    database.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    let then = (chrono::Utc::now() - chrono::Duration::hours(hours_ago))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let changed = database
        .execute(
            "UPDATE notifications SET received_at = ?1 WHERE primary_name = ?2 AND message_id = ?3",
            rusqlite::params![then, primary, message_id],
        )
        .unwrap();
    assert!(changed > 0);
}

fn done(job_id: i64, status: i64) -> JobRecord {
    JobRecord { status, ..job(job_id, JobState::Done) }
}

#[tokio::test]
async fn the_dashboard_charts_what_is_stored_and_lists_the_newest_records_first() {
    let harness = Harness::start_with(|config| {
        config.webhooks.allow_networks = vec!["127.0.0.0/8".to_owned()];
        config.webhooks.min_backoff_ms = 50;
        config.webhooks.max_backoff_ms = 200;
        config.limits.revocation_check_interval_ms = 50;
    })
    .await;
    // Stored in arrival order, then moved back in time (older first, as arrivals are).
    let mut late = Primary::connect(&harness.endpoint, &harness.token("primary3")).await.unwrap();
    late.notify("OLD", vec![NotificationGroup::jobs(vec![done(7, 0)])]).await;
    backdate(&harness, "primary3", "OLD", 26);
    let mut primary = Primary::connect(&harness.endpoint, &harness.token("primary1")).await.unwrap();
    tokio::spawn(async move {
        primary.notify("H5", vec![NotificationGroup::jobs(vec![done(1, 1), done(2, 96)])]).await;
        primary
            .notify(
                "H2",
                vec![NotificationGroup::jobs(vec![
                    done(3, 0),
                    done(4, 150),
                    done(5, 96),
                    job(6, JobState::Active),
                ])],
            )
            .await;
        primary
            .notify(
                "H0",
                vec![
                    NotificationGroup::jobs(vec![
                        done(8, 0),
                        done(9, 0),
                        done(10, 1),
                        done(11, 2),
                        done(11, 2),
                    ]),
                    NotificationGroup::images(vec![image(100), image(101)]),
                ],
            )
            .await;
        let bulk = (1000..1120).map(|id| job(id, JobState::Active)).collect();
        primary.notify("BULK", vec![NotificationGroup::jobs(bulk)]).await;
        primary.notify("LAST", vec![NotificationGroup::jobs(vec![done(999, 96)])]).await;
        primary.answer(crate::util::echo).await;
    });
    harness.wait_connected("primary1", true).await;
    eventually(|| async { harness.get_json("/api/v1/notifications?limit=0").await["lastCursor"] == 135 })
        .await;
    backdate(&harness, "primary1", "H5", 5);
    backdate(&harness, "primary1", "H2", 2);
    // Three relayed calls, for the relay charts.
    for _ in 0..3 {
        let response = harness
            .http
            .get(harness.relay_url("primary1", "netbackup/admin/jobs"))
            .header("X-NBWSS-API-Key", &harness.api_key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    // A webhook that keeps failing, and one paused.
    let failing = Receiver::start(|_| async { 503 }).await;
    let (failing_id, _) = harness.subscribe(&failing, json!({})).await;
    let (paused_id, _) = harness.subscribe(&Receiver::ok().await, json!({})).await;
    harness.post_json(&format!("/api/v1/webhooks/{paused_id}/pause"), &json!({})).await;
    // A new record (an image: primary3's last job stays a day old) for the failing one to fail with.
    late.notify("NEW", vec![NotificationGroup::images(vec![image(200)])]).await;
    eventually(|| async { harness.webhook(&failing_id).await["health"] == "failing" }).await;

    // What the charts must show, computed here from the stored records: jobs once per hour by outcome.
    let all = harness.get_json("/api/v1/notifications?limit=1000").await;
    let records = all["notifications"].as_array().unwrap();
    let mut expected: HashMap<(String, String), [HashSet<i64>; 3]> = HashMap::new();
    for n in records.iter().filter(|n| n["object"] == "JOB" && n["record"]["state"] == "DONE") {
        let hour = n["receivedAt"].as_str().unwrap()[..13].to_owned();
        let outcome = match n["record"]["status"].as_i64().unwrap() {
            0 => 0,
            1 => 1,
            _ => 2,
        };
        let key = (n["primary"].as_str().unwrap().to_owned(), hour);
        expected.entry(key).or_default()[outcome].insert(n["record"]["jobId"].as_i64().unwrap());
    }

    let mut browser = Browser::launch().await;
    browser.open(&format!("{}/?api_key={}", harness.endpoint.url(), harness.api_key)).await;
    browser.wait_for("document.querySelectorAll('#feed tr.notification').length === 100").await;
    browser.wait_for("!!document.querySelector('svg.jobs-chart[data-primary=\"primary1\"]')").await;

    // Job outcomes per hour: every hour of the chart against the records.
    for primary in ["primary1", "primary3"] {
        let bars = browser
            .eval(&format!(
                "[...document.querySelectorAll('svg.jobs-chart[data-primary=\"{primary}\"] g.hour')].map(g =>
                    [g.dataset.hour, +g.dataset.succeeded, +g.dataset.partial, +g.dataset.failed])"
            ))
            .await;
        let bars = bars.as_array().unwrap();
        assert_eq!(bars.len(), 24);
        let mut nonzero = 0;
        for bar in bars {
            let hour = bar[0].as_str().unwrap()[..13].to_owned();
            let counts = expected.get(&(primary.to_owned(), hour.clone()));
            let want: Vec<usize> = (0..3).map(|i| counts.map_or(0, |sets| sets[i].len())).collect();
            let got: Vec<usize> = (1..4).map(|i| bar[i].as_u64().unwrap() as usize).collect();
            assert_eq!(got, want, "{primary} at {hour}");
            nonzero += got.iter().sum::<usize>();
        }
        if primary == "primary1" {
            assert_eq!(nonzero, 10, "jobs 1-5 and 8-11 and 999, job 11 once");
        } else {
            assert_eq!(nonzero, 0, "its only outcome is 26 hours old, outside the chart");
        }
    }
    let failed =
        browser.eval("document.querySelector('tr[data-primary=\"primary1\"] td.failed').textContent").await;
    assert_eq!(failed, "5", "jobs 2, 4, 5, 11 and 999");
    let images =
        browser.eval("document.querySelector('tr[data-primary=\"primary1\"] td.images').textContent").await;
    assert_eq!(images, "+2 / −0");
    let images =
        browser.eval("document.querySelector('tr[data-primary=\"primary3\"] td.images').textContent").await;
    assert_eq!(images, "+1 / −0");
    // The last job's age, in words, the exact time on hover; a primary server silent for a day is late.
    let last =
        browser.eval("document.querySelector('tr[data-primary=\"primary1\"] td.last-job').textContent").await;
    assert!(last.as_str().unwrap().contains("job 999 DONE"), "{last}");
    let newest_job =
        records.iter().rev().find(|n| n["primary"] == "primary1" && n["object"] == "JOB").unwrap();
    let title =
        browser.eval("document.querySelector('tr[data-primary=\"primary1\"] td.last-job time').title").await;
    assert!(title.as_str().unwrap().contains(newest_job["receivedAt"].as_str().unwrap()), "{title}");
    let late = browser.eval("document.querySelector('tr[data-primary=\"primary3\"] td.last-job')").await;
    assert!(!late.is_null());
    let late_class =
        browser.eval("document.querySelector('tr[data-primary=\"primary3\"] td.last-job').className").await;
    assert!(late_class.as_str().unwrap().contains("late"), "{late_class}");
    let late_text = browser
        .eval("document.querySelector('tr[data-primary=\"primary3\"] td.last-job time').textContent")
        .await;
    assert_eq!(late_text, "26 hours ago");

    // Relayed calls per minute, all together and for primary1.
    for chart in ["svg.relay-total", "tr[data-primary=\"primary1\"] svg.relay-primary"] {
        let calls = browser
            .eval(&format!(
                "[...document.querySelectorAll('{chart} g.minute')].reduce((sum, g) => sum + +g.dataset.calls, 0)"
            ))
            .await;
        assert_eq!(calls, 3, "{chart}");
        let latency = browser
            .eval(&format!(
                "[...document.querySelectorAll('{chart} g.minute')].filter(g => +g.dataset.calls > 0)
                    .every(g => +g.dataset.p50 > 0 && +g.dataset.p99 >= +g.dataset.p50)"
            ))
            .await;
        assert_eq!(latency, true, "{chart}");
    }
    assert!(browser.eval("!!document.querySelector('svg.latency polyline.p99')").await.as_bool().unwrap());

    // Webhook health.
    let health =
        |id: &str| format!("document.querySelector('tr[data-webhook=\"{id}\"] td.health').textContent");
    let failing_health = browser.eval(&health(&failing_id)).await;
    assert!(failing_health.as_str().unwrap().starts_with("failing"), "{failing_health}");
    assert_eq!(browser.eval(&health(&paused_id)).await, "paused (manual)");
    let error = browser
        .eval(&format!("document.querySelector('tr[data-webhook=\"{failing_id}\"]').textContent"))
        .await;
    assert!(error.as_str().unwrap().contains("HTTP 503"), "{error}");

    // The most recent records on load, newest first, their fields in columns.
    let cursors = browser
        .eval("[...document.querySelectorAll('#feed tr.notification')].map(r => +r.dataset.cursor)")
        .await;
    let cursors: Vec<i64> = cursors.as_array().unwrap().iter().map(|c| c.as_i64().unwrap()).collect();
    let last_cursor = harness.get_json("/api/v1/notifications?limit=0").await["lastCursor"].as_i64().unwrap();
    assert_eq!(cursors[0], last_cursor);
    assert_eq!(cursors, (last_cursor - 99..=last_cursor).rev().collect::<Vec<_>>());
    let cells = browser
        .eval("[...document.querySelector('#feed tr[data-cursor=\"135\"]').cells].map(c => c.textContent)")
        .await;
    let cells: Vec<&str> = cells.as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(
        &cells[1..9],
        ["primary1", "JOB", "999", "BACKUP", "DONE", "96", "client1.example.com", "policy1"]
    );
    assert!(
        !cells[0].contains('T') && cells[0].contains("ago") || cells[0] == "just now",
        "relative: {}",
        cells[0]
    );
    let stored = records.iter().find(|n| n["cursor"] == 135).unwrap();
    let hover = browser.eval("document.querySelector('#feed tr[data-cursor=\"135\"] time').title").await;
    assert!(hover.as_str().unwrap().contains(stored["receivedAt"].as_str().unwrap()), "{hover}");
    assert!(
        !browser.eval("document.getElementById('feed').textContent").await.as_str().unwrap().contains('{'),
        "no JSON"
    );
    harness.endpoint.shutdown().await;
}

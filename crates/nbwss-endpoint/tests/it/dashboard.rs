//! The dashboard in a real headless browser (Debian's Chromium, installed by `scripts/test`), driven over
//! the DevTools protocol so that the page runs live: it is loaded first, and a notification injected
//! afterwards must appear through its server-sent-events feed.

use std::path::PathBuf;
use std::process::Stdio;

use futures_util::{SinkExt, StreamExt};
use nbwss_protocol::{JobState, NotificationGroup};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::notifications::job;
use crate::util::{within, Harness, Primary, DEADLINE};

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
    browser.wait_for("document.getElementById('feed').textContent.includes('\"jobId\":4242')").await;
    let row = browser.eval("document.querySelector('#feed tr.notification').textContent").await;
    let row = row.as_str().unwrap();
    assert!(row.contains("primary2") && row.contains("JOB"), "{row}");

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

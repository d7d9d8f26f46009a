//! `nbwss up` as a newcomer runs it: the whole system on loopback, a backup flowing through.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::eventually;

/// Stops `nbwss up` with Ctrl-C (SIGINT) when dropped, so that a failing test leaves nothing running.
struct Running(Child);

impl Running {
    fn interrupt(&mut self) {
        let _ = Command::new("kill").args(["-INT", &self.0.id().to_string()]).status();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.interrupt();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && matches!(self.0.try_wait(), Ok(None)) {
                std::thread::yield_now();
            }
            let _ = self.0.kill();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_wires_everything_and_a_backup_flows_through() {
    let root = tempfile::tempdir().unwrap();
    // A state directory left world-readable, with a world-readable up.json of an earlier run.
    let state = root.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::write(state.join("up.json"), "stale").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(state.join("up.json"), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let child = Command::new(env!("CARGO_BIN_EXE_nbwss"))
        .args(["up", "--dir", state.to_str().unwrap(), "--demo-interval", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut running = Running(child);

    let up_file = state.join("up.json");
    let up: Value = eventually("up.json", || async {
        let text = std::fs::read_to_string(&up_file).ok()?;
        serde_json::from_str(&text).ok()
    })
    .await;
    // It holds the API key and the emulator's password: private, like the directory it is in.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&up_file), 0o600, "up.json replaced private");
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join("endpoint")), 0o700);
        assert_eq!(mode(&state.join("endpoint").join(nbwss_endpoint::GENERATED_KEY_FILE)), 0o600);
    }
    for key in ["url", "user", "password"] {
        assert!(up["emulator"][key].is_string(), "emulator.{key} in {up}");
    }
    for key in ["url", "websocket_url", "api_key", "certificate_sha256"] {
        assert!(up["endpoint"][key].is_string(), "endpoint.{key} in {up}");
    }
    for key in ["data_dir", "admin_url"] {
        assert!(up["service"][key].is_string(), "service.{key} in {up}");
    }

    // Trust exactly the endpoint's certificate.
    let certificate =
        reqwest::Certificate::from_pem(up["endpoint"]["certificate_pem"].as_str().unwrap().as_bytes())
            .unwrap();
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(certificate)
        .build()
        .unwrap();
    let base = up["endpoint"]["url"].as_str().unwrap();
    let key = up["endpoint"]["api_key"].as_str().unwrap();
    let relay = format!("{base}/api/v1/primaries/primary1/netbackup");

    // A NetBackup client's calls through the relay: log in, then list jobs with the raw token.
    let login = client
        .post(format!("{relay}/login"))
        .header("X-NBWSS-API-Key", key)
        .header("Content-Type", "application/vnd.netbackup+json; version=1.0")
        .body(format!(
            r#"{{"userName": "{}", "password": "{}"}}"#,
            up["emulator"]["user"].as_str().unwrap(),
            up["emulator"]["password"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 201);
    let token = login.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    let jobs = client
        .get(format!("{relay}/admin/jobs?page%5Blimit%5D=5"))
        .header("X-NBWSS-API-Key", key)
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(jobs.status(), 200);
    let jobs: Value = jobs.json().await.unwrap();
    assert!(!jobs["data"].as_array().unwrap().is_empty(), "{jobs}");

    // Without the API key the app API refuses.
    let refused = client.get(format!("{relay}/admin/jobs")).send().await.unwrap();
    assert_eq!(refused.status(), 401);

    // The demo backups produce job and image notifications at the endpoint.
    let feed = eventually("a finished job and an image notification", || async {
        let feed: Value = client
            .get(format!("{base}/api/v1/notifications?limit=1000"))
            .header("X-NBWSS-API-Key", key)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let items = feed["notifications"].as_array()?.clone();
        let done = items.iter().any(|item| item["object"] == "JOB" && item["record"]["state"] == "DONE");
        let image =
            items.iter().any(|item| item["object"] == "IMAGE" && item["record"]["operationId"] == "CREATE");
        (done && image).then_some(items)
    })
    .await;
    let job = feed.iter().find(|item| item["object"] == "JOB").unwrap();
    assert_eq!(job["primary"], "primary1");
    assert_eq!(job["record"].as_object().unwrap().len(), 10, "a JOB record has the guide's 10 keys: {job}");

    // Ctrl-C stops everything cleanly.
    running.interrupt();
    let status = running.0.wait().unwrap();
    let mut stdout = String::new();
    running.0.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    assert!(status.success(), "{stdout}");
    assert!(stdout.contains("Ready. Dashboard: "), "{stdout}");
    assert!(stdout.contains("stopped; the state is kept in"), "{stdout}");
}

//! `nbwss service run` and `nbwss servers ...` end to end: a service process, managed through its admin
//! API by the CLI, restarted with its store intact. The emulator (in this process) is the primary server
//! and, for TLS validation, stands in for the endpoint's host.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nbwss_emulator::{Emulator, EmulatorConfig};

use crate::util::{nbwss, Run};

/// A `nbwss service run` process, killed when dropped.
struct ServiceProcess(Child);

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_service(config: &Path) -> ServiceProcess {
    let child = Command::new(env!("CARGO_BIN_EXE_nbwss"))
        .args(["service", "run", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ServiceProcess(child)
}

/// Runs `nbwss servers --data-dir DATA ARGS...` on a blocking thread.
async fn servers(data: &Path, args: &[&str], stdin: &str) -> Run {
    let mut all = vec!["servers".to_owned(), "--data-dir".to_owned(), data.display().to_string()];
    all.extend(args.iter().map(|arg| (*arg).to_owned()));
    let stdin = stdin.to_owned();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        nbwss(&args, &stdin)
    })
    .await
    .unwrap()
}

/// Waits (with a deadline) until the service answers `servers list`.
async fn wait_ready(data: &Path, service: &mut ServiceProcess) -> Run {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(service.0.try_wait().unwrap().is_none(), "the service exited");
        let run = servers(data, &["list", "--json"], "").await;
        if run.status == 0 {
            return run;
        }
        assert!(Instant::now() < deadline, "service not ready: {}", run.stderr);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_cli_manages_the_service_and_survives_a_restart() {
    let emulator = Emulator::start(EmulatorConfig::for_tests()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ca = write(dir.path(), "primary.pem", &emulator.certificate_pem());
    let config = write(
        dir.path(),
        "service.toml",
        &format!(
            "data_dir = \"data\"\n[primary]\nbase_url = \"{}\"\nca_file = \"{}\"\n[proxy]\nuse_environment = false\n[properties]\n\"connectionInfo.period\" = 1\n",
            emulator.base_url(),
            ca.display()
        ),
    );
    let check = nbwss(&["service", "check", "--config", config.to_str().unwrap()], "");
    assert_eq!(check.status, 0, "{}", check.stderr);

    let mut service = start_service(&config);
    let empty = wait_ready(&data, &mut service).await;
    assert_eq!(serde_json::from_str::<serde_json::Value>(&empty.stdout).unwrap(), serde_json::json!([]));

    let port = emulator.local_addr().port();
    let details = write(
        dir.path(),
        "ep1.json",
        &format!(
            r#"{{"hostName": "ep1", "url": "wss://127.0.0.1:{port}/nbwss", "groupId": "sg1", "priority": 1, "token": "qwerrtrtrtrt2234344==="}}"#
        ),
    );
    let details = details.to_str().unwrap();
    let sha256 = nbwss_service::CertificateInfo::from_pem(&emulator.certificate_pem()).unwrap().sha256;

    // validate shows the certificate.
    let run = servers(&data, &["validate", "--file", details], "").await;
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(run.stdout.contains(&sha256) && run.stdout.contains("SHA-1"), "{}", run.stdout);

    // add asks; "n" saves nothing, a wrong fingerprint saves nothing, "y" saves.
    let run = servers(&data, &["add", "--file", details], "n\n").await;
    assert_ne!(run.status, 0);
    assert!(run.stderr.contains("not accepted"), "{}", run.stderr);
    let run = servers(&data, &["add", "--file", details, "--accept-certificate", "AA:BB"], "").await;
    assert_ne!(run.status, 0);
    assert!(run.stderr.contains("--accept-certificate"), "{}", run.stderr);
    let run = servers(&data, &["add", "--file", details], "y\n").await;
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(run.stdout.contains("saved ep1"), "{}", run.stdout);

    // A saved host is renewed in place, not saved twice: the same certificate and details change nothing.
    let run =
        servers(&data, &["add", "--file", details, "--accept-certificate", &sha256.to_lowercase()], "").await;
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("renewing it in place") && run.stdout.contains("nothing to renew"),
        "{}",
        run.stdout
    );
    // The token view: its fingerprint, never the token.
    let run = servers(&data, &["show", "ep1"], "").await;
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("sha256:424e49d15987c197") && !run.stdout.contains("qwerrtrtrtrt2234344==="),
        "{}",
        run.stdout
    );
    let run = servers(&data, &["update", "nobody"], "").await;
    assert!(
        run.status != 0 && run.stderr.contains("no WebSocket server named 'nobody' (saved: ep1)"),
        "{}",
        run.stderr
    );

    // Bad file, missing token, unreachable endpoint, unknown host.
    let bad = write(dir.path(), "bad.json", "{ not json");
    let run = servers(&data, &["validate", "--file", bad.to_str().unwrap()], "").await;
    assert!(run.status != 0 && run.stderr.contains("is not a valid endpoint details file"), "{}", run.stderr);
    let no_token = write(
        dir.path(),
        "no-token.json",
        &format!(
            r#"{{"hostName": "ep2", "url": "wss://127.0.0.1:{port}/nbwss", "groupId": "sg1", "priority": 2}}"#
        ),
    );
    let run = servers(&data, &["add", "--file", no_token.to_str().unwrap()], "y\n").await;
    assert!(run.status != 0 && run.stderr.contains("token: missing"), "{}", run.stderr);
    let ws =
        write(dir.path(), "ws.json", &std::fs::read_to_string(details).unwrap().replace("wss://", "ws://"));
    let run = servers(&data, &["validate", "--file", ws.to_str().unwrap()], "").await;
    assert!(run.status != 0 && run.stderr.contains("ws:// is not supported"), "{}", run.stderr);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = closed.local_addr().unwrap().port();
    drop(closed);
    let dead = write(
        dir.path(),
        "dead.json",
        &std::fs::read_to_string(details).unwrap().replace(&port.to_string(), &dead_port.to_string()),
    );
    let run = servers(&data, &["validate", "--file", dead.to_str().unwrap()], "").await;
    assert!(run.status != 0 && run.stderr.contains("cannot be reached"), "{}", run.stderr);
    let run = servers(&data, &["delete", "nobody"], "").await;
    assert!(run.status != 0 && run.stderr.contains("no WebSocket server named 'nobody'"), "{}", run.stderr);

    // List, deactivate, activate.
    let run = servers(&data, &["list"], "").await;
    assert!(
        run.stdout.starts_with("HOST NAME") && run.stdout.contains("ep1") && run.stdout.contains("ACTIVATED"),
        "{}",
        run.stdout
    );
    let run = servers(&data, &["deactivate", "ep1"], "").await;
    assert_eq!(run.status, 0, "{}", run.stderr);
    let run = servers(&data, &["list", "--json"], "").await;
    let listed: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(listed[0]["state"], "DEACTIVATED");
    assert!(listed[0].get("token").is_none());

    // Restart: the store is intact.
    drop(service);
    let mut service = start_service(&config);
    let run = wait_ready(&data, &mut service).await;
    let listed: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(listed[0]["hostName"], "ep1");
    assert_eq!(listed[0]["state"], "DEACTIVATED");
    assert_eq!(listed[0]["sha256Fingerprint"], sha256.as_str());
    let run = servers(&data, &["activate", "ep1"], "").await;
    assert_eq!(run.status, 0, "{}", run.stderr);

    // --service URL --admin-key KEY --admin-cert FILE works like --data-dir.
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("admin.json")).unwrap()).unwrap();
    let key = std::fs::read_to_string(data.join("admin.key")).unwrap();
    let cert = info["certificateFile"].as_str().unwrap().to_owned();
    let url = info["url"].as_str().unwrap().to_owned();
    let run = tokio::task::spawn_blocking(move || {
        nbwss(
            &[
                "servers",
                "--service",
                &url,
                "--admin-key",
                key.trim(),
                "--admin-cert",
                &cert,
                "list",
                "--json",
            ],
            "",
        )
    })
    .await
    .unwrap();
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(run.stdout.contains("\"ACTIVATED\""), "{}", run.stdout);
    let run = servers(&data, &["delete", "ep1"], "").await;
    assert_eq!(run.status, 0, "{}", run.stderr);

    // A rotating log file in the data directory.
    let logs: Vec<_> = std::fs::read_dir(data.join("logs")).unwrap().collect();
    assert!(!logs.is_empty());
    drop(service);
    emulator.shutdown().await;
}

#[test]
fn service_refuses_an_invalid_configuration_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "service.toml",
        "data_dir = \"data\"\n[primary]\nbase_url = \"http://localhost:1556/netbackup\"\n",
    );
    let run = nbwss(&["service", "run", "--config", config.to_str().unwrap()], "");
    assert_ne!(run.status, 0);
    assert!(run.stderr.contains("primary.base_url") && run.stderr.contains("https://"), "{}", run.stderr);
    let config = write(
        dir.path(),
        "props.toml",
        "data_dir = \"data\"\n[primary]\nbase_url = \"https://localhost:1556/netbackup\"\n[properties]\n\"keepAlive.maxPongMissAllowed\" = 0\n",
    );
    let run = nbwss(&["service", "check", "--config", config.to_str().unwrap()], "");
    assert_ne!(run.status, 0);
    assert!(run.stderr.contains("keepAlive.maxPongMissAllowed"), "{}", run.stderr);
    let config = write(dir.path(), "unknown.toml", "data_dir = \"data\"\nmystery = 1\n");
    let run = nbwss(&["service", "check", "--config", config.to_str().unwrap()], "");
    assert!(run.status != 0 && run.stderr.contains("mystery"), "{}", run.stderr);
}

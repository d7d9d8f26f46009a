//! `nbwss conformance`: the kit, run as a user runs it, against nbwss's own endpoint (`nbwss endpoint run`)
//! and service (`nbwss service run` with the emulator as its primary server). Both must pass every rule of
//! their mode, none skipped. (The kit against deliberately broken peers: nbwss-conformance's tests.)

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use nbwss_conformance::{rule, Mode};
use nbwss_emulator::{Emulator, EmulatorConfig};
use serde_json::Value;

use crate::util::{eventually, nbwss, Run};

/// A child process killed when dropped, unless waited for.
struct Process(Option<Child>);

impl Process {
    fn spawn(command: &mut Command) -> Self {
        Self(Some(command.spawn().unwrap()))
    }

    /// Waits for the process to end on its own.
    fn output(mut self) -> Run {
        let output = self.0.take().unwrap().wait_with_output().unwrap();
        Run {
            status: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Checks the JSON report: `mode`, exit status 0, and every rule of the mode passed.
fn assert_all_passed(run: &Run, mode: Mode) {
    let report: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|error| panic!("not a JSON report ({error}): {}\n{}", run.stdout, run.stderr));
    let rows = report["rules"].as_array().unwrap();
    let not_passed: Vec<String> = rows
        .iter()
        .filter(|row| row["status"] != "pass")
        .map(|row| format!("{} {}: {}", row["id"], row["status"], row["reason"]))
        .collect();
    assert!(not_passed.is_empty(), "rules not passed:\n{}\n{}", not_passed.join("\n"), run.stderr);
    let expected: Vec<&str> =
        rule::ALL.iter().filter(|rule| rule.applies_to(mode)).map(|rule| rule.id).collect();
    let ids: Vec<&str> = rows.iter().map(|row| row["id"].as_str().unwrap()).collect();
    assert_eq!(ids, expected);
    assert_eq!(report["mode"], mode.as_str());
    assert_eq!(report["passed"], true);
    assert_eq!(run.status, 0, "{}", run.stderr);
}

#[test]
fn the_kit_passes_nbwss_endpoint_on_every_endpoint_rule() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("endpoint");
    let data = data.to_str().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nbwss"))
        .args(["endpoint", "run", "--data-dir", data, "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut websocket = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(url) = line.strip_prefix("WebSocket URL for NetBackup: ") {
            websocket = Some(url.to_owned());
        }
        if line.starts_with("press Ctrl-C") {
            break;
        }
    }
    let _endpoint = Process(Some(child));
    let websocket = websocket.expect("the endpoint prints its WebSocket URL");
    let created =
        nbwss(&["endpoint", "token", "create", "primary1", "--url", &websocket, "--data-dir", data], "");
    assert_eq!(created.status, 0, "{}", created.stderr);
    let details = dir.path().join("primary1.json");
    std::fs::write(&details, &created.stdout).unwrap();
    let key = nbwss(&["endpoint", "apikey", "create", "app1", "--data-dir", data], "");
    assert_eq!(key.status, 0, "{}", key.stderr);
    // The relay's capability URL makes the endpoint send a COMMAND on the kit's connection.
    let base = websocket.replace("wss://", "https://").replace("/nbwss", "");
    let trigger = format!("{base}/relay/{}/primary1/netbackup/ping", key.stdout.trim());
    let certificate = Path::new(data).join(nbwss_endpoint::GENERATED_CERT_FILE);

    let run = nbwss(
        &[
            "conformance",
            "endpoint",
            "--details",
            details.to_str().unwrap(),
            "--ca-file",
            certificate.to_str().unwrap(),
            "--command-trigger",
            &trigger,
            "--json",
        ],
        "",
    );
    assert_all_passed(&run, Mode::Endpoint);

    // The table, and the exit status 2 with the fingerprint when no trust is given.
    let table = nbwss(
        &[
            "conformance",
            "endpoint",
            "--details",
            details.to_str().unwrap(),
            "--ca-file",
            certificate.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(table.status, 0, "{}{}", table.stdout, table.stderr);
    assert!(table.stdout.contains("R-COMMAND-1    skip"), "{}", table.stdout);
    assert!(table.stdout.contains("25 of 29 rules passed, 0 failed, 4 skipped"), "{}", table.stdout);
    let untrusted = nbwss(&["conformance", "endpoint", "--details", details.to_str().unwrap()], "");
    assert_eq!(untrusted.status, 2);
    assert!(untrusted.stderr.contains("pass --fingerprint"), "{}", untrusted.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kit_passes_nbwss_service_on_every_service_rule() {
    let emulator = Emulator::start(EmulatorConfig::for_tests()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let ca = dir.path().join("primary.pem");
    std::fs::write(&ca, emulator.certificate_pem()).unwrap();
    let config = dir.path().join("service.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = {data:?}
[primary]
base_url = "{base}"
ca_file = {ca:?}
[proxy]
use_environment = false
[log]
file = false
[properties]
"connectionInfo.period" = 1
"keepAlive.scheduledRate" = 1
"notification.scheduledRate" = 1
"#,
            base = emulator.base_url(),
        ),
    )
    .unwrap();
    let _service = Process::spawn(
        Command::new(env!("CARGO_BIN_EXE_nbwss"))
            .args(["service", "run", "--config", config.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    // Notifications: `nbwss notify` into the service's outbox, a new job id each time.
    let notify = format!(
        "'{}' notify --data-dir '{}' --job --job-id \"$$\" --state DONE",
        env!("CARGO_BIN_EXE_nbwss"),
        data.display()
    );
    let details = dir.path().join("kit.json");
    let kit = Process::spawn(
        Command::new(env!("CARGO_BIN_EXE_nbwss"))
            .args([
                "conformance",
                "service",
                "--bind",
                "127.0.0.1:0",
                "--details-file",
                details.to_str().unwrap(),
                "--wait",
                "120",
                "--reconnect-wait",
                "30",
                "--reply-timeout",
                "10",
                "--resend-wait",
                "4",
                "--keepalive-rate",
                "1",
                "--notification-wait",
                "60",
                "--notify-cmd",
                &notify,
                "--json",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    // The administrator's part: save the kit as a WebSocket server, accepting its certificate.
    eventually("the kit's details file", || async { details.exists().then_some(()) }).await;
    let saved = eventually("the service to save the kit as a WebSocket server", || {
        let (data, details) = (data.clone(), details.clone());
        async move {
            let run = tokio::task::spawn_blocking(move || {
                nbwss(
                    &[
                        "servers",
                        "--data-dir",
                        data.to_str().unwrap(),
                        "add",
                        "--file",
                        details.to_str().unwrap(),
                    ],
                    "y\n",
                )
            })
            .await
            .unwrap();
            (run.status == 0).then_some(run)
        }
    })
    .await;
    assert!(saved.stdout.contains("saved"), "{}", saved.stdout);

    let run = tokio::task::spawn_blocking(move || kit.output()).await.unwrap();
    assert_all_passed(&run, Mode::Service);
}

#[test]
fn rules_lists_every_rule_with_its_modes() {
    let run = nbwss(&["conformance", "rules", "--json"], "");
    assert_eq!(run.status, 0, "{}", run.stderr);
    let rules: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(rules.len(), rule::ALL.len());
    assert_eq!(rules[0]["id"], "R-WS-1");
    assert_eq!(rules[0]["modes"], serde_json::json!(["endpoint", "service"]));
    assert_eq!(rules[0]["doc"], "docs/protocol.md#r-ws-1");
}

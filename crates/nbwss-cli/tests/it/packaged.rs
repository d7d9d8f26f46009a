//! The packaged binaries, `nbwss-service` and `nbwss-endpoint`, with the configuration files the Debian
//! packages install (packaging/): what an administrator gets right after installing them.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nbwss_emulator::{Emulator, EmulatorConfig};
use nbwss_endpoint::{Endpoint, EndpointConfig};

use crate::util::{eventually, Run};

const SERVICE: &str = env!("CARGO_BIN_EXE_nbwss-service");
const ENDPOINT: &str = env!("CARGO_BIN_EXE_nbwss-endpoint");

fn packaged(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../packaging").join(file)
}

/// Runs `program ARGS...` to completion.
fn run(program: &str, args: &[&str]) -> Run {
    let output = Command::new(program).args(args).stdin(Stdio::null()).output().unwrap();
    Run {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// An HTTPS client trusting exactly this (self-signed) certificate.
fn https_client(certificate_pem: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(certificate_pem).unwrap())
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A child process, killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn example_config_is_the_packaged_file() {
    let file = std::fs::read_to_string(packaged("nbwss-service/service.toml")).unwrap();
    let small = run(SERVICE, &["example-config"]);
    assert_eq!(small.status, 0, "{}", small.stderr);
    assert_eq!(small.stdout, file);
    let full = crate::util::nbwss(&["service", "example-config"], "");
    assert_eq!(full.stdout, file);
}

/// `check` accepts the configuration as installed and warns that it names no primary server yet; `run`
/// refuses it with status 78 (the unit's RestartPreventExitStatus), naming the file and the key to edit.
#[test]
fn the_packaged_service_configuration_must_be_edited_before_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("service.toml");
    let text = std::fs::read_to_string(packaged("nbwss-service/service.toml")).unwrap();
    // Its own data directory, so that a run that wrongly started would not touch /var/lib.
    let data = dir.path().join("data");
    std::fs::write(&config, text.replace("/var/lib/nbwss-service", data.to_str().unwrap())).unwrap();
    let config_arg = config.to_str().unwrap();

    let check = run(SERVICE, &["check", "--config", config_arg]);
    assert_eq!(check.status, 0, "{}", check.stderr);
    assert!(check.stdout.contains("configuration OK"), "{}", check.stdout);
    assert!(
        check.stderr.contains("warning: primary.base_url in") && check.stderr.contains("placeholder"),
        "{}",
        check.stderr
    );

    let refused = run(SERVICE, &["run", "--config", config_arg]);
    assert_eq!(refused.status, 78, "{}", refused.stderr);
    assert!(
        refused.stderr.contains(&format!("primary.base_url in {config_arg}"))
            && refused.stderr.contains("not started"),
        "{}",
        refused.stderr
    );
    assert!(!data.exists(), "the refused service created its data directory");

    // Any configuration it cannot use is status 78 as well; a missing file names itself.
    std::fs::write(&config, "mystery = 1\n").unwrap();
    let invalid = run(SERVICE, &["run", "--config", config_arg]);
    assert_eq!(invalid.status, 78, "{}", invalid.stderr);
    assert!(invalid.stderr.contains(config_arg), "{}", invalid.stderr);
    let missing = run(SERVICE, &["run", "--config", "/nonexistent/service.toml"]);
    assert_eq!(missing.status, 78, "{}", missing.stderr);
    assert!(missing.stderr.contains("/nonexistent/service.toml"), "{}", missing.stderr);
}

/// The packaged configuration edited as the administrator would (the primary server's URL and CA): the
/// service-only binary runs it, its `servers` subcommand adds an endpoint, which it connects to, and its
/// `notify` subcommand enqueues a record that reaches the endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_only_binary_connects_relays_and_notifies() {
    let emulator = Emulator::start(EmulatorConfig::for_tests()).await.unwrap();
    let endpoint_dir = tempfile::tempdir().unwrap();
    let endpoint = Endpoint::start(EndpointConfig::new(endpoint_dir.path())).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ca = dir.path().join("primary.pem");
    std::fs::write(&ca, emulator.certificate_pem()).unwrap();
    let text = std::fs::read_to_string(packaged("nbwss-service/service.toml")).unwrap();
    let text = text
        .replace("/var/lib/nbwss-service", data.to_str().unwrap())
        .replace("https://primary.example.invalid:1556/netbackup", &emulator.base_url())
        .replace(
            "# ca_file = \"/usr/openv/var/webtruststore/cacert.pem\"",
            &format!("ca_file = {:?}", ca.to_str().unwrap()),
        )
        .replace("use_environment = true", "use_environment = false");
    assert!(text.contains("ca_file = \"/"), "the packaged file no longer has the ca_file line: {text}");
    let config = dir.path().join("service.toml");
    std::fs::write(&config, text).unwrap();

    let _service = Process(
        Command::new(SERVICE)
            .args(["run", "--config", config.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let data_arg = data.to_str().unwrap().to_owned();
    eventually("the service's admin API", || {
        let data_arg = data_arg.clone();
        async move {
            let list = tokio::task::spawn_blocking(move || {
                run(SERVICE, &["servers", "--data-dir", &data_arg, "list"])
            })
            .await
            .unwrap();
            (list.status == 0).then_some(())
        }
    })
    .await;

    let details = endpoint.create_token("packaged-primary", "default", 1).unwrap();
    let details_file = dir.path().join("details.json");
    std::fs::write(&details_file, details.to_value().to_string()).unwrap();
    let sha256 = endpoint.certificate_sha256().to_owned();
    let add = {
        let (data_arg, details_file) = (data_arg.clone(), details_file.clone());
        tokio::task::spawn_blocking(move || {
            let args = ["servers", "--data-dir", &data_arg, "add", "--file", details_file.to_str().unwrap()];
            let mut all = args.to_vec();
            all.extend(["--accept-certificate", &sha256]);
            run(SERVICE, &all)
        })
        .await
        .unwrap()
    };
    assert_eq!(add.status, 0, "{}", add.stderr);
    eventually("the connection to the endpoint", || {
        let connected = endpoint.connected_primaries().iter().any(|name| name == "packaged-primary");
        async move { connected.then_some(()) }
    })
    .await;

    // A NetBackup call relayed through the endpoint and this service to the primary server.
    let key = endpoint.create_api_key("app").unwrap();
    let client = https_client(endpoint.certificate_pem().as_bytes());
    let relayed = client
        .get(format!("{}/api/v1/primaries/packaged-primary/netbackup/ping", endpoint.url()))
        .header("X-NBWSS-API-Key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(relayed.status(), 200, "{:?}", relayed.text().await);

    let notify = run(SERVICE, &["notify", "--data-dir", &data_arg, "--job", "--job-id", "4242"]);
    assert_eq!(notify.status, 0, "{}", notify.stderr);
    assert!(notify.stdout.contains("enqueued JOB 4242"), "{}", notify.stdout);
    eventually("the notification at the endpoint", || {
        let counts = endpoint.store().notification_counts().unwrap();
        let arrived = counts.iter().any(|(name, count)| name == "packaged-primary" && *count >= 1);
        async move { arrived.then_some(()) }
    })
    .await;
    endpoint.shutdown().await;
}

/// The endpoint-only binary with the packaged configuration (its data directory and port moved for the
/// test): it starts, generates its certificate and answers /healthz; `token` and `apikey` work on its store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_only_binary_runs_the_packaged_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let text = std::fs::read_to_string(packaged("nbwss-endpoint/endpoint.toml")).unwrap();
    let config = dir.path().join("endpoint.toml");
    std::fs::write(&config, text.replace("/var/lib/nbwss-endpoint", data.to_str().unwrap())).unwrap();
    let config_arg = config.to_str().unwrap().to_owned();

    let mut child = Command::new(ENDPOINT)
        .args(["run", "--config", &config_arg, "--bind", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _endpoint = Process(child);
    // Read up to its last start-up line: a pipe closed earlier would fail the endpoint's next print.
    let url = tokio::task::spawn_blocking(move || {
        let mut url = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("NBWSS endpoint listening on ") {
                url = Some(rest.to_owned());
            }
            if line.starts_with("press Ctrl-C") {
                break;
            }
        }
        url
    })
    .await
    .unwrap()
    .expect("the endpoint printed no URL");
    let certificate = std::fs::read(data.join(nbwss_endpoint::GENERATED_CERT_FILE)).unwrap();
    let client = https_client(&certificate);
    let health = client.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let token = run(ENDPOINT, &["token", "create", "primary1", "--config", &config_arg]);
    assert_eq!(token.status, 0, "{}", token.stderr);
    // Without public_url the details name the loopback address of the configured port.
    assert!(token.stdout.contains("wss://127.0.0.1:8443/nbwss"), "{}", token.stdout);
    let key = run(ENDPOINT, &["apikey", "create", "app1", "--config", &config_arg]);
    assert_eq!(key.status, 0, "{}", key.stderr);
    let keys = run(ENDPOINT, &["apikey", "list", "--config", &config_arg]);
    assert!(keys.stdout.contains("app1"), "{}", keys.stdout);
    let primaries = client
        .get(format!("{url}/api/v1/primaries"))
        .header("X-NBWSS-API-Key", key.stdout.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(primaries.status(), 200);
    assert!(primaries.text().await.unwrap().contains("primary1"));
}

/// The packaged endpoint configuration parses, and the limits it shows commented out are the defaults.
#[test]
fn the_packaged_endpoint_configuration_shows_the_defaults() {
    let text = std::fs::read_to_string(packaged("nbwss-endpoint/endpoint.toml")).unwrap();
    let config = EndpointConfig::from_toml(&text).unwrap();
    assert_eq!(config.bind.to_string(), "0.0.0.0:8443");
    assert_eq!(config.data_dir, Path::new("/var/lib/nbwss-endpoint"));
    let uncommented: String = text
        .lines()
        .skip_while(|line| !line.starts_with("# Limits"))
        .map(|line| line.strip_prefix("# ").unwrap_or(line))
        .filter(|line| line.starts_with('[') || line.contains(" = "))
        .flat_map(|line| [line, "\n"])
        .collect();
    let shown = EndpointConfig::from_toml(&format!("data_dir = \"/tmp\"\n{uncommented}")).unwrap();
    let defaults = EndpointConfig::new("/tmp");
    assert_eq!(shown.limits, defaults.limits, "{uncommented}");
    assert_eq!(shown.keepalive, defaults.keepalive, "{uncommented}");
    assert_eq!(shown.retention, defaults.retention, "{uncommented}");
    assert_eq!(shown.webhooks, defaults.webhooks, "{uncommented}");
    // Every key of those sections is shown, so that a new limit does not go unmentioned.
    let shown: toml::Table = uncommented.parse().unwrap();
    let sections = [
        ("limits", toml::Value::try_from(&defaults.limits).unwrap()),
        ("keepalive", toml::Value::try_from(&defaults.keepalive).unwrap()),
        ("retention", toml::Value::try_from(&defaults.retention).unwrap()),
        ("webhooks", toml::Value::try_from(&defaults.webhooks).unwrap()),
    ];
    for (section, all) in sections {
        let keys = |value: &toml::Value| {
            value.as_table().unwrap().keys().cloned().collect::<std::collections::BTreeSet<_>>()
        };
        assert_eq!(keys(&shown[section]), keys(&all), "[{section}] in the packaged endpoint.toml");
    }
}

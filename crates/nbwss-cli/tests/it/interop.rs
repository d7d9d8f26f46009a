//! What administrators do to a running service, as they do it: the `nbwss` binary against an endpoint and a
//! service running as separate processes. A renewed endpoint certificate is listed with the command that
//! accepts it, `nbwss servers update` accepts it in place, and the backlog arrives once; `nbwss notify`
//! processes run in parallel beside a service busy delivering, and every record arrives once.

use std::collections::BTreeMap;
use std::path::PathBuf;

use nbwss_endpoint::{FeedQuery, Store};
use serde_json::Value;

use crate::util::{eventually, free_port, nbwss, Process, Run};

/// An endpoint and a service, each its own `nbwss ... run` process, in one temporary directory.
struct Deployment {
    dir: tempfile::TempDir,
    endpoint_port: u16,
}

impl Deployment {
    fn new() -> Self {
        let deployment = Self { dir: tempfile::tempdir().unwrap(), endpoint_port: free_port() };
        let config = format!(
            r#"data_dir = "{data}"

[primary]
base_url = "https://127.0.0.1:9/netbackup"

[admin]
bind = "127.0.0.1:0"

[proxy]
use_environment = false

[log]
file = false

[properties]
"connectionInfo.period" = 1
"notification.scheduledRate" = 1
"#,
            data = deployment.service_dir().display(),
        );
        std::fs::write(deployment.path("service.toml"), config).unwrap();
        deployment
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn endpoint_dir(&self) -> PathBuf {
        self.path("endpoint")
    }

    fn service_dir(&self) -> PathBuf {
        self.path("service")
    }

    fn start_endpoint(&self) -> Process {
        let bind = format!("127.0.0.1:{}", self.endpoint_port);
        let dir = self.endpoint_dir();
        Process::spawn(
            &["endpoint", "run", "--data-dir", dir.to_str().unwrap(), "--bind", &bind],
            &self.path("endpoint.log"),
        )
    }

    fn start_service(&self) -> Process {
        let config = self.path("service.toml");
        Process::spawn(&["service", "run", "--config", config.to_str().unwrap()], &self.path("service.log"))
    }

    /// The endpoint details file of a new token, as the provider hands it to the administrator.
    fn details_file(&self) -> PathBuf {
        let url = format!("wss://127.0.0.1:{}/nbwss", self.endpoint_port);
        let details =
            Store::open(&self.endpoint_dir()).unwrap().create_token("primary1", "g1", 1, &url).unwrap();
        let file = self.path("details.json");
        std::fs::write(&file, details.to_value().to_string()).unwrap();
        file
    }

    /// The SHA-256 fingerprint of the certificate the endpoint process generated, once it has.
    async fn endpoint_fingerprint(&self) -> String {
        let file = self.endpoint_dir().join(nbwss_endpoint::GENERATED_CERT_FILE);
        eventually("the endpoint's certificate", || async {
            let pem = std::fs::read_to_string(&file).ok()?;
            nbwss_service::CertificateInfo::from_pem(&pem).ok().map(|info| info.sha256)
        })
        .await
    }

    /// `nbwss servers --data-dir SERVICE ARGS...`, on a blocking thread.
    async fn servers(&self, args: &[&str], stdin: &str) -> Run {
        let mut all =
            vec!["servers".to_owned(), "--data-dir".to_owned(), self.service_dir().display().to_string()];
        all.extend(args.iter().map(|arg| (*arg).to_owned()));
        let stdin = stdin.to_owned();
        tokio::task::spawn_blocking(move || {
            nbwss(&all.iter().map(String::as_str).collect::<Vec<_>>(), &stdin)
        })
        .await
        .unwrap()
    }

    /// The service's one WebSocket server as `servers list --json` prints it, once the service answers.
    async fn listed(&self) -> Option<Value> {
        let run = self.servers(&["list", "--json"], "").await;
        let list: Value = serde_json::from_str(&run.stdout).ok()?;
        list.get(0).cloned()
    }

    /// Starts the endpoint and the service, adds the endpoint as a WebSocket server and waits until the
    /// service is connected; the details file, the endpoint process and the service process.
    async fn start_connected(&self) -> (PathBuf, Process, Process) {
        let details = self.details_file();
        let endpoint = self.start_endpoint();
        let service = self.start_service();
        let fingerprint = self.endpoint_fingerprint().await;
        self.wait_ready().await;
        let run = self
            .servers(&["add", "--file", details.to_str().unwrap(), "--accept-certificate", &fingerprint], "")
            .await;
        assert_eq!(run.status, 0, "{}", run.stderr);
        self.wait_connected().await;
        (details, endpoint, service)
    }

    async fn wait_ready(&self) {
        eventually("the service's admin API", || async {
            (self.servers(&["list", "--json"], "").await.status == 0).then_some(())
        })
        .await;
    }

    async fn wait_connected(&self) -> Value {
        eventually("the service to connect to the endpoint", || async {
            self.listed().await.filter(|host| host["connectionState"] == "CONNECTED")
        })
        .await
    }

    /// `nbwss notify --data-dir SERVICE --job --job-id ID` (blocking).
    fn notify_job(service_dir: &std::path::Path, job_id: i64) -> Run {
        let data = service_dir.display().to_string();
        let id = job_id.to_string();
        nbwss(&["notify", "--data-dir", &data, "--job", "--job-id", &id, "--state", "DONE"], "")
    }

    /// How many times each job id is stored at the endpoint.
    fn stored_jobs(&self) -> BTreeMap<i64, usize> {
        let Ok(store) = Store::open(&self.endpoint_dir()) else { return BTreeMap::new() };
        let mut jobs = BTreeMap::new();
        for notification in store
            .notifications(&FeedQuery { after: 0, limit: 1_000_000, primary: None, object: None })
            .unwrap_or_default()
        {
            if let Some(job_id) = notification.record["jobId"].as_i64() {
                *jobs.entry(job_id).or_default() += 1;
            }
        }
        jobs
    }

    async fn wait_stored(&self, job_ids: impl Iterator<Item = i64>) {
        let expected: BTreeMap<i64, usize> = job_ids.map(|id| (id, 1)).collect();
        eventually(&format!("{} jobs stored once each at the endpoint", expected.len()), || async {
            (self.stored_jobs() == expected).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_endpoint_certificate_is_listed_and_accepted_by_servers_update_keeping_the_backlog() {
    let deployment = Deployment::new();
    let (details, endpoint, _service) = deployment.start_connected().await;
    let pinned = deployment.endpoint_fingerprint().await;
    let before = deployment.wait_connected().await;
    let host = before["hostName"].as_str().unwrap().to_owned();
    let service_dir = deployment.service_dir();
    for job_id in 1..=3 {
        let run = Deployment::notify_job(&service_dir, job_id);
        assert_eq!(run.status, 0, "{}", run.stderr);
    }
    deployment.wait_stored(1..=3).await;

    // The provider renews the endpoint's certificate: a restart with a new one, on the same address.
    endpoint.kill();
    std::fs::remove_file(deployment.endpoint_dir().join(nbwss_endpoint::GENERATED_CERT_FILE)).unwrap();
    std::fs::remove_file(deployment.endpoint_dir().join(nbwss_endpoint::GENERATED_KEY_FILE)).unwrap();
    let _endpoint = deployment.start_endpoint();
    let renewed = deployment.endpoint_fingerprint().await;
    assert_ne!(renewed, pinned);
    for job_id in 4..=8 {
        let run = Deployment::notify_job(&service_dir, job_id);
        assert_eq!(run.status, 0, "{}", run.stderr);
    }

    // servers list (JSON and table) says what happened and how to accept the new certificate.
    let listed = eventually("the presented certificate in servers list --json", || async {
        deployment
            .listed()
            .await
            .filter(|host| host["presentedCertificate"]["sha256Fingerprint"] == renewed.as_str())
    })
    .await;
    assert_eq!(listed["lastClose"]["reason"], "CERTIFICATE_CHANGED", "{listed}");
    assert_eq!(listed["sha256Fingerprint"], pinned.as_str(), "still pinned: {listed}");
    let accept = format!("nbwss servers update {host}");
    assert_eq!(listed["presentedCertificate"]["acceptCommand"], accept.as_str());
    let table = deployment.servers(&["list"], "").await;
    assert!(
        table.stdout.contains("certificate changed") && table.stdout.contains(&accept),
        "{}",
        table.stdout
    );

    // The token view: the service and the endpoint show the same fingerprint, never the token.
    let shown = deployment.servers(&["show", &host], "").await;
    let fingerprint = listed["tokenFingerprint"].as_str().unwrap();
    assert!(shown.stdout.contains(fingerprint) && shown.stdout.contains(&renewed), "{}", shown.stdout);
    let endpoint_dir = deployment.endpoint_dir();
    let tokens = nbwss(&["endpoint", "token", "list", "--data-dir", endpoint_dir.to_str().unwrap()], "");
    assert!(tokens.stdout.contains(fingerprint), "{}", tokens.stdout);
    let token =
        serde_json::from_str::<Value>(&std::fs::read_to_string(&details).unwrap()).unwrap()["token"].clone();
    assert!(
        !shown.stdout.contains(token.as_str().unwrap()) && !tokens.stdout.contains(token.as_str().unwrap())
    );

    // Declined: nothing changes. Accepted: pinned in place, reconnected, the backlog arrives once.
    let run = deployment.servers(&["update", &host], "n\n").await;
    assert_ne!(run.status, 0);
    assert!(run.stdout.contains(&pinned) && run.stdout.contains(&renewed), "both shown: {}", run.stdout);
    assert!(run.stderr.contains("not accepted"), "{}", run.stderr);
    let run =
        deployment.servers(&["update", &host, "--accept-certificate", &renewed.to_lowercase()], "").await;
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(run.stdout.contains("renewed") && run.stdout.contains("backlog are kept"), "{}", run.stdout);
    let after = deployment.wait_connected().await;
    deployment.wait_stored(1..=8).await;
    assert_eq!(after["sha256Fingerprint"], renewed.as_str());
    assert_eq!(after["credentialId"], before["credentialId"]);
    assert!(after.get("presentedCertificate").is_none(), "{after}");

    // Adding the same details again renews in place: nothing to change now.
    let run = deployment
        .servers(&["add", "--file", details.to_str().unwrap(), "--accept-certificate", &renewed], "")
        .await;
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("renewing it in place") && run.stdout.contains("nothing to renew"),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_notify_processes_beside_a_busy_service_all_get_delivered_once() {
    let deployment = Deployment::new();
    let (_details, _endpoint, _service) = deployment.start_connected().await;

    // Delivery load: a large batch, sent and acknowledged (one durable commit each) while the notify
    // processes below write the same outbox.
    let load: Vec<Value> = (10_000..12_000)
        .map(|job_id| {
            serde_json::json!({"scheduleType": "ST_FULL", "clientName": "c1", "status": 0, "startTime": 1_700_000_000,
                "state": "DONE", "policyName": "p", "parentJobId": job_id, "jobId": job_id,
                "policyType": "STANDARD", "jobType": "BACKUP"})
        })
        .collect();
    let load_file = deployment.path("load.json");
    std::fs::write(&load_file, Value::from(load).to_string()).unwrap();
    let service_dir = deployment.service_dir();
    let data = service_dir.display().to_string();
    let run = nbwss(&["notify", "--data-dir", &data, "--file", load_file.to_str().unwrap()], "");
    assert_eq!(run.status, 0, "{}", run.stderr);

    // Three waves of twelve processes at once, as many notify scripts of parallel jobs would run.
    for wave in 0..3 {
        let processes: Vec<_> = (0..12)
            .map(|index| {
                let service_dir = service_dir.clone();
                std::thread::spawn(move || Deployment::notify_job(&service_dir, 1 + wave * 12 + index))
            })
            .collect();
        for process in processes {
            let run = process.join().unwrap();
            assert_eq!(run.status, 0, "a notify process failed beside a busy service: {}", run.stderr);
        }
    }
    deployment.wait_stored((1..=36).chain(10_000..12_000)).await;
}

/// docs/troubleshooting.md stays true: it explains every close reason the service reports, and every
/// `nbwss` command it tells the administrator to run exists.
#[test]
fn the_troubleshooting_guide_names_every_close_reason_and_only_real_commands() {
    let guide = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/troubleshooting.md"),
    )
    .unwrap();
    for reason in nbwss_protocol::CloseReason::known() {
        assert!(guide.contains(&format!("`{reason}`")), "docs/troubleshooting.md does not explain {reason}");
    }
    let mut commands = std::collections::BTreeSet::new();
    for (index, _) in guide.match_indices("nbwss ") {
        let words: Vec<&str> = guide[index + "nbwss ".len()..]
            .split_whitespace()
            .take(2)
            .take_while(|word| word.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
            .collect();
        if !words.is_empty() {
            commands.insert(words.join(" "));
        }
    }
    assert!(commands.contains("servers update") && commands.contains("endpoint token"), "{commands:?}");
    for command in commands {
        let mut args: Vec<&str> = command.split(' ').collect();
        args.push("--help");
        let run = nbwss(&args, "");
        assert_eq!(run.status, 0, "`nbwss {command}` in docs/troubleshooting.md: {}", run.stderr);
    }
}

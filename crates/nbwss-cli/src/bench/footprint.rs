//! `nbwss bench footprint`: the emulator (`nbwss emulator run`) and the service as processes of their own:
//! start-up time (to the first answered HTTPS call) and resident memory when idle. The service runs twice in
//! the same run, side by side: as `nbwss service run` (this binary, every subcommand linked in) and as
//! `nbwss-service run` (the service-only binary the package installs), each with one connection to an
//! endpoint in this process, its own credentials on the emulator (so it polls for notifications as
//! deployed) and default logging. Then each relays a fixed number of calls, for its CPU time per call: what
//! a build optimised for size costs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nbwss_endpoint::{Endpoint, EndpointConfig, EndpointHandle};
use nbwss_protocol::HostObject;
use nbwss_service::AdminClient;

use super::process::{self, free_port, https_client, wait_for, ChildProcess};
use super::relay::{load, Target};
use super::report::{Report, Table};
use super::Common;

/// How long a process may take to start and connect.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// The service-only binary, looked for next to this one when `--service-binary` is not given.
const SERVICE_BINARY: &str = "nbwss-service";
/// The relayed call whose CPU cost is measured (a job by id, about 1 KB), from this many clients, after this
/// many untimed calls each.
const CALL_PATH: &str = "/admin/jobs/1";
const CALL_CLIENTS: usize = 8;
const CALL_WARMUP: usize = 10;

/// Arguments of `nbwss bench footprint`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Seconds each process idles before its resident memory is read (the service polls the emulator
    /// every notification.scheduledRate = 5 s meanwhile).
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u64).range(0..=600))]
    settle: u64,
    /// Relayed calls (`GET /admin/jobs/1`, about 1 KB, 8 clients) sent through each service after the idle
    /// measurement, to measure its CPU time per call.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    calls: u64,
    /// The service-only binary to measure beside `nbwss service run` [default: nbwss-service next to this
    /// executable, e.g. target/release/nbwss-service after `cargo build --release -p nbwss-cli`].
    #[arg(long, value_name = "FILE")]
    service_binary: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) common: Common,
}

/// One service process, measured.
struct Measured {
    label: String,
    binary_bytes: u64,
    startup: Duration,
    save_to_connected: Duration,
    rss: u64,
    anon: u64,
    file: u64,
    cpu_per_call: Duration,
}

/// A service process started and connected, not yet measured.
pub(crate) struct Started {
    label: String,
    binary: PathBuf,
    pub(crate) child: ChildProcess,
    pub(crate) admin: AdminClient,
    primary: String,
    startup: Duration,
    save_to_connected: Duration,
}

pub(crate) async fn run(args: &Args) -> anyhow::Result<Report> {
    let scratch = args.common.scratch()?;
    let dir = scratch.path();
    let settle = Duration::from_secs(args.settle);
    let full_binary = std::env::current_exe().context("cannot find the nbwss executable")?;
    let service_binary = match &args.service_binary {
        Some(file) => {
            anyhow::ensure!(file.is_file(), "--service-binary {}: no such file", file.display());
            Some(file.clone())
        }
        None => full_binary.parent().map(|parent| parent.join(SERVICE_BINARY)).filter(|file| file.is_file()),
    };

    // The emulator.
    let emulator_port = free_port()?;
    let emulator_cert = dir.join("emulator-cert.pem");
    let emulator_bind = format!("127.0.0.1:{emulator_port}");
    let cert_arg = emulator_cert.to_string_lossy().into_owned();
    let emulator_args =
        ["emulator", "run", "--bind", &emulator_bind, "--cert-out", &cert_arg, "--user", "admin:password"];
    let mut emulator = ChildProcess::spawn(&emulator_args, &dir.join("emulator.log"), "warn")?;
    let emulator_url = format!("https://127.0.0.1:{emulator_port}/netbackup");
    let emulator_start =
        wait_answering(&mut emulator, &emulator_cert, &format!("{emulator_url}/ping")).await?;

    // The endpoint, in this process, and the services.
    let endpoint = Endpoint::start(EndpointConfig::new(dir.join("endpoint"))).await?;
    let primary = Primary {
        dir,
        emulator_url: &emulator_url,
        emulator_cert: &emulator_cert,
        endpoint: &endpoint,
        extra_config: "",
    };
    let mut started =
        vec![primary.start_service("full", "nbwss service run", &full_binary, &["service", "run"]).await?];
    if let Some(binary) = &service_binary {
        started.push(primary.start_service("service-only", "nbwss-service run", binary, &["run"]).await?);
    }

    tokio::time::sleep(settle).await;
    let mut measured = Vec::new();
    for service in &started {
        let (anon, file) = process::rss_split_kib(service.child.pid())?;
        let connected = endpoint.connected_primaries().contains(&service.primary);
        anyhow::ensure!(connected, "{} lost its connection while idle", service.label);
        measured.push(Measured {
            label: service.label.clone(),
            binary_bytes: std::fs::metadata(&service.binary).map(|metadata| metadata.len()).unwrap_or(0),
            startup: service.startup,
            save_to_connected: service.save_to_connected,
            rss: process::rss_kib(service.child.pid())?,
            anon,
            file,
            cpu_per_call: Duration::ZERO,
        });
    }
    let emulator_rss = process::rss_kib(emulator.pid())?;
    let (emulator_anon, emulator_file) = process::rss_split_kib(emulator.pid())?;

    // CPU time per relayed call of each service: the endpoint's app API, through the service, to the emulator.
    let api_key = endpoint.create_api_key("footprint")?;
    let login = https_client(&std::fs::read_to_string(&emulator_cert)?)?
        .post(format!("{emulator_url}/login"))
        .json(&serde_json::json!({"userName": "admin", "password": "password"}))
        .send()
        .await?
        .error_for_status()
        .context("logging in to the emulator")?;
    let token: serde_json::Value = login.json().await?;
    let token = token["token"].as_str().context("no token in the emulator's login answer")?.to_owned();
    let calls = usize::try_from(args.calls)?;
    for (service, measured) in started.iter().zip(&mut measured) {
        let target = Target {
            base: format!("{}/api/v1/primaries/{}/netbackup", endpoint.url(), service.primary),
            certificate_pem: endpoint.certificate_pem().to_owned(),
            headers: vec![
                ("Authorization", token.clone()),
                (nbwss_endpoint::API_KEY_HEADER, api_key.clone()),
            ],
        };
        let before = process::cpu_time(service.child.pid())?;
        let phase = load(&target, CALL_PATH, CALL_CLIENTS, calls, CALL_WARMUP).await?;
        let used = process::cpu_time(service.child.pid())?.saturating_sub(before);
        anyhow::ensure!(
            phase.errors == 0,
            "{}: {} of {} relayed calls failed",
            service.label,
            phase.errors,
            phase.completed
        );
        measured.cpu_per_call = used / u32::try_from(phase.completed.max(1))?;
    }
    for service in started {
        service.child.stop(Duration::from_secs(10)).await;
    }
    emulator.stop(Duration::from_secs(10)).await;
    endpoint.shutdown().await;

    let mut report = Report::new("footprint");
    report.parameter("settle_s", args.settle);
    let mut table = Table::new(
        "Processes started from their binaries, idle",
        &["process", "binary MiB", "start-up ms", "RSS MiB", "anon MiB", "file MiB", "CPU µs/call", "notes"],
    );
    for service in &measured {
        table.row(vec![
            service.label.clone(),
            format!("{:.1}", service.binary_bytes as f64 / 1_048_576.0),
            format!("{:.0}", service.startup.as_secs_f64() * 1000.0),
            format!("{:.1}", service.rss as f64 / 1024.0),
            format!("{:.1}", service.anon as f64 / 1024.0),
            format!("{:.1}", service.file as f64 / 1024.0),
            format!("{:.0}", service.cpu_per_call.as_secs_f64() * 1e6),
            format!(
                "one connection (save → connected {:.0} ms), polling the emulator, file log and audit on",
                service.save_to_connected.as_secs_f64() * 1000.0
            ),
        ]);
    }
    table.row(vec![
        "nbwss emulator run".to_owned(),
        String::new(),
        format!("{:.0}", emulator_start.as_secs_f64() * 1000.0),
        format!("{:.1}", emulator_rss as f64 / 1024.0),
        format!("{:.1}", emulator_anon as f64 / 1024.0),
        format!("{:.1}", emulator_file as f64 / 1024.0),
        String::new(),
        "default seed data".to_owned(),
    ]);
    report.table(table);
    for (service, prefix) in measured.iter().zip(["service", "service_only"]) {
        report.figure(&format!("{prefix}_binary_bytes"), service.binary_bytes as f64);
        report.figure(&format!("{prefix}_startup_ms"), service.startup.as_secs_f64() * 1000.0);
        report.figure(
            &format!("{prefix}_save_to_connected_ms"),
            service.save_to_connected.as_secs_f64() * 1000.0,
        );
        report.figure(&format!("{prefix}_rss_kib"), service.rss as f64);
        report.figure(&format!("{prefix}_rss_anon_kib"), service.anon as f64);
        report.figure(&format!("{prefix}_rss_file_kib"), service.file as f64);
        report.figure(&format!("{prefix}_cpu_us_per_call"), service.cpu_per_call.as_secs_f64() * 1e6);
    }
    report.figure("emulator_startup_ms", emulator_start.as_secs_f64() * 1000.0);
    report.figure("emulator_rss_kib", emulator_rss as f64);
    report.figure("emulator_rss_anon_kib", emulator_anon as f64);
    if let [full, only] = measured.as_slice() {
        report.figure("service_only_rss_ratio", only.rss as f64 / full.rss as f64);
    } else {
        report.note(format!(
            "no {SERVICE_BINARY} next to {}: build it (cargo build --release -p nbwss-cli) or pass \
             --service-binary FILE to measure the service-only binary",
            full_binary.display()
        ));
    }
    // The target is for the process that runs on the primary server: the service-only one when measured.
    if let Some(service) = measured.last() {
        report.target(
            &format!("idle service resident memory ({})", service.label),
            "≤ 10 MB",
            format!("{:.1} MB", service.rss as f64 * 1024.0 / 1e6),
            service.rss as f64 * 1024.0 <= 10e6,
        );
    }
    report.note("anon: the process's own memory (heap, stacks); file: pages of its executable and the libraries mapped in, shared with other processes running them");
    report.note("start-up: from spawning the process to its first answered HTTPS call (emulator /ping, service admin API)");
    report.note(format!(
        "CPU µs/call: the service's CPU time (user + system, 10 ms ticks) over {calls} relayed GET {CALL_PATH} from \
         {CALL_CLIENTS} clients, after the idle measurement"
    ));
    Ok(report)
}

/// What every service process is started against.
pub(crate) struct Primary<'a> {
    pub(crate) dir: &'a Path,
    pub(crate) emulator_url: &'a str,
    pub(crate) emulator_cert: &'a Path,
    pub(crate) endpoint: &'a EndpointHandle,
    /// More of the service's configuration file (e.g. a `[properties]` table).
    pub(crate) extra_config: &'a str,
}

impl Primary<'_> {
    /// Starts `binary ARGS --config FILE` with a configuration and data directory of its own (named
    /// `name`), saves the endpoint in it and waits until it is connected.
    pub(crate) async fn start_service(
        &self,
        name: &str,
        label: &str,
        binary: &Path,
        args: &[&str],
    ) -> anyhow::Result<Started> {
        let service_dir = self.dir.join(name);
        let admin_port = free_port()?;
        let config = format!(
            "data_dir = {service_dir:?}\n\n[primary]\nbase_url = {:?}\nca_file = {:?}\n\n\
             [primary.credentials]\nuser_name = \"admin\"\npassword = \"password\"\n\n[admin]\nbind = \"127.0.0.1:{admin_port}\"\n{}",
            self.emulator_url, self.emulator_cert, self.extra_config
        );
        let config_file = self.dir.join(format!("{name}.toml"));
        std::fs::write(&config_file, config)?;
        let config_arg = config_file.to_string_lossy().into_owned();
        let mut all = args.to_vec();
        all.extend(["--config", &config_arg]);
        let log = self.dir.join(format!("{name}.log"));
        let mut child = ChildProcess::spawn_program(binary, &all, &log, "warn")?;
        let admin = wait_admin(&mut child, &service_dir, &log).await?;
        let startup = child.started.elapsed();

        let primary = format!("footprint-{name}");
        let details = self.endpoint.create_token(&primary, "footprint", 1)?;
        let mut host = HostObject::from_value(&details.to_value())?;
        let validated = admin.validate_host(&host).await.context("validating the endpoint")?;
        host.certificate = validated.certificate;
        let saving = Instant::now();
        admin.save(&host).await.context("saving the WebSocket server")?;
        wait_for("the service to connect", START_DEADLINE, Duration::from_millis(5), || {
            let connected = self.endpoint.connected_primaries().contains(&primary);
            async move { connected.then_some(()) }
        })
        .await?;
        let save_to_connected = saving.elapsed();
        Ok(Started {
            label: label.to_owned(),
            binary: binary.to_path_buf(),
            child,
            admin,
            primary,
            startup,
            save_to_connected,
        })
    }
}

/// Waits until `url` answers 200 over TLS trusting the certificate written to `cert_file`.
async fn wait_answering(child: &mut ChildProcess, cert_file: &Path, url: &str) -> anyhow::Result<Duration> {
    let deadline = Instant::now() + START_DEADLINE;
    let mut client = None;
    loop {
        if let Some(status) = child.exited() {
            anyhow::bail!("the process exited ({status}) before answering {url}");
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{url} did not answer within {} s",
            START_DEADLINE.as_secs()
        );
        if client.is_none() {
            if let Some(pem) = process::read_written_certificate(cert_file) {
                client = https_client(&pem).ok();
            }
        }
        if let Some(client) = &client {
            if client.get(url).send().await.is_ok_and(|response| response.status().is_success()) {
                return Ok(child.started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until the service's admin API (found through `admin.json` in its data directory) answers.
async fn wait_admin(child: &mut ChildProcess, data_dir: &Path, log: &Path) -> anyhow::Result<AdminClient> {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if let Some(status) = child.exited() {
            anyhow::bail!("the service exited ({status}); see {}", log.display());
        }
        anyhow::ensure!(Instant::now() < deadline, "the service's admin API did not answer in time");
        if let Ok(admin) = AdminClient::from_data_dir(data_dir) {
            if admin.list().await.is_ok() {
                return Ok(admin);
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

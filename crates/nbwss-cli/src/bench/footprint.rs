//! `nbwss bench footprint`: the emulator (`nbwss emulator run`) and the service (`nbwss service run`)
//! as processes of their own, started from this binary: start-up time (to the first answered HTTPS call)
//! and resident memory when idle; the service with one connection to an endpoint in this process, its
//! own credentials on the emulator (so it polls for notifications as deployed) and default logging.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nbwss_endpoint::{Endpoint, EndpointConfig};
use nbwss_protocol::HostObject;
use nbwss_service::AdminClient;

use super::process::{self, free_port, https_client, wait_for, ChildProcess};
use super::report::{Report, Table};
use super::Common;

/// How long a process may take to start and connect.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// The primary server's name at the endpoint.
const PRIMARY: &str = "footprint-primary";

/// Arguments of `nbwss bench footprint`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Seconds each process idles before its resident memory is read (the service polls the emulator
    /// every notification.scheduledRate = 5 s meanwhile).
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u64).range(0..=600))]
    settle: u64,
    #[command(flatten)]
    pub(crate) common: Common,
}

pub(crate) async fn run(args: &Args) -> anyhow::Result<Report> {
    let scratch = args.common.scratch()?;
    let dir = scratch.path();
    let settle = Duration::from_secs(args.settle);

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

    // The endpoint, in this process.
    let endpoint = Endpoint::start(EndpointConfig::new(dir.join("endpoint"))).await?;
    let details = endpoint.create_token(PRIMARY, "footprint", 1)?;

    // The service.
    let service_dir = dir.join("service");
    let admin_port = free_port()?;
    let config = format!(
        "data_dir = {service_dir:?}\n\n[primary]\nbase_url = {emulator_url:?}\nca_file = {emulator_cert:?}\n\n\
         [primary.credentials]\nuser_name = \"admin\"\npassword = \"password\"\n\n[admin]\nbind = \"127.0.0.1:{admin_port}\"\n"
    );
    let config_file = dir.join("service.toml");
    std::fs::write(&config_file, config)?;
    let config_arg = config_file.to_string_lossy().into_owned();
    let mut service =
        ChildProcess::spawn(&["service", "run", "--config", &config_arg], &dir.join("service.log"), "warn")?;
    let admin = wait_admin(&mut service, &service_dir).await?;
    let service_start = service.started.elapsed();

    let mut host = HostObject::from_value(&details.to_value())?;
    let validated = admin.validate_host(&host).await.context("validating the endpoint")?;
    host.certificate = validated.certificate;
    let saving = Instant::now();
    admin.save(&host).await.context("saving the WebSocket server")?;
    wait_for("the service to connect", START_DEADLINE, Duration::from_millis(5), || {
        let connected = endpoint.connected_primaries().iter().any(|name| name == PRIMARY);
        async move { connected.then_some(()) }
    })
    .await?;
    let save_to_connected = saving.elapsed();

    tokio::time::sleep(settle).await;
    let service_rss = process::rss_kib(service.pid())?;
    let (service_anon, service_file) = process::rss_split_kib(service.pid())?;
    let emulator_rss = process::rss_kib(emulator.pid())?;
    let (emulator_anon, emulator_file) = process::rss_split_kib(emulator.pid())?;
    let still_connected = endpoint.connected_primaries().iter().any(|name| name == PRIMARY);
    service.stop(Duration::from_secs(10)).await;
    emulator.stop(Duration::from_secs(10)).await;
    endpoint.shutdown().await;
    anyhow::ensure!(still_connected, "the service lost its connection while idle");

    let mut report = Report::new("footprint");
    report.parameter("settle_s", args.settle);
    let mut table = Table::new(
        "Processes started from this binary, idle",
        &["process", "start-up ms", "RSS MiB", "anon MiB", "file MiB", "notes"],
    );
    table.row(vec![
        "nbwss service run".to_owned(),
        format!("{:.0}", service_start.as_secs_f64() * 1000.0),
        format!("{:.1}", service_rss as f64 / 1024.0),
        format!("{:.1}", service_anon as f64 / 1024.0),
        format!("{:.1}", service_file as f64 / 1024.0),
        format!(
            "one connection (save → connected {:.0} ms), polling the emulator, file log and audit on",
            save_to_connected.as_secs_f64() * 1000.0
        ),
    ]);
    table.row(vec![
        "nbwss emulator run".to_owned(),
        format!("{:.0}", emulator_start.as_secs_f64() * 1000.0),
        format!("{:.1}", emulator_rss as f64 / 1024.0),
        format!("{:.1}", emulator_anon as f64 / 1024.0),
        format!("{:.1}", emulator_file as f64 / 1024.0),
        "default seed data".to_owned(),
    ]);
    report.table(table);
    report.figure("service_startup_ms", service_start.as_secs_f64() * 1000.0);
    report.figure("service_save_to_connected_ms", save_to_connected.as_secs_f64() * 1000.0);
    report.figure("service_rss_kib", service_rss as f64);
    report.figure("service_rss_anon_kib", service_anon as f64);
    report.figure("service_rss_file_kib", service_file as f64);
    report.figure("emulator_startup_ms", emulator_start.as_secs_f64() * 1000.0);
    report.figure("emulator_rss_kib", emulator_rss as f64);
    report.figure("emulator_rss_anon_kib", emulator_anon as f64);
    report.target(
        "idle service resident memory",
        "≤ 10 MB",
        format!("{:.1} MB", service_rss as f64 * 1024.0 / 1e6),
        service_rss as f64 * 1024.0 <= 10e6,
    );
    report.note("anon: the process's own memory (heap, stacks); file: pages of the one nbwss executable (all subcommands, 12 MB of code) and libraries mapped in, shared with other processes running them");
    report.note("start-up: from spawning the process to its first answered HTTPS call (emulator /ping, service admin API)");
    Ok(report)
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
            if let Ok(pem) = std::fs::read_to_string(cert_file) {
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
async fn wait_admin(child: &mut ChildProcess, data_dir: &Path) -> anyhow::Result<AdminClient> {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if let Some(status) = child.exited() {
            anyhow::bail!("the service exited ({status}); see service.log in the scratch directory");
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

//! `nbwss bench fleet`: K simulated services in this process against one endpoint process
//! (`nbwss endpoint run`, a child of this binary). Each simulated service is a real wss connection that
//! sends CONNECT with its own token, pings every keepalive interval, answers the endpoint's pings, and on
//! a lost connection retries with the service's own backoff (D17: full jitter from 1 s up to
//! `connectionInfo.period`). Measured: the endpoint's resident memory per connection, its CPU at idle
//! with keepalive, the time to connect all, and after a restart of the endpoint process the time until
//! all are back and the peak connection rate.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::{SinkExt as _, StreamExt as _};
use nbwss_endpoint::{EndpointConfig, Store, GENERATED_CERT_FILE};
use nbwss_protocol::{Body, Codec, ConnectRequest, Message, Secret};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

use super::process::{self, free_port, wait_for, ChildProcess};
use super::report::{Report, Table};
use super::stats::grouped;
use super::Common;

/// How long connecting (or reconnecting) the whole fleet may take.
const CONNECT_DEADLINE: Duration = Duration::from_secs(90);
/// How long one connection attempt (TCP, TLS, upgrade, CONNECT) may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Time for the endpoint to settle before its memory is read.
const SETTLE: Duration = Duration::from_secs(2);
/// Width of the bins connection rates are counted in.
const BIN: Duration = Duration::from_millis(100);

/// Arguments of `nbwss bench fleet`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Simulated services (connections).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=50_000))]
    services: u64,
    /// Keepalive interval in seconds, of the endpoint's pings and of each service's pings (both default
    /// to 30 s in production; shorter here so that the idle measurement sees every connection ping).
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    keepalive: u64,
    /// Seconds over which the endpoint's idle CPU is measured (default: one keepalive interval).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=600))]
    idle: Option<u64>,
    /// Connection attempts in progress at once while the fleet first connects (the restart is not
    /// limited: there only the services' backoff spreads the attempts).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=50_000))]
    connect_concurrency: u64,
    /// `connectionInfo.period` in seconds: the cap of the services' reconnection backoff.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    period: u64,
    #[command(flatten)]
    pub(crate) common: Common,
}

/// The simulated services' shared counters.
#[derive(Debug, Default)]
struct Fleet {
    connected: AtomicUsize,
    connects: Mutex<Vec<Instant>>,
    attempts: Mutex<Vec<Instant>>,
    disconnects: AtomicUsize,
    failed_attempts: AtomicUsize,
}

impl Fleet {
    fn connects_since(&self, since: Instant) -> Vec<Instant> {
        let connects = self.connects.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        connects.iter().copied().filter(|at| *at >= since).collect()
    }

    fn attempts_since(&self, since: Instant) -> Vec<Instant> {
        let attempts = self.attempts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        attempts.iter().copied().filter(|at| *at >= since).collect()
    }
}

/// One simulated service's settings.
#[derive(Debug, Clone)]
struct Simulation {
    url: String,
    tls: Arc<rustls::ClientConfig>,
    keepalive: Duration,
    period: Duration,
}

pub(crate) async fn run(args: &Args) -> anyhow::Result<Report> {
    let services = usize::try_from(args.services)?;
    let needed = u64::try_from(services)? + 256;
    if crate::open_files_limit() < needed {
        anyhow::bail!(
            "the open-files limit is {} and {services} connections need about {needed}: raise it (ulimit -n) and retry",
            crate::open_files_limit()
        );
    }
    let scratch = args.common.scratch()?;
    let data_dir = scratch.path().join("endpoint");
    let port = free_port()?;
    let config = endpoint_config(args, services, &data_dir, port);
    let config_file = scratch.path().join("endpoint.toml");
    std::fs::write(&config_file, toml::to_string(&config)?)?;
    let websocket_url = config.websocket_url_for(config.bind);

    // Provision the fleet's tokens in the endpoint's store before it starts.
    let provisioning = Instant::now();
    let names: Vec<(String, String, i64)> =
        (0..services).map(|index| (format!("fleet-{index:05}"), "fleet".to_owned(), 1)).collect();
    let details = Store::open(&data_dir)?.create_tokens(&names, &websocket_url)?;
    let provisioning = provisioning.elapsed();
    let tokens: Vec<String> = details.iter().map(|detail| detail.token.expose().to_owned()).collect();

    let log_file = scratch.path().join("endpoint.log");
    let config_arg = config_file.to_string_lossy().into_owned();
    let run_args = ["endpoint", "run", "--config", config_arg.as_str()];
    let mut first = ChildProcess::spawn(&run_args, &log_file, "warn")?;
    let first_start = wait_listening(&mut first, &data_dir, port).await?;
    tokio::time::sleep(SETTLE).await;
    let rss_idle = process::rss_kib(first.pid())?;
    let mut endpoint = Some(first);

    let tls = client_tls(&data_dir)?;
    let simulation = Simulation {
        url: websocket_url.clone(),
        tls,
        keepalive: Duration::from_secs(args.keepalive),
        period: Duration::from_secs(args.period),
    };
    let fleet = Arc::new(Fleet::default());
    let cancel = CancellationToken::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(usize::try_from(args.connect_concurrency)?));
    let mut tasks = tokio::task::JoinSet::new();
    let connecting = Instant::now();
    for (index, token) in tokens.into_iter().enumerate() {
        tasks.spawn(simulated_service(
            simulation.clone(),
            index,
            token,
            fleet.clone(),
            gate.clone(),
            cancel.clone(),
        ));
    }
    let all_connected = |fleet: Arc<Fleet>| {
        wait_for(
            "every simulated service to connect",
            CONNECT_DEADLINE,
            Duration::from_millis(10),
            move || {
                let connected = fleet.connected.load(Ordering::SeqCst);
                async move { (connected >= services).then_some(()) }
            },
        )
    };
    let outcome = async {
        all_connected(fleet.clone()).await?;
        let connect_all = connecting.elapsed();
        gate.close();
        tokio::time::sleep(SETTLE).await;
        let pid = endpoint.as_ref().map(ChildProcess::pid).context("no endpoint process")?;
        let rss_connected = process::rss_kib(pid)?;

        let idle = Duration::from_secs(args.idle.unwrap_or(args.keepalive));
        let disconnects_before = fleet.disconnects.load(Ordering::SeqCst);
        let cpu_before = process::cpu_time(pid)?;
        let idle_started = Instant::now();
        tokio::time::sleep(idle).await;
        let cpu_idle = process::cpu_time(pid)?.saturating_sub(cpu_before);
        let idle_elapsed = idle_started.elapsed();
        let idle_disconnects = fleet.disconnects.load(Ordering::SeqCst) - disconnects_before;

        // Restart: SIGTERM (the endpoint closes every session with GOING_AWAY), then a new process.
        let restart_began = Instant::now();
        let stopped_after = match endpoint.take() {
            Some(old) => old.stop(Duration::from_secs(20)).await,
            None => Duration::ZERO,
        };
        let mut second = ChildProcess::spawn(&run_args, &log_file, "warn")?;
        let second_start = wait_listening(&mut second, &data_dir, port).await?;
        let pid = second.pid();
        endpoint = Some(second);
        let listening_at = Instant::now();
        all_connected(fleet.clone()).await?;
        let reconnected_at = Instant::now();
        let reconnects = fleet.connects_since(restart_began);
        let attempts = fleet.attempts_since(restart_began);
        let rss_reconnected = process::rss_kib(pid)?;
        Ok::<_, anyhow::Error>(Measured {
            connect_all,
            rss_connected,
            idle,
            idle_elapsed,
            cpu_idle,
            idle_disconnects,
            stopped_after,
            second_start,
            restart_to_all: reconnected_at - restart_began,
            listening_to_all: reconnected_at - listening_at,
            peak_rate: peak_rate(&reconnects),
            peak_attempt_rate: peak_rate(&attempts),
            attempts: attempts.len(),
            rss_reconnected,
        })
    }
    .await;
    cancel.cancel();
    let closing = async { while tasks.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(Duration::from_secs(10), closing).await;
    if let Some(endpoint) = endpoint {
        endpoint.stop(Duration::from_secs(10)).await;
    }
    let measured = outcome?;

    let failed_attempts = fleet.failed_attempts.load(Ordering::SeqCst);
    Ok(report(args, services, &Baseline { provisioning, first_start, rss_idle }, &measured, failed_attempts))
}

/// The endpoint's configuration for a fleet of `services` on `127.0.0.1:port`.
fn endpoint_config(args: &Args, services: usize, data_dir: &std::path::Path, port: u16) -> EndpointConfig {
    let mut config = EndpointConfig::new(data_dir);
    config.bind = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    config.keepalive.ping_interval_ms = args.keepalive * 1000;
    // Every simulated service connects from 127.0.0.1: in production each primary server has its own
    // address, so the per-address cap of connections waiting for CONNECT must not throttle them here (the
    // cap in all keeps its default, as in production).
    config.limits.max_pending_per_address = config.limits.max_pending_per_address.max(services);
    config.limits.max_connections = config.limits.max_connections.max(services + 1024);
    config
}

/// The figures taken before any service connects.
#[derive(Debug, Clone, Copy)]
struct Baseline {
    provisioning: Duration,
    first_start: Duration,
    rss_idle: u64,
}

/// The run's report: its parameters, table, figures and target.
fn report(
    args: &Args,
    services: usize,
    baseline: &Baseline,
    measured: &Measured,
    failed_attempts: usize,
) -> Report {
    let Baseline { provisioning, first_start, rss_idle } = *baseline;
    let per_connection = (measured.rss_connected.saturating_sub(rss_idle) as f64 * 1024.0) / services as f64;
    let cpu_percent = measured.cpu_idle.as_secs_f64() / measured.idle_elapsed.as_secs_f64() * 100.0;
    let connect_rate = services as f64 / measured.connect_all.as_secs_f64().max(f64::EPSILON);
    let average_reconnect_rate = services as f64 / measured.listening_to_all.as_secs_f64().max(f64::EPSILON);

    let mut report = Report::new("fleet");
    report.parameter("services", services);
    report.parameter("keepalive_s", args.keepalive);
    report.parameter("connect_concurrency", args.connect_concurrency);
    report.parameter("period_s", args.period);
    report.parameter("token_provisioning_s", format!("{:.2}", provisioning.as_secs_f64()));
    let mut table = Table::new(
        &format!("{services} simulated services (wss + CONNECT + keepalive) on one endpoint process"),
        &["figure", "value"],
    );
    let rows: Vec<(&str, String)> = vec![
        ("endpoint start-up (to /healthz)", format!("{:.0} ms", first_start.as_secs_f64() * 1000.0)),
        ("endpoint RSS, no connections", format!("{:.1} MiB", rss_idle as f64 / 1024.0)),
        ("endpoint RSS, all connected", format!("{:.1} MiB", measured.rss_connected as f64 / 1024.0)),
        ("RSS per connection", format!("{:.1} KiB", per_connection / 1024.0)),
        (
            "time to connect all",
            format!("{:.2} s ({} conn/s)", measured.connect_all.as_secs_f64(), grouped(connect_rate)),
        ),
        ("idle CPU (keepalive)", format!("{cpu_percent:.2} % of one CPU over {} s", measured.idle.as_secs())),
        ("disconnects while idle", measured.idle_disconnects.to_string()),
        ("endpoint stop (SIGTERM → exit)", format!("{:.2} s", measured.stopped_after.as_secs_f64())),
        ("new endpoint start-up", format!("{:.0} ms", measured.second_start.as_secs_f64() * 1000.0)),
        ("restart → all reconnected", format!("{:.2} s", measured.restart_to_all.as_secs_f64())),
        ("listening → all reconnected", format!("{:.2} s", measured.listening_to_all.as_secs_f64())),
        ("peak reconnection rate", format!("{} conn/s (in any 1 s)", grouped(measured.peak_rate))),
        ("average reconnection rate", format!("{} conn/s", grouped(average_reconnect_rate))),
        (
            "reconnection attempts, peak rate",
            format!(
                "{} attempts, peak {}/s (in any 1 s)",
                grouped(measured.attempts as f64),
                grouped(measured.peak_attempt_rate)
            ),
        ),
        ("endpoint RSS after reconnection", format!("{:.1} MiB", measured.rss_reconnected as f64 / 1024.0)),
        ("failed attempts (all phases)", failed_attempts.to_string()),
    ];
    for (name, value) in rows {
        table.row(vec![name.to_owned(), value]);
    }
    report.table(table);
    report.figure("services", services as f64);
    report.figure("endpoint_rss_idle_kib", rss_idle as f64);
    report.figure("endpoint_rss_connected_kib", measured.rss_connected as f64);
    report.figure("rss_per_connection_bytes", per_connection);
    report.figure("connect_all_seconds", measured.connect_all.as_secs_f64());
    report.figure("idle_cpu_percent", cpu_percent);
    report.figure("idle_disconnects", measured.idle_disconnects as f64);
    report.figure("endpoint_stop_seconds", measured.stopped_after.as_secs_f64());
    report.figure("restart_to_all_seconds", measured.restart_to_all.as_secs_f64());
    report.figure("listening_to_all_seconds", measured.listening_to_all.as_secs_f64());
    report.figure("peak_reconnect_rate", measured.peak_rate);
    report.figure("average_reconnect_rate", average_reconnect_rate);
    report.figure("peak_attempt_rate", measured.peak_attempt_rate);
    report.figure("reconnect_attempts", measured.attempts as f64);
    report.target(
        &format!("{services} connections on one endpoint"),
        "≤ 50 KB resident each",
        format!("{:.1} KB", per_connection / 1000.0),
        per_connection <= 50_000.0,
    );
    report.note("RSS per connection = (RSS with all connected − RSS before any) / connections, from /proc/PID/status VmRSS");
    report
}

/// The figures of the connected and restart phases.
#[derive(Debug)]
struct Measured {
    connect_all: Duration,
    rss_connected: u64,
    idle: Duration,
    idle_elapsed: Duration,
    cpu_idle: Duration,
    idle_disconnects: usize,
    stopped_after: Duration,
    second_start: Duration,
    restart_to_all: Duration,
    listening_to_all: Duration,
    peak_rate: f64,
    peak_attempt_rate: f64,
    attempts: usize,
    rss_reconnected: u64,
}

/// Waits until the endpoint answers `/healthz`; returns the time since the process was started.
async fn wait_listening(
    endpoint: &mut ChildProcess,
    data_dir: &std::path::Path,
    port: u16,
) -> anyhow::Result<Duration> {
    let started = endpoint.started;
    let url = format!("https://127.0.0.1:{port}/healthz");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut client = None;
    loop {
        if let Some(status) = endpoint.exited() {
            anyhow::bail!("the endpoint process exited ({status}); see its log in the scratch directory");
        }
        anyhow::ensure!(Instant::now() < deadline, "the endpoint did not answer /healthz within 30 s");
        if client.is_none() {
            if let Some(pem) = process::read_written_certificate(&data_dir.join(GENERATED_CERT_FILE)) {
                client = Some(process::https_client(&pem)?);
            }
        }
        if let Some(client) = &client {
            if client.get(&url).send().await.is_ok_and(|response| response.status().is_success()) {
                return Ok(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A TLS client configuration that trusts exactly the endpoint's generated certificate.
fn client_tls(data_dir: &std::path::Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject as _;
    let pem = std::fs::read(data_dir.join(GENERATED_CERT_FILE)).context("the endpoint's certificate")?;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(certificate.context("the endpoint's certificate")?)?;
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

/// One simulated service: connect, CONNECT, keep alive until the connection ends, back off, again.
async fn simulated_service(
    simulation: Simulation,
    index: usize,
    token: String,
    fleet: Arc<Fleet>,
    gate: Arc<tokio::sync::Semaphore>,
    cancel: CancellationToken,
) {
    // As the service's connection task counts: not reset by a success, back to 1 after a stable period.
    let mut failures: u32 = 0;
    while !cancel.is_cancelled() {
        // While the fleet first connects, a semaphore bounds the attempts in progress; it is closed after.
        let permit = gate.acquire().await.ok();
        fleet.attempts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Instant::now());
        let attempt = tokio::time::timeout(ATTEMPT_TIMEOUT, connect(&simulation, &token));
        let outcome = tokio::select! {
            () = cancel.cancelled() => return,
            outcome = attempt => outcome,
        };
        drop(permit);
        match outcome {
            Ok(Ok(socket)) => {
                fleet.connected.fetch_add(1, Ordering::SeqCst);
                fleet.connects.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Instant::now());
                let started = Instant::now();
                keep_alive(socket, simulation.keepalive, index, &cancel).await;
                fleet.connected.fetch_sub(1, Ordering::SeqCst);
                fleet.disconnects.fetch_add(1, Ordering::SeqCst);
                failures =
                    if started.elapsed() >= simulation.period { 1 } else { failures.saturating_add(1) };
            }
            Ok(Err(_)) | Err(_) => {
                fleet.failed_attempts.fetch_add(1, Ordering::SeqCst);
                failures = failures.saturating_add(1);
            }
        }
        let delay = nbwss_service::backoff(failures, simulation.period);
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the wss connection and completes the CONNECT handshake.
async fn connect(simulation: &Simulation, token: &str) -> anyhow::Result<Socket> {
    let connector = tokio_tungstenite::Connector::Rustls(simulation.tls.clone());
    let (mut socket, _) = tokio_tungstenite::connect_async_tls_with_config(
        simulation.url.as_str(),
        None,
        true,
        Some(connector),
    )
    .await?;
    let codec = Codec::default();
    let request = Message::new(Body::ConnectRequest(ConnectRequest { token: Secret::new(token.to_owned()) }));
    socket.send(WsMessage::text(codec.encode(&request))).await?;
    loop {
        match socket.next().await {
            Some(Ok(WsMessage::Text(text))) => {
                return match codec.decode(text.as_str())?.body {
                    Body::ConnectResponse(response) if response.valid => Ok(socket),
                    _ => anyhow::bail!("CONNECT refused"),
                };
            }
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
            Some(Ok(other)) => anyhow::bail!("unexpected message before CONNECT RESPONSE: {other:?}"),
            Some(Err(error)) => return Err(error.into()),
            None => anyhow::bail!("closed before CONNECT RESPONSE"),
        }
    }
}

/// Pings every `keepalive` (the fleet's first pings spread evenly over the interval by `index`), answers
/// pings (tungstenite queues the pong when it reads a ping), and returns when the connection ends or on
/// cancellation.
async fn keep_alive(mut socket: Socket, keepalive: Duration, index: usize, cancel: &CancellationToken) {
    let offset = keepalive.mul_f64((index % 1000) as f64 / 1000.0);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + offset, keepalive);
    loop {
        tokio::select! {
            () = cancel.cancelled() => {
                let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
                return;
            }
            _ = ticker.tick() => {
                if socket.send(WsMessage::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
            incoming = socket.next() => match incoming {
                None | Some(Err(_) | Ok(WsMessage::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// The highest number of connections completed within any one second (from 100 ms bins).
fn peak_rate(connects: &[Instant]) -> f64 {
    let Some(first) = connects.iter().min() else { return 0.0 };
    let mut bins: Vec<u64> = Vec::new();
    for at in connects {
        let bin =
            usize::try_from(at.duration_since(*first).as_millis() / BIN.as_millis()).unwrap_or(usize::MAX);
        if bin >= bins.len() {
            bins.resize(bin + 1, 0);
        }
        bins[bin] += 1;
    }
    let per_second = usize::try_from(Duration::from_secs(1).as_millis() / BIN.as_millis()).unwrap_or(10);
    let window = per_second.min(bins.len());
    bins.windows(window).map(|window| window.iter().sum::<u64>()).max().unwrap_or(0) as f64
}

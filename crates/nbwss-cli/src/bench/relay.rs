//! `nbwss bench relay`: C concurrent clients, each on its own keep-alive HTTPS connection, call the
//! emulator directly and then through the endpoint's app API (endpoint → wss → service → emulator), for
//! a small response (`GET /admin/jobs?page[limit]=10`) and a large one (a policy of about 1 MiB, created
//! through the emulator's own policy API).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;

use super::process::https_client;
use super::report::{Report, Table};
use super::stats::{grouped, ms, ms_f, ratio, Latencies};
use super::system::{Options, System, USER};
use super::Common;

/// The small call of the issue.
const SMALL_PATH: &str = "/admin/jobs?page%5Blimit%5D=10";
/// The policy whose body is about 1 MiB.
const LARGE_POLICY: &str = "bench-large-policy";
/// Size the large response is built to reach.
const LARGE_BYTES: usize = 1024 * 1024;
/// How long one load phase may take before the benchmark gives up.
const PHASE_DEADLINE: Duration = Duration::from_secs(100);

/// Arguments of `nbwss bench relay`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Concurrent clients, each with its own HTTP connection.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1024))]
    concurrency: u64,
    /// Timed requests of the small call, per path (direct and relayed each).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    requests: u64,
    /// Timed requests of the 1 MiB call, per path.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    large_requests: u64,
    /// Timed requests of the small call from one client alone (the unloaded cost of a call), per path.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    single_requests: u64,
    /// Untimed warm-up requests per client before each phase.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    #[command(flatten)]
    pub(crate) common: Common,
}

/// Where the clients send their calls.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) base: String,
    pub(crate) certificate_pem: String,
    pub(crate) headers: Vec<(&'static str, String)>,
}

/// What one phase measured.
#[derive(Debug)]
pub(crate) struct Phase {
    latencies: Latencies,
    elapsed: Duration,
    pub(crate) completed: usize,
    pub(crate) errors: usize,
    body_bytes: usize,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

pub(crate) async fn run(args: &Args) -> anyhow::Result<Report> {
    let scratch = args.common.scratch()?;
    let concurrency = usize::try_from(args.concurrency)?;
    let options =
        Options { max_in_flight: concurrency, properties: String::new(), service_credentials: false };
    let system = System::start(scratch.path(), &options).await?;
    let token = system.emulator.create_token(USER);
    create_large_policy(&system, &token).await?;

    let direct = Target {
        base: system.emulator.base_url(),
        certificate_pem: system.emulator.certificate_pem(),
        headers: vec![("Authorization", token.clone())],
    };
    let relayed = Target {
        base: system.relay_base(),
        certificate_pem: system.endpoint.certificate_pem().to_owned(),
        headers: vec![
            ("Authorization", token.clone()),
            (nbwss_endpoint::API_KEY_HEADER, system.api_key.clone()),
        ],
    };
    let large_path = format!("/config/policies/{LARGE_POLICY}");
    let warmup = usize::try_from(args.warmup)?;
    let requests = usize::try_from(args.requests)?;
    let large_requests = usize::try_from(args.large_requests)?;
    let single_requests = usize::try_from(args.single_requests)?;

    let single_direct = load(&direct, SMALL_PATH, 1, single_requests, warmup).await?;
    let single_relayed = load(&relayed, SMALL_PATH, 1, single_requests, warmup).await?;
    let small_direct = load(&direct, SMALL_PATH, concurrency, requests, warmup).await?;
    let small_relayed = load(&relayed, SMALL_PATH, concurrency, requests, warmup).await?;
    let large_direct = load(&direct, &large_path, concurrency, large_requests, warmup).await?;
    let large_relayed = load(&relayed, &large_path, concurrency, large_requests, warmup).await?;
    system.shutdown().await;

    let mut report = Report::new("relay");
    report.parameter("concurrency", concurrency);
    report.parameter("requests", requests);
    report.parameter("large_requests", large_requests);
    report.parameter("single_requests", single_requests);
    report.parameter("warmup_per_client", warmup);
    let cases = [
        ("small", "GET /admin/jobs?page[limit]=10", concurrency, &small_direct, &small_relayed),
        ("single", "GET /admin/jobs?page[limit]=10, unloaded", 1, &single_direct, &single_relayed),
        ("large", "GET /config/policies/{1 MiB policy}", concurrency, &large_direct, &large_relayed),
    ];
    for (key, title, clients, direct, relayed) in cases {
        let mut table = Table::new(
            &format!(
                "{title}: {} B response, {} timed requests per path, {clients} client(s)",
                grouped(direct.body_bytes as f64),
                grouped(direct.completed as f64)
            ),
            &["path", "req/s", "p50 ms", "p99 ms", "max ms", "errors"],
        );
        for (name, phase) in [("direct", direct), ("relayed", relayed)] {
            table.row(vec![
                name.to_owned(),
                grouped(phase.rate()),
                ms(phase.latencies.p50),
                ms(phase.latencies.p99),
                ms(phase.latencies.max),
                phase.errors.to_string(),
            ]);
            report.figure(&format!("{key}_{name}_rps"), phase.rate());
            report.figure(&format!("{key}_{name}_p50_ms"), ms_f(phase.latencies.p50));
            report.figure(&format!("{key}_{name}_p99_ms"), ms_f(phase.latencies.p99));
            report.figure(&format!("{key}_{name}_max_ms"), ms_f(phase.latencies.max));
            report.figure(&format!("{key}_{name}_errors"), phase.errors as f64);
        }
        let throughput_ratio = relayed.rate() / direct.rate().max(f64::EPSILON);
        let ratio_of = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(f64::EPSILON);
        table.row(vec![
            "relayed/direct".to_owned(),
            ratio(throughput_ratio),
            ratio(ratio_of(relayed.latencies.p50, direct.latencies.p50)),
            ratio(ratio_of(relayed.latencies.p99, direct.latencies.p99)),
            ratio(ratio_of(relayed.latencies.max, direct.latencies.max)),
            String::new(),
        ]);
        report.figure(&format!("{key}_throughput_ratio"), throughput_ratio);
        report
            .figure(&format!("{key}_p50_added_ms"), ms_f(relayed.latencies.p50) - ms_f(direct.latencies.p50));
        report.figure(&format!("{key}_response_bytes"), direct.body_bytes as f64);
        report.table(table);
        if direct.errors + relayed.errors > 0 {
            report.note(format!("{key}: {} calls failed", direct.errors + relayed.errors));
        }
    }
    let throughput_ratio = small_relayed.rate() / small_direct.rate().max(f64::EPSILON);
    report.target(
        "relayed throughput (small)",
        "≥ 0.5× direct",
        ratio(throughput_ratio),
        throughput_ratio >= 0.5,
    );
    for (what, direct, relayed) in [
        (format!("relayed p50 (small, {concurrency} clients)"), &small_direct, &small_relayed),
        ("relayed p50 (small, 1 client)".to_owned(), &single_direct, &single_relayed),
    ] {
        let added = ms_f(relayed.latencies.p50) - ms_f(direct.latencies.p50);
        report.target(&what, "≤ direct p50 + 0.5 ms", format!("{added:+.3} ms"), added <= 0.5);
    }
    report.note("clients, emulator, endpoint and service share this process and its CPUs");
    Ok(report)
}

/// Creates a policy with enough clients that its GET response is about 1 MiB, through the emulator's API.
async fn create_large_policy(system: &System, token: &str) -> anyhow::Result<()> {
    let client = https_client(&system.emulator.certificate_pem())?;
    let mut clients = Vec::new();
    let mut size = 0;
    while size < LARGE_BYTES {
        let index = clients.len();
        let entry = json!({
            "hostName": format!("bench-client-{index:06}.example.com"),
            "OS": "RedHat Linux 8",
            "hardware": "Linux",
        });
        size += entry.to_string().len() + 1;
        clients.push(entry);
    }
    let body = json!({"data": {"type": "policy", "id": LARGE_POLICY, "attributes": {"policy": {
        "policyName": LARGE_POLICY,
        "policyType": "Standard",
        "clients": clients,
    }}}});
    let response = client
        .post(format!("{}/config/policies", system.emulator.base_url()))
        .header("Authorization", token)
        .header("Content-Type", "application/vnd.netbackup+json;version=4.0")
        .body(body.to_string())
        .send()
        .await
        .context("creating the large policy")?;
    anyhow::ensure!(response.status().is_success(), "creating the large policy: {}", response.status());
    Ok(())
}

/// Runs `requests` calls of `path` from `concurrency` clients after `warmup` untimed calls each.
pub(crate) async fn load(
    target: &Target,
    path: &str,
    concurrency: usize,
    requests: usize,
    warmup: usize,
) -> anyhow::Result<Phase> {
    let url = format!("{}{path}", target.base);
    let barrier = Arc::new(tokio::sync::Barrier::new(concurrency + 1));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..concurrency {
        let share = requests / concurrency + usize::from(index < requests % concurrency);
        let client = https_client(&target.certificate_pem)?;
        let headers = target.headers.clone();
        let url = url.clone();
        let barrier = barrier.clone();
        tasks.spawn(async move {
            let call = || async {
                let mut request = client.get(&url);
                for (name, value) in &headers {
                    request = request.header(*name, value);
                }
                let started = Instant::now();
                let outcome = match request.send().await {
                    Ok(response) => {
                        let ok = response.status().is_success();
                        response.bytes().await.ok().filter(|_| ok).map(|body| body.len())
                    }
                    Err(_) => None,
                };
                (started.elapsed(), outcome)
            };
            for _ in 0..warmup {
                call().await;
            }
            barrier.wait().await;
            let mut latencies = Vec::with_capacity(share);
            let mut errors = 0;
            let mut body_bytes = 0;
            for _ in 0..share {
                let (latency, outcome) = call().await;
                latencies.push(latency);
                match outcome {
                    Some(bytes) => body_bytes = bytes,
                    None => errors += 1,
                }
            }
            (latencies, errors, body_bytes)
        });
    }
    let run = async {
        barrier.wait().await;
        let started = Instant::now();
        let mut all = Vec::with_capacity(requests);
        let mut errors = 0;
        let mut body_bytes = 0;
        while let Some(joined) = tasks.join_next().await {
            let (latencies, failed, bytes) = joined.context("a client task failed")?;
            all.extend(latencies);
            errors += failed;
            body_bytes = body_bytes.max(bytes);
        }
        let elapsed = started.elapsed();
        Ok::<_, anyhow::Error>(Phase {
            completed: all.len(),
            latencies: Latencies::of(&mut all),
            elapsed,
            errors,
            body_bytes,
        })
    };
    tokio::time::timeout(PHASE_DEADLINE, run)
        .await
        .with_context(|| format!("{url}: the phase did not finish within {} s", PHASE_DEADLINE.as_secs()))?
}

//! `nbwss bench relay`: C concurrent clients, each on its own keep-alive HTTPS connection, call the
//! emulator three ways: directly, through a byte tunnel with the relay's hops (the baseline, see
//! [`super::tunnel`]) and through the endpoint's app API (endpoint → wss → service → emulator), for a
//! single job by id (about 1 KB), a page of jobs (`GET /admin/jobs?page[limit]=10`, about 21 KB) and a
//! policy of about 1 MiB (created through the emulator's own policy API).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;

use super::process::https_client;
use super::report::{Report, Table};
use super::stats::{grouped, ms, ms_f, ratio, Latencies};
use super::system::{Options, System, USER};
use super::tunnel::Tunnel;
use super::Common;

/// A single job by id (about 1 KB): the small call a dashboard or an automation makes most.
pub(crate) const JOB_PATH: &str = "/admin/jobs/1";
/// A page of jobs (about 21 KB).
pub(crate) const SMALL_PATH: &str = "/admin/jobs?page%5Blimit%5D=10";
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
    /// Concurrent clients of the job-by-id call.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    job_concurrency: u64,
    /// Timed requests of the job-by-id call from --job-concurrency clients, per path.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    job_requests: u64,
    /// Timed requests of the 1 MiB call, per path.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    large_requests: u64,
    /// Timed requests of the job-by-id call and of the page from one client alone (the unloaded cost of a
    /// call), per path.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    single_requests: u64,
    /// Untimed warm-up requests per client before each phase.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Also measure the endpoint's cluster mode on this NATS JetStream (nats://HOST:PORT): a call through a
    /// replica that does not hold the session against one through the holder.
    #[arg(long, value_name = "URL")]
    cluster: Option<String>,
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
    pub(crate) latencies: Latencies,
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
    let job_concurrency = usize::try_from(args.job_concurrency)?;
    let options = Options {
        max_in_flight: concurrency.max(job_concurrency),
        properties: String::new(),
        service_credentials: false,
    };
    let system = System::start(scratch.path(), &options).await?;
    let token = system.emulator.create_token(USER);
    create_large_policy(&system, &token).await?;
    let targets = Targets::of(&system, &token).await?;

    let large_path = format!("/config/policies/{LARGE_POLICY}");
    let warmup = usize::try_from(args.warmup)?;
    let requests = usize::try_from(args.requests)?;
    let job_requests = usize::try_from(args.job_requests)?;
    let large_requests = usize::try_from(args.large_requests)?;
    let single_requests = usize::try_from(args.single_requests)?;

    let cases = [
        Case {
            key: "job_single",
            title: "GET /admin/jobs/{id}, unloaded",
            path: JOB_PATH,
            clients: 1,
            requests: single_requests,
        },
        Case {
            key: "job",
            title: "GET /admin/jobs/{id}",
            path: JOB_PATH,
            clients: job_concurrency,
            requests: job_requests,
        },
        Case {
            key: "single",
            title: "GET /admin/jobs?page[limit]=10, unloaded",
            path: SMALL_PATH,
            clients: 1,
            requests: single_requests,
        },
        Case {
            key: "small",
            title: "GET /admin/jobs?page[limit]=10",
            path: SMALL_PATH,
            clients: concurrency,
            requests,
        },
        Case {
            key: "large",
            title: "GET /config/policies/{1 MiB policy}",
            path: &large_path,
            clients: concurrency,
            requests: large_requests,
        },
    ];
    let mut measured = Vec::new();
    for case in &cases {
        let mut phases = Vec::new();
        for target in [&targets.direct, &targets.tunnel, &targets.relayed] {
            phases.push(load(target, case.path, case.clients, case.requests, warmup).await?);
        }
        measured.push(phases);
    }
    targets.tunnel_handle.shutdown();
    system.shutdown().await;

    let mut report = Report::new("relay");
    report.parameter("concurrency", concurrency);
    report.parameter("job_concurrency", job_concurrency);
    report.parameter("requests", requests);
    report.parameter("job_requests", job_requests);
    report.parameter("large_requests", large_requests);
    report.parameter("single_requests", single_requests);
    report.parameter("warmup_per_client", warmup);
    for (case, phases) in cases.iter().zip(&measured) {
        let [direct, tunnel, relayed] = [&phases[0], &phases[1], &phases[2]];
        report_case(&mut report, case, direct, tunnel, relayed);
    }
    let figure = |key: &str, path: &str| {
        let phases = &measured[cases.iter().position(|case| case.key == key).unwrap_or(0)];
        let phase = match path {
            "direct" => &phases[0],
            "tunnel" => &phases[1],
            _ => &phases[2],
        };
        (phase.rate(), ms_f(phase.latencies.p50))
    };
    let job_ratio = figure("job", "relayed").0 / figure("job", "direct").0.max(f64::EPSILON);
    let job_tunnel_ratio = figure("job", "tunnel").0 / figure("job", "direct").0.max(f64::EPSILON);
    report.target(
        &format!("relayed throughput (job by id, {job_concurrency} clients)"),
        "≥ 0.75× direct",
        ratio(job_ratio),
        job_ratio >= 0.75,
    );
    report.target(
        &format!("relayed throughput (job by id, {job_concurrency} clients)"),
        "≥ tunnel ratio − 0.1",
        format!("{} (tunnel {})", ratio(job_ratio), ratio(job_tunnel_ratio)),
        job_ratio >= job_tunnel_ratio - 0.1,
    );
    let added = figure("job_single", "relayed").1 - figure("job_single", "direct").1;
    report.target(
        "relayed p50 (job by id, 1 client)",
        "≤ direct p50 + 0.25 ms",
        format!("{added:+.3} ms"),
        added <= 0.25,
    );
    for (key, what) in [("small", "21 KB page"), ("large", "1 MiB policy")] {
        let throughput = figure(key, "relayed").0 / figure(key, "direct").0.max(f64::EPSILON);
        report.target(
            &format!("relayed throughput ({what}, {concurrency} clients)"),
            "≥ 0.8× direct",
            ratio(throughput),
            throughput >= 0.8,
        );
    }
    report.note("clients, emulator, endpoint, service and tunnel share this process and its CPUs");
    report.note(
        "tunnel: TCP → one TLS WebSocket per connection → TCP, the client's TLS end to end, no parsing",
    );
    if let Some(nats_url) = &args.cluster {
        super::cluster::phase(
            nats_url,
            &scratch.path().join("cluster"),
            single_requests,
            warmup,
            &mut report,
        )
        .await?;
    }
    Ok(report)
}

/// One call measured on every path.
struct Case<'a> {
    key: &'static str,
    title: &'static str,
    path: &'a str,
    clients: usize,
    requests: usize,
}

/// The three ways to the emulator, and the tunnel that makes one of them.
pub(crate) struct Targets {
    pub(crate) direct: Target,
    pub(crate) tunnel: Target,
    pub(crate) relayed: Target,
    pub(crate) tunnel_handle: Tunnel,
}

impl Targets {
    pub(crate) async fn of(system: &System, token: &str) -> anyhow::Result<Self> {
        let direct = Target {
            base: system.emulator.base_url(),
            certificate_pem: system.emulator.certificate_pem(),
            headers: vec![("Authorization", token.to_owned())],
        };
        let mut url = url::Url::parse(&direct.base).context("the emulator's URL")?;
        let upstream = url
            .socket_addrs(|| None)
            .context("the emulator's address")?
            .into_iter()
            .next()
            .context("the emulator has no address")?;
        let tunnel_handle = Tunnel::start(upstream).await?;
        url.set_port(Some(tunnel_handle.entry.port()))
            .map_err(|()| anyhow::anyhow!("cannot set the tunnel's port"))?;
        let tunnel = Target { base: url.as_str().trim_end_matches('/').to_owned(), ..direct.clone() };
        let relayed = Target {
            base: system.relay_base(),
            certificate_pem: system.endpoint.certificate_pem().to_owned(),
            headers: vec![
                ("Authorization", token.to_owned()),
                (nbwss_endpoint::API_KEY_HEADER, system.api_key.clone()),
            ],
        };
        Ok(Self { direct, tunnel, relayed, tunnel_handle })
    }
}

/// The case's table (direct, tunnel, relayed and their ratios to direct) and figures.
fn report_case(report: &mut Report, case: &Case<'_>, direct: &Phase, tunnel: &Phase, relayed: &Phase) {
    let key = case.key;
    let mut table = Table::new(
        &format!(
            "{}: {} B response, {} timed requests per path, {} client(s)",
            case.title,
            grouped(direct.body_bytes as f64),
            grouped(direct.completed as f64),
            case.clients
        ),
        &["path", "req/s", "p50 ms", "p99 ms", "max ms", "errors"],
    );
    for (name, phase) in [("direct", direct), ("tunnel", tunnel), ("relayed", relayed)] {
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
    let ratio_of = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(f64::EPSILON);
    for (name, phase, figure) in [
        ("tunnel/direct", tunnel, "tunnel_throughput_ratio"),
        ("relayed/direct", relayed, "throughput_ratio"),
    ] {
        let throughput_ratio = phase.rate() / direct.rate().max(f64::EPSILON);
        table.row(vec![
            name.to_owned(),
            ratio(throughput_ratio),
            ratio(ratio_of(phase.latencies.p50, direct.latencies.p50)),
            ratio(ratio_of(phase.latencies.p99, direct.latencies.p99)),
            ratio(ratio_of(phase.latencies.max, direct.latencies.max)),
            String::new(),
        ]);
        report.figure(&format!("{key}_{figure}"), throughput_ratio);
    }
    report.figure(&format!("{key}_p50_added_ms"), ms_f(relayed.latencies.p50) - ms_f(direct.latencies.p50));
    report.figure(
        &format!("{key}_tunnel_p50_added_ms"),
        ms_f(tunnel.latencies.p50) - ms_f(direct.latencies.p50),
    );
    report.figure(&format!("{key}_response_bytes"), direct.body_bytes as f64);
    report.table(table);
    let errors = direct.errors + tunnel.errors + relayed.errors;
    if errors > 0 {
        report.note(format!("{key}: {errors} calls failed"));
    }
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

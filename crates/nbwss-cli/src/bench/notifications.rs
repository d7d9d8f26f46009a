//! `nbwss bench notifications`: N JOB records enqueued through the service's local ingest (the admin
//! API's `POST /nbwss/notifications`, what `nbwss notify` feeds), delivered over wss and stored by the
//! endpoint; both stores are SQLite in WAL mode with `synchronous=FULL`. Measured: records per second
//! from the first ingest call to the last commit at the endpoint, and each record's latency from the
//! start of its ingest call to the endpoint's commit (its `received_at`).
//!
//! Two modes. Throughput (the default): ingest runs as fast as the admin API takes it, in calls of `--chunk`
//! records, so the latency includes the wait in the outbox behind earlier records; a second phase does the
//! same with one record per message. Offered load (`--rate R`): one phase whose ingest is paced at R records
//! per second in small calls (at most 100 calls a second, never ahead of the schedule, never a burst to
//! catch up), so that below saturation the latency is the pipeline's own: ingest, outbox commit, send,
//! the endpoint's commit.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use nbwss_endpoint::FeedQuery;

use super::process::{https_client, wait_for};
use super::report::{Report, Table};
use super::stats::{grouped, ms, ms_f, Latencies};
use super::system::{Options, System, PRIMARY};
use super::Common;

/// How long one phase may take, beside the time its offered load needs and a second per 5,000 records.
const PHASE_DEADLINE: Duration = Duration::from_secs(110);
/// Offered-load mode sends at most this many ingest calls a second (each carries rate / this, rounded up).
const PACED_CALLS_PER_SECOND: u64 = 100;
/// The job id of the warm-up record (not counted).
const WARM_UP_JOB_ID: usize = 999_999_999;
/// Records read back from the endpoint's store per query.
const FEED_PAGE: usize = 10_000;

/// Arguments of `nbwss bench notifications`.
///
/// Throughput: `nbwss bench notifications --records 200000`. Latency below saturation (offered load):
/// `nbwss bench notifications --batch-size 1 --rate 100 --records 3000` (30 s at 100 records/s).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    nbwss bench notifications --records 200000              # throughput, then 1,000 records at batchSize 1\n  \
    nbwss bench notifications --batch-size 1 --rate 100 --records 3000   # latency at 100 records/s offered")]
pub(crate) struct Args {
    /// Records of the measured phase.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..))]
    records: u64,
    /// notification.batchSize of the measured phase: records per NOTIFICATION message.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    batch_size: u64,
    /// Offered load in records per second: ingest is paced at this rate in small calls (rate / 100 records,
    /// rounded up, every 1/100 s at most), so the latency is measured below saturation. Runs only the
    /// measured phase. Without it, ingest runs as fast as the admin API takes it, in calls of --chunk.
    #[arg(long, value_name = "RECORDS_PER_S", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    rate: Option<u64>,
    /// Throughput mode: records of the second phase, with one record per message (notification.batchSize=1);
    /// 0 skips it.
    #[arg(long, default_value_t = 1_000)]
    batch_one_records: u64,
    /// Throughput mode: records per ingest call.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    chunk: u64,
    #[command(flatten)]
    pub(crate) common: Common,
}

/// How a phase feeds the ingest API.
#[derive(Debug, Clone, Copy)]
enum Pacing {
    /// As fast as the admin API takes it, `chunk` records per call.
    Burst { chunk: usize },
    /// `rate` records per second, `chunk` per call, each call at its time on the schedule (a late call is
    /// sent at once, after the one before it).
    Offered { rate: u64, chunk: usize },
}

impl Pacing {
    fn chunk(self) -> usize {
        match self {
            Self::Burst { chunk } | Self::Offered { chunk, .. } => chunk,
        }
    }

    /// When the call carrying record `index` (0-based) is due, from the start of ingest.
    fn due(self, index: usize) -> Option<Duration> {
        match self {
            Self::Burst { .. } => None,
            Self::Offered { rate, .. } => Some(Duration::from_secs_f64(index as f64 / rate as f64)),
        }
    }

    /// How long a phase of `records` records may take.
    fn deadline(self, records: usize) -> Duration {
        let offered = self.due(records).unwrap_or_default();
        PHASE_DEADLINE + offered + Duration::from_secs(records as u64 / 5_000)
    }
}

/// What one phase measured.
#[derive(Debug)]
struct Phase {
    batch_size: usize,
    records: usize,
    pacing: Pacing,
    ingest: Duration,
    end_to_end: Duration,
    latencies: Latencies,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.records as f64 / self.end_to_end.as_secs_f64().max(f64::EPSILON)
    }

    /// The records per second ingest achieved (the offered load, when paced).
    fn ingest_rate(&self) -> f64 {
        self.records as f64 / self.ingest.as_secs_f64().max(f64::EPSILON)
    }
}

pub(crate) async fn run(args: &Args) -> anyhow::Result<Report> {
    let scratch = args.common.scratch()?;
    let chunk = usize::try_from(args.chunk)?;
    let batch_size = usize::try_from(args.batch_size)?;
    let records = usize::try_from(args.records)?;
    let fsync_before = super::process::fsync_latency(scratch.path())?;
    let mut phases = Vec::new();
    match args.rate {
        Some(rate) => {
            let pacing =
                Pacing::Offered { rate, chunk: usize::try_from(rate.div_ceil(PACED_CALLS_PER_SECOND))? };
            phases.push((
                "offered",
                phase(&scratch.path().join("offered"), records, batch_size, pacing).await?,
            ));
        }
        None => {
            let pacing = Pacing::Burst { chunk };
            phases.push((
                "batched",
                phase(&scratch.path().join("batched"), records, batch_size, pacing).await?,
            ));
            let single = usize::try_from(args.batch_one_records)?;
            if single > 0 {
                phases.push(("single", phase(&scratch.path().join("single"), single, 1, pacing).await?));
            }
        }
    }

    let mut report = Report::new("notifications");
    report.parameter("records", args.records);
    report.parameter("batch_size", args.batch_size);
    match args.rate {
        Some(rate) => {
            report.parameter("offered_records_per_second", rate);
            report.parameter("records_per_ingest_call", rate.div_ceil(PACED_CALLS_PER_SECOND));
        }
        None => {
            report.parameter("batch_one_records", args.batch_one_records);
            report.parameter("records_per_ingest_call", chunk);
        }
    }
    let fsync_after = super::process::fsync_latency(scratch.path())?;
    report.parameter("storage", super::process::filesystem_of(scratch.path()));
    report.parameter(
        "fsync_ms_before_after",
        format!("{:.2}/{:.2}", fsync_before.as_secs_f64() * 1000.0, fsync_after.as_secs_f64() * 1000.0),
    );
    report.figure("fsync_ms_before", fsync_before.as_secs_f64() * 1000.0);
    report.figure("fsync_ms_after", fsync_after.as_secs_f64() * 1000.0);
    let mut table = Table::new(
        "JOB records: local ingest → outbox → wss → endpoint store (synchronous=FULL on both sides)",
        &[
            "batchSize",
            "records",
            "offered/s",
            "ingest s",
            "end to end s",
            "records/s",
            "p50 ms",
            "p99 ms",
            "max ms",
        ],
    );
    for (key, phase) in &phases {
        let offered = match phase.pacing {
            Pacing::Burst { .. } => "as fast as taken".to_owned(),
            Pacing::Offered { rate, .. } => grouped(rate as f64),
        };
        table.row(vec![
            phase.batch_size.to_string(),
            grouped(phase.records as f64),
            offered,
            format!("{:.2}", phase.ingest.as_secs_f64()),
            format!("{:.2}", phase.end_to_end.as_secs_f64()),
            grouped(phase.rate()),
            ms(phase.latencies.p50),
            ms(phase.latencies.p99),
            ms(phase.latencies.max),
        ]);
        report.figure(&format!("{key}_records"), phase.records as f64);
        report.figure(&format!("{key}_records_per_second"), phase.rate());
        report.figure(&format!("{key}_ingest_seconds"), phase.ingest.as_secs_f64());
        report.figure(&format!("{key}_ingest_records_per_second"), phase.ingest_rate());
        report.figure(&format!("{key}_p50_ms"), ms_f(phase.latencies.p50));
        report.figure(&format!("{key}_p99_ms"), ms_f(phase.latencies.p99));
        report.figure(&format!("{key}_max_ms"), ms_f(phase.latencies.max));
    }
    report.table(table);
    let (_, measured) = &phases[0];
    match args.rate {
        Some(rate) => {
            report.target(
                &format!("p50 ms at {} records/s offered, batchSize {batch_size}", grouped(rate as f64)),
                "≤ 20 (batchSize 1 at 100 records/s)",
                ms(measured.latencies.p50),
                ms_f(measured.latencies.p50) <= 20.0,
            );
            report.note("latency runs from the start of a record's ingest call to the endpoint's commit; ingest is paced at the offered rate, so below saturation no record waits behind a backlog");
        }
        None => {
            if let Some((_, single)) = phases.get(1) {
                report.figure("batched_over_single", measured.rate() / single.rate().max(f64::EPSILON));
            }
            report.target(
                "records/s end to end, durable",
                "≥ 40,000",
                grouped(measured.rate()),
                measured.rate() >= 40_000.0,
            );
            report.note("latency runs from the start of a record's ingest call to the endpoint's commit; ingest is as fast as the admin API takes it, so it includes the time a record waits in the outbox behind earlier ones");
        }
    }
    Ok(report)
}

/// Starts a fresh system with `notification.batchSize={batch_size}`, ingests `records` records as `pacing`
/// says, and waits until the endpoint has stored them all.
async fn phase(dir: &Path, records: usize, batch_size: usize, pacing: Pacing) -> anyhow::Result<Phase> {
    let options = Options {
        max_in_flight: 64,
        properties: format!("notification.batchSize={batch_size}\n"),
        service_credentials: false,
    };
    let system = System::start(dir, &options).await?;
    let deadline = pacing.deadline(records);
    let measured = tokio::time::timeout(deadline, measure(&system, records, batch_size, pacing)).await;
    system.shutdown().await;
    measured.with_context(|| {
        format!("batchSize={batch_size}: not all {records} records arrived within {} s", deadline.as_secs())
    })?
}

async fn measure(
    system: &System,
    records: usize,
    batch_size: usize,
    pacing: Pacing,
) -> anyhow::Result<Phase> {
    let client = https_client(system.service.admin_certificate_pem())?;
    let url = format!("{}{}", system.service.admin_url(), nbwss_service::notify::INGEST_PATH);
    let key = system.service.admin_key().to_owned();
    let store = system.endpoint.store();
    let deadline = pacing.deadline(records);
    let chunk = pacing.chunk();
    // The store is new: cursors count the records stored (MAX(cursor) is cheap, COUNT(*) is not).
    let stored = || -> i64 { store.last_cursor().unwrap_or(0) };

    // One warm-up record, so that delivery to the connected group is running before the clock starts.
    let warm_up = job_records(WARM_UP_JOB_ID - 1, WARM_UP_JOB_ID);
    let response = client.post(&url).header("x-nbwss-admin-key", &key).body(warm_up).send().await?;
    anyhow::ensure!(response.status().as_u16() == 201, "warm-up ingest answered {}", response.status());
    wait_for("the warm-up record", deadline, Duration::from_millis(5), || {
        let done = stored() >= 1;
        async move { done.then_some(()) }
    })
    .await?;
    let after_warm_up = store.last_cursor()?;

    let start_time = unix_now_ms();
    let mut chunk_started_ms = Vec::with_capacity(records.div_ceil(chunk));
    let ingest_started = Instant::now();
    let mut next = 0;
    while next < records {
        let end = (next + chunk).min(records);
        let body = job_records(next, end);
        if let Some(due) = pacing.due(next) {
            tokio::time::sleep_until((ingest_started + due).into()).await;
        }
        chunk_started_ms.push(unix_now_ms());
        loop {
            let response = client
                .post(&url)
                .header("x-nbwss-admin-key", &key)
                .body(body.clone())
                .send()
                .await
                .context("ingest call")?;
            match response.status().as_u16() {
                201 => break,
                // The outbox is full (outbox.maxRecords): wait for acknowledgements.
                503 => tokio::time::sleep(Duration::from_millis(50)).await,
                status => anyhow::bail!("ingest call answered {status}: {}", response.text().await?),
            }
        }
        next = end;
    }
    let ingest = ingest_started.elapsed();

    let expected = i64::try_from(records)? + 1;
    wait_for("the endpoint to store every record", deadline, Duration::from_millis(20), || {
        let done = stored() >= expected;
        async move { done.then_some(()) }
    })
    .await?;

    let mut latencies = Vec::with_capacity(records);
    let mut last_received_ms = start_time;
    let mut seen: HashSet<i64> = HashSet::with_capacity(records);
    let mut after = after_warm_up;
    loop {
        let query = FeedQuery { after, limit: FEED_PAGE, primary: Some(PRIMARY.to_owned()), object: None };
        let page = store.notifications(&query)?;
        let Some(last) = page.last() else { break };
        after = last.cursor;
        for notification in &page {
            let job_id = notification.record["jobId"].as_i64().context("stored record without jobId")?;
            let index = usize::try_from(job_id - 1).context("unexpected jobId")?;
            let ingested_ms = *chunk_started_ms.get(index / chunk).context("unexpected jobId")?;
            let received_ms = chrono::DateTime::parse_from_rfc3339(&notification.received_at)
                .context("received_at")?
                .timestamp_millis();
            last_received_ms = last_received_ms.max(received_ms);
            seen.insert(job_id);
            latencies.push(Duration::from_millis(u64::try_from(received_ms - ingested_ms).unwrap_or(0)));
        }
    }
    anyhow::ensure!(seen.len() == records, "{} distinct records stored, {records} expected", seen.len());
    let end_to_end = Duration::from_millis(u64::try_from(last_received_ms - start_time).unwrap_or(0).max(1));
    Ok(Phase { batch_size, records, pacing, ingest, end_to_end, latencies: Latencies::of(&mut latencies) })
}

/// JOB records `first+1 ..= end` as a JSON array, in the shape `nbwss notify --file` takes.
fn job_records(first: usize, end: usize) -> String {
    let mut body = String::with_capacity((end - first) * 220 + 2);
    body.push('[');
    for index in first..end {
        if index > first {
            body.push(',');
        }
        let job_id = index + 1;
        body.push_str(&format!(
            r#"{{"scheduleType":"ST_FULL","clientName":"bench-client-{client}","status":0,"startTime":1700000000,"state":"DONE","policyName":"bench-policy","parentJobId":{job_id},"jobId":{job_id},"policyType":"STANDARD","jobType":"BACKUP"}}"#,
            client = job_id % 1000
        ));
    }
    body.push(']');
    body
}

fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
}

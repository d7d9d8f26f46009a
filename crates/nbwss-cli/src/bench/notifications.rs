//! `nbwss bench notifications`: N JOB records enqueued through the service's local ingest (the admin
//! API's `POST /nbwss/notifications`, what `nbwss notify` feeds), delivered over wss and stored by the
//! endpoint; both stores are SQLite in WAL mode with `synchronous=FULL`. Measured: records per second
//! from the first ingest call to the last commit at the endpoint, and each record's latency from the
//! start of its ingest call to the endpoint's commit (its `received_at`).

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

/// How long one phase may take.
const PHASE_DEADLINE: Duration = Duration::from_secs(110);
/// The job id of the warm-up record (not counted).
const WARM_UP_JOB_ID: usize = 999_999_999;
/// Records read back from the endpoint's store per query.
const FEED_PAGE: usize = 10_000;

/// Arguments of `nbwss bench notifications`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Records with the default batching (notification.batchSize=100).
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..))]
    records: u64,
    /// Records with one record per message (notification.batchSize=1).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    batch_one_records: u64,
    /// Records per ingest call.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    chunk: u64,
    #[command(flatten)]
    pub(crate) common: Common,
}

/// What one phase measured.
#[derive(Debug)]
struct Phase {
    batch_size: usize,
    records: usize,
    ingest: Duration,
    end_to_end: Duration,
    latencies: Latencies,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.records as f64 / self.end_to_end.as_secs_f64().max(f64::EPSILON)
    }
}

pub(crate) async fn run(args: &Args) -> anyhow::Result<Report> {
    let scratch = args.common.scratch()?;
    let chunk = usize::try_from(args.chunk)?;
    let fsync_before = super::process::fsync_latency(scratch.path())?;
    let batched = phase(&scratch.path().join("batched"), usize::try_from(args.records)?, 100, chunk).await?;
    let single =
        phase(&scratch.path().join("single"), usize::try_from(args.batch_one_records)?, 1, chunk).await?;

    let mut report = Report::new("notifications");
    report.parameter("records", args.records);
    report.parameter("batch_one_records", args.batch_one_records);
    report.parameter("records_per_ingest_call", chunk);
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
        &["batchSize", "records", "ingest s", "end to end s", "records/s", "p50 ms", "p99 ms", "max ms"],
    );
    for (key, phase) in [("batched", &batched), ("single", &single)] {
        table.row(vec![
            phase.batch_size.to_string(),
            grouped(phase.records as f64),
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
        report.figure(&format!("{key}_p50_ms"), ms_f(phase.latencies.p50));
        report.figure(&format!("{key}_p99_ms"), ms_f(phase.latencies.p99));
        report.figure(&format!("{key}_max_ms"), ms_f(phase.latencies.max));
    }
    report.table(table);
    report.figure("batched_over_single", batched.rate() / single.rate().max(f64::EPSILON));
    report.target(
        "records/s end to end, durable",
        "≥ 20,000",
        grouped(batched.rate()),
        batched.rate() >= 20_000.0,
    );
    report.note("latency runs from the start of a record's ingest call to the endpoint's commit; ingest is as fast as the admin API takes it, so it includes the time a record waits in the outbox behind earlier ones");
    Ok(report)
}

/// Starts a fresh system with `notification.batchSize={batch_size}`, ingests `records` records in calls
/// of `chunk`, and waits until the endpoint has stored them all.
async fn phase(dir: &Path, records: usize, batch_size: usize, chunk: usize) -> anyhow::Result<Phase> {
    let options = Options {
        max_in_flight: 64,
        properties: format!("notification.batchSize={batch_size}\n"),
        service_credentials: false,
    };
    let system = System::start(dir, &options).await?;
    let measured = tokio::time::timeout(PHASE_DEADLINE, measure(&system, records, batch_size, chunk)).await;
    system.shutdown().await;
    measured.with_context(|| {
        format!(
            "batchSize={batch_size}: not all {records} records arrived within {} s",
            PHASE_DEADLINE.as_secs()
        )
    })?
}

async fn measure(system: &System, records: usize, batch_size: usize, chunk: usize) -> anyhow::Result<Phase> {
    let client = https_client(system.service.admin_certificate_pem())?;
    let url = format!("{}{}", system.service.admin_url(), nbwss_service::notify::INGEST_PATH);
    let key = system.service.admin_key().to_owned();
    let store = system.endpoint.store();
    // The store is new: cursors count the records stored (MAX(cursor) is cheap, COUNT(*) is not).
    let stored = || -> i64 { store.last_cursor().unwrap_or(0) };

    // One warm-up record, so that delivery to the connected group is running before the clock starts.
    let warm_up = job_records(WARM_UP_JOB_ID - 1, WARM_UP_JOB_ID);
    let response = client.post(&url).header("x-nbwss-admin-key", &key).body(warm_up).send().await?;
    anyhow::ensure!(response.status().as_u16() == 201, "warm-up ingest answered {}", response.status());
    wait_for("the warm-up record", PHASE_DEADLINE, Duration::from_millis(5), || {
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
    wait_for("the endpoint to store every record", PHASE_DEADLINE, Duration::from_millis(20), || {
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
    Ok(Phase { batch_size, records, ingest, end_to_end, latencies: Latencies::of(&mut latencies) })
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

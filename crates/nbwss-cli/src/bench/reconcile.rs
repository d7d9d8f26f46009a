//! `nbwss bench reconcile`: the service (`nbwss service run`, a process of its own) reconciling a large
//! emulated image catalog: its resident memory throughout (sampled, and the kernel's high-water mark) and
//! the time each reconciliation takes. The first reconciliation is the baseline (every image remembered,
//! none reported); the second compares every image with what the outbox remembers.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use nbwss_emulator::{Emulator, EmulatorConfig};
use nbwss_endpoint::{Endpoint, EndpointConfig};

use super::footprint::Primary;
use super::process;
use super::report::{Report, Table};
use super::stats::grouped;
use super::Common;

/// How long one reconciliation may take before the benchmark gives up.
const RECONCILE_DEADLINE: Duration = Duration::from_secs(900);
/// Resident memory is read this often.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// The metric the service counts completed reconciliations in.
const RECONCILIATIONS: &str = "reconciliations_total";
/// The metric with the duration of the last one.
const RECONCILIATION_SECONDS: &str = "reconciliation_seconds";

/// Arguments of `nbwss bench reconcile`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Images added to the emulator's catalog (besides its seed data).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    images: u64,
    #[command(flatten)]
    pub(crate) common: Common,
}

pub(crate) async fn run(args: &Args) -> anyhow::Result<Report> {
    let scratch = args.common.scratch()?;
    let dir = scratch.path();
    let emulator = Emulator::start(EmulatorConfig {
        users: vec![("admin".to_owned(), "password".to_owned())],
        ..EmulatorConfig::for_tests()
    })
    .await
    .context("starting the emulator")?;
    let images = emulator.add_catalog_images(usize::try_from(args.images)?)?;
    let emulator_cert = dir.join("emulator-cert.pem");
    std::fs::write(&emulator_cert, emulator.certificate_pem())?;
    let emulator_url = emulator.base_url();
    let endpoint = Endpoint::start(EndpointConfig::new(dir.join("endpoint"))).await?;
    // Reconcile again one second after the last one ended; jobs are polled every 200 ms.
    let primary = Primary {
        dir,
        emulator_url: &emulator_url,
        emulator_cert: &emulator_cert,
        endpoint: &endpoint,
        extra_config:
            "\n[properties]\n\"notification.reconcileInterval\" = 1\n\"notification.pollInterval\" = 200\n",
    };
    let started = primary
        .start_service("service", "nbwss service run", &std::env::current_exe()?, &["service", "run"])
        .await?;
    let pid = started.child.pid();
    let idle_rss = process::rss_kib(pid)?;

    let mut phases = Vec::new();
    let mut peak = idle_rss;
    for number in 1..=2u64 {
        let begun = Instant::now();
        let mut phase_peak = 0;
        let seconds = loop {
            anyhow::ensure!(
                begun.elapsed() < RECONCILE_DEADLINE,
                "reconciliation {number} did not end within {} s",
                RECONCILE_DEADLINE.as_secs()
            );
            phase_peak = phase_peak.max(process::rss_kib(pid)?);
            let metrics = started.admin.metrics().await.context("reading the service's metrics")?;
            if metric(&metrics, RECONCILIATIONS).unwrap_or(0.0) >= number as f64 {
                break metric(&metrics, RECONCILIATION_SECONDS).unwrap_or(0.0);
            }
            tokio::time::sleep(SAMPLE_EVERY).await;
        };
        peak = peak.max(phase_peak);
        phases.push((number, seconds, phase_peak));
    }
    let high_water = high_water_kib(pid).unwrap_or(peak);
    started.child.stop(Duration::from_secs(10)).await;
    endpoint.shutdown().await;
    emulator.shutdown().await;

    let mut report = Report::new("reconcile");
    report.parameter("images", images);
    report.parameter("page_size", 100);
    report.parameter("page_pause_ms", nbwss_service::notify::RECONCILE_PAGE_PAUSE.as_millis());
    let mut table = Table::new(
        &format!(
            "nbwss service run reconciling a catalog of {} images (idle before: {:.1} MiB)",
            grouped(images as f64),
            idle_rss as f64 / 1024.0
        ),
        &["reconciliation", "seconds", "images/s", "peak VmRSS MiB (sampled)"],
    );
    for (number, seconds, phase_peak) in &phases {
        let what = if *number == 1 { "1 (baseline)" } else { "2 (compare)" };
        table.row(vec![
            what.to_owned(),
            format!("{seconds:.2}"),
            grouped(images as f64 / seconds.max(f64::EPSILON)),
            format!("{:.1}", *phase_peak as f64 / 1024.0),
        ]);
        report.figure(&format!("reconcile_{number}_seconds"), *seconds);
        report.figure(&format!("reconcile_{number}_peak_rss_kib"), *phase_peak as f64);
    }
    report.table(table);
    report.figure("images", images as f64);
    report.figure("idle_rss_kib", idle_rss as f64);
    report.figure("peak_rss_kib", high_water as f64);
    report.target(
        "service resident memory throughout a reconciliation",
        "≤ 40 MiB",
        format!("{:.1} MiB (VmHWM)", high_water as f64 / 1024.0),
        high_water as f64 <= 40.0 * 1024.0,
    );
    report.note("the emulator and the endpoint run in this process; the service is a process of its own");
    report.note(
        "seconds: the service's own nbwss_notification_reconciliation_seconds, requests paced as deployed",
    );
    Ok(report)
}

/// The value of the first sample of `name` (a suffix of the metric's full name) in Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|line| !line.starts_with('#')).find_map(|line| {
        let (key, value) = line.rsplit_once(' ')?;
        let key = key.split('{').next()?;
        key.ends_with(name).then(|| value.parse().ok()).flatten()
    })
}

/// The process's peak resident memory (VmHWM), in KiB.
fn high_water_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| line.strip_prefix("VmHWM:")?.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_a_metric() {
        let text = "# HELP x\nnbwss_notification_reconciliations_total 2\nnbwss_notification_reconciliation_seconds 1.5\n";
        assert_eq!(super::metric(text, "reconciliations_total"), Some(2.0));
        assert_eq!(super::metric(text, "reconciliation_seconds"), Some(1.5));
        assert_eq!(super::metric(text, "absent"), None);
    }
}

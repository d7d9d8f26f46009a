//! `nbwss bench instructions`: CPU instructions per call, a figure that does not move with the machine's
//! load. This binary runs a fixed number of `GET /admin/jobs/{id}` calls from one client (emulator,
//! tunnel, endpoint, service and client in one process) under `valgrind --tool=callgrind`, once with
//! `--calls` calls and once with twice as many; the difference of the two instruction counts, divided by
//! `--calls`, is what one call costs, start-up, warm-up and shutdown cancelling out. Each path is measured
//! so: direct to the emulator, through the byte tunnel and relayed.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use super::relay::{load, Targets, JOB_PATH};
use super::report::{Report, Table};
use super::stats::{grouped, ratio};
use super::system::{Options, System, USER};
use super::Common;

/// Untimed calls before the counted ones (connection set-up, first-use allocations).
const WARMUP_CALLS: usize = 20;
/// How long one run under valgrind may take (it runs some 50 times slower than natively).
const RUN_DEADLINE: Duration = Duration::from_secs(900);

/// Arguments of `nbwss bench instructions`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Counted calls per path (each path also runs twice as many; the difference is divided by this).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    calls: u64,
    /// The valgrind executable.
    #[arg(long, value_name = "FILE", default_value = "valgrind")]
    valgrind: String,
    /// Run the calls of one path in this process (what the scenario starts under valgrind).
    #[arg(long, hide = true, value_enum)]
    child: Option<Way>,
    #[command(flatten)]
    pub(crate) common: Common,
}

/// A way to the emulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Way {
    Direct,
    Tunnel,
    Relayed,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Direct => "direct",
            Way::Tunnel => "tunnel",
            Way::Relayed => "relayed",
        }
    }
}

pub(crate) async fn run(args: &Args) -> anyhow::Result<Report> {
    let calls = usize::try_from(args.calls)?;
    if let Some(way) = args.child {
        let scratch = args.common.scratch()?;
        calls_of(way, scratch.path(), calls).await?;
        return Ok(Report::new("instructions"));
    }
    let scratch = args.common.scratch()?;
    let mut per_call = Vec::new();
    for way in [Way::Direct, Way::Tunnel, Way::Relayed] {
        let once = count_under_valgrind(args, scratch.path(), way, calls).await?;
        let twice = count_under_valgrind(args, scratch.path(), way, 2 * calls).await?;
        anyhow::ensure!(
            twice > once,
            "{}: {twice} instructions for {} calls, not more than {once} for {calls}: the calls cost less than \
             the run-to-run difference of the process's start and stop; measure more calls (--calls)",
            way.name(),
            2 * calls
        );
        per_call.push((way, (twice - once) as f64 / calls as f64));
    }

    let mut report = Report::new("instructions");
    report.parameter("calls", calls);
    report.parameter("warmup", WARMUP_CALLS);
    let direct = per_call[0].1;
    let mut table = Table::new(
        &format!(
            "GET {JOB_PATH}, 1 client, instructions per call (callgrind, {calls} and {} calls)",
            2 * calls
        ),
        &["path", "instructions per call", "over direct", "ratio to direct"],
    );
    for (way, instructions) in &per_call {
        table.row(vec![
            way.name().to_owned(),
            grouped(*instructions),
            if *way == Way::Direct { String::new() } else { format!("+{}", grouped(instructions - direct)) },
            ratio(instructions / direct.max(f64::EPSILON)),
        ]);
        report.figure(&format!("{}_instructions_per_call", way.name()), *instructions);
    }
    let relayed = per_call[2].1;
    let tunnel = per_call[1].1;
    report.figure("relay_added_instructions_per_call", relayed - direct);
    report.figure("tunnel_added_instructions_per_call", tunnel - direct);
    report.table(table);
    report.note(
        "every count covers the whole process: the client, the emulator and, on their paths, the tunnel or \
         the endpoint and the service",
    );
    Ok(report)
}

/// Runs `calls` calls of one way under callgrind and returns the instructions it counted.
async fn count_under_valgrind(args: &Args, dir: &Path, way: Way, calls: usize) -> anyhow::Result<u64> {
    let exe = std::env::current_exe().context("cannot find the nbwss executable")?;
    let log = dir.join(format!("callgrind-{}-{calls}.log", way.name()));
    let mut command = tokio::process::Command::new(&args.valgrind);
    command
        .arg("--tool=callgrind")
        .arg("--callgrind-out-file=/dev/null")
        .arg(format!("--log-file={}", log.display()))
        .arg(&exe)
        .args(["bench", "instructions", "--child", way.name(), "--calls", &calls.to_string(), "--dir"])
        .arg(dir)
        .env("RUST_LOG", "error")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().with_context(|| {
        format!(
            "cannot start {}: install valgrind (Debian: apt-get install valgrind) or pass --valgrind FILE",
            args.valgrind
        )
    })?;
    let output = tokio::time::timeout(RUN_DEADLINE, child.wait_with_output())
        .await
        .with_context(|| {
            format!("{}: {calls} calls under valgrind took over {} s", way.name(), RUN_DEADLINE.as_secs())
        })?
        .context("waiting for valgrind")?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    anyhow::ensure!(
        output.status.success(),
        "{}: valgrind {}: {}\n{}",
        way.name(),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim(),
        text.trim()
    );
    collected(&text).with_context(|| format!("no \"Collected :\" line in valgrind's log:\n{text}"))
}

/// The instruction count in callgrind's summary (`==PID== Collected : N`).
fn collected(log: &str) -> Option<u64> {
    log.lines().find_map(|line| line.split_once("Collected :")?.1.trim().parse().ok())
}

/// The child's work: the system, the way's target, warm-up, then `calls` calls one after another.
async fn calls_of(way: Way, dir: &Path, calls: usize) -> anyhow::Result<()> {
    let options = Options { max_in_flight: 1, properties: String::new(), service_credentials: false };
    let system = System::start(dir, &options).await?;
    let token = system.emulator.create_token(USER);
    let targets = Targets::of(&system, &token).await?;
    let target = match way {
        Way::Direct => &targets.direct,
        Way::Tunnel => &targets.tunnel,
        Way::Relayed => &targets.relayed,
    };
    let phase = load(target, JOB_PATH, 1, calls, WARMUP_CALLS).await?;
    anyhow::ensure!(phase.errors == 0, "{}: {} of {calls} calls failed", way.name(), phase.errors);
    let Targets { tunnel_handle, .. } = targets;
    tunnel_handle.shutdown();
    system.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_callgrinds_count() {
        let log = "==12== Events    : Ir\n==12== Collected : 123456789\n==12==\n==12== I   refs:      123,456,789\n";
        assert_eq!(super::collected(log), Some(123_456_789));
        assert_eq!(super::collected("nothing"), None);
    }
}

//! `nbwss bench`: the cost of the relay, the speed of the notification feed, the size of a fleet and the
//! footprint of each process, every figure measured in the same run as its baseline.
//!
//! Each scenario prints a table, its ratios and the targets, and writes the same as JSON with
//! `--out FILE`. Every loop is bounded by a count and a deadline; everything listens on 127.0.0.1.

mod cluster;
mod fleet;
mod footprint;
mod instructions;
mod notifications;
mod process;
mod reconcile;
mod relay;
mod report;
mod stats;
mod system;
mod tunnel;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

/// A 1-minute load average above this means other work shared the CPUs (noted in the report).
const QUIET_LOAD: f64 = 1.2;

/// Arguments of `nbwss bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, clap::Subcommand)]
enum Scenario {
    /// Relayed NetBackup calls (app API → endpoint → service → emulator) against direct calls.
    Relay(relay::Args),
    /// Notification records from local ingest to the endpoint's store, durable on both sides.
    Notifications(notifications::Args),
    /// Many simulated services on one endpoint process: memory, idle CPU, connect and reconnect times.
    Fleet(fleet::Args),
    /// Resident memory and start-up time of an idle service process and of the emulator process.
    Footprint(footprint::Args),
    /// The service reconciling a large emulated image catalog: its resident memory and the time taken.
    Reconcile(reconcile::Args),
    /// CPU instructions per call, direct, through a byte tunnel and relayed (under valgrind's callgrind).
    Instructions(instructions::Args),
}

/// Options every scenario has.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Common {
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE", alias = "json")]
    out: Option<PathBuf>,
    /// Directory for the scenario's data directories (default: a new temporary directory, removed at the
    /// end). Durability figures depend on it being on a real disk, not tmpfs.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

impl Common {
    /// A scratch directory for this run: under --dir when given, else a new temporary one.
    pub(crate) fn scratch(&self) -> anyhow::Result<tempfile::TempDir> {
        match &self.dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
                tempfile::Builder::new().prefix("nbwss-bench-").tempdir_in(dir)
            }
            None => tempfile::Builder::new().prefix("nbwss-bench-").tempdir(),
        }
        .context("cannot create a scratch directory")
    }
}

/// Runs `nbwss bench`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Errors only: the scenarios' own output is the report.
    crate::init_tracing_at("error");
    crate::raise_open_files_limit();
    let load_at_start = process::load_average();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let progress = Progress::start(match &args.scenario {
        Scenario::Relay(_) => "relay",
        Scenario::Notifications(_) => "notifications",
        Scenario::Fleet(_) => "fleet",
        Scenario::Footprint(_) => "footprint",
        Scenario::Reconcile(_) => "reconcile",
        Scenario::Instructions(_) => "instructions",
    });
    let (mut report, common) = runtime.block_on(async {
        match args.scenario {
            Scenario::Relay(args) => Ok::<_, anyhow::Error>((relay::run(&args).await?, args.common)),
            Scenario::Notifications(args) => Ok((notifications::run(&args).await?, args.common)),
            Scenario::Fleet(args) => Ok((fleet::run(&args).await?, args.common)),
            Scenario::Footprint(args) => Ok((footprint::run(&args).await?, args.common)),
            Scenario::Reconcile(args) => Ok((reconcile::run(&args).await?, args.common)),
            Scenario::Instructions(args) => Ok((instructions::run(&args).await?, args.common)),
        }
    })?;
    // In-process servers may leave tasks behind that only the runtime's end stops.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    drop(progress);
    if load_at_start > QUIET_LOAD {
        report.note(format!(
            "the 1-minute load average was {load_at_start:.2} when the run began: other work shared the CPUs"
        ));
    }
    print!("{}", report.render());
    if crate::used_flag("--json") {
        eprintln!("note: `nbwss bench ... --json FILE` is deprecated; write `--out FILE`");
    }
    if let Some(path) = &common.out {
        std::fs::write(path, serde_json::to_string_pretty(&report.to_json())?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("JSON written to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// A run takes minutes: on a terminal, standard error shows that it is running and for how long, on one line
/// rewritten every second and cleared at the end; piped or redirected, nothing is written.
struct Progress {
    stop: Option<std::sync::mpsc::Sender<()>>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(scenario: &'static str) -> Self {
        use std::io::{IsTerminal as _, Write as _};
        if !std::io::stderr().is_terminal() {
            return Self { stop: None, ticker: None };
        }
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let started = std::time::Instant::now();
        let ticker = std::thread::spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(std::time::Duration::from_secs(1))
            {
                let seconds = started.elapsed().as_secs();
                let _ = write!(std::io::stderr(), "\rnbwss bench {scenario}: running, {seconds} s");
            }
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        });
        Self { stop: Some(stop), ticker: Some(ticker) }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}

//! The `nbwss` command: one binary for the protocol tools, the emulator, the service, the endpoint and
//! `nbwss up`. Each subcommand lives in its own module and calls into the library crates.

mod bench;
mod conformance;
mod emulator;
mod endpoint;
mod notify;
mod protocol;
mod servers;
mod service;
mod up;
mod wire;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// nbwss: an open implementation of the NetBackup WebSocket Service (NBWSS), both ends of it.
///
/// The service (NetBackup side) connects out to a cloud endpoint over wss://, relays the endpoint's
/// NetBackup REST API calls to the primary server and pushes job and image notifications. The emulator
/// stands in for a NetBackup primary server so that everything runs on one machine.
#[derive(Debug, Parser)]
#[command(name = "nbwss", version, propagate_version = true, max_term_width = 110)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check NBWSS message files, or print valid example messages.
    Protocol(protocol::Args),
    /// Run an emulated NetBackup primary server REST API.
    Emulator(emulator::Args),
    /// Run the NBWSS service beside a NetBackup primary server.
    Service(service::Args),
    /// Manage the WebSocket servers (cloud endpoints) the service connects to.
    Servers(servers::Args),
    /// Enqueue JOB or IMAGE notification records (for NetBackup's notify scripts).
    Notify(notify::Args),
    /// Run a cloud WebSocket endpoint and manage its tokens and API keys.
    Endpoint(endpoint::Args),
    /// Start an emulator, an endpoint and a service on loopback and show a backup flowing through.
    Up(up::Args),
    /// Measure the relay's cost, the notification feed's speed, a fleet on one endpoint, and footprints.
    Bench(bench::Args),
    /// Check a third-party endpoint or service against the protocol's rules (docs/protocol.md).
    Conformance(conformance::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Protocol(args) => protocol::run(args),
        Command::Emulator(args) => emulator::run(args),
        Command::Service(args) => service::run(args),
        Command::Servers(args) => servers::run(args),
        Command::Notify(args) => notify::run(args),
        Command::Endpoint(args) => endpoint::run(args),
        Command::Up(args) => up::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Conformance(args) => conformance::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Sets up logging to stderr; `RUST_LOG` overrides the default level (info).
pub(crate) fn init_tracing() {
    init_tracing_at("info");
}

/// Sets up logging to stderr for commands whose own output tells the story (`nbwss up`): warnings and
/// errors only unless `RUST_LOG` says otherwise.
pub(crate) fn init_tracing_quiet() {
    init_tracing_at("warn");
}

fn init_tracing_at(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Raises the soft limit of open files to the hard limit, for thousands of sockets; children inherit it.
pub(crate) fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(%error, "cannot raise the open-files limit");
        }
    }
}

/// The soft limit of open files now.
pub(crate) fn open_files_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Waits for Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

//! The nbwss command line, shared by the binaries built from it:
//!
//! * `nbwss` (feature `full`): every subcommand, for development, demos and benchmarks;
//! * `nbwss-service` (feature `service`): what runs on a NetBackup primary server ([`service_cli`]);
//! * `nbwss-endpoint` (feature `endpoint`): the cloud endpoint ([`endpoint_cli`]).
//!
//! Each subcommand lives in its own module and calls into the library crates. A binary built with only
//! `service` (or only `endpoint`) compiles and links only that side, so the process on the primary server
//! does not carry the emulator, the endpoint, the dashboard or the benchmarks in its pages.

#[cfg(feature = "full")]
pub mod bench;
#[cfg(feature = "full")]
pub mod conformance;
#[doc(hidden)]
pub mod conventions;
#[cfg(feature = "full")]
pub mod emulator;
#[cfg(feature = "endpoint")]
pub mod endpoint;
#[cfg(feature = "endpoint")]
pub mod endpoint_cli;
#[cfg(feature = "man")]
pub mod man;
#[cfg(feature = "service")]
pub mod notify;
#[cfg(feature = "service")]
pub mod protocol;
#[cfg(feature = "service")]
pub mod servers;
#[cfg(feature = "service")]
pub mod service;
#[cfg(feature = "service")]
pub mod service_cli;
#[cfg(any(feature = "service", feature = "endpoint"))]
mod state;
#[cfg(feature = "full")]
pub mod up;
#[cfg(feature = "full")]
mod wire;

use std::io::IsTerminal as _;
use std::process::ExitCode;

/// Whether the process's arguments spell `flag` (`--flag` or `--flag=...`): how a deprecated spelling kept
/// as an alias is noticed, to say what to write instead.
#[cfg(feature = "service")]
pub(crate) fn used_flag(flag: &str) -> bool {
    std::env::args_os().skip(1).take_while(|arg| arg != "--").any(|arg| {
        arg.to_str().is_some_and(|arg| {
            arg == flag || arg.strip_prefix(flag).is_some_and(|rest| rest.starts_with('='))
        })
    })
}

/// Prints a command's error the same way in every binary and turns it into the exit status.
pub fn exit_code(result: anyhow::Result<ExitCode>) -> ExitCode {
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
#[cfg(feature = "full")]
pub(crate) fn init_tracing_quiet() {
    init_tracing_at("warn");
}

pub(crate) fn init_tracing_at(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(stderr_is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Raises the soft limit of open files to the hard limit, for thousands of sockets; children inherit it.
#[cfg(feature = "endpoint")]
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
#[cfg(feature = "endpoint")]
pub(crate) fn open_files_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Colours only on a terminal: under systemd stderr goes to the journal, where escape codes are noise.
pub(crate) fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
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

//! `nbwss servers ...`: manage WebSocket servers.

use std::process::ExitCode;

/// Arguments of `nbwss servers`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `nbwss servers`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`nbwss servers` is not available in this build yet")
}

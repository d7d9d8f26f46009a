//! `nbwss service ...`: run the NBWSS service.

use std::process::ExitCode;

/// Arguments of `nbwss service`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `nbwss service`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`nbwss service` is not available in this build yet")
}

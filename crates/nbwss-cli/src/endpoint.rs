//! `nbwss endpoint ...`: run the cloud endpoint.

use std::process::ExitCode;

/// Arguments of `nbwss endpoint`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `nbwss endpoint`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`nbwss endpoint` is not available in this build yet")
}

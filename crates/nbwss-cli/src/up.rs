//! `nbwss up ...`: start everything on loopback.

use std::process::ExitCode;

/// Arguments of `nbwss up`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `nbwss up`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`nbwss up` is not available in this build yet")
}

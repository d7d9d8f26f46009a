//! `nbwss emulator ...`: run the emulated NetBackup primary server.

use std::process::ExitCode;

/// Arguments of `nbwss emulator`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `nbwss emulator`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the emulator is not built yet")
}

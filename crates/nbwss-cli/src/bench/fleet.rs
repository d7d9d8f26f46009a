//! `nbwss bench fleet`.

use super::report::Report;
use super::Common;

/// Arguments of `nbwss bench fleet`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    pub(crate) common: Common,
}

pub(crate) async fn run(_args: &Args) -> anyhow::Result<Report> {
    Ok(Report::new("fleet"))
}

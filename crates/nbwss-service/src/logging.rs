//! The rotating log file in the data directory. The binary composes it with its stderr layer.

use anyhow::Context as _;
use tracing_appender::non_blocking::{NonBlocking, WorkerGuard};
use tracing_appender::rolling::{Builder, Rotation};

use crate::config::ServiceConfig;

/// A non-blocking writer to `DATA_DIR/logs/nbwss-service.YYYY-MM-DD.log` (daily rotation, at most
/// `log.max_files` kept), and the guard that flushes it when dropped; `None` when `log.file` is false.
pub fn file_writer(config: &ServiceConfig) -> anyhow::Result<Option<(NonBlocking, WorkerGuard)>> {
    if !config.log.file {
        return Ok(None);
    }
    let dir = config.data_dir.join(crate::files::LOG_DIR);
    crate::files::ensure_private_dir(&dir)
        .with_context(|| format!("cannot create the log directory {}", dir.display()))?;
    let appender = Builder::new()
        .rotation(Rotation::DAILY)
        .filename_prefix("nbwss-service")
        .filename_suffix("log")
        .max_log_files(config.log.max_files)
        .build(&dir)
        .with_context(|| format!("cannot open a log file in {}", dir.display()))?;
    Ok(Some(tracing_appender::non_blocking(appender)))
}

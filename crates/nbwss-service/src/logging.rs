//! The rotating log file in the data directory. The binary composes it with its stderr layer.

use anyhow::Context as _;
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_appender::rolling::{Builder, Rotation};

use crate::config::ServiceConfig;

/// Log lines queued for the log file's writer thread before new ones are dropped (the queue never blocks
/// the runtime). tracing-appender's default, 128,000, preallocates and touches a 4 MB queue: a fifth of an
/// idle service's resident memory, for a service that writes a few lines a minute when idle; a burst that
/// outruns the file by this much is still on standard error (the journal).
pub const LOG_QUEUE_LINES: usize = 4096;

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
    Ok(Some(
        NonBlockingBuilder::default()
            .buffered_lines_limit(LOG_QUEUE_LINES)
            .thread_name("nbwss-service-log")
            .finish(appender),
    ))
}

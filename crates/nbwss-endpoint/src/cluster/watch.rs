//! The loop the cluster's followers share: run a watch (of a bucket, of the stream) until it fails or ends,
//! warn, pause, run it again, until the endpoint stops.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How long a follower waits before it watches again.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// What a follower logs when its watch stops: `"{what}: {error}; {again}"`, the error being `ended` when the
/// watch ended without one.
pub(crate) struct Warning {
    /// What is followed, e.g. `cluster sessions`.
    pub(crate) what: &'static str,
    /// The error of a watch that ended, e.g. `watch ended`.
    pub(crate) ended: &'static str,
    /// What happens next, e.g. `watching again`.
    pub(crate) again: &'static str,
}

/// Runs `watch` until `cancel`: each time it fails or ends, logs `warning` and, [`RETRY_PAUSE`] later,
/// runs it again. Returns as soon as `cancel` fires, during a watch or a pause.
pub(crate) async fn follow_until_cancelled<F, W>(warning: Warning, cancel: CancellationToken, mut watch: F)
where
    F: FnMut() -> W,
    W: Future<Output = anyhow::Result<()>>,
{
    let Warning { what, ended, again } = warning;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            result = watch() => {
                let error = result.err().unwrap_or_else(|| anyhow::anyhow!("{ended}"));
                tracing::warn!("{what}: {error:#}; {again}");
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(RETRY_PAUSE) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use tokio::time::Instant;

    use super::*;

    const WARNING: Warning = Warning { what: "test", ended: "watch ended", again: "watching again" };

    /// A failed or ended watch runs again, a pause later each time; `cancel` during a watch returns.
    #[tokio::test(start_paused = true)]
    async fn a_watch_that_fails_or_ends_runs_again_after_a_pause_until_cancelled() {
        let cancel = CancellationToken::new();
        let runs = Arc::new(AtomicU32::new(0));
        let started = Instant::now();
        let starts = Arc::new(std::sync::Mutex::new(Vec::new()));
        let follower = {
            let (cancel, runs, starts) = (cancel.clone(), runs.clone(), starts.clone());
            follow_until_cancelled(WARNING, cancel.clone(), move || {
                let (cancel, runs, starts) = (cancel.clone(), runs.clone(), starts.clone());
                async move {
                    starts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(started.elapsed());
                    match runs.fetch_add(1, Ordering::SeqCst) {
                        0 => anyhow::bail!("failed"),
                        1 => Ok(()),
                        _ => {
                            cancel.cancel();
                            std::future::pending().await
                        }
                    }
                }
            })
        };
        follower.await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        let starts = starts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        assert_eq!(starts, [Duration::ZERO, RETRY_PAUSE, RETRY_PAUSE * 2]);
    }

    /// `cancel` after a failed run returns without running the watch again.
    #[tokio::test(start_paused = true)]
    async fn cancel_after_a_failed_run_returns_without_another_run() {
        let cancel = CancellationToken::new();
        let runs = Arc::new(AtomicU32::new(0));
        let follower = {
            let (cancel, runs) = (cancel.clone(), runs.clone());
            follow_until_cancelled(WARNING, cancel.clone(), move || {
                let (cancel, runs) = (cancel.clone(), runs.clone());
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    cancel.cancel();
                    anyhow::bail!("failed")
                }
            })
        };
        follower.await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}

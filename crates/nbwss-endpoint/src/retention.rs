//! Bounded disks: every `retention.prune_interval_ms` the endpoint deletes the notifications older than
//! `retention.max_age_hours` and beyond the newest `retention.max_records`.

use std::time::Duration;

use crate::state::AppState;

/// Prunes now and then until the endpoint shuts down; the first pruning runs at start.
pub(crate) async fn prune(state: AppState) {
    let retention = state.config.retention.clone();
    let max_age = (retention.max_age_hours > 0)
        .then(|| Duration::from_secs(retention.max_age_hours.saturating_mul(3600)));
    let max_records = (retention.max_records > 0).then_some(retention.max_records);
    if max_age.is_none() && max_records.is_none() {
        return;
    }
    let mut ticker = tokio::time::interval(Duration::from_millis(retention.prune_interval_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let pruned =
            state.store.run(move |store| store.prune(chrono::Utc::now(), max_age, max_records)).await;
        match pruned {
            Ok(pruned) if pruned.records > 0 || pruned.messages > 0 => {
                state.metrics.notifications_pruned.inc_by(pruned.records);
                tracing::info!(
                    records = pruned.records,
                    message_ids = pruned.messages,
                    "notifications pruned"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::error!("cannot prune notifications: {error:#}"),
        }
    }
}

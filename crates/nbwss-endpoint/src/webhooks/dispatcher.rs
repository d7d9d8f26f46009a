//! The dispatcher: a supervisor that keeps one task per subscription (it notices subscriptions added,
//! changed or removed here or by `nbwss endpoint webhook` in another process within
//! `limits.revocation_check_interval_ms`), and the tasks themselves.
//!
//! Each task queues the records after its subscription's cursor that match its filter (at most
//! `webhooks.max_pending_per_webhook` held), then sends its deliveries one at a time, in order: the next is
//! sent only once the previous one is acknowledged or has failed, so a receiver sees a subscription's
//! records in the order they were stored. A failed attempt is retried after an exponential backoff with
//! jitter (longer when the receiver asks with `Retry-After`) until `webhooks.retry_window_ms` has passed
//! since the first attempt; then the delivery is marked failed and the subscription paused. A 410 Gone pauses
//! it at once. Each subscription has its own task and HTTPS client, so a slow or failing receiver holds back
//! nobody else (at most one request in flight per subscription, each bounded by
//! `webhooks.request_timeout_ms`). Every step is committed before the next: a restart resumes where the
//! last one stopped, and a delivery in flight then is sent again with the same `webhook-id`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::client::{Attempt, WebhookClient};
use super::store::{FailedAttempt, NewDelivery, PauseReason, WebhookTarget};
use super::{origin_of, payload, secret_key};
use crate::state::AppState;
use crate::store::{FeedQuery, StoredNotification};

/// Records read from the notification store at a time.
const QUEUE_BATCH: u64 = 500;
/// Wait after a store error before trying again.
const STORE_ERROR_PAUSE: Duration = Duration::from_secs(5);

/// Runs the supervisor until the endpoint shuts down.
pub(crate) async fn supervise(state: AppState) {
    let mut workers: HashMap<String, (CancellationToken, watch::Sender<i64>)> = HashMap::new();
    let mut ticker = tokio::time::interval(state.config.revocation_check_interval());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let instance = loop {
        match state.store.run(|store| store.instance_id()).await {
            Ok(instance) => break instance,
            Err(error) => {
                tracing::error!("webhooks cannot start: {error:#}");
                tokio::select! {
                    _ = state.cancel.cancelled() => return,
                    _ = tokio::time::sleep(STORE_ERROR_PAUSE) => {}
                }
            }
        }
    };
    loop {
        tokio::select! {
            _ = state.cancel.cancelled() => return,
            _ = ticker.tick() => {}
            _ = state.webhook_changes.notified() => {}
        }
        let generations = match state.store.run(|store| store.webhook_generations()).await {
            Ok(generations) => generations.into_iter().collect::<HashMap<_, _>>(),
            Err(error) => {
                tracing::error!("cannot read the webhook subscriptions: {error:#}");
                continue;
            }
        };
        workers.retain(|id, (cancel, _)| {
            let kept = generations.contains_key(id);
            if !kept {
                cancel.cancel();
                state.metrics.forget_webhook(id);
            }
            kept
        });
        for (id, generation) in generations {
            if let Some((_, sender)) = workers.get(&id) {
                sender.send_if_modified(|seen| std::mem::replace(seen, generation) != generation);
                continue;
            }
            let cancel = state.cancel.child_token();
            let (sender, receiver) = watch::channel(generation);
            let worker = Worker {
                feed: state.feed.subscribe(),
                state: state.clone(),
                id: id.clone(),
                instance: instance.clone(),
                generation: receiver,
                cancel: cancel.clone(),
                client: None,
                capped: false,
            };
            state.tracker.spawn(worker.run());
            workers.insert(id, (cancel, sender));
        }
    }
}

/// One subscription's task.
struct Worker {
    state: AppState,
    /// The newest notification cursor: a change means records to queue.
    feed: watch::Receiver<i64>,
    id: String,
    instance: String,
    generation: watch::Receiver<i64>,
    cancel: CancellationToken,
    /// The client and key of the generation they were made for.
    client: Option<(i64, Arc<WebhookClient>, Vec<u8>)>,
    /// Whether the subscription is at `webhooks.max_pending_per_webhook` (logged once per episode).
    capped: bool,
}

/// What to wait for before the next step.
enum Wait {
    /// Nothing: there is more to do now.
    Nothing,
    /// A change of the subscription or a new record.
    Change,
    /// That, or this many milliseconds (the next attempt is due then).
    AtMost(Duration),
    /// The subscription is gone, or the endpoint stops.
    End,
}

impl Worker {
    async fn run(mut self) {
        loop {
            // Mark what is seen before looking, so that a change during the step wakes the next wait.
            self.generation.borrow_and_update();
            self.feed.borrow_and_update();
            let wait = match self.step().await {
                Ok(wait) => wait,
                Err(error) => {
                    tracing::error!(webhook = %self.id, "webhook delivery stalled: {error:#}");
                    Wait::AtMost(STORE_ERROR_PAUSE)
                }
            };
            let timeout = match wait {
                Wait::Nothing => {
                    tokio::task::yield_now().await;
                    continue;
                }
                Wait::End => return,
                Wait::Change => None,
                Wait::AtMost(duration) => Some(duration),
            };
            let sleep = async {
                match timeout {
                    Some(duration) => tokio::time::sleep(duration).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                changed = self.generation.changed() => if changed.is_err() { return },
                changed = self.feed.changed() => if changed.is_err() { return },
                _ = sleep => {}
            }
        }
    }

    /// Queues what is new, then sends the next delivery if it is due.
    async fn step(&mut self) -> anyhow::Result<Wait> {
        let Some((target, more_to_queue)) = self.queue().await? else {
            return Ok(Wait::End);
        };
        let again = if more_to_queue { Wait::Nothing } else { Wait::Change };
        if target.paused {
            return Ok(again);
        }
        let Some((client, key)) = self.client(&target) else {
            return Ok(Wait::Change);
        };
        let id = self.id.clone();
        let Some(delivery) = self.state.store.run(move |store| store.next_delivery(&id)).await? else {
            return Ok(again);
        };
        let now = now_ms();
        if delivery.next_attempt_ms > now {
            if more_to_queue {
                return Ok(Wait::Nothing);
            }
            let wait = u64::try_from(delivery.next_attempt_ms - now).unwrap_or(0);
            return Ok(Wait::AtMost(Duration::from_millis(wait)));
        }
        // While the receiver takes its time, new records are still queued (and counted in `list`).
        let send = client.send(&target.url, &key, &delivery.message_id, &delivery.payload);
        tokio::pin!(send);
        let attempt = loop {
            let new_records = tokio::select! {
                _ = self.cancel.cancelled() => return Ok(Wait::End),
                attempt = &mut send => break attempt,
                changed = self.feed.changed() => changed.is_ok(),
            };
            if new_records {
                self.feed.borrow_and_update();
                while let Some((_, true)) = self.queue().await? {}
            }
        };
        let (id, seq) = (self.id.clone(), delivery.seq);
        match attempt {
            Attempt::Delivered { .. } => {
                self.state.store.run(move |store| store.delivery_succeeded(&id, seq)).await?;
                self.state.metrics.webhook_delivered(&self.id);
                Ok(Wait::Nothing)
            }
            Attempt::Failed { status, error, retry_after, gone } => {
                self.state.metrics.webhook_attempt_failed(&self.id);
                let config = &self.state.config.webhooks;
                let now = now_ms();
                let first_attempt_ms = delivery.first_attempt_ms.unwrap_or(now);
                let window_end = first_attempt_ms
                    .saturating_add(i64::try_from(config.retry_window_ms).unwrap_or(i64::MAX));
                let attempts = delivery.attempts.saturating_add(1);
                let backoff = backoff(config, attempts, retry_after);
                let next_attempt_ms = now
                    .saturating_add(i64::try_from(backoff.as_millis()).unwrap_or(i64::MAX))
                    .min(window_end);
                let attempt = FailedAttempt { attempts, first_attempt_ms, next_attempt_ms, status, error };
                let origin = origin_of(&target.url);
                if gone {
                    let detail = format!(
                        "{origin} answered 410 Gone: it wants no more deliveries. Resume the webhook when it does"
                    );
                    tracing::warn!(webhook = %self.id, %origin, "webhook paused: {detail}");
                    let paused = attempt.clone();
                    self.state
                        .store
                        .run(move |store| {
                            store.delivery_retried(
                                &id,
                                seq,
                                &FailedAttempt { next_attempt_ms: now, ..paused },
                            )?;
                            Ok(store.pause_webhook(&id, PauseReason::Gone, &detail)?)
                        })
                        .await?;
                } else if now >= window_end {
                    let detail = format!(
                        "a delivery ({}) failed for {} s, {attempts} attempts; the last: {}. Resume the webhook \
                         once its receiver works (its failed delivery is sent first, or discarded on request)",
                        delivery.message_id,
                        config.retry_window_ms / 1000,
                        attempt.error
                    );
                    tracing::error!(webhook = %self.id, %origin, "webhook paused: {detail}");
                    self.state
                        .store
                        .run(move |store| store.delivery_exhausted(&id, seq, &attempt, &detail))
                        .await?;
                    self.state.metrics.webhook_failed(&self.id);
                } else {
                    tracing::warn!(webhook = %self.id, %origin, message_id = %delivery.message_id, attempts,
                        retry_in_ms = next_attempt_ms - now, "webhook delivery failed, will retry: {}", attempt.error);
                    self.state.store.run(move |store| store.delivery_retried(&id, seq, &attempt)).await?;
                }
                Ok(Wait::Nothing)
            }
        }
    }

    /// The client and secret key for the subscription's current generation, made when it changed.
    fn client(&mut self, target: &WebhookTarget) -> Option<(Arc<WebhookClient>, Vec<u8>)> {
        if let Some((generation, client, key)) = &self.client {
            if *generation == target.generation {
                return Some((client.clone(), key.clone()));
            }
        }
        let made = secret_key(&target.secret).map_err(|why| anyhow::anyhow!("{why}")).and_then(|key| {
            Ok((Arc::new(WebhookClient::new(&self.state.config.webhooks, target.ca_pem.as_deref())?), key))
        });
        match made {
            Ok((client, key)) => {
                self.client = Some((target.generation, client.clone(), key.clone()));
                Some((client, key))
            }
            Err(error) => {
                tracing::error!(webhook = %self.id, "webhook cannot send until it is changed: {error:#}");
                None
            }
        }
    }

    /// Queues the matching records after the subscription's cursor, up to its limit. Returns the
    /// subscription as it was before, and whether there may be more to queue at once; `None` when it is gone.
    async fn queue(&mut self) -> anyhow::Result<Option<(WebhookTarget, bool)>> {
        let id = self.id.clone();
        let Some(target) = self.state.store.run(move |store| store.webhook_target(&id)).await? else {
            return Ok(None);
        };
        let more = self.queue_after(&target).await?;
        Ok(Some((target, more)))
    }

    async fn queue_after(&mut self, target: &WebhookTarget) -> anyhow::Result<bool> {
        let cap = self.state.config.webhooks.max_pending_per_webhook;
        let id = self.id.clone();
        let held = self.state.store.run(move |store| store.held_deliveries(&id)).await?;
        self.state.metrics.webhook_state(&self.id, held, target.paused);
        if held >= cap {
            if !self.capped {
                tracing::error!(webhook = %self.id, held, "webhook holds webhooks.max_pending_per_webhook \
                    deliveries: no more records are queued until its receiver catches up; records pruned by \
                    retention meanwhile are counted as missed");
                self.capped = true;
            }
            return Ok(false);
        }
        self.capped = false;
        let (cursor, filter) = (target.cursor, target.filter.clone());
        let limit = QUEUE_BATCH.min(cap - held);
        let read = self.state.store.run(move |store| read_after(store, cursor, limit, &filter)).await?;
        if read.next_cursor == cursor && read.missed == 0 {
            return Ok(false);
        }
        if read.missed > 0 {
            tracing::error!(webhook = %self.id, missed = read.missed, "records were pruned by retention \
                before this webhook could queue them: they will not be delivered (raise \
                webhooks.max_pending_per_webhook or retention, or fix the receiver sooner)");
            self.state.metrics.webhook_missed(&self.id, read.missed);
        }
        let max_payload = self.state.config.webhooks.max_payload_bytes;
        let deliveries: Vec<NewDelivery> = read
            .records
            .iter()
            .map(|record| NewDelivery {
                message_id: format!("msg_{}_{}", self.instance, record.cursor),
                cursor: record.cursor,
                payload: payload(record, max_payload),
            })
            .collect();
        let (id, missed, next) = (self.id.clone(), read.missed, read.next_cursor);
        let queued = self
            .state
            .store
            .run(move |store| store.queue_deliveries(&id, cursor, next, &deliveries, missed))
            .await?;
        Ok(queued.is_some() && read.full)
    }
}

/// Records after a cursor that a filter lets through.
struct Read {
    records: Vec<StoredNotification>,
    /// The cursor to move to: every record up to it was considered.
    next_cursor: i64,
    /// Records pruned between the cursor and the oldest record kept.
    missed: u64,
    /// Whether the batch was full (there may be more).
    full: bool,
}

/// Reads at most `limit` records after `cursor` and keeps those `filter` lets through. Uses only what any
/// notification store offers: the newest and oldest cursors, and the records after a cursor (narrowed by
/// primary server and object kind when the filter names one of each).
fn read_after(
    store: &crate::store::Store,
    cursor: i64,
    limit: u64,
    filter: &super::WebhookFilter,
) -> anyhow::Result<Read> {
    // Read the newest cursor first: every record not seen by the query below comes after it.
    let last = store.last_cursor()?;
    let first = store.first_cursor()?;
    let (mut from, mut missed) = (cursor, 0);
    if first > cursor.saturating_add(1) {
        missed = u64::try_from(first - cursor - 1).unwrap_or(0);
        from = first - 1;
    }
    if from >= last {
        return Ok(Read { records: Vec::new(), next_cursor: from, missed, full: false });
    }
    let single = |values: &[String]| (values.len() == 1).then(|| values[0].clone());
    let query = FeedQuery {
        after: from,
        limit: usize::try_from(limit).unwrap_or(usize::MAX),
        primary: single(&filter.primaries),
        object: single(&filter.objects),
    };
    let records = store.notifications(&query)?;
    let full = records.len() >= query.limit;
    let newest_read = records.last().map_or(from, |record| record.cursor);
    let next_cursor = if full { newest_read } else { newest_read.max(last) };
    let records = records.into_iter().filter(|record| filter.matches(record)).collect();
    Ok(Read { records, next_cursor, missed, full })
}

/// The wait before attempt `attempts + 1`: `min_backoff_ms` doubled per attempt up to `max_backoff_ms`, with
/// jitter (between half and all of it), and at least what the receiver asked for (up to `max_backoff_ms`).
fn backoff(config: &crate::config::Webhooks, attempts: u32, retry_after: Option<Duration>) -> Duration {
    let doubled = config.min_backoff_ms.saturating_mul(1u64 << attempts.saturating_sub(1).min(40));
    let base = doubled.min(config.max_backoff_ms);
    let jittered = base / 2 + rand::rng().random_range(0..=base - base / 2);
    let asked = retry_after.map_or(0, |wait| u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
    Duration::from_millis(jittered.max(asked.min(config.max_backoff_ms)))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Webhooks;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_maximum() {
        let config = Webhooks { min_backoff_ms: 1000, max_backoff_ms: 60_000, ..Webhooks::default() };
        for _ in 0..100 {
            let first = backoff(&config, 1, None).as_millis();
            assert!((500..=1000).contains(&first), "{first}");
            let fourth = backoff(&config, 4, None).as_millis();
            assert!((4000..=8000).contains(&fourth), "{fourth}");
            let late = backoff(&config, 30, None).as_millis();
            assert!((30_000..=60_000).contains(&late), "{late}");
            assert_eq!(backoff(&config, u32::MAX, Some(Duration::from_secs(3600))).as_millis(), 60_000);
        }
        let asked = backoff(&config, 1, Some(Duration::from_secs(20))).as_millis();
        assert_eq!(asked, 20_000, "Retry-After lengthens the wait");
    }
}

//! Webhook subscriptions and their deliveries in the endpoint's SQLite store.
//!
//! A subscription's `cursor` is the last notification cursor it has considered: records after it are read
//! from the notification store, matched against its filter, and the matching ones become delivery rows,
//! each with its own copy of the body, in the same transaction that moves the cursor. A delivery row is
//! deleted when its receiver acknowledges it, marked failed when its retry window is exhausted (kept until
//! the subscription is resumed: retried, or discarded on request), and counted either way. So what the
//! dispatcher needs of the notification store is narrow: the records after a cursor, the newest cursor and
//! the oldest one still kept (`Store::notifications`, `last_cursor`, `first_cursor`).
//!
//! Delivery progress (queueing, acknowledgements, failed attempts) is committed through a connection of its
//! own with `synchronous = NORMAL` (see `Store::open` for why that loses nothing); creating, pausing,
//! resuming and removing subscriptions go through the main writer, durable at once.

use rusqlite::{params, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

use super::{new_secret, NewWebhook, WebhookFilter};
use crate::config::Webhooks;
use crate::store::Store;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS store_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO store_meta (key, value) VALUES ('instance', lower(hex(randomblob(6))));
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    description TEXT NOT NULL,
    secret TEXT NOT NULL,
    filter TEXT NOT NULL,
    ca_pem TEXT,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    generation INTEGER NOT NULL,
    paused_reason TEXT,
    paused_at TEXT,
    pause_detail TEXT,
    cursor INTEGER NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    missed INTEGER NOT NULL DEFAULT 0,
    last_success_at TEXT,
    last_failure_at TEXT,
    last_error TEXT
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    record_cursor INTEGER,
    payload TEXT NOT NULL,
    failed INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    first_attempt_ms INTEGER,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    last_status INTEGER,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_in_order ON webhook_deliveries (webhook_id, failed, seq);
";

/// Why a subscription is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PauseReason {
    /// Paused on request (`pause`).
    Manual,
    /// A delivery was retried for the whole retry window without success.
    Failing,
    /// The receiver answered 410 Gone: it wants no more deliveries.
    Gone,
}

impl PauseReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Failing => "failing",
            Self::Gone => "gone",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "failing" => Self::Failing,
            "gone" => Self::Gone,
            _ => Self::Manual,
        }
    }
}

/// A subscription as `list` shows it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookInfo {
    /// Its id, `wh_` and 20 hexadecimal digits.
    pub id: String,
    /// The receiver.
    pub url: String,
    /// What it is for.
    pub description: String,
    /// Which records it receives.
    pub filter: WebhookFilter,
    /// Whether a CA of its own is trusted for its receiver.
    pub custom_ca: bool,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// Who created it: the API key's name, or `cli`.
    pub created_by: String,
    /// `active` or `paused`.
    pub state: String,
    /// `healthy`, `failing` (the next delivery has failed attempts and is being retried) or `paused`.
    pub health: String,
    /// Why it is paused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_reason: Option<PauseReason>,
    /// Since when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<String>,
    /// What happened, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_detail: Option<String>,
    /// The last notification cursor it has considered.
    pub cursor: i64,
    /// Deliveries held and done.
    pub counts: WebhookCounts,
    /// The delivery being retried, when the next one has failed attempts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retrying: Option<WebhookRetry>,
    /// When a delivery last succeeded.
    pub last_success_at: Option<String>,
    /// When an attempt last failed.
    pub last_failure_at: Option<String>,
    /// Why it failed.
    pub last_error: Option<String>,
}

/// A subscription's deliveries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookCounts {
    /// Waiting to be delivered, the next one first.
    pub pending: u64,
    /// Failed (their retry window exhausted), held until the subscription is resumed.
    pub failed: u64,
    /// Delivered since the subscription was created.
    pub delivered_total: u64,
    /// Failed since the subscription was created.
    pub failed_total: u64,
    /// Records pruned by retention before the subscription could queue them (it was at
    /// `webhooks.max_pending_per_webhook`, or behind). Of any kind: some may not have matched its filter.
    pub missed_total: u64,
}

/// The delivery being retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookRetry {
    /// Its `webhook-id`.
    pub message_id: String,
    /// Attempts so far.
    pub attempts: u32,
    /// When it was first attempted (its retry window starts there).
    pub first_attempt_at: Option<String>,
    /// When it is attempted next.
    pub next_attempt_at: String,
    /// The receiver's last HTTP status, if it answered.
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// One held delivery, as `deliveries` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryInfo {
    /// Its place in the subscription's order.
    pub seq: i64,
    /// Its `webhook-id`.
    pub message_id: String,
    /// The notification record's cursor.
    pub cursor: Option<i64>,
    /// `pending` or `failed`.
    pub state: String,
    /// Attempts so far.
    pub attempts: u32,
    /// When it was queued.
    pub created_at: String,
    /// When it was first attempted.
    pub first_attempt_at: Option<String>,
    /// When it is attempted next (pending only).
    pub next_attempt_at: Option<String>,
    /// The receiver's last HTTP status.
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// A subscription just created, with its secret: shown only here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedWebhook {
    /// The subscription.
    #[serde(flatten)]
    pub webhook: WebhookInfo,
    /// Its signing secret.
    pub secret: String,
}

/// Why a webhook operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// A field is wrong: the message names it.
    #[error("{0}")]
    Invalid(String),
    /// No subscription has this id.
    #[error("no webhook '{0}'")]
    NotFound(String),
    /// `webhooks.max_webhooks` is reached.
    #[error("at most {0} webhooks (webhooks.max_webhooks): remove one first")]
    TooMany(usize),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

impl From<rusqlite::Error> for WebhookError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Store(error.into())
    }
}

/// What a running subscription needs to deliver.
#[derive(Debug, Clone)]
pub(crate) struct WebhookTarget {
    pub url: String,
    pub secret: String,
    pub ca_pem: Option<String>,
    pub filter: WebhookFilter,
    pub generation: i64,
    pub paused: bool,
    pub cursor: i64,
}

/// A delivery row to insert.
#[derive(Debug, Clone)]
pub(crate) struct NewDelivery {
    pub message_id: String,
    pub cursor: i64,
    pub payload: String,
}

/// The next delivery of a subscription.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub seq: i64,
    pub message_id: String,
    pub payload: String,
    pub attempts: u32,
    pub first_attempt_ms: Option<i64>,
    pub next_attempt_ms: i64,
}

/// A failed attempt, to record.
#[derive(Debug, Clone)]
pub(crate) struct FailedAttempt {
    pub attempts: u32,
    pub first_attempt_ms: i64,
    pub next_attempt_ms: i64,
    pub status: Option<u16>,
    pub error: String,
}

const INFO_COLUMNS: &str = "id, url, description, filter, ca_pem IS NOT NULL, created_at, created_by, paused_reason, \
     paused_at, pause_detail, cursor, delivered, failed, missed, last_success_at, last_failure_at, last_error";

impl Store {
    /// Creates a subscription after checking every field (`NewWebhook::validate`); the secret is generated
    /// when not given and returned only here.
    pub fn create_webhook(
        &self,
        mut new: NewWebhook,
        config: &Webhooks,
        created_by: &str,
    ) -> Result<CreatedWebhook, WebhookError> {
        new.validate(config).map_err(WebhookError::Invalid)?;
        let secret = new.secret.clone().unwrap_or_else(new_secret);
        let id = new_webhook_id();
        let filter = serde_json::to_string(&new.filter).map_err(anyhow::Error::from)?;
        {
            let mut connection = self.lock();
            let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let count: i64 = transaction.query_row("SELECT COUNT(*) FROM webhooks", [], |row| row.get(0))?;
            if usize::try_from(count).unwrap_or(usize::MAX) >= config.max_webhooks {
                return Err(WebhookError::TooMany(config.max_webhooks));
            }
            // The newest cursor ever given (pruning may have left none), and the oldest one kept.
            let (first, last): (i64, i64) = transaction.query_row(
                "SELECT COALESCE((SELECT MIN(cursor) FROM notifications), newest.last + 1), newest.last
                 FROM (SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'notifications'), 0) AS last)
                     AS newest",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
            // Records before the oldest one kept cannot be asked for: they were pruned before it existed.
            let cursor = new.after.map_or(last, |after| after.max(first - 1).min(last));
            transaction.execute(
                "INSERT INTO webhooks (id, url, description, secret, filter, ca_pem, created_at, created_by,
                     generation, cursor)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9)",
                params![
                    id,
                    new.url,
                    new.description,
                    secret,
                    filter,
                    new.ca_certificate,
                    crate::store::now(),
                    created_by,
                    cursor
                ],
            )?;
            transaction.commit()?;
        }
        let webhook = self.webhook(&id)?.ok_or_else(|| WebhookError::NotFound(id.clone()))?;
        Ok(CreatedWebhook { webhook, secret })
    }

    /// Every subscription, oldest first.
    pub fn webhooks(&self) -> anyhow::Result<Vec<WebhookInfo>> {
        let connection = self.read();
        let mut statement =
            connection.prepare(&format!("SELECT {INFO_COLUMNS} FROM webhooks ORDER BY created_at, id"))?;
        let rows = statement.query_map([], webhook_info)?.collect::<Result<Vec<_>, _>>()?;
        drop(statement);
        rows.into_iter().map(|info| with_deliveries(&connection, info)).collect()
    }

    /// One subscription.
    pub fn webhook(&self, id: &str) -> anyhow::Result<Option<WebhookInfo>> {
        let connection = self.read();
        let info = connection
            .query_row(
                &format!("SELECT {INFO_COLUMNS} FROM webhooks WHERE id = ?1"),
                params![id],
                webhook_info,
            )
            .optional()?;
        info.map(|info| with_deliveries(&connection, info)).transpose()
    }

    /// Removes a subscription and its held deliveries; false when there was none.
    pub fn remove_webhook(&self, id: &str) -> anyhow::Result<bool> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        transaction.execute("DELETE FROM webhook_deliveries WHERE webhook_id = ?1", params![id])?;
        let removed = transaction.execute("DELETE FROM webhooks WHERE id = ?1", params![id])? > 0;
        transaction.commit()?;
        Ok(removed)
    }

    /// Pauses a subscription: nothing is sent until it is resumed; records are still queued, up to
    /// `webhooks.max_pending_per_webhook`.
    pub fn pause_webhook(&self, id: &str, reason: PauseReason, detail: &str) -> Result<(), WebhookError> {
        let changed = self.lock().execute(
            "UPDATE webhooks SET paused_reason = ?2, paused_at = ?3, pause_detail = ?4, generation = generation + 1
             WHERE id = ?1",
            params![id, reason.as_str(), crate::store::now(), detail],
        )?;
        if changed == 0 {
            return Err(WebhookError::NotFound(id.to_owned()));
        }
        Ok(())
    }

    /// Resumes a subscription at once (the next delivery is attempted now, with a new retry window). Its
    /// failed deliveries are retried first, in their order, or deleted when `discard_failed`.
    pub fn resume_webhook(&self, id: &str, discard_failed: bool) -> Result<(), WebhookError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        let changed = transaction.execute(
            "UPDATE webhooks SET paused_reason = NULL, paused_at = NULL, pause_detail = NULL,
                 generation = generation + 1 WHERE id = ?1",
            params![id],
        )?;
        if changed == 0 {
            return Err(WebhookError::NotFound(id.to_owned()));
        }
        if discard_failed {
            transaction.execute(
                "DELETE FROM webhook_deliveries WHERE webhook_id = ?1 AND failed = 1",
                params![id],
            )?;
        }
        transaction.execute(
            "UPDATE webhook_deliveries SET failed = 0, attempts = 0, first_attempt_ms = NULL, next_attempt_ms = 0
             WHERE webhook_id = ?1",
            params![id],
        )?;
        transaction.commit()?;
        Ok(())
    }

    /// A subscription's held deliveries in order, optionally only the pending or only the failed ones.
    pub fn webhook_deliveries(
        &self,
        id: &str,
        failed: Option<bool>,
        limit: usize,
    ) -> anyhow::Result<Vec<DeliveryInfo>> {
        let connection = self.read();
        let mut statement = connection.prepare(
            "SELECT seq, message_id, record_cursor, failed, attempts, created_at, first_attempt_ms,
                    next_attempt_ms, last_status, last_error
             FROM webhook_deliveries WHERE webhook_id = ?1 AND (?2 IS NULL OR failed = ?2)
             ORDER BY seq LIMIT ?3",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = statement.query_map(params![id, failed, limit], |row| {
            let failed: bool = row.get(3)?;
            Ok(DeliveryInfo {
                seq: row.get(0)?,
                message_id: row.get(1)?,
                cursor: row.get(2)?,
                state: if failed { "failed" } else { "pending" }.to_owned(),
                attempts: row.get(4)?,
                created_at: row.get(5)?,
                first_attempt_at: row.get::<_, Option<i64>>(6)?.map(rfc3339_ms),
                next_attempt_at: (!failed).then(|| row.get::<_, i64>(7).map(rfc3339_ms)).transpose()?,
                last_status: row.get(8)?,
                last_error: row.get(9)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The id every delivery's `webhook-id` starts with, unique to this store: `msg_{instance}_{cursor}`.
    pub(crate) fn instance_id(&self) -> anyhow::Result<String> {
        Ok(self
            .read()
            .query_row("SELECT value FROM store_meta WHERE key = 'instance'", [], |row| row.get(0))?)
    }

    /// Every subscription's id and generation (which changes with every change a running dispatcher must
    /// see: created, paused, resumed).
    pub(crate) fn webhook_generations(&self) -> anyhow::Result<Vec<(String, i64)>> {
        let connection = self.read();
        let mut statement = connection.prepare("SELECT id, generation FROM webhooks")?;
        let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// What a subscription needs to deliver, with its secret.
    pub(crate) fn webhook_target(&self, id: &str) -> anyhow::Result<Option<WebhookTarget>> {
        let connection = self.read();
        let target = connection
            .query_row(
                "SELECT url, secret, ca_pem, filter, generation, paused_reason IS NOT NULL, cursor
                 FROM webhooks WHERE id = ?1",
                params![id],
                |row| {
                    let filter: String = row.get(3)?;
                    Ok(WebhookTarget {
                        url: row.get(0)?,
                        secret: row.get(1)?,
                        ca_pem: row.get(2)?,
                        filter: serde_json::from_str(&filter).unwrap_or_default(),
                        generation: row.get(4)?,
                        paused: row.get(5)?,
                        cursor: row.get(6)?,
                    })
                },
            )
            .optional()?;
        Ok(target)
    }

    /// Inserts deliveries and moves the subscription's cursor from `from` to `to` in one transaction, adding
    /// `missed` to its missed records. Returns the deliveries it now holds, or `None` when its cursor is no
    /// longer `from` (it was removed or changed meanwhile) and nothing was written.
    pub(crate) fn queue_deliveries(
        &self,
        id: &str,
        from: i64,
        to: i64,
        deliveries: &[NewDelivery],
        missed: u64,
    ) -> anyhow::Result<Option<u64>> {
        let created_at = crate::store::now();
        let mut connection = self.lock_deliveries();
        let transaction = connection.transaction()?;
        let moved = transaction.execute(
            "UPDATE webhooks SET cursor = ?3, missed = missed + ?4 WHERE id = ?1 AND cursor = ?2",
            params![id, from, to, i64::try_from(missed).unwrap_or(i64::MAX)],
        )?;
        if moved == 0 {
            return Ok(None);
        }
        {
            let mut insert = transaction.prepare_cached(
                "INSERT INTO webhook_deliveries (webhook_id, message_id, record_cursor, payload, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for delivery in deliveries {
                insert.execute(params![
                    id,
                    delivery.message_id,
                    delivery.cursor,
                    delivery.payload,
                    created_at
                ])?;
            }
        }
        let held = held(&transaction, id)?;
        transaction.commit()?;
        Ok(Some(held))
    }

    /// Deliveries a subscription holds, pending or failed.
    pub(crate) fn held_deliveries(&self, id: &str) -> anyhow::Result<u64> {
        held(&self.read(), id)
    }

    /// The subscription's next delivery in order, if any.
    pub(crate) fn next_delivery(&self, id: &str) -> anyhow::Result<Option<Delivery>> {
        let connection = self.read();
        let delivery = connection
            .query_row(
                "SELECT seq, message_id, payload, attempts, first_attempt_ms, next_attempt_ms
                 FROM webhook_deliveries WHERE webhook_id = ?1 AND failed = 0 ORDER BY seq LIMIT 1",
                params![id],
                |row| {
                    Ok(Delivery {
                        seq: row.get(0)?,
                        message_id: row.get(1)?,
                        payload: row.get(2)?,
                        attempts: row.get(3)?,
                        first_attempt_ms: row.get(4)?,
                        next_attempt_ms: row.get(5)?,
                    })
                },
            )
            .optional()?;
        Ok(delivery)
    }

    /// The receiver acknowledged a delivery: it is deleted and counted.
    pub(crate) fn delivery_succeeded(&self, id: &str, seq: i64) -> anyhow::Result<()> {
        let mut connection = self.lock_deliveries();
        let transaction = connection.transaction()?;
        transaction.execute("DELETE FROM webhook_deliveries WHERE seq = ?1", params![seq])?;
        transaction.execute(
            "UPDATE webhooks SET delivered = delivered + 1, last_success_at = ?2 WHERE id = ?1",
            params![id, crate::store::now()],
        )?;
        transaction.commit()?;
        Ok(())
    }

    /// An attempt failed and the delivery will be retried at `attempt.next_attempt_ms`.
    pub(crate) fn delivery_retried(&self, id: &str, seq: i64, attempt: &FailedAttempt) -> anyhow::Result<()> {
        let mut connection = self.lock_deliveries();
        let transaction = connection.transaction()?;
        transaction.execute(
            "UPDATE webhook_deliveries SET attempts = ?2, first_attempt_ms = ?3, next_attempt_ms = ?4,
                 last_status = ?5, last_error = ?6 WHERE seq = ?1",
            params![
                seq,
                attempt.attempts,
                attempt.first_attempt_ms,
                attempt.next_attempt_ms,
                attempt.status,
                attempt.error
            ],
        )?;
        transaction.execute(
            "UPDATE webhooks SET last_failure_at = ?2, last_error = ?3 WHERE id = ?1",
            params![id, crate::store::now(), attempt.error],
        )?;
        transaction.commit()?;
        Ok(())
    }

    /// A delivery exhausted its retry window: it is marked failed (held, counted) and the subscription
    /// paused, so that nothing after it is sent out of order.
    pub(crate) fn delivery_exhausted(
        &self,
        id: &str,
        seq: i64,
        attempt: &FailedAttempt,
        detail: &str,
    ) -> anyhow::Result<()> {
        let now = crate::store::now();
        let mut connection = self.lock_deliveries();
        let transaction = connection.transaction()?;
        transaction.execute(
            "UPDATE webhook_deliveries SET failed = 1, attempts = ?2, first_attempt_ms = ?3, last_status = ?4,
                 last_error = ?5 WHERE seq = ?1",
            params![seq, attempt.attempts, attempt.first_attempt_ms, attempt.status, attempt.error],
        )?;
        transaction.execute(
            "UPDATE webhooks SET failed = failed + 1, last_failure_at = ?2, last_error = ?3,
                 paused_reason = 'failing', paused_at = ?2, pause_detail = ?4, generation = generation + 1
             WHERE id = ?1",
            params![id, now, attempt.error, detail],
        )?;
        transaction.commit()?;
        Ok(())
    }
}

fn held(connection: &rusqlite::Connection, id: &str) -> anyhow::Result<u64> {
    let count: i64 = connection.query_row(
        "SELECT COUNT(*) FROM webhook_deliveries WHERE webhook_id = ?1",
        params![id],
        |row| row.get(0),
    )?;
    Ok(u64::try_from(count).unwrap_or(0))
}

fn webhook_info(row: &rusqlite::Row<'_>) -> rusqlite::Result<WebhookInfo> {
    let filter: String = row.get(3)?;
    let paused_reason = row.get::<_, Option<String>>(7)?.map(|reason| PauseReason::parse(&reason));
    let count = |index: usize| row.get::<_, i64>(index).map(|count| u64::try_from(count).unwrap_or(0));
    Ok(WebhookInfo {
        id: row.get(0)?,
        url: row.get(1)?,
        description: row.get(2)?,
        filter: serde_json::from_str(&filter).unwrap_or_default(),
        custom_ca: row.get(4)?,
        created_at: row.get(5)?,
        created_by: row.get(6)?,
        state: if paused_reason.is_some() { "paused" } else { "active" }.to_owned(),
        health: if paused_reason.is_some() { "paused" } else { "healthy" }.to_owned(),
        paused_reason,
        paused_at: row.get(8)?,
        pause_detail: row.get(9)?,
        cursor: row.get(10)?,
        counts: WebhookCounts {
            delivered_total: count(11)?,
            failed_total: count(12)?,
            missed_total: count(13)?,
            ..WebhookCounts::default()
        },
        retrying: None,
        last_success_at: row.get(14)?,
        last_failure_at: row.get(15)?,
        last_error: row.get(16)?,
    })
}

/// Adds what the delivery rows say: how many are held, and the one being retried.
fn with_deliveries(connection: &rusqlite::Connection, mut info: WebhookInfo) -> anyhow::Result<WebhookInfo> {
    let (pending, failed): (i64, i64) = connection.query_row(
        "SELECT COALESCE(SUM(failed = 0), 0), COALESCE(SUM(failed = 1), 0) FROM webhook_deliveries
         WHERE webhook_id = ?1",
        params![info.id],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    info.counts.pending = u64::try_from(pending).unwrap_or(0);
    info.counts.failed = u64::try_from(failed).unwrap_or(0);
    info.retrying = connection
        .query_row(
            "SELECT message_id, attempts, first_attempt_ms, next_attempt_ms, last_status, last_error
             FROM webhook_deliveries WHERE webhook_id = ?1 AND failed = 0 ORDER BY seq LIMIT 1",
            params![info.id],
            |row| {
                Ok(WebhookRetry {
                    message_id: row.get(0)?,
                    attempts: row.get(1)?,
                    first_attempt_at: row.get::<_, Option<i64>>(2)?.map(rfc3339_ms),
                    next_attempt_at: rfc3339_ms(row.get(3)?),
                    last_status: row.get(4)?,
                    last_error: row.get(5)?,
                })
            },
        )
        .optional()?
        .filter(|retry| retry.attempts > 0);
    if info.retrying.is_some() && info.paused_reason.is_none() {
        info.health = "failing".to_owned();
    }
    Ok(info)
}

/// A new subscription id: `wh_` and 20 hexadecimal digits.
fn new_webhook_id() -> String {
    let mut bytes = [0u8; 10];
    crate::store::random_bytes(&mut bytes);
    format!("wh_{}", hex::encode(bytes))
}

/// Milliseconds since the epoch as RFC 3339 (UTC, milliseconds).
pub(crate) fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FeedQuery;
    use nbwss_protocol::ReceivedRecord;

    fn job(id: i64, status: i64) -> ReceivedRecord {
        ReceivedRecord {
            notification_type: "INFO".into(),
            object: "JOB".into(),
            record: serde_json::json!({"jobId": id, "state": "DONE", "status": status}),
            problems: Vec::new(),
        }
    }

    fn new(url: &str) -> NewWebhook {
        NewWebhook { url: url.to_owned(), ..NewWebhook::default() }
    }

    #[test]
    fn subscriptions_are_created_listed_paused_resumed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let config = Webhooks { max_webhooks: 2, ..Webhooks::default() };
        store.store_notification("p1", "M1", &[job(1, 0), job(2, 1)]).unwrap();
        let created = store.create_webhook(new("https://hooks.example.com/a"), &config, "app").unwrap();
        assert!(created.secret.starts_with("whsec_"));
        assert!(created.webhook.id.starts_with("wh_") && created.webhook.id.len() == 23);
        assert_eq!(created.webhook.cursor, 2, "from now on by default");
        assert_eq!(created.webhook.health, "healthy");
        let replay = NewWebhook { after: Some(0), ..new("https://hooks.example.com/b") };
        assert_eq!(store.create_webhook(replay, &config, "cli").unwrap().webhook.cursor, 0);
        assert!(matches!(
            store.create_webhook(new("https://hooks.example.com/c"), &config, "app"),
            Err(WebhookError::TooMany(2))
        ));
        assert!(matches!(
            store.create_webhook(new("http://hooks.example.com/c"), &config, "app"),
            Err(WebhookError::Invalid(message)) if message.contains("https://")
        ));
        let id = created.webhook.id;
        let generation = |store: &Store| {
            store.webhook_generations().unwrap().into_iter().find(|(each, _)| *each == id).unwrap().1
        };
        let before = generation(&store);
        store.pause_webhook(&id, PauseReason::Manual, "maintenance").unwrap();
        let paused = store.webhook(&id).unwrap().unwrap();
        assert_eq!((paused.state.as_str(), paused.health.as_str()), ("paused", "paused"));
        assert_eq!(paused.paused_reason, Some(PauseReason::Manual));
        assert!(generation(&store) > before);
        store.resume_webhook(&id, false).unwrap();
        assert_eq!(store.webhook(&id).unwrap().unwrap().state, "active");
        assert!(matches!(
            store.pause_webhook("wh_nope", PauseReason::Manual, ""),
            Err(WebhookError::NotFound(_))
        ));
        assert!(store.remove_webhook(&id).unwrap());
        assert!(!store.remove_webhook(&id).unwrap());
        assert_eq!(store.webhooks().unwrap().len(), 1);
    }

    #[test]
    fn deliveries_are_queued_with_the_cursor_retried_exhausted_and_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let created =
            store.create_webhook(new("https://hooks.example.com/a"), &Webhooks::default(), "app").unwrap();
        let id = created.webhook.id;
        store.store_notification("p1", "M1", &[job(1, 0), job(2, 1)]).unwrap();
        let records =
            store.notifications(&FeedQuery { after: 0, limit: 10, ..FeedQuery::default() }).unwrap();
        let deliveries: Vec<NewDelivery> = records
            .iter()
            .map(|n| NewDelivery {
                message_id: format!("msg_x_{}", n.cursor),
                cursor: n.cursor,
                payload: "{}".into(),
            })
            .collect();
        assert_eq!(store.queue_deliveries(&id, 0, 2, &deliveries, 0).unwrap(), Some(2));
        assert_eq!(store.queue_deliveries(&id, 0, 2, &deliveries, 0).unwrap(), None, "the cursor moved");
        let first = store.next_delivery(&id).unwrap().unwrap();
        assert_eq!(first.message_id, "msg_x_1");
        let attempt = FailedAttempt {
            attempts: 1,
            first_attempt_ms: 1_000,
            next_attempt_ms: 2_000,
            status: Some(500),
            error: "HTTP 500".into(),
        };
        store.delivery_retried(&id, first.seq, &attempt).unwrap();
        let info = store.webhook(&id).unwrap().unwrap();
        assert_eq!(info.health, "failing");
        assert_eq!(info.retrying.as_ref().unwrap().attempts, 1);
        assert_eq!(info.counts.pending, 2);
        store.delivery_exhausted(&id, first.seq, &attempt, "a day of failures").unwrap();
        let info = store.webhook(&id).unwrap().unwrap();
        assert_eq!((info.health.as_str(), info.paused_reason), ("paused", Some(PauseReason::Failing)));
        assert_eq!((info.counts.pending, info.counts.failed, info.counts.failed_total), (1, 1, 1));
        assert_eq!(store.next_delivery(&id).unwrap().unwrap().message_id, "msg_x_2");
        let failed = store.webhook_deliveries(&id, Some(true), 10).unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!((failed[0].state.as_str(), failed[0].last_status), ("failed", Some(500)));
        // Resumed: the failed delivery comes first again, with a new window.
        store.resume_webhook(&id, false).unwrap();
        let again = store.next_delivery(&id).unwrap().unwrap();
        assert_eq!((again.message_id.as_str(), again.attempts, again.first_attempt_ms), ("msg_x_1", 0, None));
        store.delivery_succeeded(&id, again.seq).unwrap();
        let info = store.webhook(&id).unwrap().unwrap();
        assert_eq!((info.counts.pending, info.counts.delivered_total), (1, 1));
        assert!(info.last_success_at.is_some());
        // Or discarded.
        let next = store.next_delivery(&id).unwrap().unwrap();
        store.delivery_exhausted(&id, next.seq, &attempt, "again").unwrap();
        store.resume_webhook(&id, true).unwrap();
        assert!(store.next_delivery(&id).unwrap().is_none());
        assert_eq!(store.held_deliveries(&id).unwrap(), 0);
        assert!(store.instance_id().unwrap().len() == 12);
    }
}

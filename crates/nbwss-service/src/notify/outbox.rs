//! The durable outbox: notification records in detection order, per-group delivery positions, and every
//! NOTIFICATION REQUEST built but not yet acknowledged, in one SQLite database (WAL).
//!
//! Durability: WAL with `synchronous=FULL`, so a committed transaction survives power loss, not only a
//! crash of the process. With `NORMAL` a power loss may undo the last commits; the detector would then have
//! forgotten both the records and the watermark advance (they commit together), which is safe for jobs but
//! would lose an event whose trace the primary server no longer shows (an image that is gone). Commits are
//! one per poll, not one per record, so the extra fsync is cheap.
//!
//! Groups: a newly registered group starts at the oldest record still in the outbox, so it receives
//! everything the outbox still holds (with no group at all, records are kept until the first group
//! appears or the cap is reached). A group that is no longer registered is forgotten with its messages.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use nbwss_protocol::{Body, Codec, Message};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::metrics::{GroupLabel, NotifyMetrics};
use super::{group_records, now_millis, Record};

/// Outbox limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxConfig {
    /// Records held at most (`outbox.maxRecords`).
    pub max_records: usize,
    /// Records per NOTIFICATION REQUEST (`notification.batchSize`).
    pub batch_size: usize,
    /// Messages sent and unacknowledged per group (`notification.maxUnacked`).
    pub max_unacked: usize,
    /// Largest encoded NOTIFICATION REQUEST (`message.maxBytes`): a batch that would be larger is split,
    /// so the endpoint never receives a message it must refuse by closing the connection (D4).
    pub max_message_bytes: usize,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        let properties = nbwss_protocol::Properties::default();
        Self::from_properties(&properties)
    }
}

impl OutboxConfig {
    /// The limits from `nbwss.properties`.
    pub fn from_properties(properties: &nbwss_protocol::Properties) -> Self {
        Self {
            max_records: properties.outbox_max_records,
            batch_size: properties.notification_batch_size,
            max_unacked: properties.notification_max_unacked,
            max_message_bytes: properties.message_max_bytes,
        }
    }
}

/// What can go wrong with the outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The database could not be opened, read or written.
    #[error("notification outbox database: {0}")]
    Database(#[from] rusqlite::Error),
    /// A stored record could not be read back.
    #[error("notification outbox record: {0}")]
    Record(#[from] serde_json::Error),
    /// The outbox holds `held` records and may hold `cap`; the new records were refused (not dropped: the
    /// caller keeps them or detects them again).
    #[error("notification outbox full: {held} records held, cap {cap} (outbox.maxRecords); {refused} new record(s) refused until endpoints acknowledge")]
    Full {
        /// Records in the outbox.
        held: usize,
        /// The cap.
        cap: usize,
        /// Records refused.
        refused: usize,
    },
    /// One record alone makes a NOTIFICATION REQUEST larger than `message.maxBytes`: it can never be sent.
    #[error(
        "a notification record alone makes a {size}-byte message, more than message.maxBytes ({limit} bytes)"
    )]
    RecordTooBig {
        /// The encoded size of a message carrying only this record.
        size: usize,
        /// `message.maxBytes`.
        limit: usize,
    },
    /// The database file could not be created or its permissions set.
    #[error("notification outbox file: {0}")]
    Files(String),
    /// The database lock was poisoned by a panic elsewhere.
    #[error("notification outbox lock poisoned")]
    Poisoned,
}

/// A NOTIFICATION REQUEST committed for a group: its id and exact text, sent as is every time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMessage {
    /// The envelope id.
    pub id: String,
    /// The encoded message.
    pub text: String,
    /// Records it carries.
    pub records: usize,
    /// Times it was sent so far.
    pub sends: u32,
}

/// The delivery state of one group, for metrics and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStats {
    /// The server group.
    pub group: String,
    /// Records the group has not acknowledged (sent or not).
    pub depth: usize,
    /// When the oldest unacknowledged message was first sent (Unix ms), if any.
    pub oldest_unacked_sent_ms: Option<i64>,
    /// Messages built and not acknowledged.
    pub unacked_messages: usize,
}

/// What the detector remembers of an image, to tell CREATE, UPDATE, DELETE and NO_LOCAL_COPY_AVAILABLE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenImage {
    /// Backup id.
    pub backup_id: String,
    /// Client name.
    pub client_name: String,
    /// Upper-case client (policy) type.
    pub client_type: String,
    /// Backup time, Unix seconds.
    pub backup_time: i64,
    /// Expiration and copies, as compared between polls.
    pub fingerprint: String,
    /// Whether a local (non-replica) copy remains.
    pub has_local_copy: bool,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    object TEXT NOT NULL,
    record TEXT NOT NULL,
    detected_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS groups (
    group_id TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    group_id TEXT NOT NULL,
    text TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    records INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    first_sent_ms INTEGER,
    last_sent_ms INTEGER,
    sends INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_by_group ON messages (group_id, first_seq);
CREATE TABLE IF NOT EXISTS watermarks (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS seen_jobs (
    job_id INTEGER PRIMARY KEY,
    done INTEGER NOT NULL,
    last_update_ms INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS seen_images (
    backup_id TEXT PRIMARY KEY,
    client_name TEXT NOT NULL,
    client_type TEXT NOT NULL,
    backup_time INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    has_local_copy INTEGER NOT NULL
);
";

/// The outbox. Every method is one short local transaction.
#[derive(Debug)]
pub struct Outbox {
    connection: Mutex<Connection>,
    config: OutboxConfig,
    metrics: NotifyMetrics,
    appended: tokio::sync::watch::Sender<u64>,
}

impl Outbox {
    /// Opens (creating if needed) the outbox database at `path`.
    pub fn open(path: &Path, config: OutboxConfig, metrics: NotifyMetrics) -> Result<Self, OutboxError> {
        // Job and client names of the backup estate: owner-only like the rest of the data directory.
        crate::files::prepare_private_database(path)
            .map_err(|error| OutboxError::Files(format!("{error:#}")))?;
        let connection = Connection::open(path)?;
        connection.busy_timeout(Duration::from_secs(10))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.execute_batch(SCHEMA)?;
        Ok(Self {
            connection: Mutex::new(connection),
            config,
            metrics,
            appended: tokio::sync::watch::Sender::new(0),
        })
    }

    /// The limits in force.
    pub fn config(&self) -> OutboxConfig {
        self.config
    }

    /// The metrics this outbox updates.
    pub fn metrics(&self) -> &NotifyMetrics {
        &self.metrics
    }

    /// Changes whenever records are appended; delivery loops wait on it.
    pub fn appended(&self) -> tokio::sync::watch::Receiver<u64> {
        self.appended.subscribe()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Connection>, OutboxError> {
        self.connection.lock().map_err(|_| OutboxError::Poisoned)
    }

    /// Appends records in one transaction, in the given order. Refused whole when the cap would be passed,
    /// or when one record alone would make a message larger than `max_message_bytes` (it could never be
    /// sent; the caller is told now rather than the record being skipped later).
    pub fn append(&self, records: &[Record]) -> Result<usize, OutboxError> {
        let limit = self.config.max_message_bytes;
        for record in records {
            let alone = Message::new(Body::NotificationRequest(group_records(vec![record.clone()])));
            let size = Codec::default().encode(&alone).len();
            if size > limit {
                return Err(OutboxError::RecordTooBig { size, limit });
            }
        }
        self.detect(|detection| {
            for record in records {
                detection.push(record.clone());
            }
            Ok(())
        })?;
        Ok(records.len())
    }

    /// Runs detector logic in one transaction: it reads and updates the detector's state and pushes
    /// records; everything commits together, or nothing does (when `work` fails or the outbox is full).
    pub fn detect<T>(
        &self,
        work: impl FnOnce(&mut Detection<'_>) -> Result<T, OutboxError>,
    ) -> Result<T, OutboxError> {
        let mut connection = self.lock()?;
        let transaction = connection.transaction()?;
        let mut detection = Detection { transaction: &transaction, records: Vec::new() };
        let value = work(&mut detection)?;
        let records = std::mem::take(&mut detection.records);
        if !records.is_empty() {
            let held = count_records(&transaction)?;
            // An empty outbox takes any batch, so a single poll larger than the cap cannot stall detection.
            if held > 0 && held + records.len() > self.config.max_records {
                drop(transaction);
                self.metrics.refused_records.inc_by(records.len() as u64);
                self.metrics.outbox_full.set(1);
                let error = OutboxError::Full { held, cap: self.config.max_records, refused: records.len() };
                tracing::error!(%error, "notification outbox full: detection paused, nothing dropped");
                return Err(error);
            }
            let now = now_millis();
            let mut insert = transaction
                .prepare_cached("INSERT INTO records (object, record, detected_ms) VALUES (?1, ?2, ?3)")?;
            for record in &records {
                insert.execute(params![record.object().as_str(), serde_json::to_string(record)?, now])?;
            }
            drop(insert);
        }
        transaction.commit()?;
        self.metrics.outbox_full.set(0);
        if !records.is_empty() {
            self.metrics.appended_records.inc_by(records.len() as u64);
            self.appended.send_modify(|count| *count = count.wrapping_add(1));
        }
        Ok(value)
    }

    /// Makes the known groups exactly `groups`: new ones start at the oldest record held, missing ones are
    /// forgotten with their messages. Then deletes records every remaining group has acknowledged.
    pub fn sync_groups(&self, groups: &[String]) -> Result<(), OutboxError> {
        let mut connection = self.lock()?;
        let transaction = connection.transaction()?;
        let known: Vec<String> = {
            let mut select = transaction.prepare("SELECT group_id FROM groups")?;
            let rows = select.query_map([], |row| row.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        for group in known.iter().filter(|group| !groups.contains(group)) {
            transaction.execute("DELETE FROM messages WHERE group_id = ?1", [group])?;
            transaction.execute("DELETE FROM groups WHERE group_id = ?1", [group])?;
            tracing::info!(group, "server group no longer active: its notification backlog is dropped");
        }
        let start: i64 = transaction.query_row(
            "SELECT COALESCE((SELECT MIN(seq) - 1 FROM records), \
             (SELECT seq FROM sqlite_sequence WHERE name = 'records'), 0)",
            [],
            |row| row.get(0),
        )?;
        for group in groups.iter().filter(|group| !known.contains(group)) {
            transaction
                .execute("INSERT INTO groups (group_id, position) VALUES (?1, ?2)", params![group, start])?;
            tracing::info!(group, after_record = start, "server group registered for notifications");
        }
        prune(&transaction)?;
        transaction.commit()?;
        Ok(())
    }

    /// The groups known, in name order.
    pub fn groups(&self) -> Result<Vec<String>, OutboxError> {
        let connection = self.lock()?;
        let mut select = connection.prepare("SELECT group_id FROM groups ORDER BY group_id")?;
        let rows = select.query_map([], |row| row.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Builds and commits the group's next NOTIFICATION REQUEST from the records after its position, unless
    /// the group has none or already has `max_unacked` messages out. The message is committed before it is
    /// returned, so it is sent (and resent) with this id and text. It carries up to `batch_size` records,
    /// fewer when more would pass `max_message_bytes`; a record that cannot fit in any message is skipped for
    /// this group with an error log and a metric (it could never be delivered, and must not stall the rest).
    pub fn next_message(&self, group: &str) -> Result<Option<PendingMessage>, OutboxError> {
        let mut connection = self.lock()?;
        let transaction = connection.transaction()?;
        let Some(mut position) = group_position(&transaction, group)? else { return Ok(None) };
        let out: usize =
            transaction.query_row("SELECT COUNT(*) FROM messages WHERE group_id = ?1", [group], |row| {
                row.get::<_, i64>(0)
            })? as usize;
        if out >= self.config.max_unacked {
            return Ok(None);
        }
        let pending = loop {
            let rows = {
                let mut select = transaction
                    .prepare_cached("SELECT seq, record FROM records WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
                let rows = select.query_map(params![position, self.config.batch_size as i64], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?;
                rows.collect::<Result<Vec<(i64, String)>, _>>()?
            };
            if rows.is_empty() {
                break None;
            }
            let built = self.build(group, &rows)?;
            position = built.last_seq;
            if let Some(pending) = built.message {
                insert_message(&transaction, group, &pending, built.first_seq, built.last_seq)?;
                break Some(pending);
            }
        };
        transaction
            .execute("UPDATE groups SET position = ?1 WHERE group_id = ?2", params![position, group])?;
        transaction.commit()?;
        Ok(pending)
    }

    /// Splits every committed message larger than `max_message_bytes` (the limit was lowered since it was
    /// built) into messages that fit, in the same order; returns how many were split. Their records were
    /// never acknowledged, so nothing is lost; an endpoint that did see the old message may see its records
    /// again under new ids (delivery is at least once, D12).
    pub fn split_oversized(&self) -> Result<usize, OutboxError> {
        let mut connection = self.lock()?;
        let transaction = connection.transaction()?;
        let oversized: Vec<(String, String, i64, i64)> = {
            let mut select = transaction.prepare(
                "SELECT id, group_id, first_seq, last_seq FROM messages \
                 WHERE length(CAST(text AS BLOB)) > ?1 ORDER BY group_id, first_seq",
            )?;
            let rows = select.query_map([self.config.max_message_bytes as i64], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })?;
            rows.collect::<Result<_, _>>()?
        };
        for (id, group, first, last) in &oversized {
            transaction.execute("DELETE FROM messages WHERE id = ?1", [id])?;
            let mut rows: Vec<(i64, String)> = {
                let mut select = transaction.prepare_cached(
                    "SELECT seq, record FROM records WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq",
                )?;
                let rows = select.query_map(params![first, last], |row| Ok((row.get(0)?, row.get(1)?)))?;
                rows.collect::<Result<_, _>>()?
            };
            while !rows.is_empty() {
                let built = self.build(group, &rows)?;
                if let Some(pending) = &built.message {
                    insert_message(&transaction, group, pending, built.first_seq, built.last_seq)?;
                }
                rows.retain(|(seq, _)| *seq > built.last_seq);
            }
            tracing::warn!(
                group,
                id,
                "notification message larger than message.maxBytes split into smaller ones"
            );
        }
        transaction.commit()?;
        Ok(oversized.len())
    }

    /// The largest message of the first records of `rows` (in order, at most all) that fits in
    /// `max_message_bytes`; or, when the first record alone does not fit, no message and that record
    /// skipped loudly.
    fn build(&self, group: &str, rows: &[(i64, String)]) -> Result<Built, OutboxError> {
        let records: Vec<Record> =
            rows.iter().map(|(_, text)| serde_json::from_str(text)).collect::<Result<_, _>>()?;
        let limit = self.config.max_message_bytes;
        let encode = |count: usize| {
            let message = Message::new(Body::NotificationRequest(group_records(records[..count].to_vec())));
            let text = Codec::default().encode(&message);
            (message, text)
        };
        let first_seq = rows[0].0;
        let mut best = encode(records.len());
        let mut count = records.len();
        if best.1.len() > limit {
            // Binary search for the largest prefix that fits: `fits` fits, `fails` does not.
            let single = encode(1);
            if single.1.len() > limit {
                let error = OutboxError::RecordTooBig { size: single.1.len(), limit };
                tracing::error!(group, %error, record = rows[0].1.chars().take(200).collect::<String>(),
                    "notification record skipped: it can never be sent");
                self.metrics.unsendable_records.inc();
                return Ok(Built { message: None, first_seq, last_seq: first_seq });
            }
            let (mut fits, mut fails) = (1, records.len());
            best = single;
            while fails - fits > 1 {
                let middle = (fits + fails) / 2;
                let candidate = encode(middle);
                if candidate.1.len() <= limit {
                    fits = middle;
                    best = candidate;
                } else {
                    fails = middle;
                }
            }
            count = fits;
        }
        let (message, text) = best;
        let pending = PendingMessage { id: message.id, text, records: count, sends: 0 };
        Ok(Built { message: Some(pending), first_seq, last_seq: rows[count - 1].0 })
    }

    /// Every unacknowledged message of the group, in detection order.
    pub fn unacked(&self, group: &str) -> Result<Vec<PendingMessage>, OutboxError> {
        self.select_messages(group, None)
    }

    /// The group's unacknowledged messages never sent, or last sent at least `rate` before `now_ms`, in
    /// detection order.
    pub fn due_for_resend(
        &self,
        group: &str,
        now_ms: i64,
        rate: Duration,
    ) -> Result<Vec<PendingMessage>, OutboxError> {
        let rate_ms = i64::try_from(rate.as_millis()).unwrap_or(i64::MAX);
        self.select_messages(group, Some(now_ms.saturating_sub(rate_ms)))
    }

    fn select_messages(
        &self,
        group: &str,
        sent_before: Option<i64>,
    ) -> Result<Vec<PendingMessage>, OutboxError> {
        let connection = self.lock()?;
        let mut select = connection.prepare_cached(
            "SELECT id, text, records, sends FROM messages WHERE group_id = ?1 \
             AND (?2 IS NULL OR last_sent_ms IS NULL OR last_sent_ms <= ?2) ORDER BY first_seq",
        )?;
        let rows = select.query_map(params![group, sent_before], |row| {
            Ok(PendingMessage {
                id: row.get(0)?,
                text: row.get(1)?,
                records: row.get::<_, i64>(2)? as usize,
                sends: row.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records that the message was (re)sent at `now_ms`; counts it as sent or resent.
    pub fn mark_sent(&self, group: &str, id: &str, now_ms: i64) -> Result<(), OutboxError> {
        let connection = self.lock()?;
        let sends: Option<u32> = connection
            .query_row(
                "UPDATE messages SET sends = sends + 1, last_sent_ms = ?3, \
                 first_sent_ms = COALESCE(first_sent_ms, ?3) WHERE group_id = ?1 AND id = ?2 RETURNING sends",
                params![group, id, now_ms],
                |row| row.get(0),
            )
            .optional()?;
        match sends {
            Some(1) => self.metrics.sent.get_or_create(&GroupLabel::of(group)).inc(),
            Some(_) => self.metrics.resent.get_or_create(&GroupLabel::of(group)).inc(),
            None => 0,
        };
        Ok(())
    }

    /// The group acknowledged message `id`: forget the message and delete the records every group has
    /// now acknowledged. Returns whether the id named an unacknowledged message of the group.
    pub fn ack(&self, group: &str, id: &str) -> Result<bool, OutboxError> {
        let mut connection = self.lock()?;
        let transaction = connection.transaction()?;
        let removed = transaction
            .execute("DELETE FROM messages WHERE group_id = ?1 AND id = ?2", params![group, id])?;
        if removed > 0 {
            prune(&transaction)?;
        }
        transaction.commit()?;
        if removed > 0 {
            self.metrics.acknowledged.get_or_create(&GroupLabel::of(group)).inc();
        }
        Ok(removed > 0)
    }

    /// The group acknowledged messages `ids`, in one transaction: as [`Outbox::ack`] for each. Returns how
    /// many named an unacknowledged message of the group.
    pub fn ack_all(&self, group: &str, ids: &[String]) -> Result<usize, OutboxError> {
        let mut connection = self.lock()?;
        let transaction = connection.transaction()?;
        let mut removed = 0;
        {
            let mut delete =
                transaction.prepare_cached("DELETE FROM messages WHERE group_id = ?1 AND id = ?2")?;
            for id in ids {
                removed += delete.execute(params![group, id])?;
            }
        }
        if removed > 0 {
            prune(&transaction)?;
        }
        transaction.commit()?;
        if removed > 0 {
            self.metrics.acknowledged.get_or_create(&GroupLabel::of(group)).inc_by(removed as u64);
        }
        Ok(removed)
    }

    /// Records held.
    pub fn record_count(&self) -> Result<usize, OutboxError> {
        Ok(count_records(&*self.lock()?)?)
    }

    /// Per-group delivery state; also refreshes the depth and age gauges.
    pub fn stats(&self, now_ms: i64) -> Result<Vec<GroupStats>, OutboxError> {
        let connection = self.lock()?;
        let mut select = connection.prepare_cached(
            "SELECT g.group_id, \
               (SELECT COUNT(*) FROM records r WHERE r.seq >= \
                  COALESCE((SELECT MIN(first_seq) FROM messages m WHERE m.group_id = g.group_id), g.position + 1)), \
               (SELECT MIN(first_sent_ms) FROM messages m WHERE m.group_id = g.group_id), \
               (SELECT COUNT(*) FROM messages m WHERE m.group_id = g.group_id) \
             FROM groups g ORDER BY g.group_id",
        )?;
        let rows = select.query_map([], |row| {
            Ok(GroupStats {
                group: row.get(0)?,
                depth: row.get::<_, i64>(1)? as usize,
                oldest_unacked_sent_ms: row.get(2)?,
                unacked_messages: row.get::<_, i64>(3)? as usize,
            })
        })?;
        let stats: Vec<GroupStats> = rows.collect::<Result<_, _>>()?;
        for group in &stats {
            let label = GroupLabel::of(&group.group);
            self.metrics.outbox_depth.get_or_create(&label).set(group.depth as i64);
            let age = group.oldest_unacked_sent_ms.map(|sent| (now_ms - sent).max(0) as f64 / 1000.0);
            self.metrics.oldest_unacked_age_seconds.get_or_create(&label).set(age.unwrap_or(0.0));
        }
        Ok(stats)
    }
}

/// The detector's view inside one outbox transaction.
pub struct Detection<'a> {
    transaction: &'a Transaction<'a>,
    records: Vec<Record>,
}

impl std::fmt::Debug for Detection<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detection").field("records", &self.records.len()).finish_non_exhaustive()
    }
}

impl Detection<'_> {
    /// Queues a record; it is appended when the transaction commits.
    pub fn push(&mut self, record: Record) {
        self.records.push(record);
    }

    /// Records queued so far in this transaction.
    pub fn pushed(&self) -> &[Record] {
        &self.records
    }

    /// A stored watermark.
    pub fn watermark(&self, name: &str) -> Result<Option<String>, OutboxError> {
        Ok(self
            .transaction
            .query_row("SELECT value FROM watermarks WHERE name = ?1", [name], |row| row.get(0))
            .optional()?)
    }

    /// Stores a watermark.
    pub fn set_watermark(&self, name: &str, value: &str) -> Result<(), OutboxError> {
        self.transaction.execute(
            "INSERT INTO watermarks (name, value) VALUES (?1, ?2) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            params![name, value],
        )?;
        Ok(())
    }

    /// Whether the job was seen before, and if so whether its DONE was reported.
    pub fn job(&self, job_id: i64) -> Result<Option<bool>, OutboxError> {
        Ok(self
            .transaction
            .query_row("SELECT done FROM seen_jobs WHERE job_id = ?1", [job_id], |row| row.get(0))
            .optional()?)
    }

    /// Remembers a job, whether it is done, and its `lastUpdateTime` (Unix ms).
    pub fn set_job(&self, job_id: i64, done: bool, last_update_ms: i64) -> Result<(), OutboxError> {
        self.transaction.execute(
            "INSERT INTO seen_jobs (job_id, done, last_update_ms) VALUES (?1, ?2, ?3) \
             ON CONFLICT (job_id) DO UPDATE SET done = excluded.done, last_update_ms = excluded.last_update_ms",
            params![job_id, done, last_update_ms],
        )?;
        Ok(())
    }

    /// Forgets done jobs last updated before `before_ms`: the job list is asked only for later updates,
    /// so they cannot be listed again. Returns how many were forgotten.
    pub fn forget_done_jobs(&self, before_ms: i64) -> Result<usize, OutboxError> {
        Ok(self
            .transaction
            .execute("DELETE FROM seen_jobs WHERE done = 1 AND last_update_ms < ?1", [before_ms])?)
    }

    /// What was seen of an image.
    pub fn image(&self, backup_id: &str) -> Result<Option<SeenImage>, OutboxError> {
        Ok(self
            .transaction
            .query_row(
                "SELECT backup_id, client_name, client_type, backup_time, fingerprint, has_local_copy \
                 FROM seen_images WHERE backup_id = ?1",
                [backup_id],
                seen_image,
            )
            .optional()?)
    }

    /// Every image seen and not deleted.
    pub fn images(&self) -> Result<Vec<SeenImage>, OutboxError> {
        let mut select = self.transaction.prepare(
            "SELECT backup_id, client_name, client_type, backup_time, fingerprint, has_local_copy \
             FROM seen_images ORDER BY backup_time, backup_id",
        )?;
        let rows = select.query_map([], seen_image)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Remembers an image.
    pub fn set_image(&self, image: &SeenImage) -> Result<(), OutboxError> {
        self.transaction.execute(
            "INSERT INTO seen_images (backup_id, client_name, client_type, backup_time, fingerprint, has_local_copy) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (backup_id) DO UPDATE SET \
             client_name = excluded.client_name, client_type = excluded.client_type, \
             backup_time = excluded.backup_time, fingerprint = excluded.fingerprint, \
             has_local_copy = excluded.has_local_copy",
            params![
                image.backup_id,
                image.client_name,
                image.client_type,
                image.backup_time,
                image.fingerprint,
                image.has_local_copy
            ],
        )?;
        Ok(())
    }

    /// Forgets an image (it left the catalog).
    pub fn remove_image(&self, backup_id: &str) -> Result<(), OutboxError> {
        self.transaction.execute("DELETE FROM seen_images WHERE backup_id = ?1", [backup_id])?;
        Ok(())
    }
}

fn seen_image(row: &rusqlite::Row<'_>) -> rusqlite::Result<SeenImage> {
    Ok(SeenImage {
        backup_id: row.get(0)?,
        client_name: row.get(1)?,
        client_type: row.get(2)?,
        backup_time: row.get(3)?,
        fingerprint: row.get(4)?,
        has_local_copy: row.get(5)?,
    })
}

fn count_records(connection: &Connection) -> rusqlite::Result<usize> {
    connection.query_row("SELECT COUNT(*) FROM records", [], |row| row.get::<_, i64>(0)).map(|n| n as usize)
}

/// A message built from the first records of a run, or a record skipped.
struct Built {
    /// The message, or `None` when the first record alone cannot fit in one.
    message: Option<PendingMessage>,
    /// The first record considered.
    first_seq: i64,
    /// The last record the message carries (or the record skipped).
    last_seq: i64,
}

fn insert_message(
    transaction: &Transaction<'_>,
    group: &str,
    message: &PendingMessage,
    first_seq: i64,
    last_seq: i64,
) -> rusqlite::Result<()> {
    transaction.execute(
        "INSERT INTO messages (id, group_id, text, first_seq, last_seq, records, created_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![message.id, group, message.text, first_seq, last_seq, message.records as i64, now_millis()],
    )?;
    Ok(())
}

fn group_position(connection: &Connection, group: &str) -> rusqlite::Result<Option<i64>> {
    connection
        .query_row("SELECT position FROM groups WHERE group_id = ?1", [group], |row| row.get(0))
        .optional()
}

/// Deletes the records every known group has acknowledged: those before each group's oldest unacknowledged
/// message, or up to its position when it has none. With no group known, nothing is deleted.
fn prune(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute(
        "DELETE FROM records WHERE seq < (SELECT MIN(low) FROM (SELECT \
           COALESCE((SELECT MIN(first_seq) FROM messages m WHERE m.group_id = g.group_id), g.position + 1) AS low \
         FROM groups g)) AND EXISTS (SELECT 1 FROM groups)",
        [],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nbwss_protocol::{ImageOperation, ImageRecord, JobRecord, JobState, JobType, ScheduleType};

    pub(crate) fn job(job_id: i64, state: JobState) -> Record {
        Record::Job(JobRecord {
            schedule_type: ScheduleType::Full,
            client_name: "client1".into(),
            status: 0,
            start_time: 1_700_000_000,
            state,
            policy_name: "p1".into(),
            parent_job_id: job_id,
            job_id,
            policy_type: "STANDARD".into(),
            job_type: JobType::Backup,
        })
    }

    fn image(backup_time: i64) -> Record {
        Record::Image(ImageRecord {
            client_type: "STANDARD".into(),
            client_name: "client1".into(),
            backup_time,
            created_time: backup_time + 60,
            operation_id: ImageOperation::Create,
            backup_id: format!("client1_{backup_time}"),
        })
    }

    fn config(batch_size: usize, max_unacked: usize, max_records: usize) -> OutboxConfig {
        OutboxConfig { max_records, batch_size, max_unacked, ..OutboxConfig::default() }
    }

    fn open(dir: &Path, config: OutboxConfig) -> Outbox {
        Outbox::open(&dir.join("outbox.sqlite3"), config, NotifyMetrics::default()).unwrap()
    }

    fn payload_of(message: &PendingMessage) -> Vec<nbwss_protocol::NotificationGroup> {
        match Codec::default().decode(&message.text).unwrap().body {
            Body::NotificationRequest(groups) => groups,
            other => panic!("not a notification request: {other:?}"),
        }
    }

    #[test]
    fn batches_in_detection_order_grouping_consecutive_objects() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path(), config(3, 10, 100));
        outbox.sync_groups(&["g".into()]).unwrap();
        outbox
            .append(&[job(1, JobState::Active), job(2, JobState::Active), image(10), job(1, JobState::Done)])
            .unwrap();
        let first = outbox.next_message("g").unwrap().unwrap();
        assert_eq!(first.records, 3);
        let groups = payload_of(&first);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].record_count(), 2);
        assert_eq!(groups[1].object(), nbwss_protocol::ObjectKind::Image);
        let second = outbox.next_message("g").unwrap().unwrap();
        assert_eq!(second.records, 1);
        assert!(outbox.next_message("g").unwrap().is_none());
        assert_ne!(first.id, second.id);
        assert_eq!(
            outbox.unacked("g").unwrap().iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
            [first.id.clone(), second.id.clone()]
        );
    }

    fn job_ids(message: &PendingMessage) -> Vec<i64> {
        payload_of(message)
            .into_iter()
            .flat_map(|group| match group {
                nbwss_protocol::NotificationGroup::Jobs { records, .. } => {
                    records.into_iter().map(|job| job.job_id).collect::<Vec<_>>()
                }
                other => panic!("not jobs: {other:?}"),
            })
            .collect()
    }

    fn with_client_name(job_id: i64, name_bytes: usize) -> Record {
        let Record::Job(mut record) = job(job_id, JobState::Done) else { unreachable!() };
        record.client_name = "c".repeat(name_bytes);
        Record::Job(record)
    }

    #[test]
    fn messages_are_split_to_fit_the_message_limit() {
        let dir = tempfile::tempdir().unwrap();
        let limit = 2048;
        let outbox = open(dir.path(), OutboxConfig { max_message_bytes: limit, ..config(100, 100, 1000) });
        outbox.sync_groups(&["g".into()]).unwrap();
        outbox.append(&(1..=40).map(|id| with_client_name(id, 100)).collect::<Vec<_>>()).unwrap();
        let mut seen = Vec::new();
        let mut messages = 0;
        while let Some(message) = outbox.next_message("g").unwrap() {
            assert!(message.text.len() <= limit, "{} bytes", message.text.len());
            assert!(message.records > 1, "as many records as fit, not one by one");
            seen.extend(job_ids(&message));
            messages += 1;
        }
        assert!(messages > 1);
        assert_eq!(seen, (1..=40).collect::<Vec<_>>(), "every record once, in order");
    }

    #[test]
    fn a_record_too_big_for_any_message_is_refused_or_skipped_loudly() {
        let dir = tempfile::tempdir().unwrap();
        let limit = 2048;
        let outbox = open(dir.path(), OutboxConfig { max_message_bytes: limit, ..config(100, 100, 1000) });
        outbox.sync_groups(&["g".into()]).unwrap();
        // Local ingest is told at once.
        let error = outbox.append(&[job(1, JobState::Done), with_client_name(2, 4096)]).unwrap_err();
        assert!(matches!(error, OutboxError::RecordTooBig { limit: 2048, .. }), "{error}");
        assert_eq!(outbox.record_count().unwrap(), 0, "refused whole");
        // Detection from the primary server cannot refuse: the record is skipped, the others go on.
        outbox
            .detect(|detection| {
                detection.push(job(1, JobState::Done));
                detection.push(with_client_name(2, 4096));
                detection.push(job(3, JobState::Done));
                Ok(())
            })
            .unwrap();
        let mut seen = Vec::new();
        while let Some(message) = outbox.next_message("g").unwrap() {
            seen.extend(job_ids(&message));
            outbox.ack("g", &message.id).unwrap();
        }
        assert_eq!(seen, [1, 3]);
        assert_eq!(outbox.metrics().unsendable_records.get(), 1);
        assert_eq!(outbox.record_count().unwrap(), 0, "the skipped record is pruned with the others");
    }

    #[test]
    fn messages_built_under_a_larger_limit_are_split_when_it_is_lowered() {
        let dir = tempfile::tempdir().unwrap();
        let records: Vec<Record> = (1..=30).map(|id| with_client_name(id, 100)).collect();
        let old_id = {
            let outbox = open(dir.path(), config(100, 100, 1000));
            outbox.sync_groups(&["g".into()]).unwrap();
            outbox.append(&records).unwrap();
            let message = outbox.next_message("g").unwrap().unwrap();
            assert!(message.text.len() > 2048);
            message.id
        };
        let outbox = open(dir.path(), OutboxConfig { max_message_bytes: 2048, ..config(100, 100, 1000) });
        assert_eq!(outbox.split_oversized().unwrap(), 1);
        let unacked = outbox.unacked("g").unwrap();
        assert!(unacked.len() > 1);
        assert!(unacked.iter().all(|message| message.text.len() <= 2048 && message.id != old_id));
        let seen: Vec<i64> = unacked.iter().flat_map(job_ids).collect();
        assert_eq!(seen, (1..=30).collect::<Vec<_>>());
        assert_eq!(outbox.split_oversized().unwrap(), 0, "nothing left to split");
    }

    #[test]
    fn window_bounds_unacknowledged_messages() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path(), config(1, 2, 100));
        outbox.sync_groups(&["g".into()]).unwrap();
        outbox
            .append(&[job(1, JobState::Active), job(2, JobState::Active), job(3, JobState::Active)])
            .unwrap();
        let first = outbox.next_message("g").unwrap().unwrap();
        outbox.next_message("g").unwrap().unwrap();
        assert!(outbox.next_message("g").unwrap().is_none(), "window of 2 is full");
        assert!(outbox.ack("g", &first.id).unwrap());
        assert!(!outbox.ack("g", &first.id).unwrap(), "a second ack is harmless");
        assert!(outbox.next_message("g").unwrap().is_some());
    }

    #[test]
    fn resend_is_due_after_the_rate_with_the_same_text() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path(), config(10, 10, 100));
        outbox.sync_groups(&["g".into()]).unwrap();
        outbox.append(&[job(1, JobState::Queued)]).unwrap();
        let message = outbox.next_message("g").unwrap().unwrap();
        let rate = Duration::from_secs(5);
        assert_eq!(outbox.due_for_resend("g", 1_000, rate).unwrap().len(), 1, "never sent: due at once");
        outbox.mark_sent("g", &message.id, 1_000).unwrap();
        assert!(outbox.due_for_resend("g", 5_999, rate).unwrap().is_empty());
        let due = outbox.due_for_resend("g", 6_000, rate).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(
            (due[0].id.as_str(), due[0].text.as_str(), due[0].sends),
            (message.id.as_str(), message.text.as_str(), 1)
        );
        outbox.mark_sent("g", &message.id, 6_000).unwrap();
        let group = GroupLabel::of("g");
        assert_eq!(outbox.metrics().sent.get_or_create(&group).get(), 1);
        assert_eq!(outbox.metrics().resent.get_or_create(&group).get(), 1);
        let stats = outbox.stats(8_000).unwrap();
        assert_eq!(stats[0].oldest_unacked_sent_ms, Some(1_000));
        assert_eq!(stats[0].depth, 1);
    }

    #[test]
    fn records_leave_only_when_every_group_acknowledged_them() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path(), config(10, 10, 100));
        outbox.sync_groups(&["a".into(), "b".into()]).unwrap();
        outbox.append(&[job(1, JobState::Active), job(2, JobState::Done)]).unwrap();
        let to_a = outbox.next_message("a").unwrap().unwrap();
        let to_b = outbox.next_message("b").unwrap().unwrap();
        assert_eq!(payload_of(&to_a), payload_of(&to_b), "every group gets every record");
        assert!(outbox.ack("a", &to_a.id).unwrap());
        assert!(!outbox.ack("a", &to_b.id).unwrap(), "ids belong to their group");
        assert_eq!(outbox.record_count().unwrap(), 2, "b has not acknowledged");
        assert!(outbox.ack("b", &to_b.id).unwrap());
        assert_eq!(outbox.record_count().unwrap(), 0);
    }

    #[test]
    fn out_of_order_acks_keep_records_of_the_oldest_unacknowledged_message() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path(), config(1, 10, 100));
        outbox.sync_groups(&["g".into()]).unwrap();
        outbox.append(&[job(1, JobState::Active), job(2, JobState::Active)]).unwrap();
        let first = outbox.next_message("g").unwrap().unwrap();
        let second = outbox.next_message("g").unwrap().unwrap();
        outbox.ack("g", &second.id).unwrap();
        assert_eq!(outbox.record_count().unwrap(), 2);
        outbox.ack("g", &first.id).unwrap();
        assert_eq!(outbox.record_count().unwrap(), 0);
    }

    #[test]
    fn new_group_gets_what_is_held_and_a_removed_group_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path(), config(10, 10, 100));
        outbox.append(&[job(1, JobState::Active)]).unwrap();
        outbox.sync_groups(&["a".into()]).unwrap();
        assert_eq!(outbox.record_count().unwrap(), 1, "kept for the first group");
        let to_a = outbox.next_message("a").unwrap().unwrap();
        assert_eq!(to_a.records, 1);
        outbox.ack("a", &to_a.id).unwrap();
        assert_eq!(outbox.record_count().unwrap(), 0);
        outbox.append(&[job(2, JobState::Active)]).unwrap();
        outbox.sync_groups(&["a".into(), "b".into()]).unwrap();
        assert_eq!(
            outbox.next_message("b").unwrap().unwrap().records,
            1,
            "b starts at the oldest record held"
        );
        outbox.sync_groups(&["a".into()]).unwrap();
        assert_eq!(outbox.groups().unwrap(), ["a"]);
        let to_a = outbox.next_message("a").unwrap().unwrap();
        outbox.ack("a", &to_a.id).unwrap();
        assert_eq!(outbox.record_count().unwrap(), 0, "b no longer holds records back");
    }

    #[test]
    fn full_outbox_refuses_new_records_and_keeps_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path(), config(10, 10, 2));
        outbox.sync_groups(&["g".into()]).unwrap();
        outbox.append(&[job(1, JobState::Active), job(2, JobState::Active)]).unwrap();
        let error = outbox.append(&[job(3, JobState::Active)]).unwrap_err();
        assert!(matches!(error, OutboxError::Full { held: 2, cap: 2, refused: 1 }), "{error}");
        assert_eq!(outbox.metrics().refused_records.get(), 1);
        assert_eq!(outbox.metrics().outbox_full.get(), 1);
        let watermark = outbox.detect(|detection| {
            detection.set_watermark("jobs", "later")?;
            detection.push(job(4, JobState::Active));
            Ok(())
        });
        assert!(watermark.is_err());
        assert_eq!(
            outbox.detect(|detection| detection.watermark("jobs")).unwrap(),
            None,
            "rolled back whole"
        );
        let message = outbox.next_message("g").unwrap().unwrap();
        assert_eq!(message.records, 2, "the oldest records are the ones kept");
        outbox.ack("g", &message.id).unwrap();
        outbox.append(&[job(3, JobState::Active)]).unwrap();
        assert_eq!(outbox.metrics().outbox_full.get(), 0);
        let message = outbox.next_message("g").unwrap().unwrap();
        outbox.ack("g", &message.id).unwrap();
        outbox
            .append(&[job(5, JobState::Active), job(6, JobState::Active), job(7, JobState::Active)])
            .unwrap();
        assert_eq!(outbox.record_count().unwrap(), 3, "an empty outbox takes a batch larger than the cap");
    }

    #[test]
    fn done_jobs_are_forgotten_once_they_cannot_be_listed_again() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path(), config(10, 10, 100));
        let forgotten = outbox
            .detect(|detection| {
                detection.set_job(1, true, 1_000)?;
                detection.set_job(2, false, 1_000)?;
                detection.set_job(3, true, 5_000)?;
                detection.forget_done_jobs(2_000)
            })
            .unwrap();
        assert_eq!(forgotten, 1);
        let seen =
            outbox.detect(|detection| Ok((detection.job(1)?, detection.job(2)?, detection.job(3)?))).unwrap();
        assert_eq!(seen, (None, Some(false), Some(true)), "running jobs are kept whatever their age");
    }

    #[test]
    fn reopening_mid_delivery_keeps_ids_payloads_positions_and_state() {
        let dir = tempfile::tempdir().unwrap();
        let (sent_id, sent_text) = {
            let outbox = open(dir.path(), config(2, 10, 100));
            outbox.sync_groups(&["g".into()]).unwrap();
            outbox
                .detect(|detection| {
                    detection.set_watermark("jobs", "2026-01-01T00:00:00.000Z")?;
                    detection.set_job(1, false, 0)?;
                    detection.push(job(1, JobState::Active));
                    detection.push(job(2, JobState::Active));
                    detection.push(job(3, JobState::Active));
                    Ok(())
                })
                .unwrap();
            let message = outbox.next_message("g").unwrap().unwrap();
            outbox.mark_sent("g", &message.id, 1_000).unwrap();
            (message.id, message.text)
        };
        let outbox = open(dir.path(), config(2, 10, 100));
        let unacked = outbox.unacked("g").unwrap();
        assert_eq!(unacked.len(), 1);
        assert_eq!(
            (unacked[0].id.as_str(), unacked[0].text.as_str()),
            (sent_id.as_str(), sent_text.as_str())
        );
        let next = outbox.next_message("g").unwrap().unwrap();
        assert_eq!(next.records, 1, "the position survived: only job 3 is left");
        let (watermark, done) =
            outbox.detect(|detection| Ok((detection.watermark("jobs")?, detection.job(1)?))).unwrap();
        assert_eq!(watermark.as_deref(), Some("2026-01-01T00:00:00.000Z"));
        assert_eq!(done, Some(false));
        outbox.ack("g", &sent_id).unwrap();
        outbox.ack("g", &next.id).unwrap();
        assert_eq!(outbox.record_count().unwrap(), 0);
        drop(outbox);
        let outbox = open(dir.path(), config(2, 10, 100));
        outbox.append(&[job(4, JobState::Active)]).unwrap();
        let message = outbox.next_message("g").unwrap().unwrap();
        match &payload_of(&message)[0] {
            nbwss_protocol::NotificationGroup::Jobs { records, .. } => assert_eq!(records[0].job_id, 4),
            other => panic!("{other:?}"),
        }
    }
}

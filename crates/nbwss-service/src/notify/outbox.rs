//! The durable outbox: notification records in detection order, per-group delivery positions, and every
//! NOTIFICATION REQUEST built but not yet acknowledged, in one SQLite database (WAL).
//!
//! Durability: WAL with `synchronous=FULL`, so a committed transaction survives power loss, not only a
//! crash of the process. With `NORMAL` a power loss may undo the last commits; the detector would then have
//! forgotten both the records and the watermark advance (they commit together), which is safe for jobs but
//! would lose an event whose trace the primary server no longer shows (an image that is gone). Commits are
//! one per poll, not one per record, so the extra fsync is cheap.
//!
//! Groups: a server group's backlog belongs to the group, not to its servers' state. The outbox knows every
//! group that has a WebSocket server, activated or not; deactivating, deleting or re-adding servers never
//! moves a group's position nor drops its unacknowledged messages, so delivery resumes where it stopped when
//! a server of the group connects again. A group left without any server is *detached*: it keeps its backlog
//! for `notification.groupRetention` (a server of the group saved again in that time takes it back), then it
//! is *retired*: forgotten with its messages, with a log line and `nbwss_notification_groups_retired_total`.
//!
//! A new group receives the records detected since its first server was saved; the very first group (no
//! group known) receives everything held, since records are kept while no group exists.
//!
//! Invariant (what lets a record go; ARCHITECTURE.md invariant 7): a record stays until every group the
//! outbox knows has acknowledged it, or the groups that have not were retired after the retention period,
//! or the outbox reached `outbox.maxRecords` and another group had already acknowledged it. Those two
//! releases, and a record too large for any message (`message.maxBytes`; skipped, logged and counted in
//! `nbwss_notification_unsendable_records_total`), are the only ways a record leaves unacknowledged by a
//! group; the releases log the group and the count and add to
//! `nbwss_notification_released_records_total{group, reason}`. The cap still bounds the records
//! held: when no group has acknowledged the oldest records, new records are refused (loudly) instead, and
//! detection finds them again later. Messages already built for a group keep their text, so a release never
//! takes back what a group was sent.
//!
//! Locking: every write is an IMMEDIATE transaction, so another process writing the same file
//! (`nbwss notify`) waits for the busy timeout instead of failing at once with "database is locked".

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use nbwss_protocol::{NotificationText, ObjectKind};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::metrics::{GroupLabel, NotifyMetrics, ReleaseLabel};
use super::{now_millis, Record};

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
    /// How long a group without any server keeps its backlog (`notification.groupRetention`).
    pub group_retention: Duration,
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
            group_retention: properties.notification_group_retention,
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
    #[error("notification outbox full: {held} records held, cap {cap} (outbox.maxRecords), none of the oldest acknowledged by any server group; {refused} new record(s) refused until endpoints acknowledge")]
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

impl OutboxError {
    /// Whether another process kept the database locked for longer than the busy timeout.
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            Self::Database(error) if matches!(
                error.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            )
        )
    }
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

/// A server group as the WebSocket servers store has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredGroup {
    /// The group id.
    pub group_id: String,
    /// When its first WebSocket server was saved (Unix ms): a new group receives the records detected
    /// from then on.
    pub since_ms: i64,
}

impl ConfiguredGroup {
    /// A group whose first server was saved at `since_ms`.
    pub fn new(group_id: impl Into<String>, since_ms: i64) -> Self {
        Self { group_id: group_id.into(), since_ms }
    }
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
    /// Since when the group has had no WebSocket server (Unix ms), if it has none.
    pub detached_since_ms: Option<i64>,
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
    position INTEGER NOT NULL,
    detached_ms INTEGER
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
    /// Opens (creating if needed) the outbox database at `path`, bringing a database of an earlier version
    /// up to date (it keeps every record, message and position).
    pub fn open(path: &Path, config: OutboxConfig, metrics: NotifyMetrics) -> Result<Self, OutboxError> {
        // Job and client names of the backup estate: owner-only like the rest of the data directory.
        crate::files::prepare_private_database(path)
            .map_err(|error| OutboxError::Files(format!("{error:#}")))?;
        let mut connection = Connection::open(path)?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        migrate(&mut connection)?;
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

    /// How long a write waits for another process's transaction (default 10 s); `nbwss notify` waits
    /// longer rather than fail beside a busy service.
    pub fn set_busy_timeout(&self, timeout: Duration) -> Result<(), OutboxError> {
        Ok(self.lock()?.busy_timeout(timeout)?)
    }

    /// Appends records in one transaction, in the given order. Refused whole when the cap would be passed,
    /// or when one record alone would make a message larger than `max_message_bytes` (it could never be
    /// sent; the caller is told now rather than the record being skipped later).
    pub fn append(&self, records: &[Record]) -> Result<usize, OutboxError> {
        let limit = self.config.max_message_bytes;
        let empty = NotificationText::new(&nbwss_protocol::new_message_id(), nbwss_protocol::unix_now());
        let texts: Vec<(ObjectKind, String)> =
            records.iter().map(|record| (record.object(), record.to_text())).collect();
        for (object, text) in &texts {
            let size = empty.len_with(object, text);
            if size > limit {
                return Err(OutboxError::RecordTooBig { size, limit });
            }
        }
        let mut connection = self.lock()?;
        let transaction = write_transaction(&mut connection)?;
        self.commit_records(transaction, texts)
    }

    /// Runs detector logic in one transaction: it reads and updates the detector's state and pushes
    /// records; everything commits together, or nothing does (when `work` fails or the outbox is full).
    pub fn detect<T>(
        &self,
        work: impl FnOnce(&mut Detection<'_>) -> Result<T, OutboxError>,
    ) -> Result<T, OutboxError> {
        let mut connection = self.lock()?;
        let transaction = write_transaction(&mut connection)?;
        let mut detection = Detection { transaction: &transaction, records: Vec::new() };
        let value = work(&mut detection)?;
        let records: Vec<(ObjectKind, String)> = std::mem::take(&mut detection.records)
            .iter()
            .map(|record| (record.object(), record.to_text()))
            .collect();
        self.commit_records(transaction, records)?;
        Ok(value)
    }

    /// Appends records (each its object and text) in `transaction` and commits it, unless the cap refuses
    /// them (then nothing commits); returns how many.
    fn commit_records(
        &self,
        transaction: Transaction<'_>,
        records: Vec<(ObjectKind, String)>,
    ) -> Result<usize, OutboxError> {
        let mut released = Vec::new();
        if !records.is_empty() {
            let held = count_records(&transaction)?;
            // An empty outbox takes any batch, so a single poll larger than the cap cannot stall detection.
            if held > 0 && held + records.len() > self.config.max_records {
                match release_for_cap(&transaction, held + records.len() - self.config.max_records)? {
                    Some(groups) => released = groups,
                    None => {
                        drop(transaction);
                        self.metrics.refused_records.inc_by(records.len() as u64);
                        self.metrics.outbox_full.set(1);
                        let error =
                            OutboxError::Full { held, cap: self.config.max_records, refused: records.len() };
                        tracing::error!(%error, "notification outbox full: detection paused, nothing dropped");
                        return Err(error);
                    }
                }
            }
            let now = now_millis();
            let mut insert = transaction
                .prepare_cached("INSERT INTO records (object, record, detected_ms) VALUES (?1, ?2, ?3)")?;
            for (object, text) in &records {
                insert.execute(params![object.as_str(), text, now])?;
            }
            drop(insert);
        }
        transaction.commit()?;
        for (group, count) in released {
            tracing::error!(
                group,
                released = count,
                cap = self.config.max_records,
                "notification outbox at its cap (outbox.maxRecords): this server group's oldest unacknowledged records were released so that the other groups keep receiving; raise outbox.maxRecords or bring the group's endpoint back"
            );
            self.metrics.released_records.get_or_create(&ReleaseLabel::cap(&group)).inc_by(count as u64);
        }
        self.metrics.outbox_full.set(0);
        if !records.is_empty() {
            self.metrics.appended_records.inc_by(records.len() as u64);
            self.appended.send_modify(|count| *count = count.wrapping_add(1));
        }
        Ok(records.len())
    }

    /// Follows the store: `groups` are the groups that have at least one WebSocket server, activated or
    /// not. A group not known yet is registered (at the records detected since `since_ms`, or at the oldest
    /// record held when it is the first group); a known group keeps its position and messages, and is
    /// detached when it is missing from `groups` or attached again when it is back. Groups detached for
    /// longer than the retention period are retired, and records no group needs any more are deleted.
    pub fn sync_groups(&self, groups: &[ConfiguredGroup]) -> Result<(), OutboxError> {
        let now = now_millis();
        let mut connection = self.lock()?;
        let transaction = write_transaction(&mut connection)?;
        let known: Vec<(String, Option<i64>)> = {
            let mut select = transaction.prepare("SELECT group_id, detached_ms FROM groups")?;
            let rows = select.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let configured = |group: &str| groups.iter().any(|configured| configured.group_id == group);
        for (group, detached) in &known {
            match (configured(group), detached) {
                (false, None) => {
                    transaction.execute(
                        "UPDATE groups SET detached_ms = ?1 WHERE group_id = ?2",
                        params![now, group],
                    )?;
                    let depth = group_depth(&transaction, group)?;
                    tracing::warn!(
                        group,
                        unacknowledged = depth,
                        retention_s = self.config.group_retention.as_secs(),
                        "server group has no WebSocket server any more: its notification backlog is kept for notification.groupRetention, and delivered if a server of the group is saved again"
                    );
                }
                (true, Some(_)) => {
                    transaction
                        .execute("UPDATE groups SET detached_ms = NULL WHERE group_id = ?1", [group])?;
                    tracing::info!(group, "server group has a WebSocket server again: its notification delivery resumes where it stopped");
                }
                _ => {}
            }
        }
        let last_seq: i64 = transaction.query_row(
            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'records'), 0)",
            [],
            |row| row.get(0),
        )?;
        for group in groups.iter().filter(|group| !known.iter().any(|(name, _)| *name == group.group_id)) {
            // The first group takes everything held; a later one what was detected since it exists.
            let since = if known.is_empty() { i64::MIN } else { group.since_ms };
            let start: i64 = transaction.query_row(
                "SELECT COALESCE((SELECT MIN(seq) - 1 FROM records WHERE detected_ms >= ?1), ?2)",
                params![since, last_seq],
                |row| row.get(0),
            )?;
            transaction.execute(
                "INSERT INTO groups (group_id, position) VALUES (?1, ?2)",
                params![group.group_id, start],
            )?;
            tracing::info!(
                group = group.group_id,
                after_record = start,
                "server group registered for notifications"
            );
        }
        let retired = retire(&transaction, now, self.config.group_retention)?;
        prune(&transaction)?;
        transaction.commit()?;
        self.count_retired(&retired);
        Ok(())
    }

    /// Retires the groups detached for longer than the retention period (see [`Outbox::sync_groups`]);
    /// returns how many. Cheap when none is due: one read.
    pub fn retire_detached(&self, now_ms: i64) -> Result<usize, OutboxError> {
        let mut connection = self.lock()?;
        let due: bool = connection.query_row(
            "SELECT EXISTS (SELECT 1 FROM groups WHERE detached_ms IS NOT NULL AND detached_ms <= ?1)",
            [retired_before(now_ms, self.config.group_retention)],
            |row| row.get(0),
        )?;
        if !due {
            return Ok(0);
        }
        let transaction = write_transaction(&mut connection)?;
        let retired = retire(&transaction, now_ms, self.config.group_retention)?;
        transaction.commit()?;
        self.count_retired(&retired);
        Ok(retired.len())
    }

    fn count_retired(&self, retired: &[(String, usize)]) {
        for (group, released) in retired {
            tracing::warn!(
                group,
                released,
                retention_s = self.config.group_retention.as_secs(),
                "server group had no WebSocket server for notification.groupRetention: retired, its unacknowledged notifications released"
            );
            self.metrics.groups_retired.inc();
            self.metrics
                .released_records
                .get_or_create(&ReleaseLabel::retention(group))
                .inc_by(*released as u64);
            // The group's gauges go with it; its counters stay, as counters do.
            self.metrics.outbox_depth.remove(&GroupLabel::of(group));
            self.metrics.oldest_unacked_age_seconds.remove(&GroupLabel::of(group));
        }
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
        let transaction = write_transaction(&mut connection)?;
        let built = self.build_messages(&transaction, group, 1, None)?;
        transaction.commit()?;
        Ok(built.into_iter().next())
    }

    /// What a delivery does between two rounds, in one transaction (one durable write): forgets the
    /// messages of `acknowledged` (as [`Outbox::ack_all`]), then builds the group's next messages while
    /// its window (`max_unacked`) allows, as [`Outbox::next_message`] does, recorded as sent at `now_ms`
    /// (they are sent next; one whose send fails is sent again after `notification.scheduledRate`, or when
    /// the group connects again).
    pub fn acknowledge_and_take(
        &self,
        group: &str,
        acknowledged: &[String],
        now_ms: i64,
    ) -> Result<Taken, OutboxError> {
        let mut connection = self.lock()?;
        let transaction = write_transaction(&mut connection)?;
        let removed = delete_messages(&transaction, group, acknowledged)?;
        if removed > 0 {
            prune(&transaction)?;
        }
        let messages = self.build_messages(&transaction, group, usize::MAX, Some(now_ms))?;
        transaction.commit()?;
        let label = GroupLabel::of(group);
        if removed > 0 {
            self.metrics.acknowledged.get_or_create(&label).inc_by(removed as u64);
        }
        if !messages.is_empty() {
            self.metrics.sent.get_or_create(&label).inc_by(messages.len() as u64);
        }
        Ok(Taken { acknowledged: removed, messages })
    }

    /// Builds up to `at_most` of the group's next messages in `transaction`, within its window, from the
    /// records after its position, and moves the position past them; `sent_ms` records them as sent.
    fn build_messages(
        &self,
        transaction: &Transaction<'_>,
        group: &str,
        at_most: usize,
        sent_ms: Option<i64>,
    ) -> Result<Vec<PendingMessage>, OutboxError> {
        let Some(start) = group_position(transaction, group)? else { return Ok(Vec::new()) };
        let out: usize =
            transaction.query_row("SELECT COUNT(*) FROM messages WHERE group_id = ?1", [group], |row| {
                row.get::<_, i64>(0)
            })? as usize;
        let room = self.config.max_unacked.saturating_sub(out).min(at_most);
        let mut messages = Vec::new();
        let mut position = start;
        while messages.len() < room {
            let rows = {
                let mut select = transaction.prepare_cached(
                    "SELECT seq, object, record FROM records WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )?;
                let rows = select.query_map(params![position, self.config.batch_size as i64], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?;
                rows.collect::<Result<Vec<StoredRecord>, _>>()?
            };
            if rows.is_empty() {
                break;
            }
            let built = self.build(group, &rows);
            position = built.last_seq;
            if let Some(mut pending) = built.message {
                insert_message(transaction, group, &pending, (built.first_seq, built.last_seq), sent_ms)?;
                pending.sends = u32::from(sent_ms.is_some());
                messages.push(pending);
            }
        }
        if position != start {
            transaction
                .prepare_cached("UPDATE groups SET position = ?1 WHERE group_id = ?2")?
                .execute(params![position, group])?;
        }
        Ok(messages)
    }

    /// Splits every committed message larger than `max_message_bytes` (the limit was lowered since it was
    /// built) into messages that fit, in the same order; returns how many were split. Their records were
    /// never acknowledged, so nothing is lost; an endpoint that did see the old message may see its records
    /// again under new ids (delivery is at least once, D12).
    pub fn split_oversized(&self) -> Result<usize, OutboxError> {
        let mut connection = self.lock()?;
        let transaction = write_transaction(&mut connection)?;
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
            let mut rows: Vec<StoredRecord> = {
                let mut select = transaction.prepare_cached(
                    "SELECT seq, object, record FROM records WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq",
                )?;
                let rows = select
                    .query_map(params![first, last], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
                rows.collect::<Result<_, _>>()?
            };
            while !rows.is_empty() {
                let built = self.build(group, &rows);
                if let Some(pending) = &built.message {
                    insert_message(&transaction, group, pending, (built.first_seq, built.last_seq), None)?;
                }
                rows.retain(|(seq, _, _)| *seq > built.last_seq);
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

    /// The message of the first records of `rows` (in order, at most all) that fits in
    /// `max_message_bytes`, written from their stored texts; or, when the first record alone does not fit
    /// (or its stored text is not a JSON object), no message and that record skipped loudly.
    fn build(&self, group: &str, rows: &[StoredRecord]) -> Built {
        let limit = self.config.max_message_bytes;
        let id = nbwss_protocol::new_message_id();
        let mut text = NotificationText::new(&id, nbwss_protocol::unix_now());
        let first_seq = rows[0].0;
        let mut last_seq = first_seq;
        for (seq, object, record) in rows {
            let object = ObjectKind::from(object.as_str());
            let size = text.len_with(&object, record);
            let added = if size > limit {
                Err(OutboxError::RecordTooBig { size, limit }.to_string())
            } else {
                text.push(&object, record)
                    .map_err(|problem| format!("its stored text is unusable: {problem}"))
            };
            match added {
                Ok(()) => last_seq = *seq,
                // The message ends before this record; the next one starts with it.
                Err(_) if !text.is_empty() => break,
                Err(error) => {
                    tracing::error!(group, %error, record = record.chars().take(200).collect::<String>(),
                        "notification record skipped: it can never be sent");
                    self.metrics.unsendable_records.inc();
                    return Built { message: None, first_seq, last_seq: first_seq };
                }
            }
        }
        let records = text.records();
        let pending = PendingMessage { id, text: text.finish(), records, sends: 0 };
        Built { message: Some(pending), first_seq, last_seq }
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
        let transaction = write_transaction(&mut connection)?;
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
        let transaction = write_transaction(&mut connection)?;
        let removed = delete_messages(&transaction, group, ids)?;
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
        // The depth from the run of sequence numbers held (see `count_records`): no page of it is read.
        let mut select = connection.prepare_cached(
            "SELECT g.group_id, \
               (SELECT COALESCE(MAX(0, MAX(r.seq) - MAX(MIN(r.seq), \
                  COALESCE((SELECT MIN(first_seq) FROM messages m WHERE m.group_id = g.group_id), g.position + 1)) + 1), 0) \
                FROM records r), \
               (SELECT MIN(first_sent_ms) FROM messages m WHERE m.group_id = g.group_id), \
               (SELECT COUNT(*) FROM messages m WHERE m.group_id = g.group_id), \
               g.detached_ms \
             FROM groups g ORDER BY g.group_id",
        )?;
        let rows = select.query_map([], |row| {
            Ok(GroupStats {
                group: row.get(0)?,
                depth: row.get::<_, i64>(1)? as usize,
                oldest_unacked_sent_ms: row.get(2)?,
                unacked_messages: row.get::<_, i64>(3)? as usize,
                detached_since_ms: row.get(4)?,
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
            .prepare_cached(
                "SELECT backup_id, client_name, client_type, backup_time, fingerprint, has_local_copy \
                 FROM seen_images WHERE backup_id = ?1",
            )?
            .query_row([backup_id], seen_image)
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

    /// Starts a catalog listing: forgets which images the previous one listed. The list is a temporary
    /// table of this connection (on disk, not in memory: SQLite's default `temp_store`), so a catalog of
    /// any size costs the service no memory; a restart forgets it, and the next listing starts over.
    pub fn start_listing(&self) -> Result<(), OutboxError> {
        self.transaction.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS listed_images (backup_id TEXT PRIMARY KEY); \
             DELETE FROM temp.listed_images;",
        )?;
        Ok(())
    }

    /// Notes that the current listing holds an image.
    pub fn mark_listed(&self, backup_id: &str) -> Result<(), OutboxError> {
        self.transaction
            .prepare_cached("INSERT OR IGNORE INTO temp.listed_images (backup_id) VALUES (?1)")?
            .execute([backup_id])?;
        Ok(())
    }

    /// Up to `limit` images seen before but not in the current listing, by backup id after `after`.
    pub fn unlisted_images(&self, after: &str, limit: usize) -> Result<Vec<SeenImage>, OutboxError> {
        let mut select = self.transaction.prepare_cached(
            "SELECT backup_id, client_name, client_type, backup_time, fingerprint, has_local_copy \
             FROM seen_images WHERE backup_id > ?1 \
             AND backup_id NOT IN (SELECT backup_id FROM temp.listed_images) ORDER BY backup_id LIMIT ?2",
        )?;
        let rows = select.query_map(params![after, i64::try_from(limit).unwrap_or(i64::MAX)], seen_image)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Remembers an image.
    pub fn set_image(&self, image: &SeenImage) -> Result<(), OutboxError> {
        self.transaction.prepare_cached(
            "INSERT INTO seen_images (backup_id, client_name, client_type, backup_time, fingerprint, has_local_copy) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (backup_id) DO UPDATE SET \
             client_name = excluded.client_name, client_type = excluded.client_type, \
             backup_time = excluded.backup_time, fingerprint = excluded.fingerprint, \
             has_local_copy = excluded.has_local_copy",
        )?
        .execute(params![
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

/// Records held, from the first and last sequence numbers (two index lookups; `COUNT(*)` reads every page of
/// the table, and this runs on every append). Exact because the records held are always one run of
/// sequence numbers: they are appended in increasing order (AUTOINCREMENT) and only ever deleted from the
/// oldest on (`prune`, `release_for_cap`) or all at once (`retire`).
fn count_records(connection: &Connection) -> rusqlite::Result<usize> {
    connection
        .query_row("SELECT COALESCE(MAX(seq) - MIN(seq) + 1, 0) FROM records", [], |row| row.get::<_, i64>(0))
        .map(|n| n as usize)
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

/// A record as the outbox holds it: its sequence number, object and JSON text.
type StoredRecord = (i64, String, String);

/// What [`Outbox::acknowledge_and_take`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// How many of the acknowledged ids named an unacknowledged message of the group.
    pub acknowledged: usize,
    /// The messages built, recorded as sent, in detection order.
    pub messages: Vec<PendingMessage>,
}

/// Inserts a message carrying records `seqs.0 ..= seqs.1`; `sent_ms` records it as sent once.
fn insert_message(
    transaction: &Transaction<'_>,
    group: &str,
    message: &PendingMessage,
    (first_seq, last_seq): (i64, i64),
    sent_ms: Option<i64>,
) -> rusqlite::Result<()> {
    transaction
        .prepare_cached(
            "INSERT INTO messages (id, group_id, text, first_seq, last_seq, records, created_ms, \
             first_sent_ms, last_sent_ms, sends) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9)",
        )?
        .execute(params![
            message.id,
            group,
            message.text,
            first_seq,
            last_seq,
            message.records as i64,
            now_millis(),
            sent_ms,
            i64::from(sent_ms.is_some())
        ])?;
    Ok(())
}

/// Deletes the group's messages `ids`; returns how many there were.
fn delete_messages(transaction: &Transaction<'_>, group: &str, ids: &[String]) -> rusqlite::Result<usize> {
    let mut delete = transaction.prepare_cached("DELETE FROM messages WHERE group_id = ?1 AND id = ?2")?;
    let mut removed = 0;
    for id in ids {
        removed += delete.execute(params![group, id])?;
    }
    Ok(removed)
}

fn group_position(connection: &Connection, group: &str) -> rusqlite::Result<Option<i64>> {
    connection
        .query_row("SELECT position FROM groups WHERE group_id = ?1", [group], |row| row.get(0))
        .optional()
}

/// The first record a group has not acknowledged: its oldest unacknowledged message's, or the one after its
/// position when it has none.
const GROUP_LOW: &str =
    "COALESCE((SELECT MIN(first_seq) FROM messages m WHERE m.group_id = g.group_id), g.position + 1)";

/// Deletes the records every known group has acknowledged. With no group known, nothing is deleted.
fn prune(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute(
        &format!(
            "DELETE FROM records WHERE seq < (SELECT MIN({GROUP_LOW}) FROM groups g) \
             AND EXISTS (SELECT 1 FROM groups)"
        ),
        [],
    )?;
    Ok(())
}

/// Records the group has not acknowledged (from the run of sequence numbers held, see `count_records`).
fn group_depth(connection: &Connection, group: &str) -> rusqlite::Result<usize> {
    connection
        .query_row(
            &format!(
                "SELECT COALESCE(MAX(0, MAX(seq) - MAX(MIN(seq), (SELECT {GROUP_LOW} FROM groups g WHERE g.group_id = ?1)) + 1), 0) FROM records"
            ),
            [group],
            |row| row.get::<_, i64>(0),
        )
        .map(|count| count as usize)
}

/// The detach time at or before which a group is retired.
fn retired_before(now_ms: i64, retention: Duration) -> i64 {
    now_ms.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX))
}

/// Retires the groups detached at or before `now_ms - retention`: each is forgotten with its messages, and
/// the records no remaining group needs are deleted (all of them when no group remains: every record held
/// was detected while a retired group existed). Returns each retired group with the records it released.
fn retire(
    connection: &Connection,
    now_ms: i64,
    retention: Duration,
) -> rusqlite::Result<Vec<(String, usize)>> {
    let due: Vec<String> = {
        let mut select = connection.prepare(
            "SELECT group_id FROM groups WHERE detached_ms IS NOT NULL AND detached_ms <= ?1 ORDER BY group_id",
        )?;
        let rows = select.query_map([retired_before(now_ms, retention)], |row| row.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut retired = Vec::new();
    for group in due {
        let before = count_records(connection)?;
        connection.execute("DELETE FROM messages WHERE group_id = ?1", [&group])?;
        connection.execute("DELETE FROM groups WHERE group_id = ?1", [&group])?;
        let remaining: i64 = connection.query_row("SELECT COUNT(*) FROM groups", [], |row| row.get(0))?;
        if remaining == 0 {
            connection.execute("DELETE FROM records", [])?;
        } else {
            prune(connection)?;
        }
        retired.push((group, before - count_records(connection)?));
    }
    Ok(retired)
}

/// Makes room for `needed` records at the cap by releasing the oldest records that the most advanced group
/// has acknowledged, for the groups behind it: their positions move past the released records (messages
/// already built keep their text). Returns the records released per group, or `None` when not enough of
/// the oldest records were acknowledged by any group (then nothing changed).
fn release_for_cap(connection: &Connection, needed: usize) -> rusqlite::Result<Option<Vec<(String, usize)>>> {
    let leader_low: Option<i64> =
        connection.query_row(&format!("SELECT MAX({GROUP_LOW}) FROM groups g"), [], |row| row.get(0))?;
    let Some(leader_low) = leader_low else { return Ok(None) };
    let releasable: i64 =
        connection
            .query_row("SELECT COUNT(*) FROM records WHERE seq < ?1", [leader_low], |row| row.get(0))?;
    if (releasable as usize) < needed || needed == 0 {
        return Ok(None);
    }
    let cutoff: i64 = connection.query_row(
        "SELECT seq FROM records ORDER BY seq LIMIT 1 OFFSET ?1",
        [needed as i64 - 1],
        |row| row.get(0),
    )?;
    let released: Vec<(String, usize)> = {
        let mut select = connection.prepare(
            "SELECT g.group_id, (SELECT COUNT(*) FROM records r WHERE r.seq > g.position AND r.seq <= ?1) \
             FROM groups g WHERE g.position < ?1 ORDER BY g.group_id",
        )?;
        let rows = select.query_map([cutoff], |row| Ok((row.get(0)?, row.get::<_, i64>(1)? as usize)))?;
        rows.collect::<Result<Vec<_>, _>>()?.into_iter().filter(|(_, count)| *count > 0).collect()
    };
    connection.execute("DELETE FROM records WHERE seq <= ?1", [cutoff])?;
    connection.execute("UPDATE groups SET position = ?1 WHERE position < ?1", [cutoff])?;
    Ok(Some(released))
}

/// Waiting this long for another process's write before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The schema version this code writes (`PRAGMA user_version`). 0: the first version (no
/// `groups.detached_ms`; a group without an activated server was forgotten); 2: groups outlive their servers;
/// 3: a record is kept as its own JSON text (before: `{"object", "record"}`).
const SCHEMA_VERSION: i64 = 3;

/// Creates the tables, or brings an earlier version's up to date, in one transaction.
fn migrate(connection: &mut Connection) -> Result<(), OutboxError> {
    let transaction = write_transaction(connection)?;
    let version: i64 = transaction.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version < SCHEMA_VERSION {
        transaction.execute_batch(SCHEMA)?;
        let has_detached: bool = transaction.query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info('groups') WHERE name = 'detached_ms')",
            [],
            |row| row.get(0),
        )?;
        if !has_detached {
            transaction.execute_batch("ALTER TABLE groups ADD COLUMN detached_ms INTEGER")?;
            tracing::info!(
                "notification outbox upgraded: server groups now keep their backlog without servers"
            );
        }
        if version < 3 {
            // Records were kept as `{"object": ..., "record": {...}}`; now as the record's own text, which
            // messages carry as it is (the object has its own column).
            let rewritten = transaction.execute(
                "UPDATE records SET record = json_extract(record, '$.record') \
                 WHERE json_valid(record) AND json_type(record, '$.record') = 'object'",
                [],
            )?;
            if rewritten > 0 {
                tracing::info!(rewritten, "notification outbox upgraded: records are kept as their own text");
            }
        }
        transaction.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    transaction.commit()?;
    Ok(())
}

/// A transaction that takes the write lock at once (waiting for the busy timeout), so that it can never
/// fail half-way for a lock another process took after it started reading.
fn write_transaction(connection: &mut Connection) -> rusqlite::Result<Transaction<'_>> {
    connection.transaction_with_behavior(TransactionBehavior::Immediate)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::notify::group_records;
    use nbwss_protocol::{
        Body, Codec, ImageOperation, ImageRecord, JobRecord, JobState, JobType, Message, ScheduleType,
    };

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
        OutboxConfig {
            max_records,
            batch_size,
            max_unacked,
            group_retention: Duration::from_secs(3600),
            ..OutboxConfig::default()
        }
    }

    /// Groups whose first server was saved at the epoch: a new one takes everything held.
    fn groups(names: &[&str]) -> Vec<ConfiguredGroup> {
        names.iter().map(|name| ConfiguredGroup::new(*name, 0)).collect()
    }

    /// Delivers and acknowledges everything the group has not seen; the job ids it carried.
    fn drain(outbox: &Outbox, group: &str) -> Vec<i64> {
        let mut ids = Vec::new();
        while let Some(message) = outbox.next_message(group).unwrap() {
            ids.extend(job_ids(&message));
            assert!(outbox.ack(group, &message.id).unwrap());
        }
        ids
    }

    fn job_ids(message: &PendingMessage) -> Vec<i64> {
        payload_of(message)
            .into_iter()
            .flat_map(|group| match group {
                nbwss_protocol::NotificationGroup::Jobs { records, .. } => {
                    records.into_iter().map(|job| job.job_id).collect::<Vec<_>>()
                }
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn jobs(ids: std::ops::RangeInclusive<i64>) -> Vec<Record> {
        ids.map(|id| job(id, JobState::Active)).collect()
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
        outbox.sync_groups(&groups(&["g"])).unwrap();
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
        outbox.sync_groups(&groups(&["g"])).unwrap();
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
        outbox.sync_groups(&groups(&["g"])).unwrap();
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
            outbox.sync_groups(&groups(&["g"])).unwrap();
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
    fn acknowledgements_and_new_messages_commit_together_and_survive_a_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let rate = Duration::from_secs(5);
        let (taken, acknowledged) = {
            let outbox = open(dir.path(), config(2, 3, 100));
            outbox.sync_groups(&groups(&["g"])).unwrap();
            outbox.append(&jobs(1..=9)).unwrap();
            // The window is filled in one write, each message recorded as sent.
            let first = outbox.acknowledge_and_take("g", &[], 1_000).unwrap();
            assert_eq!((first.acknowledged, first.messages.len()), (0, 3));
            assert!(first.messages.iter().all(|message| message.sends == 1 && message.records == 2));
            assert!(outbox.due_for_resend("g", 5_999, rate).unwrap().is_empty(), "sent at 1,000");
            assert_eq!(outbox.acknowledge_and_take("g", &[], 1_001).unwrap().messages, [], "window full");
            // Two acknowledgements (and one of no message) free two places, taken in the same write.
            let acked =
                vec![first.messages[0].id.clone(), "UNKNOWN".to_owned(), first.messages[1].id.clone()];
            let second = outbox.acknowledge_and_take("g", &acked, 2_000).unwrap();
            assert_eq!((second.acknowledged, second.messages.len()), (2, 2));
            let group = GroupLabel::of("g");
            assert_eq!(outbox.metrics().sent.get_or_create(&group).get(), 5);
            assert_eq!(outbox.metrics().acknowledged.get_or_create(&group).get(), 2);
            assert_eq!(outbox.record_count().unwrap(), 5, "the acknowledged records are gone");
            (
                [&first.messages[2..], &second.messages[..]].concat(),
                [first.messages[0].clone(), first.messages[1].clone()],
            )
        };
        // A new process: what was acknowledged stays acknowledged, what was taken is resent as it was.
        let outbox = open(dir.path(), config(2, 3, 100));
        let unacked = outbox.unacked("g").unwrap();
        assert_eq!(
            unacked.iter().map(|message| (&message.id, &message.text)).collect::<Vec<_>>(),
            taken.iter().map(|message| (&message.id, &message.text)).collect::<Vec<_>>()
        );
        assert!(acknowledged.iter().all(|message| !unacked.contains(message)));
        let mut delivered: Vec<i64> = acknowledged.iter().chain(&taken).flat_map(job_ids).collect();
        let ids: Vec<String> = taken.iter().map(|message| message.id.clone()).collect();
        loop {
            let next = outbox.acknowledge_and_take("g", &ids, 3_000).unwrap();
            if next.messages.is_empty() {
                break;
            }
            delivered.extend(next.messages.iter().flat_map(job_ids));
            outbox.ack_all("g", &next.messages.iter().map(|m| m.id.clone()).collect::<Vec<_>>()).unwrap();
        }
        assert_eq!(delivered, (1..=9).collect::<Vec<_>>(), "every record once, in order");
        assert_eq!(outbox.record_count().unwrap(), 0);
    }

    #[test]
    fn records_of_the_previous_layout_are_rewritten_as_their_own_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        {
            let outbox = Outbox::open(&path, config(10, 10, 100), NotifyMetrics::default()).unwrap();
            outbox.sync_groups(&groups(&["g"])).unwrap();
        }
        let old = Connection::open(&path).unwrap();
        let records = [job(1, JobState::Active), image(7)];
        for record in &records {
            // The previous layout: the whole tagged record.
            old.execute(
                "INSERT INTO records (object, record, detected_ms) VALUES (?1, ?2, 1)",
                params![record.object().as_str(), serde_json::to_string(record).unwrap()],
            )
            .unwrap();
        }
        old.pragma_update(None, "user_version", 2).unwrap();
        drop(old);
        let outbox = Outbox::open(&path, config(10, 10, 100), NotifyMetrics::default()).unwrap();
        let message = outbox.next_message("g").unwrap().unwrap();
        assert_eq!(payload_of(&message), group_records(records.to_vec()));
    }

    #[test]
    fn window_bounds_unacknowledged_messages() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path(), config(1, 2, 100));
        outbox.sync_groups(&groups(&["g"])).unwrap();
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
        outbox.sync_groups(&groups(&["g"])).unwrap();
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
        outbox.sync_groups(&groups(&["a", "b"])).unwrap();
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
        outbox.sync_groups(&groups(&["g"])).unwrap();
        outbox.append(&[job(1, JobState::Active), job(2, JobState::Active)]).unwrap();
        let first = outbox.next_message("g").unwrap().unwrap();
        let second = outbox.next_message("g").unwrap().unwrap();
        outbox.ack("g", &second.id).unwrap();
        assert_eq!(outbox.record_count().unwrap(), 2);
        outbox.ack("g", &first.id).unwrap();
        assert_eq!(outbox.record_count().unwrap(), 0);
    }

    #[test]
    fn the_first_group_gets_what_is_held_and_a_later_one_what_was_detected_since_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path(), config(10, 10, 100));
        outbox.append(&[job(1, JobState::Active)]).unwrap();
        outbox.sync_groups(&groups(&["a"])).unwrap();
        assert_eq!(outbox.record_count().unwrap(), 1, "kept for the first group");
        outbox.append(&[job(2, JobState::Active)]).unwrap();
        let later = now_millis() + 60_000;
        outbox.sync_groups(&[ConfiguredGroup::new("a", 0), ConfiguredGroup::new("b", later)]).unwrap();
        assert!(outbox.next_message("b").unwrap().is_none(), "b's server was saved after jobs 1 and 2");
        assert_eq!(drain(&outbox, "a"), [1, 2]);
        assert_eq!(outbox.record_count().unwrap(), 0, "b does not hold what was detected before it existed");
        outbox.append(&[job(3, JobState::Active)]).unwrap();
        // Records carry the time they were detected; b exists from `later` on, so job 3 is not b's either.
        outbox.sync_groups(&[ConfiguredGroup::new("a", 0), ConfiguredGroup::new("c", 0)]).unwrap();
        assert_eq!(outbox.groups().unwrap(), ["a", "b", "c"], "b is detached, not forgotten");
        assert_eq!(drain(&outbox, "c"), [3], "c's server was saved before job 3");
    }

    #[test]
    fn a_group_without_servers_keeps_its_backlog_and_resumes_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path(), config(4, 3, 1000));
        outbox.sync_groups(&groups(&["a", "b"])).unwrap();
        outbox.append(&jobs(1..=10)).unwrap();
        assert_eq!(drain(&outbox, "a"), (1..=10).collect::<Vec<_>>());
        // b got one message, not acknowledged, then lost its last server.
        let sent = outbox.next_message("b").unwrap().unwrap();
        outbox.sync_groups(&groups(&["a"])).unwrap();
        let stats = outbox.stats(now_millis()).unwrap();
        assert!(stats[1].detached_since_ms.is_some(), "{stats:?}");
        outbox.append(&jobs(11..=25)).unwrap();
        assert_eq!(drain(&outbox, "a"), (11..=25).collect::<Vec<_>>());
        assert_eq!(outbox.record_count().unwrap(), 25, "everything b has not acknowledged is kept");
        // A server of b is saved again: the same unacknowledged message first, then the rest, each once.
        outbox.sync_groups(&groups(&["a", "b"])).unwrap();
        assert_eq!(outbox.stats(now_millis()).unwrap()[1].detached_since_ms, None);
        assert_eq!(outbox.unacked("b").unwrap(), std::slice::from_ref(&sent));
        let mut delivered = job_ids(&sent);
        outbox.ack("b", &sent.id).unwrap();
        delivered.extend(drain(&outbox, "b"));
        assert_eq!(delivered, (1..=25).collect::<Vec<_>>(), "every record once, in order");
        assert_eq!(outbox.record_count().unwrap(), 0);
    }

    #[test]
    fn a_group_without_servers_past_its_retention_is_retired_and_releases_its_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut limits = config(10, 10, 100);
        limits.group_retention = Duration::from_secs(60);
        let outbox = open(dir.path(), limits);
        outbox.sync_groups(&groups(&["a", "b"])).unwrap();
        outbox.append(&jobs(1..=3)).unwrap();
        drain(&outbox, "a");
        outbox.sync_groups(&groups(&["a"])).unwrap();
        let detached = outbox.stats(now_millis()).unwrap()[1].detached_since_ms.unwrap();
        assert_eq!(outbox.retire_detached(detached + 59_999).unwrap(), 0, "within the retention period");
        assert_eq!(outbox.record_count().unwrap(), 3);
        assert_eq!(outbox.retire_detached(detached + 60_000).unwrap(), 1);
        assert_eq!(outbox.groups().unwrap(), ["a"]);
        assert_eq!(outbox.record_count().unwrap(), 0, "a had acknowledged them all");
        let metrics = outbox.metrics();
        assert_eq!(metrics.groups_retired.get(), 1);
        assert_eq!(metrics.released_records.get_or_create(&ReleaseLabel::retention("b")).get(), 3);

        // The last group retired: nothing is kept for a group that may never come.
        outbox.append(&jobs(4..=5)).unwrap();
        outbox.sync_groups(&[]).unwrap();
        let detached = outbox.stats(now_millis()).unwrap()[0].detached_since_ms.unwrap();
        assert_eq!(outbox.retire_detached(detached + 60_000).unwrap(), 1);
        assert_eq!(outbox.record_count().unwrap(), 0);
        assert_eq!(metrics.released_records.get_or_create(&ReleaseLabel::retention("a")).get(), 2);
    }

    #[test]
    fn at_the_cap_a_group_behind_loses_only_what_another_group_acknowledged_loudly() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path(), config(2, 10, 10));
        outbox.sync_groups(&groups(&["a", "b"])).unwrap();
        outbox.append(&jobs(1..=10)).unwrap();
        // Nobody acknowledged anything: at the cap new records are refused, nothing is released.
        assert!(matches!(outbox.append(&jobs(11..=11)), Err(OutboxError::Full { .. })));
        // b got (and never acknowledged) one message; a acknowledges everything.
        let sent_to_b = outbox.next_message("b").unwrap().unwrap();
        assert_eq!(drain(&outbox, "a"), (1..=10).collect::<Vec<_>>());
        for batch in [11..=14, 15..=20, 21..=30] {
            outbox.append(&jobs(batch.clone())).unwrap();
            assert_eq!(drain(&outbox, "a"), batch.collect::<Vec<_>>(), "a is not held back by b");
            assert!(outbox.record_count().unwrap() <= 10, "the cap bounds what is held");
        }
        let released = outbox.metrics().released_records.get_or_create(&ReleaseLabel::cap("b")).get();
        // b keeps its built message (jobs 1-2) and the 10 newest records; the 18 between were released.
        let mut delivered = job_ids(&sent_to_b);
        outbox.ack("b", &sent_to_b.id).unwrap();
        delivered.extend(drain(&outbox, "b"));
        assert_eq!(delivered, [1, 2].into_iter().chain(21..=30).collect::<Vec<_>>());
        assert_eq!(released, 18);
        assert_eq!(outbox.metrics().released_records.get_or_create(&ReleaseLabel::cap("a")).get(), 0);
        assert_eq!(outbox.record_count().unwrap(), 0);
    }

    #[test]
    fn an_outbox_of_the_previous_version_opens_with_its_records_messages_and_positions() {
        // The schema as the first version wrote it: no groups.detached_ms, user_version 0.
        const FIRST_VERSION: &str = "
            CREATE TABLE records (seq INTEGER PRIMARY KEY AUTOINCREMENT, object TEXT NOT NULL,
                record TEXT NOT NULL, detected_ms INTEGER NOT NULL);
            CREATE TABLE groups (group_id TEXT PRIMARY KEY, position INTEGER NOT NULL);
            CREATE TABLE messages (id TEXT PRIMARY KEY, group_id TEXT NOT NULL, text TEXT NOT NULL,
                first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, records INTEGER NOT NULL,
                created_ms INTEGER NOT NULL, first_sent_ms INTEGER, last_sent_ms INTEGER,
                sends INTEGER NOT NULL DEFAULT 0);
            CREATE INDEX messages_by_group ON messages (group_id, first_seq);
            CREATE TABLE watermarks (name TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE seen_jobs (job_id INTEGER PRIMARY KEY, done INTEGER NOT NULL,
                last_update_ms INTEGER NOT NULL DEFAULT 0);
            CREATE TABLE seen_images (backup_id TEXT PRIMARY KEY, client_name TEXT NOT NULL,
                client_type TEXT NOT NULL, backup_time INTEGER NOT NULL, fingerprint TEXT NOT NULL,
                has_local_copy INTEGER NOT NULL);
        ";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        let sent_text = {
            let old = Connection::open(&path).unwrap();
            old.pragma_update(None, "journal_mode", "WAL").unwrap();
            old.execute_batch(FIRST_VERSION).unwrap();
            for id in 1..=5 {
                old.execute(
                    "INSERT INTO records (object, record, detected_ms) VALUES ('JOB', ?1, 1)",
                    [serde_json::to_string(&job(id, JobState::Active)).unwrap()],
                )
                .unwrap();
            }
            let text = Codec::default()
                .encode(&Message::with_id("OLD-1", Body::NotificationRequest(group_records(jobs(1..=2)))));
            old.execute("INSERT INTO groups (group_id, position) VALUES ('g', 2)", []).unwrap();
            old.execute(
                "INSERT INTO messages (id, group_id, text, first_seq, last_seq, records, created_ms, \
                 first_sent_ms, last_sent_ms, sends) VALUES ('OLD-1', 'g', ?1, 1, 2, 2, 1, 1, 1, 1)",
                [&text],
            )
            .unwrap();
            old.execute("INSERT INTO watermarks (name, value) VALUES ('jobs', 'w1')", []).unwrap();
            text
        };
        let outbox = Outbox::open(&path, config(10, 10, 100), NotifyMetrics::default()).unwrap();
        assert_eq!(outbox.record_count().unwrap(), 5);
        assert_eq!(outbox.groups().unwrap(), ["g"]);
        let unacked = outbox.unacked("g").unwrap();
        assert_eq!((unacked[0].id.as_str(), unacked[0].text.as_str()), ("OLD-1", sent_text.as_str()));
        assert_eq!(outbox.detect(|detection| detection.watermark("jobs")).unwrap().as_deref(), Some("w1"));
        let next = outbox.next_message("g").unwrap().unwrap();
        assert_eq!(job_ids(&next), [3, 4, 5], "the position survived the upgrade");
        // The upgraded database behaves as a new one: the group outlives its servers.
        outbox.sync_groups(&[]).unwrap();
        assert_eq!(outbox.groups().unwrap(), ["g"]);
        assert_eq!(outbox.record_count().unwrap(), 5);
        drop(outbox);
        let outbox = Outbox::open(&path, config(10, 10, 100), NotifyMetrics::default()).unwrap();
        assert_eq!(outbox.unacked("g").unwrap().len(), 2, "opening again changes nothing");
    }

    #[test]
    fn concurrent_writers_wait_for_each_other_instead_of_failing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.sqlite3");
        let service =
            Arc::new(Outbox::open(&path, config(5, 1000, 100_000), NotifyMetrics::default()).unwrap());
        service.sync_groups(&groups(&["g"])).unwrap();
        // Writers as `nbwss notify` processes are: each its own connection, reading then writing.
        let writers: Vec<_> = (0..4)
            .map(|writer| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let outbox =
                        Outbox::open(&path, config(5, 1000, 100_000), NotifyMetrics::default()).unwrap();
                    for index in 0..50 {
                        outbox
                            .detect(|detection| {
                                detection.watermark("w")?;
                                detection.push(job(writer * 1000 + index + 1, JobState::Active));
                                Ok(())
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        let mut delivered = Vec::new();
        loop {
            let finished = writers.iter().all(|writer| writer.is_finished());
            delivered.extend(drain(&service, "g"));
            if finished {
                break;
            }
        }
        for writer in writers {
            writer.join().unwrap();
        }
        delivered.sort_unstable();
        delivered.dedup();
        assert_eq!(delivered.len(), 200, "every record once");
    }

    #[test]
    fn full_outbox_refuses_new_records_and_keeps_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = open(dir.path(), config(10, 10, 2));
        outbox.sync_groups(&groups(&["g"])).unwrap();
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
            outbox.sync_groups(&groups(&["g"])).unwrap();
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

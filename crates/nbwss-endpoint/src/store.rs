//! The endpoint's durable state in SQLite (WAL): tokens and API keys (as SHA-256 hashes only) and the
//! notifications received, one row per record, in arrival order, each as received and flagged when it does
//! not conform to the guide's layout (liberal reception: stored and acknowledged all the same), pruned by
//! age and count.
//!
//! Four connections: writes go through one, reads through another, and token and API-key checks (one on
//! every call) through a third, so that they never wait behind a write's `fsync` or a page of the feed;
//! webhook delivery progress is written through a fourth (see `webhooks/store.rs`). In the running endpoint every call goes through
//! [`Store::run`], on tokio's blocking threads, never on the async workers. The command line uses the same
//! store directly while the endpoint runs in another process; [`Store::credentials_version`] lets the
//! endpoint notice its changes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use nbwss_protocol::{EndpointDetails, ReceivedRecord, Secret};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use serde_json::Value;

/// Name of the SQLite file inside the data directory.
pub const DATABASE_FILE: &str = "endpoint.sqlite";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tokens (
    name TEXT PRIMARY KEY,
    group_id TEXT NOT NULL,
    priority INTEGER NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    name TEXT PRIMARY KEY,
    key_sha256 TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS notification_messages (
    primary_name TEXT NOT NULL,
    message_id TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (primary_name, message_id)
);
CREATE TABLE IF NOT EXISTS notifications (
    cursor INTEGER PRIMARY KEY AUTOINCREMENT,
    primary_name TEXT NOT NULL,
    message_id TEXT NOT NULL,
    notification_type TEXT NOT NULL,
    object TEXT NOT NULL,
    record TEXT NOT NULL,
    received_at TEXT NOT NULL,
    problems TEXT
);
CREATE INDEX IF NOT EXISTS notifications_by_primary ON notifications (primary_name, cursor);
CREATE INDEX IF NOT EXISTS notifications_by_object ON notifications (object, cursor);
CREATE INDEX IF NOT EXISTS notifications_by_primary_object ON notifications (primary_name, object, cursor);
CREATE INDEX IF NOT EXISTS notification_messages_by_time ON notification_messages (received_at);
";

/// Records per primary server, kept by triggers so that listing primary servers reads a row per server
/// instead of counting every record. Created (and filled from the records already stored) once.
const COUNTS_SCHEMA: &str = "
CREATE TABLE notification_counts (
    primary_name TEXT PRIMARY KEY,
    records INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO notification_counts (primary_name, records)
    SELECT primary_name, COUNT(*) FROM notifications GROUP BY primary_name;
CREATE TRIGGER notification_counted AFTER INSERT ON notifications BEGIN
    INSERT INTO notification_counts (primary_name, records) VALUES (NEW.primary_name, 1)
        ON CONFLICT (primary_name) DO UPDATE SET records = records + 1;
END;
CREATE TRIGGER notification_uncounted AFTER DELETE ON notifications BEGIN
    UPDATE notification_counts SET records = records - 1 WHERE primary_name = OLD.primary_name;
END;
";

/// Rows deleted per transaction when pruning, so that notifications arriving meanwhile wait briefly.
const PRUNE_BATCH: i64 = 5_000;

/// The SQLite store. Cheap to clone; writes are serialised on one connection, reads on another, and the
/// checks of tokens and API keys on a third, so that a long read (a page of the feed) never delays them.
#[derive(Clone)]
pub struct Store {
    writer: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
    credentials: Arc<Mutex<Connection>>,
    /// Webhook delivery progress, committed without waiting for `fsync` (`synchronous = NORMAL`).
    deliveries: Arc<Mutex<Connection>>,
    /// Changes to tokens and API keys made through this store (the other processes' show in
    /// `PRAGMA data_version`).
    credential_changes: Arc<AtomicU64>,
}

/// What [`Store::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Notification records deleted.
    pub records: u64,
    /// Remembered NOTIFICATION REQUEST ids deleted (they de-duplicate messages sent again, D12).
    pub messages: u64,
}

/// A registered primary server, as `token list` shows it (never the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    /// The primary server's name: the token identifies which primary server connected.
    pub name: String,
    /// Its server group.
    pub group_id: String,
    /// Its priority within the group.
    pub priority: i64,
    /// When the token was created (RFC 3339).
    pub created_at: String,
    /// The token's fingerprint: `sha256:` and the first 16 hexadecimal digits of its SHA-256 (the hash this
    /// store keeps), as the service shows it for the token it saved.
    pub token_fingerprint: String,
}

/// An API key, as `apikey list` shows it (never the key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyInfo {
    /// The key's name.
    pub name: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
}

/// One stored notification record, as the feed serves it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredNotification {
    /// Position in arrival order; the feed's cursor and the SSE event id.
    pub cursor: i64,
    /// The primary server that sent it (its token's name).
    pub primary: String,
    /// The NOTIFICATION REQUEST's message id.
    pub message_id: String,
    /// `notificationType` of its group (`INFO`).
    pub notification_type: String,
    /// `JOB`, `IMAGE`, or another object kind as received.
    pub object: String,
    /// The record, exactly as received (unknown keys included).
    pub record: Value,
    /// When the endpoint received it (RFC 3339, UTC).
    pub received_at: String,
    /// Whether the record follows the guide's layout (§6.3, D14): exactly the guide's keys, with their types.
    pub conforms: bool,
    /// Why it does not conform, when it does not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// What storing a NOTIFICATION REQUEST did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// First time this message id was seen from this primary server: its records were stored.
    Stored {
        /// Records stored.
        records: usize,
        /// Of which do not conform to the guide's layout.
        nonconforming: usize,
        /// Cursor of the last record stored (the previous last cursor when there were none).
        last_cursor: i64,
    },
    /// The message id was already stored: nothing was written.
    Duplicate,
}

/// Filters of the notification feed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedQuery {
    /// Only records with a cursor greater than this.
    pub after: i64,
    /// At most this many records.
    pub limit: usize,
    /// Only this primary server's records.
    pub primary: Option<String>,
    /// Only records of this object kind (`JOB`, `IMAGE`).
    pub object: Option<String>,
}

impl Store {
    /// Opens (creating when needed) the store in `data_dir`. The directory is made private to its owner
    /// (0700) and the database file (0600, which SQLite gives its `-wal` and `-shm` files too): it holds
    /// the tokens' and keys' hashes, and the notifications name the estate's clients and policies.
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        crate::files::private_dir(data_dir)?;
        let path = data_dir.join(DATABASE_FILE);
        crate::files::private_file(&path)?;
        let open = || -> anyhow::Result<Connection> {
            let connection = Connection::open(&path)
                .map_err(|error| anyhow::anyhow!("cannot open {}: {error}", path.display()))?;
            connection.busy_timeout(Duration::from_secs(10))?;
            Ok(connection)
        };
        let writer = open()?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a committed notification survives a power loss, which is what the acknowledgement promises.
        writer.pragma_update(None, "synchronous", "FULL")?;
        // A store of an earlier version: records without a conformance column conformed (they were decoded
        // strictly before being stored). Added before the schema, whose indexes are on the newer table.
        let has_notifications: bool = writer.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'notifications')",
            [],
            |row| row.get(0),
        )?;
        let has_problems: bool = writer.query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info('notifications') WHERE name = 'problems')",
            [],
            |row| row.get(0),
        )?;
        if has_notifications && !has_problems {
            writer.execute_batch("ALTER TABLE notifications ADD COLUMN problems TEXT")?;
        }
        writer.execute_batch(SCHEMA)?;
        writer.execute_batch(crate::webhooks::store::SCHEMA)?;
        // IMMEDIATE: two processes opening an older store at once must not both create the counts.
        let transaction =
            rusqlite::Transaction::new_unchecked(&writer, rusqlite::TransactionBehavior::Immediate)?;
        let counted: bool = transaction.query_row(
            "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'notification_counts'",
            [],
            |row| row.get(0),
        )?;
        if !counted {
            transaction.execute_batch(COUNTS_SCHEMA)?;
        }
        transaction.commit()?;
        let read_only = || -> anyhow::Result<Arc<Mutex<Connection>>> {
            let connection = open()?;
            connection.pragma_update(None, "query_only", true)?;
            Ok(Arc::new(Mutex::new(connection)))
        };
        Ok(Self {
            writer: Arc::new(Mutex::new(writer)),
            reader: read_only()?,
            credentials: read_only()?,
            deliveries: {
                // NORMAL in WAL mode: a commit is atomic and survives a crash of the process, and a power
                // loss can take only the last ones, those no later FULL commit has synced with the log. A
                // lost queueing rolls back with its cursor (the records are queued again from the
                // notifications, themselves committed with FULL); a lost acknowledgement sends a delivery
                // again under the same webhook-id. Neither loses a record; one fsync per delivery would
                // make the receivers wait on the disk, and the notifications behind them.
                let connection = open()?;
                connection.pragma_update(None, "synchronous", "NORMAL")?;
                Arc::new(Mutex::new(connection))
            },
            credential_changes: Arc::default(),
        })
    }

    /// Runs `work` on the store on one of tokio's blocking threads, so that waiting for SQLite (a lock, an
    /// `fsync`) never holds an async worker thread.
    pub async fn run<T, F>(&self, work: F) -> anyhow::Result<T>
    where
        F: FnOnce(&Store) -> anyhow::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|error| anyhow::anyhow!("store task failed: {error}"))?
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back): keep going.
        self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The connection that records webhook delivery progress (see `webhooks/store.rs`).
    pub(crate) fn lock_deliveries(&self) -> MutexGuard<'_, Connection> {
        self.deliveries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn read(&self) -> MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The connection for token and API-key lookups: only short indexed reads use it.
    fn read_credentials(&self) -> MutexGuard<'_, Connection> {
        self.credentials.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn credentials_changed(&self) {
        self.credential_changes.fetch_add(1, Ordering::Relaxed);
    }

    /// Changes whenever tokens or API keys may have changed, through this store or another process's:
    /// compare two values to know whether to look again.
    pub fn credentials_version(&self) -> anyhow::Result<(i64, u64)> {
        // data_version changes when another connection commits: other processes, and this one's webhook
        // delivery progress (then the watcher looks once for nothing, at most once per interval).
        let data_version: i64 = self.lock().query_row("PRAGMA data_version", [], |row| row.get(0))?;
        Ok((data_version, self.credential_changes.load(Ordering::Relaxed)))
    }

    /// The SHA-256 of every primary server's token, by name.
    pub fn token_hashes(&self) -> anyhow::Result<HashMap<String, String>> {
        let connection = self.read();
        let mut statement = connection.prepare("SELECT name, token_sha256 FROM tokens")?;
        let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Creates the token of primary server `name`, replacing (rotating) any previous one, and returns the
    /// endpoint details file for it. The token is shown only here; the store keeps its SHA-256.
    pub fn create_token(
        &self,
        name: &str,
        group_id: &str,
        priority: i64,
        websocket_url: &str,
    ) -> anyhow::Result<EndpointDetails> {
        check_token_fields(name, group_id, priority)?;
        let host_name = host_of(websocket_url)?;
        let token = new_secret();
        self.lock().execute(
            "INSERT INTO tokens (name, group_id, priority, token_sha256, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (name) DO UPDATE SET group_id = ?2, priority = ?3, token_sha256 = ?4, created_at = ?5",
            params![name, group_id, priority, sha256_hex(&token), now()],
        )?;
        self.credentials_changed();
        Ok(EndpointDetails {
            host_name,
            url: websocket_url.to_owned(),
            group_id: group_id.to_owned(),
            priority,
            token: Secret::new(token),
        })
    }

    /// Creates (or rotates) the tokens of many primary servers, `(name, group_id, priority)`, in one
    /// transaction: one durable commit instead of one per token, for provisioning a fleet.
    pub fn create_tokens(
        &self,
        servers: &[(String, String, i64)],
        websocket_url: &str,
    ) -> anyhow::Result<Vec<EndpointDetails>> {
        let host_name = host_of(websocket_url)?;
        let created_at = now();
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        let mut details = Vec::with_capacity(servers.len());
        {
            let mut statement = transaction.prepare(
                "INSERT INTO tokens (name, group_id, priority, token_sha256, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (name) DO UPDATE SET group_id = ?2, priority = ?3, token_sha256 = ?4, created_at = ?5",
            )?;
            for (name, group_id, priority) in servers {
                check_name(name, "name")?;
                check_name(group_id, "group")?;
                if !(0..=i64::from(i32::MAX)).contains(priority) {
                    anyhow::bail!("priority: must be a non-negative integer");
                }
                let token = new_secret();
                statement.execute(params![name, group_id, priority, sha256_hex(&token), created_at])?;
                details.push(EndpointDetails {
                    host_name: host_name.clone(),
                    url: websocket_url.to_owned(),
                    group_id: group_id.clone(),
                    priority: *priority,
                    token: Secret::new(token),
                });
            }
        }
        transaction.commit()?;
        self.credentials_changed();
        Ok(details)
    }

    /// The registered primary servers.
    pub fn list_tokens(&self) -> anyhow::Result<Vec<TokenInfo>> {
        let connection = self.read();
        let mut statement = connection
            .prepare("SELECT name, group_id, priority, created_at, token_sha256 FROM tokens ORDER BY name")?;
        let rows = statement.query_map([], token_info)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One registered primary server.
    pub fn token(&self, name: &str) -> anyhow::Result<Option<TokenInfo>> {
        self.token_where("name = ?1", name)
    }

    /// Removes the token of `name`; false when there was none.
    pub fn revoke_token(&self, name: &str) -> anyhow::Result<bool> {
        let removed = self.lock().execute("DELETE FROM tokens WHERE name = ?1", params![name])? > 0;
        self.credentials_changed();
        Ok(removed)
    }

    /// The primary server a CONNECT token belongs to, if any.
    pub fn check_token(&self, token: &Secret) -> anyhow::Result<Option<TokenInfo>> {
        self.token_where("token_sha256 = ?1", &token_hash(token))
    }

    fn token_where(&self, condition: &str, value: &str) -> anyhow::Result<Option<TokenInfo>> {
        let connection = self.read_credentials();
        let sql = format!(
            "SELECT name, group_id, priority, created_at, token_sha256 FROM tokens WHERE {condition}"
        );
        Ok(connection.query_row(&sql, params![value], token_info).optional()?)
    }

    /// Creates API key `name`, replacing any previous key of that name; the key is shown only here.
    pub fn create_api_key(&self, name: &str) -> anyhow::Result<String> {
        check_name(name, "name")?;
        let key = new_secret();
        self.lock().execute(
            "INSERT INTO api_keys (name, key_sha256, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET key_sha256 = ?2, created_at = ?3",
            params![name, sha256_hex(&key), now()],
        )?;
        self.credentials_changed();
        Ok(key)
    }

    /// The API keys.
    pub fn list_api_keys(&self) -> anyhow::Result<Vec<ApiKeyInfo>> {
        let connection = self.read();
        let mut statement = connection.prepare("SELECT name, created_at FROM api_keys ORDER BY name")?;
        let rows =
            statement.query_map([], |row| Ok(ApiKeyInfo { name: row.get(0)?, created_at: row.get(1)? }))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Removes API key `name`; false when there was none.
    pub fn revoke_api_key(&self, name: &str) -> anyhow::Result<bool> {
        let removed = self.lock().execute("DELETE FROM api_keys WHERE name = ?1", params![name])? > 0;
        self.credentials_changed();
        Ok(removed)
    }

    /// The name of the API key `key`, if it is one.
    pub fn check_api_key(&self, key: &str) -> anyhow::Result<Option<String>> {
        self.check_api_key_hash(&sha256_hex(key))
    }

    /// The name of the API key whose SHA-256 is `key_sha256`, if it is still valid.
    pub fn check_api_key_hash(&self, key_sha256: &str) -> anyhow::Result<Option<String>> {
        // Checked on every app API call: the statement is prepared once per connection, not per call.
        let connection = self.read_credentials();
        let mut select = connection.prepare_cached("SELECT name FROM api_keys WHERE key_sha256 = ?1")?;
        Ok(select.query_row(params![key_sha256], |row| row.get(0)).optional()?)
    }

    /// Cluster mode: makes the local tokens and API keys exactly `tokens` and `api_keys` (the cluster's
    /// buckets, hashes only), in one transaction.
    pub(crate) fn replace_credentials(
        &self,
        tokens: &[ClusterToken],
        api_keys: &[ClusterApiKey],
    ) -> anyhow::Result<()> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        transaction.execute("DELETE FROM tokens", [])?;
        transaction.execute("DELETE FROM api_keys", [])?;
        for token in tokens {
            put_token_row(&transaction, token)?;
        }
        for key in api_keys {
            put_api_key_row(&transaction, key)?;
        }
        transaction.commit()?;
        self.credentials_changed();
        Ok(())
    }

    /// Cluster mode: one token as the cluster's bucket holds it.
    pub(crate) fn put_cluster_token(&self, token: &ClusterToken) -> anyhow::Result<()> {
        put_token_row(&self.lock(), token)?;
        self.credentials_changed();
        Ok(())
    }

    /// Cluster mode: one API key as the cluster's bucket holds it.
    pub(crate) fn put_cluster_api_key(&self, key: &ClusterApiKey) -> anyhow::Result<()> {
        put_api_key_row(&self.lock(), key)?;
        self.credentials_changed();
        Ok(())
    }

    /// Cluster mode: copies records of the cluster's notification stream, each under its stream sequence as
    /// cursor; a record already copied is skipped. Returns the last cursor stored.
    pub(crate) fn copy_stream_records(&self, records: &[(i64, StreamRecord)]) -> anyhow::Result<i64> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        {
            let mut message = transaction.prepare_cached(
                "INSERT OR IGNORE INTO notification_messages (primary_name, message_id, received_at) VALUES (?1, ?2, ?3)",
            )?;
            let mut record_row = transaction.prepare_cached(
                "INSERT OR IGNORE INTO notifications (cursor, primary_name, message_id, notification_type, object, record, received_at, problems)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for (sequence, record) in records {
                message.execute(params![record.primary, record.message_id, record.received_at])?;
                let problems =
                    (!record.problems.is_empty()).then(|| Value::from(record.problems.clone()).to_string());
                record_row.execute(params![
                    sequence,
                    record.primary,
                    record.message_id,
                    record.notification_type,
                    record.object,
                    record.record.to_string(),
                    record.received_at,
                    problems
                ])?;
            }
        }
        let last_cursor: i64 =
            transaction
                .query_row("SELECT COALESCE(MAX(cursor), 0) FROM notifications", [], |row| row.get(0))?;
        transaction.commit()?;
        Ok(last_cursor)
    }

    /// Stores the records of one NOTIFICATION REQUEST from `primary` in one committed transaction, unless
    /// a message with this id from this primary server was stored before. Every record is stored as
    /// received, its problems with it. Returns only after the commit: the caller acknowledges after this
    /// returns `Ok`.
    pub fn store_notification(
        &self,
        primary: &str,
        message_id: &str,
        records: &[ReceivedRecord],
    ) -> anyhow::Result<StoreOutcome> {
        let mut outcomes = self.store_notifications(primary, &[(message_id, records)])?;
        Ok(outcomes.pop().unwrap_or(StoreOutcome::Duplicate))
    }

    /// Stores several NOTIFICATION REQUESTs from `primary` (each its id and records) in one committed
    /// transaction: one durable write for all. Each is stored as [`Store::store_notification`] stores it
    /// (a message id stored before, or twice in `messages`, is a duplicate); the outcomes are in the order
    /// given. Returns only after the commit, and fails whole: the caller acknowledges none of them unless
    /// this returns `Ok`.
    pub fn store_notifications(
        &self,
        primary: &str,
        messages: &[(&str, &[ReceivedRecord])],
    ) -> anyhow::Result<Vec<StoreOutcome>> {
        let received_at = now();
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        let mut counted = Vec::with_capacity(messages.len());
        {
            let mut message_row = transaction.prepare_cached(
                "INSERT OR IGNORE INTO notification_messages (primary_name, message_id, received_at) VALUES (?1, ?2, ?3)",
            )?;
            let mut record_row = transaction.prepare_cached(
                "INSERT INTO notifications (primary_name, message_id, notification_type, object, record, received_at, problems)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for (message_id, records) in messages {
                if message_row.execute(params![primary, message_id, received_at])? == 0 {
                    counted.push(None);
                    continue;
                }
                let mut nonconforming = 0;
                for record in *records {
                    let problems = (!record.conforms()).then(|| {
                        let reasons: Vec<String> = record.problems.iter().map(ToString::to_string).collect();
                        Value::from(reasons).to_string()
                    });
                    nonconforming += usize::from(problems.is_some());
                    record_row.execute(params![
                        primary,
                        message_id,
                        record.notification_type,
                        record.object,
                        record.record.to_string(),
                        received_at,
                        problems
                    ])?;
                }
                counted.push(Some((records.len(), nonconforming)));
            }
        }
        let last_cursor: i64 =
            transaction
                .query_row("SELECT COALESCE(MAX(cursor), 0) FROM notifications", [], |row| row.get(0))?;
        transaction.commit()?;
        Ok(counted
            .into_iter()
            .map(|counted| match counted {
                Some((records, nonconforming)) => {
                    StoreOutcome::Stored { records, nonconforming, last_cursor }
                }
                None => StoreOutcome::Duplicate,
            })
            .collect())
    }

    /// Notifications after a cursor, in arrival order.
    pub fn notifications(&self, query: &FeedQuery) -> anyhow::Result<Vec<StoredNotification>> {
        let connection = self.read();
        let mut statement = connection.prepare_cached(feed_sql(query))?;
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let mut bound: Vec<&dyn rusqlite::ToSql> = vec![&query.after, &limit];
        bound.extend(query.primary.as_ref().map(|primary| primary as &dyn rusqlite::ToSql));
        bound.extend(query.object.as_ref().map(|object| object as &dyn rusqlite::ToSql));
        let rows = statement.query_map(bound.as_slice(), |row| {
            let record: String = row.get(5)?;
            let reasons: Vec<String> = row
                .get::<_, Option<String>>(7)?
                .map(|problems| serde_json::from_str(&problems).unwrap_or_else(|_| vec![problems]))
                .unwrap_or_default();
            Ok(StoredNotification {
                cursor: row.get(0)?,
                primary: row.get(1)?,
                message_id: row.get(2)?,
                notification_type: row.get(3)?,
                object: row.get(4)?,
                record: serde_json::from_str(&record).unwrap_or(Value::String(record)),
                received_at: row.get(6)?,
                conforms: reasons.is_empty(),
                reasons,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The cursor of the newest record (0 when there is none).
    pub fn last_cursor(&self) -> anyhow::Result<i64> {
        Ok(self
            .read()
            .query_row("SELECT COALESCE(MAX(cursor), 0) FROM notifications", [], |row| row.get(0))?)
    }

    /// The cursor of the oldest record still kept (0 when there is none): records before it were pruned.
    pub fn first_cursor(&self) -> anyhow::Result<i64> {
        Ok(self
            .read()
            .query_row("SELECT COALESCE(MIN(cursor), 0) FROM notifications", [], |row| row.get(0))?)
    }

    /// Records stored per primary server.
    pub fn notification_counts(&self) -> anyhow::Result<Vec<(String, i64)>> {
        let connection = self.read();
        let mut statement =
            connection.prepare("SELECT primary_name, records FROM notification_counts WHERE records > 0")?;
        let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes the records received before `now - max_age` and all but the newest `max_records` (by
    /// cursor), and the remembered message ids as old or as many, in small transactions. `None` turns a
    /// bound off.
    pub fn prune(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        max_age: Option<Duration>,
        max_records: Option<u64>,
    ) -> anyhow::Result<Pruned> {
        let cutoff = max_age
            .and_then(|age| chrono::Duration::from_std(age).ok())
            .and_then(|age| now.checked_sub_signed(age))
            .map(|cutoff| cutoff.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        let max_records = max_records.map(|max| i64::try_from(max).unwrap_or(i64::MAX));
        let mut pruned = Pruned::default();

        // Records: cursors grow with arrival, so both bounds are "every cursor below some cursor".
        let newest = self.last_cursor()?;
        let mut below = max_records.map_or(i64::MIN, |max| newest.saturating_sub(max).saturating_add(1));
        if let Some(cutoff) = &cutoff {
            // Reads only the old rows (in cursor order) and the first young one.
            let first_young: Option<i64> = self
                .read()
                .query_row(
                    "SELECT cursor FROM notifications WHERE received_at >= ?1 ORDER BY cursor LIMIT 1",
                    params![cutoff],
                    |row| row.get(0),
                )
                .optional()?;
            below = below.max(first_young.unwrap_or_else(|| newest.saturating_add(1)));
        }
        pruned.records = self.delete_in_batches(
            "DELETE FROM notifications WHERE cursor IN
             (SELECT cursor FROM notifications WHERE cursor < ?1 ORDER BY cursor LIMIT ?2)",
            &below,
        )?;

        // Remembered message ids: by age, and no more of them than records kept.
        if let Some(cutoff) = &cutoff {
            pruned.messages += self.delete_in_batches(
                "DELETE FROM notification_messages WHERE rowid IN
                 (SELECT rowid FROM notification_messages WHERE received_at < ?1 LIMIT ?2)",
                cutoff,
            )?;
        }
        if let Some(max) = max_records {
            let newest: i64 = self.read().query_row(
                "SELECT COALESCE(MAX(rowid), 0) FROM notification_messages",
                [],
                |row| row.get(0),
            )?;
            pruned.messages += self.delete_in_batches(
                "DELETE FROM notification_messages WHERE rowid IN
                 (SELECT rowid FROM notification_messages WHERE rowid < ?1 ORDER BY rowid LIMIT ?2)",
                &newest.saturating_sub(max).saturating_add(1),
            )?;
        }
        Ok(pruned)
    }

    /// Runs a `DELETE` taking a bound (?1) and a batch size (?2) until it deletes less than a batch.
    fn delete_in_batches(&self, sql: &str, bound: &dyn rusqlite::ToSql) -> anyhow::Result<u64> {
        let mut deleted = 0;
        loop {
            let count = self.lock().execute(sql, params![bound, PRUNE_BATCH])?;
            deleted += u64::try_from(count).unwrap_or(0);
            if i64::try_from(count).unwrap_or(i64::MAX) < PRUNE_BATCH {
                return Ok(deleted);
            }
        }
    }
}

/// The feed query for the filters that are set, each served by an index (the rowid for none): a
/// generic `(?3 IS NULL OR ...)` query would scan every record after the cursor.
fn feed_sql(query: &FeedQuery) -> &'static str {
    match (query.primary.is_some(), query.object.is_some()) {
        (false, false) => {
            "SELECT cursor, primary_name, message_id, notification_type, object, record, received_at, problems
             FROM notifications WHERE cursor > ?1 ORDER BY cursor LIMIT ?2"
        }
        (true, false) => {
            "SELECT cursor, primary_name, message_id, notification_type, object, record, received_at, problems
             FROM notifications INDEXED BY notifications_by_primary
             WHERE primary_name = ?3 AND cursor > ?1 ORDER BY cursor LIMIT ?2"
        }
        (false, true) => {
            "SELECT cursor, primary_name, message_id, notification_type, object, record, received_at, problems
             FROM notifications INDEXED BY notifications_by_object
             WHERE object = ?3 AND cursor > ?1 ORDER BY cursor LIMIT ?2"
        }
        (true, true) => {
            "SELECT cursor, primary_name, message_id, notification_type, object, record, received_at, problems
             FROM notifications INDEXED BY notifications_by_primary_object
             WHERE primary_name = ?3 AND object = ?4 AND cursor > ?1 ORDER BY cursor LIMIT ?2"
        }
    }
}

/// The SHA-256 a token is kept as.
pub(crate) fn token_hash(token: &Secret) -> String {
    sha256_hex(token.expose())
}

/// A new secret: 256 random bits, base64url without padding (43 characters).
pub(crate) fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    random_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Fills `bytes` from the operating system's randomness.
pub(crate) fn random_bytes(bytes: &mut [u8]) {
    // SystemRandom only fails when the OS has no randomness at all; fall back to rand's OS generator.
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), bytes).is_err() {
        rand::Rng::fill(&mut rand::rng(), bytes);
    }
}

/// A token as the cluster's bucket holds it (its hash, never the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub(crate) struct ClusterToken {
    pub name: String,
    pub group_id: String,
    pub priority: i64,
    pub token_sha256: String,
    pub created_at: String,
}

/// An API key as the cluster's bucket holds it (its hash, never the key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub(crate) struct ClusterApiKey {
    pub name: String,
    pub key_sha256: String,
    pub created_at: String,
}

/// One notification record as published to the cluster's stream.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub(crate) struct StreamRecord {
    pub primary: String,
    pub message_id: String,
    pub notification_type: String,
    pub object: String,
    pub record: Value,
    pub received_at: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

fn put_token_row(connection: &Connection, token: &ClusterToken) -> anyhow::Result<()> {
    // A rotated token of another name may still hold the hash locally for a moment: the bucket is the truth.
    connection.execute(
        "DELETE FROM tokens WHERE token_sha256 = ?1 AND name <> ?2",
        params![token.token_sha256, token.name],
    )?;
    connection.execute(
        "INSERT INTO tokens (name, group_id, priority, token_sha256, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (name) DO UPDATE SET group_id = ?2, priority = ?3, token_sha256 = ?4, created_at = ?5",
        params![token.name, token.group_id, token.priority, token.token_sha256, token.created_at],
    )?;
    Ok(())
}

fn put_api_key_row(connection: &Connection, key: &ClusterApiKey) -> anyhow::Result<()> {
    connection.execute(
        "DELETE FROM api_keys WHERE key_sha256 = ?1 AND name <> ?2",
        params![key.key_sha256, key.name],
    )?;
    connection.execute(
        "INSERT INTO api_keys (name, key_sha256, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET key_sha256 = ?2, created_at = ?3",
        params![key.name, key.key_sha256, key.created_at],
    )?;
    Ok(())
}

fn token_info(row: &rusqlite::Row<'_>) -> rusqlite::Result<TokenInfo> {
    let sha256: String = row.get(4)?;
    Ok(TokenInfo {
        name: row.get(0)?,
        group_id: row.get(1)?,
        priority: row.get(2)?,
        created_at: row.get(3)?,
        token_fingerprint: format!("sha256:{}", &sha256[..sha256.len().min(16)]),
    })
}

/// Lower-case hex SHA-256 of a secret: all the store ever keeps of it.
pub(crate) fn sha256_hex(secret: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, secret.as_bytes()))
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Checks a token's name, group and priority.
pub(crate) fn check_token_fields(name: &str, group_id: &str, priority: i64) -> anyhow::Result<()> {
    check_name(name, "name")?;
    check_name(group_id, "group")?;
    if !(0..=i64::from(i32::MAX)).contains(&priority) {
        anyhow::bail!("priority: must be a non-negative integer");
    }
    Ok(())
}

pub(crate) fn check_name(value: &str, what: &str) -> anyhow::Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    if value.is_empty() || value.len() > 255 || !value.chars().all(allowed) {
        anyhow::bail!("{what}: '{value}' must be 1 to 255 letters, digits, '-', '_' or '.'");
    }
    Ok(())
}

/// The host of a `wss://` URL (the details file's `hostName`).
pub(crate) fn host_of(url: &str) -> anyhow::Result<String> {
    let rest =
        url.strip_prefix("wss://").ok_or_else(|| anyhow::anyhow!("url: '{url}' must start with wss://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        authority.rsplit_once(':').map_or(authority, |(host, _)| host)
    };
    if host.is_empty() {
        anyhow::bail!("url: '{url}' names no host");
    }
    Ok(host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nbwss_protocol::FieldError;

    fn image(backup_time: i64) -> ReceivedRecord {
        ReceivedRecord {
            notification_type: "INFO".into(),
            object: "IMAGE".into(),
            record: serde_json::json!({"clientType": "STANDARD", "clientName": "client1",
                "backupTime": backup_time, "createdTime": backup_time + 5, "operationId": "CREATE",
                "backupId": format!("client1_{backup_time}")}),
            problems: Vec::new(),
        }
    }

    #[test]
    fn tokens_are_hashed_and_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let details = store.create_token("primary1", "sg1", 1, "wss://cloud.example.com:8443/nbwss").unwrap();
        assert_eq!(details.host_name, "cloud.example.com");
        assert!(details.token.expose().len() >= 43);
        assert_eq!(store.check_token(&details.token).unwrap().unwrap().name, "primary1");
        let fingerprint = store.list_tokens().unwrap()[0].token_fingerprint.clone();
        assert_eq!(fingerprint, format!("sha256:{}", &sha256_hex(details.token.expose())[..16]));
        let raw = std::fs::read(dir.path().join(DATABASE_FILE)).unwrap();
        assert!(!raw.windows(43).any(|window| window == details.token.expose().as_bytes()));
        let rotated = store.create_token("primary1", "sg2", 2, "wss://[::1]:1/nbwss").unwrap();
        assert_eq!(rotated.host_name, "::1");
        assert!(store.check_token(&details.token).unwrap().is_none());
        assert_eq!(store.list_tokens().unwrap()[0].group_id, "sg2");
        assert!(store.revoke_token("primary1").unwrap());
        assert!(store.check_token(&rotated.token).unwrap().is_none());
        assert!(store.create_token("bad name", "g", 1, "wss://h/x").is_err());
    }

    #[test]
    fn many_tokens_in_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let servers: Vec<(String, String, i64)> =
            (0..3).map(|index| (format!("primary{index}"), "fleet".to_owned(), 1)).collect();
        let details = store.create_tokens(&servers, "wss://cloud.example.com:8443/nbwss").unwrap();
        assert_eq!(details.len(), 3);
        for (index, detail) in details.iter().enumerate() {
            assert_eq!(store.check_token(&detail.token).unwrap().unwrap().name, format!("primary{index}"));
        }
        let bad = vec![("ok".to_owned(), "g".to_owned(), 1), ("bad name".to_owned(), "g".to_owned(), 1)];
        assert!(store.create_tokens(&bad, "wss://h/x").is_err());
        assert!(store.token("ok").unwrap().is_none(), "a refused batch leaves nothing behind");
    }

    #[test]
    fn notifications_are_stored_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut odd = image(2);
        odd.problems.push(FieldError::new("backupTime", "must be an integer, not a string"));
        let groups = vec![image(1), odd];
        let first = store.store_notification("p1", "M1", &groups).unwrap();
        assert_eq!(first, StoreOutcome::Stored { records: 2, nonconforming: 1, last_cursor: 2 });
        assert_eq!(store.store_notification("p1", "M1", &groups).unwrap(), StoreOutcome::Duplicate);
        assert!(matches!(
            store.store_notification("p2", "M1", &groups).unwrap(),
            StoreOutcome::Stored { .. }
        ));
        let all = store.notifications(&FeedQuery { after: 0, limit: 10, ..FeedQuery::default() }).unwrap();
        assert_eq!(all.iter().map(|n| n.cursor).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert_eq!(all[1].record["backupTime"], 2);
        assert_eq!(all[0].object, "IMAGE");
        assert!(all[0].conforms && all[0].reasons.is_empty());
        assert!(!all[1].conforms);
        assert_eq!(all[1].reasons, ["backupTime: must be an integer, not a string"]);
        let p2 = store
            .notifications(&FeedQuery { after: 0, limit: 10, primary: Some("p2".into()), object: None })
            .unwrap();
        assert_eq!(p2.len(), 2);
        let jobs = store
            .notifications(&FeedQuery { after: 0, limit: 10, primary: None, object: Some("JOB".into()) })
            .unwrap();
        assert!(jobs.is_empty());
    }

    #[test]
    fn token_fingerprints_match_the_services() {
        // The same vector as the service's: both sides show this for the token "qwerrtrtrtrt2234344===".
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .lock()
            .execute(
                "INSERT INTO tokens (name, group_id, priority, token_sha256, created_at) VALUES ('p', 'g', 1, ?1, 'now')",
                [sha256_hex("qwerrtrtrtrt2234344===")],
            )
            .unwrap();
        assert_eq!(store.token("p").unwrap().unwrap().token_fingerprint, "sha256:424e49d15987c197");
    }

    #[test]
    fn a_store_of_the_previous_version_opens_and_its_records_conform() {
        let dir = tempfile::tempdir().unwrap();
        {
            let old = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
            old.execute_batch(
                "CREATE TABLE notifications (cursor INTEGER PRIMARY KEY AUTOINCREMENT, primary_name TEXT NOT NULL,
                    message_id TEXT NOT NULL, notification_type TEXT NOT NULL, object TEXT NOT NULL,
                    record TEXT NOT NULL, received_at TEXT NOT NULL);
                 INSERT INTO notifications (primary_name, message_id, notification_type, object, record, received_at)
                    VALUES ('p1', 'M0', 'INFO', 'JOB', '{\"jobId\":1}', 'then');",
            )
            .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let all = store.notifications(&FeedQuery { after: 0, limit: 10, ..FeedQuery::default() }).unwrap();
        assert_eq!(all.len(), 1);
        assert!(all[0].conforms);
        store.store_notification("p1", "M1", &[image(3)]).unwrap();
        assert_eq!(store.last_cursor().unwrap(), 2);
    }

    #[test]
    fn feed_queries_use_an_index_for_every_filter() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let some = || Some("x".to_owned());
        for (primary, object, index) in [
            (None, None, "INTEGER PRIMARY KEY"),
            (some(), None, "INDEX notifications_by_primary "),
            (None, some(), "INDEX notifications_by_object "),
            (some(), some(), "INDEX notifications_by_primary_object "),
        ] {
            let query = FeedQuery { after: 0, limit: 10, primary, object };
            let connection = store.read();
            let mut statement =
                connection.prepare(&format!("EXPLAIN QUERY PLAN {}", feed_sql(&query))).unwrap();
            let filters = usize::from(query.primary.is_some()) + usize::from(query.object.is_some());
            let plan: Vec<String> = statement
                .query_map(&params![0, 10, "x", "x"][..2 + filters], |row| row.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join(" | ");
            assert!(plan.starts_with("SEARCH notifications USING"), "{query:?}: {plan}");
            assert!(plan.contains(index), "{query:?}: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "no sort: {plan}");
        }
    }

    #[test]
    fn pruning_keeps_the_newest_and_the_young() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for (index, message) in ["M1", "M2", "M3", "M4"].iter().enumerate() {
            let index = index as i64;
            store.store_notification("p1", message, &[image(index * 2), image(index * 2 + 1)]).unwrap();
        }
        // The first two messages arrived 10 days ago.
        store
            .lock()
            .execute_batch(
                "UPDATE notifications SET received_at = '2000-01-01T00:00:00.000Z' WHERE message_id IN ('M1', 'M2');
                 UPDATE notification_messages SET received_at = '2000-01-01T00:00:00.000Z' WHERE message_id IN ('M1', 'M2');",
            )
            .unwrap();
        let cursors = |store: &Store| -> Vec<i64> {
            let all = FeedQuery { after: 0, limit: 100, ..FeedQuery::default() };
            store.notifications(&all).unwrap().iter().map(|n| n.cursor).collect()
        };
        let now = chrono::Utc::now();
        let day = Duration::from_secs(24 * 3600);
        assert_eq!(store.prune(now, None, None).unwrap(), Pruned::default(), "no bounds, nothing pruned");
        let pruned = store.prune(now, Some(day), None).unwrap();
        assert_eq!(pruned, Pruned { records: 4, messages: 2 });
        assert_eq!(cursors(&store), vec![5, 6, 7, 8]);
        let pruned = store.prune(now, Some(day), Some(3)).unwrap();
        assert_eq!(pruned, Pruned { records: 1, messages: 0 });
        assert_eq!(cursors(&store), vec![6, 7, 8]);
        assert_eq!(store.notification_counts().unwrap(), vec![("p1".to_owned(), 3)], "counts follow pruning");
        // A pruned message id no longer de-duplicates; a kept one still does.
        assert_eq!(store.store_notification("p1", "M4", &[]).unwrap(), StoreOutcome::Duplicate);
        // Everything older than a day from a week ahead: all of it.
        let pruned = store.prune(now + chrono::Duration::days(7), Some(day), None).unwrap();
        assert_eq!(pruned.records, 3);
        assert!(cursors(&store).is_empty());
        assert_eq!(store.last_cursor().unwrap(), 0);
        // Cursors keep counting after a prune (AUTOINCREMENT): a reader's position stays meaningful.
        assert_eq!(
            store.store_notification("p1", "M5", &[image(99)]).unwrap(),
            StoreOutcome::Stored { records: 1, nonconforming: 0, last_cursor: 9 }
        );
    }

    #[test]
    fn counts_are_kept_per_primary_and_filled_for_an_older_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.store_notification("p1", "M1", &[image(1), image(2)]).unwrap();
        store.store_notification("p2", "M1", &[image(3)]).unwrap();
        let mut counts = store.notification_counts().unwrap();
        counts.sort();
        assert_eq!(counts, vec![("p1".to_owned(), 2), ("p2".to_owned(), 1)]);
        // A store made before the counts were kept: they are filled from the records at the next open.
        store
            .lock()
            .execute_batch(
                "DROP TRIGGER notification_counted; DROP TRIGGER notification_uncounted; DROP TABLE notification_counts;",
            )
            .unwrap();
        store.store_notification("p2", "M2", &[image(4)]).unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let mut counts = store.notification_counts().unwrap();
        counts.sort();
        assert_eq!(counts, vec![("p1".to_owned(), 2), ("p2".to_owned(), 2)]);
    }

    #[test]
    fn credential_changes_are_seen_from_another_connection() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = Store::open(dir.path()).unwrap();
        let before = endpoint.credentials_version().unwrap();
        endpoint.store_notification("p1", "M1", &[image(1)]).unwrap();
        assert_eq!(endpoint.credentials_version().unwrap(), before, "its own notifications change nothing");
        let cli = Store::open(dir.path()).unwrap();
        cli.create_api_key("app").unwrap();
        let after = endpoint.credentials_version().unwrap();
        assert_ne!(after, before, "another process's change is seen");
        endpoint.revoke_api_key("app").unwrap();
        assert_ne!(endpoint.credentials_version().unwrap(), after, "and its own");
    }
}

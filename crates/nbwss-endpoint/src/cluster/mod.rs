//! Cluster mode on NATS JetStream: any replica serves any primary server and any app.
//!
//! * Tokens and API keys (SHA-256 hashes only) live in two key-value buckets; every replica copies them into
//!   its local store as they change, so checks stay local and a revocation reaches every replica within
//!   moments (`credentials.rs`).
//! * The replica that holds a primary server's session holds a lease on it in a third bucket, renewed while
//!   the session lives; a newer session on another replica takes the lease over and the old holder closes
//!   its session when it sees that (`lease.rs`).
//! * An app call that reaches a replica without the session is forwarded to the holder by request/reply on
//!   `nbwss.<cluster>.relay.<primary>` and answered as if local (`relay.rs`).
//! * NOTIFICATION records are published to one stream, subjects
//!   `nbwss.<cluster>.notifications.<primary>.<object>`, each with `Nats-Msg-Id` = primary, message id and
//!   record index (the stream stores a resend within its duplicate window once); the service is
//!   acknowledged only after every record's publish acknowledgement (D11). Every replica copies the stream
//!   into its local store under the stream sequence as cursor, so the feed, SSE and the dashboard read the
//!   same cursors on every replica (`notifications.rs`).
//!
//! * Each of the three followers (credentials, lease holders, the stream's copy) runs its watch again a
//!   second after it fails or ends, with a warning, until the endpoint stops (`watch.rs`).
//!
//! In subjects and keys a name's `.` is written `=` (names are letters, digits, `-`, `_` and `.`).

pub(crate) mod credentials;
mod lease;
mod notifications;
pub(crate) mod relay;
mod watch;

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use serde::{Deserialize, Serialize};

pub use credentials::ClusterCredentials;
pub(crate) use lease::{follow_holders, hold, Holders};
pub(crate) use notifications::{copy_stream, publish};

/// Default lease of a session's holder: a dead replica's primary servers are free again after this.
pub const DEFAULT_LEASE_MS: u64 = 10_000;
/// Default duplicate window of the notification stream: a resend within it is stored once.
pub const DEFAULT_DUPLICATE_WINDOW_HOURS: u64 = 24;
/// Default cluster name (the prefix of every bucket, stream and subject).
pub const DEFAULT_CLUSTER_NAME: &str = "nbwss";

/// The `[cluster]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `nats://HOST:PORT` (or `tls://`), several separated by commas.
    pub nats_url: String,
    /// This replica's name, unique in the cluster (shown on the dashboard as the holder of sessions).
    pub replica: String,
    /// Names the buckets, the stream and the subjects: `nbwss` by default; clusters with different names
    /// share one NATS without seeing each other.
    #[serde(default = "default_cluster_name")]
    pub name: String,
    /// A NATS credentials file (JWT and NKey seed), when the NATS server asks for one.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// A PEM CA certificate to trust for a NATS server on TLS; setting it requires TLS.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// How long a session's lease lasts without renewal (renewed every third of it).
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// The stream's duplicate window in hours.
    #[serde(default = "default_duplicate_window_hours")]
    pub duplicate_window_hours: u64,
    /// Age after which the stream drops records, in hours (0: never).
    #[serde(default)]
    pub stream_max_age_hours: u64,
    /// Size after which the stream drops its oldest records, in bytes (0: no limit).
    #[serde(default)]
    pub stream_max_bytes: u64,
}

fn default_cluster_name() -> String {
    DEFAULT_CLUSTER_NAME.to_owned()
}

fn default_lease_ms() -> u64 {
    DEFAULT_LEASE_MS
}

fn default_duplicate_window_hours() -> u64 {
    DEFAULT_DUPLICATE_WINDOW_HOURS
}

impl ClusterConfig {
    /// A cluster configuration with the defaults.
    pub fn new(nats_url: impl Into<String>, replica: impl Into<String>) -> Self {
        Self {
            nats_url: nats_url.into(),
            replica: replica.into(),
            name: default_cluster_name(),
            credentials_file: None,
            tls_ca: None,
            lease_ms: DEFAULT_LEASE_MS,
            duplicate_window_hours: DEFAULT_DUPLICATE_WINDOW_HOURS,
            stream_max_age_hours: 0,
            stream_max_bytes: 0,
        }
    }

    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        if self.nats_url.trim().is_empty() {
            anyhow::bail!("cluster.nats_url: must name a NATS server, e.g. nats://127.0.0.1:4222");
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-_".contains(c);
        if self.name.is_empty() || self.name.len() > 64 || !self.name.chars().all(allowed) {
            anyhow::bail!("cluster.name: '{}' must be 1 to 64 letters, digits, '-' or '_'", self.name);
        }
        crate::store::check_name(&self.replica, "cluster.replica")?;
        if self.lease_ms < 1_000 {
            anyhow::bail!("cluster.lease_ms: must be at least 1000");
        }
        if self.duplicate_window_hours == 0 {
            anyhow::bail!("cluster.duplicate_window_hours: must be at least 1");
        }
        Ok(())
    }

    pub(crate) fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }
}

/// A name as a subject token or bucket key: `.` becomes `=`.
pub(crate) fn token(name: &str) -> String {
    name.replace('.', "=")
}

/// An object kind as a subject token: anything but letters, digits, `-` and `_` becomes `_`.
fn object_token(object: &str) -> String {
    let token: String =
        object.chars().map(|c| if c.is_ascii_alphanumeric() || "-_".contains(c) { c } else { '_' }).collect();
    if token.is_empty() {
        "_".to_owned()
    } else {
        token
    }
}

/// A connection to the cluster's NATS: its buckets and its stream.
#[derive(Clone)]
pub struct Cluster {
    pub(crate) config: ClusterConfig,
    pub(crate) client: async_nats::Client,
    pub(crate) jetstream: jetstream::Context,
    pub(crate) tokens: kv::Store,
    pub(crate) api_keys: kv::Store,
    pub(crate) sessions: kv::Store,
    pub(crate) stream: stream::Stream,
    /// The holder of each session as this replica has seen it (kept by [`follow_holders`]).
    pub(crate) holders: std::sync::Arc<Holders>,
}

impl Cluster {
    /// Connects to NATS and opens (creating when needed) the buckets and the stream.
    pub async fn connect(config: &ClusterConfig) -> anyhow::Result<Self> {
        config.validate()?;
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("nbwss-endpoint {}", config.replica))
            .retry_on_initial_connect()
            .max_reconnects(None);
        if let Some(path) = &config.credentials_file {
            options = options.credentials_file(path).await.map_err(|error| {
                anyhow::anyhow!("cluster.credentials_file: cannot read {}: {error}", path.display())
            })?;
        }
        if let Some(path) = &config.tls_ca {
            options = options.add_root_certificates(path.clone()).require_tls(true);
        }
        // retry_on_initial_connect returns at once; a first round trip proves the server answers.
        let client = options.connect(config.nats_url.as_str()).await.map_err(|error| {
            anyhow::anyhow!("cluster.nats_url: cannot connect to {}: {error}", config.nats_url)
        })?;
        let jetstream = jetstream::new(client.clone());
        let wait = Duration::from_secs(10);
        let prefix = format!("nbwss_{}", config.name);
        let setup = async {
            let tokens = bucket(&jetstream, format!("{prefix}_tokens"), Duration::ZERO).await?;
            let api_keys = bucket(&jetstream, format!("{prefix}_api_keys"), Duration::ZERO).await?;
            let sessions = bucket(&jetstream, format!("{prefix}_sessions"), config.lease()).await?;
            let stream = jetstream
                .get_or_create_stream(stream::Config {
                    name: format!("{prefix}_notifications"),
                    subjects: vec![format!("nbwss.{}.notifications.>", config.name)],
                    duplicate_window: Duration::from_secs(config.duplicate_window_hours * 3600),
                    max_age: Duration::from_secs(config.stream_max_age_hours * 3600),
                    max_bytes: if config.stream_max_bytes == 0 {
                        -1
                    } else {
                        i64::try_from(config.stream_max_bytes).unwrap_or(i64::MAX)
                    },
                    storage: stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|error| anyhow::anyhow!("cannot open the stream {prefix}_notifications: {error}"))?;
            anyhow::Ok((tokens, api_keys, sessions, stream))
        };
        let (tokens, api_keys, sessions, stream) = tokio::time::timeout(wait, setup).await.map_err(|_| {
            anyhow::anyhow!(
                "cluster.nats_url: {} did not answer with JetStream within {} s (is nats-server running with -js?)",
                config.nats_url,
                wait.as_secs()
            )
        })??;
        let holders = std::sync::Arc::new(tokio::sync::watch::channel(std::collections::HashMap::new()).0);
        Ok(Self { config: config.clone(), client, jetstream, tokens, api_keys, sessions, stream, holders })
    }

    /// `nbwss.<cluster>.relay.<primary>`: where the holder of `primary`'s session answers forwarded calls.
    pub(crate) fn relay_subject(&self, primary: &str) -> String {
        format!("nbwss.{}.relay.{}", self.config.name, token(primary))
    }

    /// `nbwss.<cluster>.notifications.<primary>.<object>`.
    pub(crate) fn notification_subject(&self, primary: &str, object: &str) -> String {
        format!("nbwss.{}.notifications.{}.{}", self.config.name, token(primary), object_token(object))
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The NATS URL it connected to.
    pub fn nats_url(&self) -> &str {
        &self.config.nats_url
    }

    /// Whether the connection to NATS is up now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// This replica's name.
    pub fn replica(&self) -> &str {
        &self.config.replica
    }

    /// Messages (records) in the notification stream now.
    pub async fn stream_messages(&self) -> anyhow::Result<u64> {
        Ok(self.stream.clone().info().await?.state.messages)
    }

    /// The replica holding `primary`'s session now, if any (its lease).
    pub async fn holder(&self, primary: &str) -> anyhow::Result<Option<String>> {
        let Some(value) = self.sessions.get(token(primary)).await? else { return Ok(None) };
        Ok(serde_json::from_slice::<lease::Lease>(&value).ok().map(|lease| lease.replica))
    }
}

async fn bucket(
    jetstream: &jetstream::Context,
    name: String,
    max_age: Duration,
) -> anyhow::Result<kv::Store> {
    if let Ok(store) = jetstream.get_key_value(&name).await {
        return Ok(store);
    }
    // The bucket's stream as the client library would make it, created directly: the library's own
    // bucket creation reads account fields that NATS 2.9 (Debian 12's) does not send.
    jetstream
        .get_or_create_stream(stream::Config {
            name: format!("KV_{name}"),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 1,
            max_age,
            storage: stream::StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .map_err(|error| anyhow::anyhow!("cannot create the key-value bucket {name}: {error}"))?;
    jetstream
        .get_key_value(&name)
        .await
        .map_err(|error| anyhow::anyhow!("cannot open the key-value bucket {name}: {error}"))
}

//! The endpoint's configuration: data, validated once, safe to log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default address of the listener (WebSocket endpoint, app API and dashboard share it).
pub const DEFAULT_BIND: &str = "127.0.0.1:8443";
/// Default path of the WebSocket endpoint.
pub const DEFAULT_WEBSOCKET_PATH: &str = "/nbwss";
/// Default time a relayed call waits for its COMMAND RESPONSE.
pub const DEFAULT_RELAY_TIMEOUT_MS: u64 = 120_000;
/// Default number of relayed calls in flight per primary server.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;
/// Default number of failed CONNECTs a source address may make per minute before it is refused.
pub const DEFAULT_MAX_FAILED_CONNECTS_PER_MINUTE: u32 = 10;
/// Default time a new WebSocket connection has to send its CONNECT REQUEST.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 30_000;
/// Default interval between the endpoint's WebSocket pings.
pub const DEFAULT_PING_INTERVAL_MS: u64 = 30_000;
/// Default number of consecutive pings without a pong after which a session is closed (D18).
pub const DEFAULT_MAX_MISSED_PONGS: u32 = 3;
/// Default largest message a connection may send before its CONNECT is accepted (D4): a CONNECT REQUEST
/// is a few hundred bytes.
pub const DEFAULT_PRE_CONNECT_MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Default number of WebSocket connections waiting for their CONNECT to be accepted, in all.
pub const DEFAULT_MAX_PENDING_CONNECTIONS: usize = 1024;
/// Default number of WebSocket connections waiting for their CONNECT to be accepted, per source address.
pub const DEFAULT_MAX_PENDING_PER_ADDRESS: usize = 32;
/// Default number of open connections of the listener (every kind: app calls, SSE streams, sessions).
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
/// Default time a new TCP connection has to complete its TLS handshake.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// Default time to receive a request's headers, counted from when the connection is ready for the next
/// request: also how long an idle keep-alive connection stays open.
pub const DEFAULT_HTTP_HEADER_TIMEOUT_MS: u64 = 20_000;
/// Default time to receive a relayed call's whole request body.
pub const DEFAULT_REQUEST_BODY_TIMEOUT_MS: u64 = 30_000;
/// Default bytes of relayed request bodies the endpoint holds in memory at once, all calls together.
pub const DEFAULT_MAX_BUFFERED_REQUEST_BYTES: usize = 256 * 1024 * 1024;
/// Default interval at which the endpoint looks for tokens and API keys changed by another process.
pub const DEFAULT_REVOCATION_CHECK_INTERVAL_MS: u64 = 1_000;
/// Default age after which a stored notification is pruned: 30 days.
pub const DEFAULT_RETENTION_MAX_AGE_HOURS: u64 = 30 * 24;
/// Default number of newest notification records kept: about 210 MB of store (a JOB record with its
/// indexes takes about 420 bytes; pruned space is reused, so the file stops growing there).
pub const DEFAULT_RETENTION_MAX_RECORDS: u64 = 500_000;
/// Default interval between two prunings of the notification store.
pub const DEFAULT_RETENTION_PRUNE_INTERVAL_MS: u64 = 60_000;
/// Default time a webhook delivery is retried before it fails and its subscription is paused: a day.
pub const DEFAULT_WEBHOOK_RETRY_WINDOW_MS: u64 = 24 * 3600 * 1000;
/// Default delay before the first retry of a webhook delivery; each further retry waits twice as long.
pub const DEFAULT_WEBHOOK_MIN_BACKOFF_MS: u64 = 5_000;
/// Default longest delay between two attempts of a webhook delivery.
pub const DEFAULT_WEBHOOK_MAX_BACKOFF_MS: u64 = 3600 * 1000;
/// Default time a webhook receiver has to answer one delivery (Standard Webhooks recommends 15 to 30 s).
pub const DEFAULT_WEBHOOK_REQUEST_TIMEOUT_MS: u64 = 15_000;
/// Default number of deliveries a subscription holds (pending or failed) before it stops queuing.
pub const DEFAULT_WEBHOOK_MAX_PENDING: u64 = 10_000;
/// Default number of webhook subscriptions.
pub const DEFAULT_MAX_WEBHOOKS: usize = 100;
/// Default largest webhook body: a record that would make a larger one is sent without its record. A JOB
/// record's body is about 500 bytes; Standard Webhooks recommends bodies under 20 KB.
pub const DEFAULT_WEBHOOK_MAX_PAYLOAD_BYTES: usize = 16 * 1024;

/// The endpoint's configuration (TOML).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Address to listen on; one TLS listener serves the WebSocket endpoint, the app API and the dashboard.
    #[serde(default = "default_bind")]
    pub bind: SocketAddr,
    /// Path of the WebSocket endpoint.
    #[serde(default = "default_websocket_path")]
    pub websocket_path: String,
    /// The `wss://` URL written into endpoint details files; by default derived from `bind` and
    /// `websocket_path` (loopback when `bind` is a wildcard address).
    #[serde(default)]
    pub public_url: Option<String>,
    /// Directory of the SQLite store (tokens, API keys, notifications) and of a generated certificate.
    pub data_dir: PathBuf,
    /// Certificate and key files; `None` generates a self-signed certificate for `localhost` and
    /// `127.0.0.1`, kept in the data directory.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Limits.
    #[serde(default)]
    pub limits: Limits,
    /// WebSocket keepalive.
    #[serde(default)]
    pub keepalive: Keepalive,
    /// How long notifications are kept.
    #[serde(default)]
    pub retention: Retention,
    /// Webhook deliveries.
    #[serde(default)]
    pub webhooks: Webhooks,
    /// Cluster mode on NATS JetStream; absent (the default), the endpoint keeps its state in its SQLite store.
    #[serde(default)]
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

/// A certificate chain and its private key, PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Limits of the endpoint. Every one is documented, with its default, in the endpoint's README and in
/// SECURITY.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest WebSocket message accepted once CONNECT is accepted (D4), and largest encoded COMMAND
    /// sent: a relayed call whose COMMAND would be larger is answered 413.
    pub max_message_bytes: usize,
    /// Largest message accepted before CONNECT is accepted (never more than `max_message_bytes`); a
    /// connection may send at most twice this many bytes in all (frames, fragments, pings) before its
    /// CONNECT.
    pub pre_connect_max_message_bytes: usize,
    /// How long a relayed call waits for the COMMAND RESPONSE before answering 504.
    pub relay_timeout_ms: u64,
    /// How long a relayed call's request body may take to arrive before the call is answered 408.
    pub request_body_timeout_ms: u64,
    /// Bytes of relayed request bodies held in memory at once, all calls together (each body is held until
    /// its call ends); a call that would go over is answered 503.
    pub max_buffered_request_bytes: usize,
    /// Relayed calls in flight per primary server; more are answered 429.
    pub max_in_flight_per_primary: usize,
    /// Failed CONNECTs (bad token, no CONNECT) allowed per source address per minute.
    pub max_failed_connects_per_minute: u32,
    /// How long a new WebSocket connection has to send its CONNECT REQUEST.
    pub connect_timeout_ms: u64,
    /// WebSocket connections whose CONNECT is not accepted yet, in all; more are answered 503.
    pub max_pending_connections: usize,
    /// WebSocket connections whose CONNECT is not accepted yet, per source address; more are answered 503.
    pub max_pending_per_address: usize,
    /// Open connections of the listener, of every kind; more are closed at once, with a log line.
    pub max_connections: usize,
    /// How long a new TCP connection has to complete its TLS handshake.
    pub tls_handshake_timeout_ms: u64,
    /// How long a request's headers may take to arrive, counted from when the connection is ready for
    /// the next request: an idle keep-alive connection is closed after it too.
    pub http_header_timeout_ms: u64,
    /// How often the endpoint looks for tokens and API keys changed by another process (`nbwss endpoint
    /// token revoke`): a revoked token's session and a revoked key's streams end within this interval.
    pub revocation_check_interval_ms: u64,
}

/// How long notifications are kept: records older than `max_age_hours` or beyond the newest
/// `max_records` are pruned every `prune_interval_ms`. 0 turns a bound off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Age in hours after which a record is pruned (0: no age limit).
    pub max_age_hours: u64,
    /// Number of newest records kept (0: no count limit).
    pub max_records: u64,
    /// Interval between two prunings.
    pub prune_interval_ms: u64,
}

/// Webhook deliveries: how long and how often a delivery is retried, what a subscription may hold, and which
/// private networks a webhook may reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Webhooks {
    /// How long a delivery is retried, from its first attempt, before it is marked failed and its
    /// subscription paused.
    pub retry_window_ms: u64,
    /// Delay before the first retry; each further retry waits twice as long (with jitter), up to
    /// `max_backoff_ms`. A receiver's `Retry-After` lengthens it.
    pub min_backoff_ms: u64,
    /// Longest delay between two attempts.
    pub max_backoff_ms: u64,
    /// Time a receiver has to answer one delivery.
    pub request_timeout_ms: u64,
    /// Deliveries a subscription may hold (pending or failed); at the limit it stops queuing new records
    /// until its receiver catches up, and records pruned meanwhile are counted as missed.
    pub max_pending_per_webhook: u64,
    /// Subscriptions the endpoint accepts.
    pub max_webhooks: usize,
    /// Largest body sent: a record that would make a larger one is sent without its record (`recordOmitted`),
    /// for the receiver to read from the feed.
    pub max_payload_bytes: usize,
    /// Networks (CIDR, e.g. `10.1.0.0/16`, `127.0.0.1/32`) that webhooks may reach although they are
    /// loopback, private, link-local or otherwise not public. Empty by default: webhooks reach public
    /// addresses only.
    pub allow_networks: Vec<String>,
}

impl Default for Webhooks {
    fn default() -> Self {
        Self {
            retry_window_ms: DEFAULT_WEBHOOK_RETRY_WINDOW_MS,
            min_backoff_ms: DEFAULT_WEBHOOK_MIN_BACKOFF_MS,
            max_backoff_ms: DEFAULT_WEBHOOK_MAX_BACKOFF_MS,
            request_timeout_ms: DEFAULT_WEBHOOK_REQUEST_TIMEOUT_MS,
            max_pending_per_webhook: DEFAULT_WEBHOOK_MAX_PENDING,
            max_webhooks: DEFAULT_MAX_WEBHOOKS,
            max_payload_bytes: DEFAULT_WEBHOOK_MAX_PAYLOAD_BYTES,
            allow_networks: Vec::new(),
        }
    }
}

/// WebSocket keepalive: the endpoint pings every session and closes those that stop answering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Keepalive {
    /// Interval between pings.
    pub ping_interval_ms: u64,
    /// Consecutive pings without a pong after which the session is closed.
    pub max_missed_pongs: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: nbwss_protocol::DEFAULT_MAX_MESSAGE_BYTES,
            pre_connect_max_message_bytes: DEFAULT_PRE_CONNECT_MAX_MESSAGE_BYTES,
            relay_timeout_ms: DEFAULT_RELAY_TIMEOUT_MS,
            request_body_timeout_ms: DEFAULT_REQUEST_BODY_TIMEOUT_MS,
            max_buffered_request_bytes: DEFAULT_MAX_BUFFERED_REQUEST_BYTES,
            max_in_flight_per_primary: DEFAULT_MAX_IN_FLIGHT,
            max_failed_connects_per_minute: DEFAULT_MAX_FAILED_CONNECTS_PER_MINUTE,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            max_pending_connections: DEFAULT_MAX_PENDING_CONNECTIONS,
            max_pending_per_address: DEFAULT_MAX_PENDING_PER_ADDRESS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            tls_handshake_timeout_ms: DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS,
            http_header_timeout_ms: DEFAULT_HTTP_HEADER_TIMEOUT_MS,
            revocation_check_interval_ms: DEFAULT_REVOCATION_CHECK_INTERVAL_MS,
        }
    }
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age_hours: DEFAULT_RETENTION_MAX_AGE_HOURS,
            max_records: DEFAULT_RETENTION_MAX_RECORDS,
            prune_interval_ms: DEFAULT_RETENTION_PRUNE_INTERVAL_MS,
        }
    }
}

impl Default for Keepalive {
    fn default() -> Self {
        Self { ping_interval_ms: DEFAULT_PING_INTERVAL_MS, max_missed_pongs: DEFAULT_MAX_MISSED_PONGS }
    }
}

/// Longest timeout or interval accepted: a day, beyond any use and far from overflowing a deadline.
const MAX_INTERVAL_MS: u64 = 24 * 3600 * 1000;
/// Longest retention accepted: 100 years, far beyond any use, short enough that the cutoff never overflows.
const MAX_RETENTION_HOURS: u64 = 100 * 365 * 24;

fn default_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8443))
}

fn default_websocket_path() -> String {
    DEFAULT_WEBSOCKET_PATH.to_owned()
}

impl EndpointConfig {
    /// A configuration with every default, listening on `127.0.0.1:0` (a free port): what tests and
    /// `nbwss up` start from.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            websocket_path: default_websocket_path(),
            public_url: None,
            data_dir: data_dir.into(),
            tls: None,
            limits: Limits::default(),
            keepalive: Keepalive::default(),
            retention: Retention::default(),
            webhooks: Webhooks::default(),
            cluster: None,
        }
    }

    /// Reads and validates a TOML configuration file.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", path.display()))?;
        Self::from_toml(&text).map_err(|error| anyhow::anyhow!("{}: {error:#}", path.display()))
    }

    /// Parses and validates a TOML configuration.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        let config: Self = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the values that serde cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !self.websocket_path.starts_with('/') || self.websocket_path.len() < 2 {
            anyhow::bail!("websocket_path: must start with / and name a path, e.g. /nbwss");
        }
        if self.websocket_path.starts_with("/api/") || self.websocket_path.starts_with("/relay/") {
            anyhow::bail!("websocket_path: must not be under /api/ or /relay/");
        }
        if let Some(url) = &self.public_url {
            if !url.starts_with("wss://") {
                anyhow::bail!("public_url: must start with wss:// (ws:// is not supported)");
            }
        }
        if let Some(cluster) = &self.cluster {
            cluster.validate()?;
        }
        let limits = &self.limits;
        if limits.max_message_bytes < 1024 {
            anyhow::bail!("limits.max_message_bytes: must be at least 1024");
        }
        if limits.max_buffered_request_bytes < limits.max_message_bytes {
            anyhow::bail!(
                "limits.max_buffered_request_bytes: must be at least limits.max_message_bytes ({}), or no call \
                 with the largest body could be relayed",
                limits.max_message_bytes
            );
        }
        if limits.pre_connect_max_message_bytes < 1024 {
            anyhow::bail!("limits.pre_connect_max_message_bytes: must be at least 1024");
        }
        for (key, value) in [
            ("limits.relay_timeout_ms", limits.relay_timeout_ms),
            ("limits.request_body_timeout_ms", limits.request_body_timeout_ms),
            ("limits.connect_timeout_ms", limits.connect_timeout_ms),
            ("limits.tls_handshake_timeout_ms", limits.tls_handshake_timeout_ms),
            ("limits.http_header_timeout_ms", limits.http_header_timeout_ms),
            ("limits.revocation_check_interval_ms", limits.revocation_check_interval_ms),
            ("keepalive.ping_interval_ms", self.keepalive.ping_interval_ms),
            ("retention.prune_interval_ms", self.retention.prune_interval_ms),
        ] {
            if !(1..=MAX_INTERVAL_MS).contains(&value) {
                anyhow::bail!("{key}: must be from 1 to {MAX_INTERVAL_MS} milliseconds (a day)");
            }
        }
        for (key, value) in [
            ("max_in_flight_per_primary", limits.max_in_flight_per_primary),
            ("max_pending_connections", limits.max_pending_connections),
            ("max_pending_per_address", limits.max_pending_per_address),
            ("max_connections", limits.max_connections),
            ("max_buffered_request_bytes", limits.max_buffered_request_bytes),
        ] {
            if !(1..=tokio::sync::Semaphore::MAX_PERMITS).contains(&value) {
                anyhow::bail!("limits.{key}: must be from 1 to {}", tokio::sync::Semaphore::MAX_PERMITS);
            }
        }
        if self.retention.max_age_hours > MAX_RETENTION_HOURS {
            anyhow::bail!(
                "retention.max_age_hours: at most {MAX_RETENTION_HOURS} (0 keeps records of any age)"
            );
        }
        if self.keepalive.max_missed_pongs == 0 {
            anyhow::bail!("keepalive.max_missed_pongs: must be at least 1");
        }
        self.webhooks.validate()
    }

    /// The `wss://` URL written into endpoint details: `public_url`, or one derived from `bind`.
    pub fn websocket_url_for(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.clone(),
            None => format!("wss://{}{}", loopback_if_wildcard(bound), self.websocket_path),
        }
    }

    pub(crate) fn relay_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.relay_timeout_ms)
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.connect_timeout_ms)
    }

    /// The message limit before CONNECT is accepted.
    pub(crate) fn pre_connect_max_message_bytes(&self) -> usize {
        self.limits.pre_connect_max_message_bytes.min(self.limits.max_message_bytes)
    }

    pub(crate) fn request_body_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.request_body_timeout_ms)
    }

    pub(crate) fn tls_handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.tls_handshake_timeout_ms)
    }

    pub(crate) fn http_header_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.http_header_timeout_ms)
    }

    pub(crate) fn revocation_check_interval(&self) -> Duration {
        Duration::from_millis(self.limits.revocation_check_interval_ms)
    }

    pub(crate) fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.keepalive.ping_interval_ms)
    }
}

/// Longest webhook retry window accepted: 30 days.
const MAX_WEBHOOK_RETRY_WINDOW_MS: u64 = 30 * 24 * 3600 * 1000;

impl Webhooks {
    fn validate(&self) -> anyhow::Result<()> {
        if !(1..=MAX_WEBHOOK_RETRY_WINDOW_MS).contains(&self.retry_window_ms) {
            anyhow::bail!(
                "webhooks.retry_window_ms: must be from 1 to {MAX_WEBHOOK_RETRY_WINDOW_MS} milliseconds (30 days)"
            );
        }
        for (key, value) in [
            ("webhooks.min_backoff_ms", self.min_backoff_ms),
            ("webhooks.max_backoff_ms", self.max_backoff_ms),
            ("webhooks.request_timeout_ms", self.request_timeout_ms),
        ] {
            if !(1..=MAX_INTERVAL_MS).contains(&value) {
                anyhow::bail!("{key}: must be from 1 to {MAX_INTERVAL_MS} milliseconds (a day)");
            }
        }
        if self.max_backoff_ms < self.min_backoff_ms {
            anyhow::bail!(
                "webhooks.max_backoff_ms: must be at least webhooks.min_backoff_ms ({})",
                self.min_backoff_ms
            );
        }
        if !(1..=10_000_000).contains(&self.max_pending_per_webhook) {
            anyhow::bail!("webhooks.max_pending_per_webhook: must be from 1 to 10000000");
        }
        if !(1..=10_000).contains(&self.max_webhooks) {
            anyhow::bail!("webhooks.max_webhooks: must be from 1 to 10000");
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_payload_bytes) {
            anyhow::bail!("webhooks.max_payload_bytes: must be from 1024 to 16777216");
        }
        crate::webhooks::AddressPolicy::new(&self.allow_networks)?;
        Ok(())
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// `host:port` of a bound address, with a wildcard address replaced by loopback.
pub(crate) fn loopback_if_wildcard(address: SocketAddr) -> String {
    let ip =
        if address.ip().is_unspecified() { std::net::IpAddr::from([127, 0, 0, 1]) } else { address.ip() };
    SocketAddr::new(ip, address.port()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_fields() {
        let config = EndpointConfig::from_toml("data_dir = \"/tmp/x\"").unwrap();
        assert_eq!(config.bind.to_string(), DEFAULT_BIND);
        assert_eq!(config.websocket_path, "/nbwss");
        assert_eq!(config.limits.max_message_bytes, 16 * 1024 * 1024);
        assert_eq!(config.websocket_url_for(config.bind), "wss://127.0.0.1:8443/nbwss");
        let error = EndpointConfig::from_toml("data_dir = \"/x\"\nport = 1").unwrap_err();
        assert!(error.to_string().contains("unknown field"), "{error}");
        let error = EndpointConfig::from_toml("data_dir = \"/x\"\nwebsocket_path = \"nb\"").unwrap_err();
        assert!(error.to_string().contains("websocket_path"), "{error}");
        let config = EndpointConfig::from_toml(
            "data_dir = \"/x\"\nbind = \"0.0.0.0:9000\"\n[limits]\nrelay_timeout_ms = 5\n[keepalive]\nmax_missed_pongs = 2\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"",
        )
        .unwrap();
        assert_eq!(config.limits.relay_timeout_ms, 5);
        assert_eq!(config.limits.max_in_flight_per_primary, DEFAULT_MAX_IN_FLIGHT);
        assert_eq!(config.websocket_url_for(config.bind), "wss://127.0.0.1:9000/nbwss");
    }

    #[test]
    fn edge_limits_have_defaults_and_are_validated() {
        let config = EndpointConfig::from_toml("data_dir = \"/x\"").unwrap();
        assert_eq!(config.limits.pre_connect_max_message_bytes, 64 * 1024);
        assert_eq!(config.limits.max_connections, 20_000);
        assert_eq!(config.limits.max_pending_connections, 1024);
        assert_eq!(config.limits.max_pending_per_address, 32);
        assert_eq!(config.retention, Retention::default());
        let config = EndpointConfig::from_toml(
            "data_dir = \"/x\"\n[limits]\nmax_message_bytes = 2048\n[retention]\nmax_age_hours = 0\nmax_records = 10",
        )
        .unwrap();
        assert_eq!(config.pre_connect_max_message_bytes(), 2048, "never more than the message limit");
        assert_eq!((config.retention.max_age_hours, config.retention.max_records), (0, 10));
        for (toml, named) in [
            ("[limits]\nhttp_header_timeout_ms = 0", "limits.http_header_timeout_ms"),
            ("[limits]\nconnect_timeout_ms = 9223372036854775807", "limits.connect_timeout_ms"),
            ("[keepalive]\nping_interval_ms = 0", "keepalive.ping_interval_ms"),
            ("[limits]\nmax_connections = 9223372036854775807", "limits.max_connections"),
            ("[limits]\nmax_pending_per_address = 0", "limits.max_pending_per_address"),
            ("[limits]\nmax_connections = 0", "limits.max_connections"),
            ("[limits]\npre_connect_max_message_bytes = 10", "limits.pre_connect_max_message_bytes"),
            ("[limits]\nmax_buffered_request_bytes = 1024", "limits.max_buffered_request_bytes"),
            ("[retention]\nprune_interval_ms = 0", "retention.prune_interval_ms"),
            ("[retention]\nmax_age_hours = 99999999", "retention.max_age_hours"),
            ("[retention]\nkeep = 1", "unknown field"),
        ] {
            let error = EndpointConfig::from_toml(&format!("data_dir = \"/x\"\n{toml}")).unwrap_err();
            assert!(format!("{error:#}").contains(named), "{toml}: {error:#}");
        }
    }
}

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

/// Limits of the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest WebSocket message accepted (D4), and largest relayed request body.
    pub max_message_bytes: usize,
    /// How long a relayed call waits for the COMMAND RESPONSE before answering 504.
    pub relay_timeout_ms: u64,
    /// Relayed calls in flight per primary server; more are answered 429.
    pub max_in_flight_per_primary: usize,
    /// Failed CONNECTs (bad token, no CONNECT) allowed per source address per minute.
    pub max_failed_connects_per_minute: u32,
    /// How long a new connection has to send CONNECT.
    pub connect_timeout_ms: u64,
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
            relay_timeout_ms: DEFAULT_RELAY_TIMEOUT_MS,
            max_in_flight_per_primary: DEFAULT_MAX_IN_FLIGHT,
            max_failed_connects_per_minute: DEFAULT_MAX_FAILED_CONNECTS_PER_MINUTE,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
        }
    }
}

impl Default for Keepalive {
    fn default() -> Self {
        Self { ping_interval_ms: DEFAULT_PING_INTERVAL_MS, max_missed_pongs: DEFAULT_MAX_MISSED_PONGS }
    }
}

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
        if self.limits.max_message_bytes < 1024 {
            anyhow::bail!("limits.max_message_bytes: must be at least 1024");
        }
        if self.limits.relay_timeout_ms == 0 || self.limits.connect_timeout_ms == 0 {
            anyhow::bail!("limits: timeouts must be positive");
        }
        if self.limits.max_in_flight_per_primary == 0 {
            anyhow::bail!("limits.max_in_flight_per_primary: must be at least 1");
        }
        if self.keepalive.ping_interval_ms == 0 || self.keepalive.max_missed_pongs == 0 {
            anyhow::bail!("keepalive: ping_interval_ms and max_missed_pongs must be positive");
        }
        Ok(())
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

    pub(crate) fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.keepalive.ping_interval_ms)
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
}

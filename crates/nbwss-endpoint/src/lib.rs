//! A ready-to-run NBWSS cloud endpoint: tokens, an app API to call NetBackup, a notification feed, a dashboard.
//!
//! * [`Endpoint::start`] runs one TLS listener serving the WebSocket endpoint (`wss://…/nbwss`), the app API
//!   (`/api/v1/...`, authenticated by the `X-NBWSS-API-Key` header), the capability relay (`/relay/{key}/...`),
//!   the dashboard (`/`), `/healthz` and `/metrics`;
//! * [`Store`] is the SQLite state (tokens and API keys as SHA-256 hashes, notifications, webhooks), usable
//!   offline by the command line while the endpoint runs: it notices revocations and webhook changes within
//!   seconds;
//! * [`webhooks`] POST each stored record to the HTTPS URLs subscribed to it, signed the Standard Webhooks
//!   way, in order, retried and durable.
//!
//! The name a primary server is known by is the name of the token it presents in CONNECT.

mod api;
pub mod cluster;
mod config;
mod connection;
mod endpoint;
mod error;
mod feed;
mod files;
mod listener;
mod metrics;
mod pending;
mod rate_limit;
mod relay;
mod relay_history;
mod retention;
mod revocation;
mod session;
mod state;
mod stats;
mod store;
mod tls;
pub mod webhooks;
mod websocket;

pub use api::{redact, API_KEY_HEADER, API_KEY_QUERY};
pub use cluster::{Cluster, ClusterConfig, ClusterCredentials};
pub use config::{
    EndpointConfig, Keepalive, Limits, Retention, TlsFiles, Webhooks, DEFAULT_BIND,
    DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_HTTP_HEADER_TIMEOUT_MS, DEFAULT_MAX_BUFFERED_REQUEST_BYTES,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_FAILED_CONNECTS_PER_MINUTE, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_MISSED_PONGS, DEFAULT_MAX_PENDING_CONNECTIONS, DEFAULT_MAX_PENDING_PER_ADDRESS,
    DEFAULT_MAX_WEBHOOKS, DEFAULT_PING_INTERVAL_MS, DEFAULT_PRE_CONNECT_MAX_MESSAGE_BYTES,
    DEFAULT_RELAY_TIMEOUT_MS, DEFAULT_REQUEST_BODY_TIMEOUT_MS, DEFAULT_RETENTION_MAX_AGE_HOURS,
    DEFAULT_RETENTION_MAX_RECORDS, DEFAULT_RETENTION_PRUNE_INTERVAL_MS, DEFAULT_REVOCATION_CHECK_INTERVAL_MS,
    DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS, DEFAULT_WEBHOOK_MAX_BACKOFF_MS, DEFAULT_WEBHOOK_MAX_PAYLOAD_BYTES,
    DEFAULT_WEBHOOK_MAX_PENDING, DEFAULT_WEBHOOK_MIN_BACKOFF_MS, DEFAULT_WEBHOOK_REQUEST_TIMEOUT_MS,
    DEFAULT_WEBHOOK_RETRY_WINDOW_MS, DEFAULT_WEBSOCKET_PATH,
};
pub use endpoint::{Endpoint, EndpointHandle};
pub use files::{private_dir, write_private_file};
pub use relay::ORIGIN_ENDPOINT;
pub use store::{
    ApiKeyInfo, FeedQuery, Pruned, Store, StoreOutcome, StoredNotification, TokenInfo, DATABASE_FILE,
};
pub use tls::{fingerprint, GENERATED_CERT_FILE, GENERATED_KEY_FILE};

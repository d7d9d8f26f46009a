//! A ready-to-run NBWSS cloud endpoint: tokens, an app API to call NetBackup, a notification feed, a dashboard.
//!
//! * [`Endpoint::start`] runs one TLS listener serving the WebSocket endpoint (`wss://…/nbwss`), the app API
//!   (`/api/v1/...`, authenticated by the `X-NBWSS-API-Key` header), the capability relay (`/relay/{key}/...`),
//!   the dashboard (`/`), `/healthz` and `/metrics`;
//! * [`Store`] is the SQLite state (tokens and API keys as SHA-256 hashes, notifications), usable offline by
//!   the command line.
//!
//! The name a primary server is known by is the name of the token it presents in CONNECT.

mod api;
mod config;
mod connection;
mod endpoint;
mod error;
mod feed;
mod metrics;
mod rate_limit;
mod relay;
mod session;
mod state;
mod store;
mod tls;

pub use api::{redact, API_KEY_HEADER, API_KEY_QUERY};
pub use config::{
    EndpointConfig, Keepalive, Limits, TlsFiles, DEFAULT_BIND, DEFAULT_CONNECT_TIMEOUT_MS,
    DEFAULT_MAX_FAILED_CONNECTS_PER_MINUTE, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_MISSED_PONGS,
    DEFAULT_PING_INTERVAL_MS, DEFAULT_RELAY_TIMEOUT_MS, DEFAULT_WEBSOCKET_PATH,
};
pub use endpoint::{Endpoint, EndpointHandle};
pub use relay::ORIGIN_ENDPOINT;
pub use store::{ApiKeyInfo, FeedQuery, Store, StoreOutcome, StoredNotification, TokenInfo, DATABASE_FILE};
pub use tls::{fingerprint, GENERATED_CERT_FILE, GENERATED_KEY_FILE};

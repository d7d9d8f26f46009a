//! The NBWSS service: connects a NetBackup primary server to cloud WebSocket endpoints.
//!
//! * [`ServiceConfig`]: the TOML configuration, validated once; properties come from `nbwss.properties`.
//! * [`Service::start`]: opens the WebSocket servers store, serves the admin API (NetBackup's
//!   `wssendpoints` family, `/metrics`, `/healthz`) and runs the connection task and the COMMAND relay.
//! * [`AdminClient`]: a typed client of the admin API, for the CLI and tests.
//! * [`Sessions`]: the established connections, over which requests (notifications) can be sent and their
//!   responses received by `id`.
//! * [`notify`]: notifications, from detection on the primary server to delivery to every server group.
//!
//! The modules are private: what callers use is re-exported here, and in [`notify`], each item documented
//! and nameable (the lints below; `tests/it/public_api.rs` keeps the modules private).

#![warn(missing_docs, unnameable_types)]

mod admin;
mod admin_client;
mod audit;
mod body;
mod config;
mod connections;
mod crypto;
mod files;
mod logging;
mod metrics;
pub mod notify;
mod policy;
mod proxy;
mod relay;
mod service;
mod session;
mod store;
mod tls;

pub use admin::ProbeFailure;
pub use admin_client::{AdminClient, AdminError};
pub use config::{
    AdminConfig, AllowRule, ConfigError, LogConfig, PolicyConfig, PrimaryConfig, PrimaryCredentials,
    ProvidersConfig, ProxyConfig, ServiceConfig,
};
pub use connections::backoff;
pub use crypto::token_fingerprint;
pub use files::ensure_dir as ensure_data_dir;
pub use logging::file_writer as log_file_writer;
pub use metrics::Metrics;
pub use service::{Service, ServiceHandle};
pub use session::{RequestError, SessionHandle, Sessions};
pub use tls::{normalise_fingerprint, server_config as tls_server_config, CertificateInfo};

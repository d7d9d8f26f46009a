//! The NBWSS service: connects a NetBackup primary server to cloud WebSocket endpoints.
//!
//! * [`ServiceConfig`]: the TOML configuration, validated once; properties come from `nbwss.properties`.
//! * [`Service::start`]: opens the WebSocket servers store, serves the admin API (NetBackup's
//!   `wssendpoints` family, `/metrics`, `/healthz`) and runs the connection task and the COMMAND relay.
//! * [`AdminClient`]: a typed client of the admin API, for the CLI and tests.

pub mod audit;
pub mod config;
pub mod crypto;
pub mod files;
pub mod metrics;
pub mod notify;
pub mod policy;
pub mod proxy;
pub mod relay;
pub mod store;
pub mod tls;

pub use config::{ConfigError, ServiceConfig};

//! The NBWSS service: connects a NetBackup primary server to cloud WebSocket endpoints.
//!
//! * [`ServiceConfig`]: the TOML configuration, validated once; properties come from `nbwss.properties`.
//! * [`Service::start`]: opens the WebSocket servers store, serves the admin API (NetBackup's
//!   `wssendpoints` family, `/metrics`, `/healthz`) and runs the connection task and the COMMAND relay.
//! * [`AdminClient`]: a typed client of the admin API, for the CLI and tests.
//! * [`session::Sessions`]: the established connections, over which requests (notifications) can be sent
//!   and their responses received by `id`.

pub mod admin;
pub mod admin_client;
pub mod audit;
pub mod body;
pub mod config;
pub mod connections;
pub mod crypto;
pub mod files;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod policy;
pub mod proxy;
pub mod relay;
pub mod service;
pub mod session;
pub mod store;
pub mod tls;

pub use admin_client::{AdminClient, AdminError};
pub use config::{ConfigError, ServiceConfig};
pub use nbwss_protocol::Properties;
pub use service::{Service, ServiceHandle};

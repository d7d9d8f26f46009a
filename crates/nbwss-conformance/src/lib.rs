//! The NBWSS conformance kit: checks a third-party endpoint or service against the rules of
//! `docs/protocol.md` and reports, rule by rule, pass, fail or skip with a one-line reason.
//!
//! * [`check_endpoint`]: the kit plays the NBWSS service against an endpoint;
//! * [`ServiceKit`]: the kit plays an endpoint for a service (a primary server's NBWSS) that connects to it.
//!
//! The kit decides from wire facts only: it reads the peer's messages as raw JSON and checks each field
//! itself, it can withhold pongs ([`PongGate`]), send oversized, malformed and binary messages, and it
//! depends on no implementation it may be used to check (only `nbwss-protocol`, to build the well-formed
//! messages it sends).
#![warn(missing_docs)]

mod checklist;
mod checks;
mod closing;
mod endpoint;
mod error;
mod messages;
mod peer;
mod pong_gate;
mod report;
pub mod rule;
mod service;
mod tls;

use std::sync::Arc;

pub use endpoint::{
    check_endpoint, CommandTrigger, EndpointOptions, DEFAULT_ACK_TIMEOUT, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_REPLY_TIMEOUT,
};
pub use error::SetupError;
pub use messages::{CONFORMANCE_CLIENT, CONFORMANCE_POLICY};
pub use pong_gate::{PongGate, PongSwitch};
pub use report::{Report, Row, Status};
pub use rule::{Mode, Rule};
pub use service::{
    ServiceKit, ServiceOptions, DEFAULT_BIND, DEFAULT_COMMAND_TIMEOUT, DEFAULT_FIRST_WAIT, DEFAULT_GET_URI,
    DEFAULT_KEEPALIVE_RATE, DEFAULT_MAX_PONG_MISS, DEFAULT_NOTIFICATION_WAIT, DEFAULT_PATH,
    DEFAULT_RECONNECT_WAIT, DEFAULT_RESEND_WAIT,
};
pub use tls::{client_tls, sha256_fingerprint, Identity, Trust};

/// Receives one line per step of a run (for a progress display).
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

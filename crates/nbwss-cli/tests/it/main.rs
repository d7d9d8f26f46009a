//! Tests of the `nbwss`, `nbwss-service` and `nbwss-endpoint` binaries as a user runs them.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure with its location

mod bench;
mod cluster;
mod conformance;
mod durability;
mod endpoint;
mod interop;
mod notify;
mod packaged;
mod protocol;
#[path = "../../../nbwss-endpoint/tests/support/receiver.rs"]
mod receiver;
#[path = "../support/running_endpoint.rs"]
mod running_endpoint;
mod servers;
mod up;
mod util;
mod webhooks;

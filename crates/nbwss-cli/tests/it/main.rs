//! Tests of the `nbwss` binary as a user runs it.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure with its location

mod bench;
mod conformance;
mod durability;
mod endpoint;
mod interop;
mod notify;
mod protocol;
#[path = "../support/running_endpoint.rs"]
mod running_endpoint;
mod servers;
mod up;
mod util;

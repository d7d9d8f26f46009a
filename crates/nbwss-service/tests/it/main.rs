//! Integration tests of the NBWSS service over real sockets.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure with its location

mod admin;
mod connections;
mod edge;
mod groups;
mod notify;
mod public_api;
mod relay;
mod util;
mod wire_shapes;

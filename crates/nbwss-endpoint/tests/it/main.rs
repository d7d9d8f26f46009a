//! Tests of the endpoint over real sockets: an in-test NBWSS client plays the service and the primary
//! server behind it; reqwest plays the cloud application.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure with its location

mod api;
mod cluster;
mod dashboard;
mod edge;
mod notifications;
#[path = "../support/receiver.rs"]
mod receiver;
mod relay;
mod util;
mod webhooks;
mod websocket;

//! Tests of the endpoint over real sockets: an in-test NBWSS client plays the service and the primary
//! server behind it; reqwest plays the cloud application.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure with its location

mod api;
mod dashboard;
mod edge;
mod notifications;
mod relay;
mod util;
mod websocket;

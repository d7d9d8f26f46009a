//! Integration tests: an emulator on 127.0.0.1:0 per test, reached over real HTTPS.

// The helpers outside #[test] functions are test code too (clippy.toml allows unwrap in tests).
#![allow(clippy::unwrap_used)]

mod assets;
mod auth;
mod clients;
mod contents;
mod eventlog;
mod images;
mod jobs;
mod lifecycle;
mod policies;
mod protocol;
mod slps;
mod storage;
mod util;

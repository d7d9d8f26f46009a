//! System tests: emulator + service + endpoint in one process, on port 0, over real sockets.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure with its location

mod notifications;
mod relay;
mod system;

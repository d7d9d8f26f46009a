//! Integration tests of the wire model: the guide's examples as golden vectors, malformed messages, and
//! property-based round trips.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure with its location

mod golden;
mod malformed;
mod round_trip;

use std::path::PathBuf;

/// The folder of the guide's example messages (copied from the project's shared spec).
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

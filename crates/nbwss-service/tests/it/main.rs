//! Integration tests of the NBWSS service, over real sockets on port 0.
#![allow(clippy::unwrap_used)]

mod notify;

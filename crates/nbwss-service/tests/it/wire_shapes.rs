//! ARCHITECTURE.md, invariant 1: `nbwss-protocol` is the only crate that defines wire JSON shapes. The
//! service's wire paths (the session, the relay, connections, the notification outbox, delivery and local
//! ingest) build and read NBWSS messages, records and NetBackup error bodies only through its types: no
//! `json!` and no hand-written error body outside their tests; the admin API's errors are its `ErrorBody`.

use std::path::Path;

const WIRE_PATHS: [&str; 8] = [
    "src/session.rs",
    "src/relay.rs",
    "src/connections.rs",
    "src/notify/mod.rs",
    "src/notify/outbox.rs",
    "src/notify/delivery.rs",
    "src/notify/notifications.rs",
    "src/notify/ingest.rs",
];

/// Fails on a line of `file`'s code (before its unit tests, comments left out) that contains one of
/// `forbidden`.
fn assert_code_lacks(file: &str, forbidden: &[&str], what: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{file}: {error}"));
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    for (number, line) in code.lines().enumerate() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        for forbidden in forbidden {
            assert!(
                !line.contains(forbidden),
                "{file}:{}: {forbidden} in {what}; use nbwss-protocol's types (ARCHITECTURE.md, invariant 1)",
                number + 1
            );
        }
    }
}

#[test]
fn the_wire_paths_build_no_json_by_hand() {
    for file in WIRE_PATHS {
        assert_code_lacks(file, &["json!", "\"errorCode\"", "\"errorMessage\""], "a wire path");
    }
}

/// The admin API builds its own answers, but its errors are `nbwss_protocol::ErrorBody`s.
#[test]
fn the_admin_api_writes_no_error_body_by_hand() {
    assert_code_lacks(
        "src/admin.rs",
        &["\"errorCode\"", "\"errorMessage\"", "\"errorDetails\""],
        "the admin API",
    );
}

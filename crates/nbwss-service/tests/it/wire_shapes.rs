//! ARCHITECTURE.md, invariant 1: `nbwss-protocol` is the only crate that defines wire JSON shapes. The
//! service's wire paths (the session, the relay, connections, the notification outbox, delivery and local
//! ingest) build and read NBWSS messages, records and NetBackup error bodies only through its types: no
//! `json!` and no hand-written error body outside their tests.

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

#[test]
fn the_wire_paths_build_no_json_by_hand() {
    for file in WIRE_PATHS {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{file}: {error}"));
        // The code before its unit tests.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (number, line) in code.lines().enumerate() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            for forbidden in ["json!", "\"errorCode\"", "\"errorMessage\""] {
                assert!(
                    !line.contains(forbidden),
                    "{file}:{}: {forbidden} in a wire path; use nbwss-protocol's types (ARCHITECTURE.md, invariant 1)",
                    number + 1
                );
            }
        }
    }
}

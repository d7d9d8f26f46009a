//! Endpoint details parsing: any text gives endpoints or an error, never a panic; accepted details
//! written back as host objects parse to the same details.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nbwss_protocol::parse_endpoint_details;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(details) = parse_endpoint_details(text) else { return };
    assert!(!details.is_empty());
    let written = serde_json::Value::Array(details.iter().map(|details| details.to_value()).collect());
    let again = parse_endpoint_details(&written.to_string()).expect("written details parse");
    assert_eq!(again, details);
});

//! `nbwss.properties` parsing: any text gives properties (with warnings) or an error naming the key,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nbwss_protocol::Properties;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(error) = Properties::parse(text) {
        assert!(!error.key.is_empty(), "an error names the key: {error:?}");
    }
});

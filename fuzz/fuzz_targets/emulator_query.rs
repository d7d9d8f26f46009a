//! The emulator's query decoder (percent-decoding, `+` as space, the paging parameters): any query string
//! decodes or is refused for its length, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    nbwss_emulator::fuzzing::query(text);
});

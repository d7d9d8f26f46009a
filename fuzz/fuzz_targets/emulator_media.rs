//! The emulator's media-type negotiation: any `Accept` and `Content-Type` (the input's first line and the
//! rest; a first byte below 0x80 means the request has a body) give a served version or a 406/415, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let (accept, content_type) = match text.split_once('\n') {
        Some((accept, content_type)) => (Some(accept), Some(content_type)),
        None => (Some(text), None),
    };
    nbwss_emulator::fuzzing::media(accept.filter(|a| !a.is_empty()), content_type, first < 0x80);
    nbwss_emulator::fuzzing::media(None, accept, first < 0x80);
});

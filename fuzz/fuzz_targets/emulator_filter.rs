//! The emulator's OData filter parser and sort lists: any text is a filter, a sort list or a 400, never a
//! panic, a loop or an allocation beyond the filter limits (the U+0085 hang of the tokenizer was such an
//! input).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    nbwss_emulator::fuzzing::filter(text);
});

//! The codec's decode: any text gives a message or an error, never a panic; a decoded message encodes to
//! text that decodes to the same message (the encoding is canonical).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nbwss_protocol::Codec;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let codec = Codec::new(1024 * 1024);
    if let Ok(message) = codec.decode(text) {
        let encoded = codec.encode(&message);
        let again = Codec::new(usize::MAX).decode(&encoded).expect("an encoded message decodes");
        assert_eq!(again, message, "decode(encode(m)) == m");
        assert_eq!(codec.encode(&again), encoded, "the encoding is canonical");
    }
});

//! The COMMAND uri check: never a panic; what it accepts stays under /netbackup/ with no dot-segment,
//! parameter, backslash or control character in the path the primary server routes, and the uri it
//! forwards is judged the same way again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nbwss_protocol::check_command_uri;

fuzz_target!(|data: &[u8]| {
    let Ok(uri) = std::str::from_utf8(data) else { return };
    let Ok(checked) = check_command_uri(uri) else { return };
    let path = &checked.path;
    assert!(path.starts_with("/netbackup/"), "{uri:?} -> {path:?}");
    assert!(!path.contains("//"), "{uri:?} -> {path:?}");
    assert!(path.split('/').all(|segment| segment != "." && segment != ".."), "{uri:?} -> {path:?}");
    assert!(!path.contains([';', '\\', '@']), "{uri:?} -> {path:?}");
    assert!(!path.chars().any(char::is_control), "{uri:?} -> {path:?}");
    let forward_path = checked.forward.split('?').next().unwrap_or_default();
    assert!(!forward_path.contains("//"), "{uri:?} -> {:?}", checked.forward);
    assert_eq!(check_command_uri(&checked.forward).as_ref(), Ok(&checked), "{uri:?}");
});

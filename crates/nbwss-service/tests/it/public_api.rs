//! The crate's public API is curated: its modules are private and what callers use is re-exported at the
//! crate root or in `notify`, the one public module (whose own submodules are private too). A new module
//! made `pub` would publish everything in it; these tests refuse that.

use std::path::Path;

/// The modules allowed to be public, per file that declares modules.
const PUBLIC_MODULES: [(&str, &[&str]); 2] = [("src/lib.rs", &["notify"]), ("src/notify/mod.rs", &[])];

/// The names of the modules `text` declares public (`pub mod x;`, `pub(crate)` and the like excluded).
fn public_modules(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.trim_start().strip_prefix("pub mod "))
        .map(|rest| rest.trim_end_matches(|c: char| c == ';' || c == '{' || c.is_whitespace()).to_owned())
        .collect()
}

#[test]
fn only_the_allowed_modules_are_public() {
    for (file, allowed) in PUBLIC_MODULES {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{file}: {error}"));
        assert_eq!(
            public_modules(&text),
            allowed.iter().map(|name| (*name).to_owned()).collect::<Vec<_>>(),
            "{file}: make the module private and re-export what callers use (ARCHITECTURE.md, code map)"
        );
    }
}

#[test]
fn the_check_sees_a_public_module() {
    let text = "//! Docs.\nmod private;\npub mod open;\npub(crate) mod internal;\n    pub mod nested {\n";
    assert_eq!(public_modules(text), ["open", "nested"]);
}

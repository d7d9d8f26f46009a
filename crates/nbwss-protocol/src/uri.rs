//! A COMMAND `uri` judged as the primary server will read it (D6).
//!
//! NetBackup's REST API is served by Tomcat, which strips `;` path parameters, percent-decodes the path,
//! collapses doubled slashes and then resolves `.` and `..` segments. A check that looks only at the text
//! it was given can therefore be walked around (`/netbackup/admin/jobs/..;/config` is `/netbackup/config`
//! to Tomcat). So the rules are applied to the path as Tomcat will see it, and everything whose meaning
//! could differ between us and the primary server is refused rather than guessed at:
//!
//! * refused: a scheme or authority, a path outside `/netbackup/`, `;` (raw or encoded), any `.` or `..`
//!   segment in any encoding, `\` (raw or encoded), an encoded slash (`%2F`), control characters (raw or
//!   encoded, NUL, CR and LF included), spaces, `#`, `@`, malformed percent-escapes, escapes that do not
//!   decode to UTF-8 (overlong forms included) and double encoding (a `%XX` left after decoding once);
//! * normalised as Tomcat does: doubled slashes collapse (`/netbackup//admin` is `/netbackup/admin`).
//!
//! The query string is the primary server's business: it is passed on unchanged (only control characters,
//! spaces and `#` are refused there).

use percent_encoding::percent_decode_str;

/// The path every relayed call must stay under.
pub const NETBACKUP_PREFIX: &str = "/netbackup/";

/// A COMMAND `uri` that passed [`check_command_uri`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandUri {
    /// The path as the primary server will route it: percent-decoded, doubled slashes collapsed, no query.
    /// Policies match against this.
    pub path: String,
    /// What to send to the primary server: the `uri` with doubled slashes collapsed (still percent-encoded),
    /// query string unchanged.
    pub forward: String,
}

/// Judges a COMMAND `uri` as the primary server will read it; the error is the rule broken, in words for
/// the cloud application.
pub fn check_command_uri(uri: &str) -> Result<CommandUri, String> {
    if uri.starts_with("//") {
        return Err("must be a path on the primary server, not a URL with an authority (//host)".into());
    }
    if !uri.starts_with(NETBACKUP_PREFIX) {
        return Err(if uri.contains("://") {
            "must be a path on the primary server, not an absolute URL".into()
        } else {
            format!("must start with {NETBACKUP_PREFIX}")
        });
    }
    if uri.bytes().any(|byte| byte.is_ascii_control() || byte == b' ') {
        return Err(
            "must not contain spaces or control characters such as CR, LF or NUL (percent-encode spaces)"
                .into(),
        );
    }
    if uri.contains('#') {
        return Err("must not contain a fragment (#)".into());
    }
    let (raw_path, query) = match uri.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (uri, None),
    };
    if raw_path.contains("://") {
        return Err("must not contain a scheme (://) in its path".into());
    }
    check_escapes(raw_path)?;
    let lower = raw_path.to_ascii_lowercase();
    if lower.contains("%2f") {
        return Err("must not contain an encoded slash (%2F)".into());
    }
    let decoded = percent_decode_str(raw_path).decode_utf8().map_err(|_| {
        "percent-escapes in the path must decode to UTF-8 (overlong or invalid byte sequences are refused)"
            .to_owned()
    })?;
    if decoded.contains(';') {
        return Err(
            "must not contain ; path parameters, even percent-encoded (the primary server strips them)"
                .into(),
        );
    }
    if decoded.contains('\\') {
        return Err("must not contain backslashes, even percent-encoded".into());
    }
    if decoded.chars().any(char::is_control) {
        return Err("must not contain control characters such as NUL, CR or LF, even percent-encoded".into());
    }
    if decoded.contains('@') {
        return Err("must not contain @ in its path, even percent-encoded".into());
    }
    if has_escape(&decoded) {
        return Err("must not be percent-encoded twice (%25 followed by an escape)".into());
    }
    let segments: Vec<&str> = decoded.split('/').filter(|segment| !segment.is_empty()).collect();
    if segments.iter().any(|segment| *segment == "." || *segment == "..") {
        return Err("must not contain . or .. segments, in any encoding".into());
    }
    let trailing = if decoded.ends_with('/') { "/" } else { "" };
    let path = format!("/{}{trailing}", segments.join("/"));
    if !path.starts_with(NETBACKUP_PREFIX) {
        return Err(format!("must stay under {NETBACKUP_PREFIX} once normalised"));
    }
    let mut forward = collapse_slashes(raw_path);
    if let Some(query) = query {
        forward.push('?');
        forward.push_str(query);
    }
    Ok(CommandUri { path, forward })
}

/// Every `%` starts an escape of two hex digits (the primary server refuses anything else).
fn check_escapes(path: &str) -> Result<(), String> {
    let bytes = path.as_bytes();
    for (index, byte) in bytes.iter().enumerate() {
        if *byte == b'%' {
            let escape = bytes.get(index + 1..index + 3);
            if !escape.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) {
                return Err("has a malformed percent-escape (% must be followed by two hex digits)".into());
            }
        }
    }
    Ok(())
}

/// Whether `text` still holds a `%XX` escape.
fn has_escape(text: &str) -> bool {
    text.as_bytes()
        .windows(3)
        .any(|window| window[0] == b'%' && window[1..].iter().all(u8::is_ascii_hexdigit))
}

fn collapse_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c == '/' && out.ends_with('/') {
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Allowed: (uri, normalised path, forwarded uri).
    const ALLOWED: &[(&str, &str, &str)] = &[
        ("/netbackup/admin/jobs", "/netbackup/admin/jobs", "/netbackup/admin/jobs"),
        ("/netbackup/admin/jobs/", "/netbackup/admin/jobs/", "/netbackup/admin/jobs/"),
        (
            "/netbackup/admin/jobs?page%5Blimit%5D=10&filter=jobType+eq+%27BACKUP%27",
            "/netbackup/admin/jobs",
            "/netbackup/admin/jobs?page%5Blimit%5D=10&filter=jobType+eq+%27BACKUP%27",
        ),
        (
            "/netbackup//admin/manual-backup/",
            "/netbackup/admin/manual-backup/",
            "/netbackup/admin/manual-backup/",
        ),
        ("/netbackup///admin////jobs", "/netbackup/admin/jobs", "/netbackup/admin/jobs"),
        ("/netbackup/admin/%6aobs", "/netbackup/admin/jobs", "/netbackup/admin/%6aobs"),
        (
            "/netbackup/config/policies/50%25off",
            "/netbackup/config/policies/50%off",
            "/netbackup/config/policies/50%25off",
        ),
        (
            "/netbackup/config/policies/a%20b",
            "/netbackup/config/policies/a b",
            "/netbackup/config/policies/a%20b",
        ),
        (
            "/netbackup/config/policies/caf%C3%A9",
            "/netbackup/config/policies/café",
            "/netbackup/config/policies/caf%C3%A9",
        ),
        ("/netbackup/a/...", "/netbackup/a/...", "/netbackup/a/..."),
        ("/netbackup/a/..b", "/netbackup/a/..b", "/netbackup/a/..b"),
        (
            "/netbackup/x?next=https://elsewhere/&q=a;b@c",
            "/netbackup/x",
            "/netbackup/x?next=https://elsewhere/&q=a;b@c",
        ),
    ];

    /// Refused: (uri, words the reason must contain).
    const REFUSED: &[(&str, &str)] = &[
        ("https://evil.example/netbackup/x", "absolute URL"),
        ("//evil.example/netbackup/x", "authority"),
        ("/netbackupx/admin", "must start with /netbackup/"),
        ("/netbackup", "must start with /netbackup/"),
        ("/other/netbackup/", "must start with /netbackup/"),
        ("/netbackup/../etc/passwd", ". or .."),
        ("/netbackup/admin/jobs/../../config", ". or .."),
        ("/netbackup/admin/./jobs", ". or .."),
        ("/netbackup/admin/jobs/.", ". or .."),
        ("/netbackup/admin/jobs/..", ". or .."),
        ("/netbackup/%2e%2e/secret", ". or .."),
        ("/netbackup/%2E%2E/secret", ". or .."),
        ("/netbackup/%2E./secret", ". or .."),
        ("/netbackup/.%2e/secret", ". or .."),
        ("/netbackup/%2e/secret", ". or .."),
        ("/netbackup/admin/jobs/..;/config", "; path parameters"),
        ("/netbackup/admin/jobs/..%3B/config", "; path parameters"),
        ("/netbackup/admin/jobs/..%3b/config", "; path parameters"),
        ("/netbackup/admin/jobs;jsessionid=1", "; path parameters"),
        ("/netbackup/admin/jobs/%252e%252e/config", "percent-encoded twice"),
        ("/netbackup/admin/jobs/%25%32%65", "percent-encoded twice"),
        ("/netbackup/admin/jobs/%c0%ae%c0%ae/config", "UTF-8"),
        ("/netbackup/admin/jobs/%e0%80%ae", "UTF-8"),
        ("/netbackup/admin/jobs/%ff", "UTF-8"),
        ("/netbackup/a\\..\\b", "backslashes"),
        ("/netbackup/a%5c..%5cb", "backslashes"),
        ("/netbackup/a%5C..%5Cb", "backslashes"),
        ("/netbackup/admin%2f..%2fconfig", "encoded slash"),
        ("/netbackup/admin%2F..%2Fconfig", "encoded slash"),
        ("/netbackup/a%00b", "control characters"),
        ("/netbackup/a\0b", "control characters"),
        ("/netbackup/a%0d%0aX-Injected:%201", "control characters"),
        ("/netbackup/a\r\nX-Injected: 1", "control characters"),
        ("/netbackup/a%7f", "control characters"),
        ("/netbackup/a b", "spaces"),
        ("/netbackup/a#frag", "fragment"),
        ("/netbackup/user@evil.example/x", "@"),
        ("/netbackup/%40evil", "@"),
        ("/netbackup/http://evil.example/x", "scheme"),
        ("/netbackup/a%zz", "malformed percent-escape"),
        ("/netbackup/a%4", "malformed percent-escape"),
        ("/netbackup/a%", "malformed percent-escape"),
    ];

    #[test]
    fn allowed_uris_are_normalised_as_tomcat_would() {
        for (uri, path, forward) in ALLOWED {
            let checked = check_command_uri(uri).unwrap_or_else(|error| panic!("{uri}: {error}"));
            assert_eq!(checked.path, *path, "{uri}");
            assert_eq!(checked.forward, *forward, "{uri}");
            // What is forwarded is judged the same way again.
            assert_eq!(check_command_uri(&checked.forward).as_ref(), Ok(&checked), "{uri}");
        }
    }

    #[test]
    fn traversal_and_smuggling_attempts_are_refused_with_a_reason() {
        assert!(REFUSED.len() >= 30);
        for (uri, reason) in REFUSED {
            let error = check_command_uri(uri).expect_err(uri);
            assert!(error.contains(reason), "{uri}: {error}");
        }
    }
}

//! The audit log: one JSON line per relayed call in `audit.log`, with credentials redacted. Response
//! bodies are never written (a login answer carries a token).
//!
//! Bounded on disk: each line quotes at most `log.audit_body_max_bytes` of the request body (and short
//! excerpts of the uri and headers), and the file rotates when it would pass `log.audit_max_file_bytes`
//! (`audit.log` → `audit.log.1` → … → `audit.log.N-1`, the oldest deleted), so the audit log takes at most
//! `log.audit_max_files` × `log.audit_max_file_bytes` plus one line. Every file is owner-only (0600).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;
use nbwss_protocol::CommandRequest;
use serde_json::{json, Map, Value};

use crate::config::LogConfig;

/// Header names whose values are never written.
const SECRET_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie", "x-api-key"];
/// JSON keys (compared case-insensitively, as substrings) whose values are never written.
const SECRET_KEYS: &[&str] = &["password", "token", "secret", "apikey", "api_key"];
/// Headers listed per line, at most.
const MAX_HEADERS: usize = 64;
/// Bytes of one header name or value written, at most.
const MAX_HEADER_BYTES: usize = 256;

/// How large the audit log may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditLimits {
    /// Rotate when `audit.log` would pass this size.
    pub max_file_bytes: u64,
    /// Files kept, `audit.log` included.
    pub max_files: usize,
    /// Bytes of a request body quoted per line (also the cap of the uri quoted).
    pub body_max_bytes: usize,
}

impl AuditLimits {
    /// The limits of the `[log]` section.
    pub fn from_config(config: &LogConfig) -> Self {
        Self {
            max_file_bytes: config.audit_max_file_bytes,
            max_files: config.audit_max_files,
            body_max_bytes: config.audit_body_max_bytes,
        }
    }
}

/// Appends audit lines to a file, rotating it.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    limits: AuditLimits,
    file: Mutex<OpenFile>,
}

#[derive(Debug)]
struct OpenFile {
    file: std::fs::File,
    size: u64,
}

/// One relayed call.
#[derive(Debug)]
pub struct AuditEntry<'a> {
    /// The WebSocket server (host name) that sent the COMMAND.
    pub endpoint: &'a str,
    /// The COMMAND's id.
    pub id: &'a str,
    /// The request.
    pub request: &'a CommandRequest,
    /// The status answered.
    pub status: u16,
    /// Whether the service produced the answer itself.
    pub from_service: bool,
    /// How long it took.
    pub duration: std::time::Duration,
}

impl AuditLog {
    /// Opens `path` for appending (owner-only permissions, also for an existing file).
    pub fn open(path: &Path, limits: AuditLimits) -> anyhow::Result<Self> {
        let file = open_append(path)?;
        Ok(Self { path: path.to_owned(), limits, file: Mutex::new(file) })
    }

    /// Writes one line (one `write_all` of a pre-serialised buffer), rotating first when the line would
    /// take the file past its limit; a failure is logged, never fatal.
    pub fn record(&self, entry: &AuditEntry<'_>) {
        let mut line = entry_line(entry, self.limits.body_max_bytes).to_string().into_bytes();
        line.push(b'\n');
        let mut open = self.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if open.size > 0 && open.size + line.len() as u64 > self.limits.max_file_bytes {
            match self.rotate() {
                Ok(file) => *open = file,
                Err(error) => tracing::warn!(error = format!("{error:#}"), "cannot rotate the audit log"),
            }
        }
        match open.file.write_all(&line) {
            Ok(()) => open.size += line.len() as u64,
            Err(error) => tracing::warn!(%error, "cannot write the audit log"),
        }
    }

    /// Shifts `audit.log.K` to `audit.log.K+1` (dropping the oldest) and `audit.log` to `audit.log.1`,
    /// then opens a new `audit.log`.
    fn rotate(&self) -> anyhow::Result<OpenFile> {
        let numbered = |index: usize| {
            let mut name = self.path.as_os_str().to_owned();
            name.push(format!(".{index}"));
            PathBuf::from(name)
        };
        let keep = self.limits.max_files.saturating_sub(1);
        if keep == 0 {
            std::fs::remove_file(&self.path)
                .with_context(|| format!("cannot remove {}", self.path.display()))?;
        } else {
            remove_if_present(&numbered(keep))?;
            for index in (1..keep).rev() {
                rename_if_present(&numbered(index), &numbered(index + 1))?;
            }
            rename_if_present(&self.path, &numbered(1))?;
        }
        let file = open_append(&self.path)?;
        crate::files::sync_parent(&self.path);
        Ok(file)
    }
}

fn open_append(path: &Path) -> anyhow::Result<OpenFile> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let file = options.open(path).with_context(|| format!("cannot open the audit log {}", path.display()))?;
    crate::files::restrict(path)?;
    let size = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
    Ok(OpenFile { file, size })
}

fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

fn rename_if_present(from: &Path, to: &Path) -> anyhow::Result<()> {
    match std::fs::rename(from, to) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("cannot rename {} to {}", from.display(), to.display()))
        }
        _ => Ok(()),
    }
}

/// The JSON line for an entry, quoting at most `body_max_bytes` of the (redacted) body and of the uri.
pub fn entry_line(entry: &AuditEntry<'_>, body_max_bytes: usize) -> Value {
    let mut headers = Map::new();
    for (name, value) in entry.request.headers.iter().take(MAX_HEADERS) {
        let shown =
            if SECRET_HEADERS.iter().any(|secret| name.eq_ignore_ascii_case(secret)) { "***" } else { value };
        headers.insert(excerpt(name, MAX_HEADER_BYTES), Value::String(excerpt(shown, MAX_HEADER_BYTES)));
    }
    let mut line = json!({
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "endpoint": entry.endpoint,
        "id": entry.id,
        "method": entry.request.method.as_str(),
        "uri": excerpt(&entry.request.uri, body_max_bytes),
        "status": entry.status,
        "origin": if entry.from_service { "service" } else { "primary" },
        "durationMs": u64::try_from(entry.duration.as_millis()).unwrap_or(u64::MAX),
        "headers": headers,
        "body": Value::Null,
    });
    if entry.request.headers.len() > MAX_HEADERS {
        line["headerCount"] = json!(entry.request.headers.len());
    }
    if let Some(body) = entry.request.parameters.as_deref() {
        let redacted = redact_body(body);
        let text = redacted.to_string();
        if text.len() <= body_max_bytes {
            line["body"] = redacted;
        } else {
            line["body"] = Value::String(excerpt(&text, body_max_bytes));
            line["bodyBytes"] = json!(body.len());
            line["bodyTruncated"] = Value::Bool(true);
        }
    }
    line
}

/// At most `max` bytes of `text`, cut at a character boundary.
pub(crate) fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn excerpt(text: &str, max: usize) -> String {
    cut(text, max).to_owned()
}

/// A request body safe to log: JSON with secret-looking keys replaced by `***`, or only its size.
pub fn redact_body(body: &str) -> Value {
    match serde_json::from_str::<Value>(body) {
        Ok(mut value) => {
            redact_value(&mut value);
            value
        }
        Err(_) => Value::String(format!("<{} bytes>", body.len())),
    }
}

fn redact_value(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                let lower = key.to_ascii_lowercase();
                if SECRET_KEYS.iter().any(|secret| lower.contains(secret)) {
                    *item = Value::String("***".into());
                } else {
                    redact_value(item);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use nbwss_protocol::{Headers, Method};

    use super::*;

    fn entry(request: &CommandRequest) -> AuditEntry<'_> {
        AuditEntry {
            endpoint: "ep1",
            id: "ID",
            request,
            status: 201,
            from_service: false,
            duration: std::time::Duration::from_millis(3),
        }
    }

    #[test]
    fn secrets_never_reach_the_line() {
        let mut request = CommandRequest::new(Method::Post, "/netbackup/login");
        request.headers =
            Headers::from_iter([("Authorization", "eyJhbGciOi"), ("Content-Type", "application/json")]);
        request.parameters = Some(r#"{"userName":"admin","password":"s3cret","data":{"apiKey":"k"}}"#.into());
        let line = entry_line(&entry(&request), 4096).to_string();
        assert!(
            !line.contains("eyJhbGciOi") && !line.contains("s3cret") && !line.contains("\"k\""),
            "{line}"
        );
        assert!(line.contains("admin") && line.contains("/netbackup/login"), "{line}");
        assert_eq!(redact_body("not json"), Value::String("<8 bytes>".into()));
    }

    #[test]
    fn a_line_quotes_bounded_excerpts_of_what_the_request_held() {
        let mut request =
            CommandRequest::new(Method::Post, format!("/netbackup/x?q={}", "u".repeat(100_000)));
        request.headers = (0..1000).map(|index| (format!("x-h{index}"), "v".repeat(10_000))).collect();
        // Redaction comes before the cut: the secret, first in the body, is in the excerpt only redacted.
        request.parameters =
            Some(format!("{{\"a_password\": \"s3cret\", \"data\": \"{}\"}}", "é".repeat(100_000)));
        let line = entry_line(&entry(&request), 4096);
        let text = line.to_string();
        assert!(
            text.len() < 4096 * 2 + MAX_HEADERS * (2 * MAX_HEADER_BYTES + 8) + 1024,
            "{} bytes",
            text.len()
        );
        assert!(!text.contains("s3cret") && text.contains("a_password"), "{}", &text[..200]);
        assert_eq!(line["bodyTruncated"], true);
        assert_eq!(line["bodyBytes"], request.parameters.as_ref().unwrap().len());
        assert_eq!(line["headerCount"], 1000);
        assert!(line["body"].as_str().unwrap().len() <= 4096);
    }
}

//! The audit log: one JSON line per relayed call in `audit.log`, with credentials redacted. Response
//! bodies are never written (a login answer carries a token).

use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context as _;
use nbwss_protocol::CommandRequest;
use serde_json::{json, Map, Value};

/// Header names whose values are never written.
const SECRET_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie", "x-api-key"];
/// JSON keys (compared case-insensitively, as substrings) whose values are never written.
const SECRET_KEYS: &[&str] = &["password", "token", "secret", "apikey", "api_key"];

/// Appends audit lines to a file.
#[derive(Debug)]
pub struct AuditLog {
    file: Mutex<std::fs::File>,
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
    /// Opens `path` for appending (owner-only permissions).
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let file =
            options.open(path).with_context(|| format!("cannot open the audit log {}", path.display()))?;
        Ok(Self { file: Mutex::new(file) })
    }

    /// Writes one line; a write failure is logged, never fatal.
    pub fn record(&self, entry: &AuditEntry<'_>) {
        let line = entry_line(entry);
        let mut file = self.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(error) = writeln!(file, "{line}") {
            tracing::warn!(%error, "cannot write the audit log");
        }
    }
}

/// The JSON line for an entry (also used for the tracing event).
pub fn entry_line(entry: &AuditEntry<'_>) -> Value {
    let mut headers = Map::new();
    for (name, value) in entry.request.headers.iter() {
        let shown =
            if SECRET_HEADERS.iter().any(|secret| name.eq_ignore_ascii_case(secret)) { "***" } else { value };
        headers.insert(name.to_owned(), Value::String(shown.to_owned()));
    }
    let body = entry.request.parameters.as_deref().map(redact_body);
    json!({
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "endpoint": entry.endpoint,
        "id": entry.id,
        "method": entry.request.method.as_str(),
        "uri": entry.request.uri,
        "status": entry.status,
        "origin": if entry.from_service { "service" } else { "primary" },
        "durationMs": u64::try_from(entry.duration.as_millis()).unwrap_or(u64::MAX),
        "headers": headers,
        "body": body,
    })
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

    #[test]
    fn secrets_never_reach_the_line() {
        let mut request = CommandRequest::new(Method::Post, "/netbackup/login");
        request.headers =
            Headers::from_iter([("Authorization", "eyJhbGciOi"), ("Content-Type", "application/json")]);
        request.parameters = Some(r#"{"userName":"admin","password":"s3cret","data":{"apiKey":"k"}}"#.into());
        let entry = AuditEntry {
            endpoint: "ep1",
            id: "ID",
            request: &request,
            status: 201,
            from_service: false,
            duration: std::time::Duration::from_millis(3),
        };
        let line = entry_line(&entry).to_string();
        assert!(
            !line.contains("eyJhbGciOi") && !line.contains("s3cret") && !line.contains("\"k\""),
            "{line}"
        );
        assert!(line.contains("admin") && line.contains("/netbackup/login"), "{line}");
        assert_eq!(redact_body("not json"), Value::String("<8 bytes>".into()));
    }
}

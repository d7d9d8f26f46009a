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
use serde_json::Value;

use crate::config::LogConfig;

/// Header names whose values are never written.
const SECRET_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie", "x-api-key"];
/// JSON keys (compared case-insensitively, as substrings) whose values are never written.
const SECRET_KEYS: &[&str] = &["password", "token", "secret", "apikey", "api_key"];
/// Headers listed per line, at most.
const MAX_HEADERS: usize = 64;
/// Bytes of one header name or value written, at most.
const MAX_HEADER_BYTES: usize = 256;
/// Capacity of the line buffer kept between lines.
const KEPT_LINE_CAPACITY: usize = 64 * 1024;

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
    writer: Mutex<Writer>,
}

/// The open file and the buffer each line is written into before its one `write_all`.
#[derive(Debug)]
struct Writer {
    open: OpenFile,
    line: Vec<u8>,
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
        let open = open_append(path)?;
        Ok(Self { path: path.to_owned(), limits, writer: Mutex::new(Writer { open, line: Vec::new() }) })
    }

    /// Writes one line (one `write_all` of a buffer reused from line to line, so a line is on its way to
    /// the file when this returns and a killed process loses none), rotating first when the line would
    /// take the file past its limit; a failure is logged, never fatal.
    pub fn record(&self, entry: &AuditEntry<'_>) {
        let mut writer = self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Writer { open, line } = &mut *writer;
        line.clear();
        write_entry(line, entry, self.limits.body_max_bytes);
        line.push(b'\n');
        if open.size > 0 && open.size + line.len() as u64 > self.limits.max_file_bytes {
            match self.rotate() {
                Ok(file) => *open = file,
                Err(error) => tracing::warn!(error = format!("{error:#}"), "cannot rotate the audit log"),
            }
        }
        match open.file.write_all(line) {
            Ok(()) => open.size += line.len() as u64,
            Err(error) => tracing::warn!(%error, "cannot write the audit log"),
        }
        // A rare huge line (a long uri, many headers) does not keep its buffer for the life of the service.
        if line.capacity() > KEPT_LINE_CAPACITY {
            *line = Vec::new();
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

/// Appends the JSON line for an entry (without its newline) to `out`, quoting at most `body_max_bytes` of
/// the (redacted) body and of the uri. Written field by field rather than built as a `Value` tree; the
/// keys come in the order the tree (`preserve_order`) wrote them, a header name listed twice once, with
/// its last value, in the place of its first.
pub fn write_entry(out: &mut Vec<u8>, entry: &AuditEntry<'_>, body_max_bytes: usize) {
    let request = entry.request;
    out.extend_from_slice(b"{\"time\":");
    string(out, &chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    out.extend_from_slice(b",\"endpoint\":");
    string(out, entry.endpoint);
    out.extend_from_slice(b",\"id\":");
    string(out, entry.id);
    out.extend_from_slice(b",\"method\":");
    string(out, request.method.as_str());
    out.extend_from_slice(b",\"uri\":");
    string(out, cut(&request.uri, body_max_bytes));
    out.extend_from_slice(b",\"status\":");
    number(out, u64::from(entry.status));
    out.extend_from_slice(b",\"origin\":");
    string(out, if entry.from_service { "service" } else { "primary" });
    out.extend_from_slice(b",\"durationMs\":");
    number(out, u64::try_from(entry.duration.as_millis()).unwrap_or(u64::MAX));
    out.extend_from_slice(b",\"headers\":{");
    let listed: Vec<(&str, &str)> = request
        .headers
        .iter()
        .take(MAX_HEADERS)
        .map(|(name, value)| {
            let shown = if SECRET_HEADERS.iter().any(|secret| name.eq_ignore_ascii_case(secret)) {
                "***"
            } else {
                value
            };
            (cut(name, MAX_HEADER_BYTES), cut(shown, MAX_HEADER_BYTES))
        })
        .collect();
    let mut first = true;
    for (index, (name, _)) in listed.iter().enumerate() {
        if listed[..index].iter().any(|(earlier, _)| earlier == name) {
            continue;
        }
        let value =
            listed[index..].iter().rev().find(|(later, _)| later == name).map_or("", |(_, value)| value);
        if !first {
            out.push(b',');
        }
        first = false;
        string(out, name);
        out.push(b':');
        string(out, value);
    }
    out.extend_from_slice(b"},\"body\":");
    let truncated = match request.parameters.as_deref() {
        None => {
            out.extend_from_slice(b"null");
            None
        }
        Some(body) => {
            let text = redact_body(body).to_string();
            if text.len() <= body_max_bytes {
                out.extend_from_slice(text.as_bytes());
                None
            } else {
                string(out, cut(&text, body_max_bytes));
                Some(body.len())
            }
        }
    };
    if request.headers.len() > MAX_HEADERS {
        out.extend_from_slice(b",\"headerCount\":");
        number(out, request.headers.len() as u64);
    }
    if let Some(body_bytes) = truncated {
        out.extend_from_slice(b",\"bodyBytes\":");
        number(out, body_bytes as u64);
        out.extend_from_slice(b",\"bodyTruncated\":true");
    }
    out.push(b'}');
}

/// `text` as a JSON string, escaped as `serde_json` escapes it.
fn string(out: &mut Vec<u8>, text: &str) {
    // Writing a string into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

fn number(out: &mut Vec<u8>, value: u64) {
    let _ = write!(out, "{value}");
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
    use serde_json::{json, Map};

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

    fn line_text(entry: &AuditEntry<'_>, body_max_bytes: usize) -> String {
        let mut out = Vec::new();
        write_entry(&mut out, entry, body_max_bytes);
        String::from_utf8(out).unwrap()
    }

    /// The line as a `Value` tree (`preserve_order`) writes it, with the time of `written`: what the line
    /// was before it was written field by field.
    fn tree_line(entry: &AuditEntry<'_>, body_max_bytes: usize, written: &Value) -> String {
        let mut headers = Map::new();
        for (name, value) in entry.request.headers.iter().take(MAX_HEADERS) {
            let shown = if SECRET_HEADERS.iter().any(|secret| name.eq_ignore_ascii_case(secret)) {
                "***"
            } else {
                value
            };
            headers.insert(cut(name, MAX_HEADER_BYTES).to_owned(), Value::from(cut(shown, MAX_HEADER_BYTES)));
        }
        let mut line = json!({
            "time": written["time"],
            "endpoint": entry.endpoint,
            "id": entry.id,
            "method": entry.request.method.as_str(),
            "uri": cut(&entry.request.uri, body_max_bytes),
            "status": entry.status,
            "origin": if entry.from_service { "service" } else { "primary" },
            "durationMs": u64::try_from(entry.duration.as_millis()).unwrap(),
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
                line["body"] = Value::from(cut(&text, body_max_bytes));
                line["bodyBytes"] = json!(body.len());
                line["bodyTruncated"] = Value::Bool(true);
            }
        }
        line.to_string()
    }

    #[test]
    fn secrets_never_reach_the_line() {
        let mut request = CommandRequest::new(Method::Post, "/netbackup/login");
        request.headers =
            Headers::from_iter([("Authorization", "eyJhbGciOi"), ("Content-Type", "application/json")]);
        request.parameters = Some(r#"{"userName":"admin","password":"s3cret","data":{"apiKey":"k"}}"#.into());
        let line = line_text(&entry(&request), 4096);
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
        let text = line_text(&entry(&request), 4096);
        let line: Value = serde_json::from_str(&text).unwrap();
        assert!(
            text.len() < 4096 * 2 + MAX_HEADERS * (2 * MAX_HEADER_BYTES + 8) + 1024,
            "{} bytes",
            text.len()
        );
        assert!(!text.contains("s3cret") && text.contains("a_password"), "{}", &text[..200]);
        assert_eq!(line["bodyTruncated"], true);
        assert_eq!(line["bodyBytes"], request.parameters.as_ref().unwrap().len());
        assert_eq!(line["headerCount"], 1000);
        assert_eq!(line["headers"].as_object().unwrap().len(), MAX_HEADERS);
        assert!(line["body"].as_str().unwrap().len() <= 4096);
    }

    #[test]
    fn the_line_is_byte_for_byte_what_the_value_tree_wrote() {
        let mut requests = Vec::new();
        requests.push(CommandRequest::new(Method::Get, "/netbackup/admin/jobs/1"));
        let mut request = CommandRequest::new(Method::Put, "/netbackup/x?a=\"q\"&b=\\&c=\u{1}é😀");
        request.headers = Headers::from_iter([
            ("Accept", "application/vnd.netbackup+json;version=4.0"),
            ("X-Repeated", "first"),
            ("Cookie", "c=1"),
            ("x-repeated", "case differs"),
            ("X-Repeated", "last"),
            ("X-Quote", "a\"b\\c\td\u{7f}\u{0}"),
        ]);
        request.parameters = Some(r#"{"n": 1.5e300, "list": [1, -2, {"token": "t"}], "s": "\u0001"}"#.into());
        requests.push(request);
        let mut request = CommandRequest::new(Method::Post, "/netbackup/login");
        request.parameters = Some("not json \n at all".into());
        requests.push(request);
        let mut request = CommandRequest::new(Method::Patch, format!("/netbackup/{}", "ü".repeat(50)));
        request.headers = (0..70).map(|index| (format!("x-h{}", index % 7), "v".repeat(300))).collect();
        request.parameters = Some(format!("[\"{}\"]", "é".repeat(100)));
        requests.push(request);
        for (index, request) in requests.iter().enumerate() {
            let mut entry = entry(request);
            entry.from_service = index % 2 == 1;
            entry.duration = std::time::Duration::from_micros(1_234_567 * index as u64);
            for body_max_bytes in [16, 61, 4096] {
                let text = line_text(&entry, body_max_bytes);
                let written: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(text, tree_line(&entry, body_max_bytes, &written), "request {index}");
            }
        }
    }

    #[test]
    fn every_line_of_the_file_parses_back_and_the_files_stay_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let limits = AuditLimits { max_file_bytes: 4096, max_files: 3, body_max_bytes: 512 };
        let audit = AuditLog::open(&path, limits).unwrap();
        let mut request = CommandRequest::new(Method::Post, "/netbackup/login");
        request.headers =
            Headers::from_iter([("Authorization", "Bearer secret-token"), ("X-N", "line\nbreak")]);
        for call in 0..200 {
            request.parameters = Some(format!("{{\"userName\":\"u{call}\",\"password\":\"p{call}\"}}"));
            let mut entry = entry(&request);
            entry.id = if call % 2 == 0 { "even" } else { "odd \"id\"" };
            audit.record(&entry);
        }
        let mut names = Vec::new();
        let mut lines = 0;
        for file in std::fs::read_dir(dir.path()).unwrap() {
            let file = file.unwrap();
            names.push(file.file_name().into_string().unwrap());
            assert!(file.metadata().unwrap().len() <= limits.max_file_bytes);
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                assert_eq!(file.metadata().unwrap().permissions().mode() & 0o777, 0o600);
            }
            let text = std::fs::read_to_string(file.path()).unwrap();
            assert!(text.ends_with('\n'));
            for line in text.lines() {
                let parsed: Value =
                    serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}"));
                assert_eq!(parsed["headers"]["Authorization"], "***", "{line}");
                assert_eq!(parsed["body"]["password"], "***", "{line}");
                assert!(parsed["body"]["userName"].as_str().unwrap().starts_with('u'), "{line}");
                lines += 1;
            }
        }
        names.sort();
        assert_eq!(names, ["audit.log", "audit.log.1", "audit.log.2"]);
        // The newest lines are kept: those of the files left, the last call's among them.
        assert!(lines > 0 && lines < 200, "{lines}");
        let newest = std::fs::read_to_string(&path).unwrap();
        assert!(newest.contains("\"u199\""), "{newest}");
    }
}

//! Webhooks: each stored notification record that matches a subscription's filter is POSTed to its HTTPS
//! URL following the Standard Webhooks conventions (`docs/webhooks.md`): a JSON body `{type, timestamp,
//! data}`, the headers `webhook-id` (stable per record, so retries and restarts keep it), `webhook-timestamp`
//! and `webhook-signature` (`v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` under the
//! subscription's `whsec_` secret).
//!
//! * `store.rs`: subscriptions and their deliveries in the endpoint's SQLite store. A delivery keeps its own
//!   copy of the body, so retention pruning never takes a record a receiver has not had;
//! * `dispatcher.rs`: one task per subscription queues matching records, then delivers them one at a time, in
//!   order, retrying with exponential backoff and jitter for `webhooks.retry_window_ms`; a delivery that
//!   exhausts it is marked failed (kept, counted) and its subscription paused until resumed;
//! * `client.rs`: the HTTPS client: TLS verified (public roots and the subscription's own CA), no redirects,
//!   no proxy, and only addresses the [`AddressPolicy`] allows (no loopback, private or link-local network
//!   unless `webhooks.allow_networks` names it), checked on every connection;
//! * `api.rs`: the app API (`/api/v1/webhooks...`).

pub(crate) mod address;
pub(crate) mod api;
pub(crate) mod client;
pub(crate) mod dispatcher;
pub(crate) mod store;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::Webhooks;
use crate::store::StoredNotification;

pub use address::AddressPolicy;
pub use client::{send_test, TestOutcome};
pub use store::{
    CreatedWebhook, DeliveryInfo, PauseReason, WebhookCounts, WebhookError, WebhookInfo, WebhookRetry,
};

/// Prefix of a Standard Webhooks symmetric secret; base64 follows.
pub const SECRET_PREFIX: &str = "whsec_";
/// Bytes of a generated secret (the specification asks for 24 to 64).
const SECRET_BYTES: usize = 32;
/// Longest URL accepted.
const MAX_URL_LEN: usize = 2048;
/// Longest description accepted.
const MAX_DESCRIPTION_LEN: usize = 200;
/// Most values in one filter list.
const MAX_FILTER_VALUES: usize = 100;
/// Largest CA certificate bundle accepted.
const MAX_CA_PEM_BYTES: usize = 64 * 1024;
/// Job states a filter may name: NetBackup's (`docs/netbackup-rest-api.md`, the jobs API).
pub const JOB_STATES: [&str; 6] = ["QUEUED", "ACTIVE", "REQUEUED", "DONE", "SUSPENDED", "INCOMPLETE"];

/// Which records a subscription receives: each filter that is set must match. `jobStates` and
/// `nonZeroStatus` concern JOB records: an IMAGE record never matches a subscription that sets them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookFilter {
    /// Only these primary servers' records (any when empty).
    #[serde(default)]
    pub primaries: Vec<String>,
    /// Only these object kinds, `JOB` or `IMAGE` (any when empty).
    #[serde(default)]
    pub objects: Vec<String>,
    /// Only JOB records in one of these states (any when empty).
    #[serde(default)]
    pub job_states: Vec<String>,
    /// Only JOB records whose `status` is not 0: partially successful (1) or failed.
    #[serde(default)]
    pub non_zero_status: bool,
}

impl WebhookFilter {
    /// Checks and normalises the filter (object kinds and states in upper case).
    pub fn validate(&mut self) -> Result<(), String> {
        for (key, values) in
            [("primaries", &self.primaries), ("objects", &self.objects), ("jobStates", &self.job_states)]
        {
            if values.len() > MAX_FILTER_VALUES {
                return Err(format!("filter.{key}: at most {MAX_FILTER_VALUES} values"));
            }
        }
        for primary in &self.primaries {
            let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
            if primary.is_empty() || primary.len() > 255 || !primary.chars().all(allowed) {
                return Err(format!("filter.primaries: '{primary}' is not a primary server's name"));
            }
        }
        for object in &mut self.objects {
            *object = object.to_ascii_uppercase();
            if object != "JOB" && object != "IMAGE" {
                return Err(format!("filter.objects: '{object}' is not JOB or IMAGE"));
            }
        }
        for state in &mut self.job_states {
            *state = state.to_ascii_uppercase();
            if !JOB_STATES.contains(&state.as_str()) {
                return Err(format!("filter.jobStates: '{state}' is not one of {}", JOB_STATES.join(", ")));
            }
        }
        for values in [&mut self.primaries, &mut self.objects, &mut self.job_states] {
            values.sort();
            values.dedup();
        }
        Ok(())
    }

    /// Whether `notification` passes the filter.
    pub fn matches(&self, notification: &StoredNotification) -> bool {
        if !self.primaries.is_empty() && !self.primaries.contains(&notification.primary) {
            return false;
        }
        if !self.objects.is_empty() && !self.objects.contains(&notification.object) {
            return false;
        }
        let job_filtered = !self.job_states.is_empty() || self.non_zero_status;
        if job_filtered && notification.object != "JOB" {
            return false;
        }
        if !self.job_states.is_empty() {
            let state = notification.record.get("state").and_then(Value::as_str).unwrap_or_default();
            if !self.job_states.iter().any(|wanted| wanted == state) {
                return false;
            }
        }
        if self.non_zero_status {
            // A status that is missing or not a number is not known to be 0: it is sent.
            if notification.record.get("status").and_then(Value::as_i64) == Some(0) {
                return false;
            }
        }
        true
    }
}

/// A subscription to create: the app API's request body, and what `nbwss endpoint webhook add` builds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewWebhook {
    /// The receiver: an `https://` URL.
    pub url: String,
    /// What the subscription is for, shown in lists.
    #[serde(default)]
    pub description: String,
    /// The signing secret, `whsec_` and base64 of 24 to 64 bytes; generated when absent.
    #[serde(default)]
    pub secret: Option<String>,
    /// Which records it receives.
    #[serde(default)]
    pub filter: WebhookFilter,
    /// CA certificates (PEM) trusted for this receiver besides the public roots, for a receiver whose
    /// certificate a private CA issued.
    #[serde(default)]
    pub ca_certificate: Option<String>,
    /// Deliver the records after this cursor; by default only those stored from now on.
    #[serde(default)]
    pub after: Option<i64>,
}

impl NewWebhook {
    /// Checks every field, normalising the filter; the error names the field and what to do.
    pub fn validate(&mut self, config: &Webhooks) -> Result<(), String> {
        let policy = AddressPolicy::new(&config.allow_networks).map_err(|error| format!("{error:#}"))?;
        check_url(&self.url, &policy)?;
        if self.description.chars().count() > MAX_DESCRIPTION_LEN {
            return Err(format!("description: at most {MAX_DESCRIPTION_LEN} characters"));
        }
        if let Some(secret) = &self.secret {
            secret_key(secret)?;
        }
        self.filter.validate()?;
        if let Some(pem) = &self.ca_certificate {
            check_ca_pem(pem)?;
        }
        if self.after.is_some_and(|after| after < 0) {
            return Err("after: must be a cursor (0 or more)".to_owned());
        }
        Ok(())
    }
}

/// Checks a receiver URL: `https://`, a host, no credentials or fragment, and not an address the policy
/// refuses (for a name, the addresses it resolves to are checked on every connection).
pub(crate) fn check_url(url: &str, policy: &AddressPolicy) -> Result<reqwest::Url, String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!("url: at most {MAX_URL_LEN} characters"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|error| format!("url: '{url}' is not a URL: {error}"))?;
    if parsed.scheme() != "https" {
        return Err(format!(
            "url: '{}' must start with https:// (notifications name the estate's clients and policies: they \
             are never sent in clear)",
            origin(&parsed)
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("url: must not carry credentials (user:password@); the signature authenticates each \
                    delivery"
            .to_owned());
    }
    if parsed.fragment().is_some() {
        return Err("url: must not have a #fragment (it is never sent)".to_owned());
    }
    match parsed.host() {
        None => return Err(format!("url: '{url}' names no host")),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                policy.check(std::net::IpAddr::from([127, 0, 0, 1])).map_err(|why| format!("url: {why}"))?;
            }
        }
        Some(url::Host::Ipv4(ip)) => policy.check(ip.into()).map_err(|why| format!("url: {why}"))?,
        Some(url::Host::Ipv6(ip)) => policy.check(ip.into()).map_err(|why| format!("url: {why}"))?,
    }
    Ok(parsed)
}

/// `https://host:port` of a URL: what logs and the dashboard show (a path may carry a capability).
pub(crate) fn origin(url: &reqwest::Url) -> String {
    url.origin().ascii_serialization()
}

/// The origin of a URL given as text, or a placeholder when it does not parse.
pub(crate) fn origin_of(url: &str) -> String {
    reqwest::Url::parse(url).map_or_else(|_| "(invalid URL)".to_owned(), |url| origin(&url))
}

fn check_ca_pem(pem: &str) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject as _;
    if pem.len() > MAX_CA_PEM_BYTES {
        return Err(format!("caCertificate: at most {MAX_CA_PEM_BYTES} bytes of PEM"));
    }
    let certificates = rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("caCertificate: not PEM certificates: {error}"))?;
    if certificates.is_empty() {
        return Err("caCertificate: no CERTIFICATE block found".to_owned());
    }
    reqwest::Certificate::from_pem_bundle(pem.as_bytes())
        .map_err(|error| format!("caCertificate: not usable as a CA: {error}"))?;
    Ok(())
}

/// A new secret: `whsec_` and the standard base64 of 32 random bytes.
pub(crate) fn new_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    crate::store::random_bytes(&mut bytes);
    format!("{SECRET_PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The HMAC key of a `whsec_` secret: its base64 decoded, 24 to 64 bytes.
pub(crate) fn secret_key(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).ok_or_else(|| {
        format!("secret: must start with {SECRET_PREFIX} followed by base64 (or leave it out to have one generated)")
    })?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| format!("secret: what follows {SECRET_PREFIX} must be standard base64"))?;
    if !(24..=64).contains(&key.len()) {
        return Err(format!("secret: must decode to 24 to 64 bytes, not {}", key.len()));
    }
    Ok(key)
}

/// The `webhook-signature` header: `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`.
pub(crate) fn signature(key: &[u8], message_id: &str, timestamp: i64, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(message_id.as_bytes());
    context.update(b".");
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body.as_bytes());
    let tag = context.sign();
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(tag.as_ref()))
}

/// The event type of a record: `notification.job`, `notification.image`, or `notification.other` for an
/// object kind the guide does not describe.
fn event_type(object: &str) -> &'static str {
    match object {
        "JOB" => "notification.job",
        "IMAGE" => "notification.image",
        _ => "notification.other",
    }
}

/// The body sent for a record: `{"type", "timestamp", "data"}` with the record as the feed serves it. A
/// body over `max_bytes` is sent without the record (`data.recordOmitted` says why and where to read it).
pub(crate) fn payload(notification: &StoredNotification, max_bytes: usize) -> String {
    let mut body = json!({
        "type": event_type(&notification.object),
        "timestamp": notification.received_at,
        "data": notification,
    });
    let text = body.to_string();
    if text.len() <= max_bytes {
        return text;
    }
    if let Some(data) = body.get_mut("data").and_then(Value::as_object_mut) {
        data.remove("record");
        data.insert(
            "recordOmitted".to_owned(),
            json!({
                "bytes": text.len(),
                "reason": format!("the body would be {} bytes, over webhooks.max_payload_bytes ({max_bytes})", text.len()),
                "read": format!("/api/v1/notifications?after={}&limit=1", notification.cursor - 1),
            }),
        );
    }
    body.to_string()
}

/// The body of a test delivery.
pub(crate) fn test_payload(webhook_id: &str) -> String {
    json!({
        "type": "webhook.test",
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": {
            "webhook": webhook_id,
            "message": "a test delivery from the NBWSS endpoint: the signature verifies with this subscription's secret",
        },
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(object: &str, record: Value) -> StoredNotification {
        StoredNotification {
            cursor: 7,
            primary: "primary1".into(),
            message_id: "M1".into(),
            notification_type: "INFO".into(),
            object: object.into(),
            record,
            received_at: "2026-01-01T00:00:00.000Z".into(),
            conforms: true,
            reasons: Vec::new(),
        }
    }

    #[test]
    fn the_signature_is_the_standard_webhooks_one() {
        // The specification's example secret and message, signed as its reference libraries sign them.
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_are_generated_and_checked() {
        let secret = new_secret();
        assert!(secret.starts_with("whsec_"));
        assert_eq!(secret_key(&secret).unwrap().len(), 32);
        assert!(secret_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_err().contains("whsec_"));
        assert!(secret_key("whsec_c2hvcnQ=").unwrap_err().contains("24 to 64"));
        assert!(secret_key("whsec_!!!").unwrap_err().contains("base64"));
    }

    #[test]
    fn filters_match_what_they_name() {
        let failed = notification("JOB", json!({"jobId": 1, "state": "DONE", "status": 96}));
        let ok = notification("JOB", json!({"jobId": 2, "state": "DONE", "status": 0}));
        let active = notification("JOB", json!({"jobId": 3, "state": "ACTIVE", "status": 0}));
        let image = notification("IMAGE", json!({"backupId": "c_1", "operationId": "CREATE"}));
        let mut alerts = WebhookFilter {
            objects: vec!["job".into()],
            job_states: vec!["done".into()],
            non_zero_status: true,
            ..WebhookFilter::default()
        };
        alerts.validate().unwrap();
        assert_eq!(alerts.objects, ["JOB"]);
        assert!(alerts.matches(&failed));
        assert!(!alerts.matches(&ok) && !alerts.matches(&active) && !alerts.matches(&image));
        let everything = WebhookFilter::default();
        assert!([&failed, &ok, &active, &image].iter().all(|n| everything.matches(n)));
        let other = WebhookFilter { primaries: vec!["primary2".into()], ..WebhookFilter::default() };
        assert!(!other.matches(&failed));
        let images = WebhookFilter { non_zero_status: true, ..WebhookFilter::default() };
        assert!(!images.matches(&image), "an IMAGE has no status: a job filter never matches it");
        for (mut bad, named) in [
            (WebhookFilter { objects: vec!["TAPE".into()], ..WebhookFilter::default() }, "filter.objects"),
            (
                WebhookFilter { job_states: vec!["DONNE".into()], ..WebhookFilter::default() },
                "filter.jobStates",
            ),
            (WebhookFilter { primaries: vec!["a b".into()], ..WebhookFilter::default() }, "filter.primaries"),
        ] {
            assert!(bad.validate().unwrap_err().contains(named));
        }
    }

    #[test]
    fn urls_must_be_https_to_a_reachable_host() {
        let policy = AddressPolicy::new(&[]).unwrap();
        assert!(check_url("https://hooks.example.com/nbwss?x=1", &policy).is_ok());
        for (url, says) in [
            ("http://hooks.example.com/", "https://"),
            ("https://user:pw@hooks.example.com/", "credentials"),
            ("https://hooks.example.com/#x", "fragment"),
            ("https://127.0.0.1:9000/", "loopback"),
            ("https://localhost:9000/", "loopback"),
            ("https://[::ffff:10.0.0.1]/", "IPv4-mapped"),
            ("https://169.254.169.254/latest/meta-data", "link-local"),
            ("not a url", "not a URL"),
        ] {
            let error = check_url(url, &policy).unwrap_err();
            assert!(error.contains(says), "{url}: {error}");
        }
        let loopback = AddressPolicy::new(&["127.0.0.0/8".to_owned()]).unwrap();
        assert!(check_url("https://127.0.0.1:9000/", &loopback).is_ok());
        assert!(check_url("https://localhost:9000/", &loopback).is_ok());
    }

    #[test]
    fn a_large_record_is_sent_without_it() {
        let small = notification("JOB", json!({"jobId": 1}));
        let body: Value = serde_json::from_str(&payload(&small, 1024)).unwrap();
        assert_eq!(body["type"], "notification.job");
        assert_eq!(body["timestamp"], "2026-01-01T00:00:00.000Z");
        assert_eq!(body["data"]["record"]["jobId"], 1);
        assert_eq!(body["data"]["primary"], "primary1");
        let large = notification("IMAGE", json!({"junk": "x".repeat(5000)}));
        let text = payload(&large, 1024);
        assert!(text.len() < 1024);
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["type"], "notification.image");
        assert!(body["data"].get("record").is_none());
        assert_eq!(body["data"]["recordOmitted"]["read"], "/api/v1/notifications?after=6&limit=1");
    }
}

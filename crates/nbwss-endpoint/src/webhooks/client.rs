//! Sending one delivery: a signed POST over HTTPS and what came of it. TLS is always verified (the public
//! roots, plus a subscription's own CA when it has one: there is no way to turn verification off);
//! redirects are never followed (a 3xx is a failure that says to update the URL, as Standard Webhooks
//! asks); no proxy from the environment is used; and every connection goes only to an address the
//! [`AddressPolicy`] allows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::address::GuardedResolver;
use super::store::WebhookError;
use super::{check_url, secret_key, signature, test_payload, AddressPolicy};
use crate::config::Webhooks;
use crate::store::Store;

/// Bytes of a receiver's answer read at most: an excerpt of an error's body is kept for the operator.
const ANSWER_EXCERPT_BYTES: usize = 300;
/// Bytes of a successful answer read before the connection is given up rather than reused.
const MAX_DRAINED_BYTES: usize = 64 * 1024;

/// One subscription's HTTPS client.
pub(crate) struct WebhookClient {
    http: reqwest::Client,
    policy: Arc<AddressPolicy>,
    timeout: Duration,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// The receiver answered 2xx.
    Delivered { status: u16 },
    /// Anything else: no answer, a timeout, a refused address, a non-2xx status.
    Failed {
        /// The receiver's status, when it answered.
        status: Option<u16>,
        /// What happened, in words, with an excerpt of the receiver's answer.
        error: String,
        /// How long the receiver asked to wait (`Retry-After` in seconds).
        retry_after: Option<Duration>,
        /// It answered 410 Gone: it wants no more deliveries.
        gone: bool,
    },
}

impl WebhookClient {
    /// A client for one subscription: `ca_pem` is trusted for its receiver besides the public roots.
    pub fn new(config: &Webhooks, ca_pem: Option<&str>) -> anyhow::Result<Self> {
        let policy = Arc::new(AddressPolicy::new(&config.allow_networks)?);
        let timeout = config.request_timeout();
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(1)
            .user_agent(concat!("nbwss-endpoint/", env!("CARGO_PKG_VERSION"), " (webhooks)"))
            .dns_resolver(Arc::new(GuardedResolver { policy: policy.clone() }));
        if let Some(pem) = ca_pem {
            for certificate in reqwest::Certificate::from_pem_bundle(pem.as_bytes())? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        Ok(Self { http: builder.build()?, policy, timeout })
    }

    /// POSTs `body` to `url`, signed with `key` under `message_id` and the current time.
    pub async fn send(&self, url: &str, key: &[u8], message_id: &str, body: &str) -> Attempt {
        let failed = |error: String| Attempt::Failed { status: None, error, retry_after: None, gone: false };
        // A URL naming an address never reaches the resolver: check it here, on every attempt.
        let url = match check_url(url, &self.policy) {
            Ok(url) => url,
            Err(why) => return failed(why),
        };
        let timestamp = chrono::Utc::now().timestamp();
        let request = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature(key, message_id, timestamp, body))
            .body(body.to_owned());
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) if error.is_timeout() => {
                return failed(format!(
                    "no answer within {} ms (webhooks.request_timeout_ms)",
                    self.timeout.as_millis()
                ))
            }
            // Without the URL: its path may be a capability (many receivers' URLs are), and this text is
            // logged and listed. The webhook's id and origin say which receiver it was.
            Err(error) => return failed(error_chain(&error.without_url())),
        };
        let status = response.status();
        if status.is_success() {
            drain(response).await;
            return Attempt::Delivered { status: status.as_u16() };
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let error = if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("nowhere")
                .to_owned();
            format!("HTTP {status}: a redirect to {location}, not followed: update the webhook's URL")
        } else {
            let excerpt = excerpt(response).await;
            if excerpt.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {excerpt}")
            }
        };
        Attempt::Failed {
            status: Some(status.as_u16()),
            error,
            retry_after,
            gone: status == reqwest::StatusCode::GONE,
        }
    }
}

/// A reqwest error and its causes, in one line ("error sending request: ...: connection refused").
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Reads a successful answer so that the connection can be reused, up to a bound.
async fn drain(mut response: reqwest::Response) {
    let mut read = 0;
    while let Ok(Some(chunk)) = response.chunk().await {
        read += chunk.len();
        if read > MAX_DRAINED_BYTES {
            return;
        }
    }
}

/// The beginning of an error answer, on one line.
async fn excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        bytes.extend_from_slice(&chunk);
        if bytes.len() >= ANSWER_EXCERPT_BYTES {
            break;
        }
    }
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(ANSWER_EXCERPT_BYTES)]).into_owned();
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if bytes.len() >= ANSWER_EXCERPT_BYTES {
        format!("{line}…")
    } else {
        line
    }
}

/// What a test delivery came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TestOutcome {
    /// The test message's `webhook-id` (`msg_test_...`).
    pub message_id: String,
    /// Whether the receiver answered 2xx.
    pub delivered: bool,
    /// Its HTTP status, when it answered.
    pub status: Option<u16>,
    /// What went wrong, when it did.
    pub error: Option<String>,
    /// How long the attempt took.
    pub elapsed_ms: u64,
}

/// Sends one sample delivery (`type: webhook.test`) to subscription `id` now, signed with its secret, outside
/// its queue (a paused subscription can be tested), and says what came of it. Used by the app API and by
/// `nbwss endpoint webhook test`.
pub async fn send_test(config: &Webhooks, store: &Store, id: &str) -> Result<TestOutcome, WebhookError> {
    let lookup = id.to_owned();
    let target = store
        .run(move |store| store.webhook_target(&lookup))
        .await?
        .ok_or_else(|| WebhookError::NotFound(id.to_owned()))?;
    let key = secret_key(&target.secret).map_err(|why| WebhookError::Store(anyhow::anyhow!("{why}")))?;
    let client = WebhookClient::new(config, target.ca_pem.as_deref())?;
    let mut random = [0u8; 8];
    crate::store::random_bytes(&mut random);
    let message_id = format!("msg_test_{}", hex::encode(random));
    let started = Instant::now();
    let attempt = client.send(&target.url, &key, &message_id, &test_payload(id)).await;
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(match attempt {
        Attempt::Delivered { status } => {
            TestOutcome { message_id, delivered: true, status: Some(status), error: None, elapsed_ms }
        }
        Attempt::Failed { status, error, .. } => {
            TestOutcome { message_id, delivered: false, status, error: Some(error), elapsed_ms }
        }
    })
}

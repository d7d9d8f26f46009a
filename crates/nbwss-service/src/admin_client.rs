//! A typed client of the admin API, for the CLI and tests.

use std::path::Path;

use anyhow::Context as _;
use nbwss_protocol::{HostObject, HostState, HostUpdate, Secret};
use serde_json::{json, Value};

use crate::admin::{ADMIN_KEY_HEADER, WSSENDPOINTS};

/// A failed admin call.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The service answered with an error.
    #[error("{message}{}", details_suffix(.details))]
    Api {
        /// HTTP status.
        status: u16,
        /// `errorMessage`.
        message: String,
        /// `errorDetails`.
        details: Vec<String>,
    },
    /// The service could not be reached or answered nonsense.
    #[error("cannot talk to the service at {url}: {reason}")]
    Transport {
        /// The admin URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

impl AdminError {
    /// Why the WebSocket server could not be validated, when that is what the service answered.
    pub fn probe_failure(&self) -> Option<crate::admin::ProbeFailure> {
        match self {
            Self::Api { status: 500, message, .. } => crate::admin::ProbeFailure::of_message(message),
            _ => None,
        }
    }
}

fn details_suffix(details: &[String]) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(" ({})", details.join("; "))
    }
}

impl AdminError {
    /// The HTTP status, for API errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            Self::Transport { .. } => None,
        }
    }
}

/// Talks to a service's admin listener.
#[derive(Debug, Clone)]
pub struct AdminClient {
    url: String,
    key: Secret,
    client: reqwest::Client,
}

impl AdminClient {
    /// A client of the admin listener at `url` (`https://127.0.0.1:PORT`) with the admin key, trusting
    /// exactly `certificate_pem` (the service's self-signed certificate), or the system roots when `None`.
    pub fn new(url: &str, key: &str, certificate_pem: Option<&str>) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder().use_rustls_tls().no_proxy();
        if let Some(pem) = certificate_pem {
            builder = builder.tls_built_in_root_certs(false);
            for der in crate::tls::parse_pem_certificates(pem).context("admin certificate")? {
                builder = builder.add_root_certificate(reqwest::Certificate::from_der(der.as_ref())?);
            }
        }
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            key: Secret::new(key.trim()),
            client: builder.build().context("cannot build the HTTP client")?,
        })
    }

    /// A client of the service whose data directory is `dir` (reads `admin.json`, `admin.key` and the
    /// admin certificate the service wrote there).
    pub fn from_data_dir(dir: &Path) -> anyhow::Result<Self> {
        let info = crate::files::read_admin_info(dir)?;
        let key = std::fs::read_to_string(&info.key_file)
            .with_context(|| format!("cannot read the admin key {}", info.key_file.display()))?;
        let pem = std::fs::read_to_string(&info.certificate_file).with_context(|| {
            format!("cannot read the admin certificate {}", info.certificate_file.display())
        })?;
        Self::new(&info.url, &key, Some(&pem))
    }

    /// The admin URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, AdminError> {
        let url = format!("{}{path}", self.url);
        let transport = |reason: String| AdminError::Transport { url: self.url.clone(), reason };
        let mut request = self.client.request(method, &url).header(ADMIN_KEY_HEADER, self.key.expose());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|error| transport(error_chain(&error)))?;
        let status = response.status();
        let text = response.text().await.map_err(|error| transport(error_chain(&error)))?;
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(json!({}));
            }
            return serde_json::from_str(&text)
                .map_err(|error| transport(format!("invalid JSON answer: {error}")));
        }
        let value: Value = serde_json::from_str(&text).unwrap_or_default();
        Err(AdminError::Api {
            status: status.as_u16(),
            message: value.get("errorMessage").and_then(Value::as_str).unwrap_or(status.as_str()).to_owned(),
            details: value
                .get("errorDetails")
                .and_then(Value::as_array)
                .map(|items| items.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default(),
        })
    }

    /// `validatehost`: the endpoint's certificate (subject, fingerprints, PEM) with the host object.
    pub async fn validate_host(&self, host: &HostObject) -> Result<HostObject, AdminError> {
        let value = self
            .call(reqwest::Method::POST, &format!("{WSSENDPOINTS}/validatehost"), Some(to_value(host)))
            .await?;
        from_value(&self.url, value)
    }

    /// `validateurl`: the endpoint details a provider URL serves (one or several host objects, tokens
    /// included).
    pub async fn validate_url(&self, url: &str) -> Result<Vec<HostObject>, AdminError> {
        let value = self
            .call(reqwest::Method::POST, &format!("{WSSENDPOINTS}/validateurl"), Some(json!({"url": url})))
            .await?;
        match value {
            Value::Array(items) => items.into_iter().map(|item| from_value(&self.url, item)).collect(),
            other => Ok(vec![from_value(&self.url, other)?]),
        }
    }

    /// `save`: stores a WebSocket server (token and accepted certificate required).
    pub async fn save(&self, host: &HostObject) -> Result<(), AdminError> {
        self.call(reqwest::Method::POST, &format!("{WSSENDPOINTS}/save"), Some(to_value(host)))
            .await
            .map(drop)
    }

    /// `update`: activates or deactivates a WebSocket server.
    pub async fn update(&self, host_name: &str, state: HostState) -> Result<(), AdminError> {
        self.renew(&HostUpdate::state(host_name, state)).await
    }

    /// `update` with any change: a renewed certificate (re-validated and pinned), new details or token.
    pub async fn renew(&self, update: &HostUpdate) -> Result<(), AdminError> {
        self.call(reqwest::Method::POST, &format!("{WSSENDPOINTS}/update"), Some(update.to_value()))
            .await
            .map(drop)
    }

    /// Deletes a WebSocket server.
    pub async fn delete(&self, host_name: &str) -> Result<(), AdminError> {
        let path = format!("{WSSENDPOINTS}/{}", percent_encode_segment(host_name));
        self.call(reqwest::Method::DELETE, &path, None).await.map(drop)
    }

    /// Every WebSocket server with its live state (no tokens).
    pub async fn list(&self) -> Result<Vec<HostObject>, AdminError> {
        let value = self.call(reqwest::Method::GET, WSSENDPOINTS, None).await?;
        serde_json::from_value(value)
            .map_err(|error| AdminError::Transport { url: self.url.clone(), reason: error.to_string() })
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> Result<String, AdminError> {
        let transport = |reason: String| AdminError::Transport { url: self.url.clone(), reason };
        let response = self
            .client
            .get(format!("{}/metrics", self.url))
            .header(ADMIN_KEY_HEADER, self.key.expose())
            .send()
            .await
            .map_err(|error| transport(error_chain(&error)))?;
        response.text().await.map_err(|error| transport(error_chain(&error)))
    }
}

fn to_value(host: &HostObject) -> Value {
    serde_json::to_value(host).unwrap_or_default()
}

fn from_value(url: &str, value: Value) -> Result<HostObject, AdminError> {
    serde_json::from_value(value).map_err(|error| AdminError::Transport {
        url: url.to_owned(),
        reason: format!("unexpected answer: {error}"),
    })
}

/// An error and its sources, joined: what reqwest hides behind "error sending request".
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(current) = source {
        parts.push(current.to_string());
        source = current.source();
    }
    parts.join(": ")
}

/// Percent-encodes a host name for use as one path segment (unreserved characters stay as they are).
fn percent_encode_segment(text: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    percent_encoding::utf8_percent_encode(text, SEGMENT).to_string()
}

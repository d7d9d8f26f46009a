//! The detector's own client of the primary server's REST API: its own credentials (user and password
//! through `POST /login`, or an API key sent raw in `Authorization`), the token renewed before its
//! `validity` runs out and on a 401, the versioned media type on every call.

use std::time::Duration;

use nbwss_protocol::Secret;
use serde_json::{json, Value};
use tokio::time::Instant;

/// How the detector authenticates to the primary server.
#[derive(Debug, Clone)]
pub enum PrimaryCredentials {
    /// `POST /login` with these fields; the token it returns is used until renewed.
    Password {
        /// `userName`.
        user: String,
        /// `password`.
        password: Secret,
        /// `domainType`, when the account needs one.
        domain_type: Option<String>,
        /// `domainName`, when the account needs one.
        domain_name: Option<String>,
    },
    /// An API key, sent raw in `Authorization`.
    ApiKey(Secret),
}

/// A failed call to the primary server.
#[derive(Debug, thiserror::Error)]
pub enum PrimaryError {
    /// The server could not be reached, or the TLS handshake failed.
    #[error("primary server unreachable: {0}")]
    Transport(#[from] reqwest::Error),
    /// The server answered with an error status.
    #[error("primary server answered {status} to {what}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Method and path.
        what: String,
        /// The start of the body.
        body: String,
    },
    /// The answer is larger than `MAX_ANSWER_BYTES` (32 MiB).
    #[error("primary server's answer to {what} is larger than {limit} bytes")]
    TooLarge {
        /// Method and path.
        what: String,
        /// The cap.
        limit: usize,
    },
    /// The client could not be set up (bad URL or certificate).
    #[error("primary server client: {0}")]
    Setup(String),
}

impl PrimaryError {
    /// The HTTP status, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Renew a login token once this share of its validity has passed.
const RENEW_AT: f64 = 0.8;
/// The version asked for when the server refuses the configured one (406): offset pagination of jobs,
/// understood by NetBackup 10.1 and later.
pub const FALLBACK_API_VERSION: &str = "8.0";
/// Per-request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest answer read from the primary server (a page of 100 jobs is tens of KiB).
pub const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;
/// A login `validity` (seconds) is taken within these bounds: the server's number is not trusted to be
/// sane, and a token is renewed at least once a day whatever it says.
const VALIDITY_RANGE: (f64, f64) = (1.0, 86_400.0);
/// Used when the login answer has no usable `validity`.
const DEFAULT_VALIDITY: f64 = 3600.0;

struct Token {
    value: Secret,
    renew_at: Instant,
}

/// A REST client of the primary server with its own session.
pub struct PrimaryClient {
    http: reqwest::Client,
    base_url: String,
    api_version: std::sync::RwLock<String>,
    credentials: PrimaryCredentials,
    token: tokio::sync::Mutex<Option<Token>>,
}

impl std::fmt::Debug for PrimaryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrimaryClient")
            .field("base_url", &self.base_url)
            .field("api_version", &self.api_version)
            .finish_non_exhaustive()
    }
}

impl PrimaryClient {
    /// A client of `base_url` (e.g. `https://primary:1556/netbackup`) trusting `ca_pem` in addition to the
    /// system roots, asking for API version `api_version` (e.g. `9.0`).
    pub fn new(
        base_url: &str,
        ca_pem: Option<&str>,
        credentials: PrimaryCredentials,
        api_version: &str,
    ) -> Result<Self, PrimaryError> {
        // Redirects are not followed: the detector talks to the configured primary server and nothing else.
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .use_rustls_tls();
        if let Some(pem) = ca_pem {
            for certificate in reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|error| PrimaryError::Setup(format!("CA certificate: {error}")))?
            {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().map_err(|error| PrimaryError::Setup(error.to_string()))?;
        url::Url::parse(base_url).map_err(|error| PrimaryError::Setup(format!("{base_url}: {error}")))?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_version: std::sync::RwLock::new(api_version.to_owned()),
            credentials,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// The API version asked for (it steps down to `FALLBACK_API_VERSION`, 8.0, when the server refuses it).
    pub fn api_version(&self) -> String {
        self.api_version
            .read()
            .map(|version| version.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    fn media_type(&self) -> String {
        format!("application/vnd.netbackup+json;version={}", self.api_version())
    }

    /// After a 406, asks for the fallback version from now on; whether there was a lower version to try.
    fn step_down(&self) -> bool {
        let Ok(mut version) = self.api_version.write() else { return false };
        if version.as_str() == FALLBACK_API_VERSION {
            return false;
        }
        tracing::warn!(refused = %version, now = FALLBACK_API_VERSION, "the primary server refused the API version");
        *version = FALLBACK_API_VERSION.to_owned();
        true
    }

    /// `GET path` with `query` pairs, as JSON; logs in first or again when needed.
    pub async fn get_json(&self, path: &str, query: &[(&str, String)]) -> Result<Value, PrimaryError> {
        let mut url = url::Url::parse(&format!("{}{path}", self.base_url))
            .map_err(|error| PrimaryError::Setup(format!("{path}: {error}")))?;
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (key, value) in query {
                pairs.append_pair(key, value);
            }
        }
        let mut renewed = false;
        let mut stepped_down = false;
        loop {
            let authorization = self.authorization(renewed).await?;
            let response = self
                .http
                .get(url.clone())
                .header(http::header::ACCEPT, self.media_type())
                .header(http::header::AUTHORIZATION, authorization.expose())
                .send()
                .await?;
            let status = response.status();
            if status == reqwest::StatusCode::UNAUTHORIZED && !renewed {
                tracing::info!("primary server refused the detector's token: logging in again");
                renewed = true;
                continue;
            }
            if status == reqwest::StatusCode::NOT_ACCEPTABLE && !stepped_down && self.step_down() {
                stepped_down = true;
                continue;
            }
            let body = read_answer(response, &format!("GET {path}")).await?;
            if !status.is_success() {
                return Err(PrimaryError::Status {
                    status: status.as_u16(),
                    what: format!("GET {path}"),
                    body: body.chars().take(300).collect(),
                });
            }
            return serde_json::from_str(&body).map_err(|error| PrimaryError::Status {
                status: status.as_u16(),
                what: format!("GET {path}"),
                body: format!("not JSON: {error}"),
            });
        }
    }

    async fn authorization(&self, force_login: bool) -> Result<Secret, PrimaryError> {
        let (user, password, domain_type, domain_name) = match &self.credentials {
            PrimaryCredentials::ApiKey(key) => return Ok(key.clone()),
            PrimaryCredentials::Password { user, password, domain_type, domain_name } => {
                (user, password, domain_type, domain_name)
            }
        };
        let mut token = self.token.lock().await;
        if let Some(current) =
            token.as_ref().filter(|current| !force_login && Instant::now() < current.renew_at)
        {
            return Ok(current.value.clone());
        }
        let mut body = json!({"userName": user, "password": password.expose()});
        if let Some(domain_type) = domain_type {
            body["domainType"] = json!(domain_type);
        }
        if let Some(domain_name) = domain_name {
            body["domainName"] = json!(domain_name);
        }
        let response = self
            .http
            .post(format!("{}/login", self.base_url))
            .header(http::header::ACCEPT, self.media_type())
            .header(http::header::CONTENT_TYPE, self.media_type())
            .body(body.to_string())
            .send()
            .await?;
        let status = response.status();
        let text = read_answer(response, "POST /login").await?;
        if !status.is_success() {
            return Err(PrimaryError::Status {
                status: status.as_u16(),
                what: "POST /login".to_owned(),
                body: text.chars().take(300).collect(),
            });
        }
        let answer: Value = serde_json::from_str(&text).map_err(|error| PrimaryError::Status {
            status: status.as_u16(),
            what: "POST /login".to_owned(),
            body: format!("not JSON: {error}"),
        })?;
        let value = answer["token"].as_str().filter(|token| !token.is_empty()).ok_or_else(|| {
            PrimaryError::Status {
                status: status.as_u16(),
                what: "POST /login".to_owned(),
                body: "no token in the answer".to_owned(),
            }
        })?;
        let validity = token_validity(&answer["validity"]);
        let renew_at = Instant::now() + Duration::from_secs_f64(validity * RENEW_AT);
        let value = Secret::new(value);
        *token = Some(Token { value: value.clone(), renew_at });
        tracing::debug!(validity, "detector logged in to the primary server");
        Ok(value)
    }
}

/// The login answer's `validity` in seconds, within [`VALIDITY_RANGE`] (a number from the network must
/// not be able to overflow a `Duration`).
fn token_validity(value: &Value) -> f64 {
    match value.as_f64() {
        Some(validity) if validity.is_finite() && validity > 0.0 => {
            validity.clamp(VALIDITY_RANGE.0, VALIDITY_RANGE.1)
        }
        _ => DEFAULT_VALIDITY,
    }
}

/// The body as text, at most [`MAX_ANSWER_BYTES`].
async fn read_answer(mut response: reqwest::Response, what: &str) -> Result<String, PrimaryError> {
    let status = response.status().as_u16();
    let bytes = match crate::body::read_limited(&mut response, MAX_ANSWER_BYTES).await {
        Ok(bytes) => bytes,
        Err(crate::body::BodyError::TooLarge { limit }) => {
            return Err(PrimaryError::TooLarge { what: what.to_owned(), limit })
        }
        Err(crate::body::BodyError::Transport(error)) => return Err(error.into()),
    };
    String::from_utf8(bytes).map_err(|_| PrimaryError::Status {
        status,
        what: what.to_owned(),
        body: "the answer is not UTF-8 text".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validity_from_the_network_is_range_checked() {
        assert_eq!(token_validity(&json!(1e300)), 86_400.0);
        assert_eq!(token_validity(&json!(f64::MAX)), 86_400.0);
        assert_eq!(token_validity(&json!(u64::MAX)), 86_400.0);
        assert_eq!(token_validity(&json!(1e-300)), 1.0);
        assert_eq!(token_validity(&json!(-5)), DEFAULT_VALIDITY);
        assert_eq!(token_validity(&json!(0)), DEFAULT_VALIDITY);
        assert_eq!(token_validity(&json!("3600")), DEFAULT_VALIDITY);
        assert_eq!(token_validity(&Value::Null), DEFAULT_VALIDITY);
        assert_eq!(token_validity(&json!(7200)), 7200.0);
        // Every accepted value makes a Duration without panicking.
        for validity in [1.0, 86_400.0] {
            let _ = Duration::from_secs_f64(validity * RENEW_AT);
        }
    }
}

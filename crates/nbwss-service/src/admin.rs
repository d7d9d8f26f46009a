//! The admin listener: NetBackup's `wssendpoints` API (§8.5) at its own paths, `/metrics` and `/healthz`.
//! Every call but `/healthz` needs the admin key (`X-NBWSS-Admin-Key: KEY`, or `Authorization: KEY` as
//! NetBackup API keys are sent, optionally with `Bearer `). Errors are NetBackup-style JSON bodies.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use nbwss_protocol::{
    parse_endpoint_details, EndpointType, ErrorBody, HostObject, HostState, HostUpdate, LastClose,
    PresentedCertificate,
};
use serde_json::{json, Value};

use crate::connections::{Status, Trigger};

/// Largest endpoint details document read from a provider URL (one is a few hundred bytes).
const MAX_PROVIDER_ANSWER_BYTES: usize = 1024 * 1024;
use crate::metrics::Metrics;
use crate::proxy::Connector;
use crate::store::{Server, ServerChanges, Store, StoreError};
use crate::tls::{CertificateInfo, PinnedVerifier};

/// Header carrying the admin key.
pub const ADMIN_KEY_HEADER: &str = "x-nbwss-admin-key";
/// Base path of the WebSocket servers API.
pub const WSSENDPOINTS: &str = "/netbackup/config/servers/wssendpoints";

/// What the admin handlers share.
#[derive(Debug)]
pub struct AdminState {
    /// The store.
    pub store: Arc<Store>,
    /// Live connection states.
    pub status: Arc<Status>,
    /// Runs the connection task after a change.
    pub trigger: Trigger,
    /// Outbound TCP for validation.
    pub connector: Connector,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// SHA-256 of the admin key.
    pub key_digest: Vec<u8>,
    /// Client for provider URLs (`validateurl`).
    pub provider_client: reqwest::Client,
    /// How long a validation's TLS handshake may take (`connect.handshakeTimeout`).
    pub handshake_timeout: std::time::Duration,
}

/// An error answered with its status and NetBackup's error body, `errorCode` the status and `errorDetails`
/// always present (`[]` when there are none).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>, details: Vec<String>) -> Self {
        let body = ErrorBody {
            error_code: i64::from(status.as_u16()),
            error_message: message.into(),
            error_details: Some(details),
        };
        Self { status, body }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message, Vec::new())
    }

    fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "admin API internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal error; see the service log.", Vec::new())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Duplicate(_) => Self::new(StatusCode::CONFLICT, error.to_string(), Vec::new()),
            StoreError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, error.to_string(), Vec::new()),
            StoreError::Internal(error) => Self::internal(format!("{error:#}")),
        }
    }
}

/// The admin router.
pub fn app(state: Arc<AdminState>) -> Router {
    let protected = Router::new()
        .route(WSSENDPOINTS, get(list))
        .route(&format!("{WSSENDPOINTS}/validatehost"), post(validate_host))
        .route(&format!("{WSSENDPOINTS}/validateurl"), post(validate_url))
        .route(&format!("{WSSENDPOINTS}/save"), post(save))
        .route(&format!("{WSSENDPOINTS}/update"), post(update))
        .route(&format!("{WSSENDPOINTS}/{{hostName}}"), delete(remove))
        .route("/metrics", get(metrics))
        .merge(crate::notify::ingest::routes())
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .merge(protected)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "No such API.", Vec::new()) })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "This API does not take that method.", Vec::new())
        })
        .with_state(state)
}

async fn authenticate(
    State(state): State<Arc<AdminState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers();
    let presented = headers
        .get(ADMIN_KEY_HEADER)
        .or_else(|| headers.get(axum::http::header::AUTHORIZATION))
        .and_then(|value| value.to_str().ok())
        .map(|value| value.strip_prefix("Bearer ").unwrap_or(value).trim());
    let ok = presented.is_some_and(|key| {
        ring::digest::digest(&ring::digest::SHA256, key.as_bytes()).as_ref() == state.key_digest.as_slice()
    });
    if !ok {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Missing or wrong admin key.",
            vec![format!(
                "send the key from the data directory's admin.key in the {ADMIN_KEY_HEADER} header"
            )],
        )
        .into_response();
    }
    next.run(request).await
}

fn json_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("The request body is not valid JSON: {error}")))
}

fn host_object(value: &Value) -> Result<HostObject, ApiError> {
    HostObject::from_value(value)
        .map_err(|error| ApiError::bad_request(format!("Invalid WebSocket server: {error}")))
}

/// Why a WebSocket server could not be validated (`validatehost`, `save`, `update`): answered as a 500 whose
/// `errorMessage` is [`ProbeFailure::message`] (NetBackup's error body has no code for it);
/// [`crate::AdminError::probe_failure`] reads it back, so that callers branch on this, not on English text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeFailure {
    /// No TCP connection (or through the proxy), or the connection ended before TLS began.
    Unreachable,
    /// TCP connected, and the TLS handshake failed or did not finish in time.
    TlsHandshake,
}

impl ProbeFailure {
    /// Every failure, for reading one back.
    pub const ALL: [ProbeFailure; 2] = [ProbeFailure::Unreachable, ProbeFailure::TlsHandshake];

    /// The text around the URL in the `errorMessage` that carries this failure.
    fn around_url(self) -> (&'static str, &'static str) {
        match self {
            Self::Unreachable => ("The WebSocket server at ", " cannot be reached."),
            Self::TlsHandshake => ("The TLS handshake with the WebSocket server at ", " failed."),
        }
    }

    /// The `errorMessage` that carries this failure for `url`.
    pub fn message(self, url: &str) -> String {
        let (before, after) = self.around_url();
        format!("{before}{url}{after}")
    }

    /// The failure an `errorMessage` carries, if it carries one.
    pub fn of_message(message: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|failure| {
            let (before, after) = failure.around_url();
            message.len() > before.len() + after.len()
                && message.starts_with(before)
                && message.ends_with(after)
        })
    }

    fn error(self, url: &str, reason: String) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, self.message(url), vec![reason])
    }
}

/// Connects to the URL's host and port and returns the certificate it presents.
pub async fn fetch_certificate(
    connector: &Connector,
    url: &str,
    handshake_timeout: std::time::Duration,
) -> Result<CertificateInfo, ApiError> {
    let verifier = PinnedVerifier::capturing();
    let result = crate::session::open_tls(connector, url, &verifier, handshake_timeout).await;
    let unreachable = |reason: String| ProbeFailure::Unreachable.error(url, reason);
    match (result, verifier.seen()) {
        (Ok(_stream), Some(der)) => {
            CertificateInfo::from_der(&der).map_err(|error| unreachable(error.to_string()))
        }
        (Ok(_), None) => Err(unreachable("the server presented no certificate".into())),
        (Err(ended), _) if ended.close_status == nbwss_protocol::CloseStatus::TlsHandshakeFailure => {
            Err(ProbeFailure::TlsHandshake.error(url, ended.reason))
        }
        (Err(ended), _) => Err(unreachable(ended.reason)),
    }
}

async fn validate_host(
    State(state): State<Arc<AdminState>>,
    body: Bytes,
) -> Result<Json<HostObject>, ApiError> {
    let host = host_object(&json_body(&body)?)?;
    let info = fetch_certificate(&state.connector, &host.url, state.handshake_timeout).await?;
    Ok(Json(HostObject {
        token: None,
        certificate: Some(info.pem),
        subject: Some(info.subject),
        sha1_fingerprints: Some(info.sha1),
        sha256_fingerprint: Some(info.sha256),
        ..host
    }))
}

async fn validate_url(State(state): State<Arc<AdminState>>, body: Bytes) -> Result<Response, ApiError> {
    let value = json_body(&body)?;
    let url = value.get("url").and_then(Value::as_str).filter(|url| !url.is_empty()).ok_or_else(|| {
        ApiError::bad_request("url: missing; give the provider's URL as {\"url\": \"https://...\"}")
    })?;
    if !url.to_ascii_lowercase().starts_with("https://") {
        return Err(ApiError::bad_request(format!("url: '{url}' must start with https://")));
    }
    let failed = |reason: String| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("The provider URL {url} cannot be read."),
            vec![reason],
        )
    };
    let response = state
        .provider_client
        .get(url)
        .send()
        .await
        .map_err(|error| failed(crate::admin_client::error_chain(&error)))?;
    if !response.status().is_success() {
        return Err(failed(format!("it answered HTTP {}", response.status())));
    }
    let mut response = response;
    let text =
        crate::body::read_text_limited(&mut response, MAX_PROVIDER_ANSWER_BYTES).await.map_err(failed)?;
    let details = parse_endpoint_details(&text).map_err(|error| {
        ApiError::bad_request(format!("The provider URL returned invalid endpoint details: {error}"))
    })?;
    let mut values: Vec<Value> = details.iter().map(|details| details.to_value()).collect();
    Ok(if values.len() == 1 {
        Json(values.remove(0)).into_response()
    } else {
        Json(Value::Array(values)).into_response()
    })
}

async fn save(
    State(state): State<Arc<AdminState>>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let host = host_object(&json_body(&body)?)?;
    let token = host.token.clone().ok_or_else(|| {
        ApiError::bad_request("token: missing; the endpoint details must include the token")
    })?;
    let accepted_pem = host.certificate.clone().ok_or_else(|| {
        ApiError::bad_request(
            "certificate: missing; validate the host first and send the certificate you accepted",
        )
    })?;
    if state.store.list()?.iter().any(|server| server.host_name == host.host_name) {
        return Err(StoreError::Duplicate(host.host_name).into());
    }
    let accepted = revalidate(&state, &host.url, &accepted_pem).await?;
    let server = Server {
        host_name: host.host_name.clone(),
        url: host.url,
        group_id: host.group_id,
        priority: host.priority,
        token,
        certificate_pem: accepted.pem,
        certificate_der: accepted.der,
        state: HostState::Activated,
        endpoint_type: host.endpoint_type.unwrap_or(EndpointType::Others),
        credential_id: uuid::Uuid::new_v4().to_string(),
        saved_at: nbwss_protocol::unix_now(),
    };
    state.store.insert(&server)?;
    tracing::info!(host = %server.host_name, group = %server.group_id, priority = server.priority, "WebSocket server saved");
    state.trigger.run_now();
    Ok((StatusCode::CREATED, Json(json!({}))))
}

/// Checks that the endpoint at `url` presents exactly the certificate the administrator accepted.
async fn revalidate(state: &AdminState, url: &str, accepted_pem: &str) -> Result<CertificateInfo, ApiError> {
    let accepted = CertificateInfo::from_pem(accepted_pem)
        .map_err(|error| ApiError::bad_request(format!("certificate: {error}")))?;
    let presented = fetch_certificate(&state.connector, url, state.handshake_timeout).await?;
    if presented.der != accepted.der {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The WebSocket server's certificate does not match the accepted certificate; validate the host again.",
            vec![format!("accepted SHA-256 {}, presented SHA-256 {}", accepted.sha256, presented.sha256)],
        ));
    }
    Ok(accepted)
}

/// `update`: a state change (NetBackup's call), or a renewal in place: a new certificate, re-validated
/// against the endpoint and pinned, optionally with new details and token. The server keeps its state (unless
/// given), credential id and its group's notification backlog; its connection, if any, is closed and made
/// again with the new details on the connection task's next run.
async fn update(State(state): State<Arc<AdminState>>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let update = HostUpdate::from_value(&json_body(&body)?)
        .map_err(|error| ApiError::bad_request(format!("Invalid update: {error}")))?;
    let saved = state.store.get(&update.host_name)?;
    let url = update.location.as_ref().map_or(saved.url.as_str(), |(url, _, _)| url.as_str());
    let certificate = match &update.certificate {
        Some(pem) => Some(revalidate(&state, url, pem).await?),
        None if url != saved.url => {
            return Err(ApiError::bad_request(
                "certificate: missing; a new url needs the certificate it presents: validate the host first and send the certificate you accepted",
            ))
        }
        None => None,
    };
    let changes = ServerChanges {
        state: update.state.clone(),
        location: update.location.clone(),
        token: update.token.clone(),
        certificate: certificate.as_ref().map(|info| (info.pem.clone(), info.der.clone())),
        saved_at: update
            .location
            .as_ref()
            .filter(|(_, group, _)| *group != saved.group_id)
            .map(|_| nbwss_protocol::unix_now()),
    };
    state.store.update(&update.host_name, &changes)?;
    if let Some(state) = &update.state {
        tracing::info!(host = %update.host_name, state = %state.as_str(), "WebSocket server state changed");
    }
    if let Some(info) = &certificate {
        if info.der != saved.certificate_der {
            tracing::info!(
                host = %update.host_name,
                pinned = %crate::tls::sha256_fingerprint(&saved.certificate_der),
                accepted = %info.sha256,
                "WebSocket server certificate renewed: the accepted certificate is pinned from now on"
            );
        }
    }
    if let Some((url, group, priority)) = &update.location {
        tracing::info!(host = %update.host_name, %url, %group, priority, "WebSocket server details changed");
    }
    if update.token.is_some() {
        tracing::info!(host = %update.host_name, token = %crate::crypto::token_fingerprint(update.token.as_ref().map(|token| token.expose()).unwrap_or_default()), "WebSocket server token replaced");
    }
    state.trigger.run_now();
    Ok(Json(json!({})))
}

async fn remove(
    State(state): State<Arc<AdminState>>,
    Path(host_name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.store.delete(&host_name)?;
    tracing::info!(host = %host_name, "WebSocket server deleted");
    state.trigger.run_now();
    Ok(Json(json!({})))
}

async fn list(State(state): State<Arc<AdminState>>) -> Result<Json<Vec<HostObject>>, ApiError> {
    let servers = state.store.list()?;
    Ok(Json(
        servers
            .into_iter()
            .map(|server| {
                let status = state.status.of(&server.host_name);
                let info = CertificateInfo::from_der(&server.certificate_der).ok();
                // A certificate met since the last connection, unless it has been pinned since.
                let presented = status
                    .presented_certificate
                    .filter(|presented| presented.der != server.certificate_der)
                    .and_then(|presented| {
                        let seen = CertificateInfo::from_der(&presented.der).ok()?;
                        Some(PresentedCertificate {
                            subject: seen.subject,
                            sha256_fingerprint: seen.sha256,
                            seen_at: rfc3339(&presented.seen_at),
                            accept_command: format!("nbwss servers update {}", server.host_name),
                        })
                    });
                HostObject {
                    token_fingerprint: Some(crate::crypto::token_fingerprint(server.token.expose())),
                    host_name: server.host_name,
                    url: server.url,
                    group_id: server.group_id,
                    priority: server.priority,
                    token: None,
                    certificate: Some(server.certificate_pem),
                    state: Some(server.state),
                    connection_state: Some(status.connection_state),
                    endpoint_type: Some(server.endpoint_type),
                    credential_id: Some(server.credential_id),
                    close_status: status.close_status,
                    subject: info.as_ref().map(|info| info.subject.clone()),
                    sha1_fingerprints: info.as_ref().map(|info| info.sha1.clone()),
                    sha256_fingerprint: info.map(|info| info.sha256),
                    last_close: status.last_close.map(|closed| LastClose {
                        reason: closed.cause,
                        description: closed.description,
                        at: rfc3339(&closed.at),
                    }),
                    attempts_since_last_success: Some(status.attempts_since_success),
                    presented_certificate: presented,
                }
            })
            .collect(),
    ))
}

fn rfc3339(time: &chrono::DateTime<chrono::Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn metrics(State(state): State<Arc<AdminState>>, _headers: HeaderMap) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.encode(),
    )
        .into_response()
}

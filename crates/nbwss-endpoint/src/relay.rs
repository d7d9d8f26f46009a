//! The transparent relay: an HTTP request to `…/{name}/netbackup/{path}` becomes a COMMAND REQUEST to that
//! primary server's session, and its COMMAND RESPONSE becomes the HTTP response (status, headers, body).

use std::time::Instant;

use axum::body::Body as HttpBody;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use nbwss_protocol::{Body, CommandRequest, CommandResponse, Headers, Message, Method, HEADER_ORIGIN};
use tokio::sync::OwnedSemaphorePermit;
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::api::API_KEY_HEADER;
use crate::error::ApiError;
use crate::session::{CallFailure, Session};
use crate::state::AppState;

/// Marks a relay error produced by the endpoint itself (the service marks its own with `service`).
pub const ORIGIN_ENDPOINT: &str = "endpoint";

/// Seconds a call refused for the body budget is asked to wait.
const RETRY_AFTER_SECONDS: u32 = 1;

/// Headers that describe one hop, not the call; never relayed in either direction.
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// `ANY /api/v1/primaries/{name}/netbackup/{*path}` (API key in the header, checked by the middleware).
pub(crate) async fn with_header(
    State(state): State<AppState>,
    Path((name, _path)): Path<(String, String)>,
    request: Request,
) -> Response {
    let uri = command_uri(request.uri(), 4);
    relay(state, name, uri, request).await
}

/// `ANY /relay/{key}/{name}/netbackup/{*path}`: the same relay under a capability base URL.
pub(crate) async fn with_capability(
    State(state): State<AppState>,
    Path((key, name, _path)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    if let Err(error) = crate::api::check_api_key(&state, key).await {
        return error.into_response();
    }
    let uri = command_uri(request.uri(), 3);
    relay(state, name, uri, request).await
}

/// The COMMAND `uri`: the raw request path after `skip` leading segments (so `/netbackup/...` exactly as the
/// client encoded it) plus the query string.
fn command_uri(uri: &Uri, skip: usize) -> Option<String> {
    let mut rest = uri.path();
    for _ in 0..skip {
        let after_slash = rest.strip_prefix('/')?;
        rest = &after_slash[after_slash.find('/')?..];
    }
    if !rest.starts_with("/netbackup/") {
        return None;
    }
    Some(match uri.query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_owned(),
    })
}

async fn relay(state: AppState, name: String, uri: Option<String>, request: Request) -> Response {
    let started = Instant::now();
    let response = match relay_call(&state, &name, uri, request).await {
        Ok(response) => response,
        Err(error) => {
            let mut response = error.into_response();
            response.headers_mut().insert(HEADER_ORIGIN, HeaderValue::from_static(ORIGIN_ENDPOINT));
            response
        }
    };
    state.metrics.relayed(&name, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

async fn relay_call(
    state: &AppState,
    name: &str,
    uri: Option<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let uri = uri.ok_or_else(|| ApiError::bad_request("the path must continue with /netbackup/..."))?;
    if state.cluster.is_none() && state.registry.get(name).is_none() {
        return Err(not_connected(state, name).await);
    }
    // The router admits only the methods a COMMAND carries (`api::relayed_methods`).
    let method = Method::parse(request.method().as_str())
        .ok_or_else(|| ApiError::method_not_allowed(request.method()))?;
    let headers = relayed_headers(request.headers());
    let limit = state.config.limits.max_message_bytes;
    // The body is read before a relay slot is taken, under its own deadline: a slow upload holds no slot.
    let body_timeout = state.config.request_body_timeout();
    let (body, _body_permit) =
        match tokio::time::timeout(body_timeout, read_body(state, request.into_body(), limit)).await {
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!(
                        "the request body did not arrive within {} ms (limits.request_body_timeout_ms)",
                        body_timeout.as_millis()
                    ),
                ))
            }
            Ok(read) => read?,
        };
    let parameters = if body.is_empty() {
        None
    } else {
        Some(String::from_utf8(body).map_err(|_| {
            ApiError::bad_request("the request body must be UTF-8 text (NBWSS carries it as a JSON string)")
        })?)
    };
    // D4: never send a message the service would close the connection for; fail this call alone. The
    // body's escaped size is counted first, so that a body of control characters is never encoded
    // into a string six times its size.
    let escaped = parameters.as_deref().map_or(0, json_escaped_len);
    if escaped > limit {
        return Err(too_large(format!(
            "the request body takes {escaped} bytes once JSON-escaped in the COMMAND, over the {limit}-byte \
             message limit (a newline takes 2 bytes, a control character 6)"
        )));
    }
    let message = Message::new(Body::CommandRequest(CommandRequest { uri, method, headers, parameters }));
    let text = state.codec.encode(&message);
    if text.len() > limit {
        return Err(too_large(format!(
            "the call encoded as a COMMAND is {} bytes, over the {limit}-byte message limit (JSON escaping \
             of the body counts: a newline takes 2 bytes, a control character 6)",
            text.len()
        )));
    }
    let id = message.id.clone();
    tracing::debug!(primary = %name, "relaying {}", message.summary());
    drop(message);
    // Looked up again: the primary server may have reconnected while the body arrived.
    let response = match (state.registry.get(name), &state.cluster) {
        (Some(session), _) => call_session(state, &session, name, &id, text).await?,
        (None, Some(cluster)) => crate::cluster::relay::forward(state, cluster, name, &id, text).await?,
        (None, None) => return Err(not_connected(state, name).await),
    };
    http_response(response).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "invalid_response",
            format!(
                "invalid COMMAND RESPONSE from '{name}': its status is not a final HTTP status (200-599)"
            ),
        )
    })
}

/// Sends the encoded COMMAND `text` (message id `id`) on `session` and waits for its answer, within the
/// primary server's in-flight bound and the relay timeout.
pub(crate) async fn call_session(
    state: &AppState,
    session: &Session,
    name: &str,
    id: &str,
    text: String,
) -> Result<CommandResponse, ApiError> {
    let Ok(_permit) = session.in_flight.clone().try_acquire_owned() else {
        return Err(ApiError::too_many_requests(format!(
            "too many calls in flight to primary server '{name}' (limit {})",
            state.config.limits.max_in_flight_per_primary
        )));
    };
    let disconnected = || {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "disconnected",
            format!("primary server '{name}' disconnected before answering"),
        )
    };
    let Some(reply) = session.expect_response(id) else {
        return Err(disconnected());
    };
    state.registry.count_command(name);
    let timeout = state.config.relay_timeout();
    let outcome = tokio::time::timeout(timeout, async {
        if session.outgoing.send(Frame::Text(text.into())).await.is_err() {
            return Err(CallFailure::Disconnected);
        }
        reply.await.unwrap_or(Err(CallFailure::Disconnected))
    })
    .await;
    match outcome {
        Err(_) => {
            session.forget(id);
            Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!("primary server '{name}' did not answer within {} ms", timeout.as_millis()),
            ))
        }
        Ok(Err(CallFailure::Disconnected)) => Err(disconnected()),
        Ok(Err(CallFailure::InvalidResponse(why))) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "invalid_response",
            format!("invalid COMMAND RESPONSE from '{name}': {why}"),
        )),
        Ok(Ok(response)) => Ok(response),
    }
}

/// 503 for a registered primary server that is not connected, 404 for a name no token has.
pub(crate) async fn not_connected(state: &AppState, name: &str) -> ApiError {
    let lookup = name.to_owned();
    match state.store.run(move |store| store.token(&lookup)).await {
        Ok(Some(_)) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_connected",
            format!("primary server '{name}' is not connected"),
        ),
        Ok(None) => ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_primary",
            format!("no primary server named '{name}'"),
        ),
        Err(error) => ApiError::internal(&error),
    }
}

/// Reads a request body of at most `limit` bytes, taking its size from the endpoint's body budget as it
/// arrives; the permit is held until the call ends.
async fn read_body(
    state: &AppState,
    body: axum::body::Body,
    limit: usize,
) -> Result<(Vec<u8>, Option<OwnedSemaphorePermit>), ApiError> {
    let mut stream = body.into_data_stream();
    let mut collected = Vec::new();
    let mut permit: Option<OwnedSemaphorePermit> = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ApiError::bad_request("the request body could not be read"))?;
        if chunk.len() > limit.saturating_sub(collected.len()) {
            return Err(too_large(format!("the request body is over {limit} bytes")));
        }
        let size = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
        let Ok(more) = state.body_budget.clone().try_acquire_many_owned(size) else {
            let mut busy = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!(
                    "the endpoint holds {} bytes of request bodies already (limits.max_buffered_request_bytes); retry shortly",
                    state.config.limits.max_buffered_request_bytes
                ),
            );
            busy.retry_after(RETRY_AFTER_SECONDS);
            return Err(busy);
        };
        match &mut permit {
            Some(permit) => permit.merge(more),
            None => permit = Some(more),
        }
        collected.extend_from_slice(&chunk);
    }
    Ok((collected, permit))
}

/// The length of `text` as a JSON string's contents, as serde_json writes it: `"`, `\\` and the
/// control characters with a short escape take 2 bytes, other control characters 6 (`\u001f`).
fn json_escaped_len(text: &str) -> usize {
    text.bytes()
        .map(|byte| match byte {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0C => 2,
            0x00..=0x1F => 6,
            _ => 1,
        })
        .sum()
}

fn too_large(message: String) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
}

fn relayed_headers(headers: &HeaderMap) -> Headers {
    let mut relayed = Headers::new();
    for (name, value) in headers {
        let name = name.as_str();
        if HOP_BY_HOP.contains(&name) || name == "host" || name.eq_ignore_ascii_case(API_KEY_HEADER) {
            continue;
        }
        if let Ok(value) = value.to_str() {
            relayed.append(name, value);
        }
    }
    relayed
}

/// The HTTP response for a COMMAND RESPONSE; `None` for an informational status (1xx), which is no
/// answer to a call (hyper would turn 101 into a connection upgrade and other 1xx into 500).
fn http_response(response: CommandResponse) -> Option<Response> {
    let status =
        StatusCode::from_u16(response.status_code).ok().filter(|status| !status.is_informational())?;
    let mut http = Response::new(HttpBody::from(response.body));
    *http.status_mut() = status;
    for (name, value) in response.headers.iter() {
        if HOP_BY_HOP.iter().any(|hop| name.eq_ignore_ascii_case(hop)) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value))
        {
            http.headers_mut().append(name, value);
        }
    }
    Some(http)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_length_is_what_the_codec_writes() {
        for text in ["", "plain", "a\"b\\c", "line\nfeed\r\t", "\u{0}\u{1f}\u{8}\u{c}", "é ∑ 😀", "\u{7f}"]
        {
            let encoded = serde_json::Value::String(text.to_owned()).to_string();
            assert_eq!(json_escaped_len(text), encoded.len() - 2, "{text:?} → {encoded}");
        }
    }

    #[test]
    fn command_uri_keeps_the_raw_path_and_query() {
        let uri: Uri =
            "/api/v1/primaries/p1/netbackup/admin/jobs?page%5Blimit%5D=10&filter=a%20b".parse().unwrap();
        assert_eq!(command_uri(&uri, 4).unwrap(), "/netbackup/admin/jobs?page%5Blimit%5D=10&filter=a%20b");
        let uri: Uri = "/relay/KEY/p1/netbackup/login".parse().unwrap();
        assert_eq!(command_uri(&uri, 3).unwrap(), "/netbackup/login");
        let uri: Uri = "/relay/KEY/p1/other/login".parse().unwrap();
        assert_eq!(command_uri(&uri, 3), None);
    }
}

//! The HTTP side: the router (`app(state)`), API-key checks, request logging with secrets redacted, the
//! primary server list, and the unauthenticated routes (dashboard, OpenAPI document, health, metrics). The
//! feed is in `feed.rs`, the dashboard's aggregates in `stats.rs`, webhooks in `webhooks/api.rs`.

use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, on, post, MethodFilter};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::state::AppState;
use crate::{connection, feed, relay, stats, webhooks};

/// The header that carries the app API key. `Authorization` is never used by the app API: on relay
/// routes it belongs to NetBackup and passes through untouched.
pub const API_KEY_HEADER: &str = "x-nbwss-api-key";

/// Query parameter accepted instead of the header on the SSE stream, for browsers' `EventSource`,
/// which cannot set headers. Redacted in logs.
pub const API_KEY_QUERY: &str = "api_key";

const DASHBOARD: &str = include_str!("dashboard.html");
const OPENAPI: &str = include_str!("openapi.json");

/// The endpoint's router.
pub(crate) fn app(state: AppState) -> Router {
    let keyed = Router::new()
        .route("/api/v1/primaries", get(primaries))
        .route("/api/v1/primaries/{name}/netbackup/{*path}", on(relayed_methods(), relay::with_header))
        .route("/api/v1/notifications", get(feed::list))
        .route("/api/v1/notifications/stream", get(feed::stream))
        .route("/api/v1/stats/activity", get(stats::activity))
        .route("/api/v1/stats/relay", get(stats::relay))
        .route("/api/v1/webhooks", get(webhooks::api::list).post(webhooks::api::create))
        .route("/api/v1/webhooks/{id}", get(webhooks::api::show).delete(webhooks::api::remove))
        .route("/api/v1/webhooks/{id}/test", post(webhooks::api::test))
        .route("/api/v1/webhooks/{id}/pause", post(webhooks::api::pause))
        .route("/api/v1/webhooks/{id}/resume", post(webhooks::api::resume))
        .route("/api/v1/webhooks/{id}/deliveries", get(webhooks::api::deliveries))
        .route_layer(middleware::from_fn_with_state(state.clone(), not_in_cluster_mode))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_api_key));
    Router::new()
        .merge(keyed)
        .route("/relay/{key}/{name}/netbackup/{*path}", on(relayed_methods(), relay::with_capability))
        .route(&state.config.websocket_path, get(connection::upgrade))
        .route("/", get(dashboard))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/provider/{id}", get(provider))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        // Before the API key is checked (it guards routes, not their fallbacks), with `Allow` added by axum.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.config.limits.max_message_bytes))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// The methods the relay carries (a COMMAND's `method`, D6); any other is answered 405 before the API key is
/// checked.
fn relayed_methods() -> MethodFilter {
    [
        MethodFilter::POST,
        MethodFilter::PUT,
        MethodFilter::PATCH,
        MethodFilter::DELETE,
        MethodFilter::HEAD,
        MethodFilter::OPTIONS,
    ]
    .into_iter()
    .fold(MethodFilter::GET, MethodFilter::or)
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::method_not_allowed(&method)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::no_route(&redact(&uri))
}

/// Webhooks keep their subscriptions and deliveries in one replica's SQLite store: in cluster mode their
/// routes answer 501 (README, "Cluster mode").
async fn not_in_cluster_mode(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.cluster.is_some() && request.uri().path().starts_with("/api/v1/webhooks") {
        return ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_in_cluster_mode",
            "webhooks are not available in cluster mode ([cluster] is set); read the feed or the stream instead",
        )
        .into_response();
    }
    next.run(request).await
}

/// The API key a request was authenticated with, as the store keeps it (its SHA-256): a stream checks it
/// again when keys change, and ends once it is revoked.
#[derive(Debug, Clone)]
pub(crate) struct AuthenticatedKey {
    pub key_sha256: String,
}

async fn require_api_key(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let from_header = request.headers().get(API_KEY_HEADER).and_then(|value| value.to_str().ok());
    let from_query = if request.uri().path() == "/api/v1/notifications/stream" {
        query_value(request.uri(), API_KEY_QUERY)
    } else {
        None
    };
    let Some(key) = from_header.map(str::to_owned).or(from_query) else {
        return ApiError::unauthorized().into_response();
    };
    match check_api_key(&state, key).await {
        Ok(authenticated) => {
            request.extensions_mut().insert(authenticated);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

/// Checks an API key against the store (never cached: a revoked key is refused on its next call).
pub(crate) async fn check_api_key(state: &AppState, key: String) -> Result<AuthenticatedKey, ApiError> {
    let key_sha256 = crate::store::sha256_hex(&key);
    let lookup = key_sha256.clone();
    match state.store.run(move |store| store.check_api_key_hash(&lookup)).await {
        Ok(Some(_)) => Ok(AuthenticatedKey { key_sha256 }),
        Ok(None) => Err(ApiError::unauthorized()),
        Err(error) => Err(ApiError::internal(&error)),
    }
}

fn query_value(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| percent_decode(value))
    })
}

/// A query value as a form encodes it: `+` is a space, `%XY` a byte (a malformed escape is kept as written).
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(&text.replace('+', " ")).decode_utf8_lossy().into_owned()
}

/// The request path and query with secrets replaced by `***`: the key segment of `/relay/{key}/...` and
/// the value of `api_key=`. Every log line about a request uses this, never the raw URI.
pub fn redact(uri: &Uri) -> String {
    let path = uri.path();
    let path = if let Some(rest) = path.strip_prefix("/relay/") {
        match rest.find('/') {
            Some(slash) => format!("/relay/***{}", &rest[slash..]),
            None => "/relay/***".to_owned(),
        }
    } else if path.starts_with("/provider/") {
        "/provider/***".to_owned()
    } else {
        path.to_owned()
    };
    match uri.query() {
        None => path,
        Some(query) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key == API_KEY_QUERY => format!("{key}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
    }
}

async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let target = redact(request.uri());
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::debug!(%method, target, status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64, "http request");
    response
}

/// `GET /api/v1/primaries`: every primary server known (by token) or connected.
async fn primaries(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let (tokens, counts) =
        state.store.run(|store| Ok((store.list_tokens()?, store.notification_counts()?))).await?;
    let counts: std::collections::HashMap<String, i64> = counts.into_iter().collect();
    let sessions = state.registry.all();
    let mut names: Vec<String> = tokens.iter().map(|token| token.name.clone()).collect();
    names.extend(sessions.iter().map(|session| session.name.clone()));
    names.sort();
    names.dedup();
    // Cluster mode: the replica holding each primary server's session, from the leases.
    let holders = match &state.cluster {
        Some(cluster) => Some(holders(cluster, &names).await?),
        None => None,
    };
    let list: Vec<Value> = names
        .into_iter()
        .map(|name| {
            let token = tokens.iter().find(|token| token.name == name);
            let session = sessions.iter().find(|session| session.name == name);
            let stats = state.registry.stats(&name);
            let held_by = holders.as_ref().and_then(|holders| holders.get(&name).cloned());
            let mut entry = json!({
                "name": name,
                "groupId": session.map(|s| s.group_id.clone()).or_else(|| token.map(|t| t.group_id.clone())),
                "priority": token.map(|t| t.priority),
                "registered": token.is_some(),
                "tokenFingerprint": token.map(|t| t.token_fingerprint.clone()),
                "connected": session.is_some(),
                "connectedSince": session.map(|s| s.connected_at.to_rfc3339()),
                "remoteAddress": session.map(|s| s.remote.to_string()).or(stats.last_remote.map(|a| a.to_string())),
                "lastDisconnectedAt": stats.last_disconnected_at.map(|t| t.to_rfc3339()),
                "commands": stats.commands,
                "notifications": counts.get(&name).copied().unwrap_or(0),
            });
            if holders.is_some() {
                entry["connected"] = Value::Bool(session.is_some() || held_by.is_some());
                entry["heldBy"] = held_by.map_or(Value::Null, Value::String);
            }
            entry
        })
        .collect();
    Ok(Json(json!({ "primaries": list })))
}

/// The holder of each of `names` that is held, read within a few seconds.
async fn holders(
    cluster: &crate::cluster::Cluster,
    names: &[String],
) -> Result<std::collections::HashMap<String, String>, ApiError> {
    let read = async {
        let mut holders = std::collections::HashMap::new();
        for name in names {
            if let Some(replica) = cluster.holder(name).await? {
                holders.insert(name.clone(), replica);
            }
        }
        anyhow::Ok(holders)
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), read).await {
        Ok(holders) => Ok(holders?),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "cluster_unavailable",
            "the cluster's NATS did not answer within 5 s",
        )),
    }
}

/// `GET /provider/{id}`: a one-time provider URL; serves its endpoint details file once, then 404.
async fn provider(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let details = {
        let mut providers = state.providers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        providers.remove(&id).filter(|(expiry, _)| *expiry > Instant::now())
    };
    match details {
        Some((_, details)) => Json(details).into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such provider URL (used, expired or never made)",
        )
        .into_response(),
    }
}

async fn dashboard() -> Html<&'static str> {
    Html(DASHBOARD)
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// `{"status": "ok"}`; in cluster mode also the replica's name and its NATS connection, and 503
/// `"degraded"` while NATS is unreachable (a load balancer then sends primary servers and apps elsewhere).
async fn healthz(State(state): State<AppState>) -> Response {
    let Some(cluster) = &state.cluster else {
        return Json(json!({ "status": "ok" })).into_response();
    };
    let connected = cluster.connected();
    let status = if connected { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if connected { "ok" } else { "degraded" },
        "replica": cluster.replica(),
        "nats": if connected { "connected" } else { "disconnected" },
    });
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let budget = state.config.limits.max_buffered_request_bytes;
    let held = budget.saturating_sub(state.body_budget.available_permits());
    state.metrics.buffered_request_bytes.set(i64::try_from(held).unwrap_or(i64::MAX));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let uri: Uri = "/relay/SECRET/p1/netbackup/admin/jobs?x=1".parse().unwrap();
        assert_eq!(redact(&uri), "/relay/***/p1/netbackup/admin/jobs?x=1");
        let uri: Uri = "/api/v1/notifications/stream?after=3&api_key=SECRET".parse().unwrap();
        assert_eq!(redact(&uri), "/api/v1/notifications/stream?after=3&api_key=***");
        let uri: Uri = "/provider/SECRET".parse().unwrap();
        assert_eq!(redact(&uri), "/provider/***");
        let uri: Uri = "/api/v1/notifications/stream?api_key=a%2Bb&after=1".parse().unwrap();
        assert_eq!(query_value(&uri, API_KEY_QUERY).unwrap(), "a+b");
        let uri: Uri = "/api/v1/notifications/stream?api_key=a+b%2%zz%41".parse().unwrap();
        assert_eq!(query_value(&uri, API_KEY_QUERY).unwrap(), "a b%2%zzA");
    }

    #[test]
    fn openapi_is_json_and_names_the_routes() {
        let document: Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(document["openapi"].as_str().unwrap().chars().next(), Some('3'));
        for path in [
            "/api/v1/primaries",
            "/api/v1/primaries/{name}/netbackup/{path}",
            "/relay/{apiKey}/{name}/netbackup/{path}",
            "/api/v1/notifications",
            "/api/v1/notifications/stream",
            "/api/v1/stats/activity",
            "/api/v1/stats/relay",
            "/api/v1/webhooks",
            "/api/v1/webhooks/{id}",
            "/api/v1/webhooks/{id}/test",
            "/api/v1/webhooks/{id}/pause",
            "/api/v1/webhooks/{id}/resume",
            "/api/v1/webhooks/{id}/deliveries",
            "/healthz",
            "/metrics",
        ] {
            assert!(document["paths"].get(path).is_some(), "{path}");
        }
        // Every reference resolves.
        let text = document.to_string();
        let references: Vec<&str> = text.split("\"$ref\":\"#/components/").skip(1).collect();
        assert!(references.len() > 20, "{}", references.len());
        for reference in references {
            let pointer = format!("/components/{}", &reference[..reference.find('"').unwrap()]);
            assert!(document.pointer(&pointer).is_some(), "{pointer}");
        }
    }
}

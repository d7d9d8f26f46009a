//! The app API of webhooks: `/api/v1/webhooks` (list, create), `/api/v1/webhooks/{id}` (show, remove), and
//! `.../test`, `.../pause`, `.../resume`, `.../deliveries`. Every change wakes the dispatcher at once.

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::store::{PauseReason, WebhookError};
use super::{NewWebhook, TestOutcome, WebhookInfo};
use crate::api::AuthenticatedKey;
use crate::error::{ApiError, Query};
use crate::state::AppState;

/// Largest page of deliveries.
const MAX_DELIVERIES: usize = 1000;

impl From<WebhookError> for ApiError {
    fn from(error: WebhookError) -> Self {
        match error {
            WebhookError::Invalid(message) => ApiError::bad_request(message),
            WebhookError::NotFound(id) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no webhook '{id}'"))
            }
            WebhookError::TooMany(_) => {
                ApiError::new(StatusCode::CONFLICT, "too_many_webhooks", error.to_string())
            }
            WebhookError::Store(error) => ApiError::internal(&error),
        }
    }
}

/// `GET /api/v1/webhooks`.
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let webhooks = state.store.run(|store| store.webhooks()).await?;
    Ok(Json(json!({ "webhooks": webhooks })))
}

/// `POST /api/v1/webhooks`: 201 with the subscription and its secret, shown only here.
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(key): Extension<AuthenticatedKey>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let new: NewWebhook = serde_json::from_slice(&body)
        .map_err(|error| ApiError::bad_request(format!("the body must be a webhook as JSON: {error}")))?;
    let config = state.config.webhooks.clone();
    let created = state
        .store
        .run(move |store| {
            let by = store.check_api_key_hash(&key.key_sha256)?.unwrap_or_else(|| "app".to_owned());
            Ok(store.create_webhook(new, &config, &format!("apikey:{by}")))
        })
        .await??;
    state.webhook_changes.notify_one();
    tracing::info!(webhook = %created.webhook.id, url = %super::origin_of(&created.webhook.url), "webhook created");
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `GET /api/v1/webhooks/{id}`.
pub(crate) async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<WebhookInfo>, ApiError> {
    Ok(Json(found(&state, id).await?))
}

/// `DELETE /api/v1/webhooks/{id}`: the subscription and its held deliveries; 204.
pub(crate) async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let lookup = id.clone();
    if !state.store.run(move |store| store.remove_webhook(&lookup)).await? {
        return Err(WebhookError::NotFound(id).into());
    }
    state.webhook_changes.notify_one();
    tracing::info!(webhook = %id, "webhook removed");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/webhooks/{id}/test`: one sample delivery now; 200 with what came of it.
pub(crate) async fn test(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<TestOutcome>, ApiError> {
    Ok(Json(super::send_test(&state.config.webhooks, &state.store, &id).await?))
}

/// `POST /api/v1/webhooks/{id}/pause`.
pub(crate) async fn pause(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<WebhookInfo>, ApiError> {
    let lookup = id.clone();
    state
        .store
        .run(move |store| Ok(store.pause_webhook(&lookup, PauseReason::Manual, "paused on request")))
        .await??;
    state.webhook_changes.notify_one();
    Ok(Json(found(&state, id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResumeParams {
    #[serde(default)]
    discard_failed: bool,
}

/// `POST /api/v1/webhooks/{id}/resume[?discardFailed=true]`.
pub(crate) async fn resume(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<ResumeParams>,
) -> Result<Json<WebhookInfo>, ApiError> {
    let lookup = id.clone();
    state.store.run(move |store| Ok(store.resume_webhook(&lookup, params.discard_failed))).await??;
    state.webhook_changes.notify_one();
    Ok(Json(found(&state, id).await?))
}

#[derive(Debug, Deserialize)]
pub(crate) struct DeliveriesParams {
    state: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/webhooks/{id}/deliveries[?state=pending|failed&limit=N]`: held deliveries in order.
pub(crate) async fn deliveries(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<DeliveriesParams>,
) -> Result<Json<Value>, ApiError> {
    let failed = match params.state.as_deref() {
        None => None,
        Some("pending") => Some(false),
        Some("failed") => Some(true),
        Some(other) => {
            return Err(ApiError::bad_request(format!("state: '{other}' is not pending or failed")))
        }
    };
    let limit = params.limit.unwrap_or(100);
    if limit > MAX_DELIVERIES {
        return Err(ApiError::bad_request(format!("limit: at most {MAX_DELIVERIES}")));
    }
    found(&state, id.clone()).await?;
    let deliveries = state.store.run(move |store| store.webhook_deliveries(&id, failed, limit)).await?;
    Ok(Json(json!({ "deliveries": deliveries })))
}

async fn found(state: &AppState, id: String) -> Result<WebhookInfo, ApiError> {
    let lookup = id.clone();
    state
        .store
        .run(move |store| store.webhook(&lookup))
        .await?
        .ok_or_else(|| WebhookError::NotFound(id).into())
}

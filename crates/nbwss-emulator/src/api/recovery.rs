//! VMware full-VM recovery and its pre-recovery check.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::{json, json_body, link, optional_str, User};
use crate::engine;
use crate::error::{ApiError, ApiResult};
use crate::model::Image;
use crate::state::Shared;

/// The image a recovery request points at: `recoveryPoint.backupId`, or the newest image of
/// `recoveryPoint.client`.
fn recovery_image(shared: &Shared, body: &Value) -> ApiResult<Image> {
    let data = body
        .get("data")
        .filter(|d| d.is_object())
        .ok_or_else(|| ApiError::bad_attribute("data", "required"))?;
    match data.get("type").and_then(Value::as_str) {
        None | Some("recoveryRequest" | "instantRecoveryRequest" | "preRecoveryCheckRequest") => {}
        Some(other) => {
            return Err(ApiError::bad_attribute("data.type", format!("{other:?} is not a recovery request")))
        }
    }
    let point = data
        .get("attributes")
        .and_then(|a| a.get("recoveryPoint"))
        .filter(|p| p.is_object())
        .ok_or_else(|| ApiError::bad_attribute("recoveryPoint", "required"))?;
    // An empty client names no client: no recovery point (404), as for an unknown one.
    let client = optional_str(point, "client")?
        .ok_or_else(|| ApiError::bad_attribute("recoveryPoint.client", "required"))?;
    let backup_id = optional_str(point, "backupId")?.filter(|id| !id.is_empty());
    let inner = shared.lock();
    let image = match backup_id {
        Some(id) => inner.images.get(id).filter(|image| image.client_name == client),
        None => {
            inner.images.values().filter(|image| image.client_name == client).max_by_key(|i| i.backup_time)
        }
    };
    image
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("No recovery point was found for the client {client}.")))
}

pub(crate) async fn recover(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let body = json_body(&body)?;
    let image = recovery_image(&shared, &body)?;
    let job_id = engine::start_restore(&shared, &image, "FULL_VM_RESTORE");
    let job_link = link(&headers, &format!("/admin/jobs/{job_id}"));
    // The documents put the job's relationship beside `data`, its links as plain strings.
    let body = json!({
        "data": {
            "type": "recoveryResponse",
            "id": job_id,
            "attributes": {"msg": format!("Recovery job {job_id} started for {}", image.backup_id)},
        },
        "relationships": {"recoveryJob": {
            "links": {"self": job_link, "related": job_link},
            "data": {"type": "job", "id": job_id},
        }},
    });
    let mut response = json(StatusCode::CREATED, body);
    if let Ok(value) = HeaderValue::from_str(&job_link) {
        response.headers_mut().insert(LOCATION, value);
    }
    Ok(response)
}

pub(crate) async fn pre_check(
    State(shared): State<Arc<Shared>>,
    _user: User,
    body: Bytes,
) -> ApiResult<Response> {
    let body = json_body(&body)?;
    let image = recovery_image(&shared, &body)?;
    let checks = [
        ("RECOVERY_POINT", format!("The recovery point {} is available.", image.backup_id)),
        ("VCENTER_CONNECTIVITY", "The vCenter server is reachable.".to_owned()),
        ("DATASTORE_SPACE", "The datastore has enough free space.".to_owned()),
        ("VM_EXISTS", "No virtual machine with the same name exists.".to_owned()),
    ];
    let data: Vec<Value> = checks
        .iter()
        .enumerate()
        .map(|(index, (name, description))| {
            json!({
                "type": "preRecoveryCheckResult",
                "id": (index + 1).to_string(),
                "attributes": {"name": name, "result": "PASSED", "description": description},
            })
        })
        .collect();
    Ok(json(StatusCode::OK, json!({"data": data})))
}

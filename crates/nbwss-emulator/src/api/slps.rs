//! `/config/slps`: storage lifecycle policies. Every change makes a new version (NetBackup keeps them,
//! and images stay on the version that made them); an SLP a policy stores to, or whose copies are still
//! being made, cannot be deleted (409).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::{created, data_attributes, empty, json, json_body, link, Listing, User};
use crate::error::{ApiError, ApiResult};
use crate::filter::{Field, Kind, Logic, Op, Sort, EQ};
use crate::query::Params;
use crate::slp::{normalise, Slp, SlpVersion};
use crate::state::{Inner, Shared};

/// The most SLPs the emulator keeps, and the most versions of one.
const MAX_SLPS: usize = 1000;
const MAX_VERSIONS: usize = 100;

const FIELDS: &[Field] = &[Field { name: "slpName", kind: Kind::Str, ops: &[Op::Contains] }];
const SORT_FIELDS: &[Field] = &[
    Field { name: "slpName", kind: Kind::Str, ops: EQ },
    Field { name: "dataClassification", kind: Kind::Str, ops: EQ },
    Field { name: "duplicationPriority", kind: Kind::Int, ops: EQ },
    Field { name: "active", kind: Kind::Bool, ops: EQ },
];
const LISTING: Listing = Listing {
    fields: FIELDS,
    sort_fields: SORT_FIELDS,
    logic: Logic::And,
    default_sort: &[Sort { field: "slpName", descending: false }],
    max_limit: 100,
};

fn resource(headers: &HeaderMap, slp: &Slp, version: &SlpVersion, params: &Params) -> Value {
    let versions: Vec<Value> =
        slp.versions.iter().map(|version| json!({"type": "slpVersion", "id": version.number})).collect();
    let mut resource = json!({
        "type": "slp",
        "id": slp.name,
        "links": {"self": {"href": link(headers, &format!("/config/slps/{}", slp.name))}},
        "attributes": version.render(&slp.name),
        "relationships": {"versions": {"data": versions}},
    });
    if params.get("meta").is_some_and(|meta| meta.split(',').any(|m| m.trim() == "accessControlId")) {
        resource["meta"] = json!({"accessControlId": format!("NBU-SLP-{}", slp.name)});
    }
    resource
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("No storage lifecycle policy is named {name:?}."))
}

/// The SLP API's own error shape for a refused create or update (400 to POST, PUT or PATCH):
/// `errorDetails` is an object from error code to text rather than a list. Other errors keep the common
/// shape, as the documents give them.
pub(crate) async fn error_shape(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let changes = matches!(request.method().as_str(), "POST" | "PUT" | "PATCH");
    let response = next.run(request).await;
    if !changes || response.status() != StatusCode::BAD_REQUEST {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return (parts.status, "").into_response();
    };
    let mut error: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if let Some(details) = error.get("errorDetails").and_then(Value::as_array) {
        let text: Vec<&str> = details.iter().filter_map(Value::as_str).collect();
        let code = error["errorCode"].to_string();
        error["errorDetails"] = json!({code: text.join("; ")});
    }
    let mut response = Response::from_parts(parts, axum::body::Body::from(error.to_string()));
    response.headers_mut().remove(axum::http::header::CONTENT_LENGTH);
    response
}

/// The server type of each storage unit, for checking the storage an SLP names.
fn storage_type(inner: &Inner) -> impl Fn(&str) -> Option<String> + '_ {
    |name| {
        let unit = inner.storage_units.get(name)?;
        let pool = inner.disk_pools.get(&unit.pool_id)?;
        inner.storage_servers.get(&pool.server_id).map(|server| server.stype.clone())
    }
}

/// `data.attributes` of a create or replace request, and the name it gives (`data.id` or `slpName`).
fn request(body: &Bytes) -> ApiResult<(Map<String, Value>, Option<String>)> {
    let body = json_body(body)?;
    let attributes = data_attributes(&body, Some("slp"))?.as_object().cloned().unwrap_or_default();
    let name = attributes
        .get("slpName")
        .or_else(|| body["data"].get("id"))
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
        .map(str::to_owned);
    Ok((attributes, name))
}

pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let params = Params::parse(query.as_deref())?;
    let inner = shared.lock();
    let rows: Vec<(&Slp, Value)> = inner
        .slps
        .values()
        .filter_map(|slp| slp.current().map(|version| (slp, Value::Object(version.render(&slp.name)))))
        .collect();
    let base = link(&headers, "/config/slps");
    let body = LISTING.list(&params, rows, &base, |slp, _| match slp.current() {
        Some(version) => resource(&headers, slp, version, &params),
        None => Value::Null,
    })?;
    Ok(json(StatusCode::OK, body))
}

pub(crate) async fn get(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let params = Params::parse(query.as_deref())?;
    let inner = shared.lock();
    let slp = inner.slps.get(&name).ok_or_else(|| not_found(&name))?;
    let version = slp.current().ok_or_else(|| not_found(&name))?;
    Ok(json(StatusCode::OK, json!({"data": resource(&headers, slp, version, &params)})))
}

pub(crate) async fn get_version(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    Path((name, number)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let params = Params::parse(query.as_deref())?;
    let inner = shared.lock();
    let slp = inner.slps.get(&name).ok_or_else(|| not_found(&name))?;
    let version =
        slp.versions.iter().find(|version| version.number.to_string() == number).ok_or_else(|| {
            ApiError::not_found(format!("The storage lifecycle policy {name} has no version {number:?}."))
        })?;
    Ok(json(StatusCode::OK, json!({"data": resource(&headers, slp, version, &params)})))
}

pub(crate) async fn create(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let (attributes, name) = request(&body)?;
    let name = name.ok_or_else(|| ApiError::bad_attribute("slpName", "required"))?;
    if name.len() > 256 {
        return Err(ApiError::bad_attribute("slpName", "at most 256 characters"));
    }
    let now = shared.now();
    let mut inner = shared.lock();
    if inner.slps.contains_key(&name) {
        return Err(ApiError::conflict(format!("The storage lifecycle policy {name} already exists.")));
    }
    if inner.slps.len() >= MAX_SLPS {
        return Err(ApiError::bad_request(format!(
            "The emulator keeps at most {MAX_SLPS} SLPs; delete one first."
        )));
    }
    let attributes = normalise(&attributes, storage_type(&inner), now)?;
    let mut slp = Slp { name: name.clone(), versions: Vec::new() };
    slp.push_version(attributes);
    let body = slp.current().map(|version| resource(&headers, &slp, version, &Params::default()));
    inner.slps.insert(name, slp);
    Ok(created(&headers, body.unwrap_or(Value::Null)))
}

/// Adds a version with `attributes` to the SLP `name` (creating it when `create` allows).
fn new_version(
    shared: &Shared,
    headers: &HeaderMap,
    name: &str,
    attributes: &Map<String, Value>,
    create: bool,
) -> ApiResult<Response> {
    let now = shared.now();
    let mut inner = shared.lock();
    if !inner.slps.contains_key(name) && !create {
        return Err(not_found(name));
    }
    if !inner.slps.contains_key(name) && inner.slps.len() >= MAX_SLPS {
        return Err(ApiError::bad_request(format!(
            "The emulator keeps at most {MAX_SLPS} SLPs; delete one first."
        )));
    }
    let attributes = normalise(attributes, storage_type(&inner), now)?;
    let slp = inner
        .slps
        .entry(name.to_owned())
        .or_insert_with(|| Slp { name: name.to_owned(), versions: Vec::new() });
    slp.push_version(attributes);
    if slp.versions.len() > MAX_VERSIONS {
        slp.versions.remove(0);
    }
    let slp = slp.clone();
    let version = slp.current().ok_or_else(|| not_found(name))?;
    Ok(json(StatusCode::OK, json!({"data": resource(headers, &slp, version, &Params::default())})))
}

/// `PUT`: replaces every attribute (a new version; creates the SLP when it does not exist, as the
/// documents list no 404).
pub(crate) async fn replace(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let (attributes, given) = request(&body)?;
    if given.as_deref().is_some_and(|given| given != name) {
        return Err(ApiError::bad_attribute("slpName", format!("must be {name:?}, the SLP's name")));
    }
    new_version(&shared, &headers, &name, &attributes, true)
}

/// `PATCH`: changes the attributes given; `operationList` items name the operation they change by
/// `operationIndex`.
pub(crate) async fn update(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let (changes, _) = request(&body)?;
    let current = {
        let inner = shared.lock();
        inner
            .slps
            .get(&name)
            .and_then(Slp::current)
            .map(|version| version.attributes.clone())
            .ok_or_else(|| not_found(&name))?
    };
    let mut attributes = current;
    for (key, value) in &changes {
        if key == "operationList" {
            let items =
                value.as_array().ok_or_else(|| ApiError::bad_attribute("operationList", "must be a list"))?;
            let mut list =
                attributes.get("operationList").and_then(Value::as_array).cloned().unwrap_or_default();
            for (position, item) in items.iter().enumerate() {
                let index = item
                    .get("operationIndex")
                    .and_then(Value::as_u64)
                    .and_then(|index| usize::try_from(index).ok())
                    .filter(|index| (1..=list.len()).contains(index))
                    .ok_or_else(|| {
                        ApiError::bad_attribute(
                            &format!("operationList[{position}].operationIndex"),
                            "must name an operation of the SLP",
                        )
                    })?;
                if let (Some(Value::Object(target)), Some(change)) =
                    (list.get_mut(index - 1), item.as_object())
                {
                    for (field, value) in change {
                        target.insert(field.clone(), value.clone());
                    }
                }
            }
            attributes.insert("operationList".into(), Value::Array(list));
        } else if key != "slpName" && key != "versionNumber" {
            attributes.insert(key.clone(), value.clone());
        }
    }
    new_version(&shared, &headers, &name, &attributes, false)
}

pub(crate) async fn remove(
    State(shared): State<Arc<Shared>>,
    _user: User,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let mut inner = shared.lock();
    if !inner.slps.contains_key(&name) {
        return Err(not_found(&name));
    }
    let policies: Vec<&str> = inner
        .policies
        .values()
        .filter(|policy| {
            policy.storage() == name
                || policy.schedules().iter().any(|s| s.copies.iter().any(|c| c.2 == name))
        })
        .map(|policy| policy.name())
        .collect();
    if !policies.is_empty() {
        return Err(ApiError::conflict(format!(
            "Cannot delete the storage lifecycle policy {name}: the policies {} store to it.",
            policies.join(", ")
        )));
    }
    let pending = inner
        .images
        .values()
        .filter(|image| image.slp.as_ref().is_some_and(|slp| slp.name == name && !slp.complete))
        .count();
    if pending > 0 {
        return Err(ApiError::conflict(format!(
            "Cannot delete the storage lifecycle policy {name}: it is still making copies of {pending} images."
        )));
    }
    inner.slps.remove(&name);
    Ok(empty(StatusCode::NO_CONTENT))
}

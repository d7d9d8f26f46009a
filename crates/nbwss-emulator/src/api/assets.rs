//! The asset service for VMware: `/asset-service/workloads/vmware/assets` (list with filters, get) and
//! the asynchronous `/asset-service/queries` that create, update and delete VM groups
//! (`create-or-update-assets`, `delete-assets`): 201 with the query's id, then `IN_PROGRESS` until the
//! query has run (two emulated seconds), then each work item's outcome.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};

use super::{created, data_attributes, json, json_body, link, User};
use crate::asset::{uuid_of, Asset, AssetKind};
use crate::clock::format_time;
use crate::error::{ApiError, ApiResult};
use crate::filter::{Field, Filter, Kind, Logic, Sort, EQ, EQ_NE, TEXT, TEXT_ALL};
use crate::query::Params;
use crate::state::{Inner, Shared};

/// How long (emulated) a query runs before it reports its outcome.
const QUERY_DURATION: TimeDelta = TimeDelta::seconds(2);
/// A query's results are dropped after this long without being read (the documents' 30 minutes).
const QUERY_IDLE_LIMIT: Duration = Duration::from_secs(30 * 60);
/// The most queries kept, the most work items in one, and the most assets.
const MAX_QUERIES: usize = 1000;
const MAX_ITEMS: usize = 100;
const MAX_ASSETS: usize = 10_000;
/// The only workload the emulator models.
const WORKLOAD: &str = "vmware";

/// What VM assets and groups filter on (also the fields a group's `oDataQueryFilter` may use).
const FIELDS: &[Field] = &[
    Field { name: "commonAssetAttributes/displayName", kind: Kind::Str, ops: TEXT_ALL },
    Field { name: "commonAssetAttributes/workloadType", kind: Kind::Str, ops: EQ_NE },
    Field { name: "commonAssetAttributes/detection/detectionMethod", kind: Kind::Str, ops: EQ_NE },
    Field { name: "assetType", kind: Kind::Str, ops: EQ_NE },
    Field { name: "vCenter", kind: Kind::Str, ops: TEXT },
    Field { name: "host", kind: Kind::Str, ops: TEXT },
    Field { name: "datacenter", kind: Kind::Str, ops: TEXT },
    Field { name: "cluster", kind: Kind::Str, ops: TEXT },
    Field { name: "hostName", kind: Kind::Str, ops: TEXT },
    Field { name: "ipAddress", kind: Kind::Str, ops: TEXT },
    Field { name: "guestOs", kind: Kind::Str, ops: TEXT },
    Field { name: "powerState", kind: Kind::Str, ops: EQ_NE },
    Field { name: "instanceUuid", kind: Kind::Str, ops: EQ },
    Field { name: "biosUuid", kind: Kind::Str, ops: EQ },
    Field { name: "filterConstraint", kind: Kind::Str, ops: TEXT },
    Field { name: "isTemplate", kind: Kind::Bool, ops: EQ },
];
const SORT_FIELDS: &[Field] = &[
    Field { name: "commonAssetAttributes.displayName", kind: Kind::Str, ops: EQ },
    Field { name: "commonAssetAttributes/displayName", kind: Kind::Str, ops: EQ },
    Field { name: "assetType", kind: Kind::Str, ops: EQ },
    Field { name: "vCenter", kind: Kind::Str, ops: EQ },
    Field { name: "host", kind: Kind::Str, ops: EQ },
    Field { name: "guestOs", kind: Kind::Str, ops: EQ },
    Field { name: "powerState", kind: Kind::Str, ops: EQ },
];
const BY_NAME: &[Sort] = &[Sort { field: "commonAssetAttributes.displayName", descending: false }];

/// A query a client posted, and what it did.
#[derive(Debug, Clone)]
pub(crate) struct AssetQuery {
    pub(crate) id: String,
    name: String,
    workloads: Vec<String>,
    created: DateTime<Utc>,
    items: Vec<Value>,
    last_used: Instant,
}

fn no_workload(workload: &str) -> ApiError {
    ApiError::not_found(format!("The workload {workload:?} is not known: the emulator models {WORKLOAD}."))
}

fn asset_path(id: &str) -> String {
    format!("/asset-service/workloads/{WORKLOAD}/assets/{id}")
}

fn resource(headers: &HeaderMap, inner: &Inner, asset: &Asset, params: &Params) -> Value {
    let mut attributes = asset.attributes(inner.policies.values());
    if let Some(fields) = params.get("fields[asset]") {
        let wanted: Vec<&str> = fields.split(',').map(str::trim).collect();
        if let Some(object) = attributes.as_object_mut() {
            object.retain(|key, _| wanted.contains(&key.as_str()));
        }
    }
    let mut resource = json!({
        "type": "asset",
        "id": asset.id,
        "links": {"self": {"href": link(headers, &asset_path(&asset.id))}},
        "attributes": attributes,
    });
    if params.get("meta").is_some_and(|meta| meta.split(',').any(|m| m.trim() == "accessControlId")) {
        resource["meta"] = json!({"accessControlId": format!("|ASSETS|VMWARE|{}|", asset.id)});
    }
    resource
}

pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    Path(workload): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    if workload != WORKLOAD {
        return Err(no_workload(&workload));
    }
    let params = Params::parse(query.as_deref())?;
    let filter =
        params.get("filter").map(|text| Filter::parse_with(text, FIELDS, Logic::AndOrNot)).transpose()?;
    let sort = Sort::parse_list(params.get("sort"), SORT_FIELDS, BY_NAME)?;
    let unpaged = params.flag("page[disable]")?.unwrap_or(false);
    let limit = if unpaged { MAX_ASSETS as u64 } else { params.integer("page[limit]", 10, 100)? };
    if limit == 0 {
        return Err(ApiError::bad_attribute("page[limit]", "must be at least 1"));
    }
    let offset =
        usize::try_from(params.integer("page[offset]", 0, u64::from(u32::MAX))?).unwrap_or(usize::MAX);
    let limit = usize::try_from(limit).unwrap_or(10);
    let inner = shared.lock();
    let mut rows: Vec<(&Asset, Value)> =
        inner.assets.values().map(|asset| (asset, asset.attributes(inner.policies.values()))).collect();
    if let Some(filter) = &filter {
        rows.retain(|(_, attributes)| filter.matches(attributes));
    }
    rows.sort_by(|(_, a), (_, b)| Sort::compare_all(&sort, a, b));
    let has_next = offset.saturating_add(limit) < rows.len();
    let data: Vec<Value> = rows
        .iter()
        .skip(offset)
        .take(limit)
        .map(|(asset, _)| resource(&headers, &inner, asset, &params))
        .collect();
    // Look-ahead pagination, as the asset service pages: no total count, `hasNext` instead.
    let base = link(&headers, &format!("/asset-service/workloads/{WORKLOAD}/assets"));
    let href = |offset: usize| json!({"href": format!("{base}?page[offset]={offset}&page[limit]={limit}")});
    let mut pagination = json!({"offset": offset, "limit": limit, "first": 0, "hasNext": has_next});
    let mut links = json!({"self": href(offset), "first": href(0)});
    if has_next {
        pagination["next"] = json!(offset + limit);
        links["next"] = href(offset + limit);
    }
    if offset > 0 {
        pagination["prev"] = json!(offset.saturating_sub(limit));
        links["prev"] = href(offset.saturating_sub(limit));
    }
    Ok(json(StatusCode::OK, json!({"data": data, "links": links, "meta": {"pagination": pagination}})))
}

pub(crate) async fn get(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    Path((workload, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    if workload != WORKLOAD {
        return Err(no_workload(&workload));
    }
    let params = Params::parse(query.as_deref())?;
    let inner = shared.lock();
    let asset =
        inner.assets.get(&id).ok_or_else(|| ApiError::not_found(format!("No asset has the id {id:?}.")))?;
    Ok(json(StatusCode::OK, json!({"data": resource(&headers, &inner, asset, &params)})))
}

/// The outcome of one work item.
fn item(correlation: &Value, status: &str, message: &str, asset: Option<&str>) -> Value {
    let mut item = json!({
        "correlationId": correlation,
        "statusDetails": {"status": status, "message": message},
    });
    if let Some(id) = asset {
        item["id"] = json!(id);
        item["links"] = json!({"self": {"href": asset_path(id)}});
    }
    item
}

/// Runs one `create-or-update-assets` work item.
fn create_or_update(inner: &mut Inner, object: &Value) -> Value {
    let correlation = object.get("correlationId").cloned().unwrap_or(Value::Null);
    if object.get("type").and_then(Value::as_str) != Some("vmwareGroupAsset") {
        return item(&correlation, "FAILED", "Only VM groups (type vmwareGroupAsset) can be created.", None);
    }
    let group = &object["assetGroup"];
    let name = group["commonAssetAttributes"]["displayName"].as_str().unwrap_or_default().trim();
    if name.is_empty() {
        return item(
            &correlation,
            "FAILED",
            "assetGroup.commonAssetAttributes.displayName is required.",
            None,
        );
    }
    let vcenter = group["filterConstraint"].as_str().unwrap_or_default();
    if !inner.vm_servers.contains_key(vcenter) {
        return item(&correlation, "FAILED", &format!("The VM server {vcenter:?} is not known."), None);
    }
    let filter = group["oDataQueryFilter"].as_str().unwrap_or("true").trim();
    let filter = if filter.is_empty() { "true" } else { filter };
    if filter != "true" {
        if let Err(error) = Filter::parse_with(filter, FIELDS, Logic::AndOrNot) {
            return item(&correlation, "FAILED", &error.message, None);
        }
    }
    let description = group["description"].as_str().unwrap_or_default().to_owned();
    let existing = inner
        .assets
        .values()
        .find(|asset| asset.is_group() && asset.display_name == name)
        .map(|a| a.id.clone());
    if existing.is_none() && inner.assets.len() >= MAX_ASSETS {
        return item(
            &correlation,
            "FAILED",
            &format!("The emulator keeps at most {MAX_ASSETS} assets."),
            None,
        );
    }
    let id = existing.clone().unwrap_or_else(|| uuid_of(&format!("vmwareGroup:{name}")));
    let asset = Asset {
        id: id.clone(),
        vcenter: vcenter.to_owned(),
        display_name: name.to_owned(),
        kind: AssetKind::Group { filter: filter.to_owned(), description },
    };
    inner.assets.insert(id.clone(), asset);
    item(&correlation, "SUCCESS", if existing.is_some() { "UPDATED" } else { "CREATED" }, Some(&id))
}

/// Runs one `delete-assets` work item (VM groups only: VMs belong to their vCenter).
fn delete(inner: &mut Inner, object: &Value) -> Value {
    let correlation = object.get("correlationId").cloned().unwrap_or(Value::Null);
    let id = object["id"].as_str().unwrap_or_default();
    match inner.assets.get(id) {
        Some(asset) if asset.is_group() => {
            inner.assets.remove(id);
            item(&correlation, "SUCCESS", "DELETED", Some(id))
        }
        Some(_) => item(
            &correlation,
            "FAILED",
            "Only VM groups can be deleted: a VM belongs to its vCenter.",
            Some(id),
        ),
        None => item(&correlation, "FAILED", &format!("No asset has the id {id:?}."), None),
    }
}

pub(crate) async fn create_query(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let body = json_body(&body)?;
    let attributes = data_attributes(&body, Some("query"))?;
    let name = attributes.get("queryName").and_then(Value::as_str).unwrap_or_default().to_owned();
    if !matches!(name.as_str(), "create-or-update-assets" | "delete-assets") {
        return Err(ApiError::bad_attribute(
            "queryName",
            format!("{name:?} is not a query the emulator runs: create-or-update-assets or delete-assets"),
        ));
    }
    let workloads: Vec<String> = attributes
        .get("workloads")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    if workloads != [WORKLOAD] {
        return Err(ApiError::bad_attribute("workloads", format!("must be [\"{WORKLOAD}\"]")));
    }
    let objects = attributes["parameters"]["objectList"]
        .as_array()
        .filter(|list| !list.is_empty() && list.len() <= MAX_ITEMS)
        .ok_or_else(|| {
            ApiError::bad_attribute("parameters.objectList", format!("required: 1 to {MAX_ITEMS} objects"))
        })?
        .clone();
    let now = shared.now();
    let mut inner = shared.lock();
    inner.asset_queries.retain(|_, query| query.last_used.elapsed() < QUERY_IDLE_LIMIT);
    if inner.asset_queries.len() >= MAX_QUERIES {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            9015,
            format!("The server is busy: {MAX_QUERIES} query results are kept; they expire after 30 minutes unread."),
        ));
    }
    let items: Vec<Value> = objects
        .iter()
        .map(|object| {
            if name == "delete-assets" {
                delete(&mut inner, object)
            } else {
                create_or_update(&mut inner, object)
            }
        })
        .collect();
    let id = uuid::Uuid::new_v4().to_string();
    let query =
        AssetQuery { id: id.clone(), name, workloads, created: now, items, last_used: Instant::now() };
    inner.asset_queries.insert(id.clone(), query);
    let resource = json!({
        "type": "queryResponse",
        "id": id,
        "links": {"self": {"href": link(&headers, &format!("/asset-service/queries/{id}"))}},
    });
    Ok(created(&headers, resource))
}

pub(crate) async fn get_query(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let now = shared.now();
    let mut inner = shared.lock();
    inner.asset_queries.retain(|_, query| query.last_used.elapsed() < QUERY_IDLE_LIMIT);
    let query = inner
        .asset_queries
        .get_mut(&id)
        .ok_or_else(|| ApiError::not_found(format!("No query has the id {id:?}.")))?;
    query.last_used = Instant::now();
    let done = now >= query.created + QUERY_DURATION;
    let items: Vec<Value> = if done {
        query.items.clone()
    } else {
        query
            .items
            .iter()
            .map(|item| json!({"correlationId": item["correlationId"], "statusDetails": {"status": "IN_PROGRESS"}}))
            .collect()
    };
    let status = match (done, query.items.iter().all(|item| item["statusDetails"]["status"] == "SUCCESS")) {
        (false, _) => "IN_PROGRESS",
        (true, true) => "SUCCESS",
        (true, false) => "FAILED",
    };
    let href = link(&headers, &format!("/asset-service/queries/{id}"));
    let body = json!({
        "links": {"self": {"href": href}},
        "data": [{
            "type": "query",
            "id": query.id,
            "attributes": {
                "queryName": query.name,
                "workloads": query.workloads,
                "status": status,
                "createdDateTime": format_time(query.created),
                "workItemResponses": items,
            },
        }],
        "meta": {"pagination": {"offset": 0, "limit": 10, "first": 0, "hasNext": false}},
    });
    Ok(json(StatusCode::OK, body))
}

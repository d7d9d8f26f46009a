//! `/storage/storage-servers`, `/storage/disk-pools` and `/storage/storage-units`: list, get, create,
//! update (PATCH) and delete, with the relations NetBackup enforces: a disk pool names an existing storage
//! server, a storage unit an existing disk pool; a server with pools, a pool with units or image copies, and
//! a unit an SLP writes to cannot be deleted (409).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::{created, data_attributes, empty, json, json_body, link, required_str, Listing, User};
use crate::error::{ApiError, ApiResult};
use crate::filter::{Field, Kind, Logic, Op, Sort, EQ, EQ_NE, ORDERED, TEXT_ALL};
use crate::query::Params;
use crate::shape::{take_object, Shape};
use crate::state::{Inner, Shared, DR_MEDIA_SERVER, MEDIA_SERVER, PRIMARY_SERVER};
use crate::storage::{used_bytes, DiskPool, StorageServer, StorageUnit};

/// The most storage servers, disk pools or storage units the emulator keeps (each).
const MAX_RECORDS: usize = 1000;
/// The hosts that may serve storage.
const MEDIA_SERVERS: &[&str] = &[MEDIA_SERVER, DR_MEDIA_SERVER, PRIMARY_SERVER];

const EQ_CONTAINS: &[Op] = &[Op::Eq, Op::Contains];

const SERVER_FIELDS: &[Field] = &[
    Field { name: "name", kind: Kind::Str, ops: TEXT_ALL },
    Field { name: "sType", kind: Kind::Str, ops: TEXT_ALL },
    Field { name: "storageCategory", kind: Kind::Str, ops: EQ_CONTAINS },
    Field { name: "isWormSupported", kind: Kind::Bool, ops: EQ },
    Field { name: "isUshareSupported", kind: Kind::Bool, ops: EQ },
];
const SERVER_SORT: &[Field] = &[
    Field { name: "name", kind: Kind::Str, ops: EQ },
    Field { name: "sType", kind: Kind::Str, ops: EQ },
    Field { name: "storageCategory", kind: Kind::Str, ops: EQ },
    Field { name: "storageServerState", kind: Kind::Str, ops: EQ },
    Field { name: "encryptionEnabled", kind: Kind::Bool, ops: EQ },
    Field { name: "isSnapshotSupported", kind: Kind::Bool, ops: EQ },
    Field { name: "isAcceleratorSupported", kind: Kind::Bool, ops: EQ },
    Field { name: "isAIRSupported", kind: Kind::Bool, ops: EQ },
    Field { name: "isWormSupported", kind: Kind::Bool, ops: EQ },
];
const POOL_FIELDS: &[Field] = &[
    Field { name: "name", kind: Kind::Str, ops: TEXT_ALL },
    Field { name: "sType", kind: Kind::Str, ops: TEXT_ALL },
    Field { name: "storageCategory", kind: Kind::Str, ops: EQ_CONTAINS },
    Field { name: "wormCapable", kind: Kind::Bool, ops: EQ },
];
const POOL_SORT: &[Field] = &[
    Field { name: "name", kind: Kind::Str, ops: EQ },
    Field { name: "sType", kind: Kind::Str, ops: EQ },
    Field { name: "storageCategory", kind: Kind::Str, ops: EQ },
    Field { name: "highWaterMark", kind: Kind::Int, ops: EQ },
    Field { name: "lowWaterMark", kind: Kind::Int, ops: EQ },
    Field { name: "diskPoolState", kind: Kind::Str, ops: EQ },
    Field { name: "rawSizeBytes", kind: Kind::Int, ops: EQ },
    Field { name: "usableSizeBytes", kind: Kind::Int, ops: EQ },
    Field { name: "availableSpaceBytes", kind: Kind::Int, ops: EQ },
    Field { name: "usedCapacityBytes", kind: Kind::Int, ops: EQ },
    Field { name: "wormCapable", kind: Kind::Bool, ops: EQ },
];
const UNIT_FIELDS: &[Field] = &[
    Field { name: "name", kind: Kind::Str, ops: TEXT_ALL },
    Field { name: "storageServerType", kind: Kind::Str, ops: TEXT_ALL },
    Field { name: "storageCategory", kind: Kind::Str, ops: EQ_CONTAINS },
    Field { name: "storageType", kind: Kind::Str, ops: EQ_CONTAINS },
    Field { name: "storageSubType", kind: Kind::Str, ops: EQ_CONTAINS },
    Field { name: "useWorm", kind: Kind::Bool, ops: EQ },
    Field { name: "wormCapable", kind: Kind::Bool, ops: EQ },
    Field { name: "accelerator", kind: Kind::Bool, ops: EQ },
    Field { name: "replicationCapable", kind: Kind::Bool, ops: EQ },
    Field { name: "replicationSourceCapable", kind: Kind::Bool, ops: EQ },
    Field { name: "replicationTargetCapable", kind: Kind::Bool, ops: EQ },
    Field { name: "instantAccessEnabled", kind: Kind::Bool, ops: EQ },
    Field { name: "snapshot", kind: Kind::Bool, ops: EQ },
    Field { name: "mirror", kind: Kind::Bool, ops: EQ },
    Field { name: "independent", kind: Kind::Bool, ops: EQ },
    Field { name: "primary", kind: Kind::Bool, ops: EQ },
    Field { name: "scaleOutEnabled", kind: Kind::Bool, ops: EQ },
    Field { name: "isCloudSTU", kind: Kind::Bool, ops: EQ },
    Field { name: "maxConcurrentJobs", kind: Kind::Int, ops: ORDERED },
    Field { name: "maxFragmentSizeMegabytes", kind: Kind::Int, ops: ORDERED },
    Field { name: "onDemandOnly", kind: Kind::Bool, ops: EQ_NE },
];
const UNIT_SORT: &[Field] = &[
    Field { name: "name", kind: Kind::Str, ops: EQ },
    Field { name: "storageType", kind: Kind::Str, ops: EQ },
    Field { name: "storageServerType", kind: Kind::Str, ops: EQ },
    Field { name: "storageCategory", kind: Kind::Str, ops: EQ },
    Field { name: "storageSubType", kind: Kind::Str, ops: EQ },
    Field { name: "useAnyAvailableMediaServer", kind: Kind::Bool, ops: EQ },
    Field { name: "accelerator", kind: Kind::Bool, ops: EQ },
    Field { name: "instantAccessEnabled", kind: Kind::Bool, ops: EQ },
    Field { name: "freeCapacityBytes", kind: Kind::Int, ops: EQ },
    Field { name: "totalCapacityBytes", kind: Kind::Int, ops: EQ },
    Field { name: "usedCapacityBytes", kind: Kind::Int, ops: EQ },
    Field { name: "maxFragmentSizeMegabytes", kind: Kind::Int, ops: EQ },
    Field { name: "maxConcurrentJobs", kind: Kind::Int, ops: EQ },
    Field { name: "onDemandOnly", kind: Kind::Bool, ops: EQ },
    Field { name: "useWorm", kind: Kind::Bool, ops: EQ },
    Field { name: "wormCapable", kind: Kind::Bool, ops: EQ },
];

const BY_NAME: &[Sort] = &[Sort { field: "name", descending: false }];

const SERVER_LISTING: Listing = Listing {
    fields: SERVER_FIELDS,
    sort_fields: SERVER_SORT,
    logic: Logic::AndOrNot,
    default_sort: BY_NAME,
    max_limit: 100,
};
const POOL_LISTING: Listing = Listing {
    fields: POOL_FIELDS,
    sort_fields: POOL_SORT,
    logic: Logic::AndOrNot,
    default_sort: BY_NAME,
    max_limit: 500,
};
const UNIT_LISTING: Listing = Listing {
    fields: UNIT_FIELDS,
    sort_fields: UNIT_SORT,
    logic: Logic::AndOrNot,
    default_sort: BY_NAME,
    max_limit: 500,
};

// What a client may set, by the documents' types; anything else is ignored.
const CREDENTIALS: &[(&str, Shape)] = &[("userName", Shape::Str), ("password", Shape::Str)];
const MSDP: &[(&str, Shape)] = &[
    ("storagePath", Shape::Str),
    ("deduplicationDBPath", Shape::Str),
    ("specificNetworkInterface", Shape::Str),
    ("credentials", Shape::Object(CREDENTIALS)),
    ("imageSharingInCloud", Shape::Bool),
];
const REGION: &[(&str, Shape)] =
    &[("serviceHost", Shape::Str), ("regionName", Shape::Str), ("regionId", Shape::Str)];
const CLOUD: &[(&str, Shape)] = &[
    ("providerId", Shape::Str),
    ("compressionEnabled", Shape::Bool),
    ("proxyServerEnabled", Shape::Bool),
    ("serviceEndpoint", Shape::Str),
    ("urlAccessStyle", Shape::Enum(&["PATH_STYLE", "VIRTUAL_STYLE"])),
    ("serverSideEncryptionEnabled", Shape::Bool),
    ("storageClass", Shape::Str),
    ("readBufferSizeBytes", Shape::Int(i64::MIN, i64::MAX)),
    ("writeBufferSizeBytes", Shape::Int(i64::MIN, i64::MAX)),
    ("objectSizeMegabytes", Shape::Int(i64::MIN, i64::MAX)),
    ("s3RegionDetails", Shape::List(&Shape::Object(REGION))),
];
const ADVANCED_DISK: &[(&str, Shape)] = &[
    ("isPreferredForRestore", Shape::Bool),
    ("isRequiredForRestore", Shape::Bool),
    ("isRequiredForDuplication", Shape::Bool),
];
const OPEN_STORAGE: &[(&str, Shape)] = &[("storageServerType", Shape::Str)];
const SERVER_SETTABLE: &[(&str, Shape)] = &[
    ("encryptionEnabled", Shape::Bool),
    ("kmsEnabled", Shape::Bool),
    ("kmsKeyGroupName", Shape::Str),
    ("msdpAttributes", Shape::Object(MSDP)),
    ("cloudAttributes", Shape::Object(CLOUD)),
    ("advancedDiskAttributes", Shape::Object(ADVANCED_DISK)),
    ("openStorageAttributes", Shape::Object(OPEN_STORAGE)),
];
const IO_STREAMS: &[(&str, Shape)] =
    &[("limitIoStreams", Shape::Bool), ("streamsPerVolume", Shape::Int(2, 65_535))];
const POOL_SETTABLE: &[(&str, Shape)] = &[
    ("highWaterMark", Shape::Int(1, 100)),
    ("lowWaterMark", Shape::Int(0, 99)),
    ("maximumIoStreams", Shape::Object(IO_STREAMS)),
    ("diskPoolState", Shape::Enum(&["UP", "DOWN"])),
    ("comment", Shape::Str),
    ("readOnly", Shape::Bool),
];
const VOLUME: &[(&str, Shape)] = &[("name", Shape::Str)];
const MEDIA: &[(&str, Shape)] = &[("name", Shape::Str)];
const UNIT_SETTABLE: &[(&str, Shape)] = &[
    ("useAnyAvailableMediaServer", Shape::Bool),
    ("mediaServerDetails", Shape::List(&Shape::Object(MEDIA))),
    ("maxFragmentSizeMegabytes", Shape::Int(20, 1_048_576)),
    ("maxConcurrentJobs", Shape::Int(0, 4096)),
    ("onDemandOnly", Shape::Bool),
    ("useWorm", Shape::Bool),
];

/// The categories of storage server modelled (CloudCatalyst, retired by NetBackup, is not).
const CATEGORIES: &[&str] = &["MSDP", "ADVANCED_DISK", "CLOUD", "OPEN_STORAGE"];

fn server_resource(headers: &HeaderMap, server: &StorageServer) -> Value {
    let href = link(headers, &format!("/storage/storage-servers/{}", server.id));
    json!({
        "type": "storageServer",
        "id": server.id,
        "links": {"self": {"href": href}},
        "attributes": server.render(),
        "relationships": {"universalShares": {
            "links": {"related": {"href": format!("{href}/universal-shares")}},
            "data": [],
        }},
    })
}

fn pool_resource(headers: &HeaderMap, inner: &Inner, pool: &DiskPool) -> Value {
    let units: Vec<&str> = inner
        .storage_units
        .values()
        .filter(|unit| unit.pool_id == pool.id)
        .map(|unit| unit.name.as_str())
        .collect();
    let used = used_bytes(inner.images.values(), &units);
    let server = inner.storage_servers.get(&pool.server_id);
    json!({
        "type": "diskPool",
        "id": pool.id,
        "links": {"self": {"href": link(headers, &format!("/storage/disk-pools/{}", pool.id))}},
        "attributes": pool.render(server, used),
        "relationships": {"storageServers": {
            "links": {"related": {"href": link(headers, &format!("/storage/storage-servers/{}", pool.server_id))}},
            "data": [{"type": "storageServer", "id": pool.server_id}],
        }},
    })
}

fn unit_resource(headers: &HeaderMap, inner: &Inner, unit: &StorageUnit) -> Value {
    let pool = inner.disk_pools.get(&unit.pool_id);
    let server = pool.and_then(|pool| inner.storage_servers.get(&pool.server_id));
    let used = used_bytes(inner.images.values(), &[unit.name.as_str()]);
    json!({
        "type": "storageUnit",
        "id": unit.name,
        "links": {"self": {"href": link(headers, &format!("/storage/storage-units/{}", unit.name))}},
        "attributes": unit.render(pool, server, used),
        "relationships": {"diskPool": {
            "links": {"related": {"href": link(headers, &format!("/storage/disk-pools/{}", unit.pool_id))}},
            "data": {"type": "diskPool", "id": unit.pool_id},
        }},
    })
}

/// The attributes of a create or update request of `kind`, and its relationships object.
fn request(body: &Bytes, kind: &str) -> ApiResult<(Map<String, Value>, Value)> {
    let body = json_body(body)?;
    let attributes = data_attributes(&body, Some(kind))?.as_object().cloned().unwrap_or_default();
    let relationships = body["data"].get("relationships").cloned().unwrap_or(Value::Null);
    Ok((attributes, relationships))
}

/// The id of `relationships.<name>.data` (an object, or the first of a list).
fn related_id(relationships: &Value, name: &str) -> ApiResult<String> {
    let data = &relationships[name]["data"];
    let first = if data.is_array() { &data[0] } else { data };
    first["id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| ApiError::bad_attribute(&format!("relationships.{name}.data.id"), "required"))
}

/// The low water mark must stay below the high one.
fn check_water_marks(attributes: &Map<String, Value>) -> ApiResult<()> {
    let mark = |key: &str| attributes.get(key).and_then(Value::as_i64);
    match (mark("lowWaterMark"), mark("highWaterMark")) {
        (Some(low), Some(high)) if low >= high => Err(ApiError::bad_attribute(
            "lowWaterMark",
            format!("{low} must be less than the high water mark {high}"),
        )),
        _ => Ok(()),
    }
}

/// The media servers of a storage unit: each must be a media server of this primary; its operating
/// system and version are filled in as the documents require.
fn media_servers(attributes: &mut Map<String, Value>) -> ApiResult<()> {
    let Some(Value::Array(list)) = attributes.get_mut("mediaServerDetails") else { return Ok(()) };
    for (index, server) in list.iter_mut().enumerate() {
        let name = server.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
        if !MEDIA_SERVERS.contains(&name.as_str()) {
            return Err(ApiError::bad_attribute(
                &format!("mediaServerDetails[{index}].name"),
                format!(
                    "{name:?} is not a media server of this primary server ({})",
                    MEDIA_SERVERS.join(", ")
                ),
            ));
        }
        *server = json!({"name": name, "operatingSystem": "linux", "netbackupVersion": "11.2.0.0"});
    }
    Ok(())
}

fn full(count: usize, what: &str) -> ApiResult<()> {
    if count >= MAX_RECORDS {
        return Err(ApiError::bad_request(format!(
            "The emulator keeps at most {MAX_RECORDS} {what}; delete one first."
        )));
    }
    Ok(())
}

fn no_server(id: &str) -> ApiError {
    ApiError::not_found(format!("No storage server has the id {id:?}."))
}

fn no_pool(id: &str) -> ApiError {
    ApiError::not_found(format!("No disk pool has the id {id:?}."))
}

fn no_unit(name: &str) -> ApiError {
    ApiError::not_found(format!("No storage unit is named {name:?}."))
}

// Storage servers.

pub(crate) async fn list_servers(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let params = Params::parse(query.as_deref())?;
    let inner = shared.lock();
    let rows: Vec<(&StorageServer, Value)> =
        inner.storage_servers.values().map(|server| (server, Value::Object(server.render()))).collect();
    let base = link(&headers, "/storage/storage-servers");
    let body = SERVER_LISTING.list(&params, rows, &base, |server, _| server_resource(&headers, server))?;
    Ok(json(StatusCode::OK, body))
}

pub(crate) async fn get_server(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let inner = shared.lock();
    let server = inner.storage_servers.get(&id).ok_or_else(|| no_server(&id))?;
    Ok(json(StatusCode::OK, json!({"data": server_resource(&headers, server)})))
}

pub(crate) async fn create_server(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let (attributes, _) = request(&body, "storageServer")?;
    let name = required_str(&Value::Object(attributes.clone()), "name")?.to_owned();
    let category = attributes
        .get("storageCategory")
        .and_then(Value::as_str)
        .filter(|category| CATEGORIES.contains(category))
        .ok_or_else(|| {
            ApiError::bad_attribute("storageCategory", format!("required: one of {}", CATEGORIES.join(", ")))
        })?
        .to_owned();
    let media = attributes
        .get("mediaServerDetails")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_attribute("mediaServerDetails.name", "required: the media server"))?
        .to_owned();
    if !MEDIA_SERVERS.contains(&media.as_str()) {
        return Err(ApiError::bad_attribute(
            "mediaServerDetails.name",
            format!("{media:?} is not a media server of this primary server ({})", MEDIA_SERVERS.join(", ")),
        ));
    }
    let settable = take_object(&attributes, SERVER_SETTABLE, "")?;
    if category == "CLOUD" && settable.get("cloudAttributes").and_then(|c| c.get("providerId")).is_none() {
        return Err(ApiError::bad_attribute(
            "cloudAttributes.providerId",
            "required for a CLOUD storage server",
        ));
    }
    if category == "OPEN_STORAGE"
        && settable.get("openStorageAttributes").and_then(|o| o.get("storageServerType")).is_none()
    {
        return Err(ApiError::bad_attribute(
            "openStorageAttributes.storageServerType",
            "required for an OPEN_STORAGE storage server",
        ));
    }
    let server = StorageServer::new(&name, &category, &media, &settable);
    let mut inner = shared.lock();
    if inner.storage_servers.contains_key(&server.id) {
        return Err(ApiError::conflict(format!("The storage server {} already exists.", server.id)));
    }
    full(inner.storage_servers.len(), "storage servers")?;
    let resource = server_resource(&headers, &server);
    inner.storage_servers.insert(server.id.clone(), server);
    Ok(created(&headers, resource))
}

pub(crate) async fn patch_server(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let (attributes, _) = request(&body, "storageServer")?;
    let changes = take_object(&attributes, SERVER_SETTABLE, "")?;
    let mut inner = shared.lock();
    let server = inner.storage_servers.get_mut(&id).ok_or_else(|| no_server(&id))?;
    let updated = StorageServer::new(
        &server.name,
        &server.category,
        &server.media_server,
        &merge(&server.attributes, changes),
    );
    server.attributes = updated.attributes;
    Ok(json(StatusCode::OK, json!({"data": server_resource(&headers, server)})))
}

pub(crate) async fn delete_server(
    State(shared): State<Arc<Shared>>,
    _user: User,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let mut inner = shared.lock();
    if !inner.storage_servers.contains_key(&id) {
        return Err(no_server(&id));
    }
    let pools: Vec<&str> =
        inner.disk_pools.values().filter(|pool| pool.server_id == id).map(|pool| pool.id.as_str()).collect();
    if !pools.is_empty() {
        return Err(ApiError::conflict(format!(
            "Cannot delete the storage server {id}: the disk pools {} use it.",
            pools.join(", ")
        )));
    }
    inner.storage_servers.remove(&id);
    Ok(empty(StatusCode::NO_CONTENT))
}

// Disk pools.

pub(crate) async fn list_pools(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let params = Params::parse(query.as_deref())?;
    let inner = shared.lock();
    let rows: Vec<(&DiskPool, Value)> = inner
        .disk_pools
        .values()
        .map(|pool| (pool, pool_resource(&headers, &inner, pool)["attributes"].clone()))
        .collect();
    let base = link(&headers, "/storage/disk-pools");
    let body = POOL_LISTING.list(&params, rows, &base, |pool, _| pool_resource(&headers, &inner, pool))?;
    Ok(json(StatusCode::OK, body))
}

pub(crate) async fn get_pool(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let inner = shared.lock();
    let pool = inner.disk_pools.get(&id).ok_or_else(|| no_pool(&id))?;
    Ok(json(StatusCode::OK, json!({"data": pool_resource(&headers, &inner, pool)})))
}

pub(crate) async fn create_pool(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let (attributes, relationships) = request(&body, "diskPool")?;
    let name = required_str(&Value::Object(attributes.clone()), "name")?.to_owned();
    let mut settable = take_object(&attributes, POOL_SETTABLE, "")?;
    let volumes = attributes
        .get("diskVolumes")
        .filter(|volumes| volumes.as_array().is_some_and(|list| !list.is_empty()))
        .ok_or_else(|| ApiError::bad_attribute("diskVolumes", "required: at least one {\"name\": ...}"))?;
    let volumes = crate::shape::take(volumes, Shape::List(&Shape::Object(VOLUME)), "diskVolumes")?;
    if volumes.as_array().into_iter().flatten().any(|volume| volume.get("name").is_none()) {
        return Err(ApiError::bad_attribute("diskVolumes", "every volume needs a name"));
    }
    settable.insert("diskVolumes".into(), volumes);
    check_water_marks(&settable)?;
    let server_id = related_id(&relationships, "storageServers")?;
    let mut inner = shared.lock();
    let server = inner.storage_servers.get(&server_id).ok_or_else(|| {
        ApiError::bad_attribute(
            "relationships.storageServers.data.id",
            format!("no storage server has the id {server_id:?}"),
        )
    })?;
    let pool = DiskPool::new(&name, server, &settable);
    if inner.disk_pools.contains_key(&pool.id) {
        return Err(ApiError::conflict(format!("The disk pool {} already exists.", pool.id)));
    }
    full(inner.disk_pools.len(), "disk pools")?;
    let resource = pool_resource(&headers, &inner, &pool);
    inner.disk_pools.insert(pool.id.clone(), pool);
    Ok(created(&headers, resource))
}

pub(crate) async fn patch_pool(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let (attributes, _) = request(&body, "diskPool")?;
    let changes = take_object(&attributes, POOL_SETTABLE, "")?;
    let mut inner = shared.lock();
    let pool = inner.disk_pools.get_mut(&id).ok_or_else(|| no_pool(&id))?;
    let merged = merge(&pool.attributes, changes);
    check_water_marks(&merged)?;
    pool.attributes = merged;
    let pool = pool.clone();
    Ok(json(StatusCode::OK, json!({"data": pool_resource(&headers, &inner, &pool)})))
}

pub(crate) async fn delete_pool(
    State(shared): State<Arc<Shared>>,
    _user: User,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let mut inner = shared.lock();
    if !inner.disk_pools.contains_key(&id) {
        return Err(no_pool(&id));
    }
    let units: Vec<&str> = inner
        .storage_units
        .values()
        .filter(|unit| unit.pool_id == id)
        .map(|unit| unit.name.as_str())
        .collect();
    if !units.is_empty() {
        return Err(ApiError::conflict(format!(
            "Cannot delete the disk pool {id}: the storage units {} use it.",
            units.join(", ")
        )));
    }
    let holding =
        inner.images.values().filter(|image| image.copies.iter().any(|copy| copy.disk_pool == id)).count();
    if holding > 0 {
        return Err(ApiError::conflict(format!(
            "Cannot delete the disk pool {id}: it holds copies of {holding} images."
        )));
    }
    inner.disk_pools.remove(&id);
    Ok(empty(StatusCode::NO_CONTENT))
}

// Storage units.

/// The `included` resources a storage-unit request asks for with `include=diskPool` (and
/// `diskPool.storageServers`).
fn included(
    headers: &HeaderMap,
    inner: &Inner,
    params: &Params,
    units: &[&StorageUnit],
) -> ApiResult<Option<Vec<Value>>> {
    let Some(include) = params.get("include") else { return Ok(None) };
    let mut wanted = Vec::new();
    for part in include.split(',').map(str::trim) {
        match part {
            "diskPool" | "diskPool.storageServers" => wanted.push(part),
            other => {
                return Err(ApiError::bad_attribute(
                    "include",
                    format!("{other:?} is not diskPool or diskPool.storageServers"),
                ))
            }
        }
    }
    let mut resources = Vec::new();
    let mut pools: Vec<&str> = units.iter().map(|unit| unit.pool_id.as_str()).collect();
    pools.sort_unstable();
    pools.dedup();
    for pool in pools.iter().filter_map(|id| inner.disk_pools.get(*id)) {
        resources.push(pool_resource(headers, inner, pool));
        if wanted.contains(&"diskPool.storageServers") {
            if let Some(server) = inner.storage_servers.get(&pool.server_id) {
                // The documents type included storage servers "storageServers".
                let mut resource = server_resource(headers, server);
                resource["type"] = json!("storageServers");
                resources.push(resource);
            }
        }
    }
    Ok(Some(resources))
}

pub(crate) async fn list_units(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let params = Params::parse(query.as_deref())?;
    let inner = shared.lock();
    let rows: Vec<(&StorageUnit, Value)> = inner
        .storage_units
        .values()
        .map(|unit| (unit, unit_resource(&headers, &inner, unit)["attributes"].clone()))
        .collect();
    let base = link(&headers, "/storage/storage-units");
    let mut body =
        UNIT_LISTING.list(&params, rows, &base, |unit, _| unit_resource(&headers, &inner, unit))?;
    let listed: Vec<&StorageUnit> = body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|resource| resource["id"].as_str().and_then(|name| inner.storage_units.get(name)))
        .collect();
    if let Some(resources) = included(&headers, &inner, &params, &listed)? {
        body["included"] = Value::Array(resources);
    }
    Ok(json(StatusCode::OK, body))
}

pub(crate) async fn get_unit(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let params = Params::parse(query.as_deref())?;
    let inner = shared.lock();
    let unit = inner.storage_units.get(&name).ok_or_else(|| no_unit(&name))?;
    let mut body = json!({"data": unit_resource(&headers, &inner, unit)});
    if let Some(resources) = included(&headers, &inner, &params, &[unit])? {
        body["included"] = Value::Array(resources);
    }
    Ok(json(StatusCode::OK, body))
}

pub(crate) async fn create_unit(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let (attributes, relationships) = request(&body, "storageUnit")?;
    let name = required_str(&Value::Object(attributes.clone()), "name")?.to_owned();
    if let Some(category) = attributes.get("storageCategory").and_then(Value::as_str) {
        return Err(ApiError::bad_attribute(
            "storageCategory",
            format!("{category} storage units are not modelled by the emulator: create a disk storage unit on a disk pool"),
        ));
    }
    let mut settable = take_object(&attributes, UNIT_SETTABLE, "")?;
    media_servers(&mut settable)?;
    let pool_id = related_id(&relationships, "diskPool")?;
    let mut inner = shared.lock();
    if inner.storage_units.contains_key(&name) {
        return Err(ApiError::conflict(format!("The storage unit {name} already exists.")));
    }
    full(inner.storage_units.len(), "storage units")?;
    let pool = inner.disk_pools.get(&pool_id).ok_or_else(|| {
        ApiError::bad_attribute(
            "relationships.diskPool.data.id",
            format!("no disk pool has the id {pool_id:?}"),
        )
    })?;
    let server = inner.storage_servers.get(&pool.server_id).ok_or_else(|| no_server(&pool.server_id))?;
    let unit = StorageUnit::new(&name, pool, server, &settable);
    let resource = unit_resource(&headers, &inner, &unit);
    inner.storage_units.insert(name, unit);
    Ok(created(&headers, resource))
}

pub(crate) async fn patch_unit(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let (attributes, _) = request(&body, "storageUnit")?;
    let mut changes = take_object(&attributes, UNIT_SETTABLE, "")?;
    media_servers(&mut changes)?;
    let mut inner = shared.lock();
    let unit = inner.storage_units.get_mut(&name).ok_or_else(|| no_unit(&name))?;
    unit.attributes = merge(&unit.attributes, changes);
    let unit = unit.clone();
    Ok(json(StatusCode::OK, json!({"data": unit_resource(&headers, &inner, &unit)})))
}

pub(crate) async fn delete_unit(
    State(shared): State<Arc<Shared>>,
    _user: User,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let mut inner = shared.lock();
    if !inner.storage_units.contains_key(&name) {
        return Err(no_unit(&name));
    }
    let slps: Vec<&str> =
        inner.slps.values().filter(|slp| slp.uses(&name)).map(|slp| slp.name.as_str()).collect();
    if !slps.is_empty() {
        return Err(ApiError::conflict(format!(
            "Cannot delete the storage unit {name}: the storage lifecycle policies {} use it.",
            slps.join(", ")
        )));
    }
    inner.storage_units.remove(&name);
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `base` with `changes` applied: objects merge key by key, anything else replaces.
fn merge(base: &Map<String, Value>, changes: Map<String, Value>) -> Map<String, Value> {
    let mut merged = base.clone();
    for (key, value) in changes {
        match (merged.get_mut(&key), value) {
            (Some(Value::Object(target)), Value::Object(change)) => {
                let combined = merge(target, change);
                *target = combined;
            }
            (_, value) => {
                merged.insert(key, value);
            }
        }
    }
    merged
}

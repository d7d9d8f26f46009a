//! `/config/hosts`, `/config/servers/vmservers` and `/manage/alerts`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::{empty, json, json_body, link, optional_str, required_str, User};
use crate::error::{ApiError, ApiResult};
use crate::filter::{Field, Filter, Kind, Sort, EQ, EQ_NE, ORDERED, TEXT};
use crate::model::VmServer;
use crate::query::{OffsetPage, Params};
use crate::state::{Shared, DR_MEDIA_SERVER, MEDIA_SERVER, PRIMARY_SERVER};

/// The VM server types of the documents.
const VM_TYPES: &[&str] = &[
    "VMWARE_VIRTUAL_CENTER_SERVER",
    "VMWARE_ESX_SERVER",
    "VMWARE_RESTORE_ESX_SERVER",
    "VMWARE_CLOUD_DIRECTOR",
    "HYPERV_SERVER",
    "SYSTEM_CENTER_VMM_SERVER",
    "HYPERV_CLUSTER_SERVER",
    "HYPERSCALE_SERVER",
    "RED_HAT_VIRTUALIZATION_MANAGER",
    "OPENSTACK_HORIZON_SERVER",
];

const HOST_FIELDS: &[Field] = &[
    Field { name: "hostName", kind: Kind::Str, ops: TEXT },
    Field { name: "uuid", kind: Kind::Str, ops: EQ },
    Field { name: "nbuHostType", kind: Kind::Str, ops: EQ_NE },
    Field { name: "osType", kind: Kind::Str, ops: EQ_NE },
];

const ALERT_FIELDS: &[Field] = &[
    Field { name: "createdDateTime", kind: Kind::Time, ops: ORDERED },
    Field { name: "category", kind: Kind::Str, ops: EQ_NE },
    Field { name: "subCategory", kind: Kind::Str, ops: EQ_NE },
    Field { name: "severity", kind: Kind::Str, ops: EQ_NE },
];

/// Every host the primary server knows: itself, its media server, and the clients of its policies.
fn hosts(shared: &Shared) -> Vec<Value> {
    let inner = shared.lock();
    let mut list: Vec<(String, &str, String, String)> = vec![
        (PRIMARY_SERVER.to_owned(), "PRIMARY_SERVER", "Linux".to_owned(), "RedHat".to_owned()),
        (MEDIA_SERVER.to_owned(), "MEDIA_SERVER", "Linux".to_owned(), "RedHat".to_owned()),
        (DR_MEDIA_SERVER.to_owned(), "MEDIA_SERVER", "Linux".to_owned(), "RedHat".to_owned()),
    ];
    for policy in inner.policies.values() {
        for client in policy.list("clients") {
            let Some(name) = client.get("hostName").and_then(Value::as_str) else { continue };
            if list.iter().any(|(known, ..)| known == name) {
                continue;
            }
            let text = |key: &str| client.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
            list.push((name.to_owned(), "CLIENT", text("hardware"), text("OS")));
        }
    }
    let now = shared.now().timestamp();
    list.into_iter()
        .map(|(name, kind, hardware, os)| {
            let os_type = if os.to_ascii_lowercase().contains("windows") { "WINDOWS" } else { "UNIX" };
            let virtual_machine = hardware == "VMware";
            json!({
                "uuid": crate::asset::uuid_of(&name),
                "hostName": name,
                "osType": os_type,
                "osVersion": os,
                "osReleaseVersion": if os_type == "WINDOWS" { "2019" } else { "8.8" },
                "cpuArchitecture": if virtual_machine { "x86_64" } else { "x64" },
                "hwDescription": hardware,
                "hardwareDescription": hardware,
                "vxUpdatePlatform": if os_type == "WINDOWS" { "Windows-x64" } else { "Linux-x64" },
                "nbuVersion": "11.2.0.0",
                "nbuReleaseVersion": "11.2",
                "nbuHostType": kind,
                "masterServer": PRIMARY_SERVER,
                "servers": [PRIMARY_SERVER],
                "isSecureEnabled": true,
                "autoReissue": false,
                "autoReissueDuration": 0,
                "externalCertificateSubject": "",
                "hasNetBackupCaHostCertificate": true,
                "comment": "",
                "trustVersion": "1",
                "hostMappings": [{
                    "mappedHostName": name,
                    "isApproved": true,
                    "isConflicting": false,
                    "isAddedManually": false,
                    "isShared": false,
                    "createdOn": now,
                    "updatedOn": now,
                    "origin": "CERTIFICATE_DEPLOYMENT",
                }],
                "machineType": if virtual_machine { "VIRTUAL" } else { "PHYSICAL" },
                "hypervisorType": if virtual_machine { "VMWARE" } else { "NONE" },
                "machineNbuType": "NOT_DEFINED",
                "dteClientMode": "AUTOMATIC",
                "fipsEnabled": "DISABLED",
                "installedEEBs": "",
                "installedPackages": "",
                "lastUpdatedDateTime": now,
                "createdDateTime": now,
            })
        })
        .collect()
}

pub(crate) async fn list_hosts(
    State(shared): State<Arc<Shared>>,
    _user: User,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let params = Params::parse(query.as_deref())?;
    let filter = params.get("filter").map(|text| Filter::parse(text, HOST_FIELDS)).transpose()?;
    let list: Vec<Value> =
        hosts(&shared).into_iter().filter(|host| filter.as_ref().is_none_or(|f| f.matches(host))).collect();
    Ok(json(StatusCode::OK, json!({"hosts": list})))
}

/// `GET /config/hosts/hostmappings`: the hosts with their host-name mappings, narrowed by the
/// `mappedhostname`, `isapproved`, `isconflict`, `isshared` and `isaddedmanually` parameters.
pub(crate) async fn host_mappings(
    State(shared): State<Arc<Shared>>,
    _user: User,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let params = Params::parse(query.as_deref())?;
    let conditions = [
        ("isApproved", params.flag("isapproved")?),
        ("isConflicting", params.flag("isconflict")?),
        ("isShared", params.flag("isshared")?),
        ("isAddedManually", params.flag("isaddedmanually")?),
    ];
    let mapped = params.get("mappedhostname");
    let list: Vec<Value> = hosts(&shared)
        .into_iter()
        .filter(|host| {
            host["hostMappings"].as_array().into_iter().flatten().any(|mapping| {
                mapped.is_none_or(|name| mapping["mappedHostName"] == name)
                    && conditions
                        .iter()
                        .all(|(key, wanted)| wanted.is_none_or(|wanted| mapping[*key] == wanted))
            })
        })
        .collect();
    Ok(json(StatusCode::OK, json!({"hosts": list})))
}

fn find_host(shared: &Shared, id: &str) -> ApiResult<Value> {
    hosts(shared)
        .into_iter()
        .find(|host| host["uuid"] == id || host["hostName"] == id)
        .ok_or_else(|| ApiError::not_found(format!("The host {id} was not found.")))
}

pub(crate) async fn get_host(
    State(shared): State<Arc<Shared>>,
    _user: User,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(json(StatusCode::OK, find_host(&shared, &id)?))
}

/// A host's configuration entries; every value is a list of strings, as the documents give them.
fn configurations(host: &Value) -> Vec<(&'static str, Value)> {
    vec![
        ("CLIENT_NAME", json!([host["hostName"]])),
        ("SERVER", json!([PRIMARY_SERVER, MEDIA_SERVER, DR_MEDIA_SERVER])),
        ("VERBOSE", json!(["0"])),
    ]
}

pub(crate) async fn host_configurations(
    State(shared): State<Arc<Shared>>,
    _user: User,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let host = find_host(&shared, &id)?;
    let data: Vec<Value> = configurations(&host)
        .into_iter()
        .map(|(name, value)| json!({"type": "hostConfiguration", "id": name, "attributes": {"value": value}}))
        .collect();
    Ok(json(StatusCode::OK, json!({"data": data})))
}

pub(crate) async fn host_configuration(
    State(shared): State<Arc<Shared>>,
    _user: User,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let host = find_host(&shared, &id)?;
    let (name, value) = configurations(&host)
        .into_iter()
        .find(|(key, _)| *key == name)
        .ok_or_else(|| ApiError::not_found(format!("The configuration {name} was not found.")))?;
    Ok(json(
        StatusCode::OK,
        json!({"data": {"type": "hostConfiguration", "id": name, "attributes": {"value": value}}}),
    ))
}

fn vm_server_resource(server: &VmServer) -> Value {
    json!({
        "type": "vmServer",
        "id": server.server_name,
        "attributes": {"vmServer": {
            "serverName": server.server_name,
            "vmType": server.vm_type,
            "userId": server.user_id,
            // Never shown; the documents require the field.
            "password": "",
            "port": server.port,
        }},
    })
}

pub(crate) async fn list_vm_servers(State(shared): State<Arc<Shared>>, _user: User) -> Response {
    let inner = shared.lock();
    let data: Vec<Value> = inner.vm_servers.values().map(vm_server_resource).collect();
    json(StatusCode::OK, json!({"data": data}))
}

pub(crate) async fn get_vm_server(
    State(shared): State<Arc<Shared>>,
    _user: User,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let inner = shared.lock();
    let server = inner
        .vm_servers
        .get(&name)
        .ok_or_else(|| ApiError::not_found(format!("The VM server {name} was not found.")))?;
    Ok(json(StatusCode::OK, json!({"data": vm_server_resource(server)})))
}

/// `POST /config/servers/vmservers` takes a flat body (not JSON:API) and answers 201 with no body.
pub(crate) async fn create_vm_server(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let body = json_body(&body)?;
    if !body.is_object() {
        return Err(ApiError::bad_request("The request body must be a JSON object."));
    }
    let server_name = required_str(&body, "serverName")?.to_owned();
    let vm_type = required_str(&body, "vmType")?.to_owned();
    if !VM_TYPES.contains(&vm_type.as_str()) {
        return Err(ApiError::bad_attribute("vmType", format!("must be one of {}", VM_TYPES.join(", "))));
    }
    let user_id = required_str(&body, "userId")?.to_owned();
    optional_str(&body, "password")?.ok_or_else(|| ApiError::bad_attribute("password", "required"))?;
    let port = match body.get("port") {
        None | Some(Value::Null) => 0,
        Some(port) => port.as_i64().ok_or_else(|| ApiError::bad_attribute("port", "must be an integer"))?,
    };
    let mut inner = shared.lock();
    if inner.vm_servers.contains_key(&server_name) {
        return Err(ApiError::conflict(format!("The VM server {server_name} already exists.")));
    }
    if vm_type.starts_with("VMWARE_") {
        // Discovery finds the vCenter's virtual machines.
        for asset in crate::asset::inventory(&server_name, &crate::asset::default_names(&server_name)) {
            inner.assets.insert(asset.id.clone(), asset);
        }
    }
    inner
        .vm_servers
        .insert(server_name.clone(), VmServer { server_name: server_name.clone(), vm_type, user_id, port });
    let mut response = empty(StatusCode::CREATED);
    if let Ok(value) =
        HeaderValue::from_str(&link(&headers, &format!("/config/servers/vmservers/{server_name}")))
    {
        response.headers_mut().insert(LOCATION, value);
    }
    Ok(response)
}

/// `DELETE /config/servers/vmservers/{serverName}`: 204; its virtual machines and the VM groups drawn
/// from it leave the asset service.
pub(crate) async fn delete_vm_server(
    State(shared): State<Arc<Shared>>,
    _user: User,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let mut inner = shared.lock();
    inner
        .vm_servers
        .remove(&name)
        .ok_or_else(|| ApiError::not_found(format!("The VM server {name} was not found.")))?;
    inner.assets.retain(|_, asset| asset.vcenter != name);
    Ok(empty(StatusCode::NO_CONTENT))
}

pub(crate) async fn list_alerts(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let params = Params::parse(query.as_deref())?;
    let filter = params.get("filter").map(|text| Filter::parse(text, ALERT_FIELDS)).transpose()?;
    let sort =
        Sort::parse(params.get("sort"), ALERT_FIELDS, Sort { field: "createdDateTime", descending: true })?;
    let page = OffsetPage::from_params(&params, 0, 100)?;
    let mut rows: Vec<(u64, Value)> = {
        let inner = shared.lock();
        inner.alerts.iter().map(|alert| (alert.id, alert.attributes())).collect()
    };
    rows.retain(|(_, attributes)| filter.as_ref().is_none_or(|f| f.matches(attributes)));
    rows.sort_by(|(a_id, a), (b_id, b)| sort.compare(a, b).then_with(|| b_id.cmp(a_id)));
    let body = page.envelope(
        rows,
        &link(&headers, "/manage/alerts"),
        |(id, attributes)| json!({"type": "alert", "id": id.to_string(), "attributes": attributes}),
        "",
    );
    Ok(json(StatusCode::OK, body))
}

//! `/config/policies` with clients, schedules, backup selections and copy; every mutation answers with the
//! policy's new generation in `ETag`, and `If-Match` with another generation gets 412.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::{ETAG, IF_MATCH, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::{data_attributes, empty, json, json_body, link, User};
use crate::error::{ApiError, ApiResult};
use crate::filter::{Field, Filter, Kind, Op, Sort, EQ_NE, TEXT};
use crate::model::Policy;
use crate::query::{OffsetPage, Params};
use crate::seed::default_policy_attributes;
use crate::state::{Inner, Shared};

const POLICY_FIELDS: &[Field] = &[
    Field { name: "policyName", kind: Kind::Str, ops: TEXT },
    Field { name: "policyType", kind: Kind::Str, ops: EQ_NE },
];

const DEFAULT_SORT: Sort = Sort { field: "policyName", descending: false };

const UNIQUE_CLIENT_FIELDS: &[Field] = &[Field {
    name: "id",
    kind: Kind::Str,
    ops: &[Op::Eq, Op::Ne, Op::Contains, Op::StartsWith, Op::EndsWith],
}];

fn with_headers(mut response: Response, etag: Option<u64>, location: Option<String>) -> Response {
    if let Some(etag) = etag {
        if let Ok(value) = HeaderValue::from_str(&etag.to_string()) {
            response.headers_mut().insert(ETAG, value);
        }
    }
    if let Some(location) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("The policy {name} was not found."))
}

/// 412 when `If-Match` names another generation (`*` and a missing header match anything).
fn check_if_match(headers: &HeaderMap, policy: &Policy) -> ApiResult<()> {
    let Some(value) = headers.get(IF_MATCH) else { return Ok(()) };
    let text = value.to_str().unwrap_or_default().trim();
    if text.is_empty() {
        // An empty header, like an empty parameter, counts as not given.
        return Ok(());
    }
    let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    if text == "*" || text == policy.generation.to_string() {
        return Ok(());
    }
    Err(ApiError::precondition_failed(format!(
        "The policy {} was changed: its generation is {}, not {text}.",
        policy.name(),
        policy.generation
    )))
}

/// Applies `change` to a policy after the `If-Match` check; returns the new generation.
fn mutate<T>(
    shared: &Shared,
    name: &str,
    headers: &HeaderMap,
    change: impl FnOnce(&mut Map<String, Value>) -> ApiResult<T>,
) -> ApiResult<(T, u64)> {
    let mut inner = shared.lock();
    let policy = inner.policies.get_mut(name).ok_or_else(|| not_found(name))?;
    check_if_match(headers, policy)?;
    let result = change(&mut policy.body)?;
    policy.generation += 1;
    Ok((result, policy.generation))
}

/// Reads and completes `data.attributes.policy` of a create or replace request.
fn policy_body(body: &Value, name: &str) -> ApiResult<Map<String, Value>> {
    let attributes = data_attributes(body, Some("policy"))?;
    let policy = attributes
        .get("policy")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::bad_attribute("data.attributes.policy", "required: an object"))?;
    let mut policy = policy.clone();
    match policy.get("policyName") {
        None | Some(Value::Null) => {
            policy.insert("policyName".into(), name.into());
        }
        Some(Value::String(given)) if given == name => {}
        Some(_) => {
            return Err(ApiError::bad_attribute("policyName", format!("must be {name:?}, the policy's id")))
        }
    }
    match policy.get("policyType") {
        None | Some(Value::Null) => {
            policy.insert("policyType".into(), "Standard".into());
        }
        Some(Value::String(kind)) if !kind.is_empty() => {}
        Some(_) => {
            return Err(ApiError::bad_attribute(
                "policyType",
                "must name a policy type, such as \"Standard\"",
            ))
        }
    }
    let attributes = match policy.get("policyAttributes") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(attributes)) => attributes.clone(),
        Some(_) => return Err(ApiError::bad_attribute("policyAttributes", "must be an object")),
    };
    policy.insert("policyAttributes".into(), Value::Object(default_policy_attributes(&attributes)));
    for key in ["clients", "schedules"] {
        match policy.get(key) {
            None | Some(Value::Null) => {
                policy.insert(key.into(), json!([]));
            }
            Some(Value::Array(items)) if items.iter().all(Value::is_object) => {}
            Some(_) => return Err(ApiError::bad_attribute(key, "must be a list of objects")),
        }
    }
    for (index, client) in policy.get("clients").and_then(Value::as_array).into_iter().flatten().enumerate() {
        if !client.get("hostName").is_some_and(Value::is_string) {
            return Err(ApiError::bad_attribute(&format!("clients[{index}].hostName"), "required: a string"));
        }
    }
    for (index, schedule) in
        policy.get("schedules").and_then(Value::as_array).into_iter().flatten().enumerate()
    {
        if !schedule.get("scheduleName").is_some_and(Value::is_string) {
            return Err(ApiError::bad_attribute(
                &format!("schedules[{index}].scheduleName"),
                "required: a string",
            ));
        }
    }
    match policy.get("backupSelections") {
        None | Some(Value::Null) => {
            policy.insert("backupSelections".into(), json!({"selections": []}));
        }
        Some(Value::Object(selections))
            if selections.get("selections").is_none_or(|list| {
                list.as_array().is_some_and(|items| items.iter().all(Value::is_string))
            }) => {}
        Some(_) => {
            return Err(ApiError::bad_attribute(
                "backupSelections",
                "must be {\"selections\": [...]}, a list of strings",
            ))
        }
    }

    Ok(policy)
}

fn request_name(body: &Value) -> ApiResult<String> {
    let data = body.get("data").ok_or_else(|| ApiError::bad_attribute("data", "required"))?;
    if let Some(Value::String(id)) = data.get("id") {
        if !id.is_empty() {
            return Ok(id.clone());
        }
    }
    data.get("attributes")
        .and_then(|a| a.get("policy"))
        .and_then(|p| p.get("policyName"))
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| ApiError::bad_attribute("data.id", "required: the policy name"))
}

pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let params = Params::parse(query.as_deref())?;
    let filter = params.get("filter").map(|text| Filter::parse(text, POLICY_FIELDS)).transpose()?;
    let sort = Sort::parse(params.get("sort"), POLICY_FIELDS, DEFAULT_SORT)?;
    let page = OffsetPage::from_params(&params, 1, 500)?;
    let mut rows: Vec<(String, Value)> = {
        let inner = shared.lock();
        inner.policies.values().map(|policy| (policy.name().to_owned(), policy.list_attributes())).collect()
    };
    if let Some(filter) = &filter {
        rows.retain(|(_, attributes)| filter.matches(attributes));
    }
    rows.sort_by(|(_, a), (_, b)| sort.compare(a, b));
    let body = page.envelope(
        rows,
        &link(&headers, "/config/policies"),
        |(name, attributes)| {
            json!({
                "type": "policy",
                "id": name,
                "links": {"self": {"href": link(&headers, &format!("/config/policies/{name}"))}},
                "attributes": attributes,
            })
        },
        "",
    );
    Ok(json(StatusCode::OK, body))
}

pub(crate) async fn create(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let body = json_body(&body)?;
    let name = request_name(&body)?;
    let policy_body = policy_body(&body, &name)?;
    let mut inner = shared.lock();
    if inner.policies.contains_key(&name) {
        return Err(ApiError::conflict(format!("The policy {name} already exists.")));
    }
    inner.policies.insert(name.clone(), Policy { body: policy_body, generation: 1 });
    let location = link(&headers, &format!("/config/policies/{name}"));
    Ok(with_headers(empty(StatusCode::NO_CONTENT), Some(1), Some(location)))
}

pub(crate) async fn get(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let inner = shared.lock();
    let policy = inner.policies.get(&name).ok_or_else(|| not_found(&name))?;
    let body = json!({"data": {
        "type": "policy",
        "id": name,
        "links": {"self": {"href": link(&headers, &format!("/config/policies/{name}"))}},
        "attributes": {"policy": Value::Object(policy.body.clone())},
    }});
    Ok(with_headers(json(StatusCode::OK, body), Some(policy.generation), None))
}

pub(crate) async fn replace(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let body = json_body(&body)?;
    let new_body = policy_body(&body, &name)?;
    let ((), generation) = mutate(&shared, &name, &headers, |policy| {
        *policy = new_body;
        Ok(())
    })?;
    let location = link(&headers, &format!("/config/policies/{name}"));
    Ok(with_headers(empty(StatusCode::NO_CONTENT), Some(generation), Some(location)))
}

pub(crate) async fn remove(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let mut inner = shared.lock();
    let policy = inner.policies.get(&name).ok_or_else(|| not_found(&name))?;
    check_if_match(&headers, policy)?;
    let generation = policy.generation + 1;
    inner.policies.remove(&name);
    Ok(with_headers(empty(StatusCode::NO_CONTENT), Some(generation), None))
}

pub(crate) async fn copy(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let body = json_body(&body)?;
    let attributes = data_attributes(&body, Some("copyPolicyRequest"))?;
    let new_name = attributes
        .get("copyPolicyRequest")
        .and_then(|r| r.get("id"))
        .or_else(|| body.get("data").and_then(|d| d.get("id")))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_attribute("data.id", "required: the new policy name"))?
        .to_owned();
    let mut inner: std::sync::MutexGuard<'_, Inner> = shared.lock();
    let source = inner.policies.get(&name).ok_or_else(|| not_found(&name))?.clone();
    if inner.policies.contains_key(&new_name) {
        return Err(ApiError::conflict(format!("The policy {new_name} already exists.")));
    }
    let mut copy = source.body;
    copy.insert("policyName".into(), new_name.clone().into());
    inner.policies.insert(new_name.clone(), Policy { body: copy, generation: 1 });
    let location = link(&headers, &format!("/config/policies/{new_name}"));
    Ok(with_headers(empty(StatusCode::NO_CONTENT), None, Some(location)))
}

/// Inserts or replaces the item of `list` whose `key` is `name`; true when it was new.
fn upsert(policy: &mut Map<String, Value>, list: &str, key: &str, name: &str, item: Value) -> bool {
    let items = policy.entry(list).or_insert_with(|| json!([]));
    if !items.is_array() {
        *items = json!([]);
    }
    let Some(items) = items.as_array_mut() else { return false };
    match items.iter_mut().find(|existing| existing.get(key).and_then(Value::as_str) == Some(name)) {
        Some(existing) => {
            *existing = item;
            false
        }
        None => {
            items.push(item);
            true
        }
    }
}

fn remove_item(policy: &mut Map<String, Value>, list: &str, key: &str, name: &str) -> bool {
    let Some(items) = policy.get_mut(list).and_then(Value::as_array_mut) else { return false };
    let before = items.len();
    items.retain(|item| item.get(key).and_then(Value::as_str) != Some(name));
    items.len() != before
}

fn item_attributes(body: &Bytes, expected_type: &str) -> ApiResult<Map<String, Value>> {
    let body = json_body(body)?;
    let attributes = data_attributes(&body, Some(expected_type))?;
    Ok(attributes.as_object().cloned().unwrap_or_default())
}

pub(crate) async fn put_client(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    Path((name, client)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let attributes = item_attributes(&body, "client")?;
    for key in ["hardware", "OS"] {
        if attributes.get(key).is_some_and(|v| !v.is_string()) {
            return Err(ApiError::bad_attribute(key, "must be a string"));
        }
    }
    put_item(&shared, &name, &headers, ("clients", "hostName"), &client, attributes)
}

pub(crate) async fn delete_client(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    Path((name, client)): Path<(String, String)>,
) -> ApiResult<Response> {
    delete_item(&shared, &name, &headers, ("clients", "hostName"), &client, "client")
}

pub(crate) async fn put_schedule(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    Path((name, schedule)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let attributes = item_attributes(&body, "schedule")?;
    if attributes.get("frequencySeconds").is_some_and(|v| !v.is_i64()) {
        return Err(ApiError::bad_attribute("frequencySeconds", "must be an integer"));
    }
    if attributes.get("backupType").is_some_and(|v| !v.is_string()) {
        return Err(ApiError::bad_attribute("backupType", "must be a string"));
    }
    put_item(&shared, &name, &headers, ("schedules", "scheduleName"), &schedule, attributes)
}

pub(crate) async fn delete_schedule(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    Path((name, schedule)): Path<(String, String)>,
) -> ApiResult<Response> {
    delete_item(&shared, &name, &headers, ("schedules", "scheduleName"), &schedule, "schedule")
}

/// Adds or replaces the item `key` of a policy's `list` (clients, schedules): 201 when new, 204 when
/// replaced, with the new generation as `ETag`.
fn put_item(
    shared: &Shared,
    name: &str,
    headers: &HeaderMap,
    (list, key_field): (&str, &str),
    key: &str,
    mut attributes: Map<String, Value>,
) -> ApiResult<Response> {
    attributes.insert(key_field.into(), key.into());
    let (created, generation) = mutate(shared, name, headers, |policy| {
        Ok(upsert(policy, list, key_field, key, Value::Object(attributes)))
    })?;
    let status = if created { StatusCode::CREATED } else { StatusCode::NO_CONTENT };
    Ok(with_headers(empty(status), Some(generation), None))
}

/// Removes the item `key` of a policy's `list`: 204 with the new generation as `ETag`, 404 when absent.
fn delete_item(
    shared: &Shared,
    name: &str,
    headers: &HeaderMap,
    (list, key_field): (&str, &str),
    key: &str,
    what: &str,
) -> ApiResult<Response> {
    let ((), generation) = mutate(shared, name, headers, |policy| {
        if remove_item(policy, list, key_field, key) {
            Ok(())
        } else {
            Err(ApiError::not_found(format!("The {what} {key} is not in the policy {name}.")))
        }
    })?;
    Ok(with_headers(empty(StatusCode::NO_CONTENT), Some(generation), None))
}

pub(crate) async fn put_selections(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let attributes = item_attributes(&body, "backupSelection")?;
    let selections = attributes
        .get("selections")
        .and_then(Value::as_array)
        .filter(|list| list.iter().all(Value::is_string))
        .cloned()
        .ok_or_else(|| ApiError::bad_attribute("selections", "required: a list of strings"))?;
    let ((), generation) = mutate(&shared, &name, &headers, |policy| {
        policy.insert("backupSelections".into(), json!({"selections": selections}));
        Ok(())
    })?;
    Ok(with_headers(empty(StatusCode::NO_CONTENT), Some(generation), None))
}

pub(crate) async fn delete_selections(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let ((), generation) = mutate(&shared, &name, &headers, |policy| {
        policy.insert("backupSelections".into(), json!({"selections": []}));
        Ok(())
    })?;
    Ok(with_headers(empty(StatusCode::NO_CONTENT), Some(generation), None))
}

/// `GET /config/unique-policy-clients`: every client of every policy once, with the policies (and their
/// types) that back it up, paged by offset.
pub(crate) async fn unique_clients(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let params = Params::parse(query.as_deref())?;
    let page = OffsetPage::from_params(&params, 1, 5000)?;
    let filter = params.get("filter").map(|text| Filter::parse(text, UNIQUE_CLIENT_FIELDS)).transpose()?;
    let mut clients: Vec<(String, Value, Vec<String>, Vec<String>)> = Vec::new();
    {
        let inner = shared.lock();
        for policy in inner.policies.values() {
            for client in policy.list("clients") {
                let Some(host) = client.get("hostName").and_then(Value::as_str) else { continue };
                let name = policy.name().to_owned();
                let kind = policy.policy_type().to_owned();
                match clients.iter_mut().find(|(known, ..)| known == host) {
                    Some((_, _, policies, types)) => {
                        policies.push(name);
                        if !types.contains(&kind) {
                            types.push(kind);
                        }
                    }
                    None => clients.push((host.to_owned(), client.clone(), vec![name], vec![kind])),
                }
            }
        }
    }
    clients.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(filter) = &filter {
        clients.retain(|(name, ..)| filter.matches(&json!({"id": name})));
    }
    let text =
        |client: &Value, key: &str| client.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    let body = page.envelope(
        clients,
        &link(&headers, "/config/unique-policy-clients"),
        |(name, client, policies, types)| {
            json!({
                "type": "uniqueClient",
                "id": name,
                "attributes": {
                    "hardware": text(client, "hardware"),
                    "OS": text(client, "OS"),
                    "clientInfoType": "HOST",
                    "policyNames": policies,
                    "policyTypes": types,
                },
            })
        },
        "",
    );
    Ok(json(StatusCode::OK, body))
}

//! The REST API under `/netbackup`: the router, path normalisation, version negotiation,
//! authentication, and the fallbacks that keep every error a JSON body.

mod admin;
mod assets;
mod auth;
mod catalog;
mod config;
mod contents;
mod eventlog;
mod policies;
mod recovery;
mod slps;
mod storage;

pub(crate) use assets::AssetQuery;
pub(crate) use auth::create_key;
pub(crate) use contents::ContentRequest;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{
    HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HOST, TRANSFER_ENCODING,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::filter::{Field, Filter, Logic, Sort};
use crate::media::{negotiate, ApiVersion, Rejection};
use crate::query::{OffsetPage, Params};
use crate::state::Shared;

/// The prefix of every path.
pub(crate) const PREFIX: &str = "/netbackup";

/// The router (without path normalisation, which must run before routing: see [`normalize_path`]).
pub(crate) fn app(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/ping", get(auth::ping))
        .route("/login", post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/security/cacert", get(auth::cacert))
        .route("/security/api-keys", get(auth::list_api_keys).post(auth::create_api_key))
        .route("/security/api-keys/{tag}", get(auth::get_api_key).delete(auth::delete_api_key))
        .route("/admin/jobs", get(admin::list_jobs))
        .route("/admin/jobs/{job_id}", get(admin::get_job).delete(admin::delete_job))
        .route("/admin/jobs/{job_id}/cancel", post(admin::cancel_job))
        .route("/admin/jobs/{job_id}/suspend", post(admin::suspend_job))
        .route("/admin/jobs/{job_id}/resume", post(admin::resume_job))
        .route("/admin/jobs/{job_id}/restart", post(admin::restart_job))
        .route("/admin/jobs/{job_id}/file-lists", get(admin::file_lists))
        .route("/admin/jobs/{job_id}/try-logs", get(admin::try_logs))
        .route("/admin/jobs/{job_id}/try-logs/{attempt}", get(admin::try_log))
        .route("/admin/jobs/{job_id}/progress-logs", get(admin::progress_logs))
        .route("/admin/manual-backup", post(admin::manual_backup))
        .route("/catalog/images", get(catalog::list_images))
        .route("/catalog/images/{backup_id}", get(catalog::get_image).patch(catalog::patch_image))
        .route("/catalog/images/{backup_id}/expire", post(catalog::expire_image))
        .route("/catalog/images/{backup_id}/contents", get(contents::start_request))
        .route(
            "/catalog/images/contents/{request_id}",
            get(contents::next_page).delete(contents::delete_request),
        )
        .route("/catalog/image-contents", get(contents::list))
        .route("/catalog/expire-images", post(catalog::expire_images))
        .route("/catalog/images/update-expiration-date", post(catalog::update_expiration))
        .route("/config/policies", get(policies::list).post(policies::create))
        .route("/config/policies/{name}", get(policies::get).put(policies::replace).delete(policies::remove))
        .route("/config/policies/{name}/copy", post(policies::copy))
        .route(
            "/config/policies/{name}/clients/{client}",
            put(policies::put_client).delete(policies::delete_client),
        )
        .route(
            "/config/policies/{name}/schedules/{schedule}",
            put(policies::put_schedule).delete(policies::delete_schedule),
        )
        .route(
            "/config/policies/{name}/backupselections",
            put(policies::put_selections).delete(policies::delete_selections),
        )
        .route("/config/unique-policy-clients", get(policies::unique_clients))
        .merge(
            Router::new()
                .route("/config/slps", get(slps::list).post(slps::create))
                .route(
                    "/config/slps/{name}",
                    get(slps::get).put(slps::replace).patch(slps::update).delete(slps::remove),
                )
                .route("/config/slps/{name}/versions/{number}", get(slps::get_version))
                .route_layer(axum::middleware::from_fn(slps::error_shape)),
        )
        .route("/config/hosts", get(config::list_hosts))
        .route("/config/hosts/hostmappings", get(config::host_mappings))
        .route("/config/hosts/{host_id}", get(config::get_host))
        .route("/config/hosts/{host_id}/configurations", get(config::host_configurations))
        .route("/config/hosts/{host_id}/configurations/{name}", get(config::host_configuration))
        .route("/config/servers/vmservers", get(config::list_vm_servers).post(config::create_vm_server))
        .route(
            "/config/servers/vmservers/{name}",
            get(config::get_vm_server).delete(config::delete_vm_server),
        )
        .route("/asset-service/workloads/{workload}/assets", get(assets::list))
        .route("/asset-service/workloads/{workload}/assets/{id}", get(assets::get))
        .route("/asset-service/queries", post(assets::create_query))
        .route("/asset-service/queries/{id}", get(assets::get_query))
        .route("/manage/alerts", get(config::list_alerts))
        .route("/eventlog/notifications", get(eventlog::list).post(eventlog::post))
        .route("/storage/storage-servers", get(storage::list_servers).post(storage::create_server))
        .route(
            "/storage/storage-servers/{id}",
            get(storage::get_server).patch(storage::patch_server).delete(storage::delete_server),
        )
        .route("/storage/disk-pools", get(storage::list_pools).post(storage::create_pool))
        .route(
            "/storage/disk-pools/{id}",
            get(storage::get_pool).patch(storage::patch_pool).delete(storage::delete_pool),
        )
        .route("/storage/storage-units", get(storage::list_units).post(storage::create_unit))
        .route(
            "/storage/storage-units/{name}",
            get(storage::get_unit).patch(storage::patch_unit).delete(storage::delete_unit),
        )
        .route("/recovery/workloads/vmware/scenarios/full-vm/recover", post(recovery::recover))
        .route("/recovery/workloads/vmware/scenarios/full-vm/pre-recovery-check", post(recovery::pre_check));
    Router::new()
        .nest(PREFIX, api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&shared), negotiation))
        .with_state(shared)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found("The requested resource was not found.")
        .detail(format!("No resource at {}", uri.path()))
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, 9014, "The method is not allowed for this resource.")
        .detail(format!("{} {}", request.method(), request.uri().path()))
}

/// Collapses doubled slashes and drops a trailing slash. Runs before routing (it wraps the router).
///
/// HTTP/2 requests carry the authority in the URI rather than a `Host` header; it is copied into `Host` so
/// that links are built the same way for both.
pub(crate) fn normalize_path<B>(mut request: axum::http::Request<B>) -> axum::http::Request<B> {
    if !request.headers().contains_key(HOST) {
        let authority = request.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok());
        if let Some(authority) = authority {
            request.headers_mut().insert(HOST, authority);
        }
    }
    let uri = request.uri();
    let path = uri.path();
    if path.contains("//") || (path.len() > 1 && path.ends_with('/')) {
        let mut normal = String::with_capacity(path.len());
        for segment in path.split('/').filter(|segment| !segment.is_empty()) {
            normal.push('/');
            normal.push_str(segment);
        }
        if normal.is_empty() {
            normal.push('/');
        }
        if let Some(query) = uri.query() {
            normal.push('?');
            normal.push_str(query);
        }
        let mut parts = uri.clone().into_parts();
        if let Ok(path_and_query) = normal.parse() {
            parts.path_and_query = Some(path_and_query);
            if let Ok(new_uri) = Uri::from_parts(parts) {
                *request.uri_mut() = new_uri;
            }
        }
    }
    request
}

/// Picks the API version of each request, refuses what `docs/netbackup-rest-api.md` §2.2 says to refuse,
/// and labels JSON answers with the versioned media type.
async fn negotiation(State(shared): State<Arc<Shared>>, mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let header = |name| headers.get(name).and_then(|value: &HeaderValue| value.to_str().ok());
    let has_body = header(TRANSFER_ENCODING).is_some()
        || header(CONTENT_LENGTH).and_then(|length| length.trim().parse::<u64>().ok()).is_some_and(|n| n > 0);
    let request_id = headers.get("x-request-id").cloned();
    let version = match negotiate(header(ACCEPT), header(CONTENT_TYPE), has_body, shared.default_version) {
        Ok(version) => version,
        Err(Rejection::NotAcceptable(message)) => return ApiError::not_acceptable(message).into_response(),
        Err(Rejection::UnsupportedMediaType(message)) => {
            return ApiError::unsupported_media_type(message).into_response()
        }
    };
    request.extensions_mut().insert(version);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if is_json {
        if let Ok(value) = HeaderValue::from_str(&format!("application/vnd.netbackup+json;version={version}"))
        {
            headers.insert(CONTENT_TYPE, value);
        }
    }
    if let Ok(value) = HeaderValue::from_str(&version.to_string()) {
        headers.insert("x-netbackup-api-version", value);
    }
    let request_id = request_id
        .or_else(|| HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).ok())
        .unwrap_or(HeaderValue::from_static("0"));
    headers.insert("x-request-id", request_id);
    headers.insert("cache-control", HeaderValue::from_static("private"));
    response
}

/// The authenticated user of a request (from a token or an API key in `Authorization`, raw or with
/// `Bearer `).
#[derive(Debug, Clone)]
pub(crate) struct User(pub(crate) String);

impl FromRequestParts<Arc<Shared>> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, ApiError> {
        let credential = credential(&parts.headers).ok_or_else(ApiError::unauthorized)?;
        let inner = shared.lock();
        inner.user_of(&credential, chrono::Utc::now()).map(User).ok_or_else(ApiError::unauthorized)
    }
}

/// The credential in `Authorization` (without a `Bearer ` prefix), or else in the `Authorization` cookie
/// that `/login` sets.
pub(crate) fn credential(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(AUTHORIZATION).and_then(|value| value.to_str().ok()) {
        let value = value.trim();
        let value =
            value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).unwrap_or(value).trim();
        return (!value.is_empty()).then(|| value.to_owned());
    }
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == "Authorization" && !value.is_empty())
        .map(|(_, value)| value.to_owned())
}

/// The negotiated version of a request.
pub(crate) fn version_of(parts_extensions: &axum::http::Extensions, shared: &Shared) -> ApiVersion {
    parts_extensions.get::<ApiVersion>().copied().unwrap_or(shared.default_version)
}

/// Parses a JSON request body (400 with a JSON error when it is not JSON).
pub(crate) fn json_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("The request body is missing."));
    }
    serde_json::from_slice(body).map_err(|error| {
        ApiError::bad_request("The request body is not valid JSON.").detail(error.to_string())
    })
}

/// `data.attributes` of a JSON:API request body (and checks `data.type` when `expected_type` is given).
pub(crate) fn data_attributes<'a>(
    body: &'a Value,
    expected_type: Option<&str>,
) -> Result<&'a Value, ApiError> {
    let data = body
        .get("data")
        .filter(|d| d.is_object())
        .ok_or_else(|| ApiError::bad_attribute("data", "required"))?;
    if let Some(expected) = expected_type {
        match data.get("type") {
            Some(Value::String(kind)) if kind == expected => {}
            None => {}
            _ => return Err(ApiError::bad_attribute("data.type", format!("must be {expected:?}"))),
        }
    }
    let attributes = data.get("attributes").unwrap_or(&Value::Null);
    if !attributes.is_object() && !attributes.is_null() {
        return Err(ApiError::bad_attribute("data.attributes", "must be an object"));
    }
    Ok(attributes)
}

/// An optional string attribute (400 when present with another type).
pub(crate) fn optional_str<'a>(object: &'a Value, key: &str) -> Result<Option<&'a str>, ApiError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(ApiError::bad_attribute(key, "must be a string")),
    }
}

/// A required string attribute.
pub(crate) fn required_str<'a>(object: &'a Value, key: &str) -> Result<&'a str, ApiError> {
    optional_str(object, key)?
        .filter(|text| !text.is_empty())
        .ok_or_else(|| ApiError::bad_attribute(key, "required"))
}

/// A JSON answer.
pub(crate) fn json(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// An empty answer.
pub(crate) fn empty(status: StatusCode) -> Response {
    (status, Body::empty()).into_response()
}

/// How an offset-paged collection is listed: what it filters and sorts on, its default order and the
/// largest page.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Listing {
    pub(crate) fields: &'static [Field],
    pub(crate) sort_fields: &'static [Field],
    pub(crate) logic: Logic,
    pub(crate) default_sort: &'static [Sort],
    pub(crate) max_limit: u64,
}

impl Listing {
    /// Filters, sorts (ties keep the order of `rows`) and pages `rows` (each a record and its rendered
    /// attributes) into a collection body whose items `render` makes.
    pub(crate) fn list<T>(
        &self,
        params: &Params,
        mut rows: Vec<(T, Value)>,
        base: &str,
        render: impl Fn(&T, &Value) -> Value,
    ) -> ApiResult<Value> {
        let filter =
            params.get("filter").map(|text| Filter::parse_with(text, self.fields, self.logic)).transpose()?;
        let sort = Sort::parse_list(params.get("sort"), self.sort_fields, self.default_sort)?;
        let page = OffsetPage::from_params(params, 1, self.max_limit)?;
        if let Some(filter) = &filter {
            rows.retain(|(_, attributes)| filter.matches(attributes));
        }
        rows.sort_by(|(_, a), (_, b)| Sort::compare_all(&sort, a, b));
        Ok(page.envelope(rows, base, |(record, attributes)| render(record, attributes), ""))
    }
}

/// 201 with the created resource as `data` and its `links.self` as `Location`.
pub(crate) fn created(_headers: &HeaderMap, resource: Value) -> Response {
    let location =
        resource["links"]["self"]["href"].as_str().and_then(|href| HeaderValue::from_str(href).ok());
    let mut response = json(StatusCode::CREATED, serde_json::json!({"data": resource}));
    if let Some(location) = location {
        response.headers_mut().insert(axum::http::header::LOCATION, location);
    }
    response
}

/// Percent-encodes a query value for a link (unreserved characters kept).
pub(crate) fn encode_query(value: &str) -> String {
    const SET: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    percent_encoding::utf8_percent_encode(value, SET).to_string()
}

/// The full URL of a path (for `links` and `Location`).
pub(crate) fn link(headers: &HeaderMap, path: &str) -> String {
    let host = headers.get("host").and_then(|host| host.to_str().ok()).unwrap_or("localhost:1556");
    format!("https://{host}{PREFIX}{path}")
}

//! `/ping`, `/login`, `/logout`, `/security/cacert` and `/security/api-keys`.

use std::sync::Arc;
use std::time::Instant as StdInstant;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::{CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{TimeDelta, Utc};
use serde_json::{json, Value};

use super::{credential, data_attributes, empty, json, json_body, link, optional_str, version_of, User};
use crate::clock::format_time;
use crate::error::{ApiError, ApiResult};
use crate::model::ApiKey;
use crate::query::{OffsetPage, Params};
use crate::state::{Session, Shared, TOKEN_VALIDITY};

/// The `domainName` that makes `/login` take an API key as the password.
const API_KEY_DOMAIN: &str = "vrts.apikey";

pub(crate) async fn ping(State(shared): State<Arc<Shared>>, extensions: Extensions) -> Response {
    let version = version_of(&extensions, &shared);
    let mut response = shared.now().timestamp_millis().to_string().into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("text/vnd.netbackup+plain;version={version}")) {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}

pub(crate) async fn login(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult<Response> {
    let body = json_body(&body)?;
    if !body.is_object() {
        return Err(ApiError::bad_request("The login request must be a JSON object."));
    }
    let user_name =
        optional_str(&body, "userName")?.ok_or_else(|| ApiError::bad_attribute("userName", "required"))?;
    let password =
        optional_str(&body, "password")?.ok_or_else(|| ApiError::bad_attribute("password", "required"))?;
    optional_str(&body, "domainType")?;
    let domain_name = optional_str(&body, "domainName")?.unwrap_or_default();
    let mut inner = shared.lock();
    let user = if domain_name.eq_ignore_ascii_case(API_KEY_DOMAIN) {
        inner
            .api_keys
            .values()
            .find(|key| key.key == password && key.expires > Utc::now())
            .map(|key| key.user.clone())
    } else {
        inner
            .users
            .iter()
            .find(|(name, secret)| name == user_name && secret == password)
            .map(|(name, _)| name.clone())
    };
    let Some(user) = user else {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, 8000, "Invalid username or password."));
    };
    let token = inner.random_token(32);
    inner.sessions.insert(token.clone(), Session { user, expires: StdInstant::now() + TOKEN_VALIDITY });
    drop(inner);
    let body = json!({"token": token, "tokenType": "BEARER", "validity": TOKEN_VALIDITY.as_secs()});
    let mut response = json(StatusCode::CREATED, body);
    if let Ok(cookie) =
        HeaderValue::from_str(&format!("Authorization={token}; Path=/netbackup; Secure; HttpOnly"))
    {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response.headers_mut().insert("x-netbackup-readonly", HeaderValue::from_static("false"));
    Ok(response)
}

pub(crate) async fn logout(State(shared): State<Arc<Shared>>, _user: User, headers: HeaderMap) -> Response {
    if let Some(token) = credential(&headers) {
        shared.lock().sessions.remove(&token);
    }
    empty(StatusCode::OK)
}

pub(crate) async fn cacert(State(shared): State<Arc<Shared>>) -> Response {
    let pem = shared.tls.certificate_pem.clone();
    let (sha1, sha256) = shared.tls.fingerprints();
    let details = json!({
        "caCertDetails": {
            "subjectCN": shared.tls.subject_cn,
            "serialNumber": shared.tls.serial_number(),
            "notBefore": shared.tls.not_before,
            "notAfter": shared.tls.not_after,
            "fingerprint": sha1,
            "sha-256Fingerprint": sha256,
            "keyStrength": 256,
            "usage": "WebServer",
        },
        "caCert": pem,
    });
    json(
        StatusCode::OK,
        json!({
            "webRootCert": pem,
            "cacert": [pem],
            "trustVersion": "1",
            "webRootCertificateData": [details.clone()],
            "caCertificateData": [{"caCertAction": "ADD", "caCertDetails": details["caCertDetails"], "caCert": details["caCert"]}],
        }),
    )
}

fn parse_days(period: &str) -> Option<i64> {
    let days = period.trim().strip_prefix('P')?.strip_suffix('D')?;
    days.parse().ok().filter(|days| *days > 0 && *days <= 3650)
}

fn key_resource(headers: &HeaderMap, key: &ApiKey) -> Value {
    json!({
        "type": "apiKeyDetails",
        "id": key.tag,
        "links": {"self": {"href": link(headers, &format!("/security/api-keys/{}", key.tag))}},
        "attributes": key.attributes(),
    })
}

pub(crate) async fn create_api_key(
    State(shared): State<Arc<Shared>>,
    User(user): User,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let body = json_body(&body)?;
    let attributes = data_attributes(&body, Some("apiKeyCreationRequest"))?;
    let period = optional_str(attributes, "expireAfterDays")?
        .ok_or_else(|| ApiError::bad_attribute("expireAfterDays", "required"))?;
    let days = parse_days(period).ok_or_else(|| {
        ApiError::bad_attribute("expireAfterDays", format!("{period:?} is not a period such as \"P30D\""))
    })?;
    let description = optional_str(attributes, "description")?.unwrap_or_default().to_owned();
    let owner =
        optional_str(attributes, "userName")?.filter(|name| !name.is_empty()).unwrap_or(&user).to_owned();
    let key = create_key(&shared, &owner, &description, days);
    let location = link(&headers, &format!("/security/api-keys/{}", key.tag));
    let body = json!({"data": {
        "type": "apiKeyCreationResponse",
        "id": key.tag,
        "links": {"self": {"href": location}},
        "attributes": {"apiKey": key.key, "expiryDateTime": format_time(key.expires)},
    }});
    let mut response = json(StatusCode::CREATED, body);
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(LOCATION, value);
    }
    Ok(response)
}

/// Creates an API key for `user`, valid for `days` (real time).
pub(crate) fn create_key(shared: &Shared, user: &str, description: &str, days: i64) -> ApiKey {
    let mut inner = shared.lock();
    let tag = inner.random_token(8);
    let key = format!("A{}", inner.random_token(32));
    let now = Utc::now();
    let created = chrono::DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
    let api_key = ApiKey {
        tag: tag.clone(),
        key,
        user: user.to_owned(),
        description: description.to_owned(),
        created,
        expires: created + TimeDelta::days(days),
    };
    inner.api_keys.insert(tag, api_key.clone());
    api_key
}

pub(crate) async fn list_api_keys(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let params = Params::parse(query.as_deref())?;
    let page = OffsetPage::from_params(&params, 1, 100)?;
    let keys: Vec<ApiKey> = shared.lock().api_keys.values().cloned().collect();
    let body =
        page.envelope(keys, &link(&headers, "/security/api-keys"), |key| key_resource(&headers, key), "");
    Ok(json(StatusCode::OK, body))
}

pub(crate) async fn get_api_key(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    Path(tag): Path<String>,
) -> ApiResult<Response> {
    let inner = shared.lock();
    let key = inner
        .api_keys
        .get(&tag)
        .ok_or_else(|| ApiError::not_found(format!("API key {tag} was not found.")))?;
    Ok(json(StatusCode::OK, json!({"data": key_resource(&headers, key)})))
}

pub(crate) async fn delete_api_key(
    State(shared): State<Arc<Shared>>,
    _user: User,
    Path(tag): Path<String>,
) -> ApiResult<Response> {
    let mut inner = shared.lock();
    inner
        .api_keys
        .remove(&tag)
        .ok_or_else(|| ApiError::not_found(format!("API key {tag} was not found.")))?;
    Ok(empty(StatusCode::NO_CONTENT))
}

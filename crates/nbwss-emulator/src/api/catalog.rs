//! `/catalog/images` and the image expiration calls.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};

use super::{data_attributes, empty, json, json_body, link, optional_str, version_of, User};
use crate::engine;
use crate::error::{ApiError, ApiResult};
use crate::event::EventKind;
use crate::filter::{Field, Filter, Kind, Sort, EQ, RANGE};
use crate::media::ApiVersion;
use crate::model::Image;
use crate::query::{OffsetPage, Params};
use crate::state::{Shared, MEDIA_SERVER};

/// Filterable image fields, from the 10.5 spec (plus `backupType`, which older clients send).
const IMAGE_FIELDS: &[Field] = &[
    Field { name: "backupTime", kind: Kind::Time, ops: RANGE },
    Field { name: "policyName", kind: Kind::Str, ops: &[crate::filter::Op::Eq, crate::filter::Op::Contains] },
    Field { name: "appType", kind: Kind::Str, ops: EQ },
    Field { name: "backupId", kind: Kind::Str, ops: EQ },
    Field { name: "clientName", kind: Kind::Str, ops: EQ },
    Field { name: "policyType", kind: Kind::Str, ops: EQ },
    Field { name: "scheduleType", kind: Kind::Str, ops: EQ },
    Field { name: "streamNumber", kind: Kind::Int, ops: EQ },
    Field { name: "providerGeneratedId", kind: Kind::Str, ops: EQ },
    Field { name: "keyword", kind: Kind::Str, ops: EQ },
    Field { name: "isOptimized", kind: Kind::Bool, ops: EQ },
    Field { name: "backupType", kind: Kind::Int, ops: EQ },
];

const DEFAULT_SORT: Sort = Sort { field: "backupTime", descending: true };

fn image_resource(headers: &HeaderMap, image: &Image, version: ApiVersion) -> Value {
    let mut resource = json!({
        "type": "image",
        "id": image.backup_id,
        "links": {"self": {"href": link(headers, &format!("/catalog/images/{}", image.backup_id))}},
        "attributes": image.attributes_at(version),
        "relationships": {
            "mediaServers": {"data": [{"type": "mediaServer", "id": MEDIA_SERVER}]},
        },
    });
    if image.policy_type.eq_ignore_ascii_case("vmware") {
        resource["relationships"]["vmwareImage"] = json!({
            "links": {"related": {"href": link(headers, &format!("/catalog/vmware-images/{}", image.backup_id))}},
            "data": {"type": "vmwareImage", "id": image.backup_id},
        });
    }
    resource
}

pub(crate) async fn list_images(
    State(shared): State<Arc<Shared>>,
    _user: User,
    extensions: Extensions,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let version = version_of(&extensions, &shared);
    let params = Params::parse(query.as_deref())?;
    let filter = params.get("filter").map(|text| Filter::parse(text, IMAGE_FIELDS)).transpose()?;
    let sort = Sort::parse(params.get("sort"), IMAGE_FIELDS, DEFAULT_SORT)?;
    let page = OffsetPage::from_params(&params, 1, 100)?;
    let now = shared.now();
    let day_ago = now - TimeDelta::hours(24);
    let images: Vec<Image> = shared.lock().images.values().cloned().collect();
    let time_filtered = filter.as_ref().is_some_and(|filter| filter.mentions("backupTime"));
    let mut rows: Vec<(Image, Value)> = images
        .into_iter()
        .filter(|image| time_filtered || image.backup_time >= day_ago)
        .map(|image| {
            let attributes = image.attributes();
            (image, attributes)
        })
        .filter(|(_, attributes)| filter.as_ref().is_none_or(|filter| filter.matches(attributes)))
        .collect();
    rows.sort_by(|(a_image, a), (b_image, b)| {
        sort.compare(a, b).then_with(|| a_image.backup_id.cmp(&b_image.backup_id))
    });
    let body = page.envelope(
        rows,
        &link(&headers, "/catalog/images"),
        |(image, _)| image_resource(&headers, image, version),
        "",
    );
    Ok(json(StatusCode::OK, body))
}

fn find_image(shared: &Shared, backup_id: &str) -> ApiResult<Image> {
    if backup_id.trim().is_empty() {
        return Err(ApiError::bad_attribute("backupId", "required"));
    }
    shared
        .lock()
        .images
        .get(backup_id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("The image {backup_id} was not found.")))
}

pub(crate) async fn get_image(
    State(shared): State<Arc<Shared>>,
    _user: User,
    extensions: Extensions,
    headers: HeaderMap,
    Path(backup_id): Path<String>,
) -> ApiResult<Response> {
    let version = version_of(&extensions, &shared);
    let image = find_image(&shared, &backup_id)?;
    Ok(json(StatusCode::OK, json!({"data": image_resource(&headers, &image, version)})))
}

fn parse_time(attributes: &Value, key: &str) -> ApiResult<Option<DateTime<Utc>>> {
    optional_str(attributes, key)?
        .map(|text| {
            DateTime::parse_from_rfc3339(text)
                .map(|time| time.with_timezone(&Utc))
                .map_err(|_| ApiError::bad_attribute(key, format!("{text:?} is not an ISO 8601 date-time")))
        })
        .transpose()
}

fn copy_number(attributes: &Value) -> ApiResult<Option<u32>> {
    match attributes.get("copyNumber") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| ApiError::bad_attribute("copyNumber", "must be a positive integer")),
    }
}

/// Sets the expiration of an image's copies (one copy, or all); journals an update and lets the expiry
/// task remove whatever is now due.
fn set_expiration(shared: &Shared, backup_id: &str, copy: Option<u32>, at: DateTime<Utc>) -> ApiResult<()> {
    let now = shared.now();
    let mut inner = shared.lock();
    let image = inner
        .images
        .get_mut(backup_id)
        .ok_or_else(|| ApiError::not_found(format!("The image {backup_id} was not found.")))?;
    let mut changed = false;
    for image_copy in image.copies.iter_mut().filter(|c| copy.is_none_or(|n| c.copy_number == n)) {
        image_copy.expiration = at;
        changed = true;
    }
    if !changed {
        return Err(ApiError::not_found(format!("The image {backup_id} has no copy {}.", copy.unwrap_or(0))));
    }
    let summary = image.summary();
    inner.record(now, EventKind::ImageUpdated(summary));
    shared.catalog_changed.notify_one();
    Ok(())
}

pub(crate) async fn patch_image(
    State(shared): State<Arc<Shared>>,
    _user: User,
    Path(backup_id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let body = json_body(&body)?;
    let attributes = data_attributes(&body, None)?;
    find_image(&shared, &backup_id)?;
    let expiration = parse_time(attributes, "expiration")?;
    let keyword = optional_str(attributes, "keyword")?;
    if expiration.is_none() && keyword.is_none() {
        return Err(ApiError::bad_request("Nothing to update: give expiration or keyword."));
    }
    if let Some(keyword) = keyword {
        let now = shared.now();
        let mut inner = shared.lock();
        if let Some(image) = inner.images.get_mut(&backup_id) {
            image.keyword = keyword.to_owned();
            let summary = image.summary();
            inner.record(now, EventKind::ImageUpdated(summary));
        }
    }
    if let Some(expiration) = expiration {
        set_expiration(&shared, &backup_id, copy_number(attributes)?, expiration)?;
    }
    Ok(empty(StatusCode::NO_CONTENT))
}

/// Expires an image now (all copies, or one with `copyNumber` in an optional body).
pub(crate) async fn expire_image(
    State(shared): State<Arc<Shared>>,
    _user: User,
    Path(backup_id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let copy = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let body = json_body(&body)?;
        copy_number(data_attributes(&body, None)?)?
    };
    expire_now(&shared, &backup_id, copy)?;
    Ok(empty(StatusCode::NO_CONTENT))
}

fn expire_now(shared: &Arc<Shared>, backup_id: &str, copy: Option<u32>) -> ApiResult<()> {
    let now = shared.now();
    let mut inner = shared.lock();
    if !inner.images.contains_key(backup_id) {
        return Err(ApiError::not_found(format!("The image {backup_id} was not found.")));
    }
    let removed = engine::remove_copies(
        shared,
        &mut inner,
        backup_id,
        |c| copy.is_none_or(|n| c.copy_number == n),
        now,
    );
    if !removed {
        return Err(ApiError::not_found(format!("The image {backup_id} has no copy {}.", copy.unwrap_or(0))));
    }
    Ok(())
}

/// `POST /catalog/expire-images`: `data.attributes.backupIds` (or `backupId`), optional `copyNumber`.
pub(crate) async fn expire_images(
    State(shared): State<Arc<Shared>>,
    _user: User,
    body: Bytes,
) -> ApiResult<Response> {
    let body = json_body(&body)?;
    let attributes = data_attributes(&body, None)?;
    let ids = backup_ids(attributes)?;
    let copy = copy_number(attributes)?;
    for id in &ids {
        find_image(&shared, id)?;
    }
    for id in &ids {
        expire_now(&shared, id, copy)?;
    }
    Ok(empty(StatusCode::NO_CONTENT))
}

fn backup_ids(attributes: &Value) -> ApiResult<Vec<String>> {
    if let Some(id) = optional_str(attributes, "backupId")? {
        return Ok(vec![id.to_owned()]);
    }
    let list = attributes
        .get("backupIds")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad_attribute("backupIds", "required: a list of backup ids"))?;
    let ids: Option<Vec<String>> = list.iter().map(|id| id.as_str().map(str::to_owned)).collect();
    let ids = ids
        .filter(|ids| !ids.is_empty())
        .ok_or_else(|| ApiError::bad_attribute("backupIds", "must be a non-empty list of strings"))?;
    Ok(ids)
}

/// `POST /catalog/images/update-expiration-date`: `backupId`, `date` (or `expiration`), optional
/// `copyNumber`; a date in the past expires the copies.
pub(crate) async fn update_expiration(
    State(shared): State<Arc<Shared>>,
    _user: User,
    body: Bytes,
) -> ApiResult<Response> {
    let body = json_body(&body)?;
    let attributes = data_attributes(&body, None)?;
    let ids = backup_ids(attributes)?;
    let at = match parse_time(attributes, "date")? {
        Some(at) => at,
        None => parse_time(attributes, "expiration")?
            .ok_or_else(|| ApiError::bad_attribute("date", "required"))?,
    };
    let copy = copy_number(attributes)?;
    for id in &ids {
        find_image(&shared, id)?;
    }
    for id in &ids {
        set_expiration(&shared, id, copy, at)?;
    }
    Ok(empty(StatusCode::NO_CONTENT))
}

//! `/catalog/images` and the image expiration calls.

use std::ops::RangeInclusive;
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
use crate::filter::{Field, Filter, Kind, Literal, Op, Sort, EQ, RANGE};
use crate::media::ApiVersion;
use crate::model::Image;
use crate::query::{OffsetPage, Params};
use crate::state::{Inner, Shared, MEDIA_SERVER};

/// Filterable image fields, from the 10.5 spec (plus `backupType`, which older clients send).
const IMAGE_FIELDS: &[Field] = &[
    Field { name: "backupTime", kind: Kind::Time, ops: RANGE },
    Field { name: "policyName", kind: Kind::Str, ops: &[Op::Eq, Op::Contains] },
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
    let day_ago = shared.now() - TimeDelta::hours(24);
    let (count, images) = if sort.field == "backupTime" {
        page_by_time(&shared.lock(), filter.as_ref(), day_ago, sort.descending, page)
    } else {
        page_sorted(&shared.lock(), filter.as_ref(), day_ago, sort, page)
    };
    let data = images.iter().map(|image| image_resource(&headers, image, version)).collect();
    let body = page.envelope_of_page(count, data, &link(&headers, "/catalog/images"), "");
    Ok(json(StatusCode::OK, body))
}

/// What a listing's filter asks of `backupTime`: the whole seconds it allows (`ge` and `le` bounds of a
/// conjunction), and whether anything else must still be checked on each image's attributes.
struct TimeBounds {
    seconds: RangeInclusive<i64>,
    rest: bool,
}

impl TimeBounds {
    /// The bounds of `filter`, or, when it says nothing of `backupTime`, the images of the last 24 hours
    /// (`day_ago` on): the listing's default.
    fn of(filter: Option<&Filter>, day_ago: DateTime<Utc>) -> Self {
        let mut bounds = Self { seconds: i64::MIN..=i64::MAX, rest: false };
        let Some(filter) = filter else {
            bounds.seconds = day_ago.timestamp()..=i64::MAX;
            return bounds;
        };
        bounds.narrow(filter);
        if !filter.mentions("backupTime") {
            bounds.seconds = day_ago.timestamp()..=*bounds.seconds.end();
        }
        bounds
    }

    fn narrow(&mut self, filter: &Filter) {
        let (low, high) = (*self.seconds.start(), *self.seconds.end());
        match filter {
            Filter::And(terms) => terms.iter().for_each(|term| self.narrow(term)),
            // A rendered `backupTime` is whole seconds: `ge t` holds from the second at or after t, `le t`
            // up to the second at or before it.
            Filter::Compare { field: "backupTime", op: Op::Ge, value: Literal::Time(at), .. } => {
                let ceiling = at.timestamp() + i64::from(at.timestamp_subsec_nanos() > 0);
                self.seconds = low.max(ceiling)..=high;
            }
            Filter::Compare { field: "backupTime", op: Op::Le, value: Literal::Time(at), .. } => {
                self.seconds = low..=high.min(at.timestamp());
            }
            _ => self.rest = true,
        }
    }
}

/// The images on `page` of those `filter` selects (the last 24 hours' when it names no `backupTime`), by
/// `backupTime`, and how many it selects: a walk of the catalog's time index that clones only the page.
fn page_by_time(
    inner: &Inner,
    filter: Option<&Filter>,
    day_ago: DateTime<Utc>,
    descending: bool,
    page: OffsetPage,
) -> (usize, Vec<Image>) {
    let bounds = TimeBounds::of(filter, day_ago);
    let default_window = filter.is_none_or(|filter| !filter.mentions("backupTime"));
    let on_page = page.offset..page.offset.saturating_add(page.limit);
    let mut count = 0;
    let mut images = Vec::new();
    for (seconds, backup_id) in inner.images.by_time(bounds.seconds.clone(), descending) {
        // The index holds whole seconds; the default window compares the exact time.
        let check_time = default_window && seconds == day_ago.timestamp();
        let image = (bounds.rest || check_time || on_page.contains(&count))
            .then(|| inner.images.get(backup_id))
            .flatten();
        if check_time && image.is_none_or(|image| image.backup_time < day_ago) {
            continue;
        }
        if bounds.rest {
            let Some(image) = image else { continue };
            if filter.is_some_and(|filter| !filter.matches(&image.attributes())) {
                continue;
            }
        }
        if on_page.contains(&count) {
            images.extend(image.cloned());
        }
        count += 1;
    }
    (count, images)
}

/// As [`page_by_time`] for any other sort: every selected image's attributes are rendered to order them.
fn page_sorted(
    inner: &Inner,
    filter: Option<&Filter>,
    day_ago: DateTime<Utc>,
    sort: Sort,
    page: OffsetPage,
) -> (usize, Vec<Image>) {
    let time_filtered = filter.is_some_and(|filter| filter.mentions("backupTime"));
    let mut rows: Vec<(&Image, Value)> = inner
        .images
        .values()
        .filter(|image| time_filtered || image.backup_time >= day_ago)
        .map(|image| (image, image.attributes()))
        .filter(|(_, attributes)| filter.is_none_or(|filter| filter.matches(attributes)))
        .collect();
    rows.sort_by(|(a_image, a), (b_image, b)| {
        sort.compare(a, b).then_with(|| a_image.backup_id.cmp(&b_image.backup_id))
    });
    let images = rows.iter().skip(page.offset).take(page.limit).map(|(image, _)| (*image).clone()).collect();
    (rows.len(), images)
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

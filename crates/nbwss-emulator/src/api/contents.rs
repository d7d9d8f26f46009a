//! The files of images, both ways the documents give:
//!
//! - `GET /catalog/image-contents?filter=clientName eq '...'`: the contents of a client's images in a
//!   backup time range (the last 24 hours unless the filter says), paged by offset;
//! - the asynchronous pages: `GET /catalog/images/{backupId}/contents` answers 202 with a `requestId`;
//!   each `GET /catalog/images/contents/{requestId}` returns the next page, and 404 once all were read
//!   (the request is then gone, as it is after 6 minutes without a call); `DELETE` drops it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::TimeDelta;
use serde_json::{json, Value};

use super::{empty, json, link, User};
use crate::clock::format_time;
use crate::contents::{entries, Entry};
use crate::error::{ApiError, ApiResult};
use crate::filter::{Field, Filter, Kind, Op, Sort, EQ, RANGE};
use crate::model::{job_policy_type, Image};
use crate::query::{OffsetPage, Params};
use crate::state::Shared;

/// A content request is dropped after this long without a call (the documents' 6 minutes).
pub(crate) const REQUEST_IDLE_LIMIT: Duration = Duration::from_secs(6 * 60);
/// The most content requests open at once; more are refused with 503 until some finish or expire.
pub(crate) const MAX_OPEN_REQUESTS: usize = 256;
/// The most entries one `page[disable]=true` answer holds.
const MAX_UNPAGED: usize = 10_000;

const FIELDS: &[Field] = &[
    Field { name: "backupTime", kind: Kind::Time, ops: RANGE },
    Field { name: "clientName", kind: Kind::Str, ops: EQ },
    Field { name: "workloadType", kind: Kind::Str, ops: EQ },
    Field { name: "policyType", kind: Kind::Str, ops: EQ },
    Field { name: "appType", kind: Kind::Str, ops: EQ },
    Field { name: "scheduleType", kind: Kind::Str, ops: EQ },
    Field { name: "path", kind: Kind::Str, ops: &[Op::Eq, Op::StartsWith] },
    Field { name: "fullPath", kind: Kind::Str, ops: &[Op::StartsWith] },
    Field { name: "name", kind: Kind::Str, ops: &[Op::Contains] },
    Field { name: "itemType", kind: Kind::Str, ops: EQ },
    Field { name: "providerGeneratedId", kind: Kind::Str, ops: EQ },
    Field { name: "keyword", kind: Kind::Str, ops: EQ },
    Field { name: "isTrueImage", kind: Kind::Bool, ops: EQ },
    Field { name: "isOptimized", kind: Kind::Bool, ops: EQ },
    Field { name: "isImpacted", kind: Kind::Bool, ops: EQ },
    Field { name: "destinationClient", kind: Kind::Str, ops: EQ },
];
const SORT_FIELDS: &[Field] = &[Field { name: "name", kind: Kind::Str, ops: EQ }];

/// An open asynchronous content request.
#[derive(Debug, Clone)]
pub(crate) struct ContentRequest {
    pub(crate) backup_id: String,
    pub(crate) limit: usize,
    pub(crate) offset: usize,
    pub(crate) last_used: Instant,
}

/// The image-contents entry attributes (documented names and types).
fn entry_attributes(image: &Image, entry: &Entry) -> Value {
    let vmware = image.policy_type.eq_ignore_ascii_case("vmware");
    let policy_type = match job_policy_type(&image.policy_type).as_str() {
        "WINDOWS" => "MS-WINDOWS".to_owned(),
        other => other.to_owned(),
    };
    let mut attributes = json!({
        "clientName": image.client_name,
        "policyName": image.policy_name,
        "policyType": policy_type,
        "scheduleType": image.attributes()["scheduleType"],
        "path": entry.parent(),
        "fullPath": entry.full_path,
        "name": entry.name(),
        "itemType": if entry.directory { "DIR" } else { "FILE" },
        "size": entry.size,
        "lastModifiedTime": format_time(entry.modified),
        "backupTime": format_time(image.backup_time),
        "keyword": image.keyword,
        "isTrueImage": false,
        "isOptimized": false,
        "isImpacted": false,
        "dataFormat": if vmware { "SNAPSHOT" } else { "TAR" },
        "nasProtocol": "NOT_DEFINED",
        "backupId": image.backup_id,
    });
    if vmware {
        attributes["workloadType"] = json!("vmware");
    }
    attributes
}

pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let params = Params::parse(query.as_deref())?;
    let text = params
        .get("filter")
        .ok_or_else(|| ApiError::bad_attribute("filter", "required: at least clientName eq '<client>'"))?;
    let filter = Filter::parse(text, FIELDS)?;
    let client = filter
        .equals("clientName")
        .ok_or_else(|| ApiError::bad_attribute("filter", "must say clientName eq '<client>'"))?
        .to_owned();
    let sort = Sort::parse_list(params.get("sort"), SORT_FIELDS, &[])?;
    let unpaged = params.flag("page[disable]")?.unwrap_or(false);
    let page = if unpaged {
        OffsetPage { offset: 0, limit: MAX_UNPAGED }
    } else {
        OffsetPage::from_params_with_default(&params, 1, 100, 100)?
    };
    let now = shared.now();
    let day_ago = now - TimeDelta::hours(24);
    let mut images: Vec<Image> = {
        let inner = shared.lock();
        inner
            .images
            .values()
            .filter(|image| image.client_name == client)
            .filter(|image| {
                filter.mentions("backupTime") || (image.backup_time >= day_ago && image.backup_time <= now)
            })
            .cloned()
            .collect()
    };
    images.sort_by(|a, b| b.backup_time.cmp(&a.backup_time).then_with(|| a.backup_id.cmp(&b.backup_id)));
    let mut rows: Vec<Value> = images
        .iter()
        .flat_map(|image| entries(image).into_iter().map(move |entry| entry_attributes(image, &entry)))
        .filter(|attributes| filter.matches(attributes))
        .collect();
    rows.sort_by(|a, b| Sort::compare_all(&sort, a, b));
    let body = page.envelope(
        rows,
        &link(&headers, "/catalog/image-contents"),
        |attributes| {
            let mut attributes = attributes.clone();
            let id = format!(
                "{}:{}",
                attributes["backupId"].as_str().unwrap_or_default(),
                attributes["fullPath"].as_str().unwrap_or_default()
            );
            if let Some(object) = attributes.as_object_mut() {
                object.remove("backupId");
            }
            json!({"type": "imageContentListEntry", "id": id, "attributes": attributes})
        },
        &format!("&filter={}", super::encode_query(text)),
    );
    Ok(json(StatusCode::OK, body))
}

/// Drops requests idle for longer than [`REQUEST_IDLE_LIMIT`].
fn forget_idle(requests: &mut std::collections::BTreeMap<String, ContentRequest>) {
    requests.retain(|_, request| request.last_used.elapsed() < REQUEST_IDLE_LIMIT);
}

/// `GET /catalog/images/{backupId}/contents`: 202 with the id of a new content request.
pub(crate) async fn start_request(
    State(shared): State<Arc<Shared>>,
    _user: User,
    Path(backup_id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let params = Params::parse(query.as_deref())?;
    let limit = params.integer("page[limit]", 200, 10_000)?;
    if limit < 50 {
        return Err(ApiError::bad_attribute("page[limit]", "must be from 50 to 10000"));
    }
    // Rounded up to the next multiple of 50, as the documents say.
    let limit = usize::try_from(limit.div_ceil(50) * 50).unwrap_or(200);
    let mut inner = shared.lock();
    if !inner.images.contains_key(&backup_id) {
        return Err(ApiError::not_found(format!("No image has the backup id {backup_id:?}.")));
    }
    forget_idle(&mut inner.content_requests);
    if inner.content_requests.len() >= MAX_OPEN_REQUESTS {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            9015,
            format!("The server is busy: {MAX_OPEN_REQUESTS} content requests are open; read or delete one first."),
        ));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let request = ContentRequest { backup_id, limit, offset: 0, last_used: Instant::now() };
    inner.content_requests.insert(id.clone(), request);
    Ok(json(StatusCode::ACCEPTED, json!({"requestId": id})))
}

/// `GET /catalog/images/contents/{requestId}`: the next page; 404 once every entry was read.
pub(crate) async fn next_page(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    Path(request_id): Path<String>,
) -> ApiResult<Response> {
    let gone = || {
        ApiError::not_found(format!(
            "The content request {request_id} was not found, or all its pages were read."
        ))
    };
    let (image, request) = {
        let mut inner = shared.lock();
        forget_idle(&mut inner.content_requests);
        let request = inner.content_requests.get(&request_id).cloned().ok_or_else(gone)?;
        match inner.images.get(&request.backup_id).cloned() {
            Some(image) => (image, request),
            None => {
                inner.content_requests.remove(&request_id);
                return Err(gone());
            }
        }
    };
    let all = entries(&image);
    if request.offset >= all.len() {
        shared.lock().content_requests.remove(&request_id);
        return Err(gone());
    }
    let end = (request.offset + request.limit).min(all.len());
    let data: Vec<Value> = all[request.offset..end]
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let offset = (request.offset + index) as i64;
            json!({
                "type": "imageContents",
                "id": (request.offset + index).to_string(),
                "attributes": {
                    "blockNumber": offset * 8,
                    "deviceNumber": 2049,
                    "rawPartitionSize": 0,
                    "compressedFileSize": 0,
                    "fileSize": entry.size,
                    "filePath": entry.full_path,
                    "inImageFlag": 1,
                    "pathMode": if entry.directory { 16877 } else { 33188 },
                    "user": "root",
                    "group": "root",
                    "lastAccessTime": format_time(entry.modified),
                    "lastModifiedTime": format_time(entry.modified),
                    "inodeLastModified": format_time(entry.modified),
                },
            })
        })
        .collect();
    let count = all.len();
    let last = (count - 1) / request.limit * request.limit;
    let mut pagination =
        json!({"offset": request.offset, "limit": request.limit, "count": count, "first": 0, "last": last});
    if end < count {
        pagination["next"] = json!(end);
    }
    if request.offset > 0 {
        pagination["prev"] = json!(request.offset.saturating_sub(request.limit));
    }
    if let Some(open) = shared.lock().content_requests.get_mut(&request_id) {
        open.offset = end;
        open.last_used = Instant::now();
    }
    let next = link(&headers, &format!("/catalog/images/contents/{request_id}"));
    Ok(json(
        StatusCode::OK,
        json!({"data": data, "meta": {"pagination": pagination}, "links": {"next": {"href": next}}}),
    ))
}

/// `DELETE /catalog/images/contents/{requestId}`: drops the request.
pub(crate) async fn delete_request(
    State(shared): State<Arc<Shared>>,
    _user: User,
    Path(request_id): Path<String>,
) -> ApiResult<Response> {
    let mut inner = shared.lock();
    forget_idle(&mut inner.content_requests);
    inner
        .content_requests
        .remove(&request_id)
        .ok_or_else(|| ApiError::not_found(format!("The content request {request_id} was not found.")))?;
    Ok(empty(StatusCode::NO_CONTENT))
}

//! `/admin/jobs` and `/admin/manual-backup`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{data_attributes, empty, json, json_body, link, optional_str, required_str, version_of, User};
use crate::clock::format_time;
use crate::engine;
use crate::error::{ApiError, ApiResult};
use crate::filter::{Field, Filter, Kind, Sort, EQ, EQ_NE, FUNCTIONS, ORDERED, TEXT};
use crate::model::{status_message, Job, JobState, JobTry};
use crate::query::{OffsetPage, Params};
use crate::state::Shared;

/// Filterable (and sortable) job fields, from the 10.5 spec.
const JOB_FIELDS: &[Field] = &[
    Field { name: "jobId", kind: Kind::Int, ops: ORDERED },
    Field { name: "parentJobId", kind: Kind::Int, ops: ORDERED },
    Field { name: "status", kind: Kind::Int, ops: ORDERED },
    Field { name: "transferRate", kind: Kind::Int, ops: ORDERED },
    Field { name: "kilobytesTransferred", kind: Kind::Int, ops: ORDERED },
    Field { name: "percentComplete", kind: Kind::Int, ops: ORDERED },
    Field { name: "try", kind: Kind::Int, ops: ORDERED },
    Field { name: "priority", kind: Kind::Int, ops: ORDERED },
    Field { name: "startTime", kind: Kind::Time, ops: ORDERED },
    Field { name: "endTime", kind: Kind::Time, ops: ORDERED },
    Field { name: "lastUpdateTime", kind: Kind::Time, ops: ORDERED },
    Field { name: "activeTryStartTime", kind: Kind::Time, ops: ORDERED },
    Field { name: "state", kind: Kind::Str, ops: EQ_NE },
    Field { name: "jobType", kind: Kind::Str, ops: EQ_NE },
    Field { name: "policyType", kind: Kind::Str, ops: EQ_NE },
    Field { name: "clientName", kind: Kind::Str, ops: TEXT },
    Field { name: "scheduleName", kind: Kind::Str, ops: TEXT },
    Field { name: "workloadDisplayName", kind: Kind::Str, ops: TEXT },
    Field { name: "restoreBackupIDs", kind: Kind::Str, ops: TEXT },
    Field { name: "jobPath", kind: Kind::Str, ops: TEXT },
    Field { name: "destinationMediaServerName", kind: Kind::Str, ops: TEXT },
    Field { name: "sourceMediaServerName", kind: Kind::Str, ops: TEXT },
    Field { name: "policyName", kind: Kind::Str, ops: FUNCTIONS },
    Field { name: "backupId", kind: Kind::Str, ops: EQ },
    Field { name: "assetID", kind: Kind::Str, ops: EQ },
    Field { name: "jobOwner", kind: Kind::Str, ops: EQ },
    Field { name: "destinationStorageUnitName", kind: Kind::Str, ops: EQ },
];

const DEFAULT_SORT: Sort = Sort { field: "startTime", descending: true };
const MAX_LIMIT: u64 = 100;

fn job_resource(headers: &HeaderMap, attributes: Value, job_id: u64) -> Value {
    json!({
        "type": "job",
        "id": job_id.to_string(),
        "links": {
            "self": {"href": link(headers, &format!("/admin/jobs/{job_id}"))},
            "file-lists": {"href": link(headers, &format!("/admin/jobs/{job_id}/file-lists"))},
            "try-logs": {"href": link(headers, &format!("/admin/jobs/{job_id}/try-logs"))},
        },
        "attributes": attributes,
    })
}

/// A job id of the path; one that is not a number names no job, so it is a 404 like an unknown one (the
/// documents list no 400 for the job routes that read it).
fn parse_job_id(text: &str) -> ApiResult<u64> {
    text.parse().map_err(|_| ApiError::not_found(format!("No job has the id {text:?}.")))
}

fn cursor_of(job_id: u64) -> String {
    format!("{:x}", job_id ^ 0x5a5a_5a5a)
}

fn job_of_cursor(cursor: &str, key: &str) -> ApiResult<u64> {
    u64::from_str_radix(cursor, 16)
        .map(|value| value ^ 0x5a5a_5a5a)
        .map_err(|_| ApiError::bad_attribute(key, "not a valid cursor"))
}

pub(crate) async fn list_jobs(
    State(shared): State<Arc<Shared>>,
    _user: User,
    extensions: Extensions,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let version = version_of(&extensions, &shared);
    let params = Params::parse(query.as_deref())?;
    let filter = params.get("filter").map(|text| Filter::parse(text, JOB_FIELDS)).transpose()?;
    let sort = Sort::parse(params.get("sort"), JOB_FIELDS, DEFAULT_SORT)?;
    let now = shared.now();
    let mut rows: Vec<(u64, Value)> = {
        let inner = shared.lock();
        inner.jobs.values().map(|job| (job.job_id, job.attributes(version, now))).collect()
    };
    if let Some(filter) = &filter {
        rows.retain(|(_, attributes)| filter.matches(attributes));
    }
    rows.sort_by(|(a_id, a), (b_id, b)| {
        sort.compare(a, b).then_with(|| if sort.descending { b_id.cmp(a_id) } else { a_id.cmp(b_id) })
    });
    if version.cursor_jobs() {
        return cursor_page(&params, &headers, rows);
    }
    let page = OffsetPage::from_params(&params, 0, MAX_LIMIT)?;
    let body = page.envelope(
        rows,
        &link(&headers, "/admin/jobs"),
        |(id, attributes)| job_resource(&headers, attributes.clone(), *id),
        "",
    );
    Ok(json(StatusCode::OK, body))
}

/// Cursor pagination of `GET /admin/jobs` from version 9.0: opaque string cursors per job.
fn cursor_page(params: &Params, headers: &HeaderMap, rows: Vec<(u64, Value)>) -> ApiResult<Response> {
    let limit = usize::try_from(params.integer("page[limit]", 10, MAX_LIMIT)?).unwrap_or(10);
    let position = |key: &str| -> ApiResult<Option<usize>> {
        let Some(cursor) = params.get(key) else { return Ok(None) };
        let job_id = job_of_cursor(cursor, key)?;
        rows.iter()
            .position(|(id, _)| *id == job_id)
            .map(Some)
            .ok_or_else(|| ApiError::bad_attribute(key, "the cursor does not name a job in this list"))
    };
    let (start, end) = match (position("page[after]")?, position("page[before]")?) {
        (Some(after), _) => (after + 1, (after + 1 + limit).min(rows.len())),
        (None, Some(before)) => (before.saturating_sub(limit), before),
        (None, None) => (0, limit.min(rows.len())),
    };
    let base = link(headers, "/admin/jobs");
    let data: Vec<Value> = rows[start..end]
        .iter()
        .map(|(id, attributes)| {
            let mut resource = job_resource(headers, attributes.clone(), *id);
            resource["meta"] = json!({"page": {"cursor": cursor_of(*id)}});
            resource
        })
        .collect();
    let mut pagination = json!({"limit": limit, "rangeTruncated": false});
    let mut links = json!({
        "self": {"href": format!("{base}?page[limit]={limit}")},
        "first": {"href": format!("{base}?page[limit]={limit}")},
    });
    if end < rows.len() && end > start {
        let next = cursor_of(rows[end - 1].0);
        links["next"] = json!({"href": format!("{base}?page[after]={next}&page[limit]={limit}")});
        pagination["next"] = json!(next);
    }
    if start > 0 && start < rows.len() {
        let prev = cursor_of(rows[start].0);
        links["prev"] = json!({"href": format!("{base}?page[before]={prev}&page[limit]={limit}")});
        pagination["prev"] = json!(prev);
    }
    Ok(json(StatusCode::OK, json!({"data": data, "links": links, "meta": {"pagination": pagination}})))
}

fn with_job<T>(shared: &Shared, job_id: &str, read: impl FnOnce(&Job) -> T) -> ApiResult<T> {
    let job_id = parse_job_id(job_id)?;
    let inner = shared.lock();
    let job =
        inner.jobs.get(&job_id).ok_or_else(|| ApiError::not_found(format!("Job {job_id} was not found.")))?;
    Ok(read(job))
}

pub(crate) async fn get_job(
    State(shared): State<Arc<Shared>>,
    _user: User,
    extensions: Extensions,
    headers: HeaderMap,
    Path(job_id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let version = version_of(&extensions, &shared);
    let now = shared.now();
    let (id, attributes) = with_job(&shared, &job_id, |job| (job.job_id, job.attributes(version, now)))?;
    let mut resource = job_resource(&headers, attributes, id);
    let params = Params::parse(query.as_deref())?;
    if params.get("meta").is_some_and(|meta| meta.split(',').any(|m| m == "accessControlId")) {
        resource["meta"] = json!({"accessControlId": format!("NBU-JOB-{id}")});
    }
    Ok(json(StatusCode::OK, json!({"data": resource})))
}

pub(crate) async fn delete_job(
    State(shared): State<Arc<Shared>>,
    _user: User,
    Path(job_id): Path<String>,
) -> ApiResult<Response> {
    let job_id = parse_job_id(&job_id)?;
    let now = shared.now();
    let mut inner = shared.lock();
    let job =
        inner.jobs.get(&job_id).ok_or_else(|| ApiError::not_found(format!("Job {job_id} was not found.")))?;
    if job.state != JobState::Done {
        return Err(ApiError::bad_request(format!("Job {job_id} is not done and cannot be deleted.")));
    }
    if let Some(job) = inner.jobs.remove(&job_id) {
        inner.record(now, crate::event::EventKind::JobDeleted(job.summary()));
    }
    Ok(empty(StatusCode::ACCEPTED))
}

pub(crate) async fn cancel_job(
    State(shared): State<Arc<Shared>>,
    _user: User,
    Path(job_id): Path<String>,
) -> ApiResult<Response> {
    engine::cancel_job(&shared, parse_job_id(&job_id)?)?;
    Ok(empty(StatusCode::ACCEPTED))
}

pub(crate) async fn suspend_job(
    State(shared): State<Arc<Shared>>,
    _user: User,
    Path(job_id): Path<String>,
) -> ApiResult<Response> {
    engine::suspend_job(&shared, parse_job_id(&job_id)?, true)?;
    Ok(empty(StatusCode::ACCEPTED))
}

pub(crate) async fn resume_job(
    State(shared): State<Arc<Shared>>,
    _user: User,
    Path(job_id): Path<String>,
) -> ApiResult<Response> {
    engine::suspend_job(&shared, parse_job_id(&job_id)?, false)?;
    Ok(empty(StatusCode::ACCEPTED))
}

pub(crate) async fn restart_job(
    State(shared): State<Arc<Shared>>,
    _user: User,
    Path(job_id): Path<String>,
) -> ApiResult<Response> {
    engine::restart_job(&shared, parse_job_id(&job_id)?)?;
    Ok(empty(StatusCode::ACCEPTED))
}

pub(crate) async fn file_lists(
    State(shared): State<Arc<Shared>>,
    _user: User,
    Path(job_id): Path<String>,
) -> ApiResult<Response> {
    let (id, files) = with_job(&shared, &job_id, |job| (job.job_id, job.file_list.clone()))?;
    Ok(json(
        StatusCode::OK,
        json!({"data": {"type": "fileList", "id": id, "attributes": {"fileList": files}}}),
    ))
}

/// The time a try that has not ended shows as its end: NetBackup keeps 0 there, and the documents require
/// a date-time.
const NOT_ENDED: &str = "1970-01-01T00:00:00.000Z";

/// One try of a job as `try-logs` shows it: the try's outcome and the progress-log lines written during
/// it (`tryLog`).
fn try_resource(job: &Job, attempt: &JobTry) -> Value {
    let seconds = attempt.end.map(|end| (end - attempt.start).num_seconds()).unwrap_or(0).max(1);
    let ended = attempt.end.unwrap_or(DateTime::<Utc>::MAX_UTC);
    let lines: Vec<Value> = job
        .progress_log
        .iter()
        .filter(|(at, _)| *at >= attempt.start && *at <= ended)
        .map(|(at, message)| json!({"timestamp": format_time(*at), "severity": "INFO", "message": message}))
        .collect();
    json!({
        "type": "parsedTryLogResponse",
        "id": format!("{}-{}", job.job_id, attempt.number),
        "attributes": {
            "tryJobId": job.job_id,
            "tryNumber": attempt.number,
            "tryStartTime": format_time(attempt.start),
            "tryEndTime": attempt.end.map_or_else(|| NOT_ENDED.to_owned(), format_time),
            "tryStatusCode": attempt.status,
            "tryStatusMessage": status_message(attempt.status),
            "tryProcessId": 3000 + job.job_id % 5000,
            "tryKbps": job.kilobytes_transferred / seconds,
            "tryKbWritten": job.kilobytes_transferred,
            "tryFilesWritten": job.number_of_files,
            "tryMediaServer": job.media_server,
            "trySourceStorageUnit": "",
            "tryDestinationStorageUnit": job.storage_unit,
            "tryTransportMode": "LAN",
            "tryLog": lines,
        },
    })
}

pub(crate) async fn try_logs(
    State(shared): State<Arc<Shared>>,
    _user: User,
    Path(job_id): Path<String>,
) -> ApiResult<Response> {
    let data = with_job(&shared, &job_id, |job| {
        job.tries.iter().map(|attempt| try_resource(job, attempt)).collect::<Vec<_>>()
    })?;
    Ok(json(StatusCode::OK, json!({"data": data})))
}

/// `GET /admin/jobs/{jobId}/try-logs/{attempt}`: one try, by its number.
pub(crate) async fn try_log(
    State(shared): State<Arc<Shared>>,
    _user: User,
    Path((job_id, attempt)): Path<(String, String)>,
) -> ApiResult<Response> {
    let resource = with_job(&shared, &job_id, |job| {
        job.tries
            .iter()
            .find(|candidate| candidate.number.to_string() == attempt)
            .map(|found| try_resource(job, found))
    })?
    .ok_or_else(|| ApiError::not_found(format!("Job {job_id} has no try {attempt:?}.")))?;
    Ok(json(StatusCode::OK, json!({"data": resource})))
}

/// `GET /admin/jobs/{jobId}/progress-logs`: the job's log lines, paged by offset (`page[limit]` 1 to 100,
/// default 10); each entry's `id` is its offset in the log.
pub(crate) async fn progress_logs(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    Path(job_id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let params = Params::parse(query.as_deref())?;
    let page = OffsetPage::from_params(&params, 1, MAX_LIMIT)?;
    let (id, lines) = with_job(&shared, &job_id, |job| (job.job_id, job.progress_log.clone()))?;
    let entries: Vec<(usize, (DateTime<Utc>, String))> = lines.into_iter().enumerate().collect();
    let body = page.envelope(
        entries,
        &link(&headers, &format!("/admin/jobs/{id}/progress-logs")),
        |(offset, (at, message))| {
            json!({
                "type": "getJobProgressEntryResponse",
                "id": offset,
                "attributes": {"message": message, "timestamp": format_time(*at)},
            })
        },
        "",
    );
    Ok(json(StatusCode::OK, body))
}

pub(crate) async fn manual_backup(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let body = json_body(&body)?;
    let attributes = data_attributes(&body, Some("backupRequest"))?;
    let policy = required_str(attributes, "policyName")?;
    let schedule = optional_str(attributes, "scheduleName")?;
    let client = optional_str(attributes, "clientName")?;
    let started = engine::start_backup(&shared, policy, schedule, client, "IMMEDIATE")?;
    let data: Vec<Value> = started
        .iter()
        .map(|id| {
            json!({
                "type": "job",
                "id": id.to_string(),
                "links": {"self": {"href": link(&headers, &format!("/admin/jobs/{id}"))}},
                "attributes": {"jobId": id},
            })
        })
        .collect();
    Ok(json(StatusCode::ACCEPTED, json!({"data": data})))
}

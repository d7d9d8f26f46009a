//! `/eventlog/notifications`: the event log (see `eventlog.rs`), listed newest first with the documented
//! filters, and notifications posted by clients.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::{json, json_body, link, Listing, User};
use crate::clock::format_time;
use crate::error::{ApiError, ApiResult};
use crate::eventlog::posted;
use crate::filter::{Field, Kind, Logic, Sort, EQ, EQ_NE, ORDERED, TEXT_ALL};
use crate::query::Params;
use crate::shape::{take_object, Shape};
use crate::state::Shared;

/// The most notifications one POST may carry.
const MAX_POSTED: usize = 100;

/// The filterable fields; of `extendedAttributes/{name}`, those journal notifications carry.
const FIELDS: &[Field] = &[
    Field { name: "id", kind: Kind::Str, ops: TEXT_ALL },
    Field { name: "priority", kind: Kind::Str, ops: EQ_NE },
    Field { name: "severity", kind: Kind::Str, ops: EQ_NE },
    Field { name: "createdDateTime", kind: Kind::Time, ops: ORDERED },
    Field { name: "notificationType", kind: Kind::Str, ops: TEXT_ALL },
    Field { name: "notificationId", kind: Kind::Str, ops: TEXT_ALL },
    Field { name: "producerName", kind: Kind::Str, ops: TEXT_ALL },
    Field { name: "producerId", kind: Kind::Str, ops: TEXT_ALL },
    Field { name: "producerType", kind: Kind::Str, ops: TEXT_ALL },
    Field { name: "producerSubType", kind: Kind::Str, ops: TEXT_ALL },
    Field { name: "extendedAttributes/jobId", kind: Kind::Str, ops: TEXT_ALL },
    Field { name: "extendedAttributes/parentJobId", kind: Kind::Str, ops: TEXT_ALL },
    Field { name: "extendedAttributes/jobType", kind: Kind::Str, ops: TEXT_ALL },
    Field { name: "extendedAttributes/state", kind: Kind::Str, ops: TEXT_ALL },
    Field { name: "extendedAttributes/status", kind: Kind::Str, ops: TEXT_ALL },
    Field { name: "extendedAttributes/policyName", kind: Kind::Str, ops: TEXT_ALL },
    Field { name: "extendedAttributes/clientName", kind: Kind::Str, ops: TEXT_ALL },
    Field { name: "extendedAttributes/backupId", kind: Kind::Str, ops: TEXT_ALL },
];
const SORT_FIELDS: &[Field] = &[
    Field { name: "severity", kind: Kind::Str, ops: EQ },
    Field { name: "createdDateTime", kind: Kind::Time, ops: EQ },
    Field { name: "notificationType", kind: Kind::Str, ops: EQ },
    Field { name: "producerType", kind: Kind::Str, ops: EQ },
    Field { name: "producerId", kind: Kind::Str, ops: EQ },
    Field { name: "producerName", kind: Kind::Str, ops: EQ },
    Field { name: "producerSubType", kind: Kind::Str, ops: EQ },
    Field { name: "id", kind: Kind::Int, ops: EQ },
    Field { name: "priority", kind: Kind::Str, ops: EQ },
];
const LISTING: Listing = Listing {
    fields: FIELDS,
    sort_fields: SORT_FIELDS,
    logic: Logic::And,
    default_sort: &[
        Sort { field: "createdDateTime", descending: true },
        Sort { field: "id", descending: true },
    ],
    max_limit: 100,
};

const SEVERITIES: &[&str] = &["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "RCA"];
const REQUEST: &[(&str, Shape)] = &[
    ("version", Shape::Str),
    ("priority", Shape::Enum(&["LOW", "MEDIUM", "HIGH"])),
    ("severity", Shape::Enum(SEVERITIES)),
    ("createdDateTime", Shape::Str),
    ("notificationType", Shape::Str),
    ("notificationId", Shape::Str),
    ("producerName", Shape::Str),
    ("producerId", Shape::Str),
    ("producerType", Shape::Str),
    ("producerSubType", Shape::Str),
    ("messageKey", Shape::Str),
    ("displayString", Shape::Str),
    ("namespace", Shape::Str),
    ("rbac", Shape::Object(&[])),
];
const REQUIRED: &[&str] =
    &["version", "createdDateTime", "notificationType", "producerName", "producerId", "producerType"];

pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let params = Params::parse(query.as_deref())?;
    let rows: Vec<(u64, Value)> = {
        let inner = shared.lock();
        inner
            .notifications
            .iter()
            .rev()
            .map(|notification| {
                let mut attributes = notification.attributes.clone();
                // A number, so that sorting by id is numeric (filters compare its text).
                attributes["id"] = json!(notification.id);
                (notification.id, attributes)
            })
            .collect()
    };
    let base = link(&headers, "/eventlog/notifications");
    let body = LISTING.list(&params, rows, &base, |id, attributes| {
        let mut attributes = attributes.clone();
        if let Some(object) = attributes.as_object_mut() {
            object.remove("id");
        }
        json!({
            "type": "notifications",
            "id": id.to_string(),
            "links": {"self": {"href": format!("{base}?filter=id%20eq%20'{id}'")}},
            "attributes": attributes,
        })
    })?;
    Ok(json(StatusCode::OK, body))
}

/// `POST /eventlog/notifications`: `data` is a list of `notificationRequest`s; 201 with one
/// `notificationResponse` each.
pub(crate) async fn post(
    State(shared): State<Arc<Shared>>,
    _user: User,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let body = json_body(&body)?;
    let items = body
        .get("data")
        .and_then(Value::as_array)
        .filter(|items| !items.is_empty() && items.len() <= MAX_POSTED)
        .ok_or_else(|| {
            ApiError::bad_attribute("data", format!("required: a list of 1 to {MAX_POSTED} notifications"))
        })?;
    let mut accepted = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let at = |key: &str| format!("data[{index}].attributes.{key}");
        if item.get("type").is_some_and(|kind| kind != "notificationRequest") {
            return Err(ApiError::bad_attribute(
                &format!("data[{index}].type"),
                "must be \"notificationRequest\"",
            ));
        }
        let attributes = item.get("attributes").and_then(Value::as_object).ok_or_else(|| {
            ApiError::bad_attribute(&format!("data[{index}].attributes"), "required: an object")
        })?;
        let mut kept: Map<String, Value> =
            take_object(attributes, REQUEST, &format!("data[{index}].attributes"))?;
        for key in REQUIRED {
            if kept.get(*key).and_then(Value::as_str).is_none() {
                return Err(ApiError::bad_attribute(&at(key), "required"));
            }
        }
        let created = kept.get("createdDateTime").and_then(Value::as_str).unwrap_or_default();
        let created = chrono::DateTime::parse_from_rfc3339(created)
            .map_err(|_| ApiError::bad_attribute(&at("createdDateTime"), "must be an ISO 8601 date-time"))?;
        kept.insert("createdDateTime".into(), json!(format_time(created.with_timezone(&chrono::Utc))));
        let extended = attributes
            .get("extendedAttributes")
            .and_then(Value::as_object)
            .ok_or_else(|| ApiError::bad_attribute(&at("extendedAttributes"), "required: an object"))?;
        if extended.len() > 100 || serde_json::to_string(extended).map_or(0, |text| text.len()) > 16 * 1024 {
            return Err(ApiError::bad_attribute(
                &at("extendedAttributes"),
                "at most 100 attributes and 16 KiB",
            ));
        }
        kept.insert("extendedAttributes".into(), Value::Object(extended.clone()));
        kept.entry("severity").or_insert(json!("INFO"));
        kept.entry("priority").or_insert(json!("LOW"));
        accepted.push(kept);
    }
    let now = shared.now();
    let mut inner = shared.lock();
    let base = link(&headers, "/eventlog/notifications");
    let data: Vec<Value> = accepted
        .into_iter()
        .map(|kept| {
            let summary: Map<String, Value> = kept
                .iter()
                .filter(|(key, _)| REQUIRED.contains(&key.as_str()))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            let id = inner.notify(posted(Value::Object(kept), now));
            json!({
                "type": "notificationResponse",
                "id": id.to_string(),
                "links": {"self": {"href": format!("{base}?filter=id%20eq%20'{id}'")}},
                "attributes": summary,
            })
        })
        .collect();
    Ok(json(StatusCode::CREATED, json!({"data": data})))
}

//! Local ingest: records given by NetBackup's own notify scripts (`bpstart_notify`, `bpend_notify`,
//! `backup_notify`) through `nbwss notify`, validated strictly before they enter the outbox.
//!
//! Accepted JSON: one record, an array of records, one payload element
//! (`{"notificationType", "object", "data": [...]}`) or an array of them. A bare record's object is told by
//! its keys (`jobId`, `jobType` → JOB; `backupId`, `operationId` → IMAGE).

use nbwss_protocol::{
    ErrorBody, ImageOperation, ImageRecord, JobRecord, JobState, NotificationGroup, ScheduleType, IMAGE_KEYS,
    JOB_KEYS,
};
use serde_json::Value;

use super::Record;

/// Parses and validates records from JSON text.
pub fn parse_records(text: &str) -> Result<Vec<Record>, String> {
    let value: Value = serde_json::from_str(text).map_err(|error| format!("not JSON: {error}"))?;
    let elements: Vec<Value> = match value {
        Value::Array(items) => items,
        single => vec![single],
    };
    if elements.is_empty() {
        return Err("no records given".to_owned());
    }
    // The wire shapes are the protocol crate's: a payload element or a bare record is decoded by it, after
    // the strict key check local ingest adds (exactly the guide's keys).
    let mut records = Vec::new();
    for (index, element) in elements.iter().enumerate() {
        let at = format!("[{index}]");
        let object = element.as_object().ok_or_else(|| format!("{at}: must be a JSON object"))?;
        if object.contains_key("data") {
            let keys: &[(&str, bool)] = match element["object"].as_str().unwrap_or_default() {
                "JOB" => &JOB_KEYS,
                "IMAGE" => &IMAGE_KEYS,
                other => return Err(format!("{at}.object: must be JOB or IMAGE, not {other:?}")),
            };
            for (position, record) in element["data"].as_array().into_iter().flatten().enumerate() {
                check_keys(record, keys).map_err(|problem| format!("{at}.data[{position}]: {problem}"))?;
            }
            match NotificationGroup::decode_element(element, &at).map_err(|error| error.to_string())? {
                NotificationGroup::Jobs { records: jobs, .. } => {
                    records.extend(jobs.into_iter().map(Record::Job))
                }
                NotificationGroup::Images { records: images, .. } => {
                    records.extend(images.into_iter().map(Record::Image));
                }
                NotificationGroup::Other { object, .. } => {
                    return Err(format!("{at}: unknown object {object}"))
                }
            }
        } else if ["jobId", "jobType", "parentJobId"].iter().any(|key| object.contains_key(*key)) {
            check_keys(element, &JOB_KEYS).map_err(|problem| format!("{at}: {problem}"))?;
            records
                .push(Record::Job(JobRecord::decode_value(element, &at).map_err(|error| error.to_string())?));
        } else if ["backupId", "operationId"].iter().any(|key| object.contains_key(*key)) {
            check_keys(element, &IMAGE_KEYS).map_err(|problem| format!("{at}: {problem}"))?;
            records.push(Record::Image(
                ImageRecord::decode_value(element, &at).map_err(|error| error.to_string())?,
            ));
        } else {
            return Err(format!("{at}: neither a JOB record (jobId) nor an IMAGE record (backupId)"));
        }
    }
    for record in &records {
        validate(record)?;
    }
    Ok(records)
}

fn check_keys(record: &Value, keys: &[(&str, bool)]) -> Result<(), String> {
    let object = record.as_object().ok_or("must be a JSON object")?;
    let names: Vec<&str> = keys.iter().map(|(key, _)| *key).collect();
    if let Some(missing) = names.iter().find(|key| !object.contains_key(**key)) {
        return Err(format!("{missing} is missing (a record carries exactly: {})", names.join(", ")));
    }
    if let Some(extra) = object.keys().find(|key| !names.contains(&key.as_str())) {
        return Err(format!(
            "{extra} is not a key of this record (a record carries exactly: {})",
            names.join(", ")
        ));
    }
    Ok(())
}

/// Checks what the wire types cannot: the values D14 allows.
pub fn validate(record: &Record) -> Result<(), String> {
    match record {
        Record::Job(job) => validate_job(job),
        Record::Image(image) => validate_image(image),
    }
}

fn validate_job(job: &JobRecord) -> Result<(), String> {
    let at = |problem: String| format!("JOB {}: {problem}", job.job_id);
    if job.job_id <= 0 || job.parent_job_id <= 0 {
        return Err(at(
            "jobId and parentJobId must be positive (parentJobId = jobId for a top-level job)".into()
        ));
    }
    if matches!(job.state, JobState::Other(_)) {
        return Err(at(format!("state {} must be one of QUEUED, ACTIVE, DONE", job.state)));
    }
    if let ScheduleType::Other(other) = &job.schedule_type {
        return Err(at(format!("scheduleType {other} must be one of {}", ScheduleType::known().join(", "))));
    }
    if job.job_type.as_str().is_empty() || job.job_type.as_str() != job.job_type.as_str().to_ascii_uppercase()
    {
        return Err(at(format!(
            "jobType {:?} must be upper case (BACKUP, RESTORE, ...)",
            job.job_type.as_str()
        )));
    }
    if job.policy_type.is_empty() || job.policy_type != job.policy_type.to_ascii_uppercase() {
        return Err(at(format!(
            "policyType {:?} must be upper case (STANDARD, VMWARE, ...)",
            job.policy_type
        )));
    }
    if job.start_time < 0 {
        return Err(at("startTime must be Unix seconds".into()));
    }
    Ok(())
}

fn validate_image(image: &ImageRecord) -> Result<(), String> {
    let at = |problem: String| format!("IMAGE {}: {problem}", image.backup_id);
    if matches!(image.operation_id, ImageOperation::Other(_)) {
        return Err(at(format!(
            "operationId {} must be one of {}",
            image.operation_id,
            ImageOperation::known().join(", ")
        )));
    }
    if image.client_type.is_empty() || image.client_type != image.client_type.to_ascii_uppercase() {
        return Err(at(format!(
            "clientType {:?} must be upper case (STANDARD, VMWARE, ...)",
            image.client_type
        )));
    }
    if image.backup_time <= 0 || image.created_time <= 0 {
        return Err(at("backupTime and createdTime must be Unix seconds".into()));
    }
    let expected = format!("{}_{}", image.client_name, image.backup_time);
    if image.backup_id != expected {
        return Err(at(format!("backupId must be <clientName>_<backupTime>, here {expected}")));
    }
    Ok(())
}

/// Path of the admin API call that enqueues records (`POST`, body as for `nbwss notify --file`).
pub const INGEST_PATH: &str = "/nbwss/notifications";

/// The admin API route of local ingest, for the admin router (behind its authentication). The outbox comes
/// from an `axum::Extension<Arc<Outbox>>` layered on the admin app.
pub fn routes<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    axum::Router::new().route(INGEST_PATH, axum::routing::post(enqueue))
}

/// What `POST /nbwss/notifications` answers: `{"enqueued": N}` (201), or NetBackup's error body.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum EnqueueAnswer {
    Enqueued { enqueued: usize },
    Error(ErrorBody),
}

async fn enqueue(
    outbox: Option<axum::Extension<std::sync::Arc<super::Outbox>>>,
    body: String,
) -> (axum::http::StatusCode, axum::Json<EnqueueAnswer>) {
    use axum::http::StatusCode;
    let error = |status: StatusCode, message: &str, detail: String| {
        let body = ErrorBody {
            error_code: i64::from(status.as_u16()),
            error_message: message.to_owned(),
            error_details: Some(vec![detail]),
        };
        (status, axum::Json(EnqueueAnswer::Error(body)))
    };
    let Some(axum::Extension(outbox)) = outbox else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "Notifications are not running.", String::new());
    };
    let records = match parse_records(&body) {
        Ok(records) => records,
        Err(problem) => return error(StatusCode::BAD_REQUEST, "Invalid notification records.", problem),
    };
    match outbox.append(&records) {
        Ok(count) => (StatusCode::CREATED, axum::Json(EnqueueAnswer::Enqueued { enqueued: count })),
        Err(full @ super::OutboxError::Full { .. }) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "The notification outbox is full; try again later.",
            full.to_string(),
        ),
        Err(too_big @ super::OutboxError::RecordTooBig { .. }) => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "A notification record is too large to send.",
            too_big.to_string(),
        ),
        Err(other) => {
            tracing::error!(error = %other, "cannot enqueue notification records");
            error(StatusCode::INTERNAL_SERVER_ERROR, "Internal error; see the service log.", String::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = r#"{"scheduleType":"ST_FULL","clientName":"c1","status":0,"startTime":1459829674,
        "state":"ACTIVE","policyName":"p","parentJobId":144,"jobId":144,"policyType":"VMWARE","jobType":"BACKUP"}"#;
    const IMAGE: &str = r#"{"clientType":"STANDARD","clientName":"localhost","backupTime":1458601200,
        "createdTime":1459832492,"operationId":"DELETE","backupId":"localhost_1458601200"}"#;

    #[test]
    fn accepts_records_arrays_and_payload_elements_in_order() {
        assert_eq!(parse_records(JOB).unwrap().len(), 1);
        let records = parse_records(&format!("[{JOB},{IMAGE}]")).unwrap();
        assert!(matches!(records[0], Record::Job(_)) && matches!(records[1], Record::Image(_)));
        let element = format!(r#"{{"notificationType":"INFO","object":"IMAGE","data":[{IMAGE},{IMAGE}]}}"#);
        assert_eq!(parse_records(&element).unwrap().len(), 2);
    }

    #[test]
    fn refuses_what_d14_does_not_allow() {
        let cases = [
            (JOB.replace("\"ACTIVE\"", "\"RUNNING\""), "state RUNNING"),
            (JOB.replace("ST_FULL", "ST_WEEKLY"), "scheduleType ST_WEEKLY"),
            (JOB.replace("\"VMWARE\"", "\"VMware\""), "policyType"),
            (JOB.replace("\"jobId\":144,", ""), "jobId is missing"),
            (JOB.replace("\"status\":0", "\"status\":\"0\""), "status"),
            (JOB.replace("\"status\":0", "\"status\":0,\"extra\":1"), "extra is not a key"),
            (IMAGE.replace("DELETE", "REMOVE"), "operationId REMOVE"),
            (IMAGE.replace("localhost_1458601200", "other_1"), "backupId must be"),
            ("[]".to_owned(), "no records"),
            ("{\"x\":1}".to_owned(), "neither a JOB"),
        ];
        for (text, expected) in cases {
            let error = parse_records(&text).unwrap_err();
            assert!(error.contains(expected), "{error} does not say {expected}");
        }
    }
}

//! The event log (`/eventlog/notifications`): the emulator's own journal rendered as NetBackup event
//! notifications, one per journal event, plus the notifications clients post.
//!
//! Journal notifications have the `notificationType` of their event (`JOB_CREATED`, `JOB_STATE_CHANGED`,
//! `JOB_DONE`, `JOB_DELETED`, `IMAGE_CREATED`, `IMAGE_UPDATED`, `IMAGE_LOST_LAST_LOCAL_COPY`,
//! `IMAGE_DELETED`) and carry the job or image in `extendedAttributes`.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::asset::uuid_of;
use crate::clock::format_time;
use crate::event::{EmulatorEvent, EventKind};
use crate::state::PRIMARY_SERVER;

/// The most notifications kept; the oldest go first.
pub(crate) const MAX_NOTIFICATIONS: usize = 100_000;

/// One notification: its id and its attributes as `/eventlog/notifications` shows them.
#[derive(Debug, Clone)]
pub(crate) struct Notification {
    pub(crate) id: u64,
    pub(crate) attributes: Value,
}

/// The notification of a journal event.
pub(crate) fn of_event(event: &EmulatorEvent) -> Value {
    let (kind, severity, producer, display, extended) = match &event.kind {
        EventKind::JobCreated(job)
        | EventKind::JobStateChanged(job)
        | EventKind::JobDone(job)
        | EventKind::JobDeleted(job) => {
            let (kind, what) = match &event.kind {
                EventKind::JobCreated(_) => ("JOB_CREATED", format!("was created {}", job.state)),
                EventKind::JobStateChanged(_) => ("JOB_STATE_CHANGED", format!("is {}", job.state)),
                EventKind::JobDone(_) => ("JOB_DONE", format!("is done with status {}", job.status)),
                _ => ("JOB_DELETED", "was deleted".to_owned()),
            };
            let severity = match (kind, job.status) {
                ("JOB_DONE", 0) => "INFO",
                ("JOB_DONE", 1) => "WARNING",
                ("JOB_DONE", _) => "ERROR",
                _ => "INFO",
            };
            let display = format!("Job {} ({} of {}) {what}.", job.job_id, job.job_type, job.client_name);
            let extended = json!({
                "jobId": job.job_id.to_string(),
                "parentJobId": job.parent_job_id.to_string(),
                "jobType": job.job_type,
                "state": job.state,
                "status": job.status.to_string(),
                "policyName": job.policy_name,
                "clientName": job.client_name,
            });
            (kind, severity, "nbjm", display, extended)
        }
        EventKind::ImageCreated(image)
        | EventKind::ImageUpdated(image)
        | EventKind::ImageLostLastLocalCopy(image)
        | EventKind::ImageDeleted(image) => {
            let (kind, severity, what) = match &event.kind {
                EventKind::ImageCreated(_) => ("IMAGE_CREATED", "INFO", "was created"),
                EventKind::ImageUpdated(_) => ("IMAGE_UPDATED", "INFO", "was updated"),
                EventKind::ImageLostLastLocalCopy(_) => {
                    ("IMAGE_LOST_LAST_LOCAL_COPY", "WARNING", "lost its last local copy")
                }
                _ => ("IMAGE_DELETED", "INFO", "was deleted"),
            };
            let display = format!(
                "Image {} of {} {what}; {} copies left.",
                image.backup_id,
                image.client_name,
                image.copies.len()
            );
            let extended = json!({
                "backupId": image.backup_id,
                "clientName": image.client_name,
                "copies": image.copies.len().to_string(),
            });
            (kind, severity, "bpdbm", display, extended)
        }
    };
    let priority = match severity {
        "ERROR" => "HIGH",
        "WARNING" => "MEDIUM",
        _ => "LOW",
    };
    json!({
        "version": "1.0",
        "priority": priority,
        "severity": severity,
        "createdDateTime": format_time(event.at),
        "insertionDateTime": format_time(event.at),
        "notificationType": kind,
        "notificationId": uuid_of(&format!("event:{}", event.sequence)),
        "producerName": PRIMARY_SERVER,
        "producerId": uuid_of(PRIMARY_SERVER),
        "producerType": "PRIMARY_SERVER",
        "producerSubType": producer,
        "displayString": display,
        "namespace": if producer == "nbjm" { "|MANAGE|JOBS|" } else { "|MANAGE|IMAGES|" },
        "extendedAttributes": extended,
    })
}

/// The insertion time of a posted notification.
pub(crate) fn posted(mut attributes: Value, at: DateTime<Utc>) -> Value {
    attributes["insertionDateTime"] = json!(format_time(at));
    attributes
}

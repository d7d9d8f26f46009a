//! The emulator's own journal: what happened to jobs and images, in order.
//!
//! Tests read it to compute exactly which NBWSS notifications a watcher of this server should send. The
//! summaries carry the fields of the guide's JOB and IMAGE notification records.

use chrono::{DateTime, Utc};

/// One thing that happened on the emulated server.
#[derive(Debug, Clone, PartialEq)]
pub struct EmulatorEvent {
    /// Position in the journal, from 0.
    pub sequence: u64,
    /// Emulated time of the event.
    pub at: DateTime<Utc>,
    /// What happened.
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// A job appeared (seed jobs appear at start, in whatever state they have).
    JobCreated(JobSummary),
    /// A job moved to another state that is not DONE (QUEUED, ACTIVE, SUSPENDED, ...).
    JobStateChanged(JobSummary),
    /// A job reached DONE; `status` says how it ended.
    JobDone(JobSummary),
    /// A job was deleted from the job database.
    JobDeleted(JobSummary),
    /// A catalog image appeared.
    ImageCreated(ImageSummary),
    /// A catalog image changed: expiration, copies or other attributes.
    ImageUpdated(ImageSummary),
    /// A catalog image's last local copy expired while replica copies remain.
    ImageLostLastLocalCopy(ImageSummary),
    /// A catalog image was removed.
    ImageDeleted(ImageSummary),
}

/// The notification-relevant fields of a job at the moment of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSummary {
    /// Job id.
    pub job_id: u64,
    /// Parent job id; equal to `job_id` for a top-level job.
    pub parent_job_id: u64,
    /// `BACKUP`, `RESTORE`, `IMAGEDELETE`, ...
    pub job_type: String,
    /// Upper case policy type: `STANDARD`, `VMWARE`, ...
    pub policy_type: String,
    /// Policy name; empty for restores and image deletions.
    pub policy_name: String,
    /// Schedule name.
    pub schedule_name: String,
    /// Schedule type as NBWSS reports it: `ST_FULL`, `ST_INCR`, `ST_CINC`, `ST_UBAK`, `ST_UARC`.
    pub schedule_type: String,
    /// Client name.
    pub client_name: String,
    /// `QUEUED`, `ACTIVE`, `SUSPENDED`, `DONE`, ...
    pub state: String,
    /// NetBackup status code (0 = success); meaningful when `state` is DONE.
    pub status: i64,
    /// Start time, Unix seconds.
    pub start_time: i64,
}

/// The notification-relevant fields of an image at the moment of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// `client_unixtime`.
    pub backup_id: String,
    /// Client name.
    pub client_name: String,
    /// Upper case policy type of the image: `STANDARD`, `VMWARE`, ...
    pub client_type: String,
    /// Backup time, Unix seconds.
    pub backup_time: i64,
    /// Copies left after the event.
    pub copies: Vec<CopySummary>,
}

/// One copy of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySummary {
    /// Copy number, from 1.
    pub copy_number: u32,
    /// Whether this is a replica (Auto Image Replication) copy rather than a local one.
    pub replica: bool,
    /// Expiration, Unix seconds.
    pub expiration: i64,
}

//! The records the emulated primary server keeps: jobs, catalog images, policies, keys, alerts, hosts.
//!
//! Each record renders its own JSON attributes; filters and sorting work on those rendered attributes so
//! that what a client can filter on is exactly what it can see.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::clock::{format_duration, format_time};
use crate::event::{CopySummary, ImageSummary, JobSummary};
use crate::media::ApiVersion;

/// The state of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobState {
    Queued,
    Active,
    Suspended,
    Done,
}

impl JobState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "QUEUED",
            JobState::Active => "ACTIVE",
            JobState::Suspended => "SUSPENDED",
            JobState::Done => "DONE",
        }
    }
}

/// A schedule's kind, as jobs, images and notifications each spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScheduleKind {
    Full,
    DifferentialIncremental,
    CumulativeIncremental,
    UserBackup,
    UserArchive,
}

impl ScheduleKind {
    /// From a policy schedule's `backupType`.
    pub(crate) fn from_backup_type(backup_type: &str) -> Self {
        let lower = backup_type.to_ascii_lowercase();
        if lower.contains("cumulative") {
            ScheduleKind::CumulativeIncremental
        } else if lower.contains("incremental") {
            ScheduleKind::DifferentialIncremental
        } else if lower.contains("archive") {
            ScheduleKind::UserArchive
        } else if lower.contains("user") {
            ScheduleKind::UserBackup
        } else {
            ScheduleKind::Full
        }
    }

    fn job_name(self, version: ApiVersion) -> &'static str {
        let old = version.major < 3;
        match self {
            ScheduleKind::Full if old => "FULL",
            ScheduleKind::Full => "FULL_BACKUP",
            ScheduleKind::DifferentialIncremental => "DIFFERENTIAL_INCREMENTAL_BACKUP",
            ScheduleKind::CumulativeIncremental => "CUMULATIVE_INCREMENTAL_BACKUP",
            ScheduleKind::UserBackup => "USER_BACKUP",
            ScheduleKind::UserArchive => "USER_ARCHIVE",
        }
    }

    fn image_name(self) -> &'static str {
        match self {
            ScheduleKind::Full => "FULL",
            ScheduleKind::DifferentialIncremental => "DIFFERENTIAL_INCREMENTAL",
            ScheduleKind::CumulativeIncremental => "CUMULATIVE_INCREMENTAL",
            ScheduleKind::UserBackup => "USER_BACKUP",
            ScheduleKind::UserArchive => "USER_ARCHIVE",
        }
    }

    /// NetBackup's numeric schedule type (0 full, 1 differential, 2 user backup, 3 user archive, 4
    /// cumulative).
    fn number(self) -> i64 {
        match self {
            ScheduleKind::Full => 0,
            ScheduleKind::DifferentialIncremental => 1,
            ScheduleKind::UserBackup => 2,
            ScheduleKind::UserArchive => 3,
            ScheduleKind::CumulativeIncremental => 4,
        }
    }

    fn notification_name(self) -> &'static str {
        match self {
            ScheduleKind::Full => "ST_FULL",
            ScheduleKind::DifferentialIncremental => "ST_INCR",
            ScheduleKind::CumulativeIncremental => "ST_CINC",
            ScheduleKind::UserBackup => "ST_UBAK",
            ScheduleKind::UserArchive => "ST_UARC",
        }
    }
}

/// Upper case policy type as jobs report it, from a policy's display name.
pub(crate) fn job_policy_type(display: &str) -> String {
    match display.to_ascii_lowercase().as_str() {
        "ms-windows" | "ms-windows-nt" => "WINDOWS".to_owned(),
        "vmware" => "VMWARE".to_owned(),
        "hyper-v" => "HYPERV".to_owned(),
        "ms-sql-server" => "SQL_SERVER".to_owned(),
        "" => "STANDARD".to_owned(),
        other => other.to_ascii_uppercase().replace('-', "_"),
    }
}

/// One try of a job, for `try-logs`.
#[derive(Debug, Clone)]
pub(crate) struct JobTry {
    pub(crate) number: u32,
    pub(crate) start: DateTime<Utc>,
    pub(crate) end: Option<DateTime<Utc>>,
    pub(crate) status: i64,
}

/// A job in the activity monitor.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub(crate) job_id: u64,
    pub(crate) parent_job_id: u64,
    pub(crate) job_type: &'static str,
    pub(crate) job_sub_type: &'static str,
    pub(crate) policy_type: String,
    pub(crate) policy_name: String,
    pub(crate) schedule_kind: ScheduleKind,
    pub(crate) schedule_name: String,
    pub(crate) client_name: String,
    pub(crate) state: JobState,
    pub(crate) status: i64,
    pub(crate) start_time: DateTime<Utc>,
    pub(crate) end_time: Option<DateTime<Utc>>,
    pub(crate) last_update_time: DateTime<Utc>,
    pub(crate) active_start: Option<DateTime<Utc>>,
    pub(crate) kilobytes_to_transfer: i64,
    pub(crate) kilobytes_transferred: i64,
    pub(crate) estimated_files: i64,
    pub(crate) number_of_files: i64,
    pub(crate) percent_complete: i64,
    pub(crate) backup_id: String,
    pub(crate) restore_backup_ids: String,
    pub(crate) child_count: i64,
    pub(crate) file_list: Vec<String>,
    pub(crate) tries: Vec<JobTry>,
    pub(crate) progress_log: Vec<(DateTime<Utc>, String)>,
    pub(crate) media_server: String,
    pub(crate) storage_unit: String,
    /// The storage unit a duplication or replication reads from (empty for other jobs).
    pub(crate) source_storage_unit: String,
    /// The image copy the job writes (1 for backups, the new copy for duplications).
    pub(crate) copy_number: u32,
    pub(crate) job_owner: String,
    pub(crate) application_type: &'static str,
}

impl Job {
    pub(crate) fn summary(&self) -> JobSummary {
        JobSummary {
            job_id: self.job_id,
            parent_job_id: self.parent_job_id,
            job_type: self.job_type.to_owned(),
            policy_type: self.policy_type.clone(),
            policy_name: self.policy_name.clone(),
            schedule_name: self.schedule_name.clone(),
            schedule_type: self.schedule_kind.notification_name().to_owned(),
            client_name: self.client_name.clone(),
            state: self.state.as_str().to_owned(),
            status: self.status,
            start_time: self.start_time.timestamp(),
        }
    }

    pub(crate) fn log(&mut self, at: DateTime<Utc>, message: impl Into<String>) {
        self.progress_log.push((at, message.into()));
    }

    /// The job's attributes as `GET /admin/jobs` shows them, with times relative to `now`.
    pub(crate) fn attributes(&self, version: ApiVersion, now: DateTime<Utc>) -> Value {
        let end = self.end_time.unwrap_or(now);
        let elapsed = (end - self.start_time).num_seconds();
        let active_elapsed = self.active_start.map(|start| (end - start).num_seconds()).unwrap_or(0);
        let transfer_rate = if active_elapsed > 0 { self.kilobytes_transferred / active_elapsed } else { 0 };
        let running = self.state != JobState::Done;
        let flag = |on: bool| i64::from(on);
        let try_number = self.tries.len().max(1);
        let job_path = if self.parent_job_id == self.job_id {
            self.job_id.to_string()
        } else {
            format!("{}.{}", self.parent_job_id, self.job_id)
        };
        let mut attributes = json!({
            "jobId": self.job_id,
            "parentJobId": self.parent_job_id,
            "activeProcessId": if running { 4000 + self.job_id % 5000 } else { 0 },
            "mainProcessId": 3000 + self.job_id % 5000,
            "productType": 0,
            "jobType": self.job_type,
            "jobSubType": self.job_sub_type,
            "policyType": self.policy_type,
            "policyName": self.policy_name,
            "scheduleType": self.schedule_kind.job_name(version),
            "scheduleName": self.schedule_name,
            "clientName": self.client_name,
            "controlHost": self.client_name,
            "jobOwner": self.job_owner,
            "jobGroup": "root",
            "backupId": self.backup_id,
            "sourceMediaId": "",
            "sourceStorageUnitName": self.source_storage_unit,
            "sourceMediaServerName": if self.source_storage_unit.is_empty() { "" } else { self.media_server.as_str() },
            "destinationMediaId": "",
            "destinationStorageUnitName": self.storage_unit,
            "destinationMediaServerName": self.media_server,
            "dataMovement": "STANDARD",
            "streamNumber": 0,
            "copyNumber": self.copy_number,
            "priority": 0,
            "compression": 0,
            "status": self.status,
            "state": self.state.as_str(),
            "done": flag(!running),
            "numberOfFiles": self.number_of_files,
            "estimatedFiles": self.estimated_files,
            "kilobytesTransferred": self.kilobytes_transferred,
            "kilobytesToTransfer": self.kilobytes_to_transfer,
            "kilobytesDataTransferred": self.kilobytes_transferred,
            "transferRate": transfer_rate,
            "percentComplete": self.percent_complete,
            "currentFile": "",
            "restartable": flag(!running),
            "suspendable": flag(running && self.job_type == "BACKUP"),
            "resumable": flag(self.state == JobState::Suspended),
            "killable": flag(running),
            "cancellable": flag(running),
            "frozenImage": 0,
            "transportType": "LAN",
            "dedupRatio": 0.0,
            "currentOperation": if self.state == JobState::Active { 25 } else { 0 },
            "jobQueueReason": 0,
            "jobQueueResource": "",
            "robotName": "",
            "vaultName": "",
            "profileName": "",
            "sessionId": 0,
            "numberOfTapeToEject": 0,
            "submissionType": 0,
            "dumpHost": "",
            "instanceDatabaseName": "",
            "auditUserName": "",
            "auditDomainName": "",
            "auditDomainType": 0,
            "restoreBackupIDs": self.restore_backup_ids,
            "startTime": format_time(self.start_time),
            "elapsedTime": format_duration(elapsed),
            "activeElapsedTime": format_duration(active_elapsed),
            "retentionLevel": 1,
            "try": try_number,
            "childCount": self.child_count,
            "offHostType": "STANDARD",
            "applicationType": self.application_type,
            "dteMode": "OFF",
            "workloadDisplayName": self.client_name,
            "assetID": "",
            "assetDisplayableName": self.client_name,
            "jobPath": job_path,
            "lastUpdateTime": format_time(self.last_update_time),
        });
        if let Some(object) = attributes.as_object_mut() {
            if let Some(end_time) = self.end_time {
                object.insert("endTime".into(), format_time(end_time).into());
            }
            if let Some(active) = self.active_start {
                object.insert("activeTryStartTime".into(), format_time(active).into());
            }
        }
        attributes
    }
}

/// One copy of a catalog image.
#[derive(Debug, Clone)]
pub(crate) struct ImageCopy {
    pub(crate) copy_number: u32,
    pub(crate) replica: bool,
    pub(crate) expiration: DateTime<Utc>,
    /// The storage unit the copy was written to.
    pub(crate) storage: String,
    /// The disk pool of that storage unit when the copy was written (empty for a replica held by
    /// another primary server): a pool holding copies cannot be deleted.
    pub(crate) disk_pool: String,
    pub(crate) media_server: String,
}

/// The storage lifecycle policy that manages an image.
#[derive(Debug, Clone)]
pub(crate) struct ImageSlp {
    pub(crate) name: String,
    pub(crate) version: u32,
    /// Whether every operation of the SLP has made its copy.
    pub(crate) complete: bool,
    /// The operations done so far, as (operation index, copy number made).
    pub(crate) done: Vec<(u32, u32)>,
}

/// The image attributes of API versions before 5.0.
const COMPACT_IMAGE_KEYS: &[&str] = &[
    "backupId",
    "policyName",
    "policyType",
    "clientName",
    "backupTime",
    "expiration",
    "scheduleName",
    "scheduleType",
    "backupStatus",
    "jobId",
    "kbytes",
    "numFiles",
    "numCopies",
    "primaryCopy",
    "retentionLevel",
    "keyword",
    "copies",
];

/// A catalog image.
#[derive(Debug, Clone)]
pub(crate) struct Image {
    pub(crate) backup_id: String,
    pub(crate) policy_name: String,
    /// Display name: `Standard`, `VMware`, ...
    pub(crate) policy_type: String,
    pub(crate) client_name: String,
    pub(crate) backup_time: DateTime<Utc>,
    pub(crate) schedule_name: String,
    pub(crate) schedule_kind: ScheduleKind,
    pub(crate) job_id: u64,
    pub(crate) kbytes: i64,
    pub(crate) num_files: i64,
    pub(crate) elapsed_seconds: i64,
    pub(crate) keyword: String,
    pub(crate) copies: Vec<ImageCopy>,
    /// The SLP that manages the image, if its policy stores to one.
    pub(crate) slp: Option<ImageSlp>,
    /// The backup selections of the policy when the image was made (its contents derive from them).
    pub(crate) selections: Vec<String>,
}

/// The time NetBackup shows for a date it keeps as 0 (never set).
pub(crate) const UNSET_TIME: &str = "1970-01-01T00:00:00.000Z";

impl Image {
    pub(crate) fn summary(&self) -> ImageSummary {
        ImageSummary {
            backup_id: self.backup_id.clone(),
            client_name: self.client_name.clone(),
            client_type: job_policy_type(&self.policy_type),
            backup_time: self.backup_time.timestamp(),
            copies: self
                .copies
                .iter()
                .map(|copy| CopySummary {
                    copy_number: copy.copy_number,
                    replica: copy.replica,
                    expiration: copy.expiration.timestamp(),
                })
                .collect(),
        }
    }

    /// The image expires when its last copy does.
    pub(crate) fn expiration(&self) -> DateTime<Utc> {
        self.copies.iter().map(|copy| copy.expiration).max().unwrap_or(self.backup_time)
    }

    pub(crate) fn has_local_copy(&self) -> bool {
        self.copies.iter().any(|copy| !copy.replica)
    }

    /// The attributes a client sees at `version`: before 5.0 (when the image shape changed) only the
    /// core fields, which also keeps a page of images small for clients that read one TLS record.
    pub(crate) fn attributes_at(&self, version: ApiVersion) -> Value {
        let full = self.attributes();
        if version.major >= 5 {
            return full;
        }
        let compact: Map<String, Value> = COMPACT_IMAGE_KEYS
            .iter()
            .filter_map(|key| full.get(*key).map(|value| ((*key).to_owned(), value.clone())))
            .collect();
        Value::Object(compact)
    }

    /// Every attribute (filters work on these).
    pub(crate) fn attributes(&self) -> Value {
        let primary = self.copies.iter().find(|copy| !copy.replica).or(self.copies.first());
        let primary_copy = primary.map(|copy| copy.copy_number).unwrap_or(1);
        let fragments: Vec<Value> = self
            .copies
            .iter()
            .map(|copy| {
                json!({
                    "copyNumber": copy.copy_number,
                    "fragmentNumber": 1,
                    "mediaId": format!("@aaaa{}", copy.copy_number),
                    "host": copy.media_server,
                    "kbytes64": self.kbytes,
                    "expiration": format_time(copy.expiration),
                    "retentionLevel": 1,
                    "mediaType": 0,
                    "dataFormat": "TAR",
                })
            })
            .collect();
        let copies: Vec<Value> = self
            .copies
            .iter()
            .map(|copy| {
                json!({
                    "copyNumber": copy.copy_number,
                    "copyType": if copy.replica { "REPLICA" } else { "LOCAL" },
                    "diskPool": copy.disk_pool,
                    "isPrimary": copy.copy_number == primary_copy,
                    "expiration": format_time(copy.expiration),
                    "storageUnit": copy.storage,
                    "mediaServer": copy.media_server,
                })
            })
            .collect();
        json!({
            "backupId": self.backup_id,
            "policyName": self.policy_name,
            "policyType": self.policy_type,
            "clientName": self.client_name,
            "backupTime": format_time(self.backup_time),
            "expiration": format_time(self.expiration()),
            "scheduleName": self.schedule_name,
            "scheduleType": self.schedule_kind.image_name(),
            "backupType": self.schedule_kind.number(),
            "backupStatus": 0,
            "jobId": self.job_id,
            "kbytes": self.kbytes,
            "kbytesDataTransferred": self.kbytes,
            "numFiles": self.num_files,
            "numCopies": self.copies.len(),
            "numberFragments": self.copies.len(),
            "primaryCopy": primary_copy,
            "retentionLevel": 1,
            "imageDumpLevel": 0,
            "elapsedTimeSeconds": self.elapsed_seconds,
            "clientCharset": 0,
            "pfiType": 0,
            "slpVersion": self.slp.as_ref().map_or(0, |slp| slp.version),
            "slpCompleted": i64::from(self.slp.as_ref().is_some_and(|slp| slp.complete)),
            "version": 11,
            "streamNumber": 0,
            "streamAggregatedKbytes": 0,
            "streamAggregatedFiles": 0,
            "compression": false,
            "mpx": false,
            "fileSystemOnly": false,
            "extendedSecurityInfo": false,
            "backupCopyType": "DEFAULT",
            "imageType": "NORMAL",
            "encryption": "NONE",
            "vmType": if self.policy_type == "VMware" { "MAPPED" } else { "NONE" },
            "contentFileCompressed": "NOT",
            "creator": "root",
            "keyword": self.keyword,
            "dataClassification": "",
            "originMasterServer": "",
            "providerGeneratedId": "",
            "proxyClient": "",
            "slpName": self.slp.as_ref().map_or("", |slp| slp.name.as_str()),
            "contentFile": "",
            "contentFileSize": "0",
            "blockIncrementalFullTime": UNSET_TIME,
            "remoteExpirationDate": UNSET_TIME,
            "tirExpirationDate": UNSET_TIME,
            "drMediaList": [],
            "appType": if self.policy_type == "VMware" { "VMWARE" } else { "NONE" },
            "isOptimized": false,
            "fragments": fragments,
            "copies": copies,
        })
    }
}

/// A policy: the `policy` object exactly as clients send and read it, and its generation (the ETag).
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) body: Map<String, Value>,
    pub(crate) generation: u64,
}

/// A schedule of a policy, as the job engine reads it.
#[derive(Debug, Clone)]
pub(crate) struct ScheduleView {
    pub(crate) name: String,
    pub(crate) kind: ScheduleKind,
    /// How often the schedule is due, in seconds (0: never by frequency).
    pub(crate) frequency_seconds: i64,
    /// (copy is a replica, retention in seconds, storage) per copy.
    pub(crate) copies: Vec<(bool, i64, String)>,
}

impl Policy {
    pub(crate) fn name(&self) -> &str {
        self.body.get("policyName").and_then(Value::as_str).unwrap_or_default()
    }

    pub(crate) fn policy_type(&self) -> &str {
        self.body.get("policyType").and_then(Value::as_str).unwrap_or("Standard")
    }

    pub(crate) fn is_vmware(&self) -> bool {
        self.policy_type().eq_ignore_ascii_case("vmware")
    }

    pub(crate) fn active(&self) -> bool {
        self.body
            .get("policyAttributes")
            .and_then(|a| a.get("active"))
            .and_then(Value::as_bool)
            .unwrap_or(true)
    }

    /// The policy's storage: a storage unit, a storage lifecycle policy, or empty for "any available".
    pub(crate) fn storage(&self) -> String {
        self.body
            .get("policyAttributes")
            .and_then(|a| a.get("storage"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }

    pub(crate) fn clients(&self) -> Vec<String> {
        self.list("clients")
            .iter()
            .filter_map(|client| client.get("hostName").and_then(Value::as_str))
            .map(str::to_owned)
            .collect()
    }

    pub(crate) fn selections(&self) -> Vec<String> {
        self.body
            .get("backupSelections")
            .and_then(|b| b.get("selections"))
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    }

    pub(crate) fn list(&self, key: &str) -> Vec<Value> {
        self.body.get(key).and_then(Value::as_array).cloned().unwrap_or_default()
    }

    pub(crate) fn schedules(&self) -> Vec<ScheduleView> {
        let policy_storage = self.storage();
        self.list("schedules")
            .iter()
            .filter_map(|schedule| {
                let name = schedule.get("scheduleName")?.as_str()?.to_owned();
                let kind = ScheduleKind::from_backup_type(
                    schedule.get("backupType").and_then(Value::as_str).unwrap_or("Full Backup"),
                );
                let copies: Vec<(bool, i64, String)> = schedule
                    .get("backupCopies")
                    .and_then(|b| b.get("copies"))
                    .and_then(Value::as_array)
                    .map(|copies| {
                        copies
                            .iter()
                            .enumerate()
                            .map(|(index, copy)| {
                                let storage = copy
                                    .get("storage")
                                    .and_then(Value::as_str)
                                    .filter(|s| !s.is_empty())
                                    .unwrap_or(&policy_storage)
                                    .to_owned();
                                let replica = index > 0 && storage.to_ascii_lowercase().contains("replica");
                                (replica, retention_seconds(copy.get("retentionPeriod")), storage)
                            })
                            .collect()
                    })
                    .filter(|copies: &Vec<_>| !copies.is_empty())
                    .unwrap_or_else(|| vec![(false, 14 * 86_400, policy_storage.clone())]);
                let frequency_seconds = schedule.get("frequencySeconds").and_then(Value::as_i64).unwrap_or(0);
                Some(ScheduleView { name, kind, frequency_seconds, copies })
            })
            .collect()
    }

    /// The flattened attributes of a policy in a list.
    pub(crate) fn list_attributes(&self) -> Value {
        let mut flat = Map::new();
        flat.insert("policyName".into(), self.name().into());
        flat.insert("policyType".into(), self.policy_type().into());
        if let Some(Value::Object(attributes)) = self.body.get("policyAttributes") {
            for (key, value) in attributes {
                flat.insert(key.clone(), value.clone());
            }
        }
        flat.insert("clientCount".into(), self.clients().len().into());
        flat.insert("scheduleCount".into(), self.list("schedules").len().into());
        Value::Object(flat)
    }
}

/// A retention period `{value, unit}` in seconds; two weeks when missing.
pub(crate) fn retention_seconds(period: Option<&Value>) -> i64 {
    let Some(period) = period else { return 14 * 86_400 };
    let value = period.get("value").and_then(Value::as_i64).unwrap_or(2);
    let unit = period.get("unit").and_then(Value::as_str).unwrap_or("WEEKS").to_ascii_uppercase();
    let unit_seconds = match unit.trim_end_matches('S') {
        "SECOND" => 1,
        "MINUTE" => 60,
        "HOUR" => 3600,
        "DAY" => 86_400,
        "WEEK" => 7 * 86_400,
        "MONTH" => 30 * 86_400,
        "YEAR" => 365 * 86_400,
        "INFINITE" | "INFINITY" => return 100 * 365 * 86_400,
        _ => 86_400,
    };
    value.max(0).saturating_mul(unit_seconds)
}

/// An API key.
#[derive(Debug, Clone)]
pub(crate) struct ApiKey {
    pub(crate) tag: String,
    pub(crate) key: String,
    pub(crate) user: String,
    pub(crate) description: String,
    pub(crate) created: DateTime<Utc>,
    pub(crate) expires: DateTime<Utc>,
}

impl ApiKey {
    pub(crate) fn attributes(&self) -> Value {
        json!({
            "apiKeyTag": self.tag,
            "userName": self.user,
            "userDomain": "",
            "userDomainType": "vx",
            "description": self.description,
            "createdDateTime": format_time(self.created),
            "expiryDateTime": format_time(self.expires),
            "lastModifiedDateTime": format_time(self.created),
            "samlSessionValidated": false,
        })
    }
}

/// An alert raised for a failed job.
#[derive(Debug, Clone)]
pub(crate) struct Alert {
    pub(crate) id: u64,
    pub(crate) created: DateTime<Utc>,
    pub(crate) job_id: u64,
    pub(crate) status: i64,
    pub(crate) policy_name: String,
    pub(crate) policy_type: String,
    pub(crate) client_name: String,
    pub(crate) job_type: String,
}

impl Alert {
    pub(crate) fn attributes(&self) -> Value {
        // NetBackup files a failed job's alert under its policy type (display name, upper case), and
        // gives every parameter as text.
        json!({
            "title": format!("Job {} failed with status {}", self.job_id, self.status),
            "description": status_message(self.status),
            "category": "JOB",
            "subCategory": alert_sub_category(&self.policy_type),
            "severity": "ERROR",
            "context": "JOB_STATE_FAILED",
            "createdDateTime": format_time(self.created),
            "systemDefined": true,
            "tags": [],
            "params": {
                "jobId": self.job_id.to_string(),
                "status": self.status.to_string(),
                "errorMsg": status_message(self.status),
                "policyName": self.policy_name,
                "policyType": self.policy_type,
                "clientName": self.client_name,
                "jobType": self.job_type,
            },
        })
    }
}

/// The alert sub-category of a job's policy type: the upper-case display name (`MS-WINDOWS`).
fn alert_sub_category(job_policy_type: &str) -> String {
    match job_policy_type {
        "WINDOWS" => "MS-WINDOWS".to_owned(),
        "SQL_SERVER" => "MS-SQL-SERVER".to_owned(),
        "HYPERV" => "HYPER-V".to_owned(),
        other => other.replace('_', "-"),
    }
}

/// A vCenter or ESX server known to the primary server.
#[derive(Debug, Clone)]
pub(crate) struct VmServer {
    pub(crate) server_name: String,
    pub(crate) vm_type: String,
    pub(crate) user_id: String,
    pub(crate) port: i64,
}

/// The text NetBackup shows with a status code.
pub(crate) fn status_message(status: i64) -> &'static str {
    match status {
        0 => "the requested operation was successfully completed",
        1 => "the requested operation was partially successful",
        6 => "the backup failed to back up the requested files",
        13 => "file read failed",
        191 => "no images were successfully processed",
        213 => "no storage units available for use",
        219 => "the required storage unit is unavailable",
        58 => "can't connect to client",
        96 => "unable to allocate new media for backup, storage unit has none available",
        150 => "termination requested by administrator",
        156 => "snapshot error encountered",
        _ => "the operation failed",
    }
}

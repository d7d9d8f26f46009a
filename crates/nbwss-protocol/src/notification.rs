//! NOTIFICATION: job and image records pushed by the service (§6, D11–D14).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::fields::Fields;
use crate::open_enum::open_enum;
use crate::FieldError;

open_enum! {
    /// `notificationType`: the guide shows only `INFO`.
    NotificationType {
        /// Informational event; every notification this project sends.
        Info = "INFO",
    }
}

open_enum! {
    /// `object`: what kind of NetBackup object the records describe.
    ObjectKind {
        /// Job records.
        Job = "JOB",
        /// Backup image records.
        Image = "IMAGE",
    }
}

open_enum! {
    /// A job's `state` as polled (§6.2).
    JobState {
        /// Waiting for resources.
        Queued = "QUEUED",
        /// Running.
        Active = "ACTIVE",
        /// Finished, successfully or not (see `status`).
        Done = "DONE",
    }
}

open_enum! {
    /// A job's `jobType`; the guide shows BACKUP and RESTORE, NetBackup has many more.
    JobType {
        /// A backup job.
        Backup = "BACKUP",
        /// A restore job.
        Restore = "RESTORE",
        /// An archive job.
        Archive = "ARCHIVE",
        /// A verify job.
        Verify = "VERIFY",
        /// A duplication job.
        Duplicate = "DUPLICATE",
        /// An import job.
        Import = "IMPORT",
        /// A snapshot job.
        Snapshot = "SNAPSHOT",
        /// A replication job.
        Replicate = "REPLICATE",
        /// An image deletion (expiration) job.
        ImageDelete = "IMAGEDELETE",
    }
}

open_enum! {
    /// `scheduleType`: NetBackup's schedule constants (D14).
    ScheduleType {
        /// Full backup.
        Full = "ST_FULL",
        /// Differential incremental backup.
        Incremental = "ST_INCR",
        /// Cumulative incremental backup.
        CumulativeIncremental = "ST_CINC",
        /// User backup.
        UserBackup = "ST_UBAK",
        /// User archive.
        UserArchive = "ST_UARC",
    }
}

open_enum! {
    /// An image record's `operationId`: what happened to the image (§6.2, D14).
    ImageOperation {
        /// The image was created.
        Create = "CREATE",
        /// Its catalog entry changed (expiration, copies).
        Update = "UPDATE",
        /// It left the catalog.
        Delete = "DELETE",
        /// Its last local copy expired; only replica copies remain.
        NoLocalCopyAvailable = "NO_LOCAL_COPY_AVAILABLE",
    }
}

/// A JOB record: exactly the guide's 10 keys, in the guide's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRecord {
    /// Schedule type (`ST_FULL`, ...).
    pub schedule_type: ScheduleType,
    /// Client the job ran for.
    pub client_name: String,
    /// NetBackup status; 0 = success; meaningful once `state` is `DONE`.
    pub status: i64,
    /// Start time, Unix seconds UTC.
    pub start_time: i64,
    /// Job state.
    pub state: JobState,
    /// Policy name; empty for a restore.
    pub policy_name: String,
    /// Parent job id; equal to `job_id` for a top-level job.
    pub parent_job_id: i64,
    /// Job id.
    pub job_id: i64,
    /// Policy type, upper case (`STANDARD`, `VMWARE`, ...).
    pub policy_type: String,
    /// Job type.
    pub job_type: JobType,
}

/// An IMAGE record: exactly the guide's 6 keys, in the guide's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageRecord {
    /// Client or policy type of the image, upper case.
    pub client_type: String,
    /// Client of the image.
    pub client_name: String,
    /// Backup time, Unix seconds; the numeric suffix of `backup_id`.
    pub backup_time: i64,
    /// When this event was recorded, Unix seconds UTC.
    pub created_time: i64,
    /// What happened to the image.
    pub operation_id: ImageOperation,
    /// Backup id, `<clientName>_<backupTime>`.
    pub backup_id: String,
}

/// One element of a NOTIFICATION REQUEST payload: records of one object kind.
#[derive(Debug, Clone, PartialEq)]
pub enum NotificationGroup {
    /// `object: JOB`.
    Jobs {
        /// Severity or class; `INFO`.
        notification_type: NotificationType,
        /// The job records.
        records: Vec<JobRecord>,
    },
    /// `object: IMAGE`.
    Images {
        /// Severity or class; `INFO`.
        notification_type: NotificationType,
        /// The image records.
        records: Vec<ImageRecord>,
    },
    /// An object kind the guide does not describe, kept as received.
    Other {
        /// Severity or class.
        notification_type: NotificationType,
        /// The unknown object kind.
        object: String,
        /// The records, as received.
        data: Vec<Value>,
    },
}

impl NotificationGroup {
    /// An `INFO` group of job records.
    pub fn jobs(records: Vec<JobRecord>) -> Self {
        Self::Jobs { notification_type: NotificationType::Info, records }
    }

    /// An `INFO` group of image records.
    pub fn images(records: Vec<ImageRecord>) -> Self {
        Self::Images { notification_type: NotificationType::Info, records }
    }

    /// The `object` of this group.
    pub fn object(&self) -> ObjectKind {
        match self {
            Self::Jobs { .. } => ObjectKind::Job,
            Self::Images { .. } => ObjectKind::Image,
            Self::Other { object, .. } => ObjectKind::from(object.as_str()),
        }
    }

    /// How many records the group carries.
    pub fn record_count(&self) -> usize {
        match self {
            Self::Jobs { records, .. } => records.len(),
            Self::Images { records, .. } => records.len(),
            Self::Other { data, .. } => data.len(),
        }
    }

    /// The group as its JSON payload element (`notificationType`, `object`, `data`), records in the guide's
    /// key order.
    pub fn to_value(&self) -> Value {
        self.encode()
    }

    /// Decodes one payload element (`{"notificationType", "object", "data"}`) as a NOTIFICATION REQUEST
    /// carries it; an error names the field under `path` (e.g. `payload[0]`).
    pub fn decode_element(element: &Value, path: &str) -> Result<Self, FieldError> {
        Self::decode(&Fields::of(element, path)?)
    }

    pub(crate) fn decode(group: &Fields<'_>) -> Result<Self, FieldError> {
        let notification_type = NotificationType::from(group.non_empty_string("notificationType")?);
        let object = group.non_empty_string("object")?;
        let data = group.array("data")?;
        let data_path = group.path_of("data");
        let at = |index: usize| format!("{data_path}[{index}]");
        Ok(match ObjectKind::from(object) {
            ObjectKind::Job => Self::Jobs {
                notification_type,
                records: data
                    .iter()
                    .enumerate()
                    .map(|(index, record)| decode_job(&Fields::of(record, &at(index))?))
                    .collect::<Result<_, _>>()?,
            },
            ObjectKind::Image => Self::Images {
                notification_type,
                records: data
                    .iter()
                    .enumerate()
                    .map(|(index, record)| decode_image(&Fields::of(record, &at(index))?))
                    .collect::<Result<_, _>>()?,
            },
            ObjectKind::Other(object) => Self::Other { notification_type, object, data: data.clone() },
        })
    }

    pub(crate) fn encode(&self) -> Value {
        let (notification_type, data) = match self {
            Self::Jobs { notification_type, records } => (notification_type, to_values(records)),
            Self::Images { notification_type, records } => (notification_type, to_values(records)),
            Self::Other { notification_type, data, .. } => (notification_type, data.clone()),
        };
        let mut map = Map::new();
        map.insert("notificationType".into(), Value::String(notification_type.as_str().into()));
        map.insert("object".into(), Value::String(self.object().as_str().into()));
        map.insert("data".into(), Value::Array(data));
        Value::Object(map)
    }
}

fn to_values<T: Serialize>(records: &[T]) -> Vec<Value> {
    records.iter().map(|record| serde_json::to_value(record).unwrap_or(Value::Null)).collect()
}

impl JobRecord {
    /// Decodes one JOB record as a payload element's `data` carries it (§6.3); an error names the field under
    /// `path`.
    pub fn decode_value(record: &Value, path: &str) -> Result<Self, FieldError> {
        decode_job(&Fields::of(record, path)?)
    }
}

impl ImageRecord {
    /// Decodes one IMAGE record as a payload element's `data` carries it (§6.3); an error names the field
    /// under `path`.
    pub fn decode_value(record: &Value, path: &str) -> Result<Self, FieldError> {
        decode_image(&Fields::of(record, path)?)
    }
}

fn decode_job(record: &Fields<'_>) -> Result<JobRecord, FieldError> {
    Ok(JobRecord {
        schedule_type: ScheduleType::from(record.string("scheduleType")?),
        client_name: record.string("clientName")?.to_owned(),
        status: record.integer("status")?,
        start_time: record.integer("startTime")?,
        state: JobState::from(record.non_empty_string("state")?),
        policy_name: record.string("policyName")?.to_owned(),
        parent_job_id: record.integer("parentJobId")?,
        job_id: record.integer("jobId")?,
        policy_type: record.string("policyType")?.to_owned(),
        job_type: JobType::from(record.non_empty_string("jobType")?),
    })
}

fn decode_image(record: &Fields<'_>) -> Result<ImageRecord, FieldError> {
    Ok(ImageRecord {
        client_type: record.string("clientType")?.to_owned(),
        client_name: record.string("clientName")?.to_owned(),
        backup_time: record.integer("backupTime")?,
        created_time: record.integer("createdTime")?,
        operation_id: ImageOperation::from(record.non_empty_string("operationId")?),
        backup_id: record.non_empty_string("backupId")?.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ImageRecord {
        ImageRecord {
            client_type: "STANDARD".into(),
            client_name: "client1".into(),
            backup_time: 1,
            created_time: 2,
            operation_id: ImageOperation::Create,
            backup_id: "client1_1".into(),
        }
    }

    #[test]
    fn group_to_value_has_the_guide_keys() {
        let group = NotificationGroup::images(vec![image()]);
        let value = group.to_value();
        assert_eq!(value["notificationType"], "INFO");
        assert_eq!(value["object"], "IMAGE");
        assert_eq!(value["data"][0]["backupId"], "client1_1");
        assert_eq!(value["data"][0].as_object().unwrap().len(), 6);
    }

    /// The public decoders read what `to_value` writes, and name the broken field under the path given.
    #[test]
    fn elements_and_bare_records_decode_with_their_path() {
        let image = image();
        let group = NotificationGroup::images(vec![image.clone()]);
        assert_eq!(NotificationGroup::decode_element(&group.to_value(), "[0]").unwrap(), group);
        let record = serde_json::to_value(&image).unwrap();
        assert_eq!(ImageRecord::decode_value(&record, "[0]").unwrap(), image);
        let mut broken = record;
        broken["backupTime"] = Value::String("yesterday".into());
        let error = ImageRecord::decode_value(&broken, "[3]").unwrap_err();
        assert_eq!(error.path, "[3].backupTime", "{error}");
        let error = JobRecord::decode_value(&Value::Null, "[1]").unwrap_err();
        assert_eq!(error.path, "[1]", "{error}");
    }
}

//! Notifications (§6, D11–D14): detected on the primary server ([`Detector`], `detector.rs`), kept in a
//! durable [`Outbox`] (`outbox.rs`), delivered to every connected server group and resent until
//! acknowledged ([`Delivery`], `delivery.rs`); records given locally are read by [`parse_records`]
//! (`ingest.rs`, also served at [`INGEST_PATH`] on the admin listener).
//!
//! Invariants:
//! * a record is committed to the outbox, in the same transaction as the detector state that produced it,
//!   before any message carrying it is built; a message is committed (id and exact text) before it is
//!   first sent, so a resend, even after a restart, repeats the same `id` and payload (D12);
//! * each server group has its own delivery position, which belongs to the group whatever happens to its
//!   servers; records are deleted only when every known group has acknowledged them (D13), or released for
//!   a group loudly, when it was retired or when the outbox reached its cap (see `outbox.rs`);
//! * when the outbox is full and no group has acknowledged its oldest records, new records are refused and
//!   the detector keeps its old watermarks, so the events are detected again later.

pub(crate) mod delivery;
pub(crate) mod detector;
pub(crate) mod ingest;
pub(crate) mod metrics;
pub(crate) mod notifications;
pub(crate) mod outbox;
pub(crate) mod primary_client;

use nbwss_protocol::{ImageRecord, JobRecord, ObjectKind};
use serde::{Deserialize, Serialize};

pub use delivery::{Delivery, DeliveryError, DeliveryHandle, DeliveryTiming, NotificationSink, SinkError};
pub use detector::{DetectError, Detector, DetectorConfig, RECONCILE_PAGE_PAUSE};
pub use ingest::{parse_records, validate as validate_record, INGEST_PATH};
pub use metrics::{GroupLabel, NotifyMetrics, ReleaseLabel};
pub use notifications::open_outbox;
pub(crate) use notifications::Notifications;
pub use outbox::{
    ConfiguredGroup, Detection, GroupStats, Outbox, OutboxConfig, OutboxError, PendingMessage, SeenImage,
    Taken,
};
pub use primary_client::{PrimaryClient, PrimaryCredentials, PrimaryError};

/// The outbox database's file name inside the service's data directory.
pub const OUTBOX_FILE: &str = "notifications.sqlite3";

/// One notification record, as kept in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "object", content = "record", rename_all = "UPPERCASE")]
pub enum Record {
    /// A JOB record.
    Job(JobRecord),
    /// An IMAGE record.
    Image(ImageRecord),
}

impl Record {
    /// The record's `object`.
    pub fn object(&self) -> ObjectKind {
        match self {
            Self::Job(_) => ObjectKind::Job,
            Self::Image(_) => ObjectKind::Image,
        }
    }

    /// The record as a payload element's `data` carries it: compact JSON, keys in the guide's order. The
    /// outbox keeps this text and writes it into messages as it is.
    pub fn to_text(&self) -> String {
        // Serialising these plain structs cannot fail.
        match self {
            Self::Job(job) => serde_json::to_string(job),
            Self::Image(image) => serde_json::to_string(image),
        }
        .unwrap_or_default()
    }
}

/// Groups records into payload elements: consecutive records of the same object share one element, so
/// the detection order is kept across the whole payload. The outbox writes messages from the records'
/// texts (`NotificationText`); its tests compare them with the typed payload this builds.
#[cfg(test)]
pub(crate) fn group_records(records: Vec<Record>) -> Vec<nbwss_protocol::NotificationGroup> {
    use nbwss_protocol::NotificationGroup;
    let mut groups: Vec<NotificationGroup> = Vec::new();
    for record in records {
        match (groups.last_mut(), record) {
            (Some(NotificationGroup::Jobs { records, .. }), Record::Job(job)) => records.push(job),
            (Some(NotificationGroup::Images { records, .. }), Record::Image(image)) => records.push(image),
            (_, Record::Job(job)) => groups.push(NotificationGroup::jobs(vec![job])),
            (_, Record::Image(image)) => groups.push(NotificationGroup::images(vec![image])),
        }
    }
    groups
}

/// The current Unix time in milliseconds.
pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

//! Notification metrics: outbox depth and oldest unacknowledged age per group, messages sent,
//! acknowledged and resent, records refused while the outbox is full, detection lag.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// The `group` label: a server group id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct GroupLabel {
    /// The server group.
    pub group: String,
}

impl GroupLabel {
    /// The label of `group`.
    pub fn of(group: &str) -> Self {
        Self { group: group.to_owned() }
    }
}

/// The labels of records released unacknowledged: the server group, and why.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReleaseLabel {
    /// The server group.
    pub group: String,
    /// `retention`: the group had no WebSocket server for `notification.groupRetention`; `cap`: the outbox
    /// reached `outbox.maxRecords` and other groups had acknowledged the records.
    pub reason: String,
}

impl ReleaseLabel {
    /// Released because the group was retired.
    pub fn retention(group: &str) -> Self {
        Self { group: group.to_owned(), reason: "retention".to_owned() }
    }

    /// Released to keep the outbox within its cap.
    pub fn cap(group: &str) -> Self {
        Self { group: group.to_owned(), reason: "cap".to_owned() }
    }
}

/// Every notification metric; cheap to clone (the metrics share their values).
#[derive(Debug, Clone)]
pub struct NotifyMetrics {
    /// Records not yet acknowledged by the group (sent or not).
    pub outbox_depth: Family<GroupLabel, Gauge>,
    /// Age in seconds of the group's oldest sent and unacknowledged message.
    pub oldest_unacked_age_seconds: Family<GroupLabel, Gauge<f64, AtomicU64>>,
    /// NOTIFICATION REQUESTs sent for the first time.
    pub sent: Family<GroupLabel, Counter>,
    /// NOTIFICATION REQUESTs acknowledged.
    pub acknowledged: Family<GroupLabel, Counter>,
    /// NOTIFICATION REQUESTs sent again (same id and payload).
    pub resent: Family<GroupLabel, Counter>,
    /// Records refused because the outbox was full (they are detected again later).
    pub refused_records: Counter,
    /// Records a group will never receive: released at the cap or when the group was retired.
    pub released_records: Family<ReleaseLabel, Counter>,
    /// Server groups retired after `notification.groupRetention` without any WebSocket server.
    pub groups_retired: Counter,
    /// 1 while the outbox is full.
    pub outbox_full: Gauge,
    /// Records skipped because one alone makes a message larger than `message.maxBytes`.
    pub unsendable_records: Counter,
    /// Records appended to the outbox.
    pub appended_records: Counter,
    /// Seconds between an event on the primary server and its detection.
    pub detection_lag_seconds: Histogram,
    /// Image catalog reconciliations completed.
    pub reconciliations: Counter,
    /// How long the last completed reconciliation took, in seconds.
    pub reconciliation_seconds: Gauge<f64, AtomicU64>,
}

impl Default for NotifyMetrics {
    fn default() -> Self {
        Self {
            outbox_depth: Family::default(),
            oldest_unacked_age_seconds: Family::default(),
            sent: Family::default(),
            acknowledged: Family::default(),
            resent: Family::default(),
            refused_records: Counter::default(),
            released_records: Family::default(),
            groups_retired: Counter::default(),
            outbox_full: Gauge::default(),
            unsendable_records: Counter::default(),
            appended_records: Counter::default(),
            reconciliations: Counter::default(),
            reconciliation_seconds: Gauge::default(),
            detection_lag_seconds: Histogram::new([
                0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
            ]),
        }
    }
}

impl NotifyMetrics {
    /// Registers every metric under the `notification` prefix (inside the service's `nbwss` registry:
    /// `nbwss_notification_...`).
    pub fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("notification");
        registry.register(
            "outbox_depth",
            "Records not yet acknowledged by the server group",
            self.outbox_depth.clone(),
        );
        registry.register(
            "oldest_unacked_age_seconds",
            "Age of the server group's oldest unacknowledged NOTIFICATION REQUEST",
            self.oldest_unacked_age_seconds.clone(),
        );
        registry.register("sent", "NOTIFICATION REQUESTs sent for the first time", self.sent.clone());
        registry.register("acknowledged", "NOTIFICATION REQUESTs acknowledged", self.acknowledged.clone());
        registry.register("resent", "NOTIFICATION REQUESTs sent again with the same id", self.resent.clone());
        registry.register(
            "refused_records",
            "Records refused because the outbox was full (detected again later)",
            self.refused_records.clone(),
        );
        registry.register(
            "released_records",
            "Records a server group will never receive: released at outbox.maxRecords (reason cap) or when the group was retired (reason retention)",
            self.released_records.clone(),
        );
        registry.register(
            "groups_retired",
            "Server groups retired after notification.groupRetention without any WebSocket server",
            self.groups_retired.clone(),
        );
        registry.register("outbox_full", "1 while the outbox is full", self.outbox_full.clone());
        registry.register(
            "unsendable_records",
            "Records skipped because one alone makes a message larger than message.maxBytes",
            self.unsendable_records.clone(),
        );
        registry.register(
            "appended_records",
            "Records appended to the outbox",
            self.appended_records.clone(),
        );
        registry.register(
            "detection_lag_seconds",
            "Time between an event on the primary server and its detection",
            self.detection_lag_seconds.clone(),
        );
        registry.register(
            "reconciliations",
            "Image catalog reconciliations completed",
            self.reconciliations.clone(),
        );
        registry.register(
            "reconciliation_seconds",
            "Duration of the last completed image catalog reconciliation",
            self.reconciliation_seconds.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_and_encodes() {
        let metrics = NotifyMetrics::default();
        metrics.sent.get_or_create(&GroupLabel::of("g1")).inc();
        metrics.outbox_depth.get_or_create(&GroupLabel::of("g1")).set(3);
        let mut registry = Registry::with_prefix("nbwss");
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("nbwss_notification_sent_total{group=\"g1\"} 1"), "{text}");
        assert!(text.contains("nbwss_notification_outbox_depth{group=\"g1\"} 3"), "{text}");
    }
}

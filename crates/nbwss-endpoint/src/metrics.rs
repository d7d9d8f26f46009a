//! Prometheus metrics of the endpoint, served at `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::relay_history::RelayHistory;

type Labels = Vec<(String, String)>;

/// The endpoint's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    pub connected: Gauge,
    pub connections: Counter,
    pub connect_failures: Family<Labels, Counter>,
    pub open_connections: Gauge,
    pub pending_connections: Gauge,
    pub connections_refused: Family<Labels, Counter>,
    pub buffered_request_bytes: Gauge,
    pub relayed: Family<Labels, Counter>,
    pub relay_seconds: Histogram,
    pub notification_records: Counter,
    pub notification_messages: Counter,
    pub notification_duplicates: Counter,
    pub nonconforming_records: Counter,
    pub notifications_pruned: Counter,
    webhook_deliveries: Family<Labels, Counter>,
    webhook_attempt_failures: Family<Labels, Counter>,
    webhook_missed_records: Family<Labels, Counter>,
    webhook_held: Family<Labels, Gauge>,
    webhook_paused: Family<Labels, Gauge>,
    /// Relayed calls per minute with their latency, for the dashboard.
    pub relay_history: RelayHistory,
    /// Cluster mode: calls forwarded to the replica holding the session, and their latency.
    forwarded_seconds: Histogram,
    /// Cluster mode: calls forwarded here by other replicas.
    pub forwarded_in: Counter,
    /// Cluster mode: leases renewed, and sessions closed because another replica took the lease.
    pub lease_renewals: Counter,
    pub lease_takeovers: Counter,
    /// Cluster mode: time from publishing a notification's records to the stream's last acknowledgement.
    pub stream_publish_seconds: Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("nbwss_endpoint");
        let connected = Gauge::default();
        registry.register("sessions", "Primary servers connected now", connected.clone());
        let connections = Counter::default();
        registry.register("connections", "Sessions established (CONNECT accepted)", connections.clone());
        let connect_failures = Family::<Labels, Counter>::default();
        registry.register(
            "connect_failures",
            "WebSocket connections refused, by reason (bad_token, no_connect, too_big, rate_limited, pending_total, pending_per_address)",
            connect_failures.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "Connections open on the listener, of every kind (limits.max_connections)",
            open_connections.clone(),
        );
        let pending_connections = Gauge::default();
        registry.register(
            "pending_connections",
            "WebSocket connections whose CONNECT is not accepted yet (limits.max_pending_connections)",
            pending_connections.clone(),
        );
        let buffered_request_bytes = Gauge::default();
        registry.register(
            "buffered_request_bytes",
            "Bytes of relayed request bodies held in memory now (limits.max_buffered_request_bytes)",
            buffered_request_bytes.clone(),
        );
        let connections_refused = Family::<Labels, Counter>::default();
        registry.register(
            "connections_refused",
            "Connections closed by the listener before HTTP, by reason (max_connections, tls_handshake_timeout)",
            connections_refused.clone(),
        );
        let relayed = Family::<Labels, Counter>::default();
        registry.register("relayed_calls", "Relayed NetBackup API calls, by HTTP status", relayed.clone());
        let relay_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 18));
        registry.register("relay_duration_seconds", "Latency of relayed calls", relay_seconds.clone());
        let notification_records = Counter::default();
        registry.register(
            "notification_records",
            "Notification records stored",
            notification_records.clone(),
        );
        let notification_messages = Counter::default();
        registry.register(
            "notification_messages",
            "NOTIFICATION REQUESTs received",
            notification_messages.clone(),
        );
        let notification_duplicates = Counter::default();
        registry.register(
            "notification_duplicates",
            "NOTIFICATION REQUESTs received again (acknowledged, not stored)",
            notification_duplicates.clone(),
        );
        let nonconforming_records = Counter::default();
        registry.register(
            "nonconforming_records",
            "Notification records stored and acknowledged although they do not follow the guide's layout (flagged conforms: false in the feed)",
            nonconforming_records.clone(),
        );
        let notifications_pruned = Counter::default();
        registry.register(
            "notifications_pruned",
            "Notification records deleted by retention (retention.max_age_hours, retention.max_records)",
            notifications_pruned.clone(),
        );
        let webhook_deliveries = Family::<Labels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries by subscription and outcome (delivered; failed: its retry window exhausted)",
            webhook_deliveries.clone(),
        );
        let webhook_attempt_failures = Family::<Labels, Counter>::default();
        registry.register(
            "webhook_attempt_failures",
            "Failed attempts of webhook deliveries (retried), by subscription",
            webhook_attempt_failures.clone(),
        );
        let webhook_missed_records = Family::<Labels, Counter>::default();
        registry.register(
            "webhook_missed_records",
            "Notification records pruned before a subscription could queue them, by subscription",
            webhook_missed_records.clone(),
        );
        let webhook_held = Family::<Labels, Gauge>::default();
        registry.register(
            "webhook_held_deliveries",
            "Deliveries a subscription holds, pending or failed (webhooks.max_pending_per_webhook)",
            webhook_held.clone(),
        );
        let webhook_paused = Family::<Labels, Gauge>::default();
        registry.register("webhook_paused", "1 when a subscription is paused", webhook_paused.clone());
        let forwarded_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 18));
        registry.register(
            "cluster_forwarded_duration_seconds",
            "Cluster mode: latency of calls forwarded to the replica holding the session",
            forwarded_seconds.clone(),
        );
        let forwarded_in = Counter::default();
        registry.register(
            "cluster_forwarded_in_calls",
            "Cluster mode: calls other replicas forwarded to this one",
            forwarded_in.clone(),
        );
        let lease_renewals = Counter::default();
        registry.register(
            "cluster_lease_renewals",
            "Cluster mode: session leases renewed",
            lease_renewals.clone(),
        );
        let lease_takeovers = Counter::default();
        registry.register(
            "cluster_lease_takeovers",
            "Cluster mode: sessions closed because a newer session on another replica took the lease",
            lease_takeovers.clone(),
        );
        let stream_publish_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "cluster_stream_publish_duration_seconds",
            "Cluster mode: from publishing a notification's records to the stream's last acknowledgement",
            stream_publish_seconds.clone(),
        );
        Self {
            forwarded_seconds,
            forwarded_in,
            lease_renewals,
            lease_takeovers,
            stream_publish_seconds,
            registry,
            connected,
            connections,
            connect_failures,
            open_connections,
            pending_connections,
            connections_refused,
            buffered_request_bytes,
            relayed,
            relay_seconds,
            notification_records,
            notification_messages,
            notification_duplicates,
            nonconforming_records,
            notifications_pruned,
            webhook_deliveries,
            webhook_attempt_failures,
            webhook_missed_records,
            webhook_held,
            webhook_paused,
            relay_history: RelayHistory::default(),
        }
    }

    pub fn forwarded(&self, seconds: f64) {
        self.forwarded_seconds.observe(seconds);
    }

    pub fn connect_failure(&self, reason: &str) {
        self.connect_failures.get_or_create(&vec![("reason".to_owned(), reason.to_owned())]).inc();
    }

    pub fn connection_refused(&self, reason: &str) {
        self.connections_refused.get_or_create(&vec![("reason".to_owned(), reason.to_owned())]).inc();
    }

    pub fn relayed(&self, primary: &str, status: u16, seconds: f64) {
        self.relayed.get_or_create(&vec![("status".to_owned(), status.to_string())]).inc();
        self.relay_seconds.observe(seconds);
        self.relay_history.record(primary, status, seconds, chrono::Utc::now().timestamp());
    }

    pub fn webhook_delivered(&self, id: &str) {
        self.webhook_deliveries.get_or_create(&webhook_outcome(id, "delivered")).inc();
    }

    pub fn webhook_failed(&self, id: &str) {
        self.webhook_deliveries.get_or_create(&webhook_outcome(id, "failed")).inc();
    }

    pub fn webhook_attempt_failed(&self, id: &str) {
        self.webhook_attempt_failures.get_or_create(&webhook(id)).inc();
    }

    pub fn webhook_missed(&self, id: &str, records: u64) {
        self.webhook_missed_records.get_or_create(&webhook(id)).inc_by(records);
    }

    pub fn webhook_state(&self, id: &str, held: u64, paused: bool) {
        self.webhook_held.get_or_create(&webhook(id)).set(i64::try_from(held).unwrap_or(i64::MAX));
        self.webhook_paused.get_or_create(&webhook(id)).set(i64::from(paused));
    }

    /// Drops a removed subscription's series.
    pub fn forget_webhook(&self, id: &str) {
        for outcome in ["delivered", "failed"] {
            self.webhook_deliveries.remove(&webhook_outcome(id, outcome));
        }
        self.webhook_attempt_failures.remove(&webhook(id));
        self.webhook_missed_records.remove(&webhook(id));
        self.webhook_held.remove(&webhook(id));
        self.webhook_paused.remove(&webhook(id));
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

fn webhook(id: &str) -> Labels {
    vec![("webhook".to_owned(), id.to_owned())]
}

fn webhook_outcome(id: &str, outcome: &str) -> Labels {
    vec![("webhook".to_owned(), id.to_owned()), ("outcome".to_owned(), outcome.to_owned())]
}

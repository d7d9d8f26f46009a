//! Prometheus metrics of the endpoint, served at `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

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
        Self {
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
        }
    }

    pub fn connect_failure(&self, reason: &str) {
        self.connect_failures.get_or_create(&vec![("reason".to_owned(), reason.to_owned())]).inc();
    }

    pub fn connection_refused(&self, reason: &str) {
        self.connections_refused.get_or_create(&vec![("reason".to_owned(), reason.to_owned())]).inc();
    }

    pub fn relayed(&self, status: u16, seconds: f64) {
        self.relayed.get_or_create(&vec![("status".to_owned(), status.to_string())]).inc();
        self.relay_seconds.observe(seconds);
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

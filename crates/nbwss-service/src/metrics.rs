//! Prometheus metrics, served on the admin listener's `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Label: a connection state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// `connecting` or `connected`.
    pub state: String,
}

/// Label: why a connection ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// A closeStatus value.
    pub reason: String,
}

/// Labels: a relayed call's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// HTTP status.
    pub status: String,
    /// `primary` or `service`.
    pub origin: String,
}

/// Every metric the service exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Connections by state.
    pub(crate) connections: Family<StateLabel, Gauge>,
    /// Connections that ended (and will be retried), by reason.
    pub(crate) reconnects: Family<ReasonLabel, Counter>,
    /// Ping round trip.
    pub(crate) ping_rtt: Histogram,
    /// COMMANDs being relayed.
    pub(crate) commands_in_flight: Gauge,
    /// Relay latency.
    pub(crate) command_duration: Histogram,
    /// COMMAND RESPONSEs by status and origin.
    pub(crate) command_responses: Family<StatusLabel, Counter>,
    /// Notification outbox and delivery metrics (`nbwss_notification_*`).
    pub(crate) notifications: crate::notify::NotifyMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("nbwss");
        let connections = Family::<StateLabel, Gauge>::default();
        registry.register("endpoint_connections", "Connections to endpoints by state", connections.clone());
        let reconnects = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "endpoint_disconnects",
            "Connections that ended or failed, by closeStatus",
            reconnects.clone(),
        );
        let ping_rtt = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register("ping_rtt_seconds", "Keepalive ping round trip", ping_rtt.clone());
        let commands_in_flight = Gauge::default();
        registry.register("commands_in_flight", "COMMANDs being relayed", commands_in_flight.clone());
        let command_duration = Histogram::new(exponential_buckets(0.001, 2.0, 18));
        registry.register("command_duration_seconds", "Time to answer a COMMAND", command_duration.clone());
        let command_responses = Family::<StatusLabel, Counter>::default();
        registry.register(
            "command_responses",
            "COMMAND RESPONSEs by status and origin",
            command_responses.clone(),
        );
        let notifications = crate::notify::NotifyMetrics::default();
        notifications.register(&mut registry);
        Self {
            registry,
            connections,
            reconnects,
            ping_rtt,
            commands_in_flight,
            command_duration,
            command_responses,
            notifications,
        }
    }

    /// The gauge of connections in `state`.
    pub fn connections_in(&self, state: &str) -> Gauge {
        self.connections.get_or_create(&StateLabel { state: state.to_owned() }).clone()
    }

    /// Counts a connection that ended.
    pub fn disconnected(&self, reason: &str) {
        self.reconnects.get_or_create(&ReasonLabel { reason: reason.to_owned() }).inc();
    }

    /// Counts a COMMAND RESPONSE.
    pub fn responded(&self, status: u16, from_service: bool) {
        let origin = if from_service { "service" } else { "primary" };
        self.command_responses
            .get_or_create(&StatusLabel { status: status.to_string(), origin: origin.to_owned() })
            .inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

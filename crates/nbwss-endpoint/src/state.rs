//! What every handler and connection task shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nbwss_protocol::Codec;
use tokio::sync::{watch, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::EndpointConfig;
use crate::metrics::Metrics;
use crate::pending::PendingConnections;
use crate::rate_limit::FailedConnectLimiter;
use crate::session::Registry;
use crate::store::Store;

/// The shared state of one running endpoint.
pub(crate) struct Shared {
    pub config: EndpointConfig,
    pub store: Store,
    /// Cluster mode: the NATS connection, its buckets and its stream.
    pub cluster: Option<crate::cluster::Cluster>,
    pub registry: Registry,
    pub metrics: Metrics,
    pub limiter: FailedConnectLimiter,
    /// WebSocket connections whose CONNECT is not accepted yet.
    pub pending: PendingConnections,
    /// Bytes of relayed request bodies that may still be held in memory (`limits.max_buffered_request_bytes`).
    pub body_budget: Arc<Semaphore>,
    pub codec: Codec,
    /// Cancelled at shutdown; sessions and SSE streams end with it.
    pub cancel: CancellationToken,
    /// Every connection task, so that shutdown waits for them.
    pub tracker: TaskTracker,
    /// The newest notification cursor; SSE streams wait on it.
    pub feed: watch::Sender<i64>,
    /// Bumped when tokens or API keys changed (here or in another process); SSE streams then check that
    /// their API key is still valid.
    pub credentials: watch::Sender<u64>,
    /// Woken when webhook subscriptions change through the app API, so the dispatcher need not wait for its
    /// next look at the store.
    pub webhook_changes: Notify,
    /// The dashboard's counts of completed hours.
    pub activity: Mutex<crate::stats::ActivityCache>,
    /// One-time provider URLs: id → (expiry, endpoint details JSON with the token).
    pub providers: Mutex<HashMap<String, (Instant, serde_json::Value)>>,
}

pub(crate) type AppState = Arc<Shared>;

impl Shared {
    pub fn new(
        config: EndpointConfig,
        store: Store,
        cluster: Option<crate::cluster::Cluster>,
    ) -> anyhow::Result<Self> {
        let last_cursor = store.last_cursor()?;
        let metrics = Metrics::new();
        Ok(Self {
            codec: Codec::new(config.limits.max_message_bytes),
            limiter: FailedConnectLimiter::new(config.limits.max_failed_connects_per_minute),
            pending: PendingConnections::new(
                config.limits.max_pending_connections,
                config.limits.max_pending_per_address,
                metrics.pending_connections.clone(),
            ),
            body_budget: Arc::new(Semaphore::new(config.limits.max_buffered_request_bytes)),
            config,
            store,
            cluster,
            registry: Registry::default(),
            metrics,
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
            feed: watch::channel(last_cursor).0,
            credentials: watch::channel(0).0,
            webhook_changes: Notify::new(),
            activity: Mutex::default(),
            providers: Mutex::new(HashMap::new()),
        })
    }
}

//! What every handler and connection task shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use nbwss_protocol::Codec;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::EndpointConfig;
use crate::metrics::Metrics;
use crate::rate_limit::FailedConnectLimiter;
use crate::session::Registry;
use crate::store::Store;

/// The shared state of one running endpoint.
pub(crate) struct Shared {
    pub config: EndpointConfig,
    pub store: Store,
    pub registry: Registry,
    pub metrics: Metrics,
    pub limiter: FailedConnectLimiter,
    pub codec: Codec,
    /// Cancelled at shutdown; sessions and SSE streams end with it.
    pub cancel: CancellationToken,
    /// Every connection task, so that shutdown waits for them.
    pub tracker: TaskTracker,
    /// The newest notification cursor; SSE streams wait on it.
    pub feed: watch::Sender<i64>,
    /// One-time provider URLs: id → (expiry, endpoint details JSON with the token).
    pub providers: Mutex<HashMap<String, (Instant, serde_json::Value)>>,
}

pub(crate) type AppState = Arc<Shared>;

impl Shared {
    pub fn new(config: EndpointConfig, store: Store) -> anyhow::Result<Self> {
        let last_cursor = store.last_cursor()?;
        Ok(Self {
            codec: Codec::new(config.limits.max_message_bytes),
            limiter: FailedConnectLimiter::new(config.limits.max_failed_connects_per_minute),
            config,
            store,
            registry: Registry::default(),
            metrics: Metrics::new(),
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
            feed: watch::channel(last_cursor).0,
            providers: Mutex::new(HashMap::new()),
        })
    }
}

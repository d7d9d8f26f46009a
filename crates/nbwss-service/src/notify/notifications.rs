//! The notification feature as the service runs it: the outbox in the data directory, the detector (when
//! the service has its own credentials on the primary server), the server groups kept in step with the
//! store's activated servers, and one [`Delivery`] per established session.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nbwss_protocol::{Codec, Properties};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::delivery::{Delivery, DeliveryHandle, DeliveryTiming, NotificationSink, SinkError};
use super::detector::{Detector, DetectorConfig};
use super::metrics::NotifyMetrics;
use super::outbox::{ConfiguredGroup, Outbox, OutboxConfig};
use super::primary_client::{PrimaryClient, PrimaryCredentials};
use super::OUTBOX_FILE;
use crate::config::ServiceConfig;
use crate::session::{SessionHandle, Sessions};
use crate::store::{Server, Store};

/// How often groups and sessions are looked at.
const SUPERVISE_EVERY: Duration = Duration::from_millis(250);
/// Groups detached past their retention are looked for every this many looks (5 s).
const RETIRE_EVERY_TICKS: u64 = 20;
/// API version the detector asks for: cursor pagination of jobs (NetBackup 10.2 and later).
pub const DETECTOR_API_VERSION: &str = "9.0";

/// The running parts of the notification feature.
#[derive(Debug)]
pub struct Notifications {
    outbox: Arc<Outbox>,
    detector: Option<Detector>,
    timing: DeliveryTiming,
}

impl Notifications {
    /// Opens the outbox in the data directory and builds the detector from the primary server's settings
    /// (none without `primary.credentials`: then only local ingest feeds the outbox).
    pub fn open(
        config: &ServiceConfig,
        properties: &Properties,
        metrics: NotifyMetrics,
    ) -> anyhow::Result<Self> {
        let outbox = Arc::new(Outbox::open(
            &config.data_dir.join(OUTBOX_FILE),
            OutboxConfig::from_properties(properties),
            metrics,
        )?);
        // message.maxBytes may have been lowered since messages were built: none may exceed it now.
        outbox.split_oversized()?;
        let detector = match &config.primary.credentials {
            None => {
                tracing::warn!("no primary.credentials: notifications come only from `nbwss notify`");
                None
            }
            Some(credentials) => {
                let credentials = match (&credentials.api_key, &credentials.user_name, &credentials.password) {
                    (Some(key), _, _) => PrimaryCredentials::ApiKey(key.clone()),
                    (None, Some(user), Some(password)) => PrimaryCredentials::Password {
                        user: user.clone(),
                        password: password.clone(),
                        domain_type: credentials.domain_type.clone(),
                        domain_name: credentials.domain_name.clone(),
                    },
                    _ => anyhow::bail!(
                        "primary.credentials: give api_key, or user_name and password, for notification polling"
                    ),
                };
                let ca = config.primary_ca_pem()?;
                let client = PrimaryClient::new(
                    &config.primary.base_url,
                    ca.as_deref(),
                    credentials,
                    DETECTOR_API_VERSION,
                )?;
                Some(Detector::new(client, outbox.clone(), DetectorConfig::from_properties(properties)))
            }
        };
        Ok(Self { outbox, detector, timing: DeliveryTiming::from_properties(properties) })
    }

    /// The outbox.
    pub fn outbox(&self) -> Arc<Outbox> {
        self.outbox.clone()
    }

    /// Runs until `shutdown`: the detector, the group registration from `store` and a delivery for each
    /// established session in `sessions`. Every task is spawned on `tracker`.
    pub async fn run(
        self,
        store: Arc<Store>,
        sessions: Arc<Sessions>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) {
        if let Some(detector) = self.detector {
            tracker.spawn(detector.run(shutdown.clone()));
        }
        let mut deliveries: HashMap<String, SessionHandle> = HashMap::new();
        let mut known_groups: Option<Vec<String>> = None;
        let mut ticker = tokio::time::interval(SUPERVISE_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            ticks += 1;
            match store.list() {
                Ok(servers) => {
                    // Every group with a server, activated or not: a group's backlog outlives the state of
                    // its servers (see the outbox).
                    let groups = configured_groups(&servers);
                    let names: Vec<String> = groups.iter().map(|group| group.group_id.clone()).collect();
                    if known_groups.as_ref() != Some(&names) {
                        match self.outbox.sync_groups(&groups) {
                            Ok(()) => known_groups = Some(names),
                            Err(error) => {
                                tracing::error!(%error, "cannot register server groups for notifications")
                            }
                        }
                    }
                }
                Err(error) => tracing::error!(%error, "cannot read the WebSocket servers store"),
            }
            if ticks % RETIRE_EVERY_TICKS == 0 {
                if let Err(error) = self.outbox.retire_detached(super::now_millis()) {
                    tracing::error!(%error, "cannot retire server groups without servers");
                }
            }
            deliveries.retain(|_, session| !session.is_closed());
            for session in sessions.connected() {
                if session.is_closed() || deliveries.contains_key(&session.group_id) {
                    continue;
                }
                if !known_groups.as_ref().is_some_and(|groups| groups.contains(&session.group_id)) {
                    continue;
                }
                deliveries.insert(session.group_id.clone(), session.clone());
                tracker.spawn(deliver(
                    self.outbox.clone(),
                    session,
                    self.timing,
                    shutdown.clone(),
                    tracker.clone(),
                ));
            }
            if let Err(error) = self.outbox.stats(super::now_millis()) {
                tracing::warn!(%error, "cannot read the notification outbox's state");
            }
        }
    }
}

/// The groups that have at least one WebSocket server, by name, each with when its first server was saved.
fn configured_groups(servers: &[Server]) -> Vec<ConfiguredGroup> {
    let mut groups: Vec<ConfiguredGroup> = Vec::new();
    for server in servers {
        let since_ms = server.saved_at.saturating_mul(1000);
        match groups.iter_mut().find(|group| group.group_id == server.group_id) {
            Some(group) => group.since_ms = group.since_ms.min(since_ms),
            None => groups.push(ConfiguredGroup::new(server.group_id.clone(), since_ms)),
        }
    }
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    groups
}

/// Delivers to one session until it closes or the service stops.
async fn deliver(
    outbox: Arc<Outbox>,
    session: SessionHandle,
    timing: DeliveryTiming,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let group = session.group_id.clone();
    let (delivery, acks) = Delivery::new(outbox, &group, timing);
    let cancel = shutdown.child_token();
    let sink = SessionSink { session: session.clone(), acks, tracker };
    tracing::info!(group, host = session.host_name, "delivering notifications");
    let result = tokio::select! {
        result = delivery.run(sink, cancel.clone()) => result,
        () = session.closed() => Ok(()),
    };
    cancel.cancel();
    if let Err(error) = result {
        tracing::info!(group, %error, "notification delivery ended");
    }
}

/// Sends over a session and routes the NOTIFICATION RESPONSE with the same id back as an acknowledgement.
struct SessionSink {
    session: SessionHandle,
    acks: DeliveryHandle,
    tracker: TaskTracker,
}

impl NotificationSink for SessionSink {
    async fn send(&self, text: String) -> Result<(), SinkError> {
        // The stored text is decoded and encoded again by the session's codec: the encoding is canonical
        // (keys in the guide's order, the stored timeStamp), so the bytes on the wire are the stored ones.
        let message = Codec::new(usize::MAX).decode(&text).map_err(|_| SinkError)?;
        let response = self.session.request(&message).await.map_err(|error| {
            if let crate::session::RequestError::TooBig { .. } = error {
                tracing::error!(id = message.id, %error, "notification not sent");
            }
            SinkError
        })?;
        let acks = self.acks.clone();
        let session = self.session.clone();
        let id = message.id;
        self.tracker.spawn(async move {
            tokio::select! {
                // Any RESPONSE with the id acknowledges, decodable or not (D11); only a closed session does not.
                response = response => if response.is_ok() { acks.on_ack(&id) },
                () = session.closed() => {}
            }
        });
        Ok(())
    }
}

/// Opens the outbox of a data directory with default limits (for local ingest from another process; SQLite
/// locking makes the concurrent writers safe).
pub fn open_outbox(data_dir: &Path, properties: &Properties) -> anyhow::Result<Outbox> {
    Ok(Outbox::open(
        &data_dir.join(OUTBOX_FILE),
        OutboxConfig::from_properties(properties),
        NotifyMetrics::default(),
    )?)
}

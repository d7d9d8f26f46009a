//! The primary server's state: one lock over every record and the event journal, so that the journal's
//! order is the order in which clients could observe the changes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant as StdInstant};

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{AssetQuery, ContentRequest};
use crate::asset::Asset;
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::config::EmulatorConfig;
use crate::event::{EmulatorEvent, EventKind};
use crate::eventlog::{Notification, MAX_NOTIFICATIONS};
use crate::media::ApiVersion;
use crate::model::{Alert, ApiKey, Job, JobState, Policy, VmServer};
use crate::slp::Slp;
use crate::storage::{DiskPool, StorageServer, StorageUnit};
use crate::tls::TlsMaterial;

/// The name the emulated primary server gives itself.
pub(crate) const PRIMARY_SERVER: &str = "nbu-primary.example.com";
/// The emulated media server.
pub(crate) const MEDIA_SERVER: &str = "nbu-media01.example.com";
/// The emulated disaster-recovery media server (it holds the replica copies).
pub(crate) const DR_MEDIA_SERVER: &str = "nbu-dr-media.example.com";
/// Real-time validity of a login token.
pub(crate) const TOKEN_VALIDITY: Duration = Duration::from_secs(24 * 3600);

/// A logged-in session.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) user: String,
    pub(crate) expires: StdInstant,
}

/// Everything behind the lock.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) next_job_id: u64,
    pub(crate) next_alert_id: u64,
    pub(crate) jobs: BTreeMap<u64, Job>,
    /// The image catalog, by backup id and by `backupTime`.
    pub(crate) images: Catalog,
    pub(crate) policies: BTreeMap<String, Policy>,
    pub(crate) api_keys: BTreeMap<String, ApiKey>,
    pub(crate) sessions: HashMap<String, Session>,
    pub(crate) alerts: Vec<Alert>,
    pub(crate) vm_servers: BTreeMap<String, VmServer>,
    /// By id (`sType:name`).
    pub(crate) storage_servers: BTreeMap<String, StorageServer>,
    /// By id (`sType_name`).
    pub(crate) disk_pools: BTreeMap<String, DiskPool>,
    /// By name.
    pub(crate) storage_units: BTreeMap<String, StorageUnit>,
    /// By name.
    pub(crate) slps: BTreeMap<String, Slp>,
    /// VMware virtual machines and VM groups, by asset id.
    pub(crate) assets: BTreeMap<String, Asset>,
    /// Asset-service queries, by id.
    pub(crate) asset_queries: BTreeMap<String, AssetQuery>,
    /// The event log: the journal as notifications, and those clients posted (at most
    /// [`MAX_NOTIFICATIONS`], oldest dropped first).
    pub(crate) notifications: VecDeque<Notification>,
    pub(crate) next_notification_id: u64,
    /// Open asynchronous image-content requests, by request id.
    pub(crate) content_requests: BTreeMap<String, ContentRequest>,
    pub(crate) users: Vec<(String, String)>,
    pub(crate) events: Vec<EmulatorEvent>,
    pub(crate) rng: StdRng,
}

impl Inner {
    /// Appends to the journal (and its notification to the event log).
    pub(crate) fn record(&mut self, at: DateTime<Utc>, kind: EventKind) {
        let sequence = self.events.len() as u64;
        let event = EmulatorEvent { sequence, at, kind };
        self.notify(crate::eventlog::of_event(&event));
        self.events.push(event);
    }

    /// Appends a notification to the event log; returns its id.
    pub(crate) fn notify(&mut self, attributes: serde_json::Value) -> u64 {
        let id = self.next_notification_id;
        self.next_notification_id += 1;
        if self.notifications.len() >= MAX_NOTIFICATIONS {
            self.notifications.pop_front();
        }
        self.notifications.push_back(Notification { id, attributes });
        id
    }

    pub(crate) fn allocate_job_id(&mut self) -> u64 {
        let id = self.next_job_id;
        self.next_job_id += 1;
        id
    }

    /// Inserts a new job and journals it.
    pub(crate) fn insert_job(&mut self, job: Job, at: DateTime<Utc>) {
        let summary = job.summary();
        let failed = job.state == JobState::Done && job.status != 0;
        let alert = failed.then(|| {
            (
                job.policy_name.clone(),
                job.policy_type.clone(),
                job.client_name.clone(),
                job.job_type.to_owned(),
            )
        });
        let (job_id, status, end) = (job.job_id, job.status, job.end_time.unwrap_or(at));
        self.jobs.insert(job.job_id, job);
        self.record(at, EventKind::JobCreated(summary));
        if let Some((policy_name, policy_type, client_name, job_type)) = alert {
            self.add_alert(job_id, status, policy_name, policy_type, client_name, job_type, end);
        }
    }

    /// Moves a job to `state` (and `status` when DONE), journaling the change.
    pub(crate) fn set_job_state(&mut self, job_id: u64, state: JobState, status: i64, at: DateTime<Utc>) {
        let Some(job) = self.jobs.get_mut(&job_id) else { return };
        if job.state == state {
            return;
        }
        job.state = state;
        job.last_update_time = at;
        if state == JobState::Done {
            job.status = status;
            job.end_time = Some(at);
            if let Some(last) = job.tries.last_mut() {
                last.end = Some(at);
                last.status = status;
            }
            job.log(at, format!("end {}; status {status}", job.job_type));
        } else if state == JobState::Active && job.active_start.is_none() {
            job.active_start = Some(at);
        }
        let summary = job.summary();
        let failed = state == JobState::Done && status != 0;
        let alert =
            failed.then(|| (job.policy_name.clone(), job.policy_type.clone(), job.client_name.clone()));
        let job_type = job.job_type.to_owned();
        let kind = if state == JobState::Done {
            EventKind::JobDone(summary)
        } else {
            EventKind::JobStateChanged(summary)
        };
        self.record(at, kind);
        if let Some((policy_name, policy_type, client_name)) = alert {
            self.add_alert(job_id, status, policy_name, policy_type, client_name, job_type, at);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add_alert(
        &mut self,
        job_id: u64,
        status: i64,
        policy_name: String,
        policy_type: String,
        client_name: String,
        job_type: String,
        at: DateTime<Utc>,
    ) {
        let id = self.next_alert_id;
        self.next_alert_id += 1;
        self.alerts.push(Alert {
            id,
            created: at,
            job_id,
            status,
            policy_name,
            policy_type,
            client_name,
            job_type,
        });
    }

    /// A random token, hex.
    pub(crate) fn random_token(&mut self, bytes: usize) -> String {
        let mut token = String::with_capacity(2 * bytes);
        for _ in 0..bytes {
            let _ = write!(token, "{:02x}", self.rng.random::<u8>());
        }
        token
    }

    /// The user a credential (token or API key) belongs to.
    pub(crate) fn user_of(&self, credential: &str, now_wall: DateTime<Utc>) -> Option<String> {
        if let Some(session) = self.sessions.get(credential) {
            return (session.expires > StdInstant::now()).then(|| session.user.clone());
        }
        self.api_keys
            .values()
            .find(|key| key.key == credential && key.expires > now_wall)
            .map(|key| key.user.clone())
    }
}

/// Shared by the HTTP handlers and the job engine.
pub(crate) struct Shared {
    pub(crate) config: EmulatorConfig,
    pub(crate) clock: Clock,
    pub(crate) default_version: ApiVersion,
    pub(crate) tls: TlsMaterial,
    pub(crate) inner: Mutex<Inner>,
    /// Woken whenever image copies or expirations change, so the expiry task re-plans.
    pub(crate) catalog_changed: Notify,
    pub(crate) cancel: CancellationToken,
    pub(crate) tasks: TaskTracker,
}

impl Shared {
    pub(crate) fn new(config: EmulatorConfig, tls: TlsMaterial) -> Arc<Self> {
        let default_version = ApiVersion::parse(&config.default_api_version).unwrap_or(ApiVersion::NEWEST);
        let inner = Inner {
            next_job_id: 1,
            next_alert_id: 1,
            jobs: BTreeMap::new(),
            images: Catalog::default(),
            policies: BTreeMap::new(),
            api_keys: BTreeMap::new(),
            sessions: HashMap::new(),
            alerts: Vec::new(),
            vm_servers: BTreeMap::new(),
            storage_servers: BTreeMap::new(),
            disk_pools: BTreeMap::new(),
            storage_units: BTreeMap::new(),
            slps: BTreeMap::new(),
            assets: BTreeMap::new(),
            asset_queries: BTreeMap::new(),
            content_requests: BTreeMap::new(),
            notifications: VecDeque::new(),
            next_notification_id: 1,
            users: config.users.clone(),
            events: Vec::new(),
            rng: StdRng::seed_from_u64(config.seed),
        };
        Arc::new(Self {
            clock: Clock::new(config.clock_multiplier),
            default_version,
            tls,
            inner: Mutex::new(inner),
            catalog_changed: Notify::new(),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
            config,
        })
    }

    /// Locks the state; a panic elsewhere never makes the emulator unusable.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Sleeps for an emulated duration; false when the emulator is shutting down.
    pub(crate) async fn pause(&self, emulated: Duration) -> bool {
        tokio::select! {
            _ = self.cancel.cancelled() => false,
            _ = tokio::time::sleep(self.clock.real(emulated)) => true,
        }
    }
}

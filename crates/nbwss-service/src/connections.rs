//! The connection task (§10, D17): every `connectionInfo.period` (and at once after an admin change) it
//! compares the store with the live connections. One worker per server group connects to the group's
//! activated servers in priority order (failover to the next), keeps at most one connection, never
//! preempts it for a better one, and retries a lost connection with exponential backoff and full jitter.
//! Servers deactivated, deleted or changed lose their connection on the next run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nbwss_protocol::{CloseStatus, ConnectionState, HostState};
use rand::Rng as _;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::session::{self, SessionContext};
use crate::store::{Server, Store};

/// Live connection state of every WebSocket server, as `list` reports it.
#[derive(Debug, Default)]
pub struct Status {
    hosts: Mutex<HashMap<String, (ConnectionState, Option<CloseStatus>)>>,
}

impl Status {
    /// The state of a host: `DISCONNECTED` with no closeStatus when never tried.
    pub fn of(&self, host_name: &str) -> (ConnectionState, Option<CloseStatus>) {
        self.lock().get(host_name).cloned().unwrap_or((ConnectionState::Disconnected, None))
    }

    fn connected(&self, host_name: &str) {
        let mut hosts = self.lock();
        let close = hosts.get(host_name).and_then(|(_, close)| close.clone());
        hosts.insert(host_name.to_owned(), (ConnectionState::Connected, close));
    }

    fn disconnected(&self, host_name: &str, close: CloseStatus) {
        self.lock().insert(host_name.to_owned(), (ConnectionState::Disconnected, Some(close)));
    }

    fn forget_except(&self, keep: &[String]) {
        self.lock().retain(|host, _| keep.contains(host));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (ConnectionState, Option<CloseStatus>)>> {
        self.hosts.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What a connection was made with; a change of any of these ends the connection on the next run.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Signature {
    host_name: String,
    url: String,
    group_id: String,
    token: String,
    certificate: Vec<u8>,
}

impl Signature {
    fn of(server: &Server) -> Self {
        Self {
            host_name: server.host_name.clone(),
            url: server.url.clone(),
            group_id: server.group_id.clone(),
            token: server.token.expose().to_owned(),
            certificate: server.certificate_der.clone(),
        }
    }
}

#[derive(Debug)]
struct Active {
    signature: Signature,
    cancel: CancellationToken,
}

#[derive(Debug)]
struct Worker {
    active: Arc<Mutex<Option<Active>>>,
    wake: Arc<Notify>,
    done: CancellationToken,
}

/// Asks the connection task to run now.
#[derive(Debug, Clone, Default)]
pub struct Trigger(Arc<Notify>);

impl Trigger {
    /// Runs the connection task as soon as possible.
    pub fn run_now(&self) {
        self.0.notify_one();
    }
}

/// The connection task.
#[derive(Debug)]
pub struct ConnectionTask {
    /// The store.
    pub store: Arc<Store>,
    /// What sessions need.
    pub ctx: Arc<SessionContext>,
    /// Live status.
    pub status: Arc<Status>,
    /// Wakes the task.
    pub trigger: Trigger,
}

impl ConnectionTask {
    /// Runs until `shutdown`; every worker is spawned on `tracker` and stops with `shutdown`.
    pub async fn run(self, shutdown: CancellationToken, tracker: TaskTracker) {
        let mut workers: HashMap<String, Worker> = HashMap::new();
        let period = self.ctx.properties.connection_info_period;
        loop {
            self.run_once(&mut workers, &shutdown, &tracker);
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(period) => {}
                () = self.trigger.0.notified() => {}
            }
        }
    }

    fn run_once(
        &self,
        workers: &mut HashMap<String, Worker>,
        shutdown: &CancellationToken,
        tracker: &TaskTracker,
    ) {
        let servers = match self.store.list() {
            Ok(servers) => servers,
            Err(error) => {
                tracing::error!(%error, "connection task cannot read the store");
                return;
            }
        };
        self.status.forget_except(&servers.iter().map(|server| server.host_name.clone()).collect::<Vec<_>>());
        workers.retain(|_, worker| !worker.done.is_cancelled());
        for worker in workers.values() {
            let active = worker.active.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(active) = active.as_ref() {
                let still_valid = servers.iter().any(|server| {
                    server.state == HostState::Activated && Signature::of(server) == active.signature
                });
                if !still_valid {
                    tracing::info!(host = %active.signature.host_name, "WebSocket server deactivated, deleted or changed: closing its connection");
                    active.cancel.cancel();
                }
            }
        }
        let mut groups: Vec<&str> = servers
            .iter()
            .filter(|server| server.state == HostState::Activated)
            .map(|server| server.group_id.as_str())
            .collect();
        groups.sort_unstable();
        groups.dedup();
        for group in groups {
            match workers.get(group) {
                Some(worker) => worker.wake.notify_one(),
                None => {
                    let worker = Worker {
                        active: Arc::new(Mutex::new(None)),
                        wake: Arc::new(Notify::new()),
                        done: CancellationToken::new(),
                    };
                    let group_worker = GroupWorker {
                        group_id: group.to_owned(),
                        store: self.store.clone(),
                        ctx: self.ctx.clone(),
                        status: self.status.clone(),
                        active: worker.active.clone(),
                        wake: worker.wake.clone(),
                    };
                    let done = worker.done.clone();
                    let shutdown = shutdown.clone();
                    tracker.spawn(async move {
                        group_worker.run(&shutdown).await;
                        done.cancel();
                    });
                    workers.insert(group.to_owned(), worker);
                }
            }
        }
    }
}

struct GroupWorker {
    group_id: String,
    store: Arc<Store>,
    ctx: Arc<SessionContext>,
    status: Arc<Status>,
    active: Arc<Mutex<Option<Active>>>,
    wake: Arc<Notify>,
}

impl GroupWorker {
    async fn run(self, shutdown: &CancellationToken) {
        let period = self.ctx.properties.connection_info_period;
        let mut failures: u32 = 0;
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let servers: Vec<Server> = match self.store.list() {
                Ok(servers) => servers
                    .into_iter()
                    .filter(|server| server.group_id == self.group_id && server.state == HostState::Activated)
                    .collect(),
                Err(error) => {
                    tracing::error!(%error, group = %self.group_id, "cannot read the store");
                    Vec::new()
                }
            };
            if servers.is_empty() {
                return;
            }
            let mut revoked = false;
            let mut stable = false;
            // Highest priority (lowest number) first; the store lists them in that order.
            for server in &servers {
                let attempt = async {
                    let mut ws = session::open(&self.ctx, server).await?;
                    session::handshake(&self.ctx, server, &mut ws).await?;
                    Ok::<_, session::Ended>(ws)
                };
                let connecting = self.ctx.metrics.connections_in("connecting");
                connecting.inc();
                let result = tokio::select! {
                    () = shutdown.cancelled() => None,
                    result = attempt => Some(result),
                };
                connecting.dec();
                let Some(result) = result else { return };
                let ws = match result {
                    Ok(ws) => ws,
                    Err(ended) => {
                        tracing::warn!(host = %server.host_name, group = %self.group_id, close_status = %ended.close_status.as_str(), reason = %ended.reason, "cannot connect; trying the next WebSocket server of the group");
                        self.status.disconnected(&server.host_name, ended.close_status.clone());
                        self.ctx.metrics.disconnected(ended.close_status.as_str());
                        continue;
                    }
                };
                tracing::info!(host = %server.host_name, group = %self.group_id, url = %server.url, "connected");
                let cancel = shutdown.child_token();
                *self.lock_active() =
                    Some(Active { signature: Signature::of(server), cancel: cancel.clone() });
                self.status.connected(&server.host_name);
                let gauge = self.ctx.metrics.connections_in("connected");
                gauge.inc();
                let started = tokio::time::Instant::now();
                let ended = session::serve(&self.ctx, server, ws, &cancel, shutdown).await;
                gauge.dec();
                *self.lock_active() = None;
                self.status.disconnected(&server.host_name, ended.close_status.clone());
                self.ctx.metrics.disconnected(ended.close_status.as_str());
                tracing::info!(host = %server.host_name, group = %self.group_id, close_status = %ended.close_status.as_str(), reason = %ended.reason, "disconnected");
                revoked = cancel.is_cancelled() && !shutdown.is_cancelled();
                stable = started.elapsed() >= period;
                break;
            }
            if revoked {
                failures = 0;
                continue;
            }
            failures = if stable { 1 } else { failures.saturating_add(1) };
            let delay = backoff(failures, period);
            tracing::debug!(group = %self.group_id, delay_ms = delay.as_millis() as u64, "next connection attempt");
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
                () = self.wake.notified() => {}
            }
        }
    }

    fn lock_active(&self) -> std::sync::MutexGuard<'_, Option<Active>> {
        self.active.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Exponential backoff with full jitter (D17): a random delay between 1 s (or `period`, if shorter) and
/// `min(period, 2^attempt s)`. The first retry is jittered too (1 to 2 s): a fleet of services that lost
/// its endpoint at the same moment must not come back in the same second.
pub fn backoff(attempt: u32, period: Duration) -> Duration {
    let floor = Duration::from_secs(1).min(period);
    let exponent = attempt.min(20);
    let cap = Duration::from_secs(1u64 << exponent).min(period).max(floor);
    if cap <= floor {
        return floor;
    }
    let millis = rand::rng().random_range(floor.as_millis() as u64..=cap.as_millis() as u64);
    Duration::from_millis(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_period_with_jitter() {
        let period = Duration::from_secs(60);
        let first: Vec<Duration> = (0..50).map(|_| backoff(1, period)).collect();
        assert!(first
            .iter()
            .all(|delay| *delay >= Duration::from_secs(1) && *delay <= Duration::from_secs(2)));
        assert!(first.iter().any(|delay| *delay != first[0]), "the first retry is jittered");
        for attempt in 2..30 {
            let delay = backoff(attempt, period);
            assert!(delay >= Duration::from_secs(1) && delay <= period, "{attempt}: {delay:?}");
        }
        let short = Duration::from_millis(300);
        assert_eq!(backoff(5, short), short);
    }
}

//! The connection task (§10, D17): every `connectionInfo.period` (and at once after an admin change) it
//! compares the store with the live connections. One worker per server group connects to the group's
//! activated servers in priority order, keeps at most one connection, and never preempts it for a better
//! one. Fail over first, retry later: a server whose attempt failed or whose connection was lost waits out
//! its own backoff (exponential, full jitter) while the next attempt goes at once to the next server of the
//! group in priority order; it is taken back only when it is the best one available after the current
//! connection ends (no preemption). Servers deactivated, deleted or changed lose their connection on the
//! next run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nbwss_protocol::{CloseReason, CloseStatus, ConnectionState, HostState};
use rand::Rng as _;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::session::{self, Ended, SessionContext};
use crate::store::{Server, Store};

/// What `list` reports about one WebSocket server's connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostStatus {
    /// Connected (CONNECT accepted) or not.
    pub connection_state: ConnectionState,
    /// The closeStatus of the last failure or close.
    pub close_status: Option<CloseStatus>,
    /// Why the last attempt failed or the last connection closed.
    pub last_close: Option<Closed>,
    /// Attempts that failed since the last established connection.
    pub attempts_since_success: u32,
    /// The certificate the endpoint presented instead of the pinned one, when an attempt met one since the
    /// last established connection.
    pub presented_certificate: Option<Presented>,
}

/// A failure or close, as `list` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// Why.
    pub cause: CloseReason,
    /// What happened, in a sentence.
    pub description: String,
    /// When.
    pub at: chrono::DateTime<chrono::Utc>,
}

/// A certificate presented instead of the pinned one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// When it was last presented.
    pub seen_at: chrono::DateTime<chrono::Utc>,
}

impl Default for HostStatus {
    fn default() -> Self {
        Self {
            connection_state: ConnectionState::Disconnected,
            close_status: None,
            last_close: None,
            attempts_since_success: 0,
            presented_certificate: None,
        }
    }
}

impl HostStatus {
    fn record(&mut self, ended: &Ended) {
        self.connection_state = ConnectionState::Disconnected;
        self.close_status = Some(ended.close_status.clone());
        self.last_close = Some(Closed {
            cause: ended.cause.clone(),
            description: ended.reason.clone(),
            at: chrono::Utc::now(),
        });
        if let Some(der) = &ended.presented_certificate {
            self.presented_certificate = Some(Presented { der: der.clone(), seen_at: chrono::Utc::now() });
        }
    }
}

/// Live connection state of every WebSocket server, as `list` reports it.
#[derive(Debug, Default)]
pub struct Status {
    hosts: Mutex<HashMap<String, HostStatus>>,
}

impl Status {
    /// The state of a host: `DISCONNECTED` with nothing else when never tried.
    pub fn of(&self, host_name: &str) -> HostStatus {
        self.lock().get(host_name).cloned().unwrap_or_default()
    }

    fn connected(&self, host_name: &str) {
        let mut hosts = self.lock();
        let host = hosts.entry(host_name.to_owned()).or_default();
        host.connection_state = ConnectionState::Connected;
        host.attempts_since_success = 0;
        host.presented_certificate = None;
    }

    /// An attempt failed before the connection was established.
    fn failed(&self, host_name: &str, ended: &Ended) {
        let mut hosts = self.lock();
        let host = hosts.entry(host_name.to_owned()).or_default();
        host.record(ended);
        host.attempts_since_success = host.attempts_since_success.saturating_add(1);
    }

    /// An established connection ended.
    fn disconnected(&self, host_name: &str, ended: &Ended) {
        self.lock().entry(host_name.to_owned()).or_default().record(ended);
    }

    fn forget_except(&self, keep: &[String]) {
        self.lock().retain(|host, _| keep.contains(host));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HostStatus>> {
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

/// One server's backoff inside its group.
#[derive(Debug)]
struct Backoff {
    /// What the server was when it failed: a changed server (a new certificate, say) is tried at once.
    signature: Signature,
    failures: u32,
    retry_at: Instant,
}

impl GroupWorker {
    async fn run(self, shutdown: &CancellationToken) {
        let period = self.ctx.properties.connection_info_period;
        let mut backoffs: HashMap<String, Backoff> = HashMap::new();
        // A full round tries every activated server in priority order (§10); after a loss, the round tries
        // only the servers not waiting out a backoff, so the lost one is not tried first again.
        let mut full_round = true;
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
            backoffs.retain(|host, backoff| {
                servers
                    .iter()
                    .any(|server| server.host_name == *host && Signature::of(server) == backoff.signature)
            });
            let now = Instant::now();
            // The store lists a group's servers by priority, highest (lowest number) first.
            let round: Vec<&Server> = servers
                .iter()
                .filter(|server| {
                    full_round
                        || backoffs.get(&server.host_name).is_none_or(|backoff| backoff.retry_at <= now)
                })
                .collect();
            full_round = false;
            if round.is_empty() {
                // Every server waits out a backoff: sleep until the first is due (or the connection task
                // runs), then try them all again in priority order.
                let next = backoffs.values().map(|backoff| backoff.retry_at).min().unwrap_or(now + period);
                tracing::debug!(group = %self.group_id, delay_ms = next.saturating_duration_since(now).as_millis() as u64, "next connection attempt");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep_until(next) => {}
                    () = self.wake.notified() => {}
                }
                full_round = true;
                continue;
            }
            for server in round {
                let failures = backoffs.get(&server.host_name).map_or(0, |backoff| backoff.failures);
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
                        tracing::warn!(host = %server.host_name, group = %self.group_id, close_status = %ended.close_status.as_str(), cause = %ended.cause.as_str(), reason = %ended.reason, "cannot connect; trying the next WebSocket server of the group");
                        self.status.failed(&server.host_name, &ended);
                        self.ctx.metrics.disconnected(ended.close_status.as_str());
                        self.back_off(&mut backoffs, server, failures.saturating_add(1));
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
                let started = Instant::now();
                let ended = session::serve(&self.ctx, server, ws, &cancel, shutdown).await;
                gauge.dec();
                *self.lock_active() = None;
                self.status.disconnected(&server.host_name, &ended);
                self.ctx.metrics.disconnected(ended.close_status.as_str());
                tracing::info!(host = %server.host_name, group = %self.group_id, close_status = %ended.close_status.as_str(), cause = %ended.cause.as_str(), reason = %ended.reason, "disconnected");
                if cancel.is_cancelled() && !shutdown.is_cancelled() {
                    // Deactivated, deleted or changed: the next round decides with the new configuration.
                    backoffs.remove(&server.host_name);
                    full_round = true;
                } else {
                    // Lost or closed by the endpoint: this server waits (briefly after a stable connection),
                    // the next server of the group is tried now.
                    let stable = started.elapsed() >= period;
                    self.back_off(&mut backoffs, server, if stable { 1 } else { failures.saturating_add(1) });
                }
                break;
            }
        }
    }

    /// Makes `server` wait out its backoff after `failures` failures in a row.
    fn back_off(&self, backoffs: &mut HashMap<String, Backoff>, server: &Server, failures: u32) {
        let delay = backoff(failures, self.ctx.properties.connection_info_period);
        tracing::debug!(host = %server.host_name, group = %self.group_id, delay_ms = delay.as_millis() as u64, "server waits before its next attempt; the next server of the group is tried meanwhile");
        backoffs.insert(
            server.host_name.clone(),
            Backoff { signature: Signature::of(server), failures, retry_at: Instant::now() + delay },
        );
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

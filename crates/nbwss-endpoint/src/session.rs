//! Sessions of connected primary servers and the registry that names them.
//!
//! Invariant: a session accepts a pending call only while it is open; closing it takes the pending map
//! under the same lock, so every relayed call either gets its COMMAND RESPONSE or fails at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use nbwss_protocol::{CloseStatus, CommandResponse};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_util::sync::CancellationToken;

/// Why a relayed call got no COMMAND RESPONSE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallFailure {
    /// The session closed (connection lost or replaced) before the answer came.
    Disconnected,
    /// The answer was not a valid COMMAND RESPONSE.
    InvalidResponse(String),
}

type Reply = Result<CommandResponse, CallFailure>;

struct Pending {
    open: bool,
    calls: HashMap<String, oneshot::Sender<Reply>>,
}

/// One connected primary server.
pub(crate) struct Session {
    pub serial: u64,
    pub name: String,
    pub group_id: String,
    /// SHA-256 of the token the session was opened with: when the store no longer holds it for this name
    /// (revoked or rotated), the session is closed.
    pub token_sha256: String,
    pub remote: SocketAddr,
    pub connected_at: DateTime<Utc>,
    pub outgoing: mpsc::Sender<Frame>,
    pub in_flight: Arc<Semaphore>,
    /// Cancelled when the session must end; the writer then sends the close frame in `close_frame`.
    pub closing: CancellationToken,
    close_frame: Mutex<Option<(u16, String)>>,
    pending: Mutex<Pending>,
}

static NEXT_SERIAL: AtomicU64 = AtomicU64::new(1);

impl Session {
    pub fn new(
        name: String,
        group_id: String,
        token_sha256: String,
        remote: SocketAddr,
        outgoing: mpsc::Sender<Frame>,
        max_in_flight: usize,
        closing: CancellationToken,
    ) -> Self {
        Self {
            serial: NEXT_SERIAL.fetch_add(1, Ordering::Relaxed),
            name,
            group_id,
            token_sha256,
            remote,
            connected_at: Utc::now(),
            outgoing,
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            closing,
            close_frame: Mutex::new(None),
            pending: Mutex::new(Pending { open: true, calls: HashMap::new() }),
        }
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a call waiting for the COMMAND RESPONSE with `id`; `None` when the session is closed.
    pub fn expect_response(&self, id: &str) -> Option<oneshot::Receiver<Reply>> {
        let mut pending = self.pending();
        if !pending.open {
            return None;
        }
        let (sender, receiver) = oneshot::channel();
        pending.calls.insert(id.to_owned(), sender);
        Some(receiver)
    }

    /// Forgets a call (it timed out).
    pub fn forget(&self, id: &str) {
        self.pending().calls.remove(id);
    }

    /// Delivers a reply to the call with `id`; false when no call waits for it.
    pub fn deliver(&self, id: &str, reply: Reply) -> bool {
        match self.pending().calls.remove(id) {
            Some(sender) => {
                let _ = sender.send(reply);
                true
            }
            None => false,
        }
    }

    /// Ends the session: remembers the close frame to send (the first reason wins), fails every pending
    /// call at once and cancels the session's tasks.
    pub fn close(&self, status: CloseStatus, reason: &str) {
        {
            let mut frame = self.close_frame.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if frame.is_none() {
                *frame = Some((status.code().unwrap_or(1000), reason.to_owned()));
            }
        }
        let calls = {
            let mut pending = self.pending();
            pending.open = false;
            std::mem::take(&mut pending.calls)
        };
        for (_, sender) in calls {
            let _ = sender.send(Err(CallFailure::Disconnected));
        }
        self.closing.cancel();
    }

    pub fn close_frame(&self) -> (u16, String) {
        self.close_frame
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
            .unwrap_or((1000, String::new()))
    }
}

/// What the endpoint remembers of a primary server across sessions.
#[derive(Debug, Clone, Default)]
pub(crate) struct PrimaryStats {
    pub commands: u64,
    pub last_remote: Option<SocketAddr>,
    pub last_connected_at: Option<DateTime<Utc>>,
    pub last_disconnected_at: Option<DateTime<Utc>>,
}

/// The connected sessions by primary server name.
#[derive(Default)]
pub(crate) struct Registry {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    stats: Mutex<HashMap<String, PrimaryStats>>,
}

impl Registry {
    fn sessions(&self) -> MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn stats_mut(&self) -> MutexGuard<'_, HashMap<String, PrimaryStats>> {
        self.stats.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes `session` the primary server's session; the previous one, if any, is closed.
    pub fn insert(&self, session: Arc<Session>) {
        {
            let mut stats = self.stats_mut();
            let entry = stats.entry(session.name.clone()).or_default();
            entry.last_remote = Some(session.remote);
            entry.last_connected_at = Some(session.connected_at);
        }
        let previous = self.sessions().insert(session.name.clone(), session.clone());
        if let Some(previous) = previous {
            tracing::info!(primary = %session.name, old = %previous.remote, new = %session.remote,
                "primary server connected again: replacing its old session");
            previous
                .close(CloseStatus::NormalClosure, "replaced by a new connection of the same primary server");
        }
    }

    /// Removes `session` if it is still the primary server's current one.
    pub fn remove(&self, session: &Session) -> bool {
        let mut sessions = self.sessions();
        let current = sessions.get(&session.name).is_some_and(|current| current.serial == session.serial);
        if current {
            sessions.remove(&session.name);
            drop(sessions);
            self.stats_mut().entry(session.name.clone()).or_default().last_disconnected_at = Some(Utc::now());
        }
        current
    }

    pub fn get(&self, name: &str) -> Option<Arc<Session>> {
        self.sessions().get(name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Session>> {
        self.sessions().values().cloned().collect()
    }

    pub fn count_command(&self, name: &str) {
        self.stats_mut().entry(name.to_owned()).or_default().commands += 1;
    }

    pub fn stats(&self, name: &str) -> PrimaryStats {
        self.stats_mut().get(name).cloned().unwrap_or_default()
    }

    /// Closes every session (shutdown).
    pub fn close_all(&self, reason: &str) {
        for session in self.all() {
            session.close(CloseStatus::GoingAway, reason);
        }
    }
}

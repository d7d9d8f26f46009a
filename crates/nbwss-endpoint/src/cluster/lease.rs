//! Which replica holds each primary server's session: a lease per primary server in the sessions bucket,
//! whose entries expire after `cluster.lease_ms` unless renewed. The holder renews every third of that with
//! a revision-checked update. A new session takes the lease unconditionally (the newest session wins): the
//! old holder's next renewal finds another revision and closes its session.

use std::sync::Arc;

use async_nats::jetstream::kv;
use nbwss_protocol::CloseStatus;
use serde::{Deserialize, Serialize};

use super::watch::{follow_until_cancelled, Warning};
use super::{token, Cluster};
use crate::session::Session;
use crate::state::AppState;

/// The value of a lease.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Lease {
    pub primary: String,
    pub replica: String,
    pub serial: u64,
    pub since: String,
}

impl Lease {
    fn is(&self, replica: &str, session: &Session) -> bool {
        self.replica == replica && self.serial == session.serial
    }
}

/// Holds the lease of `session` and answers the calls other replicas forward to it, until it closes; then
/// gives the lease up (unless another session took it).
pub(crate) async fn hold(state: AppState, cluster: Cluster, session: Arc<Session>) {
    let key = token(&session.name);
    let lease = Lease {
        primary: session.name.clone(),
        replica: cluster.config.replica.clone(),
        serial: session.serial,
        since: crate::store::now(),
    };
    let value: bytes::Bytes = serde_json::to_vec(&lease).unwrap_or_default().into();
    let server = state.tracker.spawn(super::relay::serve(state.clone(), cluster.clone(), session.clone()));
    let renew_every = cluster.config.lease() / 3;
    let mut revision = None;
    loop {
        revision = match revision {
            None => match cluster.sessions.put(&key, value.clone()).await {
                Ok(revision) => Some(revision),
                Err(error) => {
                    tracing::warn!(primary = %session.name, "cannot take the session's lease: {error}");
                    None
                }
            },
            Some(held) => match renew(&cluster, &key, &value, held, &lease, &session).await {
                Renewed::Yes(revision) => {
                    state.metrics.lease_renewals.inc();
                    Some(revision)
                }
                Renewed::Failed => Some(held),
                Renewed::TakenBy(replica) => {
                    state.metrics.lease_takeovers.inc();
                    tracing::info!(primary = %session.name, %replica,
                        "primary server connected to another replica: closing its session here");
                    session.close(
                        CloseStatus::NormalClosure,
                        "replaced by a new connection of the same primary server",
                    );
                    break;
                }
            },
        };
        tokio::select! {
            () = session.closing.cancelled() => {
                if let Some(revision) = revision {
                    // Only our own lease: a newer session's stays.
                    let _ = cluster.sessions.delete_expect_revision(&key, Some(revision)).await;
                }
                break;
            }
            () = tokio::time::sleep(renew_every) => {}
        }
    }
    let _ = server.await;
}

enum Renewed {
    Yes(u64),
    Failed,
    TakenBy(String),
}

async fn renew(
    cluster: &Cluster,
    key: &str,
    value: &bytes::Bytes,
    held: u64,
    lease: &Lease,
    session: &Session,
) -> Renewed {
    match cluster.sessions.update(key, value.clone(), held).await {
        Ok(revision) => Renewed::Yes(revision),
        Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => {
            match cluster.sessions.entry(key).await {
                Ok(Some(entry)) if entry.operation == kv::Operation::Put => {
                    match serde_json::from_slice::<Lease>(&entry.value) {
                        Ok(other) if !other.is(&lease.replica, session) => Renewed::TakenBy(other.replica),
                        Ok(_) => Renewed::Yes(entry.revision),
                        Err(_) => Renewed::Failed,
                    }
                }
                // Expired (the holder could not renew in time) or deleted: take it again.
                Ok(_) => match cluster.sessions.create(key, value.clone()).await {
                    Ok(revision) => Renewed::Yes(revision),
                    Err(_) => Renewed::Failed,
                },
                Err(_) => Renewed::Failed,
            }
        }
        Err(error) => {
            tracing::warn!(primary = %session.name, "cannot renew the session's lease: {error}");
            Renewed::Failed
        }
    }
}

/// Who holds each primary server's session, as far as this replica has seen: (replica, session serial) by
/// primary server name, changed only when the holder changes (not on renewals).
pub(crate) type Holders = tokio::sync::watch::Sender<std::collections::HashMap<String, (String, u64)>>;

/// Keeps `holders` current from the sessions bucket until `cancel`.
pub(crate) async fn follow_holders(
    cluster: Cluster,
    holders: std::sync::Arc<Holders>,
    cancel: tokio_util::sync::CancellationToken,
) {
    use futures_util::StreamExt as _;
    let (cluster, holders) = (&cluster, &holders);
    let warning = Warning { what: "cluster sessions", ended: "watch ended", again: "watching again" };
    follow_until_cancelled(warning, cancel, move || async move {
        let mut updates = cluster.sessions.watch_with_history(">").await?;
        while let Some(entry) = updates.next().await {
            let entry = entry?;
            let name = entry.key.replace('=', ".");
            let holder = match entry.operation {
                kv::Operation::Put => serde_json::from_slice::<Lease>(&entry.value)
                    .ok()
                    .map(|lease| (lease.replica, lease.serial)),
                _ => None,
            };
            holders.send_if_modified(|map| match holder {
                Some(holder) if map.get(&name) != Some(&holder) => {
                    map.insert(name, holder);
                    true
                }
                None => map.remove(&name).is_some(),
                _ => false,
            });
        }
        anyhow::Ok(())
    })
    .await;
}

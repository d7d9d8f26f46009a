//! Caps on WebSocket connections whose CONNECT is not accepted yet, in all and per source address. A
//! [`PendingSlot`] is taken before the upgrade is answered and given back when CONNECT is accepted or the
//! connection ends, whichever comes first; over a cap the upgrade is answered 503.
//!
//! Authenticated sessions do not count: a fleet of thousands of primary servers is held by
//! `limits.max_connections` alone. Only the unauthenticated phase, which anyone can open, is capped here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::listener::Reporter;

/// Why a pending connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PendingRefusal {
    /// `limits.max_pending_connections` were pending for as long as the upgrade waited.
    Total(usize),
    /// `limits.max_pending_per_address` are pending from this address.
    PerAddress(usize),
}

type ByAddress = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// The pending connections.
pub(crate) struct PendingConnections {
    max_total: usize,
    max_per_address: usize,
    total: Arc<Semaphore>,
    by_address: ByAddress,
    gauge: Gauge,
    /// Refusals, for a log line at most every few seconds.
    pub refusals: Reporter,
}

/// One pending connection's place under the caps; dropping it gives the place back.
pub(crate) struct PendingSlot {
    _address: AddressPlace,
    _total: OwnedSemaphorePermit,
    gauge: Gauge,
}

/// A place under the per-address cap, given back when dropped.
struct AddressPlace {
    address: IpAddr,
    by_address: ByAddress,
}

fn lock(by_address: &Mutex<HashMap<IpAddr, usize>>) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
    by_address.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl PendingConnections {
    pub fn new(max_total: usize, max_per_address: usize, gauge: Gauge) -> Self {
        Self {
            max_total,
            max_per_address,
            total: Arc::new(Semaphore::new(max_total)),
            by_address: Arc::default(),
            gauge,
            refusals: Reporter::default(),
        }
    }

    /// Takes a place for a connection from `address`. Over the per-address cap it is refused at once; when
    /// all places are taken it waits up to `wait` for one, so that a fleet reconnecting all at once is
    /// admitted as places free up instead of retrying after a TLS handshake already done.
    pub async fn admit(&self, address: IpAddr, wait: Duration) -> Result<PendingSlot, PendingRefusal> {
        let place = {
            let mut by_address = lock(&self.by_address);
            let count = by_address.entry(address).or_default();
            if *count >= self.max_per_address {
                return Err(PendingRefusal::PerAddress(self.max_per_address));
            }
            *count += 1;
            AddressPlace { address, by_address: self.by_address.clone() }
        };
        let total = match self.total.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => match tokio::time::timeout(wait, self.total.clone().acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                Ok(Err(_)) | Err(_) => return Err(PendingRefusal::Total(self.max_total)),
            },
        };
        self.gauge.inc();
        Ok(PendingSlot { _address: place, _total: total, gauge: self.gauge.clone() })
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl Drop for AddressPlace {
    fn drop(&mut self) {
        let mut by_address = lock(&self.by_address);
        if let Some(count) = by_address.get_mut(&self.address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                by_address.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_WAIT: Duration = Duration::ZERO;

    #[tokio::test]
    async fn caps_in_all_and_per_address() {
        let pending = PendingConnections::new(3, 2, Gauge::default());
        let one = IpAddr::from([10, 0, 0, 1]);
        let two = IpAddr::from([10, 0, 0, 2]);
        let first = pending.admit(one, NO_WAIT).await.unwrap();
        let second = pending.admit(one, NO_WAIT).await.unwrap();
        assert_eq!(pending.admit(one, NO_WAIT).await.err(), Some(PendingRefusal::PerAddress(2)));
        let _third = pending.admit(two, NO_WAIT).await.unwrap();
        assert_eq!(pending.admit(two, NO_WAIT).await.err(), Some(PendingRefusal::Total(3)));
        assert_eq!(lock(&pending.by_address).get(&two), Some(&1), "a refused connection holds no place");
        drop(first);
        let _again = pending.admit(one, NO_WAIT).await.expect("a place given back is free again");
        assert_eq!(pending.gauge.get(), 3);
        drop(second);
        assert_eq!(lock(&pending.by_address).get(&one), Some(&1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_waits_for_a_place_in_all() {
        let pending = Arc::new(PendingConnections::new(1, 5, Gauge::default()));
        let address = IpAddr::from([10, 0, 0, 1]);
        let held = pending.admit(address, NO_WAIT).await.unwrap();
        let waiting = tokio::spawn({
            let pending = pending.clone();
            async move { pending.admit(address, Duration::from_secs(5)).await.is_ok() }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(held);
        assert!(waiting.await.unwrap(), "admitted once the place came free");
        let _held = pending.admit(address, NO_WAIT).await.unwrap();
        let refused = pending.admit(address, Duration::from_secs(5)).await;
        assert_eq!(refused.err(), Some(PendingRefusal::Total(1)), "refused after waiting in vain");
    }
}

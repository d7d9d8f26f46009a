//! Caps on WebSocket connections whose CONNECT is not accepted yet, in all and per source address. A
//! [`PendingSlot`] is taken before the upgrade is answered and given back when CONNECT is accepted or the
//! connection ends, whichever comes first; over a cap the upgrade is answered 503.
//!
//! Authenticated sessions do not count: a fleet of thousands of primary servers is held by
//! `limits.max_connections` alone. Only the unauthenticated phase, which anyone can open, is capped here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::gauge::Gauge;

use crate::listener::Reporter;

/// Why a pending connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PendingRefusal {
    /// `limits.max_pending_connections` are pending.
    Total(usize),
    /// `limits.max_pending_per_address` are pending from this address.
    PerAddress(usize),
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// The pending connections.
pub(crate) struct PendingConnections {
    max_total: usize,
    max_per_address: usize,
    counts: Arc<Mutex<Counts>>,
    gauge: Gauge,
    /// Refusals, for a log line at most every few seconds.
    pub refusals: Reporter,
}

/// One pending connection's place under the caps; dropping it gives the place back.
pub(crate) struct PendingSlot {
    address: IpAddr,
    counts: Arc<Mutex<Counts>>,
    gauge: Gauge,
}

fn lock(counts: &Mutex<Counts>) -> MutexGuard<'_, Counts> {
    counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl PendingConnections {
    pub fn new(max_total: usize, max_per_address: usize, gauge: Gauge) -> Self {
        Self { max_total, max_per_address, counts: Arc::default(), gauge, refusals: Reporter::default() }
    }

    /// Takes a place for a connection from `address`, or says which cap is reached.
    pub fn admit(&self, address: IpAddr) -> Result<PendingSlot, PendingRefusal> {
        let mut counts = lock(&self.counts);
        if counts.total >= self.max_total {
            return Err(PendingRefusal::Total(self.max_total));
        }
        let from_address = counts.by_address.entry(address).or_default();
        if *from_address >= self.max_per_address {
            return Err(PendingRefusal::PerAddress(self.max_per_address));
        }
        *from_address += 1;
        counts.total += 1;
        self.gauge.inc();
        Ok(PendingSlot { address, counts: self.counts.clone(), gauge: self.gauge.clone() })
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        counts.total = counts.total.saturating_sub(1);
        if let Some(count) = counts.by_address.get_mut(&self.address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.by_address.remove(&self.address);
            }
        }
        self.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_in_all_and_per_address() {
        let pending = PendingConnections::new(3, 2, Gauge::default());
        let one = IpAddr::from([10, 0, 0, 1]);
        let two = IpAddr::from([10, 0, 0, 2]);
        let first = pending.admit(one).unwrap();
        let second = pending.admit(one).unwrap();
        assert_eq!(pending.admit(one).err(), Some(PendingRefusal::PerAddress(2)));
        let _third = pending.admit(two).unwrap();
        assert_eq!(pending.admit(two).err(), Some(PendingRefusal::Total(3)));
        drop(first);
        let _again = pending.admit(one).expect("a place given back is free again");
        assert_eq!(pending.gauge.get(), 3);
        drop(second);
        assert_eq!(lock(&pending.counts).by_address.get(&one), Some(&1));
    }
}

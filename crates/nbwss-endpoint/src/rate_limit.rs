//! Per-source-address limit of failed CONNECT attempts (bad token, no CONNECT): a sliding window of one
//! minute; an address over the limit is refused before the WebSocket handshake.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);

pub(crate) struct FailedConnectLimiter {
    max_per_window: u32,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl FailedConnectLimiter {
    pub fn new(max_per_window: u32) -> Self {
        Self { max_per_window, failures: Mutex::new(HashMap::new()) }
    }

    /// Whether `address` may try again now.
    pub fn allows(&self, address: IpAddr) -> bool {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(times) = failures.get_mut(&address) else { return true };
        while times.front().is_some_and(|time| now.duration_since(*time) >= WINDOW) {
            times.pop_front();
        }
        if times.is_empty() {
            failures.remove(&address);
            return true;
        }
        times.len() < self.max_per_window as usize
    }

    /// Records a failed attempt from `address`.
    pub fn record_failure(&self, address: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if failures.len() > 100_000 {
            // Bound memory under a spray of source addresses: forget the quiet ones.
            let now = Instant::now();
            failures.retain(|_, times| times.back().is_some_and(|time| now.duration_since(*time) < WINDOW));
        }
        failures.entry(address).or_default().push_back(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_after_the_limit() {
        let limiter = FailedConnectLimiter::new(2);
        let one = IpAddr::from([10, 0, 0, 1]);
        let two = IpAddr::from([10, 0, 0, 2]);
        assert!(limiter.allows(one));
        limiter.record_failure(one);
        assert!(limiter.allows(one));
        limiter.record_failure(one);
        assert!(!limiter.allows(one));
        assert!(limiter.allows(two));
    }
}

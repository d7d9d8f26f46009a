//! Relayed calls per minute and their latency, for the dashboard: for the last hour, a small histogram per
//! minute (buckets doubling from 1 ms), for all calls and per primary server. Quantiles are interpolated
//! within a bucket, so a p50 or p99 is exact to within its bucket's width.
//!
//! Bounded: at most [`MINUTES`] minutes per primary server and [`MAX_PRIMARIES`] primary servers (about
//! 5 KB each when busy every minute); a primary server with no call for an hour is forgotten, and calls
//! beyond that many servers count in the totals only.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

/// Minutes kept.
pub(crate) const MINUTES: usize = 60;
/// Primary servers tracked at once.
const MAX_PRIMARIES: usize = 2048;
/// Buckets: `(2^(i-1), 2^i]` ms for i in 1..18, `[0, 1]` ms for 0, and over 2^17 ms (131 s) for the last.
const BUCKETS: usize = 19;

#[derive(Debug, Clone)]
struct Minute {
    minute: i64,
    counts: [u32; BUCKETS],
    errors: u32,
}

#[derive(Debug, Clone, Default)]
struct Ring {
    minutes: VecDeque<Minute>,
}

impl Ring {
    fn record(&mut self, minute: i64, bucket: usize, error: bool) {
        if self.minutes.back().is_none_or(|last| last.minute < minute) {
            self.minutes.push_back(Minute { minute, counts: [0; BUCKETS], errors: 0 });
            while self.minutes.len() > MINUTES {
                self.minutes.pop_front();
            }
        }
        // A clock stepping back lands in the newest minute.
        if let Some(last) = self.minutes.back_mut() {
            last.counts[bucket] = last.counts[bucket].saturating_add(1);
            last.errors = last.errors.saturating_add(u32::from(error));
        }
    }

    fn newest(&self) -> i64 {
        self.minutes.back().map_or(i64::MIN, |last| last.minute)
    }

    fn stats(&self, minutes: &[i64]) -> Vec<MinuteStats> {
        minutes
            .iter()
            .map(|minute| {
                self.minutes.iter().find(|each| each.minute == *minute).map_or_else(
                    MinuteStats::default,
                    |each| {
                        let calls: u32 = each.counts.iter().fold(0, |sum, count| sum.saturating_add(*count));
                        MinuteStats {
                            calls,
                            errors: each.errors,
                            p50_ms: quantile(&each.counts, 0.5),
                            p99_ms: quantile(&each.counts, 0.99),
                        }
                    },
                )
            })
            .collect()
    }
}

/// One minute of relayed calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MinuteStats {
    pub calls: u32,
    /// Answered with a status of 500 or more (the primary server's, or the relay's own 502, 503, 504).
    pub errors: u32,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Some minutes of relayed calls.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Snapshot {
    /// Each minute, as minutes since the epoch, oldest first.
    pub minutes: Vec<i64>,
    /// All calls, per minute.
    pub total: Vec<MinuteStats>,
    /// Each primary server with calls in these minutes, by name, per minute.
    pub primaries: Vec<(String, Vec<MinuteStats>)>,
}

/// The history of relayed calls.
#[derive(Debug, Default)]
pub(crate) struct RelayHistory {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    total: Ring,
    primaries: HashMap<String, Ring>,
}

impl RelayHistory {
    /// Counts a call to `primary` that took `seconds` and was answered `status`, at `unix_seconds`.
    pub fn record(&self, primary: &str, status: u16, seconds: f64, unix_seconds: i64) {
        let minute = unix_seconds.div_euclid(60);
        let bucket = bucket(seconds * 1000.0);
        let error = status >= 500;
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.total.record(minute, bucket, error);
        if let Some(ring) = inner.primaries.get_mut(primary) {
            ring.record(minute, bucket, error);
            return;
        }
        if inner.primaries.len() >= MAX_PRIMARIES {
            let oldest = minute - MINUTES as i64;
            inner.primaries.retain(|_, ring| ring.newest() > oldest);
            if inner.primaries.len() >= MAX_PRIMARIES {
                return;
            }
        }
        let mut ring = Ring::default();
        ring.record(minute, bucket, error);
        inner.primaries.insert(primary.to_owned(), ring);
    }

    /// The last `count` minutes up to `unix_seconds` (oldest first), for all calls and per primary server
    /// with calls among them.
    pub fn snapshot(&self, unix_seconds: i64, count: usize) -> Snapshot {
        let now = unix_seconds.div_euclid(60);
        let count = count.clamp(1, MINUTES) as i64;
        let minutes: Vec<i64> = (now - count + 1..=now).collect();
        let inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut primaries: Vec<(String, Vec<MinuteStats>)> = inner
            .primaries
            .iter()
            .filter(|(_, ring)| ring.newest() >= minutes[0])
            .map(|(name, ring)| (name.clone(), ring.stats(&minutes)))
            .collect();
        primaries.sort_by(|a, b| a.0.cmp(&b.0));
        Snapshot { total: inner.total.stats(&minutes), minutes, primaries }
    }
}

fn bucket(ms: f64) -> usize {
    if ms.is_nan() || ms <= 1.0 {
        return 0;
    }
    (ms.log2().ceil() as usize).min(BUCKETS - 1)
}

fn bounds(bucket: usize) -> (f64, f64) {
    match bucket {
        0 => (0.0, 1.0),
        _ => (f64::from(1u32 << (bucket - 1)), f64::from(1u32 << bucket)),
    }
}

/// The `q` quantile in ms, interpolated linearly within its bucket; the overflow bucket gives its lower bound.
fn quantile(counts: &[u32; BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().map(|count| u64::from(*count)).sum();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0);
    let mut below = 0.0;
    for (bucket, count) in counts.iter().enumerate() {
        let count = f64::from(*count);
        if count > 0.0 && below + count >= rank {
            let (low, high) = bounds(bucket);
            if bucket == BUCKETS - 1 {
                return Some(low);
            }
            let value = low + (high - low) * (rank - below) / count;
            return Some((value * 100.0).round() / 100.0);
        }
        below += count;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_count_calls_and_quantiles_fall_in_their_bucket() {
        let history = RelayHistory::default();
        let t0 = 1_700_000_040; // minute 28_333_334, 0 s into it
        for index in 0..100 {
            // 99 calls of 3 ms, one of 900 ms.
            let seconds = if index == 0 { 0.9 } else { 0.003 };
            history.record("p1", if index < 2 { 502 } else { 200 }, seconds, t0 + index % 60);
        }
        history.record("p2", 200, 0.0005, t0 + 60);
        let Snapshot { minutes, total, primaries } = history.snapshot(t0 + 60, 3);
        assert_eq!(minutes.len(), 3);
        assert_eq!(minutes[2], (t0 + 60) / 60);
        assert_eq!(total.iter().map(|m| m.calls).collect::<Vec<_>>(), [0, 100, 1]);
        let busy = &total[1];
        assert_eq!(busy.errors, 2);
        let p50 = busy.p50_ms.unwrap();
        assert!((2.0..=4.0).contains(&p50), "{p50}");
        let p99 = busy.p99_ms.unwrap();
        assert!((2.0..=4.0).contains(&p99), "the 99th of 100 is still 3 ms: {p99}");
        assert_eq!(total[0].p50_ms, None);
        assert_eq!(primaries.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>(), ["p1", "p2"]);
        assert_eq!(primaries[1].1[2].calls, 1);
        assert!(primaries[1].1[2].p99_ms.unwrap() <= 1.0);
        let mut slow = [0u32; BUCKETS];
        slow[BUCKETS - 1] = 1;
        assert_eq!(quantile(&slow, 0.5), Some(131_072.0), "over the last bound: its lower bound");
    }

    #[test]
    fn an_hour_is_kept_and_primaries_are_bounded() {
        let history = RelayHistory::default();
        for minute in 0..200 {
            history.record("p1", 200, 0.01, minute * 60);
        }
        let inner = history.inner.lock().unwrap();
        assert_eq!(inner.primaries["p1"].minutes.len(), MINUTES);
        drop(inner);
        for index in 0..MAX_PRIMARIES + 10 {
            history.record(&format!("q{index}"), 200, 0.01, 200 * 60);
        }
        assert_eq!(history.inner.lock().unwrap().primaries.len(), MAX_PRIMARIES);
        // An hour later the idle ones make room.
        history.record("late", 200, 0.01, 200 * 60 + 3600 + 60);
        assert!(history.inner.lock().unwrap().primaries.contains_key("late"));
    }
}

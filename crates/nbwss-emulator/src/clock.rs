//! The emulated clock: wall time at start plus tokio time elapsed since, scaled by the clock multiplier.
//!
//! Everything the emulator reports (job and image times, `/ping`) reads this clock, and every timer of the
//! job engine converts emulated durations to real ones through it, so a test can run a day in seconds.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use tokio::time::Instant;

/// The emulated clock.
#[derive(Debug, Clone)]
pub(crate) struct Clock {
    origin_wall: DateTime<Utc>,
    origin: Instant,
    multiplier: f64,
}

impl Clock {
    pub(crate) fn new(multiplier: f64) -> Self {
        Self { origin_wall: Utc::now(), origin: Instant::now(), multiplier }
    }

    /// The emulated time now, truncated to whole milliseconds.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        let real = self.origin.elapsed();
        let emulated = real.mul_f64(self.multiplier);
        let millis = i64::try_from(emulated.as_millis()).unwrap_or(i64::MAX / 2);
        self.origin_wall + TimeDelta::milliseconds(millis)
    }

    /// The real time an emulated duration takes (at least a millisecond, so timers always advance).
    pub(crate) fn real(&self, emulated: Duration) -> Duration {
        emulated.div_f64(self.multiplier).max(Duration::from_millis(1))
    }

    /// The tokio instant at which the emulated clock shows `at` (now if `at` is in the past).
    pub(crate) fn instant_at(&self, at: DateTime<Utc>) -> Instant {
        let ahead = (at - self.now()).to_std().unwrap_or(Duration::ZERO);
        Instant::now() + self.real(ahead)
    }
}

/// Formats a time as NetBackup does: UTC, whole seconds shown with `.000` milliseconds, `Z` suffix
/// (clients parse it with the strict format `%Y-%m-%dT%H:%M:%S.000Z`).
pub(crate) fn format_time(time: DateTime<Utc>) -> String {
    let seconds = DateTime::from_timestamp(time.timestamp(), 0).unwrap_or(time);
    seconds.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Formats a duration as ISO 8601, e.g. `PT1H30M5S`.
pub(crate) fn format_duration(seconds: i64) -> String {
    let seconds = seconds.max(0);
    let (h, m, s) = (seconds / 3600, (seconds % 3600) / 60, seconds % 60);
    let mut text = String::from("PT");
    if h > 0 {
        text.push_str(&format!("{h}H"));
    }
    if m > 0 {
        text.push_str(&format!("{m}M"));
    }
    if s > 0 || (h == 0 && m == 0) {
        text.push_str(&format!("{s}S"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_with_milliseconds() {
        let time = DateTime::parse_from_rfc3339("2018-01-09T10:03:22Z").unwrap().with_timezone(&Utc);
        assert_eq!(format_time(time), "2018-01-09T10:03:22.000Z");
        let fraction = DateTime::parse_from_rfc3339("2018-01-09T10:03:22.789Z").unwrap().with_timezone(&Utc);
        assert_eq!(format_time(fraction), "2018-01-09T10:03:22.000Z");
    }

    #[test]
    fn formats_durations() {
        assert_eq!(format_duration(0), "PT0S");
        assert_eq!(format_duration(5405), "PT1H30M5S");
        assert_eq!(format_duration(3600), "PT1H");
    }

    #[tokio::test(start_paused = true)]
    async fn runs_faster_by_the_multiplier() {
        let clock = Clock::new(3600.0);
        let start = clock.now();
        tokio::time::advance(Duration::from_secs(2)).await;
        let elapsed = clock.now() - start;
        assert_eq!(elapsed.num_hours(), 2);
        assert_eq!(clock.real(Duration::from_secs(3600)), Duration::from_secs(1));
    }
}

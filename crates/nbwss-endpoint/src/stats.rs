//! The dashboard's aggregates, in the app API: per primary server, job outcomes and image creations and
//! deletions per hour from the stored records, with its last job (`/api/v1/stats/activity`), and relayed
//! calls per minute with their latency (`/api/v1/stats/relay`).
//!
//! A job counts once per hour in which a `DONE` record of it was received: succeeded (status 0), partially
//! succeeded (status 1) or failed (any other status). Hours are UTC, by the time the endpoint received the
//! record (a job's end time is not in the record; the service reports it within its polling interval).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, Query};
use crate::relay_history::MINUTES;
use crate::state::AppState;
use crate::store::Store;

/// Default hours of `activity`.
const DEFAULT_HOURS: u32 = 24;
/// Most hours of `activity`: a week.
const MAX_HOURS: u32 = 168;

/// One primary server's activity in one hour.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HourActivity {
    pub primary: String,
    /// `YYYY-MM-DDTHH`, UTC.
    pub hour: String,
    pub succeeded: u64,
    pub partial: u64,
    pub failed: u64,
    pub images_created: u64,
    pub images_deleted: u64,
}

/// A primary server's newest JOB record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LastJob {
    pub primary: String,
    pub record: Value,
    pub received_at: String,
}

impl Store {
    /// Activity per primary server and hour, from the records received at or after `since` and, when
    /// given, before `until` (RFC 3339, as the store writes it).
    pub(crate) fn activity_between(
        &self,
        since: &str,
        until: Option<&str>,
    ) -> anyhow::Result<Vec<HourActivity>> {
        let Some(from) = self.first_cursor_received_since(since)? else {
            return Ok(Vec::new());
        };
        let to = match until {
            Some(until) => self.first_cursor_received_since(until)?.unwrap_or(i64::MAX),
            None => i64::MAX,
        };
        let connection = self.read();
        let mut statement = connection.prepare_cached(
            "SELECT primary_name, substr(received_at, 1, 13) AS hour,
                 COUNT(DISTINCT CASE WHEN object = 'JOB' AND state = 'DONE' AND status = 0 THEN job END),
                 COUNT(DISTINCT CASE WHEN object = 'JOB' AND state = 'DONE' AND status = 1 THEN job END),
                 COUNT(DISTINCT CASE WHEN object = 'JOB' AND state = 'DONE' AND status NOT IN (0, 1) THEN job END),
                 COALESCE(SUM(object = 'IMAGE' AND operation = 'CREATE'), 0),
                 COALESCE(SUM(object = 'IMAGE' AND operation = 'DELETE'), 0)
             FROM (SELECT primary_name, received_at, object,
                       json_extract(record, '$.state') AS state,
                       CAST(json_extract(record, '$.status') AS INTEGER) AS status,
                       json_extract(record, '$.jobId') AS job,
                       json_extract(record, '$.operationId') AS operation
                   FROM notifications
                   WHERE cursor >= ?1 AND cursor < ?2 AND received_at >= ?3 AND (?4 IS NULL OR received_at < ?4)
                       AND json_valid(record))
             GROUP BY primary_name, hour ORDER BY primary_name, hour",
        )?;
        let count = |row: &rusqlite::Row<'_>, index: usize| {
            row.get::<_, i64>(index).map(|count| u64::try_from(count).unwrap_or(0))
        };
        let rows = statement.query_map(params![from, to, since, until], |row| {
            Ok(HourActivity {
                primary: row.get(0)?,
                hour: row.get(1)?,
                succeeded: count(row, 2)?,
                partial: count(row, 3)?,
                failed: count(row, 4)?,
                images_created: count(row, 5)?,
                images_deleted: count(row, 6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Each primary server's newest JOB record.
    pub(crate) fn last_jobs(&self) -> anyhow::Result<Vec<LastJob>> {
        let primaries: Vec<String> = self.notification_counts()?.into_iter().map(|(name, _)| name).collect();
        let connection = self.read();
        let mut statement = connection.prepare_cached(
            "SELECT record, received_at FROM notifications INDEXED BY notifications_by_primary_object
             WHERE primary_name = ?1 AND object = 'JOB' ORDER BY cursor DESC LIMIT 1",
        )?;
        let mut jobs = Vec::new();
        for primary in primaries {
            let row: Option<(String, String)> =
                statement.query_row(params![primary], |row| Ok((row.get(0)?, row.get(1)?))).optional()?;
            if let Some((record, received_at)) = row {
                let record = serde_json::from_str(&record).unwrap_or(Value::String(record));
                jobs.push(LastJob { primary, record, received_at });
            }
        }
        Ok(jobs)
    }

    /// The first cursor of a record received at or after `since`, found by bisection on the cursor (records
    /// are stored in arrival order, so their times grow with it): a few indexed lookups, not a scan.
    fn first_cursor_received_since(&self, since: &str) -> anyhow::Result<Option<i64>> {
        let (mut low, mut high) = (self.first_cursor()?, self.last_cursor()?);
        if high == 0 {
            return Ok(None);
        }
        let connection = self.read();
        let mut statement = connection.prepare_cached(
            "SELECT cursor, received_at FROM notifications WHERE cursor >= ?1 ORDER BY cursor LIMIT 1",
        )?;
        let mut at = |cursor: i64| -> anyhow::Result<Option<(i64, String)>> {
            Ok(statement.query_row(params![cursor], |row| Ok((row.get(0)?, row.get(1)?))).optional()?)
        };
        match at(high)? {
            Some((_, received_at)) if received_at.as_str() >= since => {}
            _ => return Ok(None),
        }
        while low < high {
            let middle = low + (high - low) / 2;
            match at(middle)? {
                Some((cursor, received_at)) if received_at.as_str() < since => low = cursor + 1,
                _ => high = middle,
            }
        }
        Ok(Some(low))
    }
}

/// Completed hours' activity, kept in memory: counted by time of arrival, an hour that has ended does not
/// change (but for pruning, which the cache does not follow). The current hour is always counted afresh.
#[derive(Debug, Default)]
pub(crate) struct ActivityCache {
    /// By hour (hours since the epoch).
    hours: BTreeMap<i64, Vec<HourActivity>>,
}

/// Hours kept in the cache: older ones are counted afresh when asked for.
const CACHED_HOURS: i64 = 48;
/// An hour is cached once it ended this long ago, so that a record received just before its end but
/// committed just after is in it.
const SETTLE_SECONDS: i64 = 60;

impl ActivityCache {
    /// The activity of `hours` (hours since the epoch, oldest first) from the cache where it may be, from
    /// the store for the rest (and caching what may be).
    fn activity(
        cache: &std::sync::Mutex<Self>,
        store: &Store,
        hours: &[i64],
        now: i64,
    ) -> anyhow::Result<Vec<HourActivity>> {
        let settled = (now - SETTLE_SECONDS).div_euclid(3600);
        let current = now.div_euclid(3600);
        let cacheable = |hour: i64| hour < settled && hour > current - CACHED_HOURS;
        let missing: Vec<i64> = {
            let cache = cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            hours.iter().copied().filter(|hour| cacheable(*hour) && !cache.hours.contains_key(hour)).collect()
        };
        let mut rows = Vec::new();
        if let (Some(first), Some(last)) = (missing.first(), missing.last()) {
            let counted = store.activity_between(&hour_start(*first), Some(&hour_start(last + 1)))?;
            let mut cache = cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for hour in *first..=*last {
                cache.hours.entry(hour).or_default();
            }
            for row in counted {
                if let Some(hour) = hour_of(&row.hour).filter(|hour| cacheable(*hour)) {
                    cache.hours.entry(hour).or_default().push(row);
                }
            }
            cache.hours.retain(|hour, _| *hour > current - CACHED_HOURS);
        }
        {
            let cache = cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for hour in hours.iter().filter(|hour| cacheable(**hour)) {
                rows.extend(cache.hours.get(hour).into_iter().flatten().cloned());
            }
        }
        // The rest: hours too old for the cache (a prefix), and those not settled yet (a suffix).
        let direct: Vec<i64> = hours.iter().copied().filter(|hour| !cacheable(*hour)).collect();
        let old: Vec<i64> = direct.iter().copied().filter(|hour| *hour < settled).collect();
        if let (Some(first), Some(last)) = (old.first(), old.last()) {
            rows.extend(store.activity_between(&hour_start(*first), Some(&hour_start(last + 1)))?);
        }
        if let Some(first) = direct.iter().copied().find(|hour| *hour >= settled) {
            rows.extend(store.activity_between(&hour_start(first), None)?);
        }
        Ok(rows)
    }
}

/// The start of an hour (hours since the epoch) as the store writes times.
fn hour_start(hour: i64) -> String {
    DateTime::from_timestamp(hour * 3600, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The hour (hours since the epoch) of a `YYYY-MM-DDTHH` key.
fn hour_of(key: &str) -> Option<i64> {
    let start = DateTime::parse_from_rfc3339(&format!("{key}:00:00Z")).ok()?;
    Some(start.timestamp().div_euclid(3600))
}

#[derive(Debug, Deserialize)]
pub(crate) struct ActivityParams {
    hours: Option<u32>,
}

/// `GET /api/v1/stats/activity[?hours=24]`.
pub(crate) async fn activity(
    State(state): State<AppState>,
    Query(params): Query<ActivityParams>,
) -> Result<Json<Value>, ApiError> {
    let hours = params.hours.unwrap_or(DEFAULT_HOURS);
    if !(1..=MAX_HOURS).contains(&hours) {
        return Err(ApiError::bad_request(format!("hours: from 1 to {MAX_HOURS}")));
    }
    let now = Utc::now().timestamp();
    let current = now.div_euclid(3600);
    let indexes: Vec<i64> = (current - i64::from(hours) + 1..=current).collect();
    let shared = state.clone();
    let lookup = indexes.clone();
    let (rows, last_jobs) = state
        .store
        .run(move |store| {
            let rows = ActivityCache::activity(&shared.activity, store, &lookup, now)?;
            Ok((rows, store.last_jobs()?))
        })
        .await?;
    let starts: Vec<DateTime<Utc>> =
        indexes.iter().map(|hour| DateTime::from_timestamp(hour * 3600, 0).unwrap_or_default()).collect();
    let keys: Vec<String> = starts.iter().map(|start| start.format("%Y-%m-%dT%H").to_string()).collect();
    let index = |hour: &str| keys.iter().position(|key| key == hour);
    let width = keys.len();
    let mut primaries: BTreeMap<String, [Vec<u64>; 5]> = BTreeMap::new();
    for row in rows {
        let Some(at) = index(&row.hour) else { continue };
        let series =
            primaries.entry(row.primary.clone()).or_insert_with(|| std::array::from_fn(|_| vec![0; width]));
        for (values, count) in series.iter_mut().zip([
            row.succeeded,
            row.partial,
            row.failed,
            row.images_created,
            row.images_deleted,
        ]) {
            values[at] += count;
        }
    }
    for job in &last_jobs {
        primaries.entry(job.primary.clone()).or_insert_with(|| std::array::from_fn(|_| vec![0; width]));
    }
    let list: Vec<Value> = primaries
        .into_iter()
        .map(|(name, [succeeded, partial, failed, created, deleted])| {
            let last_job = last_jobs.iter().find(|job| job.primary == name).map(|job| {
                json!({
                    "jobId": job.record.get("jobId"),
                    "state": job.record.get("state"),
                    "status": job.record.get("status"),
                    "receivedAt": job.received_at,
                })
            });
            json!({
                "name": name,
                "jobs": { "succeeded": succeeded, "partial": partial, "failed": failed },
                "images": { "created": created, "deleted": deleted },
                "lastJob": last_job,
            })
        })
        .collect();
    let hours: Vec<String> =
        starts.iter().map(|start| start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).collect();
    Ok(Json(json!({ "hours": hours, "primaries": list })))
}

#[derive(Debug, Deserialize)]
pub(crate) struct RelayParams {
    minutes: Option<usize>,
}

/// `GET /api/v1/stats/relay[?minutes=60]`.
pub(crate) async fn relay(
    State(state): State<AppState>,
    Query(params): Query<RelayParams>,
) -> Result<Json<Value>, ApiError> {
    let minutes = params.minutes.unwrap_or(MINUTES);
    if !(1..=MINUTES).contains(&minutes) {
        return Err(ApiError::bad_request(format!("minutes: from 1 to {MINUTES}")));
    }
    let snapshot = state.metrics.relay_history.snapshot(Utc::now().timestamp(), minutes);
    let starts: Vec<String> = snapshot
        .minutes
        .iter()
        .map(|minute| {
            DateTime::from_timestamp(minute * 60, 0)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
        .collect();
    let primaries: Vec<Value> = snapshot
        .primaries
        .into_iter()
        .map(|(name, minutes)| json!({ "name": name, "minutes": minutes }))
        .collect();
    Ok(Json(json!({ "minutes": starts, "total": snapshot.total, "primaries": primaries })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nbwss_protocol::ReceivedRecord;

    fn record(object: &str, record: Value) -> ReceivedRecord {
        ReceivedRecord {
            notification_type: "INFO".into(),
            object: object.into(),
            record,
            problems: Vec::new(),
        }
    }

    fn job(id: i64, state: &str, status: i64) -> ReceivedRecord {
        record("JOB", json!({"jobId": id, "state": state, "status": status}))
    }

    #[test]
    fn activity_counts_jobs_once_per_hour_by_outcome_and_images_by_operation() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .store_notification("p1", "M1", &[job(1, "DONE", 0), job(2, "DONE", 1), job(3, "DONE", 96)])
            .unwrap();
        store.store_notification("p1", "M2", &[job(4, "ACTIVE", 0), job(3, "DONE", 96)]).unwrap();
        store
            .store_notification(
                "p2",
                "M1",
                &[
                    record("IMAGE", json!({"operationId": "CREATE"})),
                    record("IMAGE", json!({"operationId": "DELETE"})),
                    record("IMAGE", json!({"operationId": "UPDATE"})),
                    record("JOB", json!("not an object")),
                ],
            )
            .unwrap();
        store
            .lock()
            .execute_batch(
                "UPDATE notifications SET received_at = '2026-01-01T10:15:00.000Z' WHERE message_id = 'M1' AND primary_name = 'p1';
                 UPDATE notifications SET received_at = '2026-01-01T11:59:59.999Z' WHERE message_id = 'M2';
                 UPDATE notifications SET received_at = '2026-01-01T12:00:00.000Z' WHERE primary_name = 'p2';",
            )
            .unwrap();
        let rows = store.activity_between("2026-01-01T10:00:00.000Z", None).unwrap();
        let hour = |primary: &str, hour: &str| {
            rows.iter().find(|row| row.primary == primary && row.hour == hour).cloned().unwrap_or_default()
        };
        let ten = hour("p1", "2026-01-01T10");
        assert_eq!((ten.succeeded, ten.partial, ten.failed), (1, 1, 1));
        let eleven = hour("p1", "2026-01-01T11");
        assert_eq!((eleven.succeeded, eleven.failed), (0, 1), "an ACTIVE job is no outcome");
        let noon = hour("p2", "2026-01-01T12");
        assert_eq!((noon.images_created, noon.images_deleted), (1, 1));
        // From 11:00 on: the bisection finds the first record of that hour.
        let later = store.activity_between("2026-01-01T11:00:00.000Z", None).unwrap();
        assert!(later.iter().all(|row| row.hour.as_str() >= "2026-01-01T11"), "{later:?}");
        assert_eq!(later.len(), 2);
        assert!(store.activity_between("2026-01-02T00:00:00.000Z", None).unwrap().is_empty());
        let ten =
            store.activity_between("2026-01-01T10:00:00.000Z", Some("2026-01-01T11:00:00.000Z")).unwrap();
        assert_eq!(ten.len(), 1, "until is exclusive: {ten:?}");
        assert_eq!(ten[0].hour, "2026-01-01T10");
        let last = store.last_jobs().unwrap();
        let p1 = last.iter().find(|job| job.primary == "p1").unwrap();
        assert_eq!(p1.record["jobId"], 3);
        assert_eq!(p1.received_at, "2026-01-01T11:59:59.999Z");
    }

    #[test]
    fn completed_hours_are_cached_and_the_current_one_is_counted_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let at = |message: &str, time: &str| {
            store.store_notification("p1", message, &[job(message.len() as i64 * 100, "DONE", 96)]).unwrap();
            store
                .lock()
                .execute(
                    "UPDATE notifications SET received_at = ?1 WHERE message_id = ?2",
                    params![time, message],
                )
                .unwrap();
        };
        at("A", "2026-01-01T08:00:00.000Z"); // 52 hours before now: beyond the cache
        at("BB", "2026-01-03T10:15:00.000Z"); // two hours before now: cached once counted
        at("CCC", "2026-01-03T12:10:00.000Z"); // the current hour
        let now = DateTime::parse_from_rfc3339("2026-01-03T12:30:00Z").unwrap().timestamp();
        let current = now / 3600;
        let hours: Vec<i64> = (current - 59..=current).collect();
        let cache = std::sync::Mutex::new(ActivityCache::default());
        let failed = |rows: &[HourActivity], hour: &str| -> u64 {
            rows.iter().filter(|row| row.hour == hour).map(|row| row.failed).sum()
        };
        let first = ActivityCache::activity(&cache, &store, &hours, now).unwrap();
        assert_eq!(
            [
                failed(&first, "2026-01-01T08"),
                failed(&first, "2026-01-03T10"),
                failed(&first, "2026-01-03T12")
            ],
            [1, 1, 1]
        );
        assert_eq!(cache.lock().unwrap().hours.len(), 47, "the settled hours within 48 hours");
        // A record that could not arrive in a completed hour (put there by hand): the cache does not see it.
        at("EEEEE", "2026-01-03T10:45:00.000Z");
        at("FFFFFF", "2026-01-03T12:20:00.000Z");
        let second = ActivityCache::activity(&cache, &store, &hours, now).unwrap();
        assert_eq!(failed(&second, "2026-01-03T10"), 1, "from the cache");
        assert_eq!(failed(&second, "2026-01-03T12"), 2, "the current hour, afresh");
        assert_eq!(failed(&second, "2026-01-01T08"), 1, "beyond the cache, counted again");
    }
}

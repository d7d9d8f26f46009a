//! The dashboard's aggregates, in the app API: per primary server, job outcomes and image creations and
//! deletions per hour from the stored records, with its last job (`/api/v1/stats/activity`), and relayed
//! calls per minute with their latency (`/api/v1/stats/relay`).
//!
//! A job counts once per hour in which a `DONE` record of it was received: succeeded (status 0), partially
//! succeeded (status 1) or failed (any other status). Hours are UTC, by the time the endpoint received the
//! record (a job's end time is not in the record; the service reports it within its polling interval).

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, Duration as ChronoDuration, Timelike as _, Utc};
use rusqlite::{params, OptionalExtension};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
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
    /// Activity per primary server and hour, from the records received at or after `since` (RFC 3339, as the
    /// store writes it).
    pub(crate) fn activity_since(&self, since: &str) -> anyhow::Result<Vec<HourActivity>> {
        let Some(from) = self.first_cursor_received_since(since)? else {
            return Ok(Vec::new());
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
                   FROM notifications WHERE cursor >= ?1 AND received_at >= ?2 AND json_valid(record))
             GROUP BY primary_name, hour ORDER BY primary_name, hour",
        )?;
        let count = |row: &rusqlite::Row<'_>, index: usize| {
            row.get::<_, i64>(index).map(|count| u64::try_from(count).unwrap_or(0))
        };
        let rows = statement.query_map(params![from, since], |row| {
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
    let now = Utc::now();
    let current = now.with_minute(0).and_then(|t| t.with_second(0)).and_then(|t| t.with_nanosecond(0));
    let current = current.unwrap_or(now);
    let starts: Vec<DateTime<Utc>> =
        (0..i64::from(hours)).rev().map(|back| current - ChronoDuration::hours(back)).collect();
    let since = starts[0].to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (rows, last_jobs) =
        state.store.run(move |store| Ok((store.activity_since(&since)?, store.last_jobs()?))).await?;
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
        let rows = store.activity_since("2026-01-01T10:00:00.000Z").unwrap();
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
        let later = store.activity_since("2026-01-01T11:00:00.000Z").unwrap();
        assert!(later.iter().all(|row| row.hour.as_str() >= "2026-01-01T11"), "{later:?}");
        assert_eq!(later.len(), 2);
        assert!(store.activity_since("2026-01-02T00:00:00.000Z").unwrap().is_empty());
        let last = store.last_jobs().unwrap();
        let p1 = last.iter().find(|job| job.primary == "p1").unwrap();
        assert_eq!(p1.record["jobId"], 3);
        assert_eq!(p1.received_at, "2026-01-01T11:59:59.999Z");
    }
}

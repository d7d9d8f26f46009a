//! Detection (D14) by polling the primary server's REST API: jobs changed since a persisted
//! `lastUpdateTime` watermark, new images by `backupTime`, a targeted check of the images that catalog jobs
//! (image deletion, duplication, replication, import) name in `backupId`, and a periodic reconciliation of
//! the whole image catalog for updates, deletions and lost local copies that nothing else revealed.
//!
//! The targeted check is what makes image UPDATE, NO_LOCAL_COPY_AVAILABLE and DELETE records prompt: a
//! copy expires, is duplicated or replicated through such a job, and the job shows in the next jobs poll,
//! so the image's change is found within one poll interval instead of one reconciliation interval. A
//! cleanup job that names no image brings the reconciliation forward to the next poll.
//!
//! The first poll ever is a baseline: what exists then is remembered without a notification, so a new
//! service does not flood its endpoints with history. Every later poll commits the records it produces
//! together with the state and watermarks that produced them (one outbox transaction), so a restart
//! neither misses nor repeats an event; when the outbox is full nothing commits and the same events are
//! found again by a later poll.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use nbwss_protocol::{
    unix_now, ImageOperation, ImageRecord, JobRecord, JobState, JobType, Properties, ScheduleType,
};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::outbox::{Detection, Outbox, OutboxError, SeenImage};
use super::primary_client::{PrimaryClient, PrimaryError};
use super::Record;

const JOBS_WATERMARK: &str = "jobs.lastUpdateTime";
const IMAGES_WATERMARK: &str = "images.backupTime";
/// Records of one job list page, at most (the API's maximum).
const PAGE_LIMIT: usize = 100;
/// Pages of one listing, at most: a server whose pagination never ends cannot hold the detector (or its
/// memory) forever. 10,000 pages of 100 are a million jobs or images.
const MAX_PAGES: usize = 10_000;
/// The default pause between two requests of a reconciliation: 100,000 images take 1,000 pages and at
/// least 10 s of pauses, well within the default `notification.reconcileInterval` (300 s).
pub const RECONCILE_PAGE_PAUSE: Duration = Duration::from_millis(10);
/// A time before every image, to lift the catalog's default "last 24 hours" filter.
const EPOCH_FILTER: &str = "1970-01-01T00:00:00.000Z";
/// Job types that add, change or remove catalog images other than by a backup: a job of one of these
/// seen starting or ending has its `backupId` image checked at once.
const CATALOG_JOB_TYPES: &[&str] =
    &["IMAGEDELETE", "DUPLICATE", "REPLICATE", "SNAPDUPE", "SNAPREPLICATE", "IMPORT", "REPLICA_IMPORT"];
/// The most images checked one by one in a poll; beyond that the reconciliation is brought forward.
const MAX_TARGETED_CHECKS: usize = 100;

/// What the jobs of one poll say about the catalog.
#[derive(Debug, Default)]
struct Touched {
    /// Images catalog jobs named, to check one by one.
    images: BTreeSet<String>,
    /// A catalog job that names no image (a cleanup of many): reconcile at once.
    unnamed: bool,
}

/// How the detector polls.
#[derive(Debug, Clone)]
pub struct DetectorConfig {
    /// Between two polls (`notification.pollInterval`, by default `notification.scheduledRate`).
    pub poll_interval: Duration,
    /// Between two full catalog reconciliations (`notification.reconcileInterval`).
    pub reconcile_interval: Duration,
    /// Jobs are asked for from this much (server time) before the watermark, so that a job updated while
    /// the previous poll was paging is not missed; jobs seen again are recognised and not repeated.
    pub job_overlap: TimeDelta,
    /// New images are asked for from this much (server time) before the newest `backupTime` seen: an
    /// image's `backupTime` is its job's start, and it enters the catalog when the job ends. Longer jobs'
    /// images are found by the reconciliation.
    pub image_lookback: TimeDelta,
    /// Images asked for per catalog request during a reconciliation (and images confirmed per chunk).
    pub reconcile_page_size: usize,
    /// The pause between two requests of a reconciliation: a catalog of N images costs the primary server
    /// N / `reconcile_page_size` listing requests at most this often.
    pub reconcile_page_pause: Duration,
}

impl DetectorConfig {
    /// Intervals from `nbwss.properties`, with the default overlap and lookback.
    pub fn from_properties(properties: &Properties) -> Self {
        Self {
            poll_interval: properties.notification_poll_interval,
            reconcile_interval: properties.notification_reconcile_interval,
            job_overlap: TimeDelta::minutes(5),
            image_lookback: TimeDelta::hours(6),
            reconcile_page_size: PAGE_LIMIT,
            reconcile_page_pause: RECONCILE_PAGE_PAUSE,
        }
    }
}

/// Why a poll failed.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The primary server could not be asked.
    #[error(transparent)]
    Primary(#[from] PrimaryError),
    /// The outbox refused or failed.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// The primary server answered something unexpected.
    #[error("unexpected answer from the primary server: {0}")]
    Shape(String),
}

/// Polls the primary server and feeds the outbox.
#[derive(Debug)]
pub struct Detector {
    client: PrimaryClient,
    outbox: Arc<Outbox>,
    config: DetectorConfig,
    last_reconcile: Option<Instant>,
}

impl Detector {
    /// A detector that polls with `client` into `outbox`.
    pub fn new(client: PrimaryClient, outbox: Arc<Outbox>, config: DetectorConfig) -> Self {
        Self { client, outbox, config, last_reconcile: None }
    }

    /// Polls every `poll_interval` until cancelled. Failures are logged and retried at the next poll.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut ticker = tokio::time::interval(self.config.poll_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = ticker.tick() => {}
            }
            match self.poll_once().await {
                Ok(0) => {}
                Ok(records) => tracing::debug!(records, "notifications detected"),
                Err(DetectError::Outbox(OutboxError::Full { .. })) => {}
                Err(error) => tracing::warn!(%error, "notification poll failed; retrying at the next poll"),
            }
        }
    }

    /// One poll: jobs, the images catalog jobs touched, new images, and the reconciliation when it is due
    /// (or brought forward). Returns the records appended.
    pub async fn poll_once(&mut self) -> Result<usize, DetectError> {
        let (mut appended, touched) = self.poll_jobs().await?;
        if touched.unnamed || touched.images.len() > MAX_TARGETED_CHECKS {
            self.last_reconcile = None;
        } else if !touched.images.is_empty() {
            appended += self.check_images(&touched.images).await?;
        }
        let reconcile_due =
            self.last_reconcile.is_none_or(|last| last.elapsed() >= self.config.reconcile_interval);
        if reconcile_due {
            appended += self.reconcile_images().await?;
            self.last_reconcile = Some(Instant::now());
        } else {
            appended += self.poll_new_images().await?;
        }
        Ok(appended)
    }

    async fn poll_jobs(&self) -> Result<(usize, Touched), DetectError> {
        let watermark = self.outbox.detect(|detection| detection.watermark(JOBS_WATERMARK))?;
        let since = watermark.as_deref().and_then(parse_time).map(|time| time - self.config.job_overlap);
        let jobs = self.list_jobs(since).await?;
        let lag = &self.outbox.metrics().detection_lag_seconds;
        let now = unix_now();
        let mut touched = Touched::default();
        let count = self.outbox.detect(|detection| {
            touched = Touched::default();
            let baseline = watermark.is_none();
            let mut newest = watermark.as_deref().and_then(parse_time);
            for attributes in &jobs {
                let Some(job) = job_record(attributes) else { continue };
                let updated = attributes["lastUpdateTime"].as_str().and_then(parse_time);
                newest = newest.max(updated);
                let done = job.state == JobState::Done;
                let seen = detection.job(job.job_id)?;
                let report = match seen {
                    _ if baseline => false,
                    None => true,
                    Some(reported_done) => done && !reported_done,
                };
                if seen != Some(true) {
                    detection.set_job(job.job_id, done, updated.map_or(0, |time| time.timestamp_millis()))?;
                }
                if report {
                    if let Some(updated) = updated {
                        lag.observe((now - updated.timestamp()).max(0) as f64);
                    }
                    let job_type = attributes["jobType"].as_str().unwrap_or_default().to_ascii_uppercase();
                    if CATALOG_JOB_TYPES.contains(&job_type.as_str()) {
                        match attributes["backupId"].as_str().filter(|id| !id.is_empty()) {
                            Some(backup_id) => {
                                touched.images.insert(backup_id.to_owned());
                            }
                            None => touched.unnamed |= job_type == "IMAGEDELETE",
                        }
                    }
                    detection.push(Record::Job(job));
                }
            }
            if let Some(newest) = newest {
                detection.set_watermark(JOBS_WATERMARK, &format_time(newest))?;
                let horizon = newest - self.config.job_overlap - TimeDelta::days(1);
                detection.forget_done_jobs(horizon.timestamp_millis())?;
            }
            Ok(detection.pushed().len())
        })?;
        Ok((count, touched))
    }

    /// Checks the images `backup_ids` one by one (`GET /catalog/images/{backupId}`): UPDATE or
    /// NO_LOCAL_COPY_AVAILABLE for a changed one, CREATE for one not seen yet, DELETE for a seen one that is
    /// gone. Nothing before the first reconciliation (the baseline) has run.
    async fn check_images(&self, backup_ids: &BTreeSet<String>) -> Result<usize, DetectError> {
        let mut found = Vec::new();
        let mut gone = Vec::new();
        for backup_id in backup_ids {
            match self.client.get_json(&format!("/catalog/images/{backup_id}"), &[]).await {
                Ok(page) => found.extend(seen_image(&page["data"])),
                Err(error) if error.status() == Some(404) => gone.push(backup_id.clone()),
                Err(error) => return Err(error.into()),
            }
        }
        let count = self.outbox.detect(|detection| {
            if detection.watermark(IMAGES_WATERMARK)?.is_none() {
                return Ok(0);
            }
            for image in &found {
                compare_image(detection, image.clone(), false)?;
            }
            for backup_id in &gone {
                if let Some(seen) = detection.image(backup_id)? {
                    detection.remove_image(backup_id)?;
                    detection.push(image_record(&seen, ImageOperation::Delete));
                }
            }
            Ok(detection.pushed().len())
        })?;
        Ok(count)
    }

    /// Every job updated at or after `since` (all jobs when `None`), oldest update first.
    async fn list_jobs(&self, since: Option<DateTime<Utc>>) -> Result<Vec<Value>, DetectError> {
        let mut query = vec![("sort", "lastUpdateTime".to_owned()), ("page[limit]", PAGE_LIMIT.to_string())];
        if let Some(since) = since {
            query.push(("filter", format!("lastUpdateTime ge {}", format_time(since))));
        }
        let cursor_pages = api_major(&self.client.api_version()) >= 9;
        let mut jobs = Vec::new();
        let mut offset = 0usize;
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut page_query = query.clone();
            if cursor_pages {
                if let Some(after) = &after {
                    page_query.push(("page[after]", after.clone()));
                }
            } else {
                page_query.push(("page[offset]", offset.to_string()));
            }
            let page = self.client.get_json("/admin/jobs", &page_query).await?;
            let data =
                page["data"].as_array().ok_or_else(|| DetectError::Shape("jobs: no data array".into()))?;
            jobs.extend(data.iter().map(|job| job["attributes"].clone()));
            offset += data.len();
            let next = &page["meta"]["pagination"]["next"];
            let more = if cursor_pages {
                let next = next.as_str().filter(|cursor| !cursor.is_empty()).map(str::to_owned);
                if next.is_some() && next == after {
                    return Err(DetectError::Shape(format!(
                        "jobs: the page after cursor {} names the same cursor again",
                        next.unwrap_or_default()
                    )));
                }
                after = next;
                after.is_some() && !data.is_empty()
            } else {
                let total = page["meta"]["pagination"]["count"].as_u64();
                !data.is_empty() && total.is_none_or(|total| (offset as u64) < total) && !next.is_null()
            };
            if !more {
                return Ok(jobs);
            }
        }
        Err(too_many_pages("jobs"))
    }

    /// Images with `backupTime` at or after `since`, oldest first.
    async fn list_images(&self, since: &str) -> Result<Vec<Value>, DetectError> {
        let mut images = Vec::new();
        for _ in 0..MAX_PAGES {
            let (page, more) = self.images_page(since, images.len(), PAGE_LIMIT).await?;
            images.extend(page);
            if !more {
                return Ok(images);
            }
        }
        Err(too_many_pages("images"))
    }

    /// One page of at most `limit` images with `backupTime` at or after `since`, oldest first, from
    /// `offset`; and whether more may follow.
    async fn images_page(
        &self,
        since: &str,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<Value>, bool), DetectError> {
        let query = [
            ("filter", format!("backupTime ge {since}")),
            ("sort", "backupTime".to_owned()),
            ("page[limit]", limit.to_string()),
            ("page[offset]", offset.to_string()),
        ];
        let mut page = self.client.get_json("/catalog/images", &query).await?;
        let total = page["meta"]["pagination"]["count"].as_u64();
        let Value::Array(data) = page["data"].take() else {
            return Err(DetectError::Shape("images: no data array".into()));
        };
        let listed = offset + data.len();
        let more =
            !data.is_empty() && total.is_none_or(|total| (listed as u64) < total) && data.len() >= limit;
        Ok((data, more))
    }

    async fn poll_new_images(&self) -> Result<usize, DetectError> {
        let watermark = self.outbox.detect(|detection| detection.watermark(IMAGES_WATERMARK))?;
        let Some(since) = watermark.as_deref().and_then(parse_time) else {
            return self.reconcile_images().await;
        };
        let images = self.list_images(&format_time(since - self.config.image_lookback)).await?;
        let count = self.outbox.detect(|detection| {
            let mut newest = Some(since);
            for image in &images {
                let Some(seen) = seen_image(image) else { continue };
                newest = newest.max(DateTime::from_timestamp(seen.backup_time, 0));
                compare_image(detection, seen, false)?;
            }
            if let Some(newest) = newest {
                detection.set_watermark(IMAGES_WATERMARK, &format_time(newest))?;
            }
            Ok(detection.pushed().len())
        })?;
        Ok(count)
    }

    /// Lists the whole catalog: CREATE for images not seen, UPDATE / NO_LOCAL_COPY_AVAILABLE for changed
    /// ones, DELETE for seen images that are gone (confirmed one by one, so that an image skipped by offset
    /// pagination while the catalog changed is not reported deleted).
    ///
    /// Page by page, so that the service's memory does not grow with the catalog: each page of
    /// `reconcile_page_size` images is compared with what the outbox remembers and committed with its
    /// records in one transaction, the images listed are noted in the outbox, and the requests to the
    /// primary server are `reconcile_page_pause` apart. Then the images remembered but not listed are
    /// confirmed in chunks of the same size. The images watermark is set last: a reconciliation cut short
    /// (a restart, an error, a full outbox) commits what it compared and the next one starts over, repeating
    /// no record, and a first one (the baseline) stays a baseline until it completes.
    async fn reconcile_images(&self) -> Result<usize, DetectError> {
        let started = Instant::now();
        let page_size = self.config.reconcile_page_size.max(1);
        let (baseline, mut newest) = self.outbox.detect(|detection| {
            detection.start_listing()?;
            let watermark = detection.watermark(IMAGES_WATERMARK)?;
            Ok((watermark.is_none(), watermark.as_deref().and_then(parse_time)))
        })?;
        let mut appended = 0;
        let mut offset = 0;
        let mut complete = false;
        for index in 0..MAX_PAGES {
            if index > 0 {
                tokio::time::sleep(self.config.reconcile_page_pause).await;
            }
            let (images, more) = self.images_page(EPOCH_FILTER, offset, page_size).await?;
            offset += images.len();
            appended += self.outbox.detect(|detection| {
                for image in &images {
                    let Some(seen) = seen_image(image) else { continue };
                    newest = newest.max(DateTime::from_timestamp(seen.backup_time, 0));
                    detection.mark_listed(&seen.backup_id)?;
                    compare_image(detection, seen, baseline)?;
                }
                Ok(detection.pushed().len())
            })?;
            if !more {
                complete = true;
                break;
            }
        }
        if !complete {
            return Err(too_many_pages("images"));
        }
        let mut after = String::new();
        loop {
            let unlisted = self.outbox.detect(|detection| detection.unlisted_images(&after, page_size))?;
            let Some(last) = unlisted.last() else { break };
            after.clone_from(&last.backup_id);
            let mut gone = Vec::new();
            for seen in unlisted {
                tokio::time::sleep(self.config.reconcile_page_pause).await;
                match self.client.get_json(&format!("/catalog/images/{}", seen.backup_id), &[]).await {
                    Err(error) if error.status() == Some(404) => gone.push(seen),
                    Ok(_) => {}
                    Err(error) => return Err(error.into()),
                }
            }
            appended += self.outbox.detect(|detection| {
                for seen in &gone {
                    detection.remove_image(&seen.backup_id)?;
                    detection.push(image_record(seen, ImageOperation::Delete));
                }
                Ok(detection.pushed().len())
            })?;
        }
        self.outbox.detect(|detection| {
            let newest = newest.unwrap_or_else(|| DateTime::from_timestamp(0, 0).unwrap_or_default());
            detection.set_watermark(IMAGES_WATERMARK, &format_time(newest))
        })?;
        let metrics = self.outbox.metrics();
        metrics.reconciliations.inc();
        metrics.reconciliation_seconds.set(started.elapsed().as_secs_f64());
        Ok(appended)
    }
}

fn too_many_pages(what: &str) -> DetectError {
    DetectError::Shape(format!(
        "{what}: the listing did not end within {MAX_PAGES} pages of {PAGE_LIMIT}; is the server's pagination broken?"
    ))
}

/// Compares a listed image with what was seen: CREATE, UPDATE or NO_LOCAL_COPY_AVAILABLE (nothing during
/// the baseline), and remembers it.
fn compare_image(detection: &mut Detection<'_>, image: SeenImage, baseline: bool) -> Result<(), OutboxError> {
    let operation = match detection.image(&image.backup_id)? {
        None => Some(ImageOperation::Create),
        Some(seen) if seen.fingerprint == image.fingerprint => None,
        Some(seen) if seen.has_local_copy && !image.has_local_copy => {
            Some(ImageOperation::NoLocalCopyAvailable)
        }
        Some(_) => Some(ImageOperation::Update),
    };
    let Some(operation) = operation else { return Ok(()) };
    detection.set_image(&image)?;
    if !baseline {
        detection.push(image_record(&image, operation));
    }
    Ok(())
}

fn image_record(image: &SeenImage, operation: ImageOperation) -> Record {
    Record::Image(ImageRecord {
        client_type: image.client_type.clone(),
        client_name: image.client_name.clone(),
        backup_time: image.backup_time,
        created_time: unix_now(),
        operation_id: operation,
        backup_id: image.backup_id.clone(),
    })
}

/// What the detector keeps of a catalog image resource (`{id, attributes}`).
fn seen_image(resource: &Value) -> Option<SeenImage> {
    let attributes = &resource["attributes"];
    let backup_id = resource["id"].as_str().or_else(|| attributes["backupId"].as_str())?.to_owned();
    let backup_time = attributes["backupTime"].as_str().and_then(parse_time)?.timestamp();
    // Copies: the `copies` list when the server gives one (with LOCAL/REPLICA), else the fragments.
    let mut copies: Vec<(i64, String, String)> = match attributes["copies"].as_array() {
        Some(copies) => copies
            .iter()
            .map(|copy| {
                (
                    copy["copyNumber"].as_i64().unwrap_or_default(),
                    copy["copyType"].as_str().unwrap_or_default().to_owned(),
                    copy["expiration"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
        None => attributes["fragments"]
            .as_array()
            .map(|fragments| {
                fragments
                    .iter()
                    .map(|fragment| {
                        (
                            fragment["copyNumber"].as_i64().unwrap_or_default(),
                            String::new(),
                            fragment["expiration"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    copies.sort();
    copies.dedup();
    let has_local_copy = match attributes["copies"].as_array() {
        Some(list) => list
            .iter()
            .any(|copy| !copy["copyType"].as_str().is_some_and(|t| t.eq_ignore_ascii_case("REPLICA"))),
        None => true,
    };
    let fingerprint = serde_json::json!({
        "expiration": attributes["expiration"],
        "numCopies": attributes["numCopies"],
        "copies": copies,
    })
    .to_string();
    Some(SeenImage {
        backup_id,
        client_name: attributes["clientName"].as_str().unwrap_or_default().to_owned(),
        client_type: policy_type_name(attributes["policyType"].as_str().unwrap_or_default()),
        backup_time,
        fingerprint,
        has_local_copy,
    })
}

/// A JOB record from job attributes (D14): times in Unix seconds, `parentJobId` 0 mapped to `jobId`,
/// NetBackup's schedule constants, upper-case policy type, states other than QUEUED/ACTIVE/DONE folded
/// into the nearest of the three.
fn job_record(attributes: &Value) -> Option<JobRecord> {
    let job_id = attributes["jobId"].as_i64()?;
    let parent_job_id = match attributes["parentJobId"].as_i64() {
        Some(0) | None => job_id,
        Some(parent) => parent,
    };
    let state = match attributes["state"].as_str().unwrap_or_default().to_ascii_uppercase().as_str() {
        "DONE" => JobState::Done,
        "QUEUED" | "REQUEUED" => JobState::Queued,
        _ => JobState::Active,
    };
    Some(JobRecord {
        schedule_type: schedule_type(&attributes["scheduleType"]),
        client_name: attributes["clientName"].as_str().unwrap_or_default().to_owned(),
        status: attributes["status"].as_i64().unwrap_or_default(),
        start_time: attributes["startTime"]
            .as_str()
            .and_then(parse_time)
            .map(|t| t.timestamp())
            .unwrap_or_default(),
        state,
        policy_name: attributes["policyName"].as_str().unwrap_or_default().to_owned(),
        parent_job_id,
        job_id,
        policy_type: policy_type_name(attributes["policyType"].as_str().unwrap_or_default()),
        job_type: JobType::from(
            attributes["jobType"].as_str().unwrap_or("BACKUP").to_ascii_uppercase().as_str(),
        ),
    })
}

/// NetBackup's schedule constant for a `scheduleType` of any API version (names or numbers).
fn schedule_type(value: &Value) -> ScheduleType {
    if let Some(number) = value.as_i64() {
        return match number {
            1 => ScheduleType::Incremental,
            2 => ScheduleType::UserBackup,
            3 => ScheduleType::UserArchive,
            4 => ScheduleType::CumulativeIncremental,
            _ => ScheduleType::Full,
        };
    }
    let text = value.as_str().unwrap_or_default().to_ascii_uppercase();
    match text.as_str() {
        "" | "FULL" | "FULL_BACKUP" | "ST_FULL" => ScheduleType::Full,
        "DIFFERENTIAL_INCREMENTAL" | "DIFFERENTIAL_INCREMENTAL_BACKUP" | "INCR" | "ST_INCR" => {
            ScheduleType::Incremental
        }
        "CUMULATIVE_INCREMENTAL" | "CUMULATIVE_INCREMENTAL_BACKUP" | "CINC" | "ST_CINC" => {
            ScheduleType::CumulativeIncremental
        }
        "USER_BACKUP" | "UBAK" | "ST_UBAK" => ScheduleType::UserBackup,
        "USER_ARCHIVE" | "UARC" | "ST_UARC" => ScheduleType::UserArchive,
        other => ScheduleType::Other(format!("ST_{other}")),
    }
}

/// Upper-case policy type as jobs report it, from either spelling (`VMware`, `MS-Windows`, `VMWARE`).
fn policy_type_name(name: &str) -> String {
    match name.to_ascii_lowercase().as_str() {
        "ms-windows" | "ms-windows-nt" => "WINDOWS".to_owned(),
        "hyper-v" => "HYPERV".to_owned(),
        "ms-sql-server" => "SQL_SERVER".to_owned(),
        "" => "STANDARD".to_owned(),
        _ => name.to_ascii_uppercase().replace('-', "_"),
    }
}

fn api_major(version: &str) -> u32 {
    version.split('.').next().and_then(|major| major.parse().ok()).unwrap_or(0)
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|time| time.with_timezone(&Utc))
}

fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn job_records_follow_d14() {
        let attributes = json!({
            "jobId": 144, "parentJobId": 0, "jobType": "BACKUP", "policyType": "VMware",
            "policyName": "vmware2", "scheduleType": "FULL_BACKUP", "clientName": "vm1",
            "state": "ACTIVE", "status": 0, "startTime": "2016-04-05T04:14:34.000Z",
        });
        let record = job_record(&attributes).unwrap();
        assert_eq!(record.parent_job_id, 144);
        assert_eq!(record.policy_type, "VMWARE");
        assert_eq!(record.schedule_type, ScheduleType::Full);
        assert_eq!(record.start_time, 1_459_829_674);
        assert_eq!(record.state, JobState::Active);
        let value = serde_json::to_value(&record).unwrap();
        assert_eq!(value.as_object().unwrap().len(), 10);
        for (raw, expected) in [
            (json!("DIFFERENTIAL_INCREMENTAL_BACKUP"), "ST_INCR"),
            (json!("CUMULATIVE_INCREMENTAL_BACKUP"), "ST_CINC"),
            (json!("USER_BACKUP"), "ST_UBAK"),
            (json!("USER_ARCHIVE"), "ST_UARC"),
            (json!("FULL"), "ST_FULL"),
            (json!(4), "ST_CINC"),
        ] {
            assert_eq!(schedule_type(&raw).as_str(), expected);
        }
        assert_eq!(
            job_record(&json!({"jobId": 5, "parentJobId": 3, "state": "REQUEUED"})).unwrap().state,
            JobState::Queued
        );
    }

    #[test]
    fn image_fingerprints_see_copies_and_local_loss() {
        let image = |copies: Value| {
            json!({"id": "c_1700000000", "attributes": {
                "clientName": "c", "policyType": "MS-Windows", "backupTime": "2023-11-14T22:13:20.000Z",
                "expiration": "2024-01-01T00:00:00.000Z", "numCopies": 2, "copies": copies,
            }})
        };
        let both = seen_image(&image(json!([
            {"copyNumber": 1, "copyType": "LOCAL", "expiration": "2024-01-01T00:00:00.000Z"},
            {"copyNumber": 2, "copyType": "REPLICA", "expiration": "2024-01-01T00:00:00.000Z"},
        ])))
        .unwrap();
        let replica_only = seen_image(&image(json!([
            {"copyNumber": 2, "copyType": "REPLICA", "expiration": "2024-01-01T00:00:00.000Z"},
        ])))
        .unwrap();
        assert_eq!(both.client_type, "WINDOWS");
        assert_eq!(both.backup_time, 1_700_000_000);
        assert!(both.has_local_copy);
        assert!(!replica_only.has_local_copy);
        assert_ne!(both.fingerprint, replica_only.fingerprint);
    }
}

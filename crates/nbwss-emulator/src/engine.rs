//! The job engine: backups, restores and image deletions that move QUEUED → ACTIVE → DONE on the
//! emulated clock, the catalog images successful backups leave behind, copy expiry, and background
//! activity.
//!
//! A VMware policy runs as a parent (discovery) job plus one child per VM; any other policy type runs one
//! job per client. Every task is spawned on the shared tracker and stops at the shared cancellation token.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;

use crate::error::{ApiError, ApiResult};
use crate::event::EventKind;
use crate::model::{
    job_policy_type, Image, ImageCopy, ImageSlp, Job, JobState, JobTry, ScheduleKind, ScheduleView,
};
use crate::state::{Inner, Shared, PRIMARY_SERVER};

/// NetBackup status: no storage units available for use (a policy of "any available" storage and none).
pub(crate) const STATUS_NO_STORAGE_UNITS: i64 = 213;
/// NetBackup status: the required storage unit is unavailable (it does not exist).
pub(crate) const STATUS_STORAGE_UNIT_UNAVAILABLE: i64 = 219;
/// NetBackup status: no images were successfully processed (a duplication whose source copy is gone).
pub(crate) const STATUS_NO_IMAGES_PROCESSED: i64 = 191;
/// How long an SLP waits before it processes an image again (NetBackup's default image processing
/// interval, emulated time).
pub(crate) const SLP_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// The media server of copies replicated to another primary server.
pub(crate) const REMOTE_MEDIA_SERVER: &str = crate::state::DR_MEDIA_SERVER;

/// Where one copy of a backup goes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CopyPlan {
    pub(crate) replica: bool,
    pub(crate) retention_seconds: i64,
    pub(crate) storage: String,
    pub(crate) disk_pool: String,
    pub(crate) media_server: String,
}

/// The copies a backup of `schedule` writes when it ends and the SLP that makes the later ones, or the
/// NetBackup status the backup fails with: a copy's storage must be an existing storage unit, an SLP
/// (whose backup operation names one), or empty for any available storage unit.
pub(crate) fn plan_copies(
    inner: &Inner,
    schedule: &ScheduleView,
) -> Result<(Vec<CopyPlan>, Option<ImageSlp>), i64> {
    let unit = |name: &str, replica: bool, retention_seconds: i64| -> Result<CopyPlan, i64> {
        let unit = if name.is_empty() {
            inner
                .storage_units
                .values()
                .find(|unit| {
                    !unit.attributes.get("onDemandOnly").and_then(serde_json::Value::as_bool).unwrap_or(false)
                })
                .ok_or(STATUS_NO_STORAGE_UNITS)?
        } else {
            inner.storage_units.get(name).ok_or(STATUS_STORAGE_UNIT_UNAVAILABLE)?
        };
        let pool = inner.disk_pools.get(&unit.pool_id);
        let media_server = pool
            .and_then(|pool| inner.storage_servers.get(&pool.server_id))
            .map(|server| server.media_server.clone())
            .unwrap_or_default();
        Ok(CopyPlan {
            replica,
            retention_seconds,
            storage: unit.name.clone(),
            disk_pool: unit.pool_id.clone(),
            media_server,
        })
    };
    let mut plans = Vec::new();
    for (index, (replica, retention, storage)) in schedule.copies.iter().enumerate() {
        if let Some(slp) = inner.slps.get(storage) {
            let version = slp.current().ok_or(STATUS_STORAGE_UNIT_UNAVAILABLE)?;
            let backup = version.backup_operation().ok_or(STATUS_STORAGE_UNIT_UNAVAILABLE)?;
            let copy = unit(&backup.storage, false, backup.retention_seconds)?;
            let complete = !version.operations().iter().any(|op| op.is_secondary());
            let managed = ImageSlp {
                name: slp.name.clone(),
                version: version.number,
                complete,
                done: vec![(backup.index, 1)],
            };
            if index == 0 {
                return Ok((vec![copy], Some(managed)));
            }
            return Err(STATUS_STORAGE_UNIT_UNAVAILABLE);
        }
        plans.push(unit(storage, *replica, *retention)?);
    }
    Ok((plans, None))
}

/// Failure statuses a backup may end with.
const FAILURE_STATUSES: &[i64] = &[13, 58, 96, 156, 6];
/// Status of a job cancelled by the administrator.
pub(crate) const STATUS_CANCELLED: i64 = 150;

/// What a job is about, for creating it.
#[derive(Debug, Clone)]
pub(crate) struct JobSpec {
    pub(crate) job_type: &'static str,
    pub(crate) sub_type: &'static str,
    /// Display policy type (`Standard`, `VMware`, ...).
    pub(crate) policy_display_type: String,
    pub(crate) policy_name: String,
    pub(crate) schedule_name: String,
    pub(crate) schedule_kind: ScheduleKind,
    pub(crate) client_name: String,
    pub(crate) storage_unit: String,
    pub(crate) file_list: Vec<String>,
}

impl JobSpec {
    /// A job record in state QUEUED (or whatever `state` says) started at `start`.
    pub(crate) fn build(&self, inner: &mut Inner, parent: Option<u64>, start: DateTime<Utc>) -> Job {
        let job_id = inner.allocate_job_id();
        let is_backup = self.job_type == "BACKUP";
        let kilobytes_to_transfer = if is_backup { inner.rng.random_range(200_000..20_000_000) } else { 0 };
        // Few enough that the image contents list every file (see `contents`).
        let estimated_files = if is_backup { inner.rng.random_range(20..600) } else { 0 };
        let mut job = Job {
            job_id,
            parent_job_id: parent.unwrap_or(job_id),
            job_type: self.job_type,
            job_sub_type: self.sub_type,
            policy_type: job_policy_type(&self.policy_display_type),
            policy_name: self.policy_name.clone(),
            schedule_kind: self.schedule_kind,
            schedule_name: self.schedule_name.clone(),
            client_name: self.client_name.clone(),
            state: JobState::Queued,
            status: 0,
            start_time: start,
            end_time: None,
            last_update_time: start,
            active_start: None,
            kilobytes_to_transfer,
            kilobytes_transferred: 0,
            estimated_files,
            number_of_files: 0,
            percent_complete: 0,
            backup_id: String::new(),
            restore_backup_ids: String::new(),
            child_count: 0,
            file_list: self.file_list.clone(),
            tries: vec![JobTry { number: 1, start, end: None, status: 0 }],
            progress_log: Vec::new(),
            media_server: crate::state::MEDIA_SERVER.to_owned(),
            storage_unit: self.storage_unit.clone(),
            source_storage_unit: String::new(),
            copy_number: 1,
            job_owner: "root".to_owned(),
            application_type: if self.policy_display_type.eq_ignore_ascii_case("vmware") {
                "VMWARE"
            } else {
                "NONE"
            },
        };
        job.log(start, format!("begin {}; job {job_id} queued", self.job_type));
        job
    }
}

/// One backup run of a policy schedule.
#[derive(Debug, Clone)]
struct BackupPlan {
    spec: JobSpec,
    schedule: ScheduleView,
    clients: Vec<String>,
    selections: Vec<String>,
}

/// Starts a backup of `policy_name` (all clients unless `client` is given); returns the ids of the
/// top-level jobs: the parent job of a VMware policy, or one job per client otherwise.
pub(crate) fn start_backup(
    shared: &Arc<Shared>,
    policy_name: &str,
    schedule_name: Option<&str>,
    client: Option<&str>,
    sub_type: &'static str,
) -> ApiResult<Vec<u64>> {
    let now = shared.now();
    let mut inner = shared.lock();
    let policy = inner.policies.get(policy_name).cloned().ok_or_else(|| {
        ApiError::bad_attribute("policyName", format!("the policy {policy_name:?} does not exist"))
    })?;
    if !policy.active() {
        return Err(ApiError::bad_request(format!("The policy {policy_name:?} is not active.")));
    }
    let schedules = policy.schedules();
    let schedule = match schedule_name.filter(|name| !name.is_empty()) {
        Some(name) => schedules.iter().find(|s| s.name == name).cloned().ok_or_else(|| {
            ApiError::bad_attribute("scheduleName", format!("the policy has no schedule {name:?}"))
        })?,
        None => schedules
            .iter()
            .find(|s| s.kind == ScheduleKind::Full)
            .or(schedules.first())
            .cloned()
            .ok_or_else(|| ApiError::bad_request(format!("The policy {policy_name:?} has no schedule.")))?,
    };
    let mut clients = policy.clients();
    if let Some(client) = client.filter(|client| !client.is_empty()) {
        if !clients.iter().any(|known| known == client) {
            return Err(ApiError::bad_attribute(
                "clientName",
                format!("{client:?} is not a client of the policy"),
            ));
        }
        clients = vec![client.to_owned()];
    }
    if clients.is_empty() {
        return Err(ApiError::bad_request(format!("The policy {policy_name:?} has no clients.")));
    }
    let vmware = policy.is_vmware();
    let selections = policy.selections();
    let storage_unit = match plan_copies(&inner, &schedule) {
        Ok((copies, _)) => copies.first().map(|copy| copy.storage.clone()).unwrap_or_default(),
        Err(_) => policy.storage(),
    };
    let spec = JobSpec {
        job_type: "BACKUP",
        sub_type,
        policy_display_type: policy.policy_type().to_owned(),
        policy_name: policy_name.to_owned(),
        schedule_name: schedule.name.clone(),
        schedule_kind: schedule.kind,
        client_name: String::new(),
        storage_unit,
        file_list: if selections.is_empty() {
            vec!["ALL_LOCAL_DRIVES".to_owned()]
        } else {
            selections.clone()
        },
    };
    let mut started = Vec::new();
    if vmware {
        let backup_host = policy
            .body
            .get("policyAttributes")
            .and_then(|a| a.get("backupHost"))
            .and_then(|h| h.as_str())
            .filter(|h| !h.is_empty() && *h != "MEDIA_SERVER")
            .unwrap_or(PRIMARY_SERVER)
            .to_owned();
        let parent_spec = JobSpec { client_name: backup_host, file_list: Vec::new(), ..spec.clone() };
        let mut parent = parent_spec.build(&mut inner, None, now);
        parent.child_count = clients.len() as i64;
        let id = parent.job_id;
        inner.insert_job(parent, now);
        started.push(id);
        let plan = BackupPlan { spec, schedule, clients, selections };
        shared.tasks.spawn(run_parent(Arc::clone(shared), id, plan));
    } else {
        for client in clients {
            let client_spec = JobSpec { client_name: client.clone(), ..spec.clone() };
            let job = client_spec.build(&mut inner, None, now);
            let id = job.job_id;
            inner.insert_job(job, now);
            started.push(id);
            let plan = BackupPlan {
                spec: client_spec,
                schedule: schedule.clone(),
                clients: vec![client],
                selections: selections.clone(),
            };
            shared.tasks.spawn(run_backup(Arc::clone(shared), id, plan));
        }
    }
    Ok(started)
}

/// Starts a restore of an image; returns the RESTORE job id.
pub(crate) fn start_restore(shared: &Arc<Shared>, image: &Image, sub_type: &'static str) -> u64 {
    let now = shared.now();
    let mut inner = shared.lock();
    let spec = JobSpec {
        job_type: "RESTORE",
        sub_type,
        policy_display_type: image.policy_type.clone(),
        policy_name: String::new(),
        schedule_name: String::new(),
        schedule_kind: ScheduleKind::Full,
        client_name: image.client_name.clone(),
        storage_unit: String::new(),
        file_list: vec![format!("/{}", image.client_name)],
    };
    let mut job = spec.build(&mut inner, None, now);
    job.restore_backup_ids = image.backup_id.clone();
    job.backup_id = image.backup_id.clone();
    job.kilobytes_to_transfer = image.kbytes;
    job.estimated_files = image.num_files;
    let id = job.job_id;
    inner.insert_job(job, now);
    shared.tasks.spawn(run_simple(Arc::clone(shared), id, shared.config.job_duration / 2));
    id
}

/// Starts an IMAGEDELETE job for a removed image (the caller holds the lock).
fn start_image_delete(shared: &Arc<Shared>, inner: &mut Inner, image: &Image, now: DateTime<Utc>) {
    let spec = JobSpec {
        job_type: "IMAGEDELETE",
        sub_type: "IMMEDIATE",
        policy_display_type: "Standard".to_owned(),
        policy_name: String::new(),
        schedule_name: String::new(),
        schedule_kind: ScheduleKind::Full,
        client_name: PRIMARY_SERVER.to_owned(),
        storage_unit: String::new(),
        file_list: Vec::new(),
    };
    let mut job = spec.build(inner, None, now);
    job.backup_id = image.backup_id.clone();
    let id = job.job_id;
    inner.insert_job(job, now);
    shared.tasks.spawn(run_simple(Arc::clone(shared), id, shared.config.job_duration / 10));
}

/// Removes the copies `which` selects from an image, journaling what that means (an update, the loss of
/// the last local copy, or the removal of the image) and starting the IMAGEDELETE job that deletes the
/// copies' data; the job names the image in `backupId`.
pub(crate) fn remove_copies(
    shared: &Arc<Shared>,
    inner: &mut Inner,
    backup_id: &str,
    which: impl Fn(&ImageCopy) -> bool,
    now: DateTime<Utc>,
) -> bool {
    let Some(image) = inner.images.get_mut(backup_id) else { return false };
    let had_local = image.has_local_copy();
    let before = image.copies.len();
    image.copies.retain(|copy| !which(copy));
    if image.copies.len() == before {
        return false;
    }
    if image.copies.is_empty() {
        let Some(image) = inner.images.remove(backup_id) else { return false };
        inner.record(now, EventKind::ImageDeleted(image.summary()));
        start_image_delete(shared, inner, &image, now);
    } else {
        let summary = image.summary();
        let kind = if had_local && !image.has_local_copy() {
            EventKind::ImageLostLastLocalCopy(summary)
        } else {
            EventKind::ImageUpdated(summary)
        };
        let image = image.clone();
        inner.record(now, kind);
        // Deleting the expired copies' data is an IMAGEDELETE job too.
        start_image_delete(shared, inner, &image, now);
    }
    shared.catalog_changed.notify_one();
    true
}

/// Cancels a job that is not done (and its running children).
pub(crate) fn cancel_job(shared: &Shared, job_id: u64) -> ApiResult<()> {
    let now = shared.now();
    let mut inner = shared.lock();
    let job =
        inner.jobs.get(&job_id).ok_or_else(|| ApiError::not_found(format!("Job {job_id} was not found.")))?;
    if job.state == JobState::Done {
        return Err(ApiError::bad_request(format!("Job {job_id} is already done.")));
    }
    let children: Vec<u64> = inner
        .jobs
        .values()
        .filter(|child| {
            child.parent_job_id == job_id && child.job_id != job_id && child.state != JobState::Done
        })
        .map(|child| child.job_id)
        .collect();
    for child in children {
        inner.set_job_state(child, JobState::Done, STATUS_CANCELLED, now);
    }
    inner.set_job_state(job_id, JobState::Done, STATUS_CANCELLED, now);
    Ok(())
}

/// Suspends (or resumes) a job that is not done.
pub(crate) fn suspend_job(shared: &Shared, job_id: u64, suspend: bool) -> ApiResult<()> {
    let now = shared.now();
    let mut inner = shared.lock();
    let job =
        inner.jobs.get(&job_id).ok_or_else(|| ApiError::not_found(format!("Job {job_id} was not found.")))?;
    let target = match (suspend, job.state) {
        (true, JobState::Queued | JobState::Active) => JobState::Suspended,
        (false, JobState::Suspended) if job.active_start.is_some() => JobState::Active,
        (false, JobState::Suspended) => JobState::Queued,
        (true, _) => {
            return Err(ApiError::bad_request(format!("Job {job_id} cannot be suspended in its state.")))
        }
        (false, _) => return Err(ApiError::bad_request(format!("Job {job_id} is not suspended."))),
    };
    inner.set_job_state(job_id, target, 0, now);
    Ok(())
}

/// Restarts a done backup job as a new job; returns the new top-level job ids.
pub(crate) fn restart_job(shared: &Arc<Shared>, job_id: u64) -> ApiResult<Vec<u64>> {
    let (policy, schedule, client) = {
        let inner = shared.lock();
        let job = inner
            .jobs
            .get(&job_id)
            .ok_or_else(|| ApiError::not_found(format!("Job {job_id} was not found.")))?;
        if job.state != JobState::Done || job.job_type != "BACKUP" || job.policy_name.is_empty() {
            return Err(ApiError::bad_request(format!("Job {job_id} cannot be restarted.")));
        }
        let top_level_vmware = job.parent_job_id == job.job_id && job.policy_type == "VMWARE";
        let client = (!top_level_vmware).then(|| job.client_name.clone());
        (job.policy_name.clone(), job.schedule_name.clone(), client)
    };
    start_backup(shared, &policy, Some(&schedule), client.as_deref(), "IMMEDIATE")
}

/// Drives a job through QUEUED → ACTIVE → ten progress steps; `None` when the job was cancelled, deleted
/// or the emulator stops.
async fn drive(shared: &Shared, job_id: u64, duration: Duration) -> Option<()> {
    if !shared.pause(duration / 20).await {
        return None;
    }
    let mut steps = 0u32;
    while steps < 10 {
        {
            let now = shared.now();
            let mut inner = shared.lock();
            let state = inner.jobs.get(&job_id)?.state;
            match state {
                JobState::Done => return None,
                JobState::Suspended => {}
                JobState::Queued => inner.set_job_state(job_id, JobState::Active, 0, now),
                JobState::Active if steps == 0 => {}
                JobState::Active => {
                    let job = inner.jobs.get_mut(&job_id)?;
                    job.percent_complete = i64::from(steps) * 10;
                    job.kilobytes_transferred = job.kilobytes_to_transfer * i64::from(steps) / 10;
                    job.number_of_files = job.estimated_files * i64::from(steps) / 10;
                    job.last_update_time = now;
                    let kilobytes = job.kilobytes_transferred;
                    job.log(now, format!("{steps}0% complete, {kilobytes} KB written"));
                }
            }
            if state != JobState::Suspended {
                steps += 1;
            }
        }
        if !shared.pause(duration / 10).await {
            return None;
        }
    }
    Some(())
}

async fn run_simple(shared: Arc<Shared>, job_id: u64, duration: Duration) {
    if drive(&shared, job_id, duration).await.is_none() {
        return;
    }
    let now = shared.now();
    let mut inner = shared.lock();
    if let Some(job) = inner.jobs.get_mut(&job_id).filter(|job| job.state != JobState::Done) {
        job.percent_complete = 100;
        job.kilobytes_transferred = job.kilobytes_to_transfer;
        job.number_of_files = job.estimated_files;
        inner.set_job_state(job_id, JobState::Done, 0, now);
    }
}

async fn run_backup(shared: Arc<Shared>, job_id: u64, plan: BackupPlan) {
    let planned = {
        let inner = shared.lock();
        plan_copies(&inner, &plan.schedule)
    };
    if let Err(status) = planned {
        // NetBackup fails such a job while allocating resources, before it writes anything.
        if !shared.pause(shared.config.job_duration / 20).await {
            return;
        }
        let now = shared.now();
        let mut inner = shared.lock();
        if inner.jobs.get(&job_id).is_some_and(|job| job.state != JobState::Done) {
            inner.set_job_state(job_id, JobState::Done, status, now);
        }
        return;
    }
    if drive(&shared, job_id, shared.config.job_duration).await.is_none() {
        return;
    }
    let now = shared.now();
    let mut inner = shared.lock();
    let failed = inner.rng.random_bool(shared.config.failure_rate);
    let mut status =
        if failed { FAILURE_STATUSES[inner.rng.random_range(0..FAILURE_STATUSES.len())] } else { 0 };
    // Planned again: the storage may have changed while the job ran.
    let planned = plan_copies(&inner, &plan.schedule);
    if let (0, Err(unavailable)) = (status, &planned) {
        status = *unavailable;
    }
    let Some(job) = inner.jobs.get_mut(&job_id).filter(|job| job.state != JobState::Done) else { return };
    if status == 0 {
        job.percent_complete = 100;
        job.kilobytes_transferred = job.kilobytes_to_transfer;
        job.number_of_files = job.estimated_files;
    }
    let job = job.clone();
    if let (0, Ok((copies, slp))) = (status, planned) {
        let managed = slp.is_some();
        let image = NewImage { copies, slp, selections: plan.selections.clone() };
        let backup_id = create_image(&mut inner, &job, &plan.spec.policy_display_type, image, now);
        if let Some(job) = inner.jobs.get_mut(&job_id) {
            job.backup_id = backup_id.clone();
        }
        shared.catalog_changed.notify_one();
        if managed {
            shared.tasks.spawn(run_slp(Arc::clone(&shared), backup_id));
        }
    }
    inner.set_job_state(job_id, JobState::Done, status, now);
}

async fn run_parent(shared: Arc<Shared>, parent_id: u64, plan: BackupPlan) {
    let duration = shared.config.job_duration;
    if !shared.pause(duration / 20).await {
        return;
    }
    {
        let now = shared.now();
        let mut inner = shared.lock();
        match inner.jobs.get(&parent_id).map(|job| job.state) {
            Some(JobState::Queued | JobState::Suspended | JobState::Active) => {}
            _ => return,
        }
        inner.set_job_state(parent_id, JobState::Active, 0, now);
        if let Some(parent) = inner.jobs.get_mut(&parent_id) {
            parent.log(now, format!("discovery found {} virtual machines", plan.clients.len()));
        }
        for client in &plan.clients {
            let spec = JobSpec { client_name: client.clone(), ..plan.spec.clone() };
            let child = spec.build(&mut inner, Some(parent_id), now);
            let child_id = child.job_id;
            inner.insert_job(child, now);
            let child_plan = BackupPlan { spec, clients: vec![client.clone()], ..plan.clone() };
            shared.tasks.spawn(run_backup(Arc::clone(&shared), child_id, child_plan));
        }
    }
    loop {
        if !shared.pause(duration / 20).await {
            return;
        }
        let now = shared.now();
        let mut inner = shared.lock();
        let Some(parent) = inner.jobs.get(&parent_id) else { return };
        if parent.state == JobState::Done {
            return;
        }
        let statuses: Vec<(JobState, i64)> = inner
            .jobs
            .values()
            .filter(|job| job.parent_job_id == parent_id && job.job_id != parent_id)
            .map(|job| (job.state, job.status))
            .collect();
        if statuses.iter().any(|(state, _)| *state != JobState::Done) {
            continue;
        }
        let failures: Vec<i64> = statuses.iter().map(|(_, status)| *status).filter(|s| *s != 0).collect();
        let status = match failures.first() {
            None => 0,
            Some(_) if failures.len() < statuses.len() => 1,
            Some(first) => *first,
        };
        if let Some(parent) = inner.jobs.get_mut(&parent_id) {
            parent.percent_complete = 100;
        }
        inner.set_job_state(parent_id, JobState::Done, status, now);
        return;
    }
}

/// What a new image is made of besides its job.
#[derive(Debug, Clone)]
pub(crate) struct NewImage {
    pub(crate) copies: Vec<CopyPlan>,
    pub(crate) slp: Option<ImageSlp>,
    pub(crate) selections: Vec<String>,
}

/// Adds the catalog image a successful backup job leaves; returns its backup id (`client_unixtime`,
/// moved on a second if that id is taken).
pub(crate) fn create_image(
    inner: &mut Inner,
    job: &Job,
    policy_display_type: &str,
    new: NewImage,
    now: DateTime<Utc>,
) -> String {
    let mut backup_time = DateTime::from_timestamp(job.start_time.timestamp(), 0).unwrap_or(job.start_time);
    let mut backup_id = format!("{}_{}", job.client_name, backup_time.timestamp());
    while inner.images.contains_key(&backup_id) {
        backup_time += TimeDelta::seconds(1);
        backup_id = format!("{}_{}", job.client_name, backup_time.timestamp());
    }
    let copies = new
        .copies
        .iter()
        .enumerate()
        .map(|(index, plan)| ImageCopy {
            copy_number: index as u32 + 1,
            replica: plan.replica,
            expiration: backup_time + TimeDelta::seconds(plan.retention_seconds),
            storage: plan.storage.clone(),
            disk_pool: plan.disk_pool.clone(),
            media_server: plan.media_server.clone(),
        })
        .collect();
    let image = Image {
        backup_id: backup_id.clone(),
        policy_name: job.policy_name.clone(),
        policy_type: policy_display_type.to_owned(),
        client_name: job.client_name.clone(),
        backup_time,
        schedule_name: job.schedule_name.clone(),
        schedule_kind: job.schedule_kind,
        job_id: job.job_id,
        kbytes: job.kilobytes_to_transfer,
        num_files: job.estimated_files,
        elapsed_seconds: (job.end_time.unwrap_or(now) - job.start_time).num_seconds(),
        keyword: String::new(),
        copies,
        slp: new.slp,
        selections: new.selections,
    };
    inner.record(now, EventKind::ImageCreated(image.summary()));
    inner.images.insert(backup_id.clone(), image);
    backup_id
}

/// The next operation of an image's SLP to run: a secondary operation not done yet whose source copy
/// exists, with the copy it reads; `None` when there is none (or the image is gone).
pub(crate) fn next_slp_operation(inner: &Inner, backup_id: &str) -> Option<(crate::slp::Operation, u32)> {
    let image = inner.images.get(backup_id)?;
    let managed = image.slp.as_ref()?;
    let version = inner.slps.get(&managed.name)?.versions.iter().find(|v| v.number == managed.version)?;
    version.operations().into_iter().filter(|op| op.is_secondary()).find_map(|op| {
        let done = |index: u32| managed.done.iter().find(|(op, _)| *op == index).map(|(_, copy)| *copy);
        if done(op.index).is_some() {
            return None;
        }
        let source = done(op.source)?;
        image.copies.iter().any(|copy| copy.copy_number == source).then_some((op, source))
    })
}

/// The DUPLICATE or REPLICATE job of an SLP operation on `image`, reading copy `source`, queued at
/// `start` (its policy is `SLP_<name>`, as NetBackup names SLP jobs).
pub(crate) fn slp_job(
    inner: &mut Inner,
    image: &Image,
    operation: &crate::slp::Operation,
    source: u32,
    start: DateTime<Utc>,
) -> Job {
    let spec = JobSpec {
        job_type: operation.job_type(),
        sub_type: "IMMEDIATE",
        policy_display_type: image.policy_type.clone(),
        policy_name: format!("SLP_{}", image.slp.as_ref().map_or("", |slp| slp.name.as_str())),
        schedule_name: String::new(),
        schedule_kind: image.schedule_kind,
        client_name: image.client_name.clone(),
        storage_unit: operation.storage.clone(),
        file_list: Vec::new(),
    };
    let mut job = spec.build(inner, None, start);
    job.backup_id = image.backup_id.clone();
    job.source_storage_unit = image
        .copies
        .iter()
        .find(|copy| copy.copy_number == source)
        .map(|copy| copy.storage.clone())
        .unwrap_or_default();
    job.kilobytes_to_transfer = image.kbytes;
    job.estimated_files = image.num_files;
    job.copy_number = image.copies.iter().map(|copy| copy.copy_number).max().unwrap_or(0) + 1;
    job
}

/// Runs the secondary operations of an image's SLP one by one, each after the SLP's processing interval:
/// a DUPLICATE or REPLICATE job that, when it ends, adds the copy (journaled as an image update).
pub(crate) async fn run_slp(shared: Arc<Shared>, backup_id: String) {
    loop {
        if !shared.pause(SLP_INTERVAL).await {
            return;
        }
        let started = {
            let now = shared.now();
            let mut inner = shared.lock();
            let Some((operation, source)) = next_slp_operation(&inner, &backup_id) else { return };
            let Some(image) = inner.images.get(&backup_id).cloned() else { return };
            let job = slp_job(&mut inner, &image, &operation, source, now);
            let job_id = job.job_id;
            inner.insert_job(job, now);
            (job_id, operation)
        };
        let (job_id, operation) = started;
        if drive(&shared, job_id, shared.config.job_duration / 2).await.is_none() {
            return;
        }
        let now = shared.now();
        let mut inner = shared.lock();
        let status = finish_slp_copy(&mut inner, &backup_id, &operation, now);
        if let Some(job) =
            inner.jobs.get_mut(&job_id).filter(|job| status == 0 && job.state != JobState::Done)
        {
            job.percent_complete = 100;
            job.kilobytes_transferred = job.kilobytes_to_transfer;
            job.number_of_files = job.estimated_files;
        }
        inner.set_job_state(job_id, JobState::Done, status, now);
        shared.catalog_changed.notify_one();
        if status != 0 {
            return;
        }
    }
}

/// Adds the copy an SLP operation made; returns the job's status.
pub(crate) fn finish_slp_copy(
    inner: &mut Inner,
    backup_id: &str,
    operation: &crate::slp::Operation,
    now: DateTime<Utc>,
) -> i64 {
    let target = if operation.remote {
        Some(CopyPlan {
            replica: true,
            retention_seconds: operation.retention_seconds,
            storage: operation.storage.clone(),
            disk_pool: String::new(),
            media_server: REMOTE_MEDIA_SERVER.to_owned(),
        })
    } else {
        inner.storage_units.get(&operation.storage).map(|unit| CopyPlan {
            replica: false,
            retention_seconds: operation.retention_seconds,
            storage: unit.name.clone(),
            disk_pool: unit.pool_id.clone(),
            media_server: inner
                .disk_pools
                .get(&unit.pool_id)
                .and_then(|pool| inner.storage_servers.get(&pool.server_id))
                .map(|server| server.media_server.clone())
                .unwrap_or_default(),
        })
    };
    let Some(target) = target else { return STATUS_STORAGE_UNIT_UNAVAILABLE };
    let secondary: Vec<u32> = {
        let Some(image) = inner.images.get(backup_id) else { return STATUS_NO_IMAGES_PROCESSED };
        let Some(managed) = &image.slp else { return STATUS_NO_IMAGES_PROCESSED };
        inner
            .slps
            .get(&managed.name)
            .and_then(|slp| slp.versions.iter().find(|v| v.number == managed.version))
            .map(|version| {
                version.operations().iter().filter(|op| op.is_secondary()).map(|op| op.index).collect()
            })
            .unwrap_or_default()
    };
    let Some(image) = inner.images.get_mut(backup_id) else { return STATUS_NO_IMAGES_PROCESSED };
    if !image.copies.iter().any(|copy| {
        image.slp.as_ref().is_some_and(|slp| {
            slp.done.iter().any(|(op, number)| *op == operation.source && *number == copy.copy_number)
        })
    }) {
        return STATUS_NO_IMAGES_PROCESSED;
    }
    let copy_number = image.copies.iter().map(|copy| copy.copy_number).max().unwrap_or(0) + 1;
    image.copies.push(ImageCopy {
        copy_number,
        replica: target.replica,
        expiration: image.backup_time + TimeDelta::seconds(target.retention_seconds),
        storage: target.storage,
        disk_pool: target.disk_pool,
        media_server: target.media_server,
    });
    if let Some(managed) = image.slp.as_mut() {
        managed.done.push((operation.index, copy_number));
        managed.complete = secondary.iter().all(|index| managed.done.iter().any(|(op, _)| op == index));
    }
    let summary = image.summary();
    inner.record(now, EventKind::ImageUpdated(summary));
    0
}

/// Expires image copies when the emulated clock passes their expiration.
pub(crate) async fn expire_catalog(shared: Arc<Shared>) {
    loop {
        let changed = shared.catalog_changed.notified();
        let next = {
            let inner = shared.lock();
            inner.images.values().flat_map(|image| image.copies.iter().map(|copy| copy.expiration)).min()
        };
        let due = async {
            match next {
                Some(at) => tokio::time::sleep_until(shared.clock.instant_at(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = changed => continue,
            _ = due => {}
        }
        let now = shared.now();
        let mut inner = shared.lock();
        let due_ids: Vec<String> = inner
            .images
            .values()
            .filter(|image| image.copies.iter().any(|copy| copy.expiration <= now))
            .map(|image| image.backup_id.clone())
            .collect();
        for backup_id in due_ids {
            remove_copies(&shared, &mut inner, &backup_id, |copy| copy.expiration <= now, now);
        }
    }
}

/// Starts scheduled backups at random, about `background_activity` per emulated hour.
pub(crate) async fn background_activity(shared: Arc<Shared>) {
    let level = shared.config.background_activity;
    if level <= 0.0 {
        return;
    }
    loop {
        let gap = {
            let mut inner = shared.lock();
            inner.rng.random_range(0.5..1.5) * 3600.0 / level
        };
        if !shared.pause(Duration::from_secs_f64(gap)).await {
            return;
        }
        let choice = {
            let mut inner = shared.lock();
            let candidates: Vec<(String, Vec<String>)> = inner
                .policies
                .values()
                .filter(|policy| policy.active() && !policy.clients().is_empty())
                .map(|policy| {
                    (policy.name().to_owned(), policy.schedules().into_iter().map(|s| s.name).collect())
                })
                .filter(|(_, schedules): &(String, Vec<String>)| !schedules.is_empty())
                .collect();
            if candidates.is_empty() {
                None
            } else {
                let (policy, schedules) = candidates[inner.rng.random_range(0..candidates.len())].clone();
                let schedule = schedules[inner.rng.random_range(0..schedules.len())].clone();
                Some((policy, schedule))
            }
        };
        if let Some((policy, schedule)) = choice {
            if let Err(error) = start_backup(&shared, &policy, Some(&schedule), None, "SCHEDULED") {
                tracing::debug!(policy, error = %error.message, "background backup not started");
            }
        }
    }
}

/// Starts a backup whenever a schedule of an active policy is due: every `frequencySeconds` of emulated
/// time, counted from when the schedule is first seen.
pub(crate) async fn run_schedules(shared: Arc<Shared>) {
    if !shared.config.run_schedules {
        return;
    }
    let mut last_runs: HashMap<(String, String), DateTime<Utc>> = HashMap::new();
    loop {
        let now = shared.now();
        let mut due = Vec::new();
        let mut next = now + TimeDelta::hours(1);
        {
            let inner = shared.lock();
            for policy in inner.policies.values().filter(|policy| policy.active()) {
                for schedule in policy.schedules().into_iter().filter(|s| s.frequency_seconds > 0) {
                    let key = (policy.name().to_owned(), schedule.name.clone());
                    let last = *last_runs.entry(key.clone()).or_insert(now);
                    let at = last + TimeDelta::seconds(schedule.frequency_seconds);
                    if at <= now {
                        due.push(key);
                    } else {
                        next = next.min(at);
                    }
                }
            }
        }
        for (policy, schedule) in due {
            last_runs.insert((policy.clone(), schedule.clone()), now);
            if let Err(error) = start_backup(&shared, &policy, Some(&schedule), None, "SCHEDULED") {
                tracing::debug!(policy, schedule, error = %error.message, "scheduled backup not started");
            }
        }
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = tokio::time::sleep_until(shared.clock.instant_at(next)) => {}
        }
    }
}

//! Seed data: storage, an SLP, policies, a vCenter and its VMs, and a day of finished jobs and their
//! images (SLP copies included), relative to the emulated now and the same for a given seed.

use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;
use serde_json::{json, Map, Value};

use crate::engine::{
    create_image, finish_slp_copy, next_slp_operation, plan_copies, slp_job, JobSpec, NewImage, SLP_INTERVAL,
};
use crate::model::{JobState, Policy, VmServer};
use crate::slp::{normalise, Slp};
use crate::state::{Inner, DR_MEDIA_SERVER, MEDIA_SERVER, PRIMARY_SERVER};
use crate::storage::{DiskPool, StorageServer, StorageUnit};

/// The seed SLP: a backup to MSDP duplicated to AdvancedDisk.
pub(crate) const SEED_SLP: &str = "slp-msdp-dup";

/// Statuses seed jobs may fail with.
const SEED_FAILURES: &[i64] = &[58, 13, 156];

fn schedule(name: &str, backup_type: &str, frequency: i64, copies: Value) -> Value {
    json!({
        "scheduleName": name,
        "backupType": backup_type,
        "scheduleType": "Frequency",
        "frequencySeconds": frequency,
        "backupCopies": {"priority": 9999, "copies": copies},
        "startWindow": (1..=7).map(|day| json!({"dayOfWeek": day, "startSeconds": 0, "durationSeconds": 86_400})).collect::<Vec<_>>(),
        "excludeDates": {"lastDayOfMonth": false, "recurringDaysOfWeek": [], "recurringDaysOfMonth": [], "specificDates": []},
        "includeDates": {"lastDayOfMonth": false, "recurringDaysOfWeek": [], "recurringDaysOfMonth": [], "specificDates": []},
        "mediaMultiplexing": 1,
        "retriesAllowedAfterRunDay": false,
        "storageIsSLP": false,
        "syntheticBackup": false,
        "snapshotOnly": false,
        "acceleratorForcedRescan": false,
    })
}

fn copy(value: i64, unit: &str, storage: &str) -> Value {
    json!({
        "retentionPeriod": {"value": value, "unit": unit},
        "storage": storage,
        "volumePool": "NetBackup",
        "mediaOwner": "*ANY*",
        "failStrategy": "Continue",
    })
}

/// Policy attributes with NetBackup's defaults; `extra` overrides.
pub(crate) fn default_policy_attributes(extra: &Map<String, Value>) -> Map<String, Value> {
    let mut attributes = json!({
        "active": true,
        "jobLimit": 2_147_483_647,
        "keyword": "",
        "priority": 0,
        "volumePool": "NetBackup",
        "mediaOwner": "*ANY*",
        "storage": "",
        "storageIsSLP": false,
        "dataClassification": "",
        "useAccelerator": false,
        "blockIncremental": false,
        "compression": false,
        "encryption": false,
        "followNFSMounts": false,
        "crossMountPoints": false,
        "collectTrueImageRestoreInformation": false,
        "effectiveDateUTC": "2024-01-01T00:00:00Z",
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    for (key, value) in extra {
        attributes.insert(key.clone(), value.clone());
    }
    attributes
}

fn policy(
    name: &str,
    policy_type: &str,
    attributes: Value,
    clients: Value,
    schedules: Value,
    selections: Value,
) -> Policy {
    let body = json!({
        "policyName": name,
        "policyType": policy_type,
        "policyAttributes": default_policy_attributes(attributes.as_object().unwrap_or(&Map::new())),
        "clients": clients,
        "schedules": schedules,
        "backupSelections": {"selections": selections},
    });
    Policy { body: body.as_object().cloned().unwrap_or_default(), generation: 1 }
}

/// The seed policies: a VMware policy that replicates its full backups, three Standard policies (one
/// storing to the seed SLP) and a Windows policy, each with schedules named FULL and INCR.
pub(crate) fn policies() -> Vec<Policy> {
    let vm = |name: &str| json!({"hostName": name, "hardware": "VMware", "OS": "VMware"});
    let linux = |name: &str| json!({"hostName": name, "hardware": "Linux", "OS": "RedHat"});
    let windows = |name: &str| json!({"hostName": name, "hardware": "PC", "OS": "Windows"});
    vec![
        policy(
            "VMware_Gold",
            "VMware",
            json!({"backupHost": "MEDIA_SERVER", "storage": "stu-msdp-01", "snapshotMethodArgs": "skipnodisk=0,post_events=1,trantype=san:hotadd:nbd:nbdssl"}),
            json!([vm("vm-app01.example.com"), vm("vm-app02.example.com"), vm("vm-db01.example.com")]),
            json!([
                schedule(
                    "FULL",
                    "Full Backup",
                    604_800,
                    json!([copy(2, "WEEKS", "stu-msdp-01"), copy(4, "WEEKS", "replica-msdp-dr")])
                ),
                schedule(
                    "INCR",
                    "Differential Incremental Backup",
                    86_400,
                    json!([copy(1, "WEEKS", "stu-msdp-01")])
                ),
            ]),
            json!(["vmware:/?filter=Displayname Contains 'vm-'"]),
        ),
        policy(
            "Standard_FS",
            "Standard",
            json!({"storage": "stu-disk-01"}),
            json!([linux("client01.example.com"), linux("client02.example.com")]),
            json!([
                schedule("FULL", "Full Backup", 604_800, json!([copy(2, "WEEKS", "stu-disk-01")])),
                schedule(
                    "INCR",
                    "Differential Incremental Backup",
                    86_400,
                    json!([copy(1, "WEEKS", "stu-disk-01")])
                ),
            ]),
            json!(["/etc", "/home", "/var/log"]),
        ),
        policy(
            "Standard_DB",
            "Standard",
            json!({"storage": "stu-disk-01", "keyword": "database"}),
            json!([linux("dbhost01.example.com")]),
            json!([
                schedule("FULL", "Full Backup", 86_400, json!([copy(1, "MONTHS", "stu-disk-01")])),
                schedule(
                    "INCR",
                    "Cumulative Incremental Backup",
                    14_400,
                    json!([copy(3, "DAYS", "stu-disk-01")])
                ),
            ]),
            json!(["/var/lib/pgsql"]),
        ),
        policy(
            "Standard_Apps",
            "Standard",
            json!({"storage": SEED_SLP, "storageIsSLP": true}),
            json!([linux("app01.example.com")]),
            json!([
                schedule("FULL", "Full Backup", 604_800, json!([copy(2, "WEEKS", SEED_SLP)])),
                schedule(
                    "INCR",
                    "Differential Incremental Backup",
                    86_400,
                    json!([copy(1, "WEEKS", SEED_SLP)])
                ),
            ]),
            json!(["/opt/apps", "/etc"]),
        ),
        policy(
            "Windows_Servers",
            "MS-Windows",
            json!({"storage": "stu-disk-01"}),
            json!([windows("win-fs01.example.com")]),
            json!([
                schedule("FULL", "Full Backup", 604_800, json!([copy(2, "WEEKS", "stu-disk-01")])),
                schedule(
                    "INCR",
                    "Differential Incremental Backup",
                    86_400,
                    json!([copy(1, "WEEKS", "stu-disk-01")])
                ),
            ]),
            json!(["ALL_LOCAL_DRIVES"]),
        ),
    ]
}

/// The seed storage: an MSDP and an AdvancedDisk server on the media server and an MSDP server on the
/// disaster-recovery media server, one disk pool and one storage unit on each (the units the seed
/// policies name), and the SLP that duplicates from MSDP to AdvancedDisk.
pub(crate) fn storage(inner: &mut Inner, now: DateTime<Utc>) {
    let none = Map::new();
    let servers = [
        (
            "MSDP",
            MEDIA_SERVER,
            json!({"msdpAttributes": {"storagePath": "/msdp/data"}}),
            "dp-msdp-01",
            "PureDiskVolume",
            "stu-msdp-01",
        ),
        ("ADVANCED_DISK", MEDIA_SERVER, json!({}), "dp-disk-01", "/disk01", "stu-disk-01"),
        (
            "MSDP",
            DR_MEDIA_SERVER,
            json!({"msdpAttributes": {"storagePath": "/msdp/dr"}}),
            "dp-msdp-dr",
            "PureDiskVolume",
            "replica-msdp-dr",
        ),
    ];
    for (category, host, extra, pool_name, volume, unit_name) in servers {
        let server = StorageServer::new(host, category, host, extra.as_object().unwrap_or(&none));
        let pool_extra = json!({"diskVolumes": [{"name": volume}]});
        let pool = DiskPool::new(pool_name, &server, pool_extra.as_object().unwrap_or(&none));
        let unit = StorageUnit::new(unit_name, &pool, &server, &none);
        inner.storage_units.insert(unit.name.clone(), unit);
        inner.disk_pools.insert(pool.id.clone(), pool);
        inner.storage_servers.insert(server.id.clone(), server);
    }
    let operations = json!({"operationList": [
        {"operationType": "BACKUP", "storage": {"name": "stu-msdp-01"}, "retentionPeriod": {"value": 2, "unit": "WEEKS"}},
        {"operationType": "DUPLICATION", "sourceOperationIndex": 1, "storage": {"name": "stu-disk-01"},
         "retentionPeriod": {"value": 1, "unit": "MONTHS"}},
    ]});
    let units = inner.storage_units.clone();
    let servers = inner.storage_servers.clone();
    let pools = inner.disk_pools.clone();
    let stype = |name: &str| {
        let unit = units.get(name)?;
        let pool = pools.get(&unit.pool_id)?;
        servers.get(&pool.server_id).map(|server| server.stype.clone())
    };
    if let Ok(attributes) = normalise(operations.as_object().unwrap_or(&none), stype, now) {
        let mut slp = Slp { name: SEED_SLP.to_owned(), versions: Vec::new() };
        slp.push_version(attributes);
        inner.slps.insert(slp.name.clone(), slp);
    }
}

/// Fills the store: storage, policies, a vCenter, and finished backups in the last day (plus a few older
/// ones).
pub(crate) fn populate(inner: &mut Inner, now: DateTime<Utc>, job_duration: TimeDelta) {
    storage(inner, now);
    for policy in policies() {
        inner.policies.insert(policy.name().to_owned(), policy);
    }
    // The vCenter holds the VMware policies' virtual machines and two that no policy protects.
    let mut vms: Vec<String> =
        inner.policies.values().filter(|p| p.is_vmware()).flat_map(|p| p.clients()).collect();
    vms.extend(["vm-test01.example.com".to_owned(), "vm-web01.example.com".to_owned()]);
    vms.sort();
    vms.dedup();
    for asset in crate::asset::inventory("vcenter01.example.com", &vms) {
        inner.assets.insert(asset.id.clone(), asset);
    }
    inner.vm_servers.insert(
        "vcenter01.example.com".to_owned(),
        VmServer {
            server_name: "vcenter01.example.com".to_owned(),
            vm_type: "VMWARE_VIRTUAL_CENTER_SERVER".to_owned(),
            user_id: "administrator@vsphere.local".to_owned(),
            port: 443,
        },
    );
    let runs = inner.rng.random_range(10..16);
    let mut starts: Vec<i64> = (0..runs)
        .map(|index| {
            if index < 3 {
                inner.rng.random_range(26 * 3600..96 * 3600)
            } else {
                inner.rng.random_range(3600..23 * 3600)
            }
        })
        .collect();
    starts.sort_unstable_by(|a, b| b.cmp(a));
    let policies: Vec<Policy> = inner.policies.values().cloned().collect();
    for ago in starts {
        let policy = &policies[inner.rng.random_range(0..policies.len())];
        let schedules = policy.schedules();
        let schedule = schedules[inner.rng.random_range(0..schedules.len())].clone();
        let start = now - TimeDelta::seconds(ago);
        let spec = JobSpec {
            job_type: "BACKUP",
            sub_type: "SCHEDULED",
            policy_display_type: policy.policy_type().to_owned(),
            policy_name: policy.name().to_owned(),
            schedule_name: schedule.name.clone(),
            schedule_kind: schedule.kind,
            client_name: PRIMARY_SERVER.to_owned(),
            storage_unit: policy.storage(),
            file_list: policy.selections(),
        };
        let parent_id = if policy.is_vmware() {
            let mut parent = spec.build(inner, None, start);
            parent.child_count = policy.clients().len() as i64;
            Some(parent)
        } else {
            None
        };
        let mut statuses = Vec::new();
        let mut children = Vec::new();
        let mut copies_made = Vec::new();
        let planned = plan_copies(inner, &schedule);
        for client in policy.clients() {
            let client_spec = JobSpec { client_name: client, ..spec.clone() };
            let mut job = client_spec.build(inner, parent_id.as_ref().map(|p| p.job_id), start);
            let status = if inner.rng.random_bool(0.15) {
                SEED_FAILURES[inner.rng.random_range(0..SEED_FAILURES.len())]
            } else {
                0
            };
            let status = match &planned {
                Ok(_) => status,
                Err(unavailable) => *unavailable,
            };
            finish(&mut job, status, start, job_duration);
            statuses.push(status);
            if let (0, Ok((copies, slp))) = (status, &planned) {
                let image =
                    NewImage { copies: copies.clone(), slp: slp.clone(), selections: policy.selections() };
                job.backup_id = create_image(inner, &job, policy.policy_type(), image, start + job_duration);
                copies_made.extend(seed_slp_copies(
                    inner,
                    &job.backup_id,
                    start + job_duration,
                    job_duration,
                ));
            }
            children.push(job);
        }
        if let Some(mut parent) = parent_id {
            let failures = statuses.iter().filter(|s| **s != 0).count();
            let status = match failures {
                0 => 0,
                n if n < statuses.len() => 1,
                _ => statuses[0],
            };
            finish(&mut parent, status, start, job_duration + TimeDelta::seconds(60));
            let end = parent.end_time.unwrap_or(now);
            inner.insert_job(parent, end);
        }
        for job in children.into_iter().chain(copies_made) {
            let end = job.end_time.unwrap_or(now);
            inner.insert_job(job, end);
        }
    }
}

/// Runs the later operations of a seed image's SLP at once, as they ran after the backup ended at
/// `ended`: each adds its copy; returns their finished DUPLICATE / REPLICATE jobs.
fn seed_slp_copies(
    inner: &mut Inner,
    backup_id: &str,
    ended: DateTime<Utc>,
    job_duration: TimeDelta,
) -> Vec<crate::model::Job> {
    let mut jobs = Vec::new();
    let mut at = ended;
    let interval = TimeDelta::from_std(SLP_INTERVAL).unwrap_or(TimeDelta::minutes(5));
    while let Some((operation, source)) = next_slp_operation(inner, backup_id) {
        let Some(image) = inner.images.get(backup_id).cloned() else { break };
        let start = at + interval;
        let mut job = slp_job(inner, &image, &operation, source, start);
        let status = finish_slp_copy(inner, backup_id, &operation, start + job_duration / 2);
        finish(&mut job, status, start, job_duration / 2);
        at = start + job_duration / 2;
        jobs.push(job);
        if status != 0 {
            break;
        }
    }
    jobs
}

fn finish(job: &mut crate::model::Job, status: i64, start: DateTime<Utc>, duration: TimeDelta) {
    let end = start + duration;
    job.state = JobState::Done;
    job.status = status;
    job.active_start = Some(start + TimeDelta::seconds(5));
    job.end_time = Some(end);
    job.last_update_time = end;
    if status == 0 {
        job.percent_complete = 100;
        job.kilobytes_transferred = job.kilobytes_to_transfer;
        job.number_of_files = job.estimated_files;
    }
    if let Some(last) = job.tries.last_mut() {
        last.end = Some(end);
        last.status = status;
    }
    job.log(end, format!("end {}; status {status}", job.job_type));
}

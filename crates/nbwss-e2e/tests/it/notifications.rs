//! Notifications end to end: what happens on the primary server arrives at the endpoint with every field
//! right, and matches the emulator's own journal.

use std::collections::BTreeSet;

use nbwss_emulator::EventKind;
use serde_json::Value;

use crate::system::{eventually, System, PRIMARY};

fn job_records(system: &System) -> Vec<Value> {
    system.notifications().into_iter().filter(|n| n.object == "JOB").map(|n| n.record).collect()
}

fn image_records(system: &System) -> Vec<Value> {
    system.notifications().into_iter().filter(|n| n.object == "IMAGE").map(|n| n.record).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vmware_backup_then_expiry_arrive_as_the_emulator_journal_says() {
    let system = System::start().await;
    let vmware = system
        .emulator
        .policy_names()
        .into_iter()
        .find(|name| name.to_lowercase().contains("vmware"))
        .unwrap();
    // Nothing else runs on the test emulator (no schedules, no background activity): every event after
    // this point belongs to this backup.
    let journal_start = system.emulator.events().len();
    let parents = system.emulator.start_backup(&vmware, None).unwrap();
    let parent = i64::try_from(parents[0]).unwrap();

    // Wait until the parent's DONE record has arrived.
    eventually("the parent job's DONE record", || async {
        job_records(&system).iter().any(|r| r["jobId"] == parent && r["state"] == "DONE").then_some(())
    })
    .await;

    // Every job of this backup, from the emulator's journal: parent and children.
    let events = system.emulator.events_since(journal_start);
    let backup_jobs: BTreeSet<i64> = events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::JobCreated(job) if job.job_id == parents[0] || job.parent_job_id == parents[0] => {
                Some(i64::try_from(job.job_id).unwrap())
            }
            _ => None,
        })
        .collect();
    assert!(backup_jobs.len() >= 2, "a VMware backup has a parent and children: {backup_jobs:?}");

    // Children finish before the parent, so all DONE records are in once the images are.
    let images: BTreeSet<String> = events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::ImageCreated(image) => Some(image.backup_id.clone()),
            _ => None,
        })
        .collect();
    assert!(!images.is_empty());
    eventually("an IMAGE CREATE record for every image of the backup", || async {
        let created: BTreeSet<String> = image_records(&system)
            .iter()
            .filter(|r| r["operationId"] == "CREATE")
            .map(|r| r["backupId"].as_str().unwrap().to_owned())
            .collect();
        images.is_subset(&created).then_some(())
    })
    .await;

    let jobs = job_records(&system);
    for job_id in &backup_jobs {
        let records: Vec<&Value> = jobs.iter().filter(|r| r["jobId"] == *job_id).collect();
        // D14: first sighting in its state, plus one when DONE (none extra if first seen DONE).
        let first = records.first().unwrap_or_else(|| panic!("no record for job {job_id}"));
        let done = records.iter().filter(|r| r["state"] == "DONE").count();
        assert_eq!(done, 1, "job {job_id}: exactly one DONE record: {records:?}");
        assert!(
            records.len() == 1 && first["state"] == "DONE" || records.len() == 2,
            "job {job_id}: {records:?}"
        );
        for record in &records {
            assert_eq!(record.as_object().unwrap().len(), 10, "{record}");
            assert_eq!(record["policyName"], vmware.as_str());
            assert_eq!(record["policyType"], "VMWARE");
            assert_eq!(record["jobType"], "BACKUP");
            assert_eq!(record["scheduleType"], "ST_FULL");
            if *job_id == parent {
                assert_eq!(record["parentJobId"], parent, "a top-level job is its own parent");
            } else {
                assert_eq!(record["parentJobId"], parent, "a child names its parent");
            }
        }
        let last = records.last().unwrap();
        assert_eq!(last["status"], 0);
    }
    for record in image_records(&system) {
        assert_eq!(record.as_object().unwrap().len(), 6, "{record}");
        let backup_id = record["backupId"].as_str().unwrap();
        assert_eq!(
            backup_id,
            format!("{}_{}", record["clientName"].as_str().unwrap(), record["backupTime"]),
            "backupId = clientName_backupTime"
        );
        assert_eq!(record["clientType"], "VMWARE");
    }

    // Expiring one of the images produces DELETE.
    let expired = images.iter().next().unwrap().clone();
    system.emulator.expire_image(&expired).unwrap();
    eventually("the IMAGE DELETE record", || async {
        image_records(&system)
            .iter()
            .any(|r| r["operationId"] == "DELETE" && r["backupId"] == expired.as_str())
            .then_some(())
    })
    .await;

    // Every record came from our primary server, each message stored once.
    let all = system.notifications();
    assert!(all.iter().all(|n| n.primary == PRIMARY));
    let cursors: Vec<i64> = all.iter().map(|n| n.cursor).collect();
    let mut sorted = cursors.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(cursors, sorted, "the feed is in arrival order without repeats");
    system.shutdown().await;
}

//! Notifications end to end: what happens on the primary server arrives at the endpoint with every field
//! right, and matches the emulator's own journal.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

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

/// The notification rate of the measured system, in seconds.
const SCHEDULED_RATE: u64 = 2;

/// An SLP-driven backup makes its second copy later; the emulator journals that as an image update and
/// the service sends an IMAGE UPDATE. Expiring the image sends a DELETE. Both arrive within two
/// `notification.scheduledRate`s of the emulator's event although the full reconciliation runs only
/// once an hour here: the service checks the images that DUPLICATE and IMAGEDELETE jobs name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slp_copies_and_expiry_arrive_within_two_scheduled_rates() {
    let properties = format!(
        "notification.scheduledRate={SCHEDULED_RATE}\nnotification.reconcileInterval=3600\nconnectionInfo.period=1\n"
    );
    let system = System::start_with(&properties).await;
    let budget = Duration::from_secs(2 * SCHEDULED_RATE);
    let from = system.emulator.events().len();
    system.emulator.start_backup("Standard_Apps", Some("FULL")).unwrap();

    // Watch the journal and the endpoint together, timing each from when the journal shows the event.
    let arrived = |operation: &'static str, backup_id: String| {
        let system = &system;
        async move {
            image_records(system)
                .iter()
                .any(|r| r["operationId"] == operation && r["backupId"] == backup_id.as_str())
        }
    };
    let (backup_id, updated_at) = eventually("the emulator to journal the duplicated copy", || async {
        system.emulator.events_since(from).iter().find_map(|event| match &event.kind {
            EventKind::ImageUpdated(image) if image.copies.len() == 2 => {
                Some((image.backup_id.clone(), Instant::now()))
            }
            _ => None,
        })
    })
    .await;
    eventually("the IMAGE UPDATE record", || async {
        arrived("UPDATE", backup_id.clone()).await.then_some(())
    })
    .await;
    let update_latency = updated_at.elapsed();

    system.emulator.expire_image(&backup_id).unwrap();
    let expired_at = Instant::now();
    eventually("the IMAGE DELETE record", || async {
        arrived("DELETE", backup_id.clone()).await.then_some(())
    })
    .await;
    let delete_latency = expired_at.elapsed();
    println!(
        "image UPDATE arrived {:.2} s and DELETE {:.2} s after the emulator's event (budget {:.0} s, reconciliation every 3600 s)",
        update_latency.as_secs_f64(),
        delete_latency.as_secs_f64(),
        budget.as_secs_f64()
    );
    assert!(update_latency <= budget, "UPDATE took {update_latency:?}, more than {budget:?}");
    assert!(delete_latency <= budget, "DELETE took {delete_latency:?}, more than {budget:?}");

    // The jobs that made the changes arrive too, the duplication naming the image.
    let jobs = job_records(&system);
    assert!(
        jobs.iter().any(|r| r["jobType"] == "DUPLICATE" && r["state"] == "DONE" && r["status"] == 0),
        "{jobs:?}"
    );
    let update = image_records(&system).into_iter().find(|r| r["operationId"] == "UPDATE").unwrap();
    assert_eq!(update["clientName"], "app01.example.com");
    assert_eq!(update["clientType"], "STANDARD");
    system.shutdown().await;
}

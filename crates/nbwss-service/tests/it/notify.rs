//! Notifications: the detector against the emulator (over HTTPS on port 0, fast clock), the outbox across
//! a reopen, and delivery with resends and acknowledgements.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nbwss_emulator::{Emulator, EmulatorConfig, EmulatorEvent, EmulatorHandle, EventKind, JobSummary};
use nbwss_protocol::{
    Body, Codec, ImageOperation, ImageRecord, JobRecord, JobState, NotificationGroup, Secret,
};
use nbwss_service::notify::{
    ConfiguredGroup, Delivery, DeliveryTiming, DetectError, Detector, DetectorConfig, NotifyMetrics, Outbox,
    OutboxConfig, PrimaryClient, PrimaryCredentials, Record,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(60);
const GROUP: &str = "test-group";

fn outbox_at(dir: &Path) -> Arc<Outbox> {
    let config =
        OutboxConfig { max_records: 100_000, batch_size: 50, max_unacked: 1000, ..OutboxConfig::default() };
    let outbox = Outbox::open(&dir.join("notifications.sqlite3"), config, NotifyMetrics::default()).unwrap();
    outbox.sync_groups(&[ConfiguredGroup::new(GROUP, 0)]).unwrap();
    Arc::new(outbox)
}

fn detector(
    emulator: &EmulatorHandle,
    outbox: &Arc<Outbox>,
    api_version: &str,
    use_api_key: bool,
) -> Detector {
    let config = DetectorConfig {
        poll_interval: Duration::from_millis(100),
        reconcile_interval: Duration::from_millis(300),
        job_overlap: chrono::TimeDelta::minutes(5),
        image_lookback: chrono::TimeDelta::hours(6),
        // Small pages: every reconciliation of the seed catalog takes several.
        reconcile_page_size: 3,
        reconcile_page_pause: Duration::ZERO,
    };
    detector_with(emulator, outbox, api_version, use_api_key, config)
}

fn detector_with(
    emulator: &EmulatorHandle,
    outbox: &Arc<Outbox>,
    api_version: &str,
    use_api_key: bool,
    config: DetectorConfig,
) -> Detector {
    let credentials = if use_api_key {
        PrimaryCredentials::ApiKey(Secret::new(emulator.create_api_key("admin")))
    } else {
        PrimaryCredentials::Password {
            user: "admin".into(),
            password: Secret::new("password"),
            domain_type: None,
            domain_name: None,
        }
    };
    let client =
        PrimaryClient::new(&emulator.base_url(), Some(&emulator.certificate_pem()), credentials, api_version)
            .unwrap();
    Detector::new(client, Arc::clone(outbox), config)
}

/// Takes every record the group has not seen yet, acknowledging the messages.
fn drain(outbox: &Outbox) -> Vec<Record> {
    let mut records = Vec::new();
    while let Some(message) = outbox.next_message(GROUP).unwrap() {
        records.extend(records_of(&message.text));
        assert!(outbox.ack(GROUP, &message.id).unwrap());
    }
    records
}

fn records_of(text: &str) -> Vec<Record> {
    let Body::NotificationRequest(groups) = Codec::default().decode(text).unwrap().body else {
        panic!("not a NOTIFICATION REQUEST: {text}")
    };
    let mut records = Vec::new();
    for group in groups {
        match group {
            NotificationGroup::Jobs { records: jobs, .. } => {
                records.extend(jobs.into_iter().map(Record::Job))
            }
            NotificationGroup::Images { records: images, .. } => {
                records.extend(images.into_iter().map(Record::Image))
            }
            NotificationGroup::Other { object, .. } => panic!("unexpected object {object}"),
        }
    }
    records
}

fn jobs_of(records: &[Record]) -> BTreeMap<i64, Vec<JobRecord>> {
    let mut jobs: BTreeMap<i64, Vec<JobRecord>> = BTreeMap::new();
    for record in records {
        if let Record::Job(job) = record {
            jobs.entry(job.job_id).or_default().push(job.clone());
        }
    }
    jobs
}

fn images_of(records: &[Record], operation: &ImageOperation) -> Vec<ImageRecord> {
    records
        .iter()
        .filter_map(|record| match record {
            Record::Image(image) if &image.operation_id == operation => Some(image.clone()),
            _ => None,
        })
        .collect()
}

/// The emulator's jobs from journal position `from` on, each with its final summary once DONE.
fn done_jobs(events: &[EmulatorEvent]) -> BTreeMap<u64, JobSummary> {
    events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::JobDone(summary) => Some((summary.job_id, summary.clone())),
            _ => None,
        })
        .collect()
}

fn created_jobs(events: &[EmulatorEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::JobCreated(summary) => Some(summary.job_id),
            _ => None,
        })
        .collect()
}

/// Polls until `done(records so far)` holds, or fails after the deadline.
async fn poll_until(
    detector: &mut Detector,
    outbox: &Outbox,
    records: &mut Vec<Record>,
    what: &str,
    done: impl Fn(&[Record]) -> bool,
) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        detector.poll_once().await.unwrap();
        records.extend(drain(outbox));
        if done(records) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; records so far: {records:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every job of the journal: one first sighting in its state and one DONE (just one record when first seen
/// DONE), each with every field equal to the emulator's own summary.
fn assert_jobs_reported(records: &[Record], events: &[EmulatorEvent]) {
    let reported = jobs_of(records);
    let done = done_jobs(events);
    for job_id in created_jobs(events) {
        let summary = &done[&job_id];
        let sightings = &reported[&(job_id as i64)];
        let last = sightings.last().unwrap();
        assert_eq!(last.state, JobState::Done, "job {job_id}: {sightings:?}");
        let expected = if sightings[0].state == JobState::Done { 1 } else { 2 };
        assert_eq!(sightings.len(), expected, "job {job_id}: {sightings:?}");
        assert_eq!(last.job_id as u64, summary.job_id);
        assert_eq!(last.parent_job_id as u64, summary.parent_job_id, "job {job_id}");
        assert_eq!(last.job_type.as_str(), summary.job_type);
        assert_eq!(last.policy_type, summary.policy_type);
        assert_eq!(last.policy_name, summary.policy_name);
        assert_eq!(last.schedule_type.as_str(), summary.schedule_type);
        assert_eq!(last.client_name, summary.client_name);
        assert_eq!(last.status, summary.status);
        assert_eq!(last.start_time, summary.start_time);
        for sighting in sightings {
            assert_eq!(serde_json::to_value(sighting).unwrap().as_object().unwrap().len(), 10);
        }
    }
}

fn all_done(records: &[Record], events: &[EmulatorEvent]) -> bool {
    let reported = jobs_of(records);
    created_jobs(events).iter().all(|job_id| {
        reported.get(&(*job_id as i64)).is_some_and(|jobs| jobs.iter().any(|job| job.state == JobState::Done))
    })
}

fn image_events(events: &[EmulatorEvent], deleted: bool) -> Vec<nbwss_emulator::ImageSummary> {
    events
        .iter()
        .filter_map(|event| match (&event.kind, deleted) {
            (EventKind::ImageCreated(image), false) | (EventKind::ImageDeleted(image), true) => {
                Some(image.clone())
            }
            _ => None,
        })
        .collect()
}

fn assert_images(records: &[Record], events: &[EmulatorEvent], operation: ImageOperation) {
    let expected = image_events(events, operation == ImageOperation::Delete);
    let reported = images_of(records, &operation);
    assert_eq!(reported.len(), expected.len(), "{operation}: {reported:#?} vs {expected:#?}");
    for image in expected {
        let record = reported.iter().find(|record| record.backup_id == image.backup_id).unwrap();
        assert_eq!(record.client_name, image.client_name);
        assert_eq!(record.client_type, image.client_type);
        assert_eq!(record.backup_time, image.backup_time);
        assert_eq!(serde_json::to_value(record).unwrap().as_object().unwrap().len(), 6);
    }
}

/// Image updates and deletions found through the jobs that make them, with no reconciliation: an SLP's
/// DUPLICATE job adds a copy (UPDATE), an IMAGEDELETE job removes an image (DELETE). The reconciliation
/// interval is an hour, so nothing but the IMAGEDELETE job's check can find the DELETE (without it this
/// test times out); the UPDATE of this newest image the new-image poll may find first.
#[tokio::test]
async fn catalog_jobs_reveal_image_updates_and_deletions_at_once() {
    let emulator = Emulator::start(EmulatorConfig::for_tests()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outbox = outbox_at(dir.path());
    let config = DetectorConfig {
        poll_interval: Duration::from_millis(100),
        reconcile_interval: Duration::from_secs(3600),
        job_overlap: chrono::TimeDelta::minutes(5),
        image_lookback: chrono::TimeDelta::seconds(1),
        reconcile_page_size: 100,
        reconcile_page_pause: Duration::ZERO,
    };
    let mut detector = detector_with(&emulator, &outbox, "14.0", false, config);
    assert_eq!(detector.poll_once().await.unwrap(), 0, "the first poll is a silent baseline");

    // An SLP-driven backup: CREATE when the backup ends, UPDATE when its duplication does.
    let from = emulator.events().len();
    emulator.start_backup("Standard_Apps", Some("FULL")).unwrap();
    let mut records = Vec::new();
    poll_until(&mut detector, &outbox, &mut records, "the duplication's UPDATE", |records| {
        !images_of(records, &ImageOperation::Update).is_empty()
    })
    .await;
    let events = emulator.events_since(from);
    let updated = events
        .iter()
        .find_map(|event| match &event.kind {
            EventKind::ImageUpdated(image) => Some(image.clone()),
            _ => None,
        })
        .expect("the emulator journaled the duplication as an image update");
    assert_eq!(updated.copies.len(), 2);
    let update = &images_of(&records, &ImageOperation::Update)[0];
    assert_eq!(
        (update.backup_id.as_str(), update.client_type.as_str()),
        (updated.backup_id.as_str(), "STANDARD")
    );
    assert_eq!(images_of(&records, &ImageOperation::Create)[0].backup_id, updated.backup_id);
    let duplicate = jobs_of(&records)
        .into_values()
        .flatten()
        .find(|job| job.job_type.as_str() == "DUPLICATE" && job.state == JobState::Done)
        .expect("the DUPLICATE job's own records");
    assert_eq!(duplicate.status, 0);

    // Expiring it: the IMAGEDELETE job names it, and the check finds it gone.
    emulator.expire_image(&updated.backup_id).unwrap();
    let mut records = Vec::new();
    poll_until(&mut detector, &outbox, &mut records, "the DELETE", |records| {
        !images_of(records, &ImageOperation::Delete).is_empty()
    })
    .await;
    let delete = &images_of(&records, &ImageOperation::Delete)[0];
    assert_eq!(delete.backup_id, updated.backup_id);
    assert_eq!(delete.backup_time, updated.backup_time);
}

/// A catalog many pages long is reconciled page by page: the baseline remembers every image and reports
/// none; a later reconciliation (a new detector: its first poll reconciles) reports exactly the images
/// deleted meanwhile, wherever they were in the catalog, and nothing else.
#[tokio::test]
async fn a_catalog_of_many_pages_is_reconciled_page_by_page() {
    let emulator = Emulator::start(EmulatorConfig::for_tests()).await.unwrap();
    let held = emulator.add_catalog_images(250).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outbox = outbox_at(dir.path());
    let config = |page_size| DetectorConfig {
        poll_interval: Duration::from_millis(100),
        reconcile_interval: Duration::from_secs(3600),
        job_overlap: chrono::TimeDelta::minutes(5),
        image_lookback: chrono::TimeDelta::hours(6),
        reconcile_page_size: page_size,
        reconcile_page_pause: Duration::ZERO,
    };
    let mut detector = detector_with(&emulator, &outbox, "9.0", false, config(7));
    assert_eq!(detector.poll_once().await.unwrap(), 0, "the first poll is a silent baseline");
    assert!(drain(&outbox).is_empty());
    assert_eq!(outbox.detect(|detection| detection.images()).unwrap().len(), held);

    let ids = emulator.image_ids();
    let expired: Vec<String> =
        [0, ids.len() / 2, ids.len() - 1].iter().map(|&index| ids[index].clone()).collect();
    for backup_id in &expired {
        emulator.expire_image(backup_id).unwrap();
    }
    let mut detector = detector_with(&emulator, &outbox, "9.0", false, config(11));
    detector.poll_once().await.unwrap();
    let records = drain(&outbox);
    let mut deleted: Vec<String> =
        images_of(&records, &ImageOperation::Delete).into_iter().map(|image| image.backup_id).collect();
    deleted.sort();
    let mut expected = expired.clone();
    expected.sort();
    assert_eq!(deleted, expected);
    for operation in [ImageOperation::Create, ImageOperation::Update, ImageOperation::NoLocalCopyAvailable] {
        assert!(images_of(&records, &operation).is_empty(), "{operation:?} in {records:?}");
    }
    assert_eq!(outbox.detect(|detection| detection.images()).unwrap().len(), held - expired.len());
}

#[tokio::test]
async fn detector_reports_vmware_and_standard_backups_expiry_and_restore() {
    let emulator = Emulator::start(EmulatorConfig::for_tests()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outbox = outbox_at(dir.path());
    let mut detector = detector(&emulator, &outbox, "9.0", false);
    assert_eq!(detector.poll_once().await.unwrap(), 0, "the first poll is a silent baseline");
    assert!(drain(&outbox).is_empty());

    let from = emulator.events().len();
    let vmware = emulator.start_backup("VMware_Gold", None).unwrap();
    let standard = emulator.start_backup("Standard_FS", None).unwrap();
    let mut records = Vec::new();
    poll_until(&mut detector, &outbox, &mut records, "the backups' jobs and images", |records| {
        let events = emulator.events_since(from);
        all_done(records, &events)
            && images_of(records, &ImageOperation::Create).len() == image_events(&events, false).len()
    })
    .await;
    let events = emulator.events_since(from);
    assert_jobs_reported(&records, &events);
    assert_images(&records, &events, ImageOperation::Create);
    let jobs = jobs_of(&records);
    let parent = &jobs[&(vmware[0] as i64)][0];
    assert_eq!((parent.parent_job_id, parent.policy_type.as_str()), (parent.job_id, "VMWARE"));
    let children: Vec<&JobRecord> = jobs
        .values()
        .map(|j| &j[0])
        .filter(|j| j.parent_job_id == parent.job_id && j.job_id != j.parent_job_id)
        .collect();
    assert_eq!(children.len(), 3, "one child per VM");
    for job_id in &standard {
        let job = &jobs[&(*job_id as i64)][0];
        assert_eq!(
            (job.parent_job_id, job.policy_type.as_str(), job.schedule_type.as_str()),
            (job.job_id, "STANDARD", "ST_FULL")
        );
    }
    assert_eq!(images_of(&records, &ImageOperation::Create).len(), 5, "3 VMs and 2 clients");

    // Expiring an image: DELETE (found by the reconciliation, confirmed by a lookup).
    let expired = images_of(&records, &ImageOperation::Create)[0].backup_id.clone();
    let from = emulator.events().len();
    emulator.expire_image(&expired).unwrap();
    let mut records = Vec::new();
    poll_until(&mut detector, &outbox, &mut records, "the DELETE", |records| {
        !images_of(records, &ImageOperation::Delete).is_empty()
            && all_done(records, &emulator.events_since(from))
    })
    .await;
    let events = emulator.events_since(from);
    assert_images(&records, &events, ImageOperation::Delete);
    assert_eq!(images_of(&records, &ImageOperation::Delete)[0].backup_id, expired);
    assert_jobs_reported(&records, &events);

    // A restore through the REST API: its RESTORE job.
    let restore_from = images_of(&records, &ImageOperation::Delete)[0].backup_id.clone();
    let target = jobs
        .values()
        .map(|j| &j[0])
        .find(|j| {
            j.policy_type == "VMWARE"
                && j.job_id != j.parent_job_id
                && !restore_from.starts_with(&j.client_name)
        })
        .unwrap()
        .client_name
        .clone();
    let token = emulator.create_token("admin");
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(emulator.certificate_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let from = emulator.events().len();
    let response = http
        .post(format!("{}/recovery/workloads/vmware/scenarios/full-vm/recover", emulator.base_url()))
        .header("Authorization", token)
        .header("Content-Type", "application/vnd.netbackup+json;version=9.0")
        .body(serde_json::json!({"data": {"type": "recoveryRequest", "attributes": {"recoveryPoint": {"client": target}}}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201, "{}", response.text().await.unwrap());
    let mut records = Vec::new();
    poll_until(&mut detector, &outbox, &mut records, "the restore job", |records| {
        all_done(records, &emulator.events_since(from))
    })
    .await;
    let events = emulator.events_since(from);
    assert_jobs_reported(&records, &events);
    let restores: Vec<JobRecord> =
        jobs_of(&records).into_values().flatten().filter(|job| job.job_type.as_str() == "RESTORE").collect();
    assert!(!restores.is_empty());
    assert!(restores.iter().all(|job| job.parent_job_id == job.job_id && job.client_name == target));
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_restarted_detector_neither_misses_nor_repeats_with_offset_pages_and_an_api_key() {
    let emulator = Emulator::start(EmulatorConfig::for_tests()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    {
        let outbox = outbox_at(dir.path());
        // A version the server refuses (406): the client steps down to 8.0, offset pages.
        let mut detector = detector(&emulator, &outbox, "99.0", true);
        assert_eq!(detector.poll_once().await.unwrap(), 0);
    }
    let from = emulator.events().len();
    emulator.start_backup("Standard_DB", None).unwrap();
    emulator.start_backup("Standard_FS", None).unwrap();
    let mut records = Vec::new();
    // First life: until at least one job is seen, then the service "stops" mid-stream.
    {
        let outbox = outbox_at(dir.path());
        let mut detector = detector(&emulator, &outbox, "8.0", true);
        poll_until(&mut detector, &outbox, &mut records, "a first sighting", |records| !records.is_empty())
            .await;
    }
    // Second life, from the same database.
    let outbox = outbox_at(dir.path());
    let mut detector = detector(&emulator, &outbox, "8.0", true);
    poll_until(&mut detector, &outbox, &mut records, "every job done and every image", |records| {
        let events = emulator.events_since(from);
        all_done(records, &events)
            && images_of(records, &ImageOperation::Create).len() == image_events(&events, false).len()
    })
    .await;
    // A few more polls add nothing.
    for _ in 0..3 {
        detector.poll_once().await.unwrap();
    }
    records.extend(drain(&outbox));
    let events = emulator.events_since(from);
    assert_jobs_reported(&records, &events);
    assert_images(&records, &events, ImageOperation::Create);
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_full_outbox_holds_detection_and_catches_up_in_order() {
    let emulator = Emulator::start(EmulatorConfig::for_tests()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config =
        OutboxConfig { max_records: 2, batch_size: 50, max_unacked: 1000, ..OutboxConfig::default() };
    let outbox =
        Arc::new(Outbox::open(&dir.path().join("n.sqlite3"), config, NotifyMetrics::default()).unwrap());
    outbox.sync_groups(&[ConfiguredGroup::new(GROUP, 0)]).unwrap();
    let mut detector = detector(&emulator, &outbox, "9.0", false);
    detector.poll_once().await.unwrap();
    let from = emulator.events().len();

    // A first backup, finished before the next poll: an empty outbox takes what is appended first, even past
    // the cap; a later append in the same poll may already be refused.
    emulator.start_backup("Standard_FS", None).unwrap();
    wait_until_jobs_done(&emulator, from).await;
    match detector.poll_once().await {
        Ok(_) | Err(DetectError::Outbox(nbwss_service::notify::OutboxError::Full { .. })) => {}
        Err(error) => panic!("{error}"),
    }

    // A second finished backup while records are held: refused, nothing dropped.
    let second = emulator.events().len();
    emulator.start_backup("Standard_DB", None).unwrap();
    wait_until_jobs_done(&emulator, second).await;
    let refusal = detector.poll_once().await;
    assert!(
        matches!(refusal, Err(DetectError::Outbox(nbwss_service::notify::OutboxError::Full { .. }))),
        "the cap of 2 refuses new records while records are held: {refusal:?}"
    );
    assert!(outbox.metrics().refused_records.get() > 0);

    // The endpoint acknowledges slowly, one message per poll; detection catches up with every job.
    let deadline = Instant::now() + DEADLINE;
    let mut records = Vec::new();
    while !all_done(&records, &emulator.events_since(from)) {
        assert!(Instant::now() < deadline, "timed out; records: {records:#?}");
        if let Some(message) = outbox.next_message(GROUP).unwrap() {
            records.extend(records_of(&message.text));
            outbox.ack(GROUP, &message.id).unwrap();
        }
        match detector.poll_once().await {
            Ok(_) | Err(DetectError::Outbox(nbwss_service::notify::OutboxError::Full { .. })) => {}
            Err(error) => panic!("{error}"),
        }
    }
    assert_jobs_reported(&records, &emulator.events_since(from));
    emulator.shutdown().await;
}

/// Waits until every job the emulator created since journal position `from` is done.
async fn wait_until_jobs_done(emulator: &EmulatorHandle, from: usize) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let events = emulator.events_since(from);
        let done: Vec<u64> = events
            .iter()
            .filter_map(|event| match &event.kind {
                EventKind::JobDone(summary) => Some(summary.job_id),
                _ => None,
            })
            .collect();
        let created = created_jobs(&events);
        if !created.is_empty() && created.iter().all(|job| done.contains(job)) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for the emulator's jobs to finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn delivery_resends_the_same_id_until_acknowledged_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let timing =
        DeliveryTiming { scheduled_rate: Duration::from_millis(300), send_timeout: Duration::from_secs(2) };
    let job = crate::util::job_record;
    let first_id = {
        let outbox = outbox_at(dir.path());
        outbox.append(&[job(1), job(2)]).unwrap();
        let (delivery, _handle) = Delivery::new(Arc::clone(&outbox), GROUP, timing);
        let (sink, mut endpoint) = tokio::sync::mpsc::channel::<String>(16);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(delivery.run(sink, cancel.clone()));
        // An endpoint that never acknowledges gets the same message again after the scheduled rate.
        let first = endpoint.recv().await.unwrap();
        let sent_at = Instant::now();
        let again = endpoint.recv().await.unwrap();
        assert!(sent_at.elapsed() >= Duration::from_millis(250), "resent too early");
        assert_eq!(again, first, "same id and payload");
        cancel.cancel();
        task.await.unwrap().unwrap();
        Codec::default().decode(&first).unwrap().id
    };
    // After a restart the same message goes out first, then new records; acknowledgements empty the outbox.
    let outbox = outbox_at(dir.path());
    outbox.append(&[job(3)]).unwrap();
    let (delivery, handle) = Delivery::new(Arc::clone(&outbox), GROUP, timing);
    let (sink, mut endpoint) = tokio::sync::mpsc::channel::<String>(16);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(delivery.run(sink, cancel.clone()));
    let resent = Codec::default().decode(&endpoint.recv().await.unwrap()).unwrap();
    assert_eq!(resent.id, first_id);
    let next = Codec::default().decode(&endpoint.recv().await.unwrap()).unwrap();
    assert_ne!(next.id, first_id);
    handle.on_ack(&resent.id);
    handle.on_ack(&next.id);
    let deadline = Instant::now() + DEADLINE;
    while outbox.record_count().unwrap() > 0 {
        assert!(Instant::now() < deadline, "records not removed after acknowledgement");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = outbox.metrics();
    let group = nbwss_service::notify::GroupLabel::of(GROUP);
    assert_eq!(metrics.acknowledged.get_or_create(&group).get(), 2);
    assert!(metrics.resent.get_or_create(&group).get() >= 1);
    cancel.cancel();
    task.await.unwrap().unwrap();
}

/// The service end to end: the emulator's backup is detected, delivered over wss to an endpoint that does
/// not acknowledge at first (the same id comes again after `notification.scheduledRate`), then acknowledged,
/// which empties the outbox.
#[tokio::test]
async fn service_delivers_detected_notifications_over_wss_resending_until_acknowledged() {
    use crate::util;

    let emulator = Emulator::start(EmulatorConfig::for_tests()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = util::config(dir.path(), &emulator.base_url(), &emulator.certificate_pem());
    config.primary.credentials = Some(nbwss_service::PrimaryCredentials {
        user_name: Some("admin".into()),
        password: Some(Secret::new("password")),
        domain_type: None,
        domain_name: None,
        api_key: None,
    });
    let properties = nbwss_protocol::Properties {
        notification_scheduled_rate: Duration::from_secs(1),
        notification_poll_interval: Duration::from_millis(200),
        notification_reconcile_interval: Duration::from_secs(1),
        ..util::fast_properties()
    };
    let (service, admin) = util::start(config, properties).await;
    let endpoint = util::TestEndpoint::start(util::Mode::Valid).await;
    util::add(&admin, &endpoint, "endpoint1", "group1", 1, "token1").await;
    let peer = endpoint.next_peer().await;

    // Let the baseline pass before the backup starts, so that the backup is news.
    let outbox_path = dir.path().join(nbwss_service::notify::OUTBOX_FILE);
    util::wait_until("the detector's baseline", || {
        let outbox_path = outbox_path.clone();
        async move {
            let outbox =
                Outbox::open(&outbox_path, OutboxConfig::default(), NotifyMetrics::default()).unwrap();
            outbox.detect(|detection| detection.watermark("images.backupTime")).unwrap().is_some()
        }
    })
    .await;
    let from = emulator.events().len();
    emulator.start_backup("Standard_FS", None).unwrap();

    // The first NOTIFICATION REQUEST is not acknowledged until it comes again, same id and payload, after
    // the scheduled rate; every other message is acknowledged at once. Collect until every job is DONE and
    // every image seen.
    let codec = Codec::default();
    let ack = |id: &str| codec.encode(&nbwss_protocol::Message::with_id(id, Body::notification_ack()));
    let first = peer.recv().await;
    let first_at = Instant::now();
    let Body::NotificationRequest(_) = &first.body else { panic!("expected a notification, got {first:?}") };
    let mut records = records_of(&codec.encode(&first));
    let mut ids = vec![first.id.clone()];
    let mut first_resent = false;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let events = emulator.events_since(from);
        if first_resent
            && all_done(&records, &events)
            && images_of(&records, &ImageOperation::Create).len() == image_events(&events, false).len()
        {
            break;
        }
        assert!(Instant::now() < deadline, "timed out; resent: {first_resent}; records: {records:#?}");
        let message = peer.recv().await;
        let Body::NotificationRequest(_) = &message.body else { continue };
        if message.id == first.id {
            assert_eq!(message, first, "resent with the same id and payload");
            assert!(
                first_at.elapsed() >= Duration::from_millis(900),
                "resent before notification.scheduledRate"
            );
            first_resent = true;
        } else if !ids.contains(&message.id) {
            ids.push(message.id.clone());
            records.extend(records_of(&codec.encode(&message)));
        }
        if message.id != first.id || first_resent {
            peer.send_text(&ack(&message.id));
        }
    }
    let events = emulator.events_since(from);
    assert_jobs_reported(&records, &events);
    assert_images(&records, &events, ImageOperation::Create);

    // Acknowledged records leave the outbox.
    util::wait_until("an empty outbox", || {
        let outbox_path = outbox_path.clone();
        async move {
            let outbox =
                Outbox::open(&outbox_path, OutboxConfig::default(), NotifyMetrics::default()).unwrap();
            outbox.record_count().unwrap() == 0
        }
    })
    .await;
    let metrics = service.metrics().encode();
    assert!(metrics.contains("nbwss_notification_resent_total{group=\"group1\"}"), "{metrics}");
    service.shutdown().await;
    emulator.shutdown().await;
}

/// Local ingest: records posted to the admin API, and records written into the outbox file by another
/// process (`nbwss notify`), are delivered in order; invalid records and calls without the admin key are
/// refused.
#[tokio::test]
async fn ingested_records_are_validated_and_delivered_in_order() {
    use crate::util;

    let util::OneGroup { _dir, service, endpoint: _endpoint, peer, outbox: outside, .. } =
        util::OneGroup::start(nbwss_protocol::Properties {
            notification_scheduled_rate: Duration::from_secs(1),
            ..util::fast_properties()
        })
        .await;

    let (http, url) = util::ingest_client(&service);
    let job = r#"{"scheduleType":"ST_FULL","clientName":"m1","status":0,"startTime":1459829674,"state":"ACTIVE",
        "policyName":"vmware2","parentJobId":144,"jobId":144,"policyType":"VMWARE","jobType":"BACKUP"}"#;
    let post = |body: String, key: Option<&str>| {
        let mut request = http.post(&url).body(body);
        if let Some(key) = key {
            request = request.header("X-NBWSS-Admin-Key", key);
        }
        request.send()
    };
    let refused = post(job.to_owned(), None).await.unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let invalid = post(job.replace("ACTIVE", "RUNNING"), Some(service.admin_key())).await.unwrap();
    assert_eq!(invalid.status().as_u16(), 400);
    assert!(invalid.text().await.unwrap().contains("state RUNNING"));
    let created = post(job.to_owned(), Some(service.admin_key())).await.unwrap();
    assert_eq!(created.status().as_u16(), 201);

    // What `nbwss notify` does: append to the outbox file from outside the service.
    let image = r#"{"clientType":"STANDARD","clientName":"localhost","backupTime":1458601200,
        "createdTime":1459832492,"operationId":"DELETE","backupId":"localhost_1458601200"}"#;
    outside.append(&nbwss_service::notify::parse_records(image).unwrap()).unwrap();

    let codec = Codec::default();
    let mut records = Vec::new();
    while records.len() < 2 {
        let message = peer.recv().await;
        let Body::NotificationRequest(_) = &message.body else { continue };
        records.extend(records_of(&codec.encode(&message)));
        peer.send_text(
            &codec.encode(&nbwss_protocol::Message::with_id(message.id, Body::notification_ack())),
        );
    }
    assert_eq!(records.len(), 2);
    assert!(matches!(&records[0], Record::Job(job) if job.job_id == 144 && job.policy_type == "VMWARE"));
    assert!(matches!(&records[1], Record::Image(image) if image.operation_id == ImageOperation::Delete));
    util::wait_until("an empty outbox", || async { outside.record_count().unwrap() == 0 }).await;
    service.shutdown().await;
}

/// An endpoint outage: what was sent and not acknowledged is sent again first, with the same ids, when the
/// endpoint is back, then the backlog follows in detection order; the window bounds what is out at once.
#[tokio::test]
async fn after_an_endpoint_outage_the_feed_catches_up_in_order() {
    use crate::util;

    let util::OneGroup { _dir, service, endpoint, peer: first_peer, outbox, .. } =
        util::OneGroup::start(nbwss_protocol::Properties {
            notification_scheduled_rate: Duration::from_secs(30),
            notification_batch_size: 3,
            notification_max_unacked: 2,
            ..util::fast_properties()
        })
        .await;
    let job = crate::util::job_record;
    outbox.append(&(1..=10).map(job).collect::<Vec<_>>()).unwrap();

    // The window: two messages of three records, never acknowledged; then the endpoint goes away.
    let codec = Codec::default();
    let unacked = [first_peer.recv().await, first_peer.recv().await];
    let unacked_ids: Vec<String> = unacked.iter().map(|message| message.id.clone()).collect();
    first_peer.close(1001);
    outbox.append(&(11..=20).map(job).collect::<Vec<_>>()).unwrap();

    // Back: the two unacknowledged messages first, same ids and payloads, then the rest in order.
    let peer = endpoint.next_peer().await;
    let mut messages = Vec::new();
    let mut job_ids = Vec::new();
    while job_ids.len() < 20 {
        let message = peer.recv().await;
        let Body::NotificationRequest(_) = &message.body else { continue };
        if !messages.iter().any(|seen: &nbwss_protocol::Message| seen.id == message.id) {
            job_ids.extend(records_of(&codec.encode(&message)).into_iter().map(|record| match record {
                Record::Job(job) => job.job_id,
                Record::Image(image) => panic!("unexpected {image:?}"),
            }));
            messages.push(message.clone());
        }
        peer.send_text(
            &codec.encode(&nbwss_protocol::Message::with_id(message.id, Body::notification_ack())),
        );
    }
    assert_eq!(messages[0], unacked[0]);
    assert_eq!(messages[1], unacked[1]);
    assert_eq!(messages.iter().take(2).map(|m| m.id.clone()).collect::<Vec<_>>(), unacked_ids);
    assert_eq!(job_ids, (1..=20).collect::<Vec<i64>>(), "every record once, in detection order");
    util::wait_until("an empty outbox", || async { outbox.record_count().unwrap() == 0 }).await;
    service.shutdown().await;
}

/// A restart of the whole service: an unacknowledged message goes out again from the new process with the
/// same id and payload, before anything newer.
#[tokio::test]
async fn a_restarted_service_resends_the_same_message() {
    use crate::util;

    let util::OneGroup { _dir, config, properties, service, endpoint, peer, outbox, .. } =
        util::OneGroup::start(nbwss_protocol::Properties {
            notification_scheduled_rate: Duration::from_secs(30),
            ..util::fast_properties()
        })
        .await;
    let image = util::image_record_json;
    outbox.append(&nbwss_service::notify::parse_records(&image(1_700_000_000)).unwrap()).unwrap();
    let sent = peer.recv().await;
    service.shutdown().await;

    let (service, _admin) = util::start(config, properties).await;
    outbox.append(&nbwss_service::notify::parse_records(&image(1_700_000_100)).unwrap()).unwrap();
    let peer = endpoint.next_peer().await;
    let codec = Codec::default();
    let again = loop {
        let message = peer.recv().await;
        if let Body::NotificationRequest(_) = &message.body {
            break message;
        }
    };
    assert_eq!(again, sent, "same id and payload after the restart");
    peer.send_text(
        &codec.encode(&nbwss_protocol::Message::with_id(again.id.clone(), Body::notification_ack())),
    );
    let newer = peer.recv().await;
    assert_ne!(newer.id, sent.id);
    assert!(
        matches!(&records_of(&codec.encode(&newer))[0], Record::Image(image) if image.backup_time == 1_700_000_100)
    );
    peer.send_text(&codec.encode(&nbwss_protocol::Message::with_id(newer.id, Body::notification_ack())));
    util::wait_until("an empty outbox", || async { outbox.record_count().unwrap() == 0 }).await;
    service.shutdown().await;
}

/// D11 against an endpoint written from the guide alone: whatever the acknowledgement's payload (`[]`,
/// `{}`, an object, `null`, none) and even with a malformed envelope past its id, a NOTIFICATION RESPONSE
/// with the request's id acknowledges it: the message leaves the outbox and is not sent again.
#[tokio::test]
async fn every_acknowledgement_shape_stops_the_resends() {
    use crate::util;

    let util::OneGroup { _dir, service, endpoint: _endpoint, peer, outbox, .. } =
        util::OneGroup::start(nbwss_protocol::Properties {
            notification_scheduled_rate: Duration::from_secs(1),
            ..util::fast_properties()
        })
        .await;
    let acknowledgements: [fn(&str) -> String; 7] = [
        |id| {
            format!(
                r#"{{"version":"1.0","id":"{id}","type":"NOTIFICATION","subType":"RESPONSE","timeStamp":1,"payload":[]}}"#
            )
        },
        |id| {
            format!(
                r#"{{"version":"1.0","id":"{id}","type":"NOTIFICATION","subType":"RESPONSE","timeStamp":1,"payload":{{}}}}"#
            )
        },
        |id| {
            format!(
                r#"{{"version":"1.0","id":"{id}","type":"NOTIFICATION","subType":"RESPONSE","timeStamp":1,"payload":{{"status":"RECEIVED"}}}}"#
            )
        },
        |id| {
            format!(
                r#"{{"version":"1.0","id":"{id}","type":"NOTIFICATION","subType":"RESPONSE","timeStamp":1,"payload":null}}"#
            )
        },
        |id| {
            format!(
                r#"{{"version":"1.0","id":"{id}","type":"NOTIFICATION","subType":"RESPONSE","timeStamp":1}}"#
            )
        },
        |id| {
            format!(
                r#"{{"id":"{id}","type":"NOTIFICATION","subType":"RESPONSE","timeStamp":"now","payload":{{}}}}"#
            )
        },
        |id| {
            format!(
                r#"{{"version":"2.0","id":"{id}","type":"NOTIFICATION","subType":"RESPONSE","timeStamp":1,"payload":[]}}"#
            )
        },
    ];
    let image = util::image_record_json;
    let mut acknowledged: Vec<String> = Vec::new();
    for (index, acknowledgement) in acknowledgements.iter().enumerate() {
        let backup_time = 1_700_000_000 + index as i64;
        outbox.append(&nbwss_service::notify::parse_records(&image(backup_time)).unwrap()).unwrap();
        let message = loop {
            let message = peer.recv().await;
            if let Body::NotificationRequest(_) = &message.body {
                break message;
            }
        };
        assert!(!acknowledged.contains(&message.id), "acknowledged message {} was sent again", message.id);
        let records = records_of(&Codec::default().encode(&message));
        assert!(matches!(&records[..], [Record::Image(image)] if image.backup_time == backup_time));
        peer.send_text(&acknowledgement(&message.id));
        acknowledged.push(message.id);
        util::wait_until(&format!("acknowledgement {index} taken"), || async {
            outbox.record_count().unwrap() == 0
        })
        .await;
    }
    let metrics = service.metrics().encode();
    assert!(metrics.contains("nbwss_notification_acknowledged_total{group=\"group1\"} 7"), "{metrics}");
    assert!(peer.is_open(), "no acknowledgement shape closes the connection");
    service.shutdown().await;
}

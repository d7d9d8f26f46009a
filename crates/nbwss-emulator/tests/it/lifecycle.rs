//! The job engine under the clock multiplier: backup → images → expire → restore, replicas, failures,
//! background activity, and the journal.

use nbwss_emulator::{EmulatorConfig, EmulatorEvent, EventKind};
use serde_json::{json, Value};

use crate::util::{encode, eventually, Server};

async fn wait_done(server: &Server, token: &str, job_id: &str) -> Value {
    eventually(&format!("job {job_id} to be done"), || async {
        let job = server.get(&format!("/admin/jobs/{job_id}"), token).await.json();
        (job["data"]["attributes"]["state"] == "DONE").then(|| job["data"]["attributes"].clone())
    })
    .await
}

/// The journal's events about one job, as (kind, state, status).
fn job_events(events: &[EmulatorEvent], job_id: u64) -> Vec<(&'static str, String, i64)> {
    events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::JobCreated(job) if job.job_id == job_id => {
                Some(("created", job.state.clone(), job.status))
            }
            EventKind::JobStateChanged(job) if job.job_id == job_id => {
                Some(("changed", job.state.clone(), job.status))
            }
            EventKind::JobDone(job) if job.job_id == job_id => Some(("done", job.state.clone(), job.status)),
            _ => None,
        })
        .collect()
}

fn position(events: &[EmulatorEvent], predicate: impl Fn(&EventKind) -> bool) -> Option<usize> {
    events.iter().position(|event| predicate(&event.kind))
}

#[tokio::test]
async fn backup_images_expire_and_restore() {
    let server = Server::start().await;
    let token = server.login().await;
    let before = server.handle.now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();

    // A Standard policy runs one job per client, each its own parent.
    let request = json!({"data": {"type": "backupRequest", "attributes": {"policyName": "Standard_FS", "scheduleName": "FULL"}}});
    let reply = server.call("POST", "/admin/manual-backup", &token, &request).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let started = reply.json()["data"].as_array().unwrap().clone();
    assert_eq!(started.len(), 2);
    for entry in &started {
        assert_eq!(entry["type"], "job");
        assert_eq!(entry["id"], entry["attributes"]["jobId"].to_string());
    }
    let mut backup_ids = Vec::new();
    for entry in &started {
        let id = entry["id"].as_str().unwrap();
        let job = wait_done(&server, &token, id).await;
        assert_eq!(job["status"], 0);
        assert_eq!(job["parentJobId"], job["jobId"]);
        assert_eq!(job["jobType"], "BACKUP");
        assert_eq!(job["jobSubType"], "IMMEDIATE");
        assert_eq!(job["percentComplete"], 100);
        assert!(job["kilobytesTransferred"].as_i64().unwrap() > 0);
        let backup_id = job["backupId"].as_str().unwrap().to_owned();
        let start = chrono::DateTime::parse_from_rfc3339(job["startTime"].as_str().unwrap()).unwrap();
        assert_eq!(backup_id, format!("{}_{}", job["clientName"].as_str().unwrap(), start.timestamp()));
        let image = server.get(&format!("/catalog/images/{backup_id}"), &token).await.json();
        assert_eq!(image["data"]["attributes"]["jobId"], job["jobId"]);
        assert_eq!(image["data"]["attributes"]["numCopies"], 1);
        backup_ids.push(backup_id.clone());
        // The journal shows QUEUED → ACTIVE → DONE with the image before the end.
        let events = server.handle.events();
        let job_id = job["jobId"].as_u64().unwrap();
        let history = job_events(&events, job_id);
        assert_eq!(history.first().unwrap(), &("created", "QUEUED".to_owned(), 0));
        assert!(history.contains(&("changed", "ACTIVE".to_owned(), 0)));
        assert_eq!(history.last().unwrap(), &("done", "DONE".to_owned(), 0));
        let created =
            position(&events, |k| matches!(k, EventKind::ImageCreated(i) if i.backup_id == backup_id))
                .unwrap();
        let done = position(&events, |k| matches!(k, EventKind::JobDone(j) if j.job_id == job_id)).unwrap();
        assert!(created < done);
    }
    // Both jobs show up when filtering on lastUpdateTime.
    let recent = server.jobs(&token, &format!("lastUpdateTime ge {before} and jobType eq 'BACKUP'")).await;
    assert_eq!(recent.len(), 2);

    // Expiring an image removes it and runs an IMAGEDELETE job.
    let expired = &backup_ids[0];
    let reply = server
        .send("POST", &format!("/catalog/images/{expired}/expire"), &[("Authorization", &token)], None)
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    server.get(&format!("/catalog/images/{expired}"), &token).await.assert_error(404);
    server
        .send("POST", &format!("/catalog/images/{expired}/expire"), &[("Authorization", &token)], None)
        .await
        .assert_error(404);
    let deletes = server.jobs(&token, &format!("jobType eq 'IMAGEDELETE' and backupId eq '{expired}'")).await;
    assert_eq!(deletes.len(), 1);
    wait_done(&server, &token, deletes[0]["id"].as_str().unwrap()).await;
    assert!(position(
        &server.handle.events(),
        |k| matches!(k, EventKind::ImageDeleted(i) if &i.backup_id == expired)
    )
    .is_some());
    // The bulk call expires the other.
    let bulk = json!({"data": {"type": "expireImagesRequest", "attributes": {"backupIds": [backup_ids[1]]}}});
    assert_eq!(server.call("POST", "/catalog/expire-images", &token, &bulk).await.status, 204);
    server.get(&format!("/catalog/images/{}", backup_ids[1]), &token).await.assert_error(404);

    // A VMware policy runs a parent job plus one child per VM; the full schedule replicates.
    let request = json!({"data": {"type": "backupRequest", "attributes": {"policyName": "VMware_Gold"}}});
    let reply = server.call("POST", "/admin/manual-backup", &token, &request).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let parent_id = reply.json()["data"][0]["id"].as_str().unwrap().to_owned();
    let parent = wait_done(&server, &token, &parent_id).await;
    assert_eq!(parent["status"], 0);
    assert_eq!(parent["parentJobId"], parent["jobId"]);
    let children = server.jobs(&token, &format!("parentJobId eq {parent_id} and jobId ne {parent_id}")).await;
    assert_eq!(children.len(), 3);
    let mut vm_image = String::new();
    for child in &children {
        let attributes = &child["attributes"];
        assert_eq!(attributes["state"], "DONE");
        assert_eq!(attributes["policyType"], "VMWARE");
        vm_image = attributes["backupId"].as_str().unwrap().to_owned();
        let image = server.get(&format!("/catalog/images/{vm_image}"), &token).await.json();
        let copies = image["data"]["attributes"]["copies"].as_array().unwrap().clone();
        assert_eq!(copies.len(), 2);
        assert_eq!(copies[0]["copyType"], "LOCAL");
        assert_eq!(copies[1]["copyType"], "REPLICA");
        assert_ne!(copies[0]["expiration"], copies[1]["expiration"]);
    }
    let parent_done = position(
        &server.handle.events(),
        |k| matches!(k, EventKind::JobDone(j) if j.job_id.to_string() == parent_id),
    )
    .unwrap();
    for child in &children {
        let child_id = child["attributes"]["jobId"].as_u64().unwrap();
        let child_done =
            position(&server.handle.events(), |k| matches!(k, EventKind::JobDone(j) if j.job_id == child_id))
                .unwrap();
        assert!(child_done < parent_done);
    }

    // Recovery creates a RESTORE job.
    let client = vm_image.rsplit_once('_').unwrap().0.to_owned();
    let recovery = json!({"data": {"type": "recoveryRequest", "attributes": {
        "recoveryPoint": {"client": client, "backupId": vm_image},
        "recoveryObject": {"vmDisplayName": "restored", "vmEnvironment": {"vCenter": "vcenter01.example.com"}},
        "recoveryOptions": {"recoveryHost": "nbu-media01.example.com", "overwriteExistingVm": true}}}});
    let check = server
        .call("POST", "/recovery/workloads/vmware/scenarios/full-vm/pre-recovery-check", &token, &recovery)
        .await;
    assert_eq!(check.status, 200, "{}", check.text);
    assert_eq!(check.json()["data"][0]["attributes"]["result"], "PASSED");
    let reply =
        server.call("POST", "/recovery/workloads/vmware/scenarios/full-vm/recover", &token, &recovery).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["data"]["type"], "recoveryResponse");
    let restore_id = body["data"]["id"].as_u64().expect("the recovery job id is a number");
    assert!(reply.header("location").unwrap().ends_with(&format!("/admin/jobs/{restore_id}")));
    // The job's relationship sits beside data, its links plain strings.
    let job = &body["relationships"]["recoveryJob"];
    assert_eq!(job["data"]["id"], restore_id);
    assert!(job["links"]["self"].as_str().unwrap().ends_with(&format!("/admin/jobs/{restore_id}")));
    let restore = wait_done(&server, &token, &restore_id.to_string()).await;
    assert_eq!(restore["jobType"], "RESTORE");
    assert_eq!(restore["status"], 0);
    assert_eq!(restore["restoreBackupIDs"], vm_image.as_str());
    assert_eq!(restore["parentJobId"], restore_id);

    let unknown =
        json!({"data": {"type": "recoveryRequest", "attributes": {"recoveryPoint": {"client": "nobody"}}}});
    server
        .call("POST", "/recovery/workloads/vmware/scenarios/full-vm/recover", &token, &unknown)
        .await
        .assert_error(404);
    let malformed =
        json!({"data": {"type": "recoveryRequest", "attributes": {"recoveryPoint": {"client": 7}}}});
    server
        .call("POST", "/recovery/workloads/vmware/scenarios/full-vm/recover", &token, &malformed)
        .await
        .assert_error(400);
    server
        .call("POST", "/recovery/workloads/vmware/scenarios/full-vm/recover", &token, &json!({}))
        .await
        .assert_error(400);
}

#[tokio::test]
async fn an_image_loses_its_local_copy_before_its_replica() {
    let config =
        EmulatorConfig { clock_multiplier: 36_000.0, seed_data: false, ..EmulatorConfig::for_tests() };
    let server = Server::start_with(config).await;
    let token = server.login().await;
    // An empty primary server has no storage: configure a disk storage unit and a replication target.
    configure_storage(&server, &token, &[("stu-disk-01", "/disk01"), ("replica-dr-site", "/disk02")]).await;
    let policy = json!({"data": {"type": "policy", "id": "short", "attributes": {"policy": {
        "policyType": "Standard",
        "clients": [{"hostName": "client09.example.com", "hardware": "Linux", "OS": "Debian"}],
        "schedules": [{"scheduleName": "FULL", "backupType": "Full Backup", "frequencySeconds": 3600,
            "backupCopies": {"copies": [
                {"retentionPeriod": {"value": 1, "unit": "HOURS"}, "storage": "stu-disk-01"},
                {"retentionPeriod": {"value": 3, "unit": "HOURS"}, "storage": "replica-dr-site"}]}}],
        "backupSelections": {"selections": ["/srv"]}}}}});
    assert_eq!(server.call("POST", "/config/policies", &token, &policy).await.status, 204);
    let ids = server.handle.start_backup("short", Some("FULL")).unwrap();
    assert_eq!(ids.len(), 1);
    let events = eventually("the image to be deleted", || async {
        let events = server.handle.events();
        events.iter().any(|e| matches!(e.kind, EventKind::ImageDeleted(_))).then_some(events)
    })
    .await;
    let created = position(&events, |k| matches!(k, EventKind::ImageCreated(_))).unwrap();
    let lost = position(&events, |k| matches!(k, EventKind::ImageLostLastLocalCopy(_))).unwrap();
    let deleted = position(&events, |k| matches!(k, EventKind::ImageDeleted(_))).unwrap();
    assert!(created < lost && lost < deleted);
    let EventKind::ImageLostLastLocalCopy(image) = &events[lost].kind else { unreachable!() };
    assert_eq!(image.copies.len(), 1);
    assert!(image.copies[0].replica);
    // Copies expire on the emulated clock, counted from the backup time.
    assert!(events[lost].at.timestamp() - image.backup_time >= 3600);
    assert!(events[deleted].at.timestamp() - image.backup_time >= 3 * 3600);
    assert!(events[lost].at.timestamp() - image.backup_time < 3 * 3600);
    let deletes = eventually("the IMAGEDELETE job to finish", || async {
        let jobs = server.jobs(&token, "jobType eq 'IMAGEDELETE' and state eq 'DONE'").await;
        (!jobs.is_empty()).then_some(jobs)
    })
    .await;
    assert_eq!(deletes[0]["attributes"]["backupId"], image.backup_id.as_str());
    assert!(server.handle.image_ids().is_empty());
}

/// Creates an AdvancedDisk storage server on the media server, and a disk pool and a storage unit for each
/// (unit, volume) pair, as `configure_storage_unit_end_to_end.py` does.
async fn configure_storage(server: &Server, token: &str, units: &[(&str, &str)]) {
    let sts = json!({"data": {"type": "storageServer", "attributes": {"name": "nbu-media01.example.com",
        "storageCategory": "ADVANCED_DISK", "mediaServerDetails": {"name": "nbu-media01.example.com"}}}});
    let reply = server.call("POST", "/storage/storage-servers", token, &sts).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let sts_id = reply.json()["data"]["id"].as_str().unwrap().to_owned();
    for (unit, volume) in units {
        let dp = json!({"data": {"type": "diskPool", "attributes": {"name": format!("dp-{unit}"),
            "diskVolumes": [{"name": volume}]},
            "relationships": {"storageServers": {"data": [{"type": "storageServer", "id": sts_id}]}}}});
        let reply = server.call("POST", "/storage/disk-pools", token, &dp).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        let dp_id = reply.json()["data"]["id"].as_str().unwrap().to_owned();
        let stu = json!({"data": {"type": "storageUnit", "attributes": {"name": unit},
            "relationships": {"diskPool": {"data": {"type": "diskPool", "id": dp_id}}}}});
        let reply = server.call("POST", "/storage/storage-units", token, &stu).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
    }
}

#[tokio::test]
async fn a_copy_expired_by_hand_can_leave_only_the_replica() {
    let server = Server::start().await;
    let token = server.login().await;
    let ids = server.handle.start_backup("VMware_Gold", Some("FULL")).unwrap();
    wait_done(&server, &token, &ids[0].to_string()).await;
    let children = server.jobs(&token, &format!("parentJobId eq {} and jobId ne {}", ids[0], ids[0])).await;
    let backup_id = children[0]["attributes"]["backupId"].as_str().unwrap().to_owned();
    let expire_local = json!({"data": {"attributes": {"copyNumber": 1}}});
    let reply =
        server.call("POST", &format!("/catalog/images/{backup_id}/expire"), &token, &expire_local).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    let image = server.get(&format!("/catalog/images/{backup_id}"), &token).await.json();
    assert_eq!(image["data"]["attributes"]["numCopies"], 1);
    assert_eq!(image["data"]["attributes"]["copies"][0]["copyType"], "REPLICA");
    let events = server.handle.events();
    let last_image_event = events.iter().rev().find(|event| {
        matches!(
            &event.kind,
            EventKind::ImageCreated(_)
                | EventKind::ImageUpdated(_)
                | EventKind::ImageLostLastLocalCopy(_)
                | EventKind::ImageDeleted(_)
        )
    });
    assert!(
        matches!(&last_image_event.unwrap().kind, EventKind::ImageLostLastLocalCopy(i) if i.backup_id == backup_id)
    );
    // Deleting the expired copy's data is an IMAGEDELETE job naming the image.
    let deletes =
        server.jobs(&token, &format!("jobType eq 'IMAGEDELETE' and backupId eq '{backup_id}'")).await;
    assert_eq!(deletes.len(), 1);
    server
        .call("POST", &format!("/catalog/images/{backup_id}/expire"), &token, &expire_local)
        .await
        .assert_error(404);
}

#[tokio::test]
async fn failed_backups_leave_no_image_and_raise_alerts() {
    let config = EmulatorConfig { failure_rate: 1.0, ..EmulatorConfig::for_tests() };
    let server = Server::start_with(config).await;
    let token = server.login().await;
    let images_before = server.handle.image_ids().len();
    let ids = server.handle.start_backup("Standard_DB", None).unwrap();
    let job = wait_done(&server, &token, &ids[0].to_string()).await;
    assert_ne!(job["status"], 0);
    assert_eq!(job["backupId"], "");
    assert_eq!(server.handle.image_ids().len(), images_before);
    let alerts = server.get("/manage/alerts?page[limit]=100", &token).await.json();
    let alert = alerts["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|alert| alert["attributes"]["params"]["jobId"] == ids[0].to_string().as_str())
        .expect("an alert for the failed job")
        .clone();
    // The parameters are text; the sub-category is the policy type.
    let params = &alert["attributes"]["params"];
    assert_eq!(params["status"], job["status"].to_string().as_str());
    assert_eq!(alert["attributes"]["subCategory"], "STANDARD");
    assert_eq!(params["policyName"], "Standard_DB");
    assert!(params["errorMsg"].is_string());
    assert!(params["policyType"].is_string());
    let filtered = server
        .get(
            &format!(
                "/manage/alerts?filter={}",
                encode("category eq 'JOB' and createdDateTime ge 2000-01-01T00:00:00Z")
            ),
            &token,
        )
        .await;
    assert_eq!(filtered.status, 200);
    server.get("/manage/alerts?filter=nope%20eq%201", &token).await.assert_error(400);
}

#[tokio::test]
async fn background_activity_runs_scheduled_backups() {
    let config =
        EmulatorConfig { background_activity: 6.0, clock_multiplier: 3600.0, ..EmulatorConfig::for_tests() };
    let server = Server::start_with(config).await;
    let from = server.handle.events().len();
    let job = eventually("a background backup to finish", || async {
        server.handle.events_since(from).into_iter().find_map(|event| match event.kind {
            EventKind::JobDone(job) if job.job_type == "BACKUP" => Some(job),
            _ => None,
        })
    })
    .await;
    let token = server.login().await;
    let reply = server.get(&format!("/admin/jobs/{}", job.job_id), &token).await.json();
    assert_eq!(reply["data"]["attributes"]["jobSubType"], "SCHEDULED");
}

#[tokio::test]
async fn due_schedules_start_backups() {
    let config = EmulatorConfig {
        run_schedules: true,
        seed_data: false,
        clock_multiplier: 36_000.0,
        ..EmulatorConfig::for_tests()
    };
    let server = Server::start_with(config).await;
    let token = server.login().await;
    let policy = json!({"data": {"type": "policy", "id": "hourly", "attributes": {"policy": {
        "policyType": "Standard",
        "clients": [{"hostName": "client07.example.com", "hardware": "Linux", "OS": "Debian"}],
        "schedules": [{"scheduleName": "INCR", "backupType": "Differential Incremental Backup", "frequencySeconds": 3600}]}}}});
    assert_eq!(server.call("POST", "/config/policies", &token, &policy).await.status, 204);
    let jobs = eventually("two scheduled runs", || async {
        let jobs = server.jobs(&token, "scheduleName eq 'INCR' and state eq 'DONE'").await;
        (jobs.len() >= 2).then_some(jobs)
    })
    .await;
    for job in &jobs {
        assert_eq!(job["attributes"]["jobSubType"], "SCHEDULED");
        assert_eq!(job["attributes"]["scheduleType"], "DIFFERENTIAL_INCREMENTAL_BACKUP");
    }
    let times: Vec<i64> = jobs
        .iter()
        .map(|job| {
            chrono::DateTime::parse_from_rfc3339(job["attributes"]["startTime"].as_str().unwrap())
                .unwrap()
                .timestamp()
        })
        .collect();
    assert!((times[0] - times[1]).abs() >= 3599, "{times:?}");
}

#[tokio::test]
async fn seed_data_is_deterministic_and_recent() {
    let first = Server::start_with(EmulatorConfig { seed: 7, ..EmulatorConfig::for_tests() }).await;
    let second = Server::start_with(EmulatorConfig { seed: 7, ..EmulatorConfig::for_tests() }).await;
    let other = Server::start_with(EmulatorConfig { seed: 8, ..EmulatorConfig::for_tests() }).await;
    let shape = |server: &Server| {
        server
            .handle
            .events()
            .into_iter()
            .map(|event| match event.kind {
                EventKind::JobCreated(job) => {
                    format!("job {} {} {} {}", job.job_id, job.client_name, job.policy_name, job.status)
                }
                EventKind::ImageCreated(image) => {
                    format!("image {} {}", image.client_name, image.copies.len())
                }
                other => format!("{other:?}"),
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(shape(&first), shape(&second));
    assert_ne!(shape(&first), shape(&other));
    assert!(first.handle.policy_names().len() >= 2);
    let token = first.login().await;
    let policies = first.get("/config/policies", &token).await.json();
    let types: Vec<&str> = policies["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["attributes"]["policyType"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"VMware") && types.contains(&"Standard"));
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let server = Server::start().await;
    let address = server.handle.local_addr();
    let ids = server.handle.start_backup("Standard_FS", None).unwrap();
    assert_eq!(ids.len(), 2);
    server.handle.shutdown().await;
    assert!(tokio::net::TcpStream::connect(address).await.is_err());
}

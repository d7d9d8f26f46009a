//! `/config/slps` round trips, and a backup whose policy stores to an SLP: the duplication copy appears
//! later on the emulated clock, as a DUPLICATE job and an image update in the journal.

use std::time::Duration;

use nbwss_emulator::{EmulatorConfig, EventKind};
use serde_json::{json, Value};

use crate::util::{encode, eventually, Server};

fn slp_body(name: &str, second: &str) -> Value {
    json!({"data": {"type": "slp", "id": name, "attributes": {"slpName": name, "operationList": [
        {"operationType": "BACKUP", "storage": {"name": "stu-msdp-01"}, "retentionPeriod": {"value": 1, "unit": "WEEKS"}},
        {"operationType": "DUPLICATION", "sourceOperationIndex": 1, "storage": {"name": second},
         "retentionPeriod": {"value": 3, "unit": "MONTHS"}, "retentionType": "FIXED"},
    ]}}})
}

#[tokio::test]
async fn create_read_update_version_and_delete() {
    let server = Server::start().await;
    let token = server.login().await;

    let list = server.get("/config/slps", &token).await.json();
    assert_eq!(list["data"][0]["id"], "slp-msdp-dup");
    let seed = &list["data"][0]["attributes"];
    assert_eq!(seed["operationList"][1]["operationType"], "DUPLICATION");
    assert_eq!(seed["operationList"][1]["storage"]["stype"], "AdvancedDisk");

    let reply = server.call("POST", "/config/slps", &token, &slp_body("gold-dup", "stu-disk-01")).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let created = reply.json()["data"].clone();
    assert_eq!(created["attributes"]["versionNumber"], 0);
    assert_eq!(created["attributes"]["operationList"][0]["operationIndex"], 1);
    assert!(reply.header("location").unwrap().ends_with("/config/slps/gold-dup"));
    server.call("POST", "/config/slps", &token, &slp_body("gold-dup", "stu-disk-01")).await.assert_error(409);
    let error =
        server.call("POST", "/config/slps", &token, &slp_body("bad", "stu-nope")).await.assert_error(400);
    assert!(error.to_string().contains("stu-nope"), "{error}");

    // PATCH names the operation it changes; each change is a new version, the old ones stay readable.
    let patch = json!({"data": {"type": "slp", "attributes": {"duplicationPriority": 5,
        "operationList": [{"operationIndex": 2, "retentionPeriod": {"value": 6, "unit": "MONTHS"}}]}}});
    let reply = server.call("PATCH", "/config/slps/gold-dup", &token, &patch).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let patched = reply.json()["data"]["attributes"].clone();
    assert_eq!(patched["versionNumber"], 1);
    assert_eq!(patched["duplicationPriority"], 5);
    assert_eq!(patched["operationList"][1]["retentionPeriod"]["value"], 6);
    let old = server.get("/config/slps/gold-dup/versions/0", &token).await.json();
    assert_eq!(old["data"]["attributes"]["operationList"][1]["retentionPeriod"]["value"], 3);
    server.get("/config/slps/gold-dup/versions/9", &token).await.assert_error(404);
    let bad_index =
        json!({"data": {"type": "slp", "attributes": {"operationList": [{"operationIndex": 7}]}}});
    server.call("PATCH", "/config/slps/gold-dup", &token, &bad_index).await.assert_error(400);
    let reply =
        server.call("PUT", "/config/slps/gold-dup", &token, &slp_body("gold-dup", "stu-msdp-01")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let current = server.get("/config/slps/gold-dup?meta=accessControlId", &token).await.json();
    assert_eq!(current["data"]["attributes"]["versionNumber"], 2);
    assert_eq!(current["data"]["relationships"]["versions"]["data"].as_array().unwrap().len(), 3);
    assert!(current["data"]["meta"]["accessControlId"].is_string());

    let filtered = server
        .get(&format!("/config/slps?filter={}", encode("contains(slpName,'gold')")), &token)
        .await
        .json();
    assert_eq!(filtered["data"].as_array().unwrap().len(), 1);

    // An SLP a policy stores to cannot be deleted; an unused one can.
    let error = server
        .send("DELETE", "/config/slps/slp-msdp-dup", &[("Authorization", &token)], None)
        .await
        .assert_error(409);
    assert!(error["errorMessage"].as_str().unwrap().contains("Standard_Apps"), "{error}");
    assert_eq!(
        server.send("DELETE", "/config/slps/gold-dup", &[("Authorization", &token)], None).await.status,
        204
    );
    server.get("/config/slps/gold-dup", &token).await.assert_error(404);
    server
        .send("DELETE", "/config/slps/gold-dup", &[("Authorization", &token)], None)
        .await
        .assert_error(404);
}

#[tokio::test]
async fn an_slp_backup_gets_its_duplicate_copy_later() {
    let server = Server::start().await;
    let token = server.login().await;
    let from = server.handle.events().len();
    let ids = server.handle.start_backup("Standard_Apps", Some("FULL")).unwrap();
    let job_id = ids[0];

    let backup = eventually("the backup to finish", || async {
        let job = server.get(&format!("/admin/jobs/{job_id}"), &token).await.json();
        (job["data"]["attributes"]["state"] == "DONE").then(|| job["data"]["attributes"].clone())
    })
    .await;
    let backup_id = backup["backupId"].as_str().unwrap();
    assert!(backup_id.starts_with("app01.example.com_"), "{backup}");

    // The DUPLICATE job runs after the backup, reads copy 1 and writes copy 2.
    let filter = format!("jobType eq 'DUPLICATE' and state eq 'DONE' and backupId eq '{backup_id}'");
    let duplicate = eventually("the DUPLICATE job to finish", || async {
        server.jobs(&token, &filter).await.into_iter().next()
    })
    .await;
    let attributes = &duplicate["attributes"];
    assert_eq!(attributes["backupId"], backup_id);
    assert_eq!(attributes["status"], 0);
    assert_eq!(attributes["policyName"], "SLP_slp-msdp-dup");
    assert_eq!(attributes["sourceStorageUnitName"], "stu-msdp-01");
    assert_eq!(attributes["destinationStorageUnitName"], "stu-disk-01");
    assert_eq!(attributes["copyNumber"], 2);
    assert_eq!(backup["destinationStorageUnitName"], "stu-msdp-01");

    let image = server.get(&format!("/catalog/images/{backup_id}"), &token).await.json()["data"]
        ["attributes"]
        .clone();
    assert_eq!(image["slpName"], "slp-msdp-dup");
    assert_eq!(image["slpCompleted"], 1);
    assert_eq!(image["numCopies"], 2);
    let units: Vec<&str> =
        image["copies"].as_array().unwrap().iter().map(|c| c["storageUnit"].as_str().unwrap()).collect();
    assert_eq!(units, ["stu-msdp-01", "stu-disk-01"]);

    // The journal: the image is created with one copy, then updated with two.
    let events = server.handle.events_since(from);
    let mine: Vec<(&str, usize)> = events
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::ImageCreated(image) if image.backup_id == backup_id => {
                Some(("created", image.copies.len()))
            }
            EventKind::ImageUpdated(image) if image.backup_id == backup_id => {
                Some(("updated", image.copies.len()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(mine, [("created", 1), ("updated", 2)]);
}

/// While an SLP still has copies to make it cannot be deleted, even once no policy stores to it.
#[tokio::test]
async fn an_slp_with_copies_to_make_cannot_be_deleted() {
    // A slow clock: the SLP waits 5 emulated minutes (50 s here) before it duplicates.
    let config = EmulatorConfig {
        clock_multiplier: 6.0,
        job_duration: Duration::from_secs(6),
        ..EmulatorConfig::for_tests()
    };
    let server = Server::start_with(config).await;
    let token = server.login().await;
    let ids = server.handle.start_backup("Standard_Apps", Some("INCR")).unwrap();
    eventually("the backup to finish", || async {
        let job = server.get(&format!("/admin/jobs/{}", ids[0]), &token).await.json();
        (job["data"]["attributes"]["state"] == "DONE").then_some(())
    })
    .await;
    assert_eq!(
        server
            .send("DELETE", "/config/policies/Standard_Apps", &[("Authorization", &token)], None)
            .await
            .status,
        204
    );
    let error = server
        .send("DELETE", "/config/slps/slp-msdp-dup", &[("Authorization", &token)], None)
        .await
        .assert_error(409);
    assert!(error["errorMessage"].as_str().unwrap().contains("still making copies"), "{error}");
}

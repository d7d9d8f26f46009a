//! `/storage/...` driven the way Veritas' storage recipe and snippets drive it
//! (`recipes/python/storage/configure_storage_unit_end_to_end.py`, `snippets/python/storage/*`, their
//! `sample-payloads/storage-samples/*.json`): API version 3.0 in `Content-Type`, create 201 with the
//! resource, PATCH 200 with the resource, DELETE 204; and the relations NetBackup enforces.

use serde_json::{json, Value};

use crate::util::{encode, Server};

const V3: &str = "application/vnd.netbackup+json; version=3.0";

async fn call(
    server: &Server,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> crate::util::Reply {
    let text = body.map(Value::to_string);
    server.send(method, path, &[("Content-Type", V3), ("Authorization", token)], text.as_deref()).await
}

/// The recipe's three payloads (MSDP), with the names filled in as its users do.
fn msdp_payloads(sts_id: Option<&str>, dp_id: Option<&str>) -> (Value, Value, Value) {
    let sts = json!({"data": {"type": "storageServer", "attributes": {
        "name": "nbu-primary.example.com", "storageCategory": "MSDP",
        "mediaServerDetails": {"name": "nbu-primary.example.com"}, "encryptionEnabled": true,
        "msdpAttributes": {"storagePath": "/msdp/two", "credentials": {"userName": "msdpuser", "password": "secret-pw"}}}}});
    let dp = json!({"data": {"type": "diskPool", "attributes": {"name": "msdp-dp1",
        "diskVolumes": [{"name": "PureDiskVolume"}], "maximumIoStreams": {"limitIoStreams": true, "streamsPerVolume": 2}},
        "relationships": {"storageServers": {"data": [{"type": "storageServer", "id": sts_id.unwrap_or("")}]}}}});
    let stu = json!({"data": {"type": "storageUnit", "attributes": {"name": "msdp-stu1",
        "useAnyAvailableMediaServer": true, "maxFragmentSizeMegabytes": 50000, "maxConcurrentJobs": 10, "onDemandOnly": true},
        "relationships": {"diskPool": {"data": {"type": "diskPool", "id": dp_id.unwrap_or("")}}}}});
    (sts, dp, stu)
}

#[tokio::test]
async fn the_end_to_end_recipe_then_updates_and_deletes() {
    let server = Server::start().await;
    let token = server.login().await;

    // The recipe: storage server, then disk pool, then storage unit, each 201 with JSON.
    let (sts, _, _) = msdp_payloads(None, None);
    let reply = call(&server, "POST", "/storage/storage-servers", &token, Some(&sts)).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let created = reply.json();
    let sts_id = created["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(sts_id, "PureDisk:nbu-primary.example.com");
    assert_eq!(reply.header("location").unwrap(), created["data"]["links"]["self"]["href"].as_str().unwrap());
    assert_eq!(created["data"]["attributes"]["sType"], "PureDisk");
    assert_eq!(created["data"]["attributes"]["msdpAttributes"]["storagePath"], "/msdp/two");
    assert!(!reply.text.contains("secret-pw"), "credentials are never shown: {}", reply.text);
    // One MSDP server per id: the same again is a conflict.
    call(&server, "POST", "/storage/storage-servers", &token, Some(&sts)).await.assert_error(409);

    let (_, dp, _) = msdp_payloads(Some(&sts_id), None);
    let reply = call(&server, "POST", "/storage/disk-pools", &token, Some(&dp)).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let pool = reply.json()["data"].clone();
    let dp_id = pool["id"].as_str().unwrap().to_owned();
    assert_eq!(dp_id, "PureDisk_msdp-dp1");
    assert_eq!(pool["relationships"]["storageServers"]["data"][0]["id"], sts_id.as_str());
    assert_eq!(pool["attributes"]["diskVolumes"][0]["name"], "PureDiskVolume");
    assert_eq!(pool["attributes"]["maximumIoStreams"]["streamsPerVolume"], 2);

    let (_, _, stu) = msdp_payloads(None, Some(&dp_id));
    let reply = call(&server, "POST", "/storage/storage-units", &token, Some(&stu)).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let unit = reply.json()["data"].clone();
    assert_eq!(unit["id"], "msdp-stu1");
    assert_eq!(unit["relationships"]["diskPool"]["data"]["id"], dp_id.as_str());
    assert_eq!(unit["attributes"]["storageCategory"], "MSDP");
    assert_eq!(unit["attributes"]["maxFragmentSizeMegabytes"], 50000);

    // Read back: lists, by id, and the filter common.py sends (trailing slash, raw spaces).
    let list = call(&server, "GET", "/storage/storage-units", &token, None).await.json();
    let names: Vec<&str> =
        list["data"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert!(names.contains(&"msdp-stu1") && names.contains(&"stu-disk-01"), "{names:?}");
    let found = call(&server, "GET", "/storage/storage-units/?filter=name%20eq%20'msdp-stu1'", &token, None)
        .await
        .json();
    assert_eq!(found["data"].as_array().unwrap().len(), 1);
    assert_eq!(found["data"][0]["attributes"]["instantAccessEnabled"], true);
    let by_id = call(&server, "GET", &format!("/storage/disk-pools/{dp_id}"), &token, None).await.json();
    assert_eq!(by_id["data"]["id"], dp_id.as_str());
    let server_by_id =
        call(&server, "GET", &format!("/storage/storage-servers/{sts_id}"), &token, None).await;
    assert_eq!(server_by_id.status, 200);
    let included = call(
        &server,
        "GET",
        "/storage/storage-units/msdp-stu1?include=diskPool.storageServers",
        &token,
        None,
    )
    .await
    .json();
    let kinds: Vec<&str> =
        included["included"].as_array().unwrap().iter().map(|r| r["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["diskPool", "storageServers"], "the documents type included servers storageServers");

    // The sample PATCH payloads: 200 with the updated resource.
    let patch_stu = json!({"data": {"type": "storageUnit", "attributes": {"useAnyAvailableMediaServer": true,
        "maxFragmentSizeMegabytes": 50100, "maxConcurrentJobs": 8, "onDemandOnly": true}}});
    let reply = call(&server, "PATCH", "/storage/storage-units/msdp-stu1", &token, Some(&patch_stu)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["data"]["attributes"]["maxConcurrentJobs"], 8);
    let patch_dp = json!({"data": {"type": "diskPool", "attributes": {"highWaterMark": 90, "lowWaterMark": 30,
        "maximumIoStreams": {"limitIoStreams": true, "streamsPerVolume": 100}, "diskPoolState": "DOWN"}}});
    let reply =
        call(&server, "PATCH", &format!("/storage/disk-pools/{dp_id}"), &token, Some(&patch_dp)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let attributes = &reply.json()["data"]["attributes"];
    assert_eq!(
        (attributes["highWaterMark"].clone(), attributes["diskPoolState"].clone()),
        (json!(90), json!("DOWN"))
    );
    let patch_sts = json!({"data": {"type": "storageServer", "attributes": {"msdpAttributes": {
        "credentials": {"userName": "USER_NAME", "password": "PASSWORD"}}}}});
    let reply =
        call(&server, "PATCH", &format!("/storage/storage-servers/{sts_id}"), &token, Some(&patch_sts)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["data"]["attributes"]["msdpAttributes"]["storagePath"], "/msdp/two");
    let bad = json!({"data": {"type": "storageUnit", "attributes": {"maxConcurrentJobs": "many"}}});
    let error = call(&server, "PATCH", "/storage/storage-units/msdp-stu1", &token, Some(&bad))
        .await
        .assert_error(400);
    assert!(error["attributeErrors"]["maxConcurrentJobs"].is_string(), "{error}");

    // Deleting in the wrong order is refused with the real 409s; in the right order, 204 each.
    call(&server, "DELETE", &format!("/storage/storage-servers/{sts_id}"), &token, None)
        .await
        .assert_error(409);
    call(&server, "DELETE", &format!("/storage/disk-pools/{dp_id}"), &token, None).await.assert_error(409);
    assert_eq!(call(&server, "DELETE", "/storage/storage-units/msdp-stu1", &token, None).await.status, 204);
    assert_eq!(
        call(&server, "DELETE", &format!("/storage/disk-pools/{dp_id}"), &token, None).await.status,
        204
    );
    assert_eq!(
        call(&server, "DELETE", &format!("/storage/storage-servers/{sts_id}"), &token, None).await.status,
        204
    );
    for path in [
        "/storage/storage-units/msdp-stu1".to_owned(),
        format!("/storage/disk-pools/{dp_id}"),
        format!("/storage/storage-servers/{sts_id}"),
    ] {
        call(&server, "GET", &path, &token, None).await.assert_error(404);
        call(&server, "DELETE", &path, &token, None).await.assert_error(404);
    }
}

#[tokio::test]
async fn relations_and_bad_requests() {
    let server = Server::start().await;
    let token = server.login().await;
    let (mut sts, dp, stu) = msdp_payloads(Some("PureDisk:no-such-server"), Some("PureDisk_no-such-pool"));
    call(&server, "POST", "/storage/disk-pools", &token, Some(&dp)).await.assert_error(400);
    call(&server, "POST", "/storage/storage-units", &token, Some(&stu)).await.assert_error(400);
    sts["data"]["attributes"]["mediaServerDetails"]["name"] = json!("not-a-media-server");
    let error = call(&server, "POST", "/storage/storage-servers", &token, Some(&sts)).await.assert_error(400);
    assert!(error.to_string().contains("not-a-media-server"), "{error}");
    sts["data"]["attributes"]["storageCategory"] = json!("FLOPPY");
    call(&server, "POST", "/storage/storage-servers", &token, Some(&sts)).await.assert_error(400);
    for body in ["", "{", "[]", r#"{"data": 3}"#, r#"{"data": {"type": "diskPool", "attributes": {}}}"#] {
        let reply = server
            .send(
                "POST",
                "/storage/storage-servers",
                &[("Content-Type", V3), ("Authorization", &token)],
                Some(body),
            )
            .await;
        reply.assert_error(400);
    }
    // A storage unit an SLP writes to cannot be deleted.
    let error =
        call(&server, "DELETE", "/storage/storage-units/stu-msdp-01", &token, None).await.assert_error(409);
    assert!(error["errorMessage"].as_str().unwrap().contains("slp-msdp-dup"), "{error}");
    // The same names again are conflicts.
    let again = json!({"data": {"type": "storageUnit", "attributes": {"name": "stu-disk-01"},
        "relationships": {"diskPool": {"data": {"type": "diskPool", "id": "AdvancedDisk_dp-disk-01"}}}}});
    call(&server, "POST", "/storage/storage-units", &token, Some(&again)).await.assert_error(409);
    // Filters with `or`, `not` and `tolower`, sorting and paging, as the storage documents list them.
    let path = format!(
        "/storage/storage-units?filter={}&sort=-name&page[limit]=2",
        encode("(storageCategory eq 'MSDP' or storageCategory eq 'ADVANCED_DISK') and not startswith(tolower(name), 'replica')")
    );
    let page = call(&server, "GET", &path, &token, None).await.json();
    let names: Vec<&str> =
        page["data"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(names, ["stu-msdp-01", "stu-disk-01"]);
    assert_eq!(page["meta"]["pagination"]["count"], 2);
    call(&server, "GET", "/storage/storage-units?filter=nope%20eq%201", &token, None).await.assert_error(400);
    call(&server, "GET", "/storage/storage-units?page[limit]=501", &token, None).await.assert_error(400);
    call(&server, "GET", "/storage/storage-units?include=everything", &token, None).await.assert_error(400);
}

/// Every copy in the seed catalog is on a storage unit that exists, with its pool; a pool that holds
/// copies cannot be deleted even when no storage unit uses it any more.
#[tokio::test]
async fn image_copies_name_existing_storage_units() {
    let server = Server::start().await;
    let token = server.login().await;
    let images = server
        .get("/catalog/images?page[limit]=100&filter=backupTime%20ge%202000-01-01T00:00:00Z", &token)
        .await
        .json();
    let mut checked = 0;
    for image in images["data"].as_array().unwrap() {
        for copy in image["attributes"]["copies"].as_array().unwrap() {
            let name = copy["storageUnit"].as_str().unwrap();
            let unit = server.get_v(&format!("/storage/storage-units/{name}"), &token, "13.0").await;
            assert_eq!(unit.status, 200, "{name}: {}", unit.text);
            assert_eq!(unit.json()["data"]["relationships"]["diskPool"]["data"]["id"], copy["diskPool"]);
            checked += 1;
        }
    }
    assert!(checked > 0);
    let used = server.get("/storage/storage-units/stu-disk-01", &token).await.json();
    assert!(used["data"]["attributes"]["usedCapacityBytes"].as_i64().unwrap() > 0, "{used}");

    // A policy whose storage unit does not exist fails with 219.
    let policy = json!({"data": {"type": "policy", "id": "nowhere", "attributes": {"policy": {
        "policyType": "Standard", "policyAttributes": {"storage": "stu-gone"},
        "clients": [{"hostName": "client01.example.com", "hardware": "Linux", "OS": "RedHat"}],
        "schedules": [{"scheduleName": "FULL", "backupType": "Full Backup", "frequencySeconds": 3600}],
        "backupSelections": {"selections": ["/srv"]}}}}});
    assert_eq!(server.call("POST", "/config/policies", &token, &policy).await.status, 204);
    let ids = server.handle.start_backup("nowhere", None).unwrap();
    let job = crate::util::eventually("the job to fail", || async {
        let job = server.get(&format!("/admin/jobs/{}", ids[0]), &token).await.json();
        (job["data"]["attributes"]["state"] == "DONE").then(|| job["data"]["attributes"].clone())
    })
    .await;
    assert_eq!(job["status"], 219);
    assert_eq!(job["backupId"], "");

    // The disaster-recovery pool holds the replica copies of VMware full backups.
    let ids = server.handle.start_backup("VMware_Gold", Some("FULL")).unwrap();
    crate::util::eventually("the VMware backup to finish", || async {
        let job = server.get(&format!("/admin/jobs/{}", ids[0]), &token).await.json();
        (job["data"]["attributes"]["state"] == "DONE").then_some(())
    })
    .await;
    assert_eq!(
        server
            .send("DELETE", "/storage/storage-units/replica-msdp-dr", &[("Authorization", &token)], None)
            .await
            .status,
        204
    );
    let error = server
        .send("DELETE", "/storage/disk-pools/PureDisk_dp-msdp-dr", &[("Authorization", &token)], None)
        .await
        .assert_error(409);
    assert!(error["errorMessage"].as_str().unwrap().contains("copies"), "{error}");
}

//! `/config/policies`: the policy recipes' calls, ETag / If-Match, and errors.

use serde_json::{json, Value};

use crate::util::{vnd, Server};

/// A VMware policy body like the recipe `create_policy_in_one_step.py` posts.
fn vmware_policy(name: &str) -> Value {
    json!({"data": {"type": "policy", "id": name, "attributes": {"policy": {
        "policyName": name,
        "policyType": "VMware",
        "policyAttributes": {
            "active": true,
            "applicationConsistent": true,
            "applicationDiscovery": true,
            "applicationProtection": [],
            "autoManagedType": 0,
            "backupHost": "MEDIA_SERVER",
            "blockIncremental": true,
            "dataClassification": null,
            "discoveryLifetime": 28800,
            "jobLimit": 2147483647,
            "keyword": "test policy",
            "mediaOwner": "*ANY*",
            "priority": 0,
            "storage": null,
            "storageIsSLP": false,
            "useAccelerator": false,
            "useReplicationDirector": false,
            "volumePool": "NetBackup"
        },
        "clients": [{"hardware": "VMware", "hostName": "MEDIA_SERVER", "OS": "VMware"}],
        "schedules": [{
            "acceleratorForcedRescan": false,
            "backupCopies": {"priority": 9999, "copies": [{
                "mediaOwner": "*ANY*", "storage": null,
                "retentionPeriod": {"value": 2, "unit": "WEEKS"},
                "volumePool": "NetBackup", "failStrategy": "Continue"
            }]},
            "backupType": "Full Backup",
            "excludeDates": {"lastDayOfMonth": false, "recurringDaysOfWeek": [], "recurringDaysOfMonth": [], "specificDates": []},
            "frequencySeconds": 604800,
            "includeDates": {"lastDayOfMonth": false, "recurringDaysOfWeek": [], "recurringDaysOfMonth": [], "specificDates": []},
            "mediaMultiplexing": 1,
            "retriesAllowedAfterRunDay": false,
            "scheduleType": "Frequency",
            "snapshotOnly": false,
            "startWindow": [{"dayOfWeek": 1, "startSeconds": 0, "durationSeconds": 0}],
            "syntheticBackup": false,
            "storageIsSLP": false,
            "scheduleName": "sched-9-weeks"
        }],
        "backupSelections": {"selections": ["vmware:/?filter=Displayname Contains 'rsv' OR Displayname Contains 'mtv'"]}
    }}}})
}

#[tokio::test]
async fn the_one_step_recipe_flow() {
    let server = Server::start().await;
    let token = server.login().await;
    let v2 =
        [("Authorization", token.as_str()), ("Content-Type", "application/vnd.netbackup+json;version=2.0")];
    let body = vmware_policy("VMware_test_policy").to_string();
    let reply = server.send("POST", "/config/policies/", &v2, Some(&body)).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_eq!(reply.header("etag").unwrap(), "1");
    assert!(reply.header("location").unwrap().ends_with("/config/policies/VMware_test_policy"));
    server.send("POST", "/config/policies/", &v2, Some(&body)).await.assert_error(409);

    let list = server.send("GET", "/config/policies", &v2, None).await.json();
    assert!(list["data"].as_array().unwrap().iter().any(|p| p["id"] == "VMware_test_policy"));
    let reply = server.send("GET", "/config/policies/VMware_test_policy", &v2, None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("etag").unwrap(), "1");
    let policy = reply.json();
    assert_eq!(policy["data"]["attributes"]["policy"]["policyType"], "VMware");
    assert_eq!(policy["data"]["attributes"]["policy"]["schedules"][0]["scheduleName"], "sched-9-weeks");

    let mut update = vmware_policy("VMware_test_policy");
    update["data"]["attributes"]["policy"]["policyAttributes"]["keyword"] = json!("updated");
    let update = update.to_string();
    let mut with_etag = v2.to_vec();
    with_etag.push(("If-Match", "1"));
    let reply = server.send("PUT", "/config/policies/VMware_test_policy", &with_etag, Some(&update)).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_eq!(reply.header("etag").unwrap(), "2");
    // A stale generation is refused.
    server
        .send("PUT", "/config/policies/VMware_test_policy", &with_etag, Some(&update))
        .await
        .assert_error(412);
    let reply = server.send("GET", "/config/policies/VMware_test_policy", &v2, None).await;
    assert_eq!(reply.json()["data"]["attributes"]["policy"]["policyAttributes"]["keyword"], "updated");

    server.send("DELETE", "/config/policies/VMware_test_policy", &with_etag, None).await.assert_error(412);
    let mut current = v2.to_vec();
    current.push(("If-Match", "\"2\""));
    let reply = server.send("DELETE", "/config/policies/VMware_test_policy", &current, None).await;
    assert_eq!(reply.status, 204);
    server.send("GET", "/config/policies/VMware_test_policy", &v2, None).await.assert_error(404);
    server.send("DELETE", "/config/policies/VMware_test_policy", &v2, None).await.assert_error(404);
    server.send("PUT", "/config/policies/VMware_test_policy", &v2, Some(&update)).await.assert_error(404);
}

#[tokio::test]
async fn the_step_by_step_recipe_flow_sends_etags_everywhere() {
    let server = Server::start().await;
    let token = server.login().await;
    let minimal = json!({"data": {"type": "policy", "id": "steps", "attributes": {"policy": {"policyName": "steps", "policyType": "VMware"}}}});
    let reply = server.call("POST", "/config/policies", &token, &minimal).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    let client = json!({"data": {"type": "client", "attributes": {"hardware": "VMware", "hostName": "MEDIA_SERVER", "OS": "VMware"}}});
    let path = "/config/policies/steps/clients/MEDIA_SERVER";
    let reply = server.call("PUT", path, &token, &client).await;
    assert_eq!((reply.status, reply.header("etag").unwrap().as_str()), (201, "2"));
    let reply = server.call("PUT", path, &token, &client).await;
    assert_eq!((reply.status, reply.header("etag").unwrap().as_str()), (204, "3"));
    let selections =
        json!({"data": {"type": "backupSelection", "attributes": {"selections": ["vmware:/?filter=x"]}}});
    let reply = server.call("PUT", "/config/policies/steps/backupselections", &token, &selections).await;
    assert_eq!((reply.status, reply.header("etag").unwrap().as_str()), (204, "4"));
    let schedule = json!({"data": {"type": "schedule", "id": "FULL", "attributes": {
        "backupType": "Full Backup", "frequencySeconds": 3600, "scheduleType": "Frequency",
        "backupCopies": {"priority": 9999, "copies": [{"retentionPeriod": {"value": 1, "unit": "WEEKS"}}]}}}});
    let reply = server.call("PUT", "/config/policies/steps/schedules/FULL", &token, &schedule).await;
    assert_eq!((reply.status, reply.header("etag").unwrap().as_str()), (201, "5"));
    let reply = server.get("/config/policies/steps", &token).await;
    assert_eq!(reply.header("etag").unwrap(), "5");
    let policy = reply.json()["data"]["attributes"]["policy"].clone();
    assert_eq!(policy["clients"][0]["hostName"], "MEDIA_SERVER");
    assert_eq!(policy["schedules"][0]["scheduleName"], "FULL");
    assert_eq!(policy["backupSelections"]["selections"][0], "vmware:/?filter=x");
    assert_eq!(policy["policyAttributes"]["volumePool"], "NetBackup");

    let auth = |etag: &'static str| vec![("Authorization", token.clone()), ("If-Match", etag.to_owned())];
    let send = |method: &'static str, path: &'static str, etag: &'static str| {
        let headers = auth(etag);
        let server = &server;
        async move {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            server.send(method, path, &headers, None).await
        }
    };
    send("DELETE", "/config/policies/steps/clients/MEDIA_SERVER", "4").await.assert_error(412);
    let reply = send("DELETE", "/config/policies/steps/clients/MEDIA_SERVER", "5").await;
    assert_eq!((reply.status, reply.header("etag").unwrap().as_str()), (204, "6"));
    send("DELETE", "/config/policies/steps/clients/MEDIA_SERVER", "*").await.assert_error(404);
    let reply = send("DELETE", "/config/policies/steps/schedules/FULL", "6").await;
    assert_eq!((reply.status, reply.header("etag").unwrap().as_str()), (204, "7"));
    send("DELETE", "/config/policies/steps/schedules/FULL", "7").await.assert_error(404);
    let reply = send("DELETE", "/config/policies/steps/backupselections", "7").await;
    assert_eq!((reply.status, reply.header("etag").unwrap().as_str()), (204, "8"));
    server.call("PUT", "/config/policies/nope/clients/x", &token, &client).await.assert_error(404);
}

#[tokio::test]
async fn policy_listing_copy_and_bad_bodies() {
    let server = Server::start().await;
    let token = server.login().await;
    let list = server.get("/config/policies?page[limit]=2", &token).await.json();
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    assert_eq!(list["meta"]["pagination"]["count"], 5);
    assert_eq!(list["meta"]["pagination"]["pages"], 3);
    let first = &list["data"][0];
    assert_eq!(first["type"], "policy");
    assert_eq!(first["attributes"]["policyName"], first["id"]);
    let vmware = server.get("/config/policies?filter=policyType%20eq%20'VMware'", &token).await.json();
    assert_eq!(vmware["data"].as_array().unwrap().len(), 1);
    let sorted = server.get("/config/policies?sort=-policyName", &token).await.json();
    assert_eq!(sorted["data"][0]["id"], "Windows_Servers");

    let copy = json!({"data": {"type": "copyPolicyRequest", "id": "FS_copy", "attributes": {"copyPolicyRequest": {"id": "FS_copy"}}}});
    let reply = server.call("POST", "/config/policies/Standard_FS/copy", &token, &copy).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert!(reply.header("location").unwrap().ends_with("/config/policies/FS_copy"));
    let copied = server.get("/config/policies/FS_copy", &token).await.json();
    assert_eq!(copied["data"]["attributes"]["policy"]["policyName"], "FS_copy");
    server.call("POST", "/config/policies/Standard_FS/copy", &token, &copy).await.assert_error(409);
    server.call("POST", "/config/policies/nope/copy", &token, &copy).await.assert_error(404);

    let uniques = server.get("/config/unique-policy-clients", &token).await.json();
    assert!(uniques["data"].as_array().unwrap().iter().any(|c| c["id"] == "client01.example.com"));

    for bad in [
        json!({"data": {"type": "policy", "id": "x", "attributes": {}}}),
        json!({"data": {"type": "policy", "id": "x", "attributes": {"policy": {"policyName": "y"}}}}),
        json!({"data": {"type": "policy", "id": "x", "attributes": {"policy": {"clients": "all"}}}}),
        json!({"data": {"type": "policy", "id": "x", "attributes": {"policy": {"clients": [{"OS": "x"}]}}}}),
        json!({"data": {"type": "policy", "id": "x", "attributes": {"policy": {"policyType": 5}}}}),
        json!({"data": {"type": "policy", "id": "x", "attributes": {"policy": {"policyType": ""}}}}),
        // Found by schemathesis against the emulator's own document: a selection that is not text.
        json!({"data": {"type": "policy", "id": "x", "attributes": {"policy": {"backupSelections": {"selections": [{}]}}}}}),
        json!({"data": {"type": "job", "id": "x", "attributes": {"policy": {}}}}),
        json!({"data": {"type": "policy", "attributes": {"policy": {}}}}),
    ] {
        server.call("POST", "/config/policies", &token, &bad).await.assert_error(400);
    }
    let bad_schedule = json!({"data": {"type": "schedule", "attributes": {"frequencySeconds": "daily"}}});
    server
        .call("PUT", "/config/policies/Standard_FS/schedules/X", &token, &bad_schedule)
        .await
        .assert_error(400);
    let bad_selection = json!({"data": {"type": "backupSelection", "attributes": {"selections": [1]}}});
    server
        .call("PUT", "/config/policies/Standard_FS/backupselections", &token, &bad_selection)
        .await
        .assert_error(400);
    let reply = server
        .send(
            "GET",
            "/config/policies/Standard_FS",
            &[("Authorization", &token), ("Accept", &vnd("4.0"))],
            None,
        )
        .await;
    let schedules = reply.json()["data"]["attributes"]["policy"]["schedules"].clone();
    let names: Vec<&str> =
        schedules.as_array().unwrap().iter().map(|s| s["scheduleName"].as_str().unwrap()).collect();
    assert_eq!(names, ["FULL", "INCR"]);
    assert!(schedules[0]["frequencySeconds"].is_i64());
}

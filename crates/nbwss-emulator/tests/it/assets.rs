//! The VMware asset service driven as Veritas' recipes drive it: `recipes/python/assets/get_vmware_assets.py`
//! (look-ahead paging by `hasNext`), `create_vmware_asset_group.py` (a query, polled until done, then the
//! group by the link it returns), `backup-restore/common.py` and `group_vm_backup_restore.py` (filters by
//! display name, `delete-assets`).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::util::{eventually, vnd, Server};

/// `get_vmware_assets.py`: only `Authorization`, `page[offset]`, `filter` and `sort` parameters.
async fn all_vms(server: &Server, token: &str, filter: &str) -> Vec<Value> {
    let mut offset = 0;
    let mut assets = Vec::new();
    loop {
        let path = format!(
            "/asset-service/workloads/vmware/assets?page%5Boffset%5D={offset}&filter={}&sort=commonAssetAttributes.displayName",
            filter.replace(' ', "+").replace('\'', "%27").replace('(', "%28").replace(')', "%29").replace(',', "%2C")
        );
        let reply = server.send("GET", &path, &[("Authorization", token)], None).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let page = reply.json();
        assets.extend(page["data"].as_array().unwrap().iter().cloned());
        offset += page["meta"]["pagination"]["limit"].as_u64().unwrap();
        if !page["meta"]["pagination"]["hasNext"].as_bool().unwrap() {
            return assets;
        }
    }
}

fn display_name(asset: &Value) -> &str {
    asset["attributes"]["commonAssetAttributes"]["displayName"].as_str().unwrap()
}

#[tokio::test]
async fn vms_follow_the_vcenter_and_the_vmware_policies() {
    let server = Server::start().await;
    let token = server.login().await;
    let vms = all_vms(&server, &token, "(assetType eq 'vm')").await;
    let names: Vec<&str> = vms.iter().map(display_name).collect();
    assert_eq!(
        names,
        [
            "vm-app01.example.com",
            "vm-app02.example.com",
            "vm-db01.example.com",
            "vm-test01.example.com",
            "vm-web01.example.com"
        ],
        "sorted by display name, every VM of the seeded vCenter"
    );
    let policy = server.get("/config/policies/VMware_Gold", &token).await.json();
    let clients: BTreeSet<&str> = policy["data"]["attributes"]["policy"]["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["hostName"].as_str().unwrap())
        .collect();
    for vm in &vms {
        let attributes = &vm["attributes"];
        assert_eq!(attributes["vCenter"], "vcenter01.example.com");
        assert!(attributes["instanceUuid"].is_string() && attributes["host"].is_string());
        let protection = &attributes["commonAssetAttributes"]["activeProtection"]["protectionDetailsList"];
        if clients.contains(display_name(vm)) {
            // The recipe reads protectionPlanName of every entry.
            assert_eq!(protection[0]["policyName"], "VMware_Gold");
            assert!(protection[0]["protectionPlanName"].is_string());
        } else {
            assert!(protection.is_null(), "{vm}");
        }
    }
    let some = all_vms(
        &server,
        &token,
        "contains(commonAssetAttributes/displayName, 'app') and (assetType eq 'vm')",
    )
    .await;
    assert_eq!(some.len(), 2);

    // common.py: the asset of a client, its id, instance UUID and ESXi host.
    let path = "/asset-service/workloads/vmware/assets?filter=commonAssetAttributes/displayName%20eq%20'vm-db01.example.com'";
    let found = server
        .send("GET", path, &[("Authorization", &token), ("Content-Type", &vnd("4.0"))], None)
        .await
        .json();
    let id = found["data"][0]["id"].as_str().unwrap();
    let one = server.get(&format!("/asset-service/workloads/vmware/assets/{id}"), &token).await.json();
    assert_eq!(display_name(&one["data"]), "vm-db01.example.com");

    // A policy that protects a VM shows on the asset at once.
    let client = json!({"data": {"type": "client", "attributes": {"hardware": "VMware", "OS": "VMware"}}});
    let reply = server
        .call("PUT", "/config/policies/VMware_Gold/clients/vm-web01.example.com", &token, &client)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let web = all_vms(&server, &token, "commonAssetAttributes/displayName eq 'vm-web01.example.com'").await;
    assert_eq!(
        web[0]["attributes"]["commonAssetAttributes"]["activeProtection"]["protectionDetailsList"][0]
            ["policyName"],
        "VMware_Gold"
    );

    // A new vCenter brings its virtual machines; deleting it takes them away.
    let vcenter = json!({"serverName": "vcenter02.example.com", "vmType": "VMWARE_VIRTUAL_CENTER_SERVER", "userId": "u", "password": "p", "port": 443});
    assert_eq!(server.call("POST", "/config/servers/vmservers", &token, &vcenter).await.status, 201);
    let second = all_vms(&server, &token, "vCenter eq 'vcenter02.example.com'").await;
    assert_eq!(second.len(), 3);
    let reply = server
        .send("DELETE", "/config/servers/vmservers/vcenter02.example.com", &[("Authorization", &token)], None)
        .await;
    assert_eq!(reply.status, 204);
    assert!(all_vms(&server, &token, "vCenter eq 'vcenter02.example.com'").await.is_empty());

    server.get("/asset-service/workloads/mssql/assets", &token).await.assert_error(404);
    server.get("/asset-service/workloads/vmware/assets/nope", &token).await.assert_error(404);
    server.get("/asset-service/workloads/vmware/assets?filter=nope%20eq%201", &token).await.assert_error(400);
    server.get("/asset-service/workloads/vmware/assets?page[limit]=0", &token).await.assert_error(400);
    let fields = server
        .get(
            &format!(
                "/asset-service/workloads/vmware/assets/{id}?fields[asset]=vCenter&meta=accessControlId"
            ),
            &token,
        )
        .await
        .json();
    assert_eq!(fields["data"]["attributes"].as_object().unwrap().len(), 1);
    assert!(fields["data"]["meta"]["accessControlId"].is_string());
}

async fn poll_query(server: &Server, token: &str, id: &str) -> Value {
    eventually("the query to finish", || async {
        let reply = server.get(&format!("/asset-service/queries/{id}"), token).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let body = reply.json();
        (body["data"][0]["attributes"]["status"] != "IN_PROGRESS").then_some(body)
    })
    .await
}

#[tokio::test]
async fn vm_groups_through_asynchronous_queries() {
    let server = Server::start().await;
    let token = server.login().await;
    // create_vmware_asset_group.py posts to /asset-service/queries/ with a trailing slash.
    let request = json!({"data": {"type": "query", "attributes": {"queryName": "create-or-update-assets",
        "workloads": ["vmware"], "parameters": {"objectList": [{"correlationId": "1", "type": "vmwareGroupAsset",
        "assetGroup": {"description": "VM group created from sample script using API", "assetType": "vmGroup",
            "filterConstraint": "vcenter01.example.com", "oDataQueryFilter": "contains(commonAssetAttributes/displayName, 'app')",
            "commonAssetAttributes": {"displayName": "app-vms", "workloadType": "vmware",
                "detection": {"detectionMethod": "MANUAL"}}}}]}}}});
    let reply = server.call("POST", "/asset-service/queries/", &token, &request).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let query_id = reply.json()["data"]["id"].as_str().unwrap().to_owned();
    let done = poll_query(&server, &token, &query_id).await;
    let attributes = &done["data"][0]["attributes"];
    assert_eq!(attributes["status"], "SUCCESS");
    let work = &attributes["workItemResponses"][0];
    assert_eq!(work["statusDetails"]["message"], "CREATED");
    let href = work["links"]["self"]["href"].as_str().unwrap();
    let group = server.get(href, &token).await.json();
    assert_eq!(display_name(&group["data"]), "app-vms");
    assert_eq!(group["data"]["attributes"]["filterConstraint"], "vcenter01.example.com");

    // group_vm_backup_restore.py: find the group by name (note the `?&`), then delete it.
    let path = "/asset-service/workloads/vmware/assets?&filter=((assetType eq 'vmGroup')                 and (commonAssetAttributes/displayName eq 'app-vms'))&meta=accessControlId"
        .replace(' ', "%20");
    let found = server.get(&path, &token).await.json();
    let group_id = found["data"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(format!("/asset-service/workloads/vmware/assets/{group_id}"), href);
    // The same name again updates the group.
    let reply = server.call("POST", "/asset-service/queries", &token, &request).await;
    let again = poll_query(&server, &token, reply.json()["data"]["id"].as_str().unwrap()).await;
    assert_eq!(again["data"][0]["attributes"]["workItemResponses"][0]["statusDetails"]["message"], "UPDATED");

    let delete = json!({"data": {"type": "query", "attributes": {"queryName": "delete-assets", "workloads": ["vmware"],
        "parameters": {"objectList": [{"correlationId": "0", "assetType": "vmGroup", "id": group_id}]}}}});
    let reply = server.call("POST", "/asset-service/queries", &token, &delete).await;
    assert_eq!(reply.status, 201);
    let deleted = poll_query(&server, &token, reply.json()["data"]["id"].as_str().unwrap()).await;
    assert_eq!(
        deleted["data"][0]["attributes"]["workItemResponses"][0]["statusDetails"]["message"],
        "DELETED"
    );
    server.get(href, &token).await.assert_error(404);

    // Work items that cannot run fail with a reason; malformed queries are a 400.
    let mut bad = request.clone();
    bad["data"]["attributes"]["parameters"]["objectList"][0]["assetGroup"]["filterConstraint"] =
        json!("vcenter99");
    let reply = server.call("POST", "/asset-service/queries", &token, &bad).await;
    let failed = poll_query(&server, &token, reply.json()["data"]["id"].as_str().unwrap()).await;
    assert_eq!(failed["data"][0]["attributes"]["status"], "FAILED");
    assert!(failed["data"][0]["attributes"]["workItemResponses"][0]["statusDetails"]["message"]
        .as_str()
        .unwrap()
        .contains("vcenter99"));
    for attributes in [
        json!({"queryName": "list-everything", "workloads": ["vmware"], "parameters": {"objectList": [{}]}}),
        json!({"queryName": "delete-assets", "workloads": ["mssql"], "parameters": {"objectList": [{}]}}),
        json!({"queryName": "delete-assets", "workloads": ["vmware"], "parameters": {"objectList": []}}),
    ] {
        let body = json!({"data": {"type": "query", "attributes": attributes}});
        server.call("POST", "/asset-service/queries", &token, &body).await.assert_error(400);
    }
    server.get("/asset-service/queries/nope", &token).await.assert_error(404);
}

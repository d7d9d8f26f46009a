//! NetBackup API calls made the way real clients make them, through the whole chain:
//! app → endpoint (HTTP) → service (COMMAND over wss) → emulated primary server (HTTPS) and back.

use serde_json::{json, Value};

use crate::system::System;

const VND_1: &str = "application/vnd.netbackup+json; version=1.0";

async fn login(system: &System, client: &reqwest::Client, key: &str) -> String {
    let response = client
        .post(format!("{}/login", system.relay()))
        .header("X-NBWSS-API-Key", key)
        .header("Content-Type", VND_1)
        .json(&json!({"userName": "admin", "password": "password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["tokenType"], "BEARER");
    body["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_client_shapes_work_through_the_relay() {
    let system = System::start().await;
    let client = system.client();
    let key = system.api_key.clone();
    let relay = system.relay();
    let token = login(&system, &client, &key).await;

    // get_nb_jobs.py: Content-Type with a version, Accept */*, no parameters.
    let jobs = client
        .get(format!("{relay}/admin/jobs"))
        .header("X-NBWSS-API-Key", &key)
        .header("Content-Type", VND_1)
        .header("Accept", "*/*")
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(jobs.status(), 200);
    assert!(jobs.headers()["content-type"].to_str().unwrap().starts_with("application/vnd.netbackup+json"));
    let jobs: Value = jobs.json().await.unwrap();
    assert!(
        jobs["meta"]["pagination"]["pages"].is_number(),
        "offset pagination at the default version: {jobs}"
    );

    // The Go sample: the `ContentType` typo header, a filter with `+` spaces and a lower-case %5b.
    let filtered = client
        .get(format!("{relay}/admin/jobs?filter=jobType+eq+%27BACKUP%27&page%5blimit%5d=3"))
        .header("X-NBWSS-API-Key", &key)
        .header("ContentType", VND_1)
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(filtered.status(), 200);
    let filtered: Value = filtered.json().await.unwrap();
    let data = filtered["data"].as_array().unwrap();
    assert!(!data.is_empty() && data.len() <= 3, "{filtered}");
    assert!(data.iter().all(|job| job["attributes"]["jobType"] == "BACKUP"), "{filtered}");

    // The guide's own COMMAND examples: POST then GET /config/servers/vmservers.
    let created = client
        .post(format!("{relay}/config/servers/vmservers"))
        .header("X-NBWSS-API-Key", &key)
        .header("Content-Type", "application/vnd.netbackup+json;version=1.0")
        .header("Authorization", &token)
        .body(r#"{"serverName": "vcenterServer1", "proxyServerName": "","vmType": "VMWARE_VIRTUAL_CENTER_SERVER","userId": "administrator", "password": "password@123","port": 0 }"#)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let read = client
        .get(format!("{relay}/config/servers/vmservers/vcenterServer1"))
        .header("X-NBWSS-API-Key", &key)
        .header("Content-Type", "application/vnd.netbackup+json;version=1.0")
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let read: Value = read.json().await.unwrap();
    assert_eq!(read["data"]["attributes"]["vmServer"]["serverName"], "vcenterServer1", "{read}");

    // Status and headers of the primary server's errors arrive intact: ETag / If-Match / 412.
    let policy = client
        .get(format!("{relay}/config/policies/{}", system.emulator.policy_names()[0]))
        .header("X-NBWSS-API-Key", &key)
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(policy.status(), 200);
    let etag = policy.headers()["etag"].to_str().unwrap().to_owned();
    let body: Value = policy.json().await.unwrap();
    let name = body["data"]["id"].as_str().unwrap().to_owned();
    let stale = client
        .put(format!("{relay}/config/policies/{name}"))
        .header("X-NBWSS-API-Key", &key)
        .header("Authorization", &token)
        .header("Content-Type", "application/vnd.netbackup+json;version=4.0")
        .header("If-Match", format!("{}", etag.trim_matches('"').parse::<i64>().unwrap() + 100))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412);
    assert!(
        stale.headers().get("x-nbwss-origin").is_none(),
        "the primary server's own error, not the service's"
    );
    let error: Value = stale.json().await.unwrap();
    assert!(error["errorCode"].is_number() && error["errorMessage"].is_string(), "{error}");
    let updated = client
        .put(format!("{relay}/config/policies/{name}"))
        .header("X-NBWSS-API-Key", &key)
        .header("Authorization", &token)
        .header("Content-Type", "application/vnd.netbackup+json;version=4.0")
        .header("If-Match", &etag)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), 204);
    assert!(updated.headers().contains_key("etag"));

    // Without a token the primary server answers 401, relayed as is.
    let anonymous =
        client.get(format!("{relay}/admin/jobs")).header("X-NBWSS-API-Key", &key).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);

    system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_restarting_is_healed_by_the_service() {
    let mut system = System::start().await;
    let address = system.endpoint.local_addr();
    system.endpoint.shutdown().await;
    let mut config = nbwss_endpoint::EndpointConfig::new(&system.endpoint_dir);
    config.bind = address;
    system.endpoint = nbwss_endpoint::Endpoint::start(config).await.unwrap();
    // Same data directory: same certificate (still pinned), same tokens and API key.
    system.wait_connected().await;
    let client = system.client();
    let token = login(&system, &client, &system.api_key.clone()).await;
    assert!(!token.is_empty());
    system.shutdown().await;
}

//! `/catalog/images`: the 24-hour default, filters, one image, updates.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};

use crate::util::{encode, Server};

fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

async fn images(server: &Server, token: &str, query: &str) -> Vec<Value> {
    let reply = server.get(&format!("/catalog/images?page[limit]=100{query}"), token).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn listing_defaults_to_the_last_24_hours() {
    let server = Server::start().await;
    let token = server.login().await;
    let now = server.handle.now();
    let recent = images(&server, &token, "").await;
    assert!(!recent.is_empty(), "seed images within the last day");
    for image in &recent {
        let backup_time = image["attributes"]["backupTime"].as_str().unwrap();
        assert!(backup_time.ends_with(".000Z"), "{backup_time}");
        assert!(time(backup_time) >= now - TimeDelta::hours(24));
        let id = image["id"].as_str().unwrap();
        let client = image["attributes"]["clientName"].as_str().unwrap();
        assert_eq!(id, format!("{client}_{}", time(backup_time).timestamp()));
        assert_eq!(image["type"], "image");
        assert!(image["links"]["self"]["href"].as_str().unwrap().ends_with(id));
    }
    let week = (now - TimeDelta::days(7)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let all = images(&server, &token, &format!("&filter={}", encode(&format!("backupTime ge {week}")))).await;
    assert!(all.len() > recent.len(), "older seed images appear with an explicit backupTime filter");
    let default_page = server.get("/catalog/images", &token).await.json();
    assert_eq!(default_page["meta"]["pagination"]["limit"], 10);
    assert!(default_page["meta"]["pagination"]["pages"].is_u64());
}

#[tokio::test]
async fn image_filters() {
    let server = Server::start().await;
    let token = server.login().await;
    let now = server.handle.now();
    let recent = images(&server, &token, "").await;
    let sample = &recent[0]["attributes"];
    let client = sample["clientName"].as_str().unwrap();
    let policy = sample["policyName"].as_str().unwrap();
    let backup_id = recent[0]["id"].as_str().unwrap();
    let count =
        |predicate: &dyn Fn(&Value) -> bool| recent.iter().filter(|i| predicate(&i["attributes"])).count();
    // ClientBackup.py3: an unquoted datetime with six fraction digits, %20 spaces, only Authorization.
    let since = (now - TimeDelta::hours(30)).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let path = format!("/catalog/images?page%5Blimit%5D=50&filter=clientName%20eq%20'{client}'%20and%20backupTime%20ge%20{since}");
    let reply = server.send("GET", &path, &[("Authorization", &token)], None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(reply.json()["data"].as_array().unwrap().iter().all(|i| i["attributes"]["clientName"] == client));
    for (filter, expected) in [
        (format!("clientName eq '{client}'"), count(&|a| a["clientName"] == client)),
        (format!("policyName eq '{policy}'"), count(&|a| a["policyName"] == policy)),
        (
            "contains(policyName,'Standard')".to_owned(),
            count(&|a| a["policyName"].as_str().unwrap().contains("Standard")),
        ),
        (format!("backupId eq '{backup_id}'"), 1),
        ("policyType eq 'Standard'".to_owned(), count(&|a| a["policyType"] == "Standard")),
        ("scheduleType eq 'FULL'".to_owned(), count(&|a| a["scheduleType"] == "FULL")),
        ("isOptimized eq false".to_owned(), recent.len()),
        ("streamNumber eq 0".to_owned(), recent.len()),
    ] {
        assert_eq!(
            images(&server, &token, &format!("&filter={}", encode(&filter))).await.len(),
            expected,
            "{filter}"
        );
    }
    let until = now.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let from = (now - TimeDelta::hours(24)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let filter = format!("backupTime ge {from} and backupTime le '{until}' and backupType eq 0");
    let full = images(&server, &token, &format!("&filter={}", encode(&filter))).await;
    assert_eq!(full.len(), count(&|a| a["scheduleType"] == "FULL"));
    for bad in ["backupTime gt 2020-01-01T00:00:00Z", "clientName ne 'x'", "jobType eq 'BACKUP'"] {
        server.get(&format!("/catalog/images?filter={}", encode(bad)), &token).await.assert_error(400);
    }
}

#[tokio::test]
async fn one_image_with_copies_and_its_updates() {
    let server = Server::start().await;
    let token = server.login().await;
    let recent = images(&server, &token, "").await;
    let id = recent[0]["id"].as_str().unwrap().to_owned();
    let image = server.get(&format!("/catalog/images/{id}"), &token).await.json();
    let attributes = &image["data"]["attributes"];
    assert_eq!(image["data"]["id"], id.as_str());
    for key in
        ["policyName", "policyType", "clientName", "backupTime", "expiration", "scheduleName", "scheduleType"]
    {
        assert!(attributes[key].is_string(), "{key}");
    }
    assert!(attributes["numCopies"].as_u64().unwrap() >= 1);
    assert_eq!(
        attributes["fragments"].as_array().unwrap().len(),
        attributes["numCopies"].as_u64().unwrap() as usize
    );
    server.get("/catalog/images/nobody_1", &token).await.assert_error(404);

    let expiration = "2099-01-01T00:00:00.000Z";
    let patch = json!({"data": {"type": "imageUpdateRequest", "attributes": {"expiration": expiration, "keyword": "keep"}}});
    let reply = server.call("PATCH", &format!("/catalog/images/{id}"), &token, &patch).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    let image = server.get(&format!("/catalog/images/{id}"), &token).await.json();
    assert_eq!(image["data"]["attributes"]["expiration"], expiration);
    assert_eq!(image["data"]["attributes"]["keyword"], "keep");
    let keyword = images(&server, &token, &format!("&filter={}", encode("keyword eq 'keep'"))).await;
    assert_eq!(keyword.len(), 1);
    for bad in [
        json!({"data": {"attributes": {"expiration": "tomorrow"}}}),
        json!({"data": {"attributes": {}}}),
        json!({"data": {"attributes": {"expiration": 5}}}),
        json!({"nodata": true}),
    ] {
        server.call("PATCH", &format!("/catalog/images/{id}"), &token, &bad).await.assert_error(400);
    }
    server.call("PATCH", "/catalog/images/nobody_1", &token, &patch).await.assert_error(404);

    let update = json!({"data": {"type": "byBackupId", "attributes": {"backupId": id, "date": "2098-01-01T00:00:00Z"}}});
    let reply = server.call("POST", "/catalog/images/update-expiration-date", &token, &update).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    let image = server.get(&format!("/catalog/images/{id}"), &token).await.json();
    assert_eq!(image["data"]["attributes"]["expiration"], "2098-01-01T00:00:00.000Z");
    let missing = json!({"data": {"attributes": {"backupId": "nobody_1", "date": "2098-01-01T00:00:00Z"}}});
    server.call("POST", "/catalog/images/update-expiration-date", &token, &missing).await.assert_error(404);
    server
        .call("POST", "/catalog/expire-images", &token, &json!({"data": {"attributes": {"backupIds": []}}}))
        .await
        .assert_error(400);
}

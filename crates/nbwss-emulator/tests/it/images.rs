//! `/catalog/images`: the 24-hour default, filters, one image, updates.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};

use nbwss_emulator::EmulatorConfig;

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

type Listed = (DateTime<Utc>, String, String);

/// Pages through the whole listing `page[limit]` images at a time, checking each page's `count`; returns
/// the images' `(backupTime, id, clientName)` in the order listed.
async fn page_through(server: &Server, token: &str, query: &str, limit: usize) -> Vec<Listed> {
    let mut listed = Vec::new();
    let mut total = None;
    loop {
        let path = format!("/catalog/images?page[limit]={limit}&page[offset]={}{query}", listed.len());
        let reply = server.get(&path, token).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let page = reply.json();
        let count = page["meta"]["pagination"]["count"].as_u64().unwrap();
        assert_eq!(*total.get_or_insert(count), count, "the count stays the same while paging");
        let data = page["data"].as_array().unwrap();
        for image in data {
            let attributes = &image["attributes"];
            let id = image["id"].as_str().unwrap().to_owned();
            let client = attributes["clientName"].as_str().unwrap().to_owned();
            listed.push((time(attributes["backupTime"].as_str().unwrap()), id, client));
        }
        let next = &page["meta"]["pagination"]["next"];
        if data.is_empty() || next.is_null() {
            assert_eq!(listed.len() as u64, count, "every page read: {query}");
            return listed;
        }
        assert_eq!(next.as_u64().unwrap(), listed.len() as u64);
    }
}

#[tokio::test]
async fn paging_through_a_large_catalog_lists_every_image_once_in_order() {
    // The emulated clock at real speed, so that no copy expires while the test pages.
    let server =
        Server::start_with(EmulatorConfig { clock_multiplier: 1.0, ..EmulatorConfig::for_tests() }).await;
    let token = server.login().await;
    let held = server.handle.add_catalog_images(2_345).unwrap();
    let mut every_id = server.handle.image_ids();
    every_id.sort();
    assert_eq!(every_id.len(), held);
    let since_epoch = format!("&filter={}", encode("backupTime ge 1970-01-01T00:00:00Z"));

    // The service's reconciliation: oldest first, 100 at a time.
    let ascending = page_through(&server, &token, &format!("{since_epoch}&sort=backupTime"), 100).await;
    let mut expected = ascending.clone();
    expected.sort();
    assert_eq!(ascending, expected, "by backupTime, then backup id");
    let mut ids: Vec<String> = ascending.iter().map(|(_, id, _)| id.clone()).collect();
    ids.sort();
    assert_eq!(ids, every_id, "every image exactly once");

    // The default order (newest first, ties by backup id), another page size.
    let descending = page_through(&server, &token, &since_epoch, 37).await;
    expected.sort_by(|(a_time, a_id, _), (b_time, b_id, _)| b_time.cmp(a_time).then_with(|| a_id.cmp(b_id)));
    assert_eq!(descending, expected);

    // A window with bounds between whole seconds and a condition on another field.
    let (first, last) = (ascending[100].0, ascending[1_900].0);
    let client = ascending[1_000].2.clone();
    let window = format!(
        "backupTime ge {} and backupTime le {} and clientName eq '{client}'",
        (first - TimeDelta::milliseconds(500)).format("%Y-%m-%dT%H:%M:%S%.3fZ"),
        (last + TimeDelta::milliseconds(500)).format("%Y-%m-%dT%H:%M:%S%.3fZ"),
    );
    let windowed =
        page_through(&server, &token, &format!("&filter={}&sort=backupTime", encode(&window)), 100).await;
    let in_window: Vec<Listed> = ascending
        .iter()
        .filter(|(at, _, of)| *at >= first && *at <= last && *of == client)
        .cloned()
        .collect();
    assert!(in_window.len() > 1_000, "{} images in the window", in_window.len());
    assert_eq!(windowed, in_window);

    // Sorted on another field: the same images, each once.
    let by_client = page_through(&server, &token, &format!("{since_epoch}&sort=-clientName"), 100).await;
    let mut expected = by_client.clone();
    expected.sort_by(|(_, a_id, a_client), (_, b_id, b_client)| {
        b_client.cmp(a_client).then_with(|| a_id.cmp(b_id))
    });
    assert_eq!(by_client, expected, "by clientName descending, then backup id");
    let mut ids: Vec<String> = by_client.into_iter().map(|(_, id, _)| id).collect();
    ids.sort();
    assert_eq!(ids, every_id);

    // Past the end: an empty page that still counts every image.
    let reply = server.get(&format!("/catalog/images?page[offset]={held}{since_epoch}"), &token).await;
    assert_eq!(reply.json()["data"].as_array().unwrap().len(), 0);
    assert_eq!(reply.json()["meta"]["pagination"]["count"], held);
}

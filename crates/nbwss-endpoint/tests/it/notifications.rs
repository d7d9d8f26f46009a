//! Notification receipt (stored before acknowledged, de-duplicated by id) and the feed (cursor, SSE resume).

use futures_util::StreamExt;
use nbwss_endpoint::{Endpoint, EndpointConfig};
use nbwss_protocol::{
    Body, ImageOperation, ImageRecord, JobRecord, JobState, JobType, NotificationGroup, ScheduleType,
};
use serde_json::{json, Value};

use crate::util::{http_client, within, Harness, Primary};

pub fn job(job_id: i64, state: JobState) -> JobRecord {
    JobRecord {
        schedule_type: ScheduleType::Full,
        client_name: "client1.example.com".into(),
        status: 0,
        start_time: 1_700_000_000,
        state,
        policy_name: "policy1".into(),
        parent_job_id: job_id,
        job_id,
        policy_type: "STANDARD".into(),
        job_type: JobType::Backup,
    }
}

pub fn image(backup_time: i64) -> ImageRecord {
    ImageRecord {
        client_type: "STANDARD".into(),
        client_name: "client1.example.com".into(),
        backup_time,
        created_time: backup_time + 10,
        operation_id: ImageOperation::Create,
        backup_id: format!("client1.example.com_{backup_time}"),
    }
}

fn feed_cursors(page: &Value) -> Vec<i64> {
    page["notifications"].as_array().unwrap().iter().map(|n| n["cursor"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn notifications_are_stored_before_the_ack_and_once_per_id() {
    let harness = Harness::start().await;
    let mut primary = Primary::connect(&harness.endpoint, &harness.token("primary1")).await.unwrap();
    let groups = vec![
        NotificationGroup::jobs(vec![job(144, JobState::Active), job(145, JobState::Queued)]),
        NotificationGroup::images(vec![image(1_700_000_100)]),
    ];
    let ack = primary.notify("9CD2B89F-0BBF-4F60-974D-C1F3EF39B872", groups.clone()).await;
    assert_eq!(ack.id, "9CD2B89F-0BBF-4F60-974D-C1F3EF39B872");
    assert_eq!(ack.body, Body::notification_ack());
    assert_eq!(ack.to_value()["type"], "NOTIFICATION");
    assert_eq!(ack.to_value()["subType"], "RESPONSE");
    assert_eq!(ack.to_value()["payload"], json!([]));
    // The ack came after the commit: the records are readable at once, in order, one row each.
    let page = harness.get_json("/api/v1/notifications").await;
    assert_eq!(feed_cursors(&page), vec![1, 2, 3]);
    let first = &page["notifications"][0];
    assert_eq!(first["primary"], "primary1");
    assert_eq!(first["object"], "JOB");
    assert_eq!(first["notificationType"], "INFO");
    assert_eq!(first["messageId"], "9CD2B89F-0BBF-4F60-974D-C1F3EF39B872");
    assert_eq!(first["record"], serde_json::to_value(job(144, JobState::Active)).unwrap());
    assert!(first["receivedAt"].is_string());
    assert_eq!(page["notifications"][2]["object"], "IMAGE");
    assert_eq!(page["notifications"][2]["record"]["backupId"], "client1.example.com_1700000100");

    // Sent again with the same id: acknowledged again, stored once.
    let again = primary.notify("9CD2B89F-0BBF-4F60-974D-C1F3EF39B872", groups).await;
    assert_eq!(again.id, "9CD2B89F-0BBF-4F60-974D-C1F3EF39B872");
    let page = harness.get_json("/api/v1/notifications").await;
    assert_eq!(feed_cursors(&page), vec![1, 2, 3]);
    assert_eq!(harness.primary("primary1").await["notifications"], 3);
    let metrics = harness.metrics().await;
    assert!(metrics.contains("nbwss_endpoint_notification_duplicates_total 1"), "{metrics}");
    assert!(metrics.contains("nbwss_endpoint_notification_records_total 3"), "{metrics}");
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn the_store_and_de_duplication_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = Endpoint::start(EndpointConfig::new(dir.path())).await.unwrap();
    let token = endpoint.create_token("primary1", "sg1", 1).unwrap().token;
    let key = endpoint.create_api_key("tests").unwrap();
    let fingerprint = endpoint.certificate_sha256().to_owned();
    let mut primary = Primary::connect(&endpoint, &token).await.unwrap();
    primary.notify("M1", vec![NotificationGroup::jobs(vec![job(1, JobState::Done)])]).await;
    endpoint.shutdown().await;

    let endpoint = Endpoint::start(EndpointConfig::new(dir.path())).await.unwrap();
    assert_eq!(endpoint.certificate_sha256(), fingerprint, "the generated certificate is kept");
    let mut primary = Primary::connect(&endpoint, &token).await.unwrap();
    let ack = primary.notify("M1", vec![NotificationGroup::jobs(vec![job(1, JobState::Done)])]).await;
    assert_eq!(ack.id, "M1");
    primary.notify("M2", vec![NotificationGroup::jobs(vec![job(2, JobState::Done)])]).await;
    let http = http_client(endpoint.certificate_pem());
    let page: Value = http
        .get(format!("{}/api/v1/notifications", endpoint.url()))
        .header("X-NBWSS-API-Key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(feed_cursors(&page), vec![1, 2]);
    assert_eq!(page["notifications"][1]["record"]["jobId"], 2);
    endpoint.shutdown().await;
}

#[tokio::test]
async fn the_feed_pages_by_cursor_and_filters() {
    let harness = Harness::start().await;
    let mut one = Primary::connect(&harness.endpoint, &harness.token("primary1")).await.unwrap();
    let mut two = Primary::connect(&harness.endpoint, &harness.token("primary2")).await.unwrap();
    one.notify("A", vec![NotificationGroup::jobs(vec![job(1, JobState::Active)])]).await;
    two.notify("A", vec![NotificationGroup::images(vec![image(10)])]).await; // same id, other primary: stored
    one.notify("B", vec![NotificationGroup::images(vec![image(11), image(12)])]).await;
    two.notify("B", vec![NotificationGroup::jobs(vec![job(2, JobState::Done)])]).await;

    let page = harness.get_json("/api/v1/notifications?limit=2").await;
    assert_eq!(feed_cursors(&page), vec![1, 2]);
    assert_eq!(page["nextCursor"], 2);
    assert_eq!(page["lastCursor"], 5);
    let page = harness.get_json("/api/v1/notifications?after=2&limit=2").await;
    assert_eq!(feed_cursors(&page), vec![3, 4]);
    let page = harness.get_json("/api/v1/notifications?after=4").await;
    assert_eq!(feed_cursors(&page), vec![5]);
    let page = harness.get_json("/api/v1/notifications?after=5").await;
    assert_eq!(feed_cursors(&page), Vec::<i64>::new());
    assert_eq!(page["nextCursor"], 5);
    let page = harness.get_json("/api/v1/notifications?primary=primary2").await;
    assert_eq!(feed_cursors(&page), vec![2, 5]);
    let page = harness.get_json("/api/v1/notifications?object=IMAGE").await;
    assert_eq!(feed_cursors(&page), vec![2, 3, 4]);
    let page = harness.get_json("/api/v1/notifications?primary=primary1&object=JOB").await;
    assert_eq!(feed_cursors(&page), vec![1]);
    assert_eq!(harness.get("/api/v1/notifications?object=POLICY").await.status(), 400);
    assert_eq!(harness.get("/api/v1/notifications?limit=100000").await.status(), 400);
    harness.endpoint.shutdown().await;
}

/// Reads SSE events (`id`, parsed `data`) from a response until `count` have arrived.
async fn read_events(response: reqwest::Response, count: usize) -> Vec<(i64, Value)> {
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    within(async {
        while events.len() < count {
            let chunk = stream.next().await.expect("stream open").unwrap();
            buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let mut id = None;
                let mut data = None;
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("id:") {
                        id = Some(value.trim().parse::<i64>().unwrap());
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data = Some(serde_json::from_str::<Value>(value.trim()).unwrap());
                    }
                }
                if let (Some(id), Some(data)) = (id, data) {
                    events.push((id, data));
                }
            }
        }
    })
    .await;
    events
}

#[tokio::test]
async fn the_stream_follows_new_records_and_resumes_from_last_event_id() {
    let harness = Harness::start().await;
    let mut primary = Primary::connect(&harness.endpoint, &harness.token("primary1")).await.unwrap();
    primary
        .notify("A", vec![NotificationGroup::jobs(vec![job(1, JobState::Active), job(2, JobState::Active)])])
        .await;

    let stream_url = format!("{}/api/v1/notifications/stream", harness.endpoint.url());
    let response =
        harness.http.get(&stream_url).header("X-NBWSS-API-Key", &harness.api_key).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    // Two stored records at once, then one that arrives while the stream is open.
    let live = tokio::spawn(read_events(response, 3));
    primary.notify("B", vec![NotificationGroup::images(vec![image(7)])]).await;
    let events = live.await.unwrap();
    assert_eq!(events.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(events[2].1["record"]["backupTime"], 7);
    assert_eq!(events[2].1["cursor"], 3);

    // Resume after event 2 (header), with the key in the query as a browser's EventSource sends it.
    let response = harness
        .http
        .get(format!("{stream_url}?api_key={}", harness.api_key))
        .header("Last-Event-ID", "2")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let resumed = tokio::spawn(read_events(response, 2));
    primary.notify("C", vec![NotificationGroup::jobs(vec![job(3, JobState::Done)])]).await;
    let events = resumed.await.unwrap();
    assert_eq!(events.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![3, 4]);

    // Filters apply to the stream too.
    let response = harness
        .http
        .get(format!("{stream_url}?object=JOB&after=1"))
        .header("X-NBWSS-API-Key", &harness.api_key)
        .send()
        .await
        .unwrap();
    let events = read_events(response, 2).await;
    assert_eq!(events.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![2, 4]);
    harness.endpoint.shutdown().await;
}

/// Liberal reception: records that differ from the guide's layout (an extra key, a null field, a string
/// where an integer is expected, a message without timeStamp) are stored as received, acknowledged once per
/// message id, flagged `conforms: false` with the reasons in the feed, and counted; conforming records
/// beside them are unaffected and the session carries on.
#[tokio::test]
async fn records_that_differ_from_the_guide_are_stored_acknowledged_and_flagged() {
    let harness = Harness::start().await;
    let mut primary = Primary::connect(&harness.endpoint, &harness.token("primary1")).await.unwrap();
    let conforming = serde_json::to_value(job(150, JobState::Done)).unwrap();
    let mut extra_key = serde_json::to_value(job(147, JobState::Active)).unwrap();
    extra_key["kilobytes"] = json!(2048);
    let mut null_field = serde_json::to_value(job(148, JobState::Active)).unwrap();
    null_field["policyName"] = Value::Null;
    let mut string_int = serde_json::to_value(job(149, JobState::Active)).unwrap();
    string_int["jobId"] = json!("149");
    let message = |id: &str, time_stamp: Option<i64>| {
        let mut message = json!({"version": "1.0", "id": id, "type": "NOTIFICATION", "subType": "REQUEST",
            "payload": [{"notificationType": "INFO", "object": "JOB",
                         "data": [extra_key, null_field, string_int, conforming]}]});
        if let Some(time_stamp) = time_stamp {
            message["timeStamp"] = json!(time_stamp);
        }
        message.to_string()
    };
    for _ in 0..2 {
        primary.send_text(message("ODD-1", Some(1_700_000_000))).await;
        let ack = within(primary.recv()).await.expect("an acknowledgement");
        assert_eq!((ack.id.as_str(), &ack.body), ("ODD-1", &Body::notification_ack()));
    }
    let page = harness.get_json("/api/v1/notifications").await;
    let stored = page["notifications"].as_array().unwrap();
    assert_eq!(stored.len(), 4, "stored once although sent twice: {page}");
    assert_eq!(stored[0]["record"]["kilobytes"], 2048, "unknown keys are kept");
    assert_eq!(stored[1]["record"]["policyName"], Value::Null, "stored as received");
    assert_eq!(stored[2]["record"]["jobId"], "149", "stored as received");
    let reasons: Vec<&Value> = stored.iter().map(|record| &record["reasons"]).collect();
    assert_eq!(
        reasons,
        [
            &json!(["kilobytes: is not a key of a JOB record (kept)"]),
            &json!(["policyName: must be a string, not null"]),
            &json!(["jobId: must be an integer, not a string"]),
            &Value::Null,
        ]
    );
    let conforms: Vec<&Value> = stored.iter().map(|record| &record["conforms"]).collect();
    assert_eq!(conforms, [&json!(false), &json!(false), &json!(false), &json!(true)]);

    // A message without timeStamp: acknowledged too, every record flagged with it.
    primary.send_text(message("ODD-2", None)).await;
    let ack = within(primary.recv()).await.expect("an acknowledgement");
    assert_eq!(ack.id, "ODD-2");
    let page = harness.get_json("/api/v1/notifications?after=4").await;
    let last = &page["notifications"][3];
    assert_eq!(last["conforms"], false);
    assert_eq!(last["reasons"], json!(["timeStamp: missing"]));

    // The session carries on.
    let ack = primary.notify("FINE-1", vec![NotificationGroup::jobs(vec![job(151, JobState::Done)])]).await;
    assert_eq!(ack.id, "FINE-1");
    let metrics = harness.metrics().await;
    assert!(metrics.contains("nbwss_endpoint_nonconforming_records_total 7"), "{metrics}");
    assert!(metrics.contains("nbwss_endpoint_notification_records_total 9"), "{metrics}");
    harness.endpoint.shutdown().await;
}

#[tokio::test]
async fn notifications_arriving_together_are_each_committed_before_their_ack_and_stored_once() {
    let harness = Harness::start().await;
    let mut primary = Primary::connect(&harness.endpoint, &harness.token("primary1")).await.unwrap();
    let message = |n: i64| {
        let records = (3 * n + 1..=3 * n + 3).map(|id| job(id, JobState::Done)).collect();
        nbwss_protocol::Message::with_id(
            format!("M{n}"),
            Body::NotificationRequest(vec![NotificationGroup::jobs(records)]),
        )
    };
    // Thirty messages written back to back, without waiting for any acknowledgement (the committer takes
    // those waiting together), then the first ten again, as a service resends what it saw no ack for.
    let sent: Vec<i64> = (0..30).chain(0..10).collect();
    for n in &sent {
        primary.send(&message(*n)).await;
    }
    let store = harness.endpoint.store();
    let query = nbwss_endpoint::FeedQuery { after: 0, limit: 1_000, primary: None, object: None };
    let mut acknowledged = Vec::new();
    while acknowledged.len() < sent.len() {
        let ack = within(primary.recv()).await.expect("an acknowledgement");
        assert_eq!(ack.body, Body::notification_ack());
        // Committed before acknowledged: the message's records are in the store when its ack arrives.
        let n: i64 = ack.id[1..].parse().unwrap();
        let stored: Vec<i64> = store
            .notifications(&query)
            .unwrap()
            .iter()
            .filter(|notification| notification.message_id == ack.id)
            .map(|notification| notification.record["jobId"].as_i64().unwrap())
            .collect();
        assert_eq!(stored, [3 * n + 1, 3 * n + 2, 3 * n + 3], "{} acknowledged before its commit", ack.id);
        acknowledged.push(n);
    }
    assert_eq!(acknowledged, sent, "every message acknowledged, in the order it came");
    let job_ids: Vec<i64> = store
        .notifications(&query)
        .unwrap()
        .iter()
        .map(|notification| notification.record["jobId"].as_i64().unwrap())
        .collect();
    assert_eq!(job_ids, (1..=90).collect::<Vec<_>>(), "every record once, in order");
    let metrics = harness.metrics().await;
    assert!(metrics.contains("nbwss_endpoint_notification_duplicates_total 10"), "{metrics}");
    assert!(metrics.contains("nbwss_endpoint_notification_records_total 90"), "{metrics}");
    harness.endpoint.shutdown().await;
}

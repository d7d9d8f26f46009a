//! The event log as the Perl snippets read and write it (`snippets/perl/eventlogs/`): the journal rendered
//! as notifications, filters, and posted notifications.

use nbwss_emulator::EmulatorConfig;
use serde_json::json;

use crate::util::{encode, eventually, vnd, Server};

#[tokio::test]
async fn the_journal_as_notifications_and_posted_ones() {
    let server =
        Server::start_with(EmulatorConfig { failure_rate: 1.0, ..EmulatorConfig::for_tests() }).await;
    let token = server.login().await;
    let auth = [("Authorization", token.as_str())];

    // Every journal event is a notification, newest first.
    let all = server.send("GET", "/eventlog/notifications?page[limit]=100", &auth, None).await.json();
    let journal = server.handle.events().len();
    assert_eq!(all["meta"]["pagination"]["count"], journal);
    let first = &all["data"][0];
    assert_eq!(first["type"], "notifications");
    for key in [
        "version",
        "priority",
        "severity",
        "createdDateTime",
        "insertionDateTime",
        "displayString",
        "notificationType",
        "producerName",
        "producerId",
        "producerType",
        "producerSubType",
        "namespace",
    ] {
        assert!(first["attributes"][key].is_string(), "{key}: {first}");
    }

    // A failed backup is an ERROR notification naming the job.
    let ids = server.handle.start_backup("Standard_DB", None).unwrap();
    let filter = format!("severity eq 'ERROR' and extendedAttributes/jobId eq '{}'", ids[0]);
    let failed = eventually("the failure notification", || async {
        let page = server
            .send("GET", &format!("/eventlog/notifications?filter={}", encode(&filter)), &auth, None)
            .await
            .json();
        page["data"].as_array().filter(|data| !data.is_empty()).map(|data| data[0].clone())
    })
    .await;
    assert_eq!(failed["attributes"]["notificationType"], "JOB_DONE");
    assert_eq!(failed["attributes"]["priority"], "HIGH");
    assert_ne!(failed["attributes"]["extendedAttributes"]["status"], "0");

    // post_notifications.pl: a payload file of notificationRequests, version 4.0.
    let payload = json!({"data": [{"type": "notificationRequest", "attributes": {
        "version": "1.0", "priority": "MEDIUM", "severity": "WARNING", "createdDateTime": "2026-01-02T03:04:05Z",
        "notificationType": "CUSTOM_CHECK", "producerName": "monitor.example.com", "producerId": "m-1",
        "producerType": "SCRIPT", "extendedAttributes": {"check": "disk", "value": "91%"}}}]});
    let reply = server
        .send(
            "POST",
            "/eventlog/notifications",
            &[("Authorization", &token), ("Content-Type", &vnd("4.0"))],
            Some(&payload.to_string()),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let created = reply.json();
    assert_eq!(created["data"][0]["type"], "notificationResponse");
    assert_eq!(created["data"][0]["attributes"]["createdDateTime"], "2026-01-02T03:04:05.000Z");
    let id = created["data"][0]["id"].as_str().unwrap().to_owned();
    let found = server
        .send(
            "GET",
            &format!("/eventlog/notifications?filter={}", encode(&format!("id eq '{id}'"))),
            &auth,
            None,
        )
        .await
        .json();
    assert_eq!(found["data"][0]["attributes"]["extendedAttributes"]["value"], "91%");
    let typed = server
        .send(
            "GET",
            &format!("/eventlog/notifications?filter={}", encode("notificationType eq 'CUSTOM_CHECK'")),
            &auth,
            None,
        )
        .await
        .json();
    assert_eq!(typed["data"].as_array().unwrap().len(), 1);

    for bad in [
        json!({"data": []}),
        json!({"data": [{"type": "notificationRequest", "attributes": {"version": "1.0"}}]}),
        json!({"data": [{"type": "notificationRequest", "attributes": {"version": "1.0", "createdDateTime": "yesterday",
            "notificationType": "X", "producerName": "p", "producerId": "i", "producerType": "t", "extendedAttributes": {}}}]}),
        json!({"data": [{"type": "notificationRequest", "attributes": {"version": "1.0", "severity": "LOUD",
            "createdDateTime": "2026-01-02T03:04:05Z", "notificationType": "X", "producerName": "p", "producerId": "i",
            "producerType": "t", "extendedAttributes": {}}}]}),
    ] {
        server.call("POST", "/eventlog/notifications", &token, &bad).await.assert_error(400);
    }
    server.send("GET", "/eventlog/notifications?filter=nope%20eq%201", &auth, None).await.assert_error(400);
}

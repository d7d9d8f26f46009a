//! A server group's notification backlog against what administrators do mid-traffic: deactivate, delete and
//! re-add a server, renew its certificate, leave a group behind while another keeps acknowledging.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nbwss_protocol::{Body, Codec, HostObject, HostState, HostUpdate, Message};
use nbwss_service::notify::{open_outbox, Outbox, Record};
use nbwss_service::AdminClient;

use crate::util::*;

fn jobs(ids: std::ops::RangeInclusive<i64>) -> Vec<Record> {
    ids.map(job_record).collect()
}

fn job_ids(message: &Message) -> Vec<i64> {
    let Body::NotificationRequest(groups) = &message.body else { return Vec::new() };
    groups
        .iter()
        .flat_map(|group| match group {
            nbwss_protocol::NotificationGroup::Jobs { records, .. } => {
                records.iter().map(|job| job.job_id).collect::<Vec<_>>()
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

/// NOTIFICATION REQUESTs received: message id and the job ids it carried.
type Received = Arc<Mutex<Vec<(String, Vec<i64>)>>>;

/// What one endpoint received: every NOTIFICATION REQUEST over every connection, acknowledged (unless
/// told not to), as an endpoint that de-duplicates by message id stores it.
struct Feed {
    received: Received,
    acknowledging: Arc<AtomicBool>,
    current: Arc<Mutex<Option<Arc<Peer>>>>,
}

impl Feed {
    fn follow(endpoint: Arc<TestEndpoint>) -> Self {
        let received: Received = Arc::default();
        let acknowledging = Arc::new(AtomicBool::new(true));
        let current = Arc::new(Mutex::new(None));
        let (log, acks, connected) = (received.clone(), acknowledging.clone(), current.clone());
        tokio::spawn(async move {
            let codec = Codec::default();
            while let Some(peer) = endpoint.wait_peer().await {
                *connected.lock().unwrap() = Some(peer.clone());
                while let Some(message) = peer.next_message().await {
                    if !matches!(message.body, Body::NotificationRequest(_)) {
                        continue;
                    }
                    log.lock().unwrap().push((message.id.clone(), job_ids(&message)));
                    if acks.load(Ordering::SeqCst) {
                        peer.send_text(
                            &codec.encode(&Message::with_id(message.id, Body::notification_ack())),
                        );
                    }
                }
            }
        });
        Self { received, acknowledging, current }
    }

    /// Closes the current connection from the endpoint's side.
    fn close(&self, code: u16) {
        self.current.lock().unwrap().as_ref().expect("a connection").close(code);
    }

    /// The records stored, de-duplicated by message id (as the endpoint stores them), in arrival order.
    fn records(&self) -> Vec<i64> {
        let mut seen = HashMap::new();
        let mut records = Vec::new();
        for (id, ids) in self.received.lock().unwrap().iter() {
            if seen.insert(id.clone(), ()).is_none() {
                records.extend(ids);
            }
        }
        records
    }

    fn acknowledge(&self, acknowledging: bool) {
        self.acknowledging.store(acknowledging, Ordering::SeqCst);
    }

    async fn wait_for(&self, count: usize) {
        wait_until(&format!("{count} records"), || async { self.records().len() >= count }).await;
    }
}

struct Setup {
    dir: tempfile::TempDir,
    service: nbwss_service::ServiceHandle,
    client: AdminClient,
    outbox: Outbox,
    second: Arc<TestEndpoint>,
    first_feed: Feed,
    second_feed: Feed,
}

impl Setup {
    /// `validatehost` of the second server: the certificate its endpoint presents now.
    async fn validate_second(&self) -> HostObject {
        self.client
            .validate_host(&HostObject {
                host_name: "second".into(),
                url: self.second.url.clone(),
                group_id: "group2".into(),
                priority: 1,
                ..HostObject::default()
            })
            .await
            .unwrap()
    }
}

/// `update` of the second server that pins `certificate`, changing nothing else.
fn renewal_of_second(certificate: Option<String>) -> HostUpdate {
    HostUpdate { host_name: "second".into(), state: None, location: None, token: None, certificate }
}

/// A service with two groups on two endpoints, both connected and acknowledging; `outbox` writes from
/// outside the service, as `nbwss notify` does.
async fn two_groups(max_records: usize) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = certificate();
    let properties = nbwss_protocol::Properties {
        notification_scheduled_rate: Duration::from_secs(1),
        notification_batch_size: 4,
        outbox_max_records: max_records,
        ..fast_properties()
    };
    let (service, client) =
        start(config(dir.path(), "https://127.0.0.1:9/netbackup", &cert), properties.clone()).await;
    let first = Arc::new(TestEndpoint::start(Mode::Valid).await);
    let second = Arc::new(TestEndpoint::start(Mode::Valid).await);
    let (first_feed, second_feed) = (Feed::follow(first.clone()), Feed::follow(second.clone()));
    add(&client, &first, "first", "group1", 1, "t1").await;
    add(&client, &second, "second", "group2", 1, "t2").await;
    wait_connection(&client, "first", true).await;
    wait_connection(&client, "second", true).await;
    let outbox = open_outbox(dir.path(), &properties).unwrap();
    wait_until("both groups registered", || async { outbox.groups().unwrap() == ["group1", "group2"] }).await;
    Setup { dir, service, client, outbox, second, first_feed, second_feed }
}

/// Deactivating a group's only server while the other group keeps acknowledging, then activating it again:
/// the group receives every record once, in order (the first version delivered none of them).
#[tokio::test]
async fn a_deactivated_group_gets_every_record_once_when_activated_again() {
    let setup = two_groups(1_000_000).await;
    setup.outbox.append(&jobs(1..=5)).unwrap();
    setup.first_feed.wait_for(5).await;
    setup.second_feed.wait_for(5).await;

    setup.client.update("second", HostState::Deactivated).await.unwrap();
    wait_connection(&setup.client, "second", false).await;
    for batch in [6..=10, 11..=20, 21..=30] {
        setup.outbox.append(&jobs(batch)).unwrap();
    }
    setup.first_feed.wait_for(30).await;
    assert_eq!(setup.second_feed.records(), (1..=5).collect::<Vec<_>>(), "nothing while deactivated");
    assert_eq!(setup.outbox.record_count().unwrap(), 25, "group2's backlog is kept");

    setup.client.update("second", HostState::Activated).await.unwrap();
    setup.second_feed.wait_for(30).await;
    wait_until("an empty outbox", || async { setup.outbox.record_count().unwrap() == 0 }).await;
    assert_eq!(setup.first_feed.records(), (1..=30).collect::<Vec<_>>());
    assert_eq!(setup.second_feed.records(), (1..=30).collect::<Vec<_>>(), "every record once, in order");
    setup.service.shutdown().await;
}

/// Delete and add again (the only way to accept a renewed certificate in NetBackup's own API) while the
/// other group keeps acknowledging, with a message sent and not acknowledged before the delete: every
/// record arrives exactly once, whenever the pruning runs.
#[tokio::test]
async fn delete_and_add_again_with_a_new_certificate_delivers_every_record_once() {
    let setup = two_groups(1_000_000).await;
    setup.second_feed.acknowledge(false);
    setup.outbox.append(&jobs(1..=3)).unwrap();
    setup.first_feed.wait_for(3).await;
    setup.second_feed.wait_for(3).await;

    setup.client.delete("second").await.unwrap();
    wait_connection(&setup.client, "first", true).await;
    for batch in [4..=10, 11..=25] {
        let end = *batch.end() as usize;
        setup.outbox.append(&jobs(batch)).unwrap();
        setup.first_feed.wait_for(end).await;
    }
    setup.second.rotate_certificate();
    setup.second_feed.acknowledge(true);
    add(&setup.client, &setup.second, "second", "group2", 1, "t2").await;
    setup.second_feed.wait_for(25).await;
    wait_until("an empty outbox", || async { setup.outbox.record_count().unwrap() == 0 }).await;
    assert_eq!(setup.second_feed.records(), (1..=25).collect::<Vec<_>>(), "every record once, in order");
    let metrics = setup.service.metrics().encode();
    assert!(!metrics.contains("nbwss_notification_released_records_total{"), "{metrics}");
    setup.service.shutdown().await;
}

/// A group left behind (its server deactivated) does not hold back the group that keeps acknowledging
/// beyond `outbox.maxRecords`: at the cap, the records the first group acknowledged are released for the
/// second, loudly (counted), and the outbox never holds more than the cap. The second group, back, gets
/// what is left, each record once and in order.
#[tokio::test]
async fn a_group_that_keeps_acknowledging_is_not_held_back_beyond_the_cap() {
    let setup = two_groups(20).await;
    setup.client.update("second", HostState::Deactivated).await.unwrap();
    wait_connection(&setup.client, "second", false).await;
    for start in (1..=100).step_by(10) {
        let batch = start..=start + 9;
        setup.outbox.append(&jobs(batch.clone())).unwrap();
        setup.first_feed.wait_for(*batch.end() as usize).await;
        wait_until("group1's acknowledgements committed", || async {
            let stats = setup.outbox.stats(0).unwrap();
            stats
                .iter()
                .any(|group| group.group == "group1" && group.depth == 0 && group.unacked_messages == 0)
        })
        .await;
        assert!(setup.outbox.record_count().unwrap() <= 20);
    }
    assert_eq!(setup.first_feed.records(), (1..=100).collect::<Vec<_>>());
    let released = setup
        .outbox
        .metrics()
        .released_records
        .get_or_create(&nbwss_service::notify::ReleaseLabel::cap("group2"))
        .get();
    assert_eq!(released, 80, "all but the 20 newest");

    setup.client.update("second", HostState::Activated).await.unwrap();
    let kept = 100 - released as usize;
    setup.second_feed.wait_for(kept).await;
    wait_until("an empty outbox", || async { setup.outbox.record_count().unwrap() == 0 }).await;
    let second = setup.second_feed.records();
    assert_eq!(second, ((100 - kept as i64 + 1)..=100).collect::<Vec<_>>(), "the newest, once, in order");
    setup.service.shutdown().await;
}

/// A renewed endpoint certificate: the connection fails with the presented certificate listed, records
/// pile up meanwhile; `update` with the accepted certificate re-pins it in place, and the backlog arrives
/// once. The server keeps its state and credential.
#[tokio::test]
async fn a_renewed_certificate_accepted_by_update_keeps_the_backlog() {
    let setup = two_groups(1_000_000).await;
    let before = listed(&setup.client, "second").await;
    setup.outbox.append(&jobs(1..=2)).unwrap();
    setup.second_feed.wait_for(2).await;

    // The live connection keeps its TLS session; the endpoint restarts with the new certificate.
    setup.second.rotate_certificate();
    setup.second_feed.close(1001);
    let entry = wait_close_reason(&setup.client, "second", "CERTIFICATE_CHANGED").await;
    setup.outbox.append(&jobs(3..=12)).unwrap();
    setup.first_feed.wait_for(12).await;

    let validated = setup.validate_second().await;
    assert_eq!(
        entry["presentedCertificate"]["sha256Fingerprint"],
        validated.sha256_fingerprint.clone().unwrap()
    );
    let stale = renewal_of_second(before["certificate"].as_str().map(str::to_owned));
    let refused = setup.client.renew(&stale).await.unwrap_err();
    assert_eq!(refused.status(), Some(500), "the old certificate is not what the endpoint presents");
    let renewal = renewal_of_second(validated.certificate.clone());
    setup.client.renew(&renewal).await.unwrap();
    setup.second_feed.wait_for(12).await;
    wait_until("an empty outbox", || async { setup.outbox.record_count().unwrap() == 0 }).await;
    assert_eq!(setup.second_feed.records(), (1..=12).collect::<Vec<_>>());
    let after = listed(&setup.client, "second").await;
    assert_eq!(after["credentialId"], before["credentialId"]);
    assert_eq!(after["state"], "ACTIVATED");
    assert_eq!(after["sha256Fingerprint"], validated.sha256_fingerprint.unwrap());
    assert!(after.get("presentedCertificate").is_none(), "{after}");
    assert_eq!(after["tokenFingerprint"], before["tokenFingerprint"], "the token is kept");
    // Saving the same host again is refused, and says how to renew it instead.
    let again = HostObject {
        host_name: "second".into(),
        url: setup.second.url.clone(),
        group_id: "group2".into(),
        priority: 1,
        token: Some(nbwss_protocol::Secret::new("t2")),
        certificate: validated.certificate,
        ..HostObject::default()
    };
    let duplicate = setup.client.save(&again).await.unwrap_err();
    assert_eq!(duplicate.status(), Some(409));
    assert!(duplicate.to_string().contains("update it in place"), "{duplicate}");
    setup.service.shutdown().await;
}

/// An administrator at work while records keep coming: the second group's server is deactivated and
/// activated, deleted and saved again with a renewed certificate, renewed in place with `update`; the first
/// group's server is deactivated and activated. Every record reaches each group exactly once, in order.
#[tokio::test]
async fn an_administrator_changing_servers_mid_traffic_costs_no_notification() {
    const RECORDS: i64 = 300;
    let setup = two_groups(1_000_000).await;
    let outbox = open_outbox(setup.dir.path(), &nbwss_protocol::Properties::default()).unwrap();
    // The traffic: one record every 10 ms, as a busy primary server's notify scripts would enqueue them
    // (the pace is the scenario, not a wait for a condition).
    let writer = tokio::task::spawn_blocking(move || {
        for job_id in 1..=RECORDS {
            outbox.append(&[job_record(job_id)]).unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let (client, first, second) = (&setup.client, &setup.first_feed, &setup.second_feed);

    first.wait_for(20).await;
    client.update("second", HostState::Deactivated).await.unwrap();
    first.wait_for(60).await;
    client.update("second", HostState::Activated).await.unwrap();
    second.wait_for(60).await;

    client.delete("second").await.unwrap();
    first.wait_for(110).await;
    setup.second.rotate_certificate();
    add(client, &setup.second, "second", "group2", 1, "t2").await;
    second.wait_for(110).await;

    setup.second.rotate_certificate();
    second.close(1001);
    wait_close_reason(client, "second", "CERTIFICATE_CHANGED").await;
    let presented = setup.validate_second().await;
    client.renew(&renewal_of_second(presented.certificate)).await.unwrap();
    second.wait_for(160).await;

    client.update("first", HostState::Deactivated).await.unwrap();
    second.wait_for(220).await;
    client.update("first", HostState::Activated).await.unwrap();

    within("the traffic", writer).await.unwrap();
    first.wait_for(RECORDS as usize).await;
    second.wait_for(RECORDS as usize).await;
    wait_until("an empty outbox", || async { setup.outbox.record_count().unwrap() == 0 }).await;
    assert_eq!(first.records(), (1..=RECORDS).collect::<Vec<_>>(), "group1: every record once, in order");
    assert_eq!(second.records(), (1..=RECORDS).collect::<Vec<_>>(), "group2: every record once, in order");
    setup.service.shutdown().await;
}

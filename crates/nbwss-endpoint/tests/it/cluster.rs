//! Cluster mode against a real NATS server with JetStream (`NBWSS_TEST_NATS_URL`, default
//! `nats://127.0.0.1:4222`; `scripts/test` starts one when none answers). Every test uses a cluster name of
//! its own, so tests run in parallel and again without meeting each other's buckets and stream.

use nbwss_endpoint::{Cluster, ClusterConfig, ClusterCredentials, Endpoint, EndpointConfig, EndpointHandle};
use nbwss_protocol::{JobState, NotificationGroup, Secret};
use serde_json::Value;
use tempfile::TempDir;

use crate::notifications::job;
use crate::util::{echo, eventually, http_client, within, Primary};

/// Lease of the tests' replicas: renewed every second, so a takeover shows within about a second.
const LEASE_MS: u64 = 3_000;

/// The NATS server the tests use; fails (never skips) with what to start when none answers.
pub fn nats_url() -> String {
    let url = std::env::var("NBWSS_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let address = url.trim_start_matches("nats://").split(',').next().unwrap_or_default().to_owned();
    assert!(
        std::net::TcpStream::connect(&address).is_ok(),
        "no NATS server answers at {url}: start one with JetStream (`nats-server -js`, Debian package \
         nats-server; scripts/test starts one) or set NBWSS_TEST_NATS_URL"
    );
    url
}

/// One replica: an endpoint in cluster mode and an HTTPS client trusting its certificate.
pub struct Replica {
    pub endpoint: EndpointHandle,
    pub http: reqwest::Client,
    _dir: TempDir,
}

/// Three replicas of one cluster, an API key valid on all of them.
pub struct Replicas {
    pub replicas: Vec<Replica>,
    pub cluster: Cluster,
    pub api_key: String,
}

impl Replicas {
    pub async fn start(count: usize) -> Self {
        let url = nats_url();
        let name = format!("t{:016x}", rand::random::<u64>());
        let mut replicas = Vec::new();
        for index in 1..=count {
            let dir = tempfile::tempdir().unwrap();
            let mut config = EndpointConfig::new(dir.path());
            let mut cluster = ClusterConfig::new(url.clone(), format!("r{index}"));
            cluster.name = name.clone();
            cluster.lease_ms = LEASE_MS;
            config.cluster = Some(cluster);
            let endpoint = Endpoint::start(config).await.unwrap();
            let http = http_client(endpoint.certificate_pem());
            replicas.push(Replica { endpoint, http, _dir: dir });
        }
        let cluster = replicas[0].endpoint.cluster().unwrap().clone();
        let api_key = ClusterCredentials(&cluster).create_api_key("tests").await.unwrap();
        let replicas = Self { replicas, cluster, api_key };
        for index in 0..count {
            eventually(|| async { replicas.get(index, "/api/v1/primaries").await.status() == 200 }).await;
        }
        replicas
    }

    pub async fn token(&self, name: &str) -> Secret {
        let url = self.replicas[0].endpoint.websocket_url();
        ClusterCredentials(&self.cluster).create_token(name, "sg1", 1, &url).await.unwrap().token
    }

    /// Waits until every replica accepts `token` (its copy of the tokens bucket has it).
    pub async fn wait_token_everywhere(&self, name: &str) {
        for index in 0..self.replicas.len() {
            eventually(|| async {
                let list = self.get_json(index, "/api/v1/primaries").await;
                list["primaries"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["name"] == name && p["registered"] == true)
            })
            .await;
        }
    }

    pub async fn get(&self, index: usize, path: &str) -> reqwest::Response {
        let replica = &self.replicas[index];
        replica
            .http
            .get(format!("{}{path}", replica.endpoint.url()))
            .header("X-NBWSS-API-Key", &self.api_key)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, index: usize, path: &str) -> Value {
        let response = self.get(index, path).await;
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.unwrap()
    }

    pub async fn shutdown(self) {
        for replica in self.replicas {
            replica.endpoint.shutdown().await;
        }
    }
}

#[tokio::test]
async fn calls_through_every_replica_reach_the_primary() {
    let cluster = Replicas::start(3).await;
    let token = cluster.token("primary1").await;
    cluster.wait_token_everywhere("primary1").await;
    let primary = Primary::connect(&cluster.replicas[0].endpoint, &token).await.unwrap();
    tokio::spawn(primary.answer(echo));
    eventually(|| async { cluster.cluster.holder("primary1").await.unwrap().is_some_and(|r| r == "r1") })
        .await;
    for index in [0, 1, 2, 1, 2] {
        let path = format!("/api/v1/primaries/primary1/netbackup/admin/jobs?via={index}");
        let response = cluster.get(index, &path).await;
        assert_eq!(response.status(), 200, "through replica {index}");
        assert_eq!(response.headers()["x-test-echo"], "yes");
        let echoed: Value = response.json().await.unwrap();
        assert_eq!(echoed["uri"], format!("/netbackup/admin/jobs?via={index}"));
    }
    // A NetBackup status passes through a forwarding replica untouched.
    let replica = &cluster.replicas[2];
    let response = replica
        .http
        .get(format!("{}/api/v1/primaries/primary1/netbackup/admin/jobs/5", replica.endpoint.url()))
        .header("X-NBWSS-API-Key", &cluster.api_key)
        .header("X-Test-Status", "404")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let metrics = cluster.replicas[0]
        .http
        .get(format!("{}/metrics", cluster.replicas[0].endpoint.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("nbwss_endpoint_cluster_forwarded_in_calls_total 5"), "{metrics}");
    let health: Value = replica
        .http
        .get(format!("{}/healthz", replica.endpoint.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health, serde_json::json!({"status": "ok", "replica": "r3", "nats": "connected"}));
    // A primary server with a token but no session anywhere: 503 from every replica; unknown: 404.
    cluster.token("primary2").await;
    cluster.wait_token_everywhere("primary2").await;
    for index in 0..3 {
        let response = cluster.get(index, "/api/v1/primaries/primary2/netbackup/admin/jobs").await;
        assert_eq!(response.status(), 503);
        let response = cluster.get(index, "/api/v1/primaries/nobody/netbackup/admin/jobs").await;
        assert_eq!(response.status(), 404);
    }
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_token_or_key_revoked_on_one_replica_is_refused_by_all() {
    let cluster = Replicas::start(3).await;
    let token = cluster.token("primary1").await;
    cluster.wait_token_everywhere("primary1").await;
    let mut primary = Primary::connect(&cluster.replicas[1].endpoint, &token).await.unwrap();
    // Revoked through another replica's connection to the cluster.
    let other = cluster.replicas[2].endpoint.cluster().unwrap();
    assert!(ClusterCredentials(other).revoke_token("primary1").await.unwrap());
    assert!(primary.closed_with().await.is_some(), "the session of a revoked token is closed");
    for replica in &cluster.replicas {
        eventually(|| async {
            matches!(Primary::handshake(&replica.endpoint, &token).await, crate::util::Connected::Refused(_))
        })
        .await;
    }
    assert!(ClusterCredentials(other).revoke_api_key("tests").await.unwrap());
    for index in 0..3 {
        eventually(|| async { cluster.get(index, "/api/v1/primaries").await.status() == 401 }).await;
    }
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_primary_reconnecting_to_another_replica_ends_with_one_live_session() {
    let cluster = Replicas::start(3).await;
    let token = cluster.token("primary1").await;
    cluster.wait_token_everywhere("primary1").await;
    let mut old = Primary::connect(&cluster.replicas[0].endpoint, &token).await.unwrap();
    eventually(|| async { cluster.cluster.holder("primary1").await.unwrap().is_some_and(|r| r == "r1") })
        .await;
    // The old connection lingers (its TCP is still up) while the primary server connects to replica 2.
    let new = Primary::connect(&cluster.replicas[1].endpoint, &token).await.unwrap();
    tokio::spawn(new.answer(echo));
    assert!(old.closed_with().await.is_some(), "the old session is closed once the new one holds the lease");
    eventually(|| async { cluster.cluster.holder("primary1").await.unwrap().is_some_and(|r| r == "r2") })
        .await;
    for index in 0..3 {
        eventually(|| async {
            let list = cluster.get_json(index, "/api/v1/primaries").await;
            let entry =
                list["primaries"].as_array().unwrap().iter().find(|p| p["name"] == "primary1").cloned();
            entry.is_some_and(|entry| entry["connected"] == true && entry["heldBy"] == "r2")
        })
        .await;
        let response = cluster.get(index, "/api/v1/primaries/primary1/netbackup/admin/jobs").await;
        assert_eq!(response.status(), 200, "through replica {index}");
    }
    cluster.shutdown().await;
}

#[tokio::test]
async fn the_feed_read_from_alternating_replicas_yields_each_record_once_in_order() {
    let cluster = Replicas::start(3).await;
    let token = cluster.token("primary1").await;
    cluster.wait_token_everywhere("primary1").await;
    let mut primary = Primary::connect(&cluster.replicas[0].endpoint, &token).await.unwrap();
    let mut job_id = 0;
    for message in 0..5 {
        let groups = vec![NotificationGroup::jobs(
            (0..3)
                .map(|_| {
                    job_id += 1;
                    job(job_id, JobState::Active)
                })
                .collect(),
        )];
        let id = format!("message-{message}");
        let ack = within(primary.notify(&id, groups.clone())).await;
        assert_eq!(ack.id, id);
        if message == 2 {
            // A resend (the service lost the first acknowledgement): acknowledged again, stored once.
            let again = within(primary.notify(&id, groups)).await;
            assert_eq!(again.id, id);
        }
    }
    assert_eq!(cluster.cluster.stream_messages().await.unwrap(), 15, "the stream stores a resend once");
    for index in 0..3 {
        eventually(|| async {
            let page = cluster.get_json(index, "/api/v1/notifications?limit=100").await;
            page["notifications"].as_array().unwrap().len() == 15
        })
        .await;
    }
    let mut after = 0;
    let mut jobs = Vec::new();
    let mut cursors = Vec::new();
    for turn in 0.. {
        let page = cluster.get_json(turn % 3, &format!("/api/v1/notifications?after={after}&limit=4")).await;
        let records = page["notifications"].as_array().unwrap();
        if records.is_empty() {
            break;
        }
        for record in records {
            cursors.push(record["cursor"].as_i64().unwrap());
            jobs.push(record["record"]["jobId"].as_i64().unwrap());
        }
        after = page["nextCursor"].as_i64().unwrap();
    }
    assert_eq!(jobs, (1..=15).collect::<Vec<i64>>(), "each record once, in order");
    assert!(cursors.windows(2).all(|pair| pair[0] < pair[1]), "{cursors:?}");
    cluster.shutdown().await;
}

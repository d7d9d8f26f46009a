//! High availability of the endpoint's cluster mode, as the NetBackup administrator deploys it: three
//! `nbwss endpoint run` replicas on one NATS JetStream (`NBWSS_TEST_NATS_URL`, default
//! `nats://127.0.0.1:4222`; `scripts/test` starts one when none answers) and one service whose server group
//! lists all three by priority. The holder of the primary server's session is SIGKILLed during a steady
//! stream of relayed calls and backups: the service fails over to the next replica, calls succeed through
//! every surviving replica, and every job and image event reaches the stream exactly once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nbwss_emulator::{Emulator, EmulatorConfig};
use nbwss_endpoint::{Cluster, ClusterConfig, FeedQuery, Store, GENERATED_CERT_FILE};
use nbwss_protocol::{ConnectionState, HostObject};
use nbwss_service::AdminClient;
use serde_json::Value;

use crate::durability::{all_delivered, assert_exactly_once, journal, write_service_config};
use crate::util::{eventually, free_port, nbwss, Process};

const PRIMARY: &str = "primary-ha";
const REPLICAS: usize = 3;

/// The NATS server the test uses; fails (never skips) with what to start when none answers.
fn nats_url() -> String {
    let url = std::env::var("NBWSS_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let address = url.trim_start_matches("nats://").split(',').next().unwrap_or_default().to_owned();
    assert!(
        std::net::TcpStream::connect(&address).is_ok(),
        "no NATS server answers at {url}: start one with JetStream (`nats-server -js`, Debian package \
         nats-server; scripts/test starts one) or set NBWSS_TEST_NATS_URL"
    );
    url
}

struct Replica {
    config: PathBuf,
    data_dir: PathBuf,
    port: u16,
    log: PathBuf,
}

impl Replica {
    fn start(&self) -> Process {
        Process::spawn(&["endpoint", "run", "--config", self.config.to_str().unwrap()], &self.log)
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

fn write_replica_config(dir: &Path, index: usize, nats_url: &str, cluster: &str) -> Replica {
    let port = free_port();
    let data_dir = dir.join(format!("replica{index}"));
    let config = dir.join(format!("replica{index}.toml"));
    let mut settings = ClusterConfig::new(nats_url, format!("replica{index}"));
    settings.name = cluster.to_owned();
    settings.lease_ms = 3_000;
    let text = format!(
        "data_dir = \"{}\"\nbind = \"127.0.0.1:{port}\"\n\n[cluster]\n{}",
        data_dir.display(),
        toml::to_string(&settings).unwrap()
    );
    std::fs::write(&config, text).unwrap();
    Replica { config, data_dir, port, log: dir.join(format!("replica{index}.log")) }
}

/// Every record in the local copy of the stream kept by `replica`.
fn notifications(replica: &Replica, cluster: &str) -> Vec<(String, Value)> {
    let Ok(store) = Store::open(&replica.data_dir.join("cluster").join(cluster)) else { return Vec::new() };
    store
        .notifications(&FeedQuery { after: 0, limit: 1_000_000, primary: None, object: None })
        .unwrap_or_default()
        .into_iter()
        .map(|notification| (notification.object, notification.record))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_holding_replica_fails_over_and_loses_nothing() {
    let nats_url = nats_url();
    let cluster_name = format!("ha{:016x}", rand::random::<u64>());
    let dir = tempfile::tempdir().unwrap();
    let replicas: Vec<Replica> = (1..=REPLICAS)
        .map(|index| write_replica_config(dir.path(), index, &nats_url, &cluster_name))
        .collect();
    let cluster = Cluster::connect(&{
        let mut settings = ClusterConfig::new(nats_url.clone(), "test");
        settings.name = cluster_name.clone();
        settings
    })
    .await
    .unwrap();

    // Token and API key through the command line, against the cluster named in the configuration.
    let config = replicas[0].config.to_str().unwrap();
    let url = format!("wss://127.0.0.1:{}/nbwss", replicas[0].port);
    let token = nbwss(
        &["endpoint", "token", "create", PRIMARY, "--group", "g1", "--url", &url, "--config", config],
        "",
    );
    assert_eq!(token.status, 0, "{}", token.stderr);
    let details: Value = serde_json::from_str(&token.stdout).unwrap();
    let key = nbwss(&["endpoint", "apikey", "create", "app", "--config", config], "");
    assert_eq!(key.status, 0, "{}", key.stderr);
    let api_key = key.stdout.trim().to_owned();

    let mut processes: Vec<Option<Process>> = replicas.iter().map(|replica| Some(replica.start())).collect();
    let mut client = reqwest::Client::builder().tls_built_in_root_certs(false);
    for replica in &replicas {
        let pem = eventually("the replica's certificate", || async {
            let pem = std::fs::read(replica.data_dir.join(GENERATED_CERT_FILE)).ok()?;
            let healthy = reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(&pem).ok()?)
                .build()
                .ok()?
                .get(format!("{}/healthz", replica.url()))
                .send()
                .await
                .ok()?;
            healthy.status().is_success().then_some(pem)
        })
        .await;
        client = client.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    }
    let client = client.build().unwrap();

    // The service: one server group listing every replica, priorities 1..3, the same token.
    let emulator = Arc::new(Emulator::start(EmulatorConfig::for_tests()).await.unwrap());
    let service_dir = dir.path().join("service");
    write_service_config(dir.path(), &service_dir, &emulator);
    let service_config = dir.path().join("service.toml");
    let _service = Process::spawn(
        &["service", "run", "--config", service_config.to_str().unwrap()],
        &dir.path().join("service.log"),
    );
    let admin = eventually("the service's admin API", || async {
        let client = AdminClient::from_data_dir(&service_dir).ok()?;
        client.list().await.ok()?;
        Some(client)
    })
    .await;
    for (index, replica) in replicas.iter().enumerate() {
        let mut host = HostObject::from_value(&details).unwrap();
        host.host_name = format!("replica{}", index + 1);
        host.url = format!("wss://127.0.0.1:{}/nbwss", replica.port);
        host.priority = i64::try_from(index + 1).unwrap();
        let validated = eventually("the replica to answer validatehost", || async {
            admin.validate_host(&host).await.ok()
        })
        .await;
        host.certificate = validated.certificate;
        admin.save(&host).await.unwrap();
    }
    let holder = |expected: Option<&'static str>| {
        let cluster = cluster.clone();
        async move {
            let holder = cluster.holder(PRIMARY).await.ok()??;
            expected.is_none_or(|expected| expected != holder).then_some(holder)
        }
    };
    let first = eventually("a replica to hold the primary server's session", || holder(None)).await;
    assert_eq!(first, "replica1", "the service connects to the group's first server by priority");

    let call = |index: usize| {
        let request = client
            .get(format!("{}/api/v1/primaries/{PRIMARY}/netbackup/ping", replicas[index].url()))
            .header("X-NBWSS-API-Key", &api_key);
        async move { request.send().await.map(|response| response.status().as_u16()).unwrap_or(0) }
    };
    for index in 0..REPLICAS {
        assert_eq!(call(index).await, 200, "through replica{}", index + 1);
    }

    // A first backup shows that detection has passed its silent baseline; events count from here.
    let policies = emulator.policy_names();
    let warm_up = i64::try_from(emulator.start_backup(&policies[0], None).unwrap()[0]).unwrap();
    eventually("the first notification", || async {
        notifications(&replicas[1], &cluster_name)
            .iter()
            .any(|(_, record)| record["jobId"] == warm_up)
            .then_some(())
    })
    .await;
    let journal_start = emulator.events().len();

    // The steady stream of backups, and of relayed calls through the replicas that will survive.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let backups = {
        let emulator = Arc::clone(&emulator);
        let policies = policies.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let mut started = 0;
            let mut ticker = tokio::time::interval(Duration::from_millis(300));
            for policy in policies.iter().cycle() {
                tokio::select! {
                    _ = stopped.changed() => break,
                    _ = ticker.tick() => {}
                }
                if emulator.start_backup(policy, None).is_ok() {
                    started += 1;
                }
            }
            started
        })
    };

    let statuses: Arc<std::sync::Mutex<Vec<(Instant, u16)>>> = Arc::default();
    let calls = {
        let mut stopped = stopped.clone();
        let statuses = statuses.clone();
        let requests: Vec<reqwest::RequestBuilder> = (1..REPLICAS)
            .map(|index| {
                client
                    .get(format!("{}/api/v1/primaries/{PRIMARY}/netbackup/ping", replicas[index].url()))
                    .header("X-NBWSS-API-Key", &api_key)
            })
            .collect();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(50));
            for request in requests.iter().cycle() {
                tokio::select! {
                    _ = stopped.changed() => break,
                    _ = ticker.tick() => {}
                }
                let status = request
                    .try_clone()
                    .unwrap()
                    .send()
                    .await
                    .map_or(0, |response| response.status().as_u16());
                statuses.lock().unwrap().push((Instant::now(), status));
            }
        })
    };

    // Kill the holder once backups and calls run; the service fails over to the next server of the group.
    eventually("backups and calls in flight", || async {
        let answered = statuses.lock().unwrap().iter().any(|(_, status)| *status == 200);
        (answered && emulator.events().len() > journal_start + 5).then_some(())
    })
    .await;
    processes[0].take().unwrap().kill();
    let killed_at = Instant::now();
    let next = eventually("another replica to hold the session", || holder(Some("replica1"))).await;
    let failover = killed_at.elapsed();
    eventually("the service connected again", || async {
        let hosts = admin.list().await.ok()?;
        hosts.iter().any(|host| host.connection_state == Some(ConnectionState::Connected)).then_some(())
    })
    .await;
    // Every surviving replica relays again, and keeps doing so.
    for index in 1..REPLICAS {
        eventually("calls through a surviving replica", || async {
            (call(index).await == 200).then_some(())
        })
        .await;
    }
    let recovered_at = Instant::now();
    for round in 0..10 {
        for index in 1..REPLICAS {
            assert_eq!(call(index).await, 200, "round {round} through replica{}", index + 1);
        }
    }
    eventually("a steady call answered after the failover", || async {
        let statuses = statuses.lock().unwrap();
        statuses.iter().any(|(at, status)| *at > recovered_at && *status == 200).then_some(())
    })
    .await;
    stop.send(true).unwrap();
    calls.await.unwrap();
    // Calls relayed through the surviving replicas: answered before the kill and after the failover; while
    // the session moves a call fails fast with the endpoint's own status, never a hang or a lost answer.
    let statuses = statuses.lock().unwrap().clone();
    assert!(statuses.iter().any(|(at, status)| *at < killed_at && *status == 200), "{statuses:?}");
    assert!(statuses.iter().all(|(_, status)| [200, 502, 503, 504].contains(status)), "{statuses:?}");
    let started = backups.await.unwrap();
    assert!(started >= 3, "the stream started {started} backups");

    // Every job ends, then everything it caused is in the stream, once, as every surviving replica reads it.
    let (jobs, images) = eventually("every job of the stream to finish", || async {
        let (created, done, images) = journal(&emulator, journal_start);
        created.is_subset(&done).then_some((created, images))
    })
    .await;
    for replica in &replicas[1..] {
        eventually(
            "every job's DONE and every image's CREATE in the replica's copy of the stream",
            || async { all_delivered(&notifications(replica, &cluster_name), &jobs, &images).then_some(()) },
        )
        .await;
    }
    let stored = notifications(&replicas[2], &cluster_name);
    assert_exactly_once(&stored, &jobs);
    let in_stream = cluster.stream_messages().await.unwrap();
    assert!(
        in_stream >= u64::try_from(stored.len()).unwrap(),
        "the replica's copy ({}) holds no more than the stream ({in_stream})",
        stored.len()
    );
    eprintln!("failover: {next} holds the session {} ms after replica1 was killed", failover.as_millis());
    drop(processes);
    Arc::try_unwrap(emulator).unwrap().shutdown().await;
}

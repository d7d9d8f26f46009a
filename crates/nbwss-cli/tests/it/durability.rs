//! Nothing lost: the service and the endpoint run as separate `nbwss ... run` processes and are killed
//! (SIGKILL) and restarted at random moments while a steady stream of backups runs on the emulator. When the
//! stream ends, every job and image event the emulator journaled is at the endpoint exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nbwss_emulator::{Emulator, EmulatorConfig, EmulatorHandle, EventKind};
use nbwss_endpoint::{FeedQuery, Store};
use nbwss_protocol::{ConnectionState, HostObject};
use nbwss_service::AdminClient;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::util::{eventually, free_port, Process};

const PRIMARY: &str = "primary-durable";

struct Layout {
    dir: tempfile::TempDir,
    endpoint_port: u16,
}

impl Layout {
    fn endpoint_dir(&self) -> PathBuf {
        self.dir.path().join("endpoint")
    }
    fn service_dir(&self) -> PathBuf {
        self.dir.path().join("service")
    }
    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    fn start_endpoint(&self) -> Process {
        let bind = format!("127.0.0.1:{}", self.endpoint_port);
        let dir = self.endpoint_dir();
        Process::spawn(
            &["endpoint", "run", "--data-dir", dir.to_str().unwrap(), "--bind", &bind],
            &self.log("endpoint"),
        )
    }

    fn start_service(&self) -> Process {
        let config = self.dir.path().join("service.toml");
        // admin.json is rewritten by the new process; remove the old one so waiting for it means something.
        let _ = std::fs::remove_file(self.service_dir().join("admin.json"));
        Process::spawn(&["service", "run", "--config", config.to_str().unwrap()], &self.log("service"))
    }

    async fn admin(&self) -> AdminClient {
        eventually("the service's admin API", || async {
            let client = AdminClient::from_data_dir(&self.service_dir()).ok()?;
            client.list().await.ok()?;
            Some(client)
        })
        .await
    }

    async fn wait_connected(&self) {
        let admin = self.admin().await;
        eventually("the service to connect to the endpoint", || async {
            let hosts = admin.list().await.ok()?;
            hosts.iter().any(|host| host.connection_state == Some(ConnectionState::Connected)).then_some(())
        })
        .await;
    }

    fn notifications(&self) -> Vec<(String, Value)> {
        let Ok(store) = Store::open(&self.endpoint_dir()) else { return Vec::new() };
        store
            .notifications(&FeedQuery { after: 0, limit: 1_000_000, primary: None, object: None })
            .unwrap_or_default()
            .into_iter()
            .map(|notification| (notification.object, notification.record))
            .collect()
    }
}

/// Writes `dir/service.toml`: a service with its data in `service_dir`, fast notification settings, serving
/// `emulator`.
pub(crate) fn write_service_config(dir: &Path, service_dir: &Path, emulator: &EmulatorHandle) {
    let ca = dir.join("primary-ca.pem");
    std::fs::write(&ca, emulator.certificate_pem()).unwrap();
    let config = format!(
        r#"data_dir = "{data}"

[primary]
base_url = "{base}"
ca_file = "{ca}"

[primary.credentials]
user_name = "admin"
password = "password"

[admin]
bind = "127.0.0.1:0"

[proxy]
use_environment = false

[log]
file = false

[properties]
"connectionInfo.period" = 1
"notification.scheduledRate" = 1
"notification.pollInterval" = 200
"notification.reconcileInterval" = 1
"notification.batchSize" = 5
"#,
        data = service_dir.display(),
        base = emulator.base_url(),
        ca = ca.display(),
    );
    std::fs::write(dir.join("service.toml"), config).unwrap();
}

/// Job ids and image ids the emulator journaled from `from` on.
pub(crate) fn journal(
    emulator: &EmulatorHandle,
    from: usize,
) -> (BTreeSet<i64>, BTreeSet<i64>, BTreeSet<String>) {
    let mut created = BTreeSet::new();
    let mut done = BTreeSet::new();
    let mut images = BTreeSet::new();
    for event in emulator.events_since(from) {
        match event.kind {
            EventKind::JobCreated(job) => {
                created.insert(i64::try_from(job.job_id).unwrap());
            }
            EventKind::JobDone(job) => {
                done.insert(i64::try_from(job.job_id).unwrap());
            }
            EventKind::ImageCreated(image) => {
                images.insert(image.backup_id);
            }
            _ => {}
        }
    }
    (created, done, images)
}

/// An endpoint and a service, each its own `nbwss ... run` process, the service serving `emulator` and
/// connected to the endpoint (saved as a WebSocket server of group g1).
async fn start_connected(emulator: &EmulatorHandle) -> (Layout, Process, Process) {
    let layout = Layout { dir: tempfile::tempdir().unwrap(), endpoint_port: free_port() };
    let websocket_url = format!("wss://127.0.0.1:{}/nbwss", layout.endpoint_port);
    let details =
        Store::open(&layout.endpoint_dir()).unwrap().create_token(PRIMARY, "g1", 1, &websocket_url).unwrap();
    write_service_config(layout.dir.path(), &layout.service_dir(), emulator);
    let endpoint = layout.start_endpoint();
    let service = layout.start_service();
    let admin = layout.admin().await;
    let mut host = HostObject::from_value(&details.to_value()).unwrap();
    let validated =
        eventually("the endpoint to answer validatehost", || async { admin.validate_host(&host).await.ok() })
            .await;
    host.certificate = validated.certificate;
    admin.save(&host).await.unwrap();
    layout.wait_connected().await;
    (layout, endpoint, service)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_service_or_the_endpoint_loses_nothing() {
    let emulator = Arc::new(Emulator::start(EmulatorConfig::for_tests()).await.unwrap());
    let (layout, mut endpoint, mut service) = start_connected(&emulator).await;

    // A first backup shows that detection has passed its silent baseline; events count from here.
    let policies = emulator.policy_names();
    let warm_up = emulator.start_backup(&policies[0], None).unwrap()[0];
    eventually("the first notification", || async {
        layout
            .notifications()
            .iter()
            .any(|(_, record)| record["jobId"] == i64::try_from(warm_up).unwrap())
            .then_some(())
    })
    .await;
    let journal_start = emulator.events().len();

    // The steady stream: a backup every 300 ms, round robin over every policy, for the whole test.
    let stream_policies = policies.clone();
    let (stop_stream, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let stream = {
        let backups = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = backups.clone();
        let emulator = Arc::clone(&emulator);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(300));
            for policy in stream_policies.iter().cycle() {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = ticker.tick() => {}
                }
                if emulator.start_backup(policy, None).is_ok() {
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            backups.load(std::sync::atomic::Ordering::Relaxed)
        })
    };

    // Chaos at random (seeded, so a failure can be replayed) moments: the service three times, the endpoint
    // twice. The pauses between kills are the scenario itself, not waits for a condition.
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6e62_7773);
    for round in 0..5 {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..2500))).await;
        if round % 2 == 0 {
            service.kill();
            service = layout.start_service();
        } else {
            endpoint.kill();
            endpoint = layout.start_endpoint();
        }
        layout.wait_connected().await;
    }
    tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
    stop_stream.send(()).unwrap();
    let backups = stream.await.unwrap();
    assert!(backups >= 5, "the stream started {backups} backups");

    // Every job ends, then everything it caused reaches the endpoint.
    let (jobs, images) = eventually("every job of the stream to finish", || async {
        let (created, done, images) = journal(&emulator, journal_start);
        // `done` may also hold the warm-up backup's jobs, created before the journal start.
        created.is_subset(&done).then_some((created, images))
    })
    .await;
    eventually("every job's DONE record and every image's CREATE record at the endpoint", || async {
        all_delivered(&layout.notifications(), &jobs, &images).then_some(())
    })
    .await;

    // Exactly once: no (job, state) and no (image, operation) twice, whatever was killed when.
    assert_exactly_once(&layout.notifications(), &jobs);

    drop(service);
    drop(endpoint);
    Arc::try_unwrap(emulator).unwrap().shutdown().await;
}

/// Many messages in flight: local ingest (`nbwss notify`, 10,000 records, 5 per message) while the service
/// and the endpoint are killed at random moments. The service commits acknowledgements together with the
/// next messages it takes, and the endpoint commits the messages that arrive together in one transaction
/// before acknowledging each: whatever was killed when, every record reaches the feed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_commits_lose_and_repeat_nothing_when_killed_mid_burst() {
    const FIRST_JOB: i64 = 50_000_000;
    const BATCHES: i64 = 20;
    const PER_BATCH: i64 = 500;
    let emulator = Arc::new(Emulator::start(EmulatorConfig::for_tests()).await.unwrap());
    let (layout, mut endpoint, mut service) = start_connected(&emulator).await;

    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6275_7273);
    for batch in 0..BATCHES {
        let first = FIRST_JOB + batch * PER_BATCH;
        let records: Vec<String> = (first..first + PER_BATCH)
            .map(|job_id| {
                format!(
                    r#"{{"scheduleType":"ST_FULL","clientName":"burst","status":0,"startTime":1700000000,"state":"DONE","policyName":"p","parentJobId":{job_id},"jobId":{job_id},"policyType":"STANDARD","jobType":"BACKUP"}}"#
                )
            })
            .collect();
        let body = format!("[{}]", records.join(","));
        let data = layout.service_dir();
        let run = tokio::task::spawn_blocking(move || {
            crate::util::nbwss(&["notify", "--data-dir", data.to_str().unwrap(), "--file", "-"], &body)
        })
        .await
        .unwrap();
        assert_eq!(run.status, 0, "{}", run.stderr);
        // Every fourth batch, a kill at a random moment while the batch is on its way.
        if batch % 4 == 3 {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..400))).await;
            if batch % 8 == 3 {
                service.kill();
                service = layout.start_service();
            } else {
                endpoint.kill();
                endpoint = layout.start_endpoint();
            }
        }
    }
    let burst = |stored: &[(String, Value)]| -> Vec<i64> {
        stored
            .iter()
            .filter_map(|(_, record)| record["jobId"].as_i64())
            .filter(|job_id| *job_id >= FIRST_JOB)
            .collect()
    };
    let total = usize::try_from(BATCHES * PER_BATCH).unwrap();
    eventually("every ingested record at the endpoint", || async {
        let mut seen = burst(&layout.notifications());
        seen.sort_unstable();
        seen.dedup();
        (seen.len() == total).then_some(())
    })
    .await;
    let mut stored = burst(&layout.notifications());
    assert_eq!(stored.len(), total, "no record stored twice");
    stored.sort_unstable();
    assert_eq!(stored, (FIRST_JOB..FIRST_JOB + BATCHES * PER_BATCH).collect::<Vec<_>>());

    drop(service);
    drop(endpoint);
    Arc::try_unwrap(emulator).unwrap().shutdown().await;
}

/// Whether `stored` holds every job's DONE record and every image's CREATE record.
pub(crate) fn all_delivered(
    stored: &[(String, Value)],
    jobs: &BTreeSet<i64>,
    images: &BTreeSet<String>,
) -> bool {
    let done: BTreeSet<i64> = stored
        .iter()
        .filter(|(object, record)| object == "JOB" && record["state"] == "DONE")
        .filter_map(|(_, record)| record["jobId"].as_i64())
        .collect();
    let created: BTreeSet<String> = stored
        .iter()
        .filter(|(object, record)| object == "IMAGE" && record["operationId"] == "CREATE")
        .filter_map(|(_, record)| record["backupId"].as_str().map(str::to_owned))
        .collect();
    jobs.is_subset(&done) && images.is_subset(&created)
}

/// No (job, state) and no (image, operation) stored twice; a job's records are its first sighting and DONE
/// at most.
pub(crate) fn assert_exactly_once(stored: &[(String, Value)], jobs: &BTreeSet<i64>) {
    let mut job_states: BTreeMap<(i64, String), usize> = BTreeMap::new();
    let mut image_operations: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (object, record) in stored {
        match object.as_str() {
            "JOB" => {
                assert_eq!(record.as_object().unwrap().len(), 10, "{record}");
                let key = (record["jobId"].as_i64().unwrap(), record["state"].as_str().unwrap().to_owned());
                *job_states.entry(key).or_default() += 1;
            }
            "IMAGE" => {
                assert_eq!(record.as_object().unwrap().len(), 6, "{record}");
                let key = (
                    record["backupId"].as_str().unwrap().to_owned(),
                    record["operationId"].as_str().unwrap().to_owned(),
                );
                *image_operations.entry(key).or_default() += 1;
            }
            other => panic!("unexpected object {other}"),
        }
    }
    let repeated_jobs: Vec<_> = job_states.iter().filter(|(_, count)| **count > 1).collect();
    let repeated_images: Vec<_> = image_operations.iter().filter(|(_, count)| **count > 1).collect();
    assert!(repeated_jobs.is_empty(), "job records stored more than once: {repeated_jobs:?}");
    assert!(repeated_images.is_empty(), "image records stored more than once: {repeated_images:?}");
    for job in jobs {
        let states: Vec<&String> =
            job_states.keys().filter(|(id, _)| id == job).map(|(_, state)| state).collect();
        assert!(states.len() <= 2, "job {job}: first sighting and DONE at most: {states:?}");
    }
}

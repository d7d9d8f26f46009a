//! `nbwss bench relay --cluster URL`: in the endpoint's cluster mode, the cost of a call through a replica
//! that does not hold the primary server's session (forwarded over NATS to the holder) against the same call
//! through the holder. Two replicas, an emulator and a service in this process; one client, unloaded.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use nbwss_emulator::{Emulator, EmulatorConfig};
use nbwss_endpoint::{ClusterConfig, ClusterCredentials, Endpoint, EndpointConfig};
use nbwss_protocol::Properties;
use nbwss_service::{Service, ServiceConfig};

use super::relay::{load, Target, SMALL_PATH};
use super::report::{Report, Table};
use super::stats::{grouped, ms, ms_f};
use super::system::{PRIMARY, USER};

/// How long the replicas and the service get to come up.
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);

/// Adds the cluster phase to `report`: `requests` timed calls through each replica.
pub(crate) async fn phase(
    nats_url: &str,
    dir: &Path,
    requests: usize,
    warmup: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let emulator = Emulator::start(EmulatorConfig {
        users: vec![(USER.to_owned(), "password".to_owned())],
        ..EmulatorConfig::for_tests()
    })
    .await
    .context("starting the emulator")?;
    // A cluster name of its own: a run leaves its buckets and stream behind, and never reads another's.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let name = format!("bench{}x{}", now.as_nanos(), std::process::id());
    let mut replicas = Vec::new();
    for replica in ["bench1", "bench2"] {
        let mut config = EndpointConfig::new(dir.join(replica));
        let mut cluster = ClusterConfig::new(nats_url, replica);
        cluster.name = name.clone();
        config.cluster = Some(cluster);
        replicas.push(Endpoint::start(config).await.with_context(|| format!("starting replica {replica}"))?);
    }
    let cluster = replicas[0].cluster().context("the replica is in cluster mode")?;
    let credentials = ClusterCredentials(cluster);
    let details = credentials.create_token(PRIMARY, "bench", 1, &replicas[0].websocket_url()).await?;
    let api_key = credentials.create_api_key("bench").await?;
    let service = Service::start(
        ServiceConfig::new(dir.join("service"), emulator.base_url(), Some(emulator.certificate_pem())),
        Properties::parse("").context("bench properties")?.0,
    )
    .await
    .context("starting the service")?;
    crate::wire::save_and_connect(&service, &replicas[0], &details, PRIMARY, STARTUP_DEADLINE).await?;

    let token = emulator.create_token(USER);
    let target = |index: usize| Target {
        base: format!("{}/api/v1/primaries/{PRIMARY}/netbackup", replicas[index].url()),
        certificate_pem: replicas[index].certificate_pem().to_owned(),
        headers: vec![("Authorization", token.clone()), (nbwss_endpoint::API_KEY_HEADER, api_key.clone())],
    };
    let (holder, forwarding) = (target(0), target(1));
    // The second replica knows the API key once its copy of the bucket has it.
    let until = tokio::time::Instant::now() + STARTUP_DEADLINE;
    while load(&forwarding, SMALL_PATH, 1, 1, 0).await?.errors > 0 {
        anyhow::ensure!(tokio::time::Instant::now() < until, "the second replica never relayed a call");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let through_holder = load(&holder, SMALL_PATH, 1, requests, warmup).await?;
    let forwarded = load(&forwarding, SMALL_PATH, 1, requests, warmup).await?;
    service.shutdown().await;
    for replica in replicas {
        replica.shutdown().await;
    }
    emulator.shutdown().await;

    let mut table = Table::new(
        &format!(
            "cluster mode: GET /admin/jobs?page[limit]=10, unloaded, {} timed requests per replica",
            grouped(through_holder.completed as f64)
        ),
        &["through", "p50 ms", "p99 ms", "max ms", "errors"],
    );
    for (name, phase) in [("holder", &through_holder), ("other replica", &forwarded)] {
        table.row(vec![
            name.to_owned(),
            ms(phase.latencies.p50),
            ms(phase.latencies.p99),
            ms(phase.latencies.max),
            phase.errors.to_string(),
        ]);
    }
    report.table(table);
    let added = ms_f(forwarded.latencies.p50) - ms_f(through_holder.latencies.p50);
    report.figure("cluster_holder_p50_ms", ms_f(through_holder.latencies.p50));
    report.figure("cluster_forwarded_p50_ms", ms_f(forwarded.latencies.p50));
    report.figure("cluster_forwarded_p50_added_ms", added);
    report.target(
        "forwarded p50 (cluster, 1 client)",
        "≤ holder p50 + 0.3 ms",
        format!("{added:+.3} ms"),
        added <= 0.3,
    );
    report.note(format!("cluster phase: NATS at {nats_url}, two replicas in this process"));
    Ok(())
}

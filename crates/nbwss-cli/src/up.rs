//! `nbwss up`: an emulated primary server, a cloud endpoint and the NBWSS service on loopback, wired
//! together, with a demo backup now and then so that notifications flow.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use nbwss_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use nbwss_endpoint::{Endpoint, EndpointConfig, EndpointHandle, FeedQuery, StoredNotification};
use nbwss_protocol::Properties;
use nbwss_service::PrimaryCredentials;
use nbwss_service::{Service, ServiceConfig, ServiceHandle};
use serde_json::{json, Value};

/// The name the demo primary server is known by at the endpoint (its token's name).
const PRIMARY_NAME: &str = "primary1";
/// The server group of the demo endpoint.
const GROUP: &str = "demo";
/// The emulator user the demo logs in as.
const USER: &str = "admin";
/// How long the whole system gets to come up.
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);

/// Start an emulator, an endpoint and a service on loopback, connected, and show a backup flowing through.
///
/// Everything listens on 127.0.0.1 (free ports unless given). The state lives in the directory named by
/// --dir, and `<dir>/up.json` describes the running system (URLs, the API key, the emulator's user) for
/// scripts. Stop with Ctrl-C.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory for the state of all three parts, and for up.json.
    #[arg(long, default_value = "nbwss-up", value_name = "DIR")]
    dir: PathBuf,
    /// Do not start demo backups (the system is still wired and ready to use).
    #[arg(long)]
    no_demo: bool,
    /// Seconds between demo backups.
    #[arg(long, default_value_t = 30, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    demo_interval: u64,
    /// Emulator address (127.0.0.1:1556 lets NetBackup API samples run against it unchanged).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    emulator_bind: std::net::SocketAddr,
    /// Endpoint address (app API, dashboard and WebSocket endpoint).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    endpoint_bind: std::net::SocketAddr,
    /// Emulated seconds per real second: with 60, a 10-minute backup job takes 10 seconds.
    #[arg(long, default_value_t = 60.0, value_name = "FACTOR")]
    clock_multiplier: f64,
}

/// Runs `nbwss up`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::init_tracing_quiet();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(up(args))
}

/// The three running parts.
struct System {
    emulator: EmulatorHandle,
    endpoint: EndpointHandle,
    service: ServiceHandle,
    api_key: String,
    password: String,
}

async fn up(args: Args) -> anyhow::Result<ExitCode> {
    let dir = absolute(&args.dir)?;
    // Private: the state holds the endpoint's key and store, the service's sealed tokens, and up.json.
    nbwss_endpoint::private_dir(&dir).context("the state directory")?;
    println!("nbwss up: state in {}", dir.display());

    let system = tokio::time::timeout(STARTUP_DEADLINE, start(&args, &dir))
        .await
        .context("the system did not come up within 60 s")??;
    let up_json = describe(&system, &dir);
    let up_file = dir.join("up.json");
    // It holds the API key and the emulator's password: readable by its owner only, replaced atomically.
    nbwss_endpoint::write_private_file(&up_file, serde_json::to_string_pretty(&up_json)?.as_bytes())?;
    print_welcome(&system, &up_file);

    let demo = async {
        if args.no_demo {
            std::future::pending::<()>().await;
        }
        demo_backups(&system.emulator, Duration::from_secs(args.demo_interval)).await;
    };
    tokio::select! {
        _ = crate::shutdown_signal() => {}
        _ = demo => {}
        _ = watch_feed(&system.endpoint) => {}
    }
    println!("\nstopping: service, endpoint, emulator");
    system.service.shutdown().await;
    system.endpoint.shutdown().await;
    system.emulator.shutdown().await;
    println!("stopped; the state is kept in {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

async fn start(args: &Args, dir: &Path) -> anyhow::Result<System> {
    let password = nbwss_emulator::generate_password();
    let emulator = Emulator::start(EmulatorConfig {
        bind: args.emulator_bind,
        users: vec![(USER.to_owned(), password.clone())],
        clock_multiplier: args.clock_multiplier,
        background_activity: 0.0,
        run_schedules: false,
        ..EmulatorConfig::default()
    })
    .await
    .context("starting the emulator")?;
    println!("  emulator  {} (user {USER})", emulator.base_url());

    let mut endpoint_config = EndpointConfig::new(dir.join("endpoint"));
    endpoint_config.bind = args.endpoint_bind;
    let endpoint = Endpoint::start(endpoint_config).await.context("starting the endpoint")?;
    // A fresh token and API key on every start: both are shown only once and only hashes are kept.
    endpoint.revoke_token(PRIMARY_NAME)?;
    let details = endpoint.create_token(PRIMARY_NAME, GROUP, 1)?;
    endpoint.store().revoke_api_key("up")?;
    let api_key = endpoint.create_api_key("up")?;
    println!("  endpoint  {} (WebSocket {})", endpoint.url(), endpoint.websocket_url());

    let mut service_config =
        ServiceConfig::new(dir.join("service"), emulator.base_url(), Some(emulator.certificate_pem()));
    service_config.primary.credentials = Some(PrimaryCredentials {
        user_name: Some(USER.to_owned()),
        password: Some(password.clone().into()),
        domain_type: None,
        domain_name: None,
        api_key: None,
    });
    // Quick notifications for the demo; everything else keeps the guide's defaults.
    let (properties, _) = Properties::parse(
        "notification.scheduledRate=2\nnotification.pollInterval=1000\nnotification.reconcileInterval=5\n",
    )
    .context("demo properties")?;
    let service = Service::start(service_config, properties).await.context("starting the service")?;
    println!("  service   admin API {}", service.admin_url());

    // The administrator's part: validate the endpoint, check its certificate, save it with the token.
    let admin = service.admin_client()?;
    let existing = admin.list().await.context("listing WebSocket servers")?;
    if existing.iter().any(|host| host.host_name == details.host_name) {
        admin.delete(&details.host_name).await.context("removing the previous demo WebSocket server")?;
    }
    let pinned =
        crate::wire::save_and_connect(&service, &endpoint, &details, PRIMARY_NAME, STARTUP_DEADLINE).await?;
    println!("  WebSocket server {} saved, certificate pinned ({pinned})", details.host_name);
    println!("  connected: the service reached the endpoint and CONNECT was accepted");
    Ok(System { emulator, endpoint, service, api_key, password })
}

fn describe(system: &System, dir: &Path) -> Value {
    json!({
        "emulator": {
            "url": system.emulator.base_url(),
            "user": USER,
            "password": system.password,
            "certificate_pem": system.emulator.certificate_pem(),
        },
        "endpoint": {
            "url": system.endpoint.url(),
            "websocket_url": system.endpoint.websocket_url(),
            "api_key": system.api_key,
            "certificate_sha256": system.endpoint.certificate_sha256(),
            "certificate_pem": system.endpoint.certificate_pem(),
            "primary": PRIMARY_NAME,
        },
        "service": {
            "data_dir": system.service.data_dir(),
            "admin_url": system.service.admin_url(),
        },
        "dir": dir,
    })
}

fn print_welcome(system: &System, up_file: &Path) {
    let base = system.endpoint.url();
    let key = &system.api_key;
    let relay = format!("{base}/api/v1/primaries/{PRIMARY_NAME}/netbackup");
    println!();
    println!("Ready. Dashboard: {base}/?api_key={key}");
    println!("(the certificates are self-signed: pass -k to curl, or trust the endpoint's certificate)");
    println!();
    println!("Call NetBackup through the relay (endpoint → service → primary server):");
    println!(
        "  TOKEN=$(curl -sk -H 'X-NBWSS-API-Key: {key}' -H 'Content-Type: application/vnd.netbackup+json;version=8.0' \\\n    -d '{{\"userName\":\"{USER}\",\"password\":\"{}\"}}' {relay}/login | sed 's/.*\"token\":\"\\([^\"]*\\)\".*/\\1/')",
        system.password
    );
    println!("  curl -sk -H 'X-NBWSS-API-Key: {key}' -H \"Authorization: $TOKEN\" '{relay}/admin/jobs?page%5Blimit%5D=5'");
    println!("Read the notifications:");
    println!("  curl -sk -H 'X-NBWSS-API-Key: {key}' '{base}/api/v1/notifications?limit=20'");
    println!();
    println!("Details for scripts: {}. Stop with Ctrl-C.", up_file.display());
    println!();
}

/// Starts a backup now and then, alternating a VMware policy (parent and child jobs) and a Standard one.
async fn demo_backups(emulator: &EmulatorHandle, interval: Duration) {
    let mut policies = emulator.policy_names();
    policies.sort();
    let preferred: Vec<String> = ["vmware", "standard"]
        .iter()
        .filter_map(|kind| policies.iter().find(|name| name.to_lowercase().contains(kind)).cloned())
        .collect();
    let rotation = if preferred.is_empty() { policies } else { preferred };
    if rotation.is_empty() {
        println!("demo: the emulator has no policies; no demo backups");
        return std::future::pending().await;
    }
    let mut ticker = tokio::time::interval(interval);
    for policy in rotation.iter().cycle() {
        ticker.tick().await;
        match emulator.start_backup(policy, None) {
            Ok(jobs) => {
                let jobs: Vec<String> = jobs.iter().map(ToString::to_string).collect();
                let noun = if jobs.len() == 1 { "job" } else { "jobs" };
                println!("demo: started a backup of policy {policy} ({noun} {})", jobs.join(", "));
            }
            Err(error) => println!("demo: could not start a backup of {policy}: {error:#}"),
        }
    }
}

/// Prints every notification the endpoint stores, as it arrives.
async fn watch_feed(endpoint: &EndpointHandle) {
    let mut after = endpoint.store().run(|store| store.last_cursor()).await.unwrap_or(0);
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    loop {
        ticker.tick().await;
        let query = FeedQuery { after, limit: 100, primary: None, object: None };
        match endpoint.store().run(move |store| store.notifications(&query)).await {
            Ok(batch) => {
                for notification in batch {
                    after = notification.cursor;
                    println!("notification #{}: {}", notification.cursor, summarize(&notification));
                }
            }
            Err(error) => tracing::warn!(error = %format!("{error:#}"), "cannot read the notification feed"),
        }
    }
}

fn summarize(notification: &StoredNotification) -> String {
    let record = &notification.record;
    let text = |key: &str| record.get(key).map(|value| value.to_string().trim_matches('"').to_owned());
    match notification.object.as_str() {
        "JOB" => format!(
            "JOB {} {} {} policy {} client {} status {}",
            text("jobId").unwrap_or_default(),
            text("jobType").unwrap_or_default(),
            text("state").unwrap_or_default(),
            text("policyName").unwrap_or_default(),
            text("clientName").unwrap_or_default(),
            text("status").unwrap_or_default(),
        ),
        "IMAGE" => format!(
            "IMAGE {} {}",
            text("operationId").unwrap_or_default(),
            text("backupId").unwrap_or_default()
        ),
        other => format!("{other} {record}"),
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_owned());
    }
    Ok(std::env::current_dir().context("reading the current directory")?.join(path))
}

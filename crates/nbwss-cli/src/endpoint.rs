//! `nbwss endpoint ...`: run the cloud endpoint, and manage its tokens, API keys and webhooks (on its data
//! directory, while it runs or not: they share the SQLite store, and a running endpoint closes a revoked or
//! rotated token's session, ends a revoked API key's streams, and starts, pauses or stops a webhook's
//! deliveries, within `limits.revocation_check_interval_ms`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use nbwss_endpoint::webhooks::{NewWebhook, PauseReason, WebhookFilter, WebhookInfo};
use nbwss_endpoint::{Cluster, ClusterConfig, ClusterCredentials, Endpoint, EndpointConfig, Store, TlsFiles};

/// Default data directory when neither --data-dir nor a configuration file names one.
const DEFAULT_DATA_DIR: &str = "nbwss-endpoint-data";

/// The replica name management commands connect to a cluster under (they hold no session).
const MANAGEMENT_REPLICA: &str = "cli";

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("starting the async runtime")
}

/// Arguments of `nbwss endpoint`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: EndpointCommand,
}

#[derive(Debug, clap::Subcommand)]
enum EndpointCommand {
    /// Serve the WebSocket endpoint, the app API and the dashboard on one TLS port until Ctrl-C.
    ///
    /// Prints the dashboard URL, the wss:// URL for NetBackup and the certificate's SHA-256 fingerprint,
    /// which the NetBackup administrator compares when validating the endpoint.
    Run(RunArgs),
    /// Tokens: one per primary server; the token's name is the primary server's name in the app API.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// API keys of the app API (sent in the X-NBWSS-API-Key header).
    Apikey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Webhooks: notification records POSTed to an HTTPS URL as they arrive, signed the Standard Webhooks
    /// way (see docs/webhooks.md), retried until delivered, in order.
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
}

/// Where the endpoint's state is.
#[derive(Debug, Clone, clap::Args)]
struct Location {
    /// The endpoint's configuration file (TOML); its data_dir is used.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The endpoint's data directory (overrides the configuration's) [default: nbwss-endpoint-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Cluster mode: the NATS server(s) with JetStream holding the cluster's state, nats://HOST:PORT
    /// (overrides the configuration's cluster.nats_url). Tokens and API keys are then the cluster's.
    #[arg(long, value_name = "URL")]
    cluster: Option<String>,
}

impl Location {
    fn config(&self) -> anyhow::Result<EndpointConfig> {
        let mut config = match &self.config {
            Some(path) => EndpointConfig::from_file(path)?,
            None => {
                let mut config = EndpointConfig::new(DEFAULT_DATA_DIR);
                config.bind = nbwss_endpoint::DEFAULT_BIND.parse().context("default bind address")?;
                config
            }
        };
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(url) = &self.cluster {
            match &mut config.cluster {
                Some(cluster) => cluster.nats_url = url.clone(),
                None => config.cluster = Some(ClusterConfig::new(url.clone(), MANAGEMENT_REPLICA)),
            }
        }
        Ok(config)
    }

    /// The configuration, when it (or --cluster) names a cluster.
    fn clustered(&self) -> anyhow::Result<Option<(EndpointConfig, ClusterConfig)>> {
        let config = self.config()?;
        Ok(config.cluster.clone().map(|cluster| (config, cluster)))
    }

    fn store(&self) -> anyhow::Result<Store> {
        let config = self.config()?;
        if config.cluster.is_some() {
            anyhow::bail!("webhooks are not available in cluster mode ([cluster] or --cluster): read the feed or the stream instead");
        }
        open_store(&config.data_dir)
    }
}

/// Opens the store for a management command; files that root creates there go to the data directory's owner
/// (the endpoint's system user when installed from the package).
fn open_store(data_dir: &Path) -> anyhow::Result<Store> {
    let store = Store::open(data_dir)?;
    crate::state::hand_back(data_dir)?;
    Ok(store)
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    #[command(flatten)]
    location: Location,
    /// Address to listen on (overrides the configuration's) [default: 127.0.0.1:8443].
    #[arg(long, value_name = "ADDR")]
    bind: Option<SocketAddr>,
    /// Path of the WebSocket endpoint [default: /nbwss].
    #[arg(long, value_name = "PATH")]
    websocket_path: Option<String>,
    /// The wss:// URL written into endpoint details files, when clients reach the endpoint by another name.
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// PEM certificate chain (with --tls-key); without it a self-signed certificate for localhost is
    /// generated and kept in the data directory.
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Cluster mode: this replica's name, unique in the cluster (overrides the configuration's
    /// cluster.replica; required with --cluster when the configuration has no [cluster] section).
    #[arg(long, value_name = "NAME")]
    replica: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum TokenCommand {
    /// Create (or rotate) the token of a primary server and print its endpoint details file (JSON) for the
    /// NetBackup administrator. The token is shown only this once.
    #[command(group(clap::ArgGroup::new("primary").required(true).args(["name", "name_flag"])))]
    Create {
        /// The primary server's name.
        name: Option<String>,
        /// The same, as the deprecated `--name NAME` (still accepted).
        #[arg(long = "name", value_name = "NAME", hide = true)]
        name_flag: Option<String>,
        /// Server group of the endpoint in NetBackup.
        #[arg(long, default_value = "default")]
        group: String,
        /// Priority within the group (lower is tried first).
        #[arg(long, default_value_t = 1)]
        priority: i64,
        /// The wss:// URL to write into the details [default: the configuration's public_url, or one derived
        /// from its bind address and path].
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        #[command(flatten)]
        location: Location,
    },
    /// Replace a primary server's token with a new one, keeping its group and priority, and print the new
    /// endpoint details file. A running endpoint closes the session opened with the old token.
    Rotate {
        /// The primary server's name.
        name: String,
        /// The wss:// URL to write into the details [default: as for `token create`].
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        #[command(flatten)]
        location: Location,
    },
    /// List the primary servers that have a token: never the tokens, only their fingerprints (`sha256:` and
    /// 16 hexadecimal digits), which `nbwss servers show` on the NetBackup side shows for comparison.
    List {
        /// Print JSON: an array of {name, groupId, priority, createdAt, tokenFingerprint}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        location: Location,
    },
    /// Revoke a primary server's token. A running endpoint closes its session within seconds.
    Revoke {
        /// The primary server's name.
        name: String,
        #[command(flatten)]
        location: Location,
    },
}

#[derive(Debug, clap::Subcommand)]
enum ApiKeyCommand {
    /// Create (or replace) an API key and print it; it is shown only this once.
    Create {
        /// The key's name.
        name: String,
        #[command(flatten)]
        location: Location,
    },
    /// List the API keys' names.
    List {
        /// Print JSON: an array of {name, createdAt}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        location: Location,
    },
    /// Revoke an API key. A running endpoint refuses its next call and ends its notification streams.
    Revoke {
        /// The key's name.
        name: String,
        #[command(flatten)]
        location: Location,
    },
}

#[derive(Debug, clap::Subcommand)]
enum WebhookCommand {
    /// Subscribe an HTTPS URL to notification records and print its id and signing secret (shown only this
    /// once). Without filters it receives every record; each filter given narrows it. A running endpoint
    /// starts delivering within a second.
    Add {
        /// The receiver: an https:// URL. Loopback, private and link-local addresses are refused unless the
        /// configuration's webhooks.allow_networks names them.
        url: String,
        /// What the webhook is for, shown in lists.
        #[arg(long, default_value = "")]
        description: String,
        /// Only this primary server's records (repeat for several).
        #[arg(long = "primary", value_name = "NAME")]
        primaries: Vec<String>,
        /// Only this object kind, JOB or IMAGE (repeat for both).
        #[arg(long = "object", value_name = "KIND")]
        objects: Vec<String>,
        /// Only JOB records in this state: QUEUED, ACTIVE, REQUEUED, DONE, SUSPENDED, INCOMPLETE (repeat for
        /// several).
        #[arg(long = "job-state", value_name = "STATE")]
        job_states: Vec<String>,
        /// Only JOB records whose status is not 0 (partially successful or failed). With --job-state DONE:
        /// every job that did not fully succeed.
        #[arg(long)]
        nonzero_status: bool,
        /// A file holding the signing secret (whsec_ and base64 of 24 to 64 bytes), or - for stdin; without
        /// it one is generated.
        #[arg(long, value_name = "FILE")]
        secret_file: Option<PathBuf>,
        /// PEM CA certificates to trust for this receiver besides the public roots (a receiver whose
        /// certificate a private CA issued). TLS is always verified.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
        /// Also deliver the stored records after this cursor [default: only records stored from now on].
        #[arg(long, value_name = "CURSOR")]
        after: Option<i64>,
        /// Print the webhook (and its secret) as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        location: Location,
    },
    /// List the webhooks with their state (active, failing, paused and why), held and delivered counts,
    /// and the last error. Never their secrets.
    List {
        /// Print JSON, as GET /api/v1/webhooks does.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        location: Location,
    },
    /// Remove a webhook and its held deliveries.
    Remove {
        /// The webhook's id (wh_...).
        id: String,
        #[command(flatten)]
        location: Location,
    },
    /// Send a sample delivery (type webhook.test, signed) to a webhook's URL now and say what its receiver
    /// answered. Exits non-zero when it was not delivered.
    Test {
        /// The webhook's id (wh_...).
        id: String,
        #[command(flatten)]
        location: Location,
    },
    /// Pause a webhook: nothing is sent until it is resumed; records are still queued for it.
    Pause {
        /// The webhook's id (wh_...).
        id: String,
        #[command(flatten)]
        location: Location,
    },
    /// Resume a paused webhook now: its failed deliveries are sent first, in order (or discarded with
    /// --discard-failed), then the rest.
    Resume {
        /// The webhook's id (wh_...).
        id: String,
        /// Delete its failed deliveries instead of sending them again.
        #[arg(long)]
        discard_failed: bool,
        #[command(flatten)]
        location: Location,
    },
    /// List a webhook's held deliveries in order: pending (with attempts and the next one) and failed.
    Deliveries {
        /// The webhook's id (wh_...).
        id: String,
        /// Only the failed ones.
        #[arg(long)]
        failed: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        location: Location,
    },
}

/// Runs `nbwss endpoint`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        EndpointCommand::Run(args) => {
            crate::init_tracing();
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(serve(args))
        }
        EndpointCommand::Token { command } => token(command),
        EndpointCommand::Apikey { command } => api_key(command),
        EndpointCommand::Webhook { command } => webhook(command),
    }
}

async fn serve(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut config = args.location.config()?;
    if let Some(bind) = args.bind {
        config.bind = bind;
    }
    if let Some(path) = args.websocket_path {
        config.websocket_path = path;
    }
    if let Some(url) = args.public_url {
        config.public_url = Some(url);
    }
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls = Some(TlsFiles { cert, key });
    }
    match (&mut config.cluster, args.replica) {
        (Some(cluster), Some(replica)) => cluster.replica = replica,
        (Some(cluster), None) if cluster.replica == MANAGEMENT_REPLICA => {
            anyhow::bail!(
                "--replica NAME: each replica of a cluster needs a name of its own (e.g. its host name)"
            )
        }
        (None, Some(_)) => anyhow::bail!("--replica: only with --cluster or a [cluster] section"),
        _ => {}
    }
    let data_dir = config.data_dir.clone();
    // Every connection is a file descriptor: make room for limits.max_connections of them.
    crate::raise_open_files_limit();
    let needed = u64::try_from(config.limits.max_connections).unwrap_or(u64::MAX).saturating_add(64);
    if crate::open_files_limit() < needed {
        eprintln!(
            "warning: the open-files limit ({}) is below limits.max_connections ({}) plus room for files: \
             connections beyond it will fail to be accepted. Raise it (ulimit -n) or lower limits.max_connections.",
            crate::open_files_limit(),
            config.limits.max_connections
        );
    }
    let handle = Endpoint::start(config).await?;
    println!("NBWSS endpoint listening on {}", handle.url());
    println!("dashboard and app API: {}/", handle.url());
    println!("WebSocket URL for NetBackup: {}", handle.websocket_url());
    println!("certificate SHA-256: {}", handle.certificate_sha256());
    println!("data directory: {}", data_dir.display());
    if let Some(cluster) = handle.cluster() {
        println!("cluster: {} on {} as replica {}", cluster.name(), cluster.nats_url(), cluster.replica());
    }
    let api_keys = match handle.cluster() {
        Some(cluster) => ClusterCredentials(cluster).list_api_keys().await?.len(),
        None => handle.store().list_api_keys()?.len(),
    };
    if api_keys == 0 {
        println!(
            "no API key yet: create one with `nbwss endpoint apikey create NAME --data-dir {}`",
            data_dir.display()
        );
    }
    println!("press Ctrl-C to stop");
    crate::shutdown_signal().await;
    println!("stopping");
    handle.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

fn token(command: TokenCommand) -> anyhow::Result<ExitCode> {
    let location = match &command {
        TokenCommand::Create { location, .. }
        | TokenCommand::Rotate { location, .. }
        | TokenCommand::List { location, .. }
        | TokenCommand::Revoke { location, .. } => location,
    };
    if let Some((config, settings)) = location.clustered()? {
        return runtime()?.block_on(async {
            let cluster = Cluster::connect(&settings).await?;
            cluster_token(command, &config, &cluster).await
        });
    }
    match command {
        TokenCommand::Create { name, name_flag, group, priority, url, location } => {
            if name_flag.is_some() {
                eprintln!("note: `token create NAME` is deprecated; write `token create NAME`");
            }
            let name = name.or(name_flag).unwrap_or_default();
            let config = location.config()?;
            let url = details_url(&config, url)?;
            let details = open_store(&config.data_dir)?.create_token(&name, &group, priority, &url)?;
            println!("{}", serde_json::to_string_pretty(&details.to_value())?);
            eprintln!("token of '{name}' created; it is shown only here: hand this file to the NetBackup administrator");
        }
        TokenCommand::Rotate { name, url, location } => {
            let config = location.config()?;
            let url = details_url(&config, url)?;
            let store = open_store(&config.data_dir)?;
            let Some(old) = store.token(&name)? else {
                anyhow::bail!(
                    "no token named '{name}': create one with `nbwss endpoint token create {name}`"
                );
            };
            let details = store.create_token(&name, &old.group_id, old.priority, &url)?;
            println!("{}", serde_json::to_string_pretty(&details.to_value())?);
            eprintln!(
                "token of '{name}' rotated; the old one no longer connects. The new one is shown only here: \
                 hand this file to the NetBackup administrator"
            );
        }
        TokenCommand::List { json, location } => {
            let tokens = location.store()?.list_tokens()?;
            print_tokens(&tokens, json)?;
        }
        TokenCommand::Revoke { name, location } => {
            if !location.store()?.revoke_token(&name)? {
                anyhow::bail!("no token named '{name}'");
            }
            println!("token of '{name}' revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `nbwss endpoint token ...` against a cluster's tokens bucket.
async fn cluster_token(
    command: TokenCommand,
    config: &EndpointConfig,
    cluster: &Cluster,
) -> anyhow::Result<ExitCode> {
    let credentials = ClusterCredentials(cluster);
    match command {
        TokenCommand::Create { name, name_flag, group, priority, url, .. } => {
            let name = name.or(name_flag).unwrap_or_default();
            let url = details_url(config, url)?;
            let details = credentials.create_token(&name, &group, priority, &url).await?;
            println!("{}", serde_json::to_string_pretty(&details.to_value())?);
            eprintln!("token of '{name}' created; it is shown only here: hand this file to the NetBackup administrator");
        }
        TokenCommand::Rotate { name, url, .. } => {
            let url = details_url(config, url)?;
            let tokens = credentials.list_tokens().await?;
            let Some(old) = tokens.iter().find(|token| token.name == name) else {
                anyhow::bail!(
                    "no token named '{name}': create one with `nbwss endpoint token create --name {name}`"
                );
            };
            let details = credentials.create_token(&name, &old.group_id, old.priority, &url).await?;
            println!("{}", serde_json::to_string_pretty(&details.to_value())?);
            eprintln!(
                "token of '{name}' rotated; the old one no longer connects. The new one is shown only here: \
                 hand this file to the NetBackup administrator"
            );
        }
        TokenCommand::List { json, .. } => {
            let tokens = credentials.list_tokens().await?;
            print_tokens(&tokens, json)?;
        }
        TokenCommand::Revoke { name, .. } => {
            if !credentials.revoke_token(&name).await? {
                anyhow::bail!("no token named '{name}'");
            }
            println!("token of '{name}' revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `nbwss endpoint apikey ...` against a cluster's API-key bucket.
async fn cluster_api_key(command: ApiKeyCommand, cluster: &Cluster) -> anyhow::Result<ExitCode> {
    let credentials = ClusterCredentials(cluster);
    match command {
        ApiKeyCommand::Create { name, .. } => {
            let key = credentials.create_api_key(&name).await?;
            println!("{key}");
            eprintln!(
                "API key '{name}' created; it is shown only here. Send it in the X-NBWSS-API-Key header."
            );
        }
        ApiKeyCommand::List { json, .. } => {
            let keys = credentials.list_api_keys().await?;
            print_api_keys(&keys, json)?;
        }
        ApiKeyCommand::Revoke { name, .. } => {
            if !credentials.revoke_api_key(&name).await? {
                anyhow::bail!("no API key named '{name}'");
            }
            println!("API key '{name}' revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_tokens(tokens: &[nbwss_endpoint::TokenInfo], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(tokens)?);
        return Ok(());
    }
    if tokens.is_empty() {
        eprintln!("no tokens");
    }
    for token in tokens {
        println!(
            "{}\tgroup {}\tpriority {}\tcreated {}\ttoken {}",
            token.name, token.group_id, token.priority, token.created_at, token.token_fingerprint
        );
    }
    Ok(())
}

fn print_api_keys(keys: &[nbwss_endpoint::ApiKeyInfo], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(keys)?);
        return Ok(());
    }
    if keys.is_empty() {
        eprintln!("no API keys");
    }
    for key in keys {
        println!("{}\tcreated {}", key.name, key.created_at);
    }
    Ok(())
}

/// The wss:// URL for a details file: `--url`, or the configuration's.
fn details_url(config: &EndpointConfig, url: Option<String>) -> anyhow::Result<String> {
    match url {
        Some(url) => Ok(url),
        None if config.bind.port() == 0 && config.public_url.is_none() => {
            anyhow::bail!("the endpoint's port is chosen when it starts (bind port 0): pass --url")
        }
        None => Ok(config.websocket_url_for(config.bind)),
    }
}

fn api_key(command: ApiKeyCommand) -> anyhow::Result<ExitCode> {
    let location = match &command {
        ApiKeyCommand::Create { location, .. }
        | ApiKeyCommand::List { location, .. }
        | ApiKeyCommand::Revoke { location, .. } => location,
    };
    if let Some((_, settings)) = location.clustered()? {
        return runtime()?.block_on(async {
            let cluster = Cluster::connect(&settings).await?;
            cluster_api_key(command, &cluster).await
        });
    }
    match command {
        ApiKeyCommand::Create { name, location } => {
            let key = location.store()?.create_api_key(&name)?;
            println!("{key}");
            eprintln!(
                "API key '{name}' created; it is shown only here. Send it in the X-NBWSS-API-Key header."
            );
        }
        ApiKeyCommand::List { json, location } => {
            let keys = location.store()?.list_api_keys()?;
            print_api_keys(&keys, json)?;
        }
        ApiKeyCommand::Revoke { name, location } => {
            if !location.store()?.revoke_api_key(&name)? {
                anyhow::bail!("no API key named '{name}'");
            }
            println!("API key '{name}' revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn webhook(command: WebhookCommand) -> anyhow::Result<ExitCode> {
    match command {
        WebhookCommand::Add {
            url,
            description,
            primaries,
            objects,
            job_states,
            nonzero_status,
            secret_file,
            ca_file,
            after,
            json,
            location,
        } => {
            let config = location.config()?;
            let secret =
                secret_file.map(|path| read_input(&path)).transpose()?.map(|text| text.trim().to_owned());
            let ca_certificate = ca_file
                .map(|path| {
                    std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
                })
                .transpose()?;
            let new = NewWebhook {
                url,
                description,
                secret,
                filter: WebhookFilter { primaries, objects, job_states, non_zero_status: nonzero_status },
                ca_certificate,
                after,
            };
            let created = Store::open(&config.data_dir)?.create_webhook(new, &config.webhooks, "cli")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&created)?);
            } else {
                println!("id: {}", created.webhook.id);
                println!("secret: {}", created.secret);
            }
            eprintln!(
                "webhook {} created, from cursor {}. Its secret is shown only here: the receiver verifies each \
                 delivery's signature with it (docs/webhooks.md). Try it with `nbwss endpoint webhook test {}`.",
                created.webhook.id, created.webhook.cursor, created.webhook.id
            );
        }
        WebhookCommand::List { json, location } => {
            let webhooks = location.store()?.webhooks()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "webhooks": webhooks }))?);
            } else if webhooks.is_empty() {
                eprintln!("no webhooks");
            }
            if !json {
                for webhook in &webhooks {
                    println!("{}", webhook_line(webhook));
                }
            }
        }
        WebhookCommand::Remove { id, location } => {
            if !location.store()?.remove_webhook(&id)? {
                anyhow::bail!("no webhook '{id}' (see `nbwss endpoint webhook list`)");
            }
            println!("webhook {id} removed, with its held deliveries");
        }
        WebhookCommand::Test { id, location } => {
            let config = location.config()?;
            let store = Store::open(&config.data_dir)?;
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let outcome =
                runtime.block_on(nbwss_endpoint::webhooks::send_test(&config.webhooks, &store, &id))?;
            let answered =
                outcome.status.map_or_else(|| "no answer".to_owned(), |status| format!("HTTP {status}"));
            if outcome.delivered {
                println!(
                    "delivered: {answered} in {} ms (webhook-id {})",
                    outcome.elapsed_ms, outcome.message_id
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "not delivered: {} ({} ms, webhook-id {})",
                outcome.error.unwrap_or(answered),
                outcome.elapsed_ms,
                outcome.message_id
            );
            return Ok(ExitCode::FAILURE);
        }
        WebhookCommand::Pause { id, location } => {
            location.store()?.pause_webhook(&id, PauseReason::Manual, "paused from the command line")?;
            println!("webhook {id} paused: records are queued, nothing is sent until `nbwss endpoint webhook resume {id}`");
        }
        WebhookCommand::Resume { id, discard_failed, location } => {
            let store = location.store()?;
            let failed = store.webhook(&id)?.map_or(0, |webhook| webhook.counts.failed);
            store.resume_webhook(&id, discard_failed)?;
            match (failed, discard_failed) {
                (0, _) => println!("webhook {id} resumed"),
                (failed, true) => println!("webhook {id} resumed; {failed} failed deliveries discarded"),
                (failed, false) => {
                    println!("webhook {id} resumed; its {failed} failed deliveries are sent first")
                }
            }
        }
        WebhookCommand::Deliveries { id, failed, json, location } => {
            let store = location.store()?;
            if store.webhook(&id)?.is_none() {
                anyhow::bail!("no webhook '{id}' (see `nbwss endpoint webhook list`)");
            }
            let deliveries = store.webhook_deliveries(&id, failed.then_some(true), 1000)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "deliveries": deliveries }))?
                );
                return Ok(ExitCode::SUCCESS);
            }
            if deliveries.is_empty() {
                eprintln!("no deliveries held");
            }
            for delivery in deliveries {
                let next = delivery.next_attempt_at.map(|at| format!("\tnext {at}")).unwrap_or_default();
                let error =
                    delivery.last_error.map(|error| format!("\tlast error: {error}")).unwrap_or_default();
                println!(
                    "{}\t{}\tcursor {}\t{} attempts{next}{error}",
                    delivery.message_id,
                    delivery.state,
                    delivery.cursor.map_or_else(|| "-".to_owned(), |cursor| cursor.to_string()),
                    delivery.attempts
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line of `webhook list`.
fn webhook_line(webhook: &WebhookInfo) -> String {
    let mut line = format!(
        "{}\t{}\t{}\tpending {}\tfailed {}\tdelivered {}",
        webhook.id,
        webhook.health,
        webhook.url,
        webhook.counts.pending,
        webhook.counts.failed,
        webhook.counts.delivered_total
    );
    if webhook.counts.missed_total > 0 {
        line.push_str(&format!("\tmissed {}", webhook.counts.missed_total));
    }
    let filter = &webhook.filter;
    let mut filters = Vec::new();
    for (name, values) in
        [("primary", &filter.primaries), ("object", &filter.objects), ("job-state", &filter.job_states)]
    {
        if !values.is_empty() {
            filters.push(format!("{name} {}", values.join(",")));
        }
    }
    if filter.non_zero_status {
        filters.push("nonzero-status".to_owned());
    }
    if !filters.is_empty() {
        line.push_str(&format!("\t{}", filters.join(" ")));
    }
    if let Some(detail) = &webhook.pause_detail {
        line.push_str(&format!("\tpaused: {detail}"));
    } else if let Some(retry) = &webhook.retrying {
        line.push_str(&format!(
            "\tretrying ({} attempts, next {}): {}",
            retry.attempts,
            retry.next_attempt_at,
            retry.last_error.as_deref().unwrap_or("")
        ));
    }
    line
}

/// The text of a file, or of stdin for `-`.
fn read_input(path: &std::path::Path) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).context("cannot read stdin")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

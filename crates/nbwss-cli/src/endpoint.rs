//! `nbwss endpoint ...`: run the cloud endpoint, and manage its tokens and API keys (on its data directory,
//! while it runs or not: they share the SQLite store, and a running endpoint closes a revoked or rotated
//! token's session, and ends a revoked API key's streams, within `limits.revocation_check_interval_ms`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use nbwss_endpoint::{Endpoint, EndpointConfig, Store, TlsFiles};

/// Default data directory when neither --data-dir nor a configuration file names one.
const DEFAULT_DATA_DIR: &str = "nbwss-endpoint-data";

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
        Ok(config)
    }

    fn store(&self) -> anyhow::Result<Store> {
        open_store(&self.config()?.data_dir)
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
}

#[derive(Debug, clap::Subcommand)]
enum TokenCommand {
    /// Create (or rotate) the token of a primary server and print its endpoint details file (JSON) for the
    /// NetBackup administrator. The token is shown only this once.
    Create {
        /// The primary server's name.
        #[arg(long)]
        name: String,
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
    if handle.store().list_api_keys()?.is_empty() {
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
    match command {
        TokenCommand::Create { name, group, priority, url, location } => {
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
                    "no token named '{name}': create one with `nbwss endpoint token create --name {name}`"
                );
            };
            let details = store.create_token(&name, &old.group_id, old.priority, &url)?;
            println!("{}", serde_json::to_string_pretty(&details.to_value())?);
            eprintln!(
                "token of '{name}' rotated; the old one no longer connects. The new one is shown only here: \
                 hand this file to the NetBackup administrator"
            );
        }
        TokenCommand::List { location } => {
            let tokens = location.store()?.list_tokens()?;
            if tokens.is_empty() {
                eprintln!("no tokens");
            }
            for token in tokens {
                println!(
                    "{}\tgroup {}\tpriority {}\tcreated {}\ttoken {}",
                    token.name, token.group_id, token.priority, token.created_at, token.token_fingerprint
                );
            }
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
    match command {
        ApiKeyCommand::Create { name, location } => {
            let key = location.store()?.create_api_key(&name)?;
            println!("{key}");
            eprintln!(
                "API key '{name}' created; it is shown only here. Send it in the X-NBWSS-API-Key header."
            );
        }
        ApiKeyCommand::List { location } => {
            let keys = location.store()?.list_api_keys()?;
            if keys.is_empty() {
                eprintln!("no API keys");
            }
            for key in keys {
                println!("{}\tcreated {}", key.name, key.created_at);
            }
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

//! `nbwss service ...`: run the NBWSS service.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use nbwss_service::{Service, ServiceConfig};

/// Arguments of `nbwss service`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Run the service until Ctrl-C or SIGTERM.
    Run {
        /// The service's TOML configuration file.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Check a configuration file (and its nbwss.properties) without starting anything.
    Check {
        /// The service's TOML configuration file.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Print an example configuration file.
    ExampleConfig,
}

const EXAMPLE: &str = r#"# nbwss service configuration. Relative paths are relative to this file.
data_dir = "/var/lib/nbwss"

# Guide properties (nbwss.properties): a file, and/or inline values that override it.
# properties_file = "nbwss.properties"
# [properties]
# "connectionInfo.period" = 60

[primary]
base_url = "https://localhost:1556/netbackup"
# Trust exactly these certificates for the primary server (else the system roots).
# ca_file = "/usr/openv/var/webtruststore/cacert.pem"
# The service's own login, for notifications (never added to relayed calls).
# [primary.credentials]
# api_key = "..."

[admin]
bind = "127.0.0.1:0"

[proxy]
# url = "http://user:password@proxy.example.com:3128"
# no_proxy = [".internal.example.com"]
use_environment = true

# Relay allow-list; when empty, everything under /netbackup/ is allowed. Paths are matched as the primary
# server reads them (decoded, doubled slashes collapsed); a COMMAND with ;, . or .. segments, encoded
# slashes or backslashes is refused (400) before the allow-list is consulted.
# [[policy.allow]]
# method = "GET"
# path = "/netbackup/admin/jobs*"

[log]
file = true
max_files = 7
audit = true
# audit.log rotates at this size; this many files are kept (audit.log included); each line quotes at
# most this much of the request body.
audit_max_file_bytes = 10485760
audit_max_files = 5
audit_body_max_bytes = 4096
"#;

/// Runs `nbwss service`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::ExampleConfig => {
            print!("{EXAMPLE}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => {
            let config = load(&config)?;
            let (_, warnings) =
                config.properties().map_err(|error| anyhow::anyhow!("invalid property {error}"))?;
            for warning in warnings {
                eprintln!("warning: {warning}");
            }
            println!("configuration OK");
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { config } => run_service(&config),
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<ServiceConfig> {
    let config = ServiceConfig::load(path)?;
    config
        .validate()
        .map_err(|error| anyhow::anyhow!("{}: invalid configuration: {error}", path.display()))?;
    Ok(config)
}

fn run_service(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    let (properties, warnings) =
        config.properties().map_err(|error| anyhow::anyhow!("invalid property {error}"))?;
    // Owner-only (0700) from the start: it holds keys, sealed tokens and the audit log.
    nbwss_service::files::ensure_dir(&config.data_dir)?;
    let _guard = init_logging(&config)?;
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let service = Service::start(config, properties).await?;
        eprintln!(
            "nbwss service: admin API at {} (data directory {})",
            service.admin_url(),
            service.data_dir().display()
        );
        crate::shutdown_signal().await;
        tracing::info!("stopping");
        service.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Logs to stderr and, when configured, to the rotating file in the data directory.
fn init_logging(config: &ServiceConfig) -> anyhow::Result<Option<impl Drop>> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    match nbwss_service::logging::file_writer(config)? {
        Some((writer, guard)) => {
            let _ = tracing_subscriber::registry()
                .with(filter())
                .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
                .with(tracing_subscriber::fmt::layer().with_ansi(false).with_writer(writer))
                .try_init();
            Ok(Some(guard))
        }
        None => {
            crate::init_tracing();
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_configuration_is_valid_and_shows_the_defaults() {
        let config: nbwss_service::ServiceConfig = toml::from_str(EXAMPLE).unwrap();
        let defaults = nbwss_service::config::LogConfig::default();
        assert_eq!(config.log, defaults);
    }
}

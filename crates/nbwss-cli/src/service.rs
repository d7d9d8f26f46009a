//! `nbwss service ...`: run the NBWSS service.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use nbwss_service::{Service, ServiceConfig};

/// Arguments of `nbwss service`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands of `nbwss service`, which `nbwss-service` has at its top level.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the service until Ctrl-C or SIGTERM.
    ///
    /// Exits with status 78 (EX_CONFIG) when the configuration cannot be used, so that systemd does not
    /// restart it in a loop: fix the file named in the message and start it again.
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
    /// Print an example configuration file (the one the nbwss-service package installs).
    ExampleConfig,
}

/// The example configuration, installed by the package as /etc/nbwss-service/service.toml.
const EXAMPLE: &str = include_str!("../../../packaging/nbwss-service/service.toml");

/// Exit status of `run` for a configuration that cannot be used (sysexits' EX_CONFIG); the packaged unit
/// names it in `RestartPreventExitStatus=`.
const EX_CONFIG: u8 = 78;

/// Runs `nbwss service`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    run_command(args.command)
}

/// Runs one of the service's subcommands.
pub fn run_command(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::ExampleConfig => {
            print!("{EXAMPLE}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config: path } => {
            let config = load(&path)?;
            let (_, warnings) =
                config.properties().map_err(|error| anyhow::anyhow!("invalid property {error}"))?;
            for warning in warnings {
                eprintln!("warning: {warning}");
            }
            if let Some(problem) = unedited(&config, &path) {
                eprintln!("warning: {problem}");
            }
            println!("configuration OK");
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { config } => run_service(&config),
    }
}

/// Whether the configuration still names the example's placeholder primary server: a host under `.invalid`
/// (RFC 6761), which can never resolve, so the service could only fail at every relayed call.
fn unedited(config: &ServiceConfig, path: &Path) -> Option<String> {
    let host = url::Url::parse(&config.primary.base_url).ok()?.host_str()?.to_ascii_lowercase();
    (host == "invalid" || host.ends_with(".invalid")).then(|| {
        format!(
            "primary.base_url in {} still names the placeholder host {host}: edit it to the primary server's \
             REST API, e.g. https://nbu-primary.example.com:1556/netbackup (the host name its web service \
             certificate names), and set primary.ca_file to the CA that signed that certificate",
            path.display()
        )
    })
}

fn load(path: &Path) -> anyhow::Result<ServiceConfig> {
    let config = ServiceConfig::load(path)?;
    config
        .validate()
        .map_err(|error| anyhow::anyhow!("{}: invalid configuration: {error}", path.display()))?;
    Ok(config)
}

fn run_service(path: &Path) -> anyhow::Result<ExitCode> {
    let configured = load(path).and_then(|config| {
        if let Some(problem) = unedited(&config, path) {
            anyhow::bail!("{problem}; the service was not started");
        }
        let (properties, warnings) =
            config.properties().map_err(|error| anyhow::anyhow!("invalid property {error}"))?;
        Ok((config, properties, warnings))
    });
    let (config, properties, warnings) = match configured {
        Ok(configured) => configured,
        Err(error) => {
            eprintln!("error: {error:#}");
            return Ok(ExitCode::from(EX_CONFIG));
        }
    };
    // Owner-only (0700) from the start: it holds keys, sealed tokens and the audit log.
    nbwss_service::ensure_data_dir(&config.data_dir)?;
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
    match nbwss_service::log_file_writer(config)? {
        Some((writer, guard)) => {
            let _ = tracing_subscriber::registry()
                .with(filter())
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_ansi(crate::stderr_is_terminal())
                        .with_writer(std::io::stderr),
                )
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
        let defaults = nbwss_service::LogConfig::default();
        assert_eq!(config.log, defaults);
    }
}

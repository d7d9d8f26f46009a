//! `nbwss emulator ...`: run the emulated NetBackup primary server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use nbwss_emulator::{Emulator, EmulatorConfig};

/// Arguments of `nbwss emulator`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: EmulatorCommand,
}

#[derive(Debug, clap::Subcommand)]
enum EmulatorCommand {
    /// Serve an emulated NetBackup primary server REST API (https://HOST:PORT/netbackup) until Ctrl-C.
    ///
    /// Real NetBackup API clients (the Veritas samples, curl, scripts) can log in and list jobs, images
    /// and their files, policies, storage, SLPs, VMware assets and the event log, start backups and
    /// restores, and watch jobs run (and SLP copies follow) on an emulated clock.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Address to listen on. Real clients assume port 1556.
    #[arg(long, default_value = "127.0.0.1:1556", value_name = "ADDR")]
    bind: SocketAddr,
    /// PEM certificate to serve (with --tls-key); without it a self-signed certificate for localhost and
    /// 127.0.0.1 is generated on start.
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Write the server certificate (PEM) to this file, for clients to trust.
    #[arg(long, value_name = "FILE")]
    cert_out: Option<PathBuf>,
    /// A user who may log in, as NAME:PASSWORD (repeatable). Without --user or --users-file, a user
    /// "admin" with a generated password is created and the password is printed.
    #[arg(long = "user", value_name = "NAME:PASSWORD", value_parser = parse_user)]
    users: Vec<(String, String)>,
    /// A file of users, one NAME:PASSWORD per line (blank lines and lines starting with # are skipped).
    #[arg(long, value_name = "FILE")]
    users_file: Option<PathBuf>,
    /// Seed of the seed data and of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How much faster than real time the emulated clock runs (3600 makes an hour last a second).
    #[arg(long, default_value_t = 1.0, value_name = "FACTOR")]
    clock_multiplier: f64,
    /// Emulated duration of a backup job, e.g. 600, 90s, 10m or 1h.
    #[arg(long, default_value = "10m", value_parser = parse_duration, value_name = "DURATION")]
    job_duration: Duration,
    /// Probability (0 to 1) that a backup job fails.
    #[arg(long, default_value_t = 0.05, value_name = "RATE")]
    failure_rate: f64,
    /// Background backups started per emulated hour (0 disables them).
    #[arg(long, default_value_t = 4.0, value_name = "PER_HOUR")]
    activity: f64,
    /// API version assumed when a request names none.
    #[arg(long, default_value = nbwss_emulator::DEFAULT_API_VERSION, value_name = "VERSION")]
    api_version: String,
    /// Start with no policies, storage, SLPs, vCenter, jobs or images (configure storage before backups).
    #[arg(long)]
    no_seed_data: bool,
    /// Do not start backups when policy schedules are due (every frequencySeconds of emulated time).
    #[arg(long)]
    no_schedules: bool,
}

fn parse_user(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((name, password)) if !name.is_empty() => Ok((name.to_owned(), password.to_owned())),
        _ => Err(format!("{text:?} is not NAME:PASSWORD")),
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("{text:?} is not a duration such as 90s or 10m"))?;
    let seconds = match unit {
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{text:?}: the unit must be s, m or h")),
    };
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(format!("{text:?} must be more than zero"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn read_users(path: &PathBuf) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| parse_user(line).map_err(|error| anyhow::anyhow!("{}: {error}", path.display())))
        .collect()
}

/// Runs `nbwss emulator`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let EmulatorCommand::Run(args) = args.command;
    crate::init_tracing();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut users = args.users;
    if let Some(path) = &args.users_file {
        users.extend(read_users(path)?);
    }
    let generated = users.is_empty().then(nbwss_emulator::generate_password);
    if let Some(password) = &generated {
        users.push(("admin".to_owned(), password.clone()));
    }
    let config = EmulatorConfig {
        bind: args.bind,
        users: users.clone(),
        tls: args.tls_cert.zip(args.tls_key),
        seed: args.seed,
        clock_multiplier: args.clock_multiplier,
        job_duration: args.job_duration,
        failure_rate: args.failure_rate,
        background_activity: args.activity,
        default_api_version: args.api_version,
        seed_data: !args.no_seed_data,
        run_schedules: !args.no_schedules,
    };
    let handle = Emulator::start(config).await?;
    if let Some(path) = &args.cert_out {
        std::fs::write(path, handle.certificate_pem())
            .with_context(|| format!("writing the certificate to {}", path.display()))?;
    }
    println!("NetBackup emulator listening on {}", handle.base_url());
    match &generated {
        Some(password) => println!("log in as user admin with password {password}"),
        None => {
            let names: Vec<&str> = users.iter().map(|(name, _)| name.as_str()).collect();
            println!("users: {}", names.join(", "));
        }
    }
    if let Some(path) = &args.cert_out {
        println!("certificate written to {}", path.display());
    }
    println!("press Ctrl-C to stop");
    crate::shutdown_signal().await;
    println!("stopping");
    handle.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_and_users() {
        assert_eq!(parse_duration("600").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("5d").is_err());
        assert_eq!(parse_user("a:b:c").unwrap(), ("a".to_owned(), "b:c".to_owned()));
        assert!(parse_user(":x").is_err());
        assert!(parse_user("nocolon").is_err());
    }
}

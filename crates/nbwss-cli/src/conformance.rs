//! `nbwss conformance ...`: the conformance kit. Checks a third-party endpoint (the kit plays the service)
//! or a third-party service (the kit plays an endpoint) against the rules of docs/protocol.md and prints a
//! pass/fail table, or JSON for CI. Exit status: 0 when no rule failed, 1 when one did, 2 when the kit
//! could not run.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use nbwss_conformance::{
    check_endpoint, rule, CommandTrigger, EndpointOptions, Identity, Mode, Progress, Report, ServiceKit,
    ServiceOptions, SetupError, Trust,
};
use nbwss_protocol::parse_endpoint_details;

/// Exit status when the kit could not run at all.
const EXIT_SETUP: u8 = 2;

/// Check a third-party endpoint or service against the NBWSS rules (docs/protocol.md §16).
///
/// Each rule of the protocol document gets a row: pass, FAIL or skip, with a one-line reason. Exit status:
/// 0 when no rule failed, 1 when one did, 2 when the kit could not run (bad option, untrusted certificate,
/// address in use).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Play the NBWSS service against an endpoint: CONNECT (and a refused token), keepalive,
    /// notifications (acknowledged by id, resent, batched), limits and close codes, and COMMANDs when a
    /// --command-trigger is given.
    ///
    /// The kit sends test notifications whose client name is conformance.nbwss.invalid: use a test
    /// tenant, or delete them afterwards.
    ///
    /// Example: nbwss conformance endpoint --details primary1.json --fingerprint 3A:7F:...
    Endpoint(EndpointArgs),
    /// Play an endpoint for a service (e.g. a primary server's NBWSS): wait for it to connect, then refuse
    /// and accept CONNECT, send COMMANDs (good, malformed, outside /netbackup/), hold notifications until
    /// they are resent, stop answering pings, and check close codes.
    ///
    /// Save the kit as a WebSocket server on the service with the details file it writes (--details-file)
    /// and accept the certificate fingerprint it prints; the service connects within its
    /// connectionInfo.period. A run takes a few connection periods; lower connectionInfo.period and
    /// keepAlive.scheduledRate on a test server (and pass the same --keepalive-rate) to go faster.
    ///
    /// Example: nbwss conformance service --bind 0.0.0.0:9443 --public-host kit.example.com
    ///          --details-file kit.json --notify-cmd 'bpbackup -p test -s full -w'
    Service(ServiceArgs),
    /// List the rules, with the modes that check them.
    Rules {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
struct EndpointArgs {
    /// The endpoint's wss:// URL (or give --details).
    #[arg(long, value_name = "URL", required_unless_present = "details", requires = "token")]
    url: Option<String>,
    /// A token the endpoint issued (or give --details).
    #[arg(long, value_name = "TOKEN", env = "NBWSS_CONFORMANCE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// An endpoint details file (hostName, url, groupId, priority, token), as the endpoint's provider hands
    /// it to NetBackup administrators; gives the URL and the token.
    #[arg(long, value_name = "FILE", conflicts_with = "url")]
    details: Option<PathBuf>,
    /// Trust exactly the certificate with this SHA-256 fingerprint (hex, colons optional), as NetBackup pins
    /// the certificate an administrator accepted. Without it or --ca-file, the kit shows the fingerprint
    /// and stops.
    #[arg(long, value_name = "SHA256", conflicts_with = "ca_file")]
    fingerprint: Option<String>,
    /// Trust certificates signed by these CA certificates (PEM).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// A URL the kit calls (GET) to make the endpoint send a COMMAND on the kit's connection; the call must
    /// end with 2xx once the kit has answered. For nbwss's own endpoint, its relay URL:
    /// https://HOST:PORT/relay/API_KEY/PRIMARY/netbackup/ping (PRIMARY: the token's name). Without it the
    /// COMMAND rules are skipped. The kit trusts it like the endpoint (same --fingerprint or --ca-file).
    #[arg(long, value_name = "URL")]
    command_trigger: Option<String>,
    /// A header for the trigger call, 'Name: value' (repeatable), e.g. 'X-NBWSS-API-Key: KEY'.
    #[arg(long, value_name = "HEADER", requires = "command_trigger")]
    trigger_header: Vec<String>,
    /// The endpoint's message size limit, in bytes (D4).
    #[arg(long, value_name = "BYTES", default_value_t = nbwss_protocol::DEFAULT_MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,
    /// Seconds the endpoint has to answer CONNECT (D5).
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = seconds)]
    connect_timeout: Duration,
    /// Seconds the endpoint has to acknowledge a notification (a service resends after
    /// notification.scheduledRate, 5 s by default).
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = seconds)]
    ack_timeout: Duration,
    /// Seconds for any other answer (pong, close frame, COMMAND after the trigger).
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = seconds)]
    reply_timeout: Duration,
    /// Print the report as JSON (for CI) instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct ServiceArgs {
    /// Address to listen on; use 0.0.0.0:PORT (and --public-host) for a service on another machine.
    #[arg(long, value_name = "ADDR", default_value = nbwss_conformance::DEFAULT_BIND)]
    bind: SocketAddr,
    /// Host name or address the service reaches the kit by (URL, certificate, details file)
    /// [default: the bind address, localhost for 0.0.0.0].
    #[arg(long, value_name = "HOST")]
    public_host: Option<String>,
    /// Path of the kit's WebSocket endpoint.
    #[arg(long, value_name = "PATH", default_value = nbwss_conformance::DEFAULT_PATH)]
    path: String,
    /// The token the service must present [default: a random one, in the details file].
    #[arg(long, value_name = "TOKEN", env = "NBWSS_CONFORMANCE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Write the endpoint details file (one host object with the token) here, for
    /// `nbwss servers add --file` or NetBackup's WebSocket Server dialog.
    #[arg(long, value_name = "FILE")]
    details_file: Option<PathBuf>,
    /// PEM certificate chain for the kit (with --tls-key) [default: a self-signed one, generated].
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Seconds to wait for the service's first connection.
    #[arg(long, value_name = "SECONDS", default_value = "300", value_parser = seconds)]
    wait: Duration,
    /// Seconds the service has to connect again after a close (its connectionInfo.period and a margin).
    #[arg(long, value_name = "SECONDS", default_value = "75", value_parser = seconds)]
    reconnect_wait: Duration,
    /// Seconds for answers: CONNECT after the upgrade, pongs, close frames.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = seconds)]
    reply_timeout: Duration,
    /// Seconds the service has to answer the kit's COMMANDs (relayed to the primary server).
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = seconds)]
    command_timeout: Duration,
    /// The URI of the GET the kit relays; it must exist on the primary server.
    #[arg(long, value_name = "URI", default_value = nbwss_conformance::DEFAULT_GET_URI)]
    get_uri: String,
    /// A shell command that makes the primary server produce a notification (e.g. start a backup); run
    /// each time the kit needs one, with NBWSS_CONFORMANCE_ROUND=1, 2. Without it, run backups yourself
    /// while the kit waits.
    #[arg(long, value_name = "COMMAND")]
    notify_cmd: Option<String>,
    /// Seconds to wait for a notification.
    #[arg(long, value_name = "SECONDS", default_value = "120", value_parser = seconds)]
    notification_wait: Duration,
    /// Seconds to wait for an unacknowledged notification to be sent again (notification.scheduledRate
    /// plus notification.sendTimeout and a margin), and to watch that an acknowledged one is not.
    #[arg(long, value_name = "SECONDS", default_value = "15", value_parser = seconds)]
    resend_wait: Duration,
    /// The service's keepAlive.scheduledRate, in seconds.
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = seconds)]
    keepalive_rate: Duration,
    /// The service's keepAlive.maxPongMissAllowed.
    #[arg(long, value_name = "COUNT", default_value_t = nbwss_conformance::DEFAULT_MAX_PONG_MISS)]
    max_pong_miss: u32,
    /// The service's message size limit, in bytes (message.maxBytes, D4).
    #[arg(long, value_name = "BYTES", default_value_t = nbwss_protocol::DEFAULT_MAX_MESSAGE_BYTES)]
    max_message_bytes: usize,
    /// Print the report as JSON (for CI) instead of a table.
    #[arg(long)]
    json: bool,
}

fn seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text.parse().map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if !value.is_finite() || value <= 0.0 || value > 86_400.0 {
        return Err(format!("'{text}' must be between 0 and 86400 seconds"));
    }
    Ok(Duration::from_secs_f64(value))
}

/// Runs `nbwss conformance`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Rules { json } => {
            print_rules(json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Endpoint(args) => {
            let json = args.json;
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            finish(runtime.block_on(endpoint(args)), json)
        }
        Command::Service(args) => {
            let json = args.json;
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            finish(runtime.block_on(service(args)), json)
        }
    }
}

fn finish(outcome: Result<Report, SetupError>, json: bool) -> anyhow::Result<ExitCode> {
    match outcome {
        Ok(report) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&report.to_json())?);
            } else {
                print!("{}", report.table());
            }
            Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Err(error) => {
            eprintln!("error: {error}");
            Ok(ExitCode::from(EXIT_SETUP))
        }
    }
}

/// Step lines on standard error when it is a terminal; quiet when piped.
fn progress() -> Option<Progress> {
    std::io::stderr().is_terminal().then(|| -> Progress { Arc::new(|line: &str| eprintln!("  {line}")) })
}

async fn endpoint(args: EndpointArgs) -> Result<Report, SetupError> {
    let (url, token) = match (&args.details, args.url, args.token) {
        (Some(file), _, _) => {
            let text = std::fs::read_to_string(file)
                .map_err(|error| setup(format!("cannot read {}: {error}", file.display())))?;
            let details = parse_endpoint_details(&text).map_err(|error| {
                setup(format!("{}: not an endpoint details file: {error}", file.display()))
            })?;
            let first = details.into_iter().next().ok_or_else(|| setup("the details file is empty"))?;
            (first.url, first.token.expose().to_owned())
        }
        (None, Some(url), Some(token)) => (url, token),
        _ => return Err(setup("give --url and --token, or --details FILE")),
    };
    let trust = match (args.fingerprint, args.ca_file) {
        (Some(fingerprint), _) => Trust::Fingerprint(fingerprint),
        (None, Some(file)) => Trust::ca_file(&file)?,
        (None, None) => Trust::Unset,
    };
    let mut headers = Vec::new();
    for header in &args.trigger_header {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| setup(format!("--trigger-header '{header}' must be 'Name: value'")))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let mut options = EndpointOptions::new(url, token, trust);
    options.command_trigger = args.command_trigger.map(|url| CommandTrigger { url, headers });
    options.max_message_bytes = args.max_message_bytes;
    options.connect_timeout = args.connect_timeout;
    options.ack_timeout = args.ack_timeout;
    options.reply_timeout = args.reply_timeout;
    options.progress = progress();
    check_endpoint(options).await
}

async fn service(args: ServiceArgs) -> Result<Report, SetupError> {
    let identity = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let read = |path: &PathBuf| {
                std::fs::read_to_string(path)
                    .map_err(|error| setup(format!("cannot read {}: {error}", path.display())))
            };
            Some(Identity::from_pem(&read(cert)?, &read(key)?)?)
        }
        _ => None,
    };
    let options = ServiceOptions {
        bind: args.bind,
        public_host: args.public_host,
        path: args.path,
        token: args.token,
        identity,
        first_wait: args.wait,
        reconnect_wait: args.reconnect_wait,
        reply_timeout: args.reply_timeout,
        command_timeout: args.command_timeout,
        get_uri: args.get_uri,
        notify_command: args.notify_cmd,
        notification_wait: args.notification_wait,
        resend_wait: args.resend_wait,
        keepalive_rate: args.keepalive_rate,
        max_pong_miss: args.max_pong_miss,
        max_message_bytes: args.max_message_bytes,
        progress: progress(),
    };
    let kit = ServiceKit::bind(options).await?;
    let details = serde_json::to_string_pretty(&kit.details().to_value())
        .map_err(|error| setup(format!("cannot encode the details: {error}")))?;
    eprintln!("nbwss conformance kit, playing an endpoint for the service under test");
    eprintln!("  WebSocket URL:       {}", kit.url());
    eprintln!("  certificate SHA-256: {}", kit.identity().certificate_sha256);
    match &args.details_file {
        Some(file) => {
            std::fs::write(file, format!("{details}\n"))
                .map_err(|error| setup(format!("cannot write {}: {error}", file.display())))?;
            eprintln!("  details file:        {} (with the token)", file.display());
            eprintln!(
                "Save it on the service (nbwss servers add --file {}, or NetBackup's WebSocket Server",
                file.display()
            );
            eprintln!("dialog) and accept the certificate above.");
        }
        None => {
            eprintln!("  token:               {}", kit.token());
            eprintln!(
                "Save a WebSocket server with this URL and token on the service (or pass --details-file)"
            );
            eprintln!("and accept the certificate above.");
        }
    }
    eprintln!("Waiting up to {} s for the service to connect.", args.wait.as_secs());
    Ok(kit.run().await)
}

fn setup(message: impl Into<String>) -> SetupError {
    SetupError::from(message.into())
}

fn print_rules(json: bool) -> anyhow::Result<()> {
    let modes = |rule: &rule::Rule| {
        [(Mode::Endpoint, rule.endpoint), (Mode::Service, rule.service)]
            .iter()
            .filter(|(_, applies)| *applies)
            .map(|(mode, _)| mode.as_str())
            .collect::<Vec<_>>()
    };
    if json {
        let rules: Vec<serde_json::Value> = rule::ALL
            .iter()
            .map(|rule| {
                serde_json::json!({"id": rule.id, "section": rule.section, "basis": rule.basis,
                    "title": rule.title, "modes": modes(rule), "doc": rule.doc_link()})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rules)?);
    } else {
        for rule in rule::ALL {
            println!("{:<13} {:<5} {:<17} {}", rule.id, rule.section, modes(rule).join(", "), rule.title);
        }
    }
    Ok(())
}

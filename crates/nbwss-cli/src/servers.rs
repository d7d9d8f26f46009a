//! `nbwss servers ...`: manage WebSocket servers through the service's admin API (the administrator's side
//! of the guide's "WebSocket Server" dialog).

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use nbwss_protocol::{parse_endpoint_details, HostObject, HostState, HostUpdate};
use nbwss_service::ProbeFailure;
use nbwss_service::{AdminClient, AdminError};

/// Arguments of `nbwss servers`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The service's data directory (where it wrote admin.json and admin.key).
    #[arg(long, value_name = "DIR", env = "NBWSS_DATA_DIR", global = true, conflicts_with = "service")]
    data_dir: Option<PathBuf>,
    /// The service's admin URL (https://HOST:PORT), instead of --data-dir.
    #[arg(long, value_name = "URL", global = true, requires = "admin_key")]
    service: Option<String>,
    /// The admin key, with --service.
    #[arg(long, value_name = "KEY", env = "NBWSS_ADMIN_KEY", global = true, hide_env_values = true)]
    admin_key: Option<String>,
    /// PEM file with the admin listener's certificate, with --service (else the system roots are trusted).
    #[arg(long, value_name = "FILE", global = true)]
    admin_cert: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Validate endpoint details and show the endpoint's certificate.
    Validate(Source),
    /// Validate, show the certificate, ask to accept it, and save the WebSocket server(s). A host that is
    /// saved already is renewed in place, as `update` does.
    Add {
        #[command(flatten)]
        source: Source,
        /// Accept the certificate without asking if its SHA-256 fingerprint is this one.
        #[arg(long, value_name = "SHA256")]
        accept_certificate: Option<String>,
    },
    /// Renew a saved WebSocket server in place: validate it again, show the certificate it presents beside
    /// the pinned one and, once accepted, pin it. With --file or --url, also take new details (URL, group,
    /// priority, token) from the endpoint details. The server keeps its state, its credential and its
    /// group's notification backlog; the service reconnects with the new details on its next run.
    Update {
        /// Host name of the WebSocket server.
        host: String,
        #[command(flatten)]
        source: NewDetails,
        /// Accept the presented certificate without asking if its SHA-256 fingerprint is this one.
        #[arg(long, value_name = "SHA256")]
        accept_certificate: Option<String>,
    },
    /// List the WebSocket servers with their state, connection state, and why the last connection closed.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show everything about one WebSocket server: its pinned certificate, the token's fingerprint (never
    /// the token), why its last connection closed, and a certificate it presents instead of the pinned one.
    Show {
        /// Host name of the WebSocket server.
        host: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Let the service connect to a WebSocket server (from the connection task's next run).
    Activate {
        /// Host name of the WebSocket server.
        host: String,
    },
    /// Stop the service from connecting to a WebSocket server (closes its connection on the next run).
    Deactivate {
        /// Host name of the WebSocket server.
        host: String,
    },
    /// Delete a WebSocket server.
    Delete {
        /// Host name of the WebSocket server.
        host: String,
    },
}

#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct Source {
    /// An endpoint details file (one host object or an array of them).
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// A provider URL that serves the endpoint details.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
}

/// Where `update` takes new details from, if anywhere.
#[derive(Debug, clap::Args)]
#[group(required = false, multiple = false)]
struct NewDetails {
    /// An endpoint details file with the server's new details (its hostName must match).
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// A provider URL that serves the server's new details.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
}

/// Runs `nbwss servers`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let client = client(&args)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        match args.command {
            Command::Validate(source) => {
                for host in details(&client, &source).await? {
                    let validated = validate(&client, &host).await?;
                    print_certificate(&validated);
                }
            }
            Command::Add { source, accept_certificate } => {
                let saved = client.list().await.map_err(|error| explain(&client, error, None))?;
                for host in details(&client, &source).await? {
                    if let Some(pinned) = saved.iter().find(|saved| saved.host_name == host.host_name) {
                        println!("{} is saved already: renewing it in place", host.host_name);
                        renew(&client, pinned, Some(&host), accept_certificate.as_deref()).await?;
                        continue;
                    }
                    let validated = validate(&client, &host).await?;
                    print_certificate(&validated);
                    let presented = validated.sha256_fingerprint.clone().unwrap_or_default();
                    match &accept_certificate {
                        Some(expected) => {
                            if normalise(expected) != normalise(&presented) {
                                anyhow::bail!(
                                    "{} presents a certificate with SHA-256 {presented}, not the {expected} given with --accept-certificate; nothing saved",
                                    host.url
                                );
                            }
                        }
                        None => {
                            if !confirm(&format!("Accept this certificate for {}? [y/N] ", host.host_name))? {
                                anyhow::bail!("certificate not accepted; {} not saved", host.host_name);
                            }
                        }
                    }
                    let save = HostObject { certificate: validated.certificate, ..host.clone() };
                    client.save(&save).await.map_err(|error| explain(&client, error, Some(&host.host_name)))?;
                    println!("saved {} (group {}, priority {}); the service connects on its next run", host.host_name, host.group_id, host.priority);
                }
            }
            Command::Update { host, source, accept_certificate } => {
                let pinned = saved_host(&client, &host).await?;
                let new_details = match (&source.file, &source.url) {
                    (None, None) => None,
                    (file, url) => {
                        let source = Source { file: file.clone(), url: url.clone() };
                        let all = details(&client, &source).await?;
                        let named: Vec<&HostObject> = all.iter().filter(|details| details.host_name == host).collect();
                        match named.as_slice() {
                            [one] => Some((*one).clone()),
                            _ => anyhow::bail!(
                                "the endpoint details hold {} entries named {host}: give details with exactly one (the host names there: {})",
                                named.len(),
                                all.iter().map(|details| details.host_name.as_str()).collect::<Vec<_>>().join(", ")
                            ),
                        }
                    }
                };
                renew(&client, &pinned, new_details.as_ref(), accept_certificate.as_deref()).await?;
            }
            Command::Show { host, json } => {
                let host = saved_host(&client, &host).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&host)?);
                } else {
                    print_host(&host);
                }
            }
            Command::List { json } => {
                let hosts = client.list().await.map_err(|error| explain(&client, error, None))?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&hosts)?);
                } else {
                    print_table(&hosts);
                }
            }
            Command::Activate { host } => {
                client.update(&host, HostState::Activated).await.map_err(|error| explain(&client, error, Some(&host)))?;
                println!("{host} activated; the service connects on its next run");
            }
            Command::Deactivate { host } => {
                client.update(&host, HostState::Deactivated).await.map_err(|error| explain(&client, error, Some(&host)))?;
                println!("{host} deactivated; its connection closes on the service's next run");
            }
            Command::Delete { host } => {
                client.delete(&host).await.map_err(|error| explain(&client, error, Some(&host)))?;
                println!("{host} deleted");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn client(args: &Args) -> anyhow::Result<AdminClient> {
    if let Some(url) = &args.service {
        let key = args.admin_key.as_deref().context("--service needs --admin-key")?;
        let pem = match &args.admin_cert {
            Some(file) => Some(
                std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?,
            ),
            None => None,
        };
        return AdminClient::new(url, key, pem.as_deref());
    }
    let dir = args.data_dir.as_ref().context(
        "say where the service is: --data-dir DIR (its data directory) or --service URL --admin-key KEY",
    )?;
    AdminClient::from_data_dir(dir)
}

/// The host objects to work on, from a details file or a provider URL.
async fn details(client: &AdminClient, source: &Source) -> anyhow::Result<Vec<HostObject>> {
    if let Some(file) = &source.file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the endpoint details file {}", file.display()))?;
        let details = parse_endpoint_details(&text).map_err(|error| {
            anyhow::anyhow!("{} is not a valid endpoint details file: {error}", file.display())
        })?;
        return Ok(details
            .into_iter()
            .map(|details| HostObject {
                host_name: details.host_name,
                url: details.url,
                group_id: details.group_id,
                priority: details.priority,
                token: Some(details.token),
                ..HostObject::default()
            })
            .collect());
    }
    let url = source.url.as_deref().unwrap_or_default();
    let hosts = client.validate_url(url).await.map_err(|error| explain(client, error, None))?;
    if let Some(host) = hosts.iter().find(|host| host.token.as_ref().is_none_or(|token| token.is_empty())) {
        anyhow::bail!(
            "the details from {url} for {} have no token; ask the provider for complete details",
            host.host_name
        );
    }
    Ok(hosts)
}

/// The saved WebSocket server named `host`, as listed.
async fn saved_host(client: &AdminClient, host: &str) -> anyhow::Result<HostObject> {
    let hosts = client.list().await.map_err(|error| explain(client, error, None))?;
    let names: Vec<&str> = hosts.iter().map(|host| host.host_name.as_str()).collect();
    let known =
        if names.is_empty() { "none is saved".to_owned() } else { format!("saved: {}", names.join(", ")) };
    hosts
        .iter()
        .find(|saved| saved.host_name == host)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no WebSocket server named '{host}' ({known})"))
}

/// Validates the saved server (or its new details) again, shows the presented certificate beside the pinned
/// one, and once accepted pins it with the new details, in place.
async fn renew(
    client: &AdminClient,
    pinned: &HostObject,
    new_details: Option<&HostObject>,
    accept_certificate: Option<&str>,
) -> anyhow::Result<()> {
    let target = new_details.cloned().unwrap_or_else(|| HostObject {
        host_name: pinned.host_name.clone(),
        url: pinned.url.clone(),
        group_id: pinned.group_id.clone(),
        priority: pinned.priority,
        ..HostObject::default()
    });
    let validated = validate(client, &target).await?;
    let presented = validated.sha256_fingerprint.clone().unwrap_or_default();
    let pinned_fingerprint = pinned.sha256_fingerprint.clone().unwrap_or_default();
    println!("Host name:   {}", pinned.host_name);
    println!("URL:         {}", target.url);
    print_certificate_of("Pinned certificate", pinned.subject.as_deref(), &pinned_fingerprint);
    print_certificate_of("Presented now", validated.subject.as_deref(), &presented);
    let same_certificate = normalise(&presented) == normalise(&pinned_fingerprint);
    let location_changed = new_details.is_some_and(|details| {
        (details.url.as_str(), details.group_id.as_str(), details.priority)
            != (pinned.url.as_str(), pinned.group_id.as_str(), pinned.priority)
    });
    let token = new_details.and_then(|details| details.token.clone());
    let token_changed = token.as_ref().is_some_and(|token| {
        Some(nbwss_service::token_fingerprint(token.expose())) != pinned.token_fingerprint
    });
    if same_certificate && !location_changed && !token_changed {
        println!(
            "{} presents the pinned certificate and its details are unchanged: nothing to renew",
            pinned.host_name
        );
        return Ok(());
    }
    if !same_certificate {
        match accept_certificate {
            Some(expected) if normalise(expected) == normalise(&presented) => {}
            Some(expected) => anyhow::bail!(
                "{} presents a certificate with SHA-256 {presented}, not the {expected} given with --accept-certificate; nothing changed",
                target.url
            ),
            None => {
                let question = format!("Pin the presented certificate for {} instead of the pinned one? [y/N] ", pinned.host_name);
                if !confirm(&question)? {
                    anyhow::bail!("certificate not accepted; {} not changed", pinned.host_name);
                }
            }
        }
    }
    let update = HostUpdate {
        host_name: pinned.host_name.clone(),
        state: None,
        location: location_changed.then(|| (target.url.clone(), target.group_id.clone(), target.priority)),
        token: token.filter(|_| token_changed),
        certificate: validated.certificate,
    };
    client.renew(&update).await.map_err(|error| explain(client, error, Some(&pinned.host_name)))?;
    let mut changed = Vec::new();
    if !same_certificate {
        changed.push("the presented certificate is pinned".to_owned());
    }
    if location_changed {
        changed
            .push(format!("now {} in group {} at priority {}", target.url, target.group_id, target.priority));
    }
    if token_changed {
        changed.push("its token is replaced".to_owned());
    }
    println!(
        "renewed {}: {}; its state, credential and notification backlog are kept; the service reconnects on its next run",
        pinned.host_name,
        changed.join(", ")
    );
    Ok(())
}

async fn validate(client: &AdminClient, host: &HostObject) -> anyhow::Result<HostObject> {
    let request = HostObject { token: None, ..host.clone() };
    client.validate_host(&request).await.map_err(|error| explain(client, error, Some(&host.host_name)))
}

/// An error message for the administrator, naming the likely fix.
fn explain(client: &AdminClient, error: AdminError, host: Option<&str>) -> anyhow::Error {
    let hint = match (&error, host) {
        (AdminError::Transport { .. }, _) => {
            format!("; is `nbwss service run` running, and is {} its admin URL?", client.url())
        }
        (AdminError::Api { status: 401, .. }, _) => {
            "; check the admin key (the service's admin.key)".to_owned()
        }
        (AdminError::Api { status: 404, .. }, Some(host)) => {
            format!("; `nbwss servers list` shows the known host names ({host} is not one)")
        }
        (AdminError::Api { status: 409, .. }, Some(host)) => {
            format!("; renew it with `nbwss servers update {host}`")
        }
        _ => match error.probe_failure() {
            Some(ProbeFailure::TlsHandshake) => {
                "; check that the URL is the endpoint's wss:// address and that it presents a valid certificate"
                    .to_owned()
            }
            Some(ProbeFailure::Unreachable) => {
                "; check the URL, the outbound firewall and proxy, and the endpoint's TLS".to_owned()
            }
            None => String::new(),
        },
    };
    anyhow::anyhow!("{error}{hint}")
}

fn print_certificate(host: &HostObject) {
    println!("Host name:   {}", host.host_name);
    println!("URL:         {}", host.url);
    println!("Group:       {}", host.group_id);
    println!("Priority:    {}", host.priority);
    println!("Certificate: {}", host.subject.as_deref().unwrap_or("?"));
    println!("  SHA-1:     {}", host.sha1_fingerprints.as_deref().unwrap_or("?"));
    println!("  SHA-256:   {}", host.sha256_fingerprint.as_deref().unwrap_or("?"));
}

fn print_certificate_of(title: &str, subject: Option<&str>, sha256: &str) {
    println!("{title}:");
    println!("  Subject:   {}", subject.unwrap_or("?"));
    println!("  SHA-256:   {sha256}");
}

/// One server in full (`servers show`).
fn print_host(host: &HostObject) {
    let text = |value: Option<&str>| value.unwrap_or("-").to_owned();
    println!("Host name:      {}", host.host_name);
    println!("URL:            {}", host.url);
    println!("Group:          {}", host.group_id);
    println!("Priority:       {}", host.priority);
    println!("State:          {}", text(host.state.as_ref().map(|state| state.as_str())));
    println!(
        "Connection:     {}{}",
        text(host.connection_state.as_ref().map(|state| state.as_str())),
        host.close_status.as_ref().map(|status| format!(" (last closeStatus {status})")).unwrap_or_default()
    );
    match &host.last_close {
        Some(close) => {
            println!("Last close:     {} at {}", close.reason.words(), close.at);
            println!("                {}", close.description);
        }
        None => println!("Last close:     -"),
    }
    println!("Attempts since the last success: {}", host.attempts_since_last_success.unwrap_or(0));
    println!(
        "Token:          {} (a fingerprint, never the token: compare it with `nbwss endpoint token list` at the endpoint)",
        text(host.token_fingerprint.as_deref())
    );
    println!("Credential id:  {}", text(host.credential_id.as_deref()));
    print_certificate_of(
        "Pinned certificate",
        host.subject.as_deref(),
        host.sha256_fingerprint.as_deref().unwrap_or("?"),
    );
    if let Some(presented) = &host.presented_certificate {
        print_certificate_of("Presented instead", Some(&presented.subject), &presented.sha256_fingerprint);
        println!("  Seen at:   {}", presented.seen_at);
        println!("  Review and accept it with: {}", presented.accept_command);
    }
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    print!("{question}");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

fn normalise(fingerprint: &str) -> String {
    nbwss_service::normalise_fingerprint(fingerprint)
}

fn print_table(hosts: &[HostObject]) {
    let header = [
        "HOST NAME",
        "URL",
        "GROUP",
        "PRIORITY",
        "STATE",
        "CONNECTION",
        "CLOSE STATUS",
        "LAST CLOSE",
        "AT",
        "ATTEMPTS",
    ];
    let rows: Vec<[String; 10]> = hosts
        .iter()
        .map(|host| {
            [
                host.host_name.clone(),
                host.url.clone(),
                host.group_id.clone(),
                host.priority.to_string(),
                host.state.as_ref().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                host.connection_state.as_ref().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                host.close_status.as_ref().map(|s| s.as_str().to_owned()).unwrap_or_else(|| "-".into()),
                host.last_close
                    .as_ref()
                    .map(|close| close.reason.words().to_owned())
                    .unwrap_or_else(|| "-".into()),
                host.last_close.as_ref().map(|close| close.at.clone()).unwrap_or_else(|| "-".into()),
                host.attempts_since_last_success.unwrap_or(0).to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!("{}", line(&header.map(str::to_owned)));
    for row in &rows {
        println!("{}", line(row));
    }
    if rows.is_empty() {
        println!("(no WebSocket servers; add one with `nbwss servers add --file FILE`)");
    }
    // What needs the administrator, in sentences under the table.
    for host in hosts {
        if let Some(presented) = &host.presented_certificate {
            println!(
                "\n{}: presents a certificate other than the pinned one (SHA-256 {}, since {}); review and accept it with: {}",
                host.host_name, presented.sha256_fingerprint, presented.seen_at, presented.accept_command
            );
        } else if let Some(close) = host.last_close.as_ref().filter(|_| {
            host.connection_state
                .as_ref()
                .is_some_and(|state| *state != nbwss_protocol::ConnectionState::Connected)
                && host.state.as_ref().is_some_and(|state| *state == HostState::Activated)
        }) {
            println!("\n{}: {}", host.host_name, close.description);
        }
    }
}

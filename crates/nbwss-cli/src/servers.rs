//! `nbwss servers ...`: manage WebSocket servers through the service's admin API (the administrator's side
//! of the guide's "WebSocket Server" dialog).

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use nbwss_protocol::{parse_endpoint_details, HostObject, HostState};
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
    /// Validate, show the certificate, ask to accept it, and save the WebSocket server(s).
    Add {
        #[command(flatten)]
        source: Source,
        /// Accept the certificate without asking if its SHA-256 fingerprint is this one.
        #[arg(long, value_name = "SHA256")]
        accept_certificate: Option<String>,
    },
    /// List the WebSocket servers with their state and connection state.
    List {
        /// Print JSON instead of a table.
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
                for host in details(&client, &source).await? {
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
            format!("; delete it first with `nbwss servers delete {host}` to replace it")
        }
        (AdminError::Api { status: 500, message, .. }, _) if message.contains("TLS handshake") => {
            "; check that the URL is the endpoint's wss:// address and that it presents a valid certificate"
                .to_owned()
        }
        (AdminError::Api { status: 500, message, .. }, _) if message.contains("cannot be reached") => {
            "; check the URL, the outbound firewall and proxy, and the endpoint's TLS".to_owned()
        }
        _ => String::new(),
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

fn confirm(question: &str) -> anyhow::Result<bool> {
    print!("{question}");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

fn normalise(fingerprint: &str) -> String {
    nbwss_service::tls::normalise_fingerprint(fingerprint)
}

fn print_table(hosts: &[HostObject]) {
    let header = ["HOST NAME", "URL", "GROUP", "PRIORITY", "STATE", "CONNECTION", "CLOSE STATUS"];
    let rows: Vec<[String; 7]> = hosts
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
}

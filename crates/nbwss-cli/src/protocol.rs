//! `nbwss protocol ...`: check NBWSS messages, endpoint details files and `nbwss.properties`, and print
//! valid example messages.

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use nbwss_protocol::{
    parse_endpoint_details, Body, Codec, CommandRequest, CommandResponse, ConnectRequest, ConnectResponse,
    ImageOperation, ImageRecord, JobRecord, JobState, JobType, Message, Method, NotificationGroup,
    Properties, ScheduleType, Secret, DEFAULT_MAX_MESSAGE_BYTES,
};

/// Check NBWSS messages and related files, or print example messages.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Validate NBWSS message files; prints a summary of each valid message or the precise error.
    ///
    /// Each file holds one message (one JSON object). Exit status is 0 only when every file is valid.
    /// Example: nbwss protocol check request.json response.json
    Check {
        /// Message files; `-` reads standard input.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<String>,
        /// Largest message accepted, in bytes (the service's message.maxBytes).
        #[arg(long, default_value_t = DEFAULT_MAX_MESSAGE_BYTES, value_name = "BYTES")]
        max_bytes: usize,
    },
    /// Print a valid example message of the given kind.
    Example {
        /// Which message to print.
        #[arg(value_enum)]
        kind: ExampleKind,
    },
    /// Validate an endpoint details file (one host object or an array of them).
    Details {
        /// The details file; `-` reads standard input.
        #[arg(value_name = "FILE")]
        file: String,
    },
    /// Validate an nbwss.properties file, or print one with every default when no file is given.
    Properties {
        /// The properties file; `-` reads standard input.
        #[arg(value_name = "FILE")]
        file: Option<String>,
    },
}

/// The message kinds `nbwss protocol example` prints.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ExampleKind {
    ConnectRequest,
    ConnectResponse,
    CommandRequest,
    CommandResponse,
    NotificationRequest,
    NotificationResponse,
}

/// Runs `nbwss protocol`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Check { files, max_bytes } => Ok(check(&files, Codec::new(max_bytes))),
        Command::Example { kind } => {
            let message = example(kind);
            let pretty = serde_json::to_string_pretty(&message.to_value())?;
            println!("{pretty}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Details { file } => {
            let text = read(&file)?;
            match parse_endpoint_details(&text) {
                Ok(details) => {
                    for detail in details {
                        println!(
                            "{file}: ok: {} {} group {} priority {} (token present)",
                            detail.host_name, detail.url, detail.group_id, detail.priority
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => {
                    println!("{file}: error: {error}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Properties { file: None } => {
            print!("{}", Properties::defaults_file());
            Ok(ExitCode::SUCCESS)
        }
        Command::Properties { file: Some(file) } => {
            let text = read(&file)?;
            match Properties::parse(&text) {
                Ok((_, warnings)) => {
                    for warning in warnings {
                        println!("{file}: warning: {warning}");
                    }
                    // The keys the file sets, each valid; the others keep their defaults.
                    let set = text
                        .lines()
                        .map(str::trim)
                        .filter(|line| {
                            !line.is_empty() && !line.starts_with(['#', '!']) && line.contains('=')
                        })
                        .count();
                    println!("{file}: ok: {set} keys set, the others at their defaults");
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => {
                    println!("{file}: error: {error}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

fn read(file: &str) -> anyhow::Result<String> {
    if file == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading standard input")?;
        return Ok(text);
    }
    std::fs::read_to_string(file).with_context(|| format!("reading {file}"))
}

fn check(files: &[String], codec: Codec) -> ExitCode {
    let mut all_valid = true;
    for file in files {
        let outcome = read(file).map_err(|error| format!("{error:#}")).and_then(|text| {
            codec.decode(text.trim_end()).map_err(|error| {
                let id = error.id.as_deref().map(|id| format!(" (message {id})")).unwrap_or_default();
                format!("{error}{id}")
            })
        });
        match outcome {
            Ok(message) => println!("{file}: ok: {}", message.summary()),
            Err(error) => {
                all_valid = false;
                println!("{file}: error: {error}");
            }
        }
    }
    if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn example(kind: ExampleKind) -> Message {
    let now = nbwss_protocol::unix_now();
    let body = match kind {
        ExampleKind::ConnectRequest => {
            Body::ConnectRequest(ConnectRequest { token: Secret::new("qwerrtrtrtrt2234344===") })
        }
        ExampleKind::ConnectResponse => Body::ConnectResponse(ConnectResponse { valid: true }),
        ExampleKind::CommandRequest => {
            let mut request = CommandRequest::new(Method::Get, "/netbackup/admin/jobs?page%5Blimit%5D=10");
            request.headers.set("Accept", "application/vnd.netbackup+json;version=8.0");
            request.headers.set("Authorization", "<token from a relayed POST /netbackup/login>");
            Body::CommandRequest(request)
        }
        ExampleKind::CommandResponse => {
            let mut response = CommandResponse {
                status_code: 200,
                headers: Default::default(),
                body: r#"{"data":[],"meta":{"pagination":{"limit":10}}}"#.into(),
            };
            response.headers.set("content-type", "application/vnd.netbackup+json;version=8.0");
            Body::CommandResponse(response)
        }
        ExampleKind::NotificationRequest => Body::NotificationRequest(vec![
            NotificationGroup::jobs(vec![JobRecord {
                schedule_type: ScheduleType::Full,
                client_name: "client1.example.com".into(),
                status: 0,
                start_time: now - 60,
                state: JobState::Done,
                policy_name: "standard-daily".into(),
                parent_job_id: 42,
                job_id: 42,
                policy_type: "STANDARD".into(),
                job_type: JobType::Backup,
            }]),
            NotificationGroup::images(vec![ImageRecord {
                client_type: "STANDARD".into(),
                client_name: "client1.example.com".into(),
                backup_time: now - 60,
                created_time: now,
                operation_id: ImageOperation::Create,
                backup_id: format!("client1.example.com_{}", now - 60),
            }]),
        ]),
        ExampleKind::NotificationResponse => Body::notification_ack(),
    };
    Message::new(body)
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::*;

    #[test]
    fn every_example_is_valid() {
        let codec = Codec::default();
        for kind in ExampleKind::value_variants() {
            let message = example(*kind);
            assert_eq!(codec.decode(&codec.encode(&message)).unwrap(), message, "{kind:?}");
        }
    }
}

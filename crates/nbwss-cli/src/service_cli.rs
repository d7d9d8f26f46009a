//! The `nbwss-service` command: what an administrator runs on a NetBackup primary server. The service, its
//! WebSocket servers, the notify hook for NetBackup's scripts and the message checker — the same subcommands
//! as `nbwss service`, `nbwss servers`, `nbwss notify` and `nbwss protocol`, with the Debian package's
//! paths as defaults, and nothing else linked in.

use std::process::ExitCode;

use clap::FromArgMatches as _;

use crate::state::{default_everywhere, SERVICE_CONFIG, SERVICE_DATA_DIR};
use crate::{notify, protocol, servers, service};

/// The NetBackup WebSocket Service (NBWSS), for a NetBackup primary server.
///
/// Connects out over wss:// to the cloud endpoints configured as WebSocket servers, relays their NetBackup
/// REST API calls to this primary server and pushes its job and image notifications. Installed from the
/// package, it runs as the nbwss-service systemd unit: edit /etc/nbwss-service/service.toml, then
/// `systemctl start nbwss-service`, and add the endpoint with `nbwss-service servers add --file FILE`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "nbwss-service",
    version,
    propagate_version = true,
    max_term_width = 110,
    after_long_help = FILES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    #[command(flatten)]
    Service(service::Command),
    /// Manage the WebSocket servers (cloud endpoints) the service connects to.
    Servers(servers::Args),
    /// Enqueue JOB or IMAGE notification records (for NetBackup's notify scripts).
    Notify(Box<notify::Args>),
    /// Check NBWSS message files and nbwss.properties, or print valid examples.
    Protocol(protocol::Args),
}

/// Where things are when installed from the package (shown by `--help` and in the man page).
const FILES: &str = "\
Files (as installed from the nbwss-service package):
  /etc/nbwss-service/service.toml  the configuration (`nbwss-service example-config` prints the original)
  /var/lib/nbwss-service/          the data directory: WebSocket servers (tokens encrypted), keys,
                                   admin.json, the notification outbox, logs/ and audit.log
  journalctl -u nbwss-service      the log, also in /var/lib/nbwss-service/logs/

Exit status: 0 on success, 78 when `run` finds a configuration it cannot use, 1 on any other error.";

/// The command line of `nbwss-service`, with the packaged configuration file and data directory as the
/// defaults of `--config` and `--data-dir` (an explicit option or `NBWSS_DATA_DIR` still wins).
pub fn command() -> clap::Command {
    let command = <Cli as clap::CommandFactory>::command();
    let command = default_everywhere(command, "config", SERVICE_CONFIG);
    default_everywhere(command, "data_dir", SERVICE_DATA_DIR)
}

/// Runs `nbwss-service` with the process's arguments.
pub fn main() -> ExitCode {
    let matches = command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    crate::exit_code(match cli.command {
        Command::Service(command) => service::run_command(command),
        Command::Servers(args) => servers::run(args),
        Command::Notify(args) => notify::run(*args),
        Command::Protocol(args) => protocol::run(args),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        command().debug_assert();
        let violations = crate::conventions::violations(&command());
        assert!(violations.is_empty(), "{}", violations.join("\n"));
    }

    /// The subcommands an administrator needs on the primary server are there, at the top level, and the
    /// packaged paths are the defaults.
    #[test]
    fn subcommands_and_packaged_defaults() {
        let command = command();
        let names: Vec<&str> = command.get_subcommands().map(clap::Command::get_name).collect();
        for name in ["run", "check", "example-config", "servers", "notify", "protocol"] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        let default_of = |sub: &str, id: &str| {
            let sub = command.find_subcommand(sub).expect("subcommand");
            let arg = sub.get_arguments().find(|arg| arg.get_id() == id).expect("argument");
            arg.get_default_values()
                .iter()
                .map(|value| value.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(default_of("run", "config"), [SERVICE_CONFIG]);
        assert_eq!(default_of("check", "config"), [SERVICE_CONFIG]);
        assert_eq!(default_of("notify", "data_dir"), [SERVICE_DATA_DIR]);
        assert_eq!(default_of("servers", "data_dir"), [SERVICE_DATA_DIR]);
    }
}

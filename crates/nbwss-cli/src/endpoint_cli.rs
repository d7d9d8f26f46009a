//! The `nbwss-endpoint` command: the cloud endpoint and its tokens, API keys and webhooks — the subcommands of
//! `nbwss endpoint` at the top level, with nothing else linked in.

use std::path::Path;
use std::process::ExitCode;

use clap::FromArgMatches as _;

use crate::endpoint;
use crate::state::ENDPOINT_CONFIG;

/// A cloud endpoint for NetBackup primary servers running the NBWSS service.
///
/// Serves the WebSocket endpoint the primary servers connect to, an HTTP API through which applications
/// call NetBackup on them and read their notifications, and a dashboard, on one TLS port. When
/// /etc/nbwss-endpoint/endpoint.toml exists (the nbwss-endpoint package installs it), it is the default
/// --config of every subcommand; the package runs the endpoint as the nbwss-endpoint systemd unit.
#[derive(Debug, clap::Parser)]
#[command(
    name = "nbwss-endpoint",
    version,
    propagate_version = true,
    max_term_width = 110,
    after_long_help = FILES
)]
struct Cli {
    #[command(flatten)]
    endpoint: endpoint::Args,
}

/// Where things are when installed from the package (shown by `--help` and in the man page).
const FILES: &str = "\
Files (as installed from the nbwss-endpoint package):
  /etc/nbwss-endpoint/endpoint.toml  the configuration
  /var/lib/nbwss-endpoint/           the data directory: the SQLite store of tokens, API keys,
                                     notifications and webhooks, and the generated certificate
                                     (endpoint-cert.pem)
  journalctl -u nbwss-endpoint       the log, with the certificate's SHA-256 fingerprint at each start";

/// The command line of `nbwss-endpoint`; `packaged` makes the package's configuration file the default of
/// `--config`.
pub fn command(packaged: bool) -> clap::Command {
    let command = <Cli as clap::CommandFactory>::command();
    if packaged {
        crate::state::default_everywhere(command, "config", ENDPOINT_CONFIG)
    } else {
        command
    }
}

/// Runs `nbwss-endpoint` with the process's arguments.
pub fn main() -> ExitCode {
    let matches = command(Path::new(ENDPOINT_CONFIG).is_file()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    crate::exit_code(endpoint::run(cli.endpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        command(false).debug_assert();
        command(true).debug_assert();
        let violations = crate::conventions::violations(&command(true));
        assert!(violations.is_empty(), "{}", violations.join("\n"));
    }

    /// run, token, apikey and webhook are at the top level; installed, every --config defaults to the package's file.
    #[test]
    fn subcommands_and_packaged_defaults() {
        let command = command(true);
        let names: Vec<&str> = command.get_subcommands().map(clap::Command::get_name).collect();
        assert_eq!(names, ["run", "token", "apikey", "webhook"]);
        let run = command.find_subcommand("run").expect("run");
        let config = run.get_arguments().find(|arg| arg.get_id() == "config").expect("--config");
        assert_eq!(config.get_default_values(), [ENDPOINT_CONFIG]);
        let create = command.find_subcommand("token").and_then(|token| token.find_subcommand("create"));
        let config = create.expect("token create").get_arguments().find(|arg| arg.get_id() == "config");
        assert_eq!(config.expect("--config").get_default_values(), [ENDPOINT_CONFIG]);
    }
}

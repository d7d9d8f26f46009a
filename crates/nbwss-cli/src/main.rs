//! The `nbwss` command: one binary for the protocol tools, the emulator, the service, the endpoint and
//! `nbwss up`. Each subcommand lives in its own module of the `nbwss_cli` library, which the smaller
//! `nbwss-service` and `nbwss-endpoint` binaries share.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nbwss_cli::{bench, conformance, emulator, endpoint, notify, protocol, servers, service, up};

/// nbwss: an open implementation of the NetBackup WebSocket Service (NBWSS), both ends of it.
///
/// The service (NetBackup side) connects out to a cloud endpoint over wss://, relays the endpoint's
/// NetBackup REST API calls to the primary server and pushes job and image notifications. The emulator
/// stands in for a NetBackup primary server so that everything runs on one machine.
#[derive(Debug, Parser)]
#[command(name = "nbwss", version, propagate_version = true, max_term_width = 110)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check NBWSS message files, or print valid example messages.
    Protocol(protocol::Args),
    /// Run an emulated NetBackup primary server REST API.
    Emulator(emulator::Args),
    /// Run the NBWSS service beside a NetBackup primary server.
    Service(service::Args),
    /// Manage the WebSocket servers (cloud endpoints) the service connects to.
    Servers(servers::Args),
    /// Enqueue JOB or IMAGE notification records (for NetBackup's notify scripts).
    Notify(notify::Args),
    /// Run a cloud WebSocket endpoint and manage its tokens and API keys.
    Endpoint(endpoint::Args),
    /// Start an emulator, an endpoint and a service on loopback and show a backup flowing through.
    Up(up::Args),
    /// Measure the relay's cost, the notification feed's speed, a fleet on one endpoint, and footprints.
    Bench(bench::Args),
    /// Check a third-party endpoint or service against the protocol's rules (docs/protocol.md).
    Conformance(conformance::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    nbwss_cli::exit_code(match cli.command {
        Command::Protocol(args) => protocol::run(args),
        Command::Emulator(args) => emulator::run(args),
        Command::Service(args) => service::run(args),
        Command::Servers(args) => servers::run(args),
        Command::Notify(args) => notify::run(args),
        Command::Endpoint(args) => endpoint::run(args),
        Command::Up(args) => up::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Conformance(args) => conformance::run(args),
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    /// The whole command tree follows the command-line conventions (README.md).
    #[test]
    fn the_command_line_follows_the_conventions() {
        let command = super::Cli::command();
        command.clone().debug_assert();
        let violations = nbwss_cli::conventions::violations(&command);
        assert!(violations.is_empty(), "{}", violations.join("\n"));
        // The walk reaches the list and show commands (servers, token, apikey, webhook, ...).
        let mut listings = 0;
        let mut pending = vec![command];
        while let Some(command) = pending.pop() {
            listings += usize::from(matches!(command.get_name(), "list" | "show"));
            pending.extend(command.get_subcommands().cloned());
        }
        assert!(listings >= 5, "{listings} list and show commands found");
    }
}

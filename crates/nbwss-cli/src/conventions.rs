//! The command line's conventions (README.md, "Command-line conventions"), checked on a clap command tree by
//! the binaries' tests:
//!
//! * `--json` only ever means "print JSON": a flag, never a value (input files are `--file`, output files
//!   `--out`);
//! * every `list` and `show` subcommand has `--json`;
//! * names are positional: no visible `--name` (a hidden one is a deprecated spelling kept working);
//! * help text speaks of the command, never of the project's tracker (`issue 7`).

use clap::{ArgAction, Command};

/// Every place `command` and its subcommands break a convention, as `path: what`; empty when none.
pub fn violations(command: &Command) -> Vec<String> {
    let mut found = Vec::new();
    walk(command, command.get_name(), &mut found);
    found
}

fn walk(command: &Command, path: &str, found: &mut Vec<String>) {
    let name = command.get_name();
    if matches!(name, "list" | "show") && !command.get_arguments().any(|arg| arg.get_long() == Some("json")) {
        found.push(format!("{path}: a {name} command without --json"));
    }
    for arg in command.get_arguments() {
        let long = arg.get_long();
        if long == Some("json") && !matches!(arg.get_action(), ArgAction::SetTrue) {
            found.push(format!("{path}: --json takes a value (it only ever means \"print JSON\")"));
        }
        if long == Some("name") && !arg.is_hide_set() {
            found.push(format!("{path}: --name is a flag (names are positional)"));
        }
        let help = [arg.get_help(), arg.get_long_help()].into_iter().flatten().map(ToString::to_string);
        check_text(help, &format!("{path} --{}", long.unwrap_or(arg.get_id().as_str())), found);
    }
    let about = [command.get_about(), command.get_long_about(), command.get_after_long_help()]
        .into_iter()
        .flatten()
        .map(ToString::to_string);
    check_text(about, path, found);
    for subcommand in command.get_subcommands() {
        walk(subcommand, &format!("{path} {}", subcommand.get_name()), found);
    }
}

fn check_text(texts: impl Iterator<Item = String>, place: &str, found: &mut Vec<String>) {
    for text in texts {
        let lower = text.to_ascii_lowercase();
        for (index, _) in lower.match_indices("issue ") {
            if lower[index + 6..].starts_with(|c: char| c.is_ascii_digit()) {
                found.push(format!("{place}: its help names a tracker issue"));
            }
        }
    }
}

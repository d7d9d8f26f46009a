//! Man pages of the packaged binaries, rendered from their command lines so that they never disagree with
//! `--help`: one page per command and subcommand, git-style (`nbwss-service-servers-add.8`), in section 8
//! (system administration commands and daemons).

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Writes the pages of `nbwss-service` into `dir/nbwss-service` and those of `nbwss-endpoint` into
/// `dir/nbwss-endpoint`; returns the files written.
pub fn write_all(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (name, command) in [
        ("nbwss-service", crate::service_cli::command()),
        ("nbwss-endpoint", crate::endpoint_cli::command(true)),
    ] {
        let out = dir.join(name);
        std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
        let mut command = command.disable_help_subcommand(true);
        command.build();
        write_tree(command, &out, &mut written)?;
    }
    Ok(written)
}

fn write_tree(command: clap::Command, out: &Path, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        write_tree(sub.clone(), out, written)?;
    }
    let source = format!("nbwss {}", command.get_version().unwrap_or_default());
    let page = clap_mangen::Man::new(command).section("8").manual("nbwss").source(source);
    let path = out.join(page.get_filename());
    let mut text = Vec::new();
    page.render(&mut text).context("rendering a man page")?;
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Every subcommand has its page, and the pages carry the options and the packaged paths.
    #[test]
    fn pages_for_every_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_all(dir.path()).unwrap();
        let names: Vec<String> =
            written.iter().map(|path| path.file_name().unwrap().to_string_lossy().into_owned()).collect();
        for expected in [
            "nbwss-service.8",
            "nbwss-service-run.8",
            "nbwss-service-check.8",
            "nbwss-service-servers.8",
            "nbwss-service-servers-add.8",
            "nbwss-service-notify.8",
            "nbwss-service-protocol-properties.8",
            "nbwss-endpoint.8",
            "nbwss-endpoint-run.8",
            "nbwss-endpoint-token-create.8",
            "nbwss-endpoint-apikey-revoke.8",
        ] {
            assert!(names.iter().any(|name| name == expected), "{expected} not in {names:?}");
        }
        let run = std::fs::read_to_string(dir.path().join("nbwss-service/nbwss-service-run.8")).unwrap();
        assert!(run.contains(".TH nbwss-service-run 8"), "{run}");
        assert!(run.contains("/etc/nbwss\\-service/service.toml"), "{run}");
        let add =
            std::fs::read_to_string(dir.path().join("nbwss-service/nbwss-service-servers-add.8")).unwrap();
        assert!(add.contains("accept\\-certificate"), "{add}");
        let top = std::fs::read_to_string(dir.path().join("nbwss-endpoint/nbwss-endpoint.8")).unwrap();
        assert!(top.contains("nbwss\\-endpoint\\-token(8)"), "{top}");
        assert!(top.contains("/var/lib/nbwss\\-endpoint/"), "the FILES section is missing: {top}");
    }
}

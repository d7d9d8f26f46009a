//! Where the packaged binaries keep their files (the Debian packages' layout, see `packaging/`), how they
//! default to them, and files that root writes into a data directory belonging to a service's own user.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use anyhow::Context as _;

/// The service's configuration file as packaged (a conffile).
#[cfg(feature = "service")]
pub(crate) const SERVICE_CONFIG: &str = "/etc/nbwss-service/service.toml";
/// The service's data directory as packaged (systemd's `StateDirectory=nbwss-service`).
#[cfg(feature = "service")]
pub(crate) const SERVICE_DATA_DIR: &str = "/var/lib/nbwss-service";
/// The endpoint's configuration file as packaged (a conffile).
#[cfg(feature = "endpoint")]
pub(crate) const ENDPOINT_CONFIG: &str = "/etc/nbwss-endpoint/endpoint.toml";

/// Gives every argument with this id, in `command` and all its subcommands, a default value: how the
/// packaged binaries default to the package's paths without the subcommand modules knowing them.
pub(crate) fn default_everywhere(command: clap::Command, id: &str, value: &'static str) -> clap::Command {
    command
        .mut_args(|arg| if arg.get_id() == id { arg.default_value(value) } else { arg })
        .mut_subcommands(|sub| default_everywhere(sub, id, value))
}

/// Gives the files that root has just created at the top of `dir` to the owner of `dir`, when this process
/// runs as root and `dir` belongs to another user.
///
/// NetBackup runs its notify scripts as root and administrators manage tokens with `sudo`, while the service
/// and the endpoint run as their own system users: a database that root creates in their data directory
/// (before their first start, say) would be read-only to them, and they would fail on their next write. Only
/// regular files owned by root with a single link are changed: a hard link that the directory's owner planted
/// to one of root's files has two. (SQLite gives the journal files it creates as root the database's owner.)
pub(crate) fn hand_back(dir: &Path) -> anyhow::Result<()> {
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let owner = std::fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if owner.uid() == 0 {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let metadata = entry.metadata().with_context(|| format!("cannot read {}", entry.path().display()))?;
        if metadata.is_file() && metadata.uid() == 0 && metadata.nlink() == 1 {
            std::os::unix::fs::lchown(entry.path(), Some(owner.uid()), Some(owner.gid())).with_context(
                || format!("cannot give {} to the owner of {}", entry.path().display(), dir.display()),
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// As root, a file created in a directory owned by another user is given to that user, and a file with a
    /// second link is not; as anyone else nothing changes.
    #[test]
    fn files_created_by_root_go_to_the_directory_owner() {
        let dir = tempfile::tempdir().unwrap();
        let created = dir.path().join("created.sqlite3");
        std::fs::write(&created, b"x").unwrap();
        let linked = dir.path().join("linked");
        std::fs::write(&linked, b"y").unwrap();
        std::fs::hard_link(&linked, dir.path().join("second-link")).unwrap();
        let me = std::fs::metadata(&created).unwrap().uid();
        if !rustix::process::geteuid().is_root() {
            hand_back(dir.path()).unwrap();
            assert_eq!(std::fs::metadata(&created).unwrap().uid(), me);
            return;
        }
        // Root here: make the directory another user's (uid/gid 4242) and check what moves.
        std::os::unix::fs::chown(dir.path(), Some(4242), Some(4242)).unwrap();
        hand_back(dir.path()).unwrap();
        let created = std::fs::metadata(&created).unwrap();
        assert_eq!((created.uid(), created.gid()), (4242, 4242));
        assert_eq!(std::fs::metadata(&linked).unwrap().uid(), 0, "a file with two links is left alone");
        std::os::unix::fs::chown(dir.path(), Some(0), Some(0)).unwrap();
    }
}

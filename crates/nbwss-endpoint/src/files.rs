//! Files only their owner may read: the endpoint's data directory (0700), its database and key (0600).
//! A secret file is replaced by writing a temporary file with mode 0600, renaming it over the old one and
//! syncing the directory, so that no reader ever sees it half-written or readable by others.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;

/// Creates `dir` (and its parents) if needed and makes it private to its owner (0700).
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    restrict(dir, 0o700)
}

/// Creates `path` empty if it does not exist, and makes it private to its owner (0600).
pub(crate) fn private_file(path: &Path) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    restrict(path, 0o600)
}

/// Writes `contents` to `path` readable by its owner only (0600), replacing any previous file atomically:
/// a temporary file beside it, fsynced, renamed over `path`, and the directory fsynced.
pub fn write_private_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().with_context(|| format!("{}: not a file name", path.display()))?;
    let temporary = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary)?;
        // A leftover temporary file of a crashed run may have other permissions: set them again.
        #[cfg(unix)]
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        sync_dir(dir)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let was = metadata.permissions().mode() & 0o777;
    if was != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot make {} private (mode {mode:o})", path.display()))?;
        tracing::info!(path = %path.display(), "made private: mode {was:o} → {mode:o}");
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _mode: u32) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn modes_hold_even_when_a_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/b");
        private_dir(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&data).unwrap();
        assert_eq!(mode(&data), 0o700, "an existing directory is tightened");

        let secret = data.join("secret.json");
        std::fs::write(&secret, "old").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private_file(&secret, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "new");
        assert_eq!(mode(&secret), 0o600, "a replaced world-readable file is private");
        assert_eq!(std::fs::read_dir(&data).unwrap().count(), 1, "no temporary file is left");

        let database = data.join("db");
        private_file(&database).unwrap();
        assert_eq!(mode(&database), 0o600);
    }
}

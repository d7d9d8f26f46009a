//! The service's data directory: where each file lives, and writing secrets with owner-only permissions.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// SQLite database of WebSocket servers.
pub const STORE_FILE: &str = "servers.db";
/// Key that encrypts tokens at rest; kept apart from the database.
pub const TOKEN_KEY_FILE: &str = "token.key";
/// The admin API key.
pub const ADMIN_KEY_FILE: &str = "admin.key";
/// Where the CLI finds the admin listener.
pub const ADMIN_INFO_FILE: &str = "admin.json";
/// The admin listener's certificate (PEM).
pub const ADMIN_CERT_FILE: &str = "admin-cert.pem";
/// The admin listener's private key (PEM).
pub const ADMIN_CERT_KEY_FILE: &str = "admin-key.pem";
/// One JSON line per relayed call.
pub const AUDIT_FILE: &str = "audit.log";
/// Directory of rotated log files.
pub const LOG_DIR: &str = "logs";

/// Contents of `admin.json`: how to reach the admin listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminInfo {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// Path of the admin listener's certificate.
    pub certificate_file: PathBuf,
    /// Path of the admin key.
    pub key_file: PathBuf,
}

/// Owner-only permissions for directories holding secrets.
const PRIVATE_DIR_MODE: u32 = 0o700;
/// Owner-only permissions for files holding secrets.
const PRIVATE_FILE_MODE: u32 = 0o600;

/// Creates the data directory owner-only (0700) if needed, and makes an existing one owner-only: it holds
/// keys, the sealed tokens and the audit log.
pub fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    ensure_private_dir(dir).with_context(|| format!("cannot create the data directory {}", dir.display()))
}

/// Creates `dir` (and missing parents) with mode 0700, and sets 0700 on it when it exists with more.
pub fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(PRIVATE_DIR_MODE);
    }
    builder.create(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
        if mode != PRIVATE_DIR_MODE {
            tracing::warn!(dir = %dir.display(), mode = format!("{mode:o}"), "directory was readable by others; set to 700");
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_DIR_MODE))?;
        }
    }
    Ok(())
}

/// Writes a file readable and writable by its owner only (0600), replacing it atomically: a fresh temporary
/// file created 0600, written and synced, renamed over the old one, then the directory synced so the rename
/// survives a crash. The old file's permissions do not carry over.
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    replace_file(path, contents, PRIVATE_FILE_MODE)
}

/// Writes a public file (0644), replacing it atomically as [`write_private`] does.
pub fn write_public(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    replace_file(path, contents, 0o644)
}

fn replace_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = tmp_path(path);
    // A temporary file left by a crash may have other permissions: never reuse it.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("cannot remove {}", tmp.display())),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    #[cfg(unix)]
    {
        // The umask may have taken bits away from a public file; a private one is exactly 0600 either way.
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the permissions of {}", tmp.display()))?;
    }
    file.write_all(contents).with_context(|| format!("cannot write {}", tmp.display()))?;
    file.sync_all().with_context(|| format!("cannot write {}", tmp.display()))?;
    drop(file);
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    sync_parent(path);
    Ok(())
}

/// Syncs the directory holding `path`, so that a rename or creation in it is durable. Best effort: some
/// file systems cannot sync a directory.
pub fn sync_parent(path: &Path) {
    #[cfg(unix)]
    if let Some(parent) = path.parent() {
        let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
        if let Err(error) = std::fs::File::open(parent).and_then(|dir| dir.sync_all()) {
            tracing::debug!(dir = %parent.display(), %error, "cannot sync the directory");
        }
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|name| name.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Reads a secret file, or creates it with `make()` (0600) when it does not exist. An existing file that
/// others may read is made owner-only (with a warning).
pub fn read_or_create_private(
    path: &Path,
    make: impl FnOnce() -> anyhow::Result<Vec<u8>>,
) -> anyhow::Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(contents) => {
            restrict(path)?;
            Ok(contents)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let contents = make()?;
            write_private(path, &contents)?;
            Ok(contents)
        }
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Makes an existing file owner-only (0600) if others may read or write it; a missing file is fine.
pub fn restrict(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let metadata = match std::fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
        };
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(file = %path.display(), mode = format!("{mode:o}"), "secret file was readable by others; set to 600");
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(PRIVATE_FILE_MODE))
                .with_context(|| format!("cannot set the permissions of {}", path.display()))?;
        }
    }
    Ok(())
}

/// Prepares an SQLite database path: an existing database (and its `-wal`/`-shm` files) is made
/// owner-only, a missing one is created empty with 0600 so that SQLite (which gives its journal files the
/// database's mode) never creates any of them readable by others.
pub fn prepare_private_database(path: &Path) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(PRIVATE_FILE_MODE);
    }
    options.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        restrict(Path::new(&name))?;
    }
    Ok(())
}

/// Reads `admin.json` from a data directory.
pub fn read_admin_info(data_dir: &Path) -> anyhow::Result<AdminInfo> {
    let path = data_dir.join(ADMIN_INFO_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("cannot read {} (is the service running with this data directory?)", path.display())
    })?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a valid admin.json", path.display()))
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_files_are_0600_even_when_an_open_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        // A temporary file left behind with open permissions is not reused.
        std::fs::write(tmp_path(&path), b"stale").unwrap();
        std::fs::set_permissions(tmp_path(&path), std::fs::Permissions::from_mode(0o666)).unwrap();
        write_private(&path, b"new").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert!(!tmp_path(&path).exists());
    }

    #[test]
    fn existing_secrets_and_directories_are_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/b");
        ensure_dir(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_dir(&data).unwrap();
        assert_eq!(mode(&data), 0o700);

        let key = data.join("key");
        std::fs::write(&key, b"k").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_or_create_private(&key, || unreachable!()).unwrap(), b"k");
        assert_eq!(mode(&key), 0o600);
        let created = data.join("created");
        read_or_create_private(&created, || Ok(b"c".to_vec())).unwrap();
        assert_eq!(mode(&created), 0o600);

        let db = data.join("db.sqlite3");
        prepare_private_database(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        let wal = data.join("db.sqlite3-wal");
        std::fs::write(&wal, b"").unwrap();
        std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o644)).unwrap();
        prepare_private_database(&db).unwrap();
        assert_eq!(mode(&wal), 0o600);
    }
}

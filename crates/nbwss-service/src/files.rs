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

/// Creates the data directory (owner-only) if needed.
pub fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

/// Writes a file readable and writable by its owner only (0600), replacing it atomically.
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let tmp = tmp_path(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(contents).with_context(|| format!("cannot write {}", tmp.display()))?;
    file.sync_all().ok();
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Writes a public file (0644), replacing it atomically.
pub fn write_public(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, contents).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|name| name.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Reads a secret file, or creates it with `make()` (0600) when it does not exist.
pub fn read_or_create_private(
    path: &Path,
    make: impl FnOnce() -> anyhow::Result<Vec<u8>>,
) -> anyhow::Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(contents) => {
            warn_if_open(path);
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

fn warn_if_open(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(metadata) = std::fs::metadata(path) {
            if metadata.permissions().mode() & 0o077 != 0 {
                tracing::warn!(file = %path.display(), "secret file is readable by others; chmod 600 it");
            }
        }
    }
}

/// Reads `admin.json` from a data directory.
pub fn read_admin_info(data_dir: &Path) -> anyhow::Result<AdminInfo> {
    let path = data_dir.join(ADMIN_INFO_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("cannot read {} (is the service running with this data directory?)", path.display())
    })?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a valid admin.json", path.display()))
}

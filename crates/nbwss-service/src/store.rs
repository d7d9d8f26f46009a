//! The WebSocket servers store: SQLite in the data directory, tokens encrypted with [`TokenCipher`].

use std::path::Path;
use std::sync::Mutex;

use anyhow::Context as _;
use nbwss_protocol::{EndpointType, HostState, Secret};
use rusqlite::{params, OptionalExtension as _};

use crate::crypto::TokenCipher;

/// One saved WebSocket server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Identity.
    pub host_name: String,
    /// `wss://` URL.
    pub url: String,
    /// Server group.
    pub group_id: String,
    /// Priority in the group; lower first.
    pub priority: i64,
    /// CONNECT token.
    pub token: Secret,
    /// Pinned certificate, PEM.
    pub certificate_pem: String,
    /// Pinned certificate, DER.
    pub certificate_der: Vec<u8>,
    /// Activated or deactivated.
    pub state: HostState,
    /// GMS or OTHERS.
    pub endpoint_type: EndpointType,
    /// Identifier of the stored credential.
    pub credential_id: String,
    /// When the server was saved (Unix seconds); kept by updates.
    pub saved_at: i64,
}

/// Why a store change was refused.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A server with this host name exists.
    #[error("a WebSocket server named '{0}' already exists; delete it first to replace it")]
    Duplicate(String),
    /// No server with this host name.
    #[error("no WebSocket server named '{0}'")]
    NotFound(String),
    /// The database or the key failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The store; cheap operations run under a mutex (SQLite calls are short and local).
#[derive(Debug)]
pub struct Store {
    db: Mutex<rusqlite::Connection>,
    cipher: TokenCipher,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS servers (
    host_name TEXT PRIMARY KEY NOT NULL,
    url TEXT NOT NULL,
    group_id TEXT NOT NULL,
    priority INTEGER NOT NULL,
    token BLOB NOT NULL,
    certificate_pem TEXT NOT NULL,
    certificate_der BLOB NOT NULL,
    state TEXT NOT NULL,
    endpoint_type TEXT NOT NULL,
    credential_id TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
";

impl Store {
    /// Opens (creating if needed) the database at `db_path` with the token key at `key_path`.
    pub fn open(db_path: &Path, key_path: &Path) -> anyhow::Result<Self> {
        let cipher = TokenCipher::open(key_path)?;
        // Sealed tokens, endpoint URLs and pinned certificates: owner-only, journal files included.
        crate::files::prepare_private_database(db_path)?;
        let db = rusqlite::Connection::open(db_path)
            .with_context(|| format!("cannot open the store {}", db_path.display()))?;
        db.execute_batch("PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000;")
            .context("cannot configure the store")?;
        db.execute_batch(SCHEMA).context("cannot create the store's tables")?;
        Ok(Self { db: Mutex::new(db), cipher })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        self.db.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Saves a new server; refuses a host name that exists.
    pub fn insert(&self, server: &Server) -> Result<(), StoreError> {
        let token = self.cipher.seal(server.token.expose(), &server.host_name)?;
        let db = self.db();
        let exists: Option<String> = db
            .query_row("SELECT host_name FROM servers WHERE host_name = ?1", [&server.host_name], |row| {
                row.get(0)
            })
            .optional()
            .context("store query failed")?;
        if exists.is_some() {
            return Err(StoreError::Duplicate(server.host_name.clone()));
        }
        db.execute(
            "INSERT INTO servers (host_name, url, group_id, priority, token, certificate_pem, certificate_der,
                state, endpoint_type, credential_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                server.host_name,
                server.url,
                server.group_id,
                server.priority,
                token,
                server.certificate_pem,
                server.certificate_der,
                server.state.as_str(),
                server.endpoint_type.as_str(),
                server.credential_id,
                server.saved_at,
            ],
        )
        .context("cannot save the WebSocket server")?;
        Ok(())
    }

    /// Sets a server's state.
    pub fn set_state(&self, host_name: &str, state: &HostState) -> Result<(), StoreError> {
        let changed = self
            .db()
            .execute("UPDATE servers SET state = ?1 WHERE host_name = ?2", params![state.as_str(), host_name])
            .context("cannot update the WebSocket server")?;
        if changed == 0 {
            return Err(StoreError::NotFound(host_name.to_owned()));
        }
        Ok(())
    }

    /// Deletes a server.
    pub fn delete(&self, host_name: &str) -> Result<(), StoreError> {
        let changed = self
            .db()
            .execute("DELETE FROM servers WHERE host_name = ?1", [host_name])
            .context("cannot delete the WebSocket server")?;
        if changed == 0 {
            return Err(StoreError::NotFound(host_name.to_owned()));
        }
        Ok(())
    }

    /// Every server, by group, priority and host name.
    pub fn list(&self) -> Result<Vec<Server>, StoreError> {
        let db = self.db();
        let mut statement = db
            .prepare(
                "SELECT host_name, url, group_id, priority, token, certificate_pem, certificate_der, state,
                    endpoint_type, credential_id, created_at FROM servers ORDER BY group_id, priority, host_name",
            )
            .context("store query failed")?;
        let rows = statement
            .query_map([], |row| {
                let server = Server {
                    host_name: row.get(0)?,
                    url: row.get(1)?,
                    group_id: row.get(2)?,
                    priority: row.get(3)?,
                    // Opened below: decryption errors are the cipher's, not SQLite's.
                    token: Secret::default(),
                    certificate_pem: row.get(5)?,
                    certificate_der: row.get(6)?,
                    state: HostState::from(row.get::<_, String>(7)?.as_str()),
                    endpoint_type: EndpointType::from(row.get::<_, String>(8)?.as_str()),
                    credential_id: row.get(9)?,
                    saved_at: row.get(10)?,
                };
                Ok((server, row.get::<_, Vec<u8>>(4)?))
            })
            .context("store query failed")?;
        let mut servers = Vec::new();
        for row in rows {
            let (mut server, sealed_token) = row.context("store query failed")?;
            server.token = Secret::new(self.cipher.open_sealed(&sealed_token, &server.host_name)?);
            servers.push(server);
        }
        Ok(servers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(name: &str) -> Server {
        Server {
            host_name: name.into(),
            url: format!("wss://{name}:8443/nbwss"),
            group_id: "sg1".into(),
            priority: 1,
            token: Secret::new("tok-secret-123"),
            certificate_pem: "PEM".into(),
            certificate_der: vec![1, 2, 3],
            state: HostState::Activated,
            endpoint_type: EndpointType::Others,
            credential_id: "c1".into(),
            saved_at: 1_700_000_000,
        }
    }

    #[test]
    fn crud_and_encryption_at_rest() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("servers.db");
        let store = Store::open(&db, &dir.path().join("token.key")).unwrap();
        store.insert(&server("a")).unwrap();
        assert!(matches!(store.insert(&server("a")), Err(StoreError::Duplicate(_))));
        store.insert(&server("b")).unwrap();
        store.set_state("b", &HostState::Deactivated).unwrap();
        assert!(matches!(store.set_state("zz", &HostState::Activated), Err(StoreError::NotFound(_))));
        let list = store.list().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].token.expose(), "tok-secret-123");
        assert_eq!(list[1].state, HostState::Deactivated);
        store.delete("a").unwrap();
        assert!(matches!(store.delete("a"), Err(StoreError::NotFound(_))));
        drop(store);
        let raw = std::fs::read(&db).unwrap();
        assert!(!raw.windows(10).any(|w| w == b"tok-secret"));
        let store = Store::open(&db, &dir.path().join("token.key")).unwrap();
        assert_eq!(store.list().unwrap().len(), 1);
    }
}

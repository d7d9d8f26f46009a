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
    /// When the server was saved, or moved to its group (Unix seconds).
    pub saved_at: i64,
}

/// Why a store change was refused.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A server with this host name exists.
    #[error("a WebSocket server named '{0}' already exists; update it in place (a renewed certificate, new details) instead of saving it again")]
    Duplicate(String),
    /// No server with this host name.
    #[error("no WebSocket server named '{0}'")]
    NotFound(String),
    /// The database or the key failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Changes to a saved server; `None` keeps what is saved. The host name and credential id never change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerChanges {
    /// A new state.
    pub state: Option<HostState>,
    /// A new URL, group and priority.
    pub location: Option<(String, String, i64)>,
    /// A new token.
    pub token: Option<Secret>,
    /// A new pinned certificate: PEM and DER.
    pub certificate: Option<(String, Vec<u8>)>,
    /// A new save time (Unix seconds): a server moved to another group counts as saved there now, so that
    /// the group receives only what is detected from then on.
    pub saved_at: Option<i64>,
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

    /// Changes a saved server in one transaction.
    pub fn update(&self, host_name: &str, changes: &ServerChanges) -> Result<(), StoreError> {
        let token = match &changes.token {
            Some(token) => Some(self.cipher.seal(token.expose(), host_name)?),
            None => None,
        };
        let (url, group_id, priority) = match &changes.location {
            Some((url, group_id, priority)) => (Some(url), Some(group_id), Some(priority)),
            None => (None, None, None),
        };
        let (pem, der) = match &changes.certificate {
            Some((pem, der)) => (Some(pem), Some(der)),
            None => (None, None),
        };
        let changed = self
            .db()
            .execute(
                "UPDATE servers SET state = COALESCE(?2, state), url = COALESCE(?3, url),
                    group_id = COALESCE(?4, group_id), priority = COALESCE(?5, priority),
                    token = COALESCE(?6, token), certificate_pem = COALESCE(?7, certificate_pem),
                    certificate_der = COALESCE(?8, certificate_der), created_at = COALESCE(?9, created_at)
                 WHERE host_name = ?1",
                params![
                    host_name,
                    changes.state.as_ref().map(HostState::as_str),
                    url,
                    group_id,
                    priority,
                    token,
                    pem,
                    der,
                    changes.saved_at
                ],
            )
            .context("cannot update the WebSocket server")?;
        if changed == 0 {
            return Err(StoreError::NotFound(host_name.to_owned()));
        }
        Ok(())
    }

    /// One saved server.
    pub fn get(&self, host_name: &str) -> Result<Server, StoreError> {
        self.list()?
            .into_iter()
            .find(|server| server.host_name == host_name)
            .ok_or_else(|| StoreError::NotFound(host_name.to_owned()))
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
        let deactivate = ServerChanges { state: Some(HostState::Deactivated), ..ServerChanges::default() };
        store.update("b", &deactivate).unwrap();
        assert!(matches!(store.update("zz", &deactivate), Err(StoreError::NotFound(_))));
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

    #[test]
    fn an_update_changes_only_what_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("servers.db"), &dir.path().join("token.key")).unwrap();
        store.insert(&server("a")).unwrap();
        store
            .update("a", &ServerChanges { state: Some(HostState::Deactivated), ..ServerChanges::default() })
            .unwrap();
        let renewal = ServerChanges {
            certificate: Some(("NEW PEM".into(), vec![9, 9])),
            token: Some(Secret::new("rotated")),
            ..ServerChanges::default()
        };
        store.update("a", &renewal).unwrap();
        let renewed = store.get("a").unwrap();
        assert_eq!(
            (renewed.certificate_pem.as_str(), renewed.certificate_der.as_slice()),
            ("NEW PEM", &[9u8, 9][..])
        );
        assert_eq!(renewed.token.expose(), "rotated");
        assert_eq!(renewed.state, HostState::Deactivated, "the state is kept");
        assert_eq!((renewed.credential_id.as_str(), renewed.saved_at), ("c1", 1_700_000_000));
        assert_eq!((renewed.url, renewed.group_id, renewed.priority), (server("a").url, "sg1".to_owned(), 1));
        let moved = ServerChanges {
            location: Some(("wss://b:1/x".into(), "sg2".into(), 5)),
            saved_at: Some(1_800_000_000),
            ..ServerChanges::default()
        };
        store.update("a", &moved).unwrap();
        let moved = store.get("a").unwrap();
        assert_eq!((moved.url.as_str(), moved.group_id.as_str(), moved.priority), ("wss://b:1/x", "sg2", 5));
        assert_eq!(moved.saved_at, 1_800_000_000, "moved to another group: saved there now");
        assert!(matches!(store.get("zz"), Err(StoreError::NotFound(_))));
    }
}

//! Starting and stopping a running endpoint: one TLS listener for the WebSocket endpoint, the app API and
//! the dashboard, the revocation watcher, the notification pruner and the webhook dispatcher; every task
//! owned and awaited at shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nbwss_protocol::{CloseStatus, EndpointDetails};
use tokio::task::JoinHandle;

use crate::cluster::Cluster;
use crate::config::{loopback_if_wildcard, EndpointConfig};
use crate::state::{AppState, Shared};
use crate::store::Store;
use crate::{api, listener, retention, revocation, tls, webhooks};

/// The cloud WebSocket endpoint.
pub struct Endpoint;

/// A running endpoint.
pub struct EndpointHandle {
    state: AppState,
    local_addr: SocketAddr,
    certificate_pem: String,
    certificate_sha256: String,
    listener_task: JoinHandle<()>,
}

impl Endpoint {
    /// Opens the store, loads (or generates) the certificate, binds the listener and starts serving.
    pub async fn start(config: EndpointConfig) -> anyhow::Result<EndpointHandle> {
        config.validate()?;
        let (store, cluster) = match &config.cluster {
            None => (Store::open(&config.data_dir)?, None),
            Some(settings) => {
                if config.webhooks != crate::config::Webhooks::default() {
                    anyhow::bail!(
                        "[webhooks] and [cluster] cannot be combined: webhooks keep their deliveries in one \
                         replica's store; remove the [webhooks] section"
                    );
                }
                let cluster = Cluster::connect(settings).await?;
                // The local store is this replica's copy of the cluster's state, apart from a standalone store.
                let store = Store::open(&config.data_dir.join("cluster").join(&settings.name))?;
                (store, Some(cluster))
            }
        };
        let credentials_from = match &cluster {
            Some(cluster) => Some(
                tokio::time::timeout(
                    Duration::from_secs(30),
                    crate::cluster::credentials::load(cluster, &store),
                )
                .await
                .map_err(|_| anyhow::anyhow!("cluster: reading the tokens and API keys took over 30 s"))??,
            ),
            None => None,
        };
        let identity = tls::load(&config)?;
        let listener = std::net::TcpListener::bind(config.bind)
            .map_err(|error| anyhow::anyhow!("cannot listen on {}: {error}", config.bind))?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let local_addr = listener.local_addr()?;
        let state: AppState = Arc::new(Shared::new(config, store, cluster)?);
        let tls = tokio_rustls::TlsAcceptor::from(identity.server_config);
        let listener_task =
            tokio::spawn(listener::serve(listener, tls, api::app(state.clone()), state.clone()));
        state.tracker.spawn(revocation::watch(state.clone()));
        state.tracker.spawn(retention::prune(state.clone()));
        match (&state.cluster, credentials_from) {
            (Some(cluster), Some(from)) => {
                let cancel = state.cancel.clone();
                state.tracker.spawn(crate::cluster::credentials::follow(
                    cluster.clone(),
                    state.store.clone(),
                    from,
                    cancel.clone(),
                ));
                state.tracker.spawn(crate::cluster::follow_holders(
                    cluster.clone(),
                    cluster.holders.clone(),
                    cancel.clone(),
                ));
                state.tracker.spawn(crate::cluster::copy_stream(
                    cluster.clone(),
                    state.store.clone(),
                    state.feed.clone(),
                    cancel,
                ));
            }
            _ => {
                state.tracker.spawn(webhooks::dispatcher::supervise(state.clone()));
            }
        }
        let handle = EndpointHandle {
            state,
            local_addr,
            certificate_pem: identity.certificate_pem,
            certificate_sha256: identity.certificate_sha256,
            listener_task,
        };
        tracing::info!(url = %handle.url(), websocket = %handle.websocket_url(),
            certificate_sha256 = %handle.certificate_sha256, "endpoint listening");
        Ok(handle)
    }
}

impl EndpointHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `https://HOST:PORT`: base URL of the app API and the dashboard.
    pub fn url(&self) -> String {
        format!("https://{}", loopback_if_wildcard(self.local_addr))
    }

    /// The `wss://` URL NBWSS connects to (`public_url` when configured).
    pub fn websocket_url(&self) -> String {
        self.state.config.websocket_url_for(self.local_addr)
    }

    /// The endpoint's certificate (PEM), for a client to trust or pin.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// SHA-256 fingerprint of the certificate: upper-case hex pairs joined by colons.
    pub fn certificate_sha256(&self) -> &str {
        &self.certificate_sha256
    }

    /// The store, for token and API key management while running.
    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// Creates (or rotates) the token of primary server `name` and returns its endpoint details file (D15);
    /// the token is shown only here. A session opened with the previous token is closed.
    pub fn create_token(&self, name: &str, group: &str, priority: i64) -> anyhow::Result<EndpointDetails> {
        self.standalone()?;
        let details = self.state.store.create_token(name, group, priority, &self.websocket_url())?;
        if let Some(session) = self.state.registry.get(name) {
            session.close(CloseStatus::ViolatedPolicy, "token rotated");
        }
        Ok(details)
    }

    /// Creates (or rotates) the token of primary server `name` and returns a one-time provider URL
    /// (`https://HOST:PORT/provider/{id}`) that serves its endpoint details file once, for NetBackup's
    /// `validateurl`, within `valid_for`. The token is kept in memory only until then.
    pub fn create_token_provider_url(
        &self,
        name: &str,
        group: &str,
        priority: i64,
        valid_for: Duration,
    ) -> anyhow::Result<String> {
        let details = self.create_token(name, group, priority)?;
        let id = crate::store::new_secret();
        let expires = std::time::Instant::now() + valid_for;
        let mut providers = self.state.providers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = std::time::Instant::now();
        providers.retain(|_, (expiry, _)| *expiry > now);
        providers.insert(id.clone(), (expires, details.to_value()));
        Ok(format!("{}/provider/{id}", self.url()))
    }

    /// Revokes the token of `name` and closes its session, if connected. False when there was no token.
    pub fn revoke_token(&self, name: &str) -> anyhow::Result<bool> {
        self.standalone()?;
        let revoked = self.state.store.revoke_token(name)?;
        if let Some(session) = self.state.registry.get(name) {
            session.close(CloseStatus::ViolatedPolicy, "token revoked");
        }
        Ok(revoked)
    }

    /// Creates (or replaces) API key `name`; the key is shown only here. Streams opened with a key it
    /// replaces end within `limits.revocation_check_interval_ms`.
    pub fn create_api_key(&self, name: &str) -> anyhow::Result<String> {
        self.standalone()?;
        self.state.store.create_api_key(name)
    }

    /// The cluster, in cluster mode: manage tokens and API keys with [`crate::ClusterCredentials`].
    pub fn cluster(&self) -> Option<&Cluster> {
        self.state.cluster.as_ref()
    }

    fn standalone(&self) -> anyhow::Result<()> {
        if self.state.cluster.is_some() {
            anyhow::bail!("in cluster mode tokens and API keys live in the cluster: use ClusterCredentials");
        }
        Ok(())
    }

    /// Names of the primary servers connected now.
    pub fn connected_primaries(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.state.registry.all().into_iter().map(|session| session.name.clone()).collect();
        names.sort();
        names
    }

    /// Stops accepting, closes every session (failing their in-flight calls), ends SSE streams, lets open
    /// HTTP connections finish for a few seconds, and waits for every task.
    pub async fn shutdown(self) {
        self.state.registry.close_all("endpoint shutting down");
        self.state.cancel.cancel();
        if let Err(error) = self.listener_task.await {
            tracing::warn!("listener task failed: {error}");
        }
        self.state.tracker.close();
        self.state.tracker.wait().await;
        tracing::info!("endpoint stopped");
    }
}

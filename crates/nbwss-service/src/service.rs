//! Start and stop: the store, the admin listener, the connection task and the relay, all owned by one
//! cancellation token and one task tracker.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use nbwss_protocol::{Properties, Secret};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminState};
use crate::admin_client::AdminClient;
use crate::audit::{AuditLimits, AuditLog};
use crate::config::ServiceConfig;
use crate::connections::{ConnectionTask, Status, Trigger};
use crate::files::{self, AdminInfo};
use crate::metrics::Metrics;
use crate::proxy::Connector;
use crate::relay::Relay;
use crate::session::{SessionContext, Sessions};
use crate::store::Store;

/// The NBWSS service.
#[derive(Debug)]
pub struct Service;

/// A running service.
#[derive(Debug)]
pub struct ServiceHandle {
    admin_url: String,
    admin_key: Secret,
    admin_certificate_pem: String,
    data_dir: PathBuf,
    sessions: Arc<Sessions>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    server: axum_server::Handle<SocketAddr>,
}

impl Service {
    /// Validates the configuration, opens the store in the data directory (creating keys on first start),
    /// starts the admin listener (writing `admin.json`, `admin.key` and the admin certificate) and the
    /// connection task.
    pub async fn start(config: ServiceConfig, properties: Properties) -> anyhow::Result<ServiceHandle> {
        config.validate()?;
        let data_dir = config.data_dir.clone();
        files::ensure_dir(&data_dir)?;
        let store =
            Arc::new(Store::open(&data_dir.join(files::STORE_FILE), &data_dir.join(files::TOKEN_KEY_FILE))?);
        let key_path = data_dir.join(files::ADMIN_KEY_FILE);
        let admin_key = files::read_or_create_private(&key_path, || {
            Ok(hex::encode(crate::crypto::random_bytes(32)?).into_bytes())
        })?;
        let admin_key = String::from_utf8(admin_key).context("admin.key is not text")?.trim().to_owned();
        let metrics = Arc::new(Metrics::new());
        let audit = if config.log.audit {
            Some(AuditLog::open(&data_dir.join(files::AUDIT_FILE), AuditLimits::from_config(&config.log))?)
        } else {
            None
        };
        let relay = Arc::new(Relay::new(&config, &properties, metrics.clone(), audit)?);
        let connector = Connector::from_config(&config.proxy)?;
        let sessions = Arc::new(Sessions::default());
        let notifications =
            crate::notify::Notifications::open(&config, &properties, metrics.notifications.clone())?;
        let status = Arc::new(Status::default());
        let trigger = Trigger::default();
        let ctx = Arc::new(SessionContext {
            relay,
            properties: properties.clone(),
            connector: connector.clone(),
            metrics: metrics.clone(),
            sessions: sessions.clone(),
        });

        // The admin listener.
        let bind = config.admin_bind()?;
        let listener = std::net::TcpListener::bind(bind)
            .with_context(|| format!("cannot listen on {bind} (admin.bind)"))?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let (cert_pem, key_pem) = crate::tls::admin_identity(&data_dir, bind.ip())?;
        let tls = crate::tls::server_config(&cert_pem, &key_pem)?;
        let admin_state = Arc::new(AdminState {
            store: store.clone(),
            status: status.clone(),
            trigger: trigger.clone(),
            connector,
            metrics: metrics.clone(),
            key_digest: ring::digest::digest(&ring::digest::SHA256, admin_key.as_bytes()).as_ref().to_vec(),
            provider_client: provider_client(&config)?,
            handshake_timeout: properties.connect_handshake_timeout,
        });
        let server = axum_server::Handle::<SocketAddr>::new();
        let serving = axum_server::from_tcp_rustls(
            listener,
            axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls)),
        )?
        .handle(server.clone())
        .serve(admin::app(admin_state).layer(axum::Extension(notifications.outbox())).into_make_service());
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(async move {
            if let Err(error) = serving.await {
                tracing::error!(%error, "the admin listener stopped");
            }
        });
        let host = match local.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let admin_url = format!("https://{}", SocketAddr::new(host, local.port()));
        let info = AdminInfo {
            url: admin_url.clone(),
            certificate_file: absolute(&data_dir.join(files::ADMIN_CERT_FILE)),
            key_file: absolute(&key_path),
        };
        files::write_public(
            &data_dir.join(files::ADMIN_INFO_FILE),
            serde_json::to_string_pretty(&info)?.as_bytes(),
        )?;

        tracker.spawn(notifications.run(store.clone(), sessions.clone(), shutdown.clone(), tracker.clone()));
        let task = ConnectionTask { store, ctx, status, trigger };
        tracker.spawn(task.run(shutdown.clone(), tracker.clone()));
        tracing::info!(admin = %admin_url, data_dir = %data_dir.display(), primary = %config.primary.base_url, "NBWSS service started");
        Ok(ServiceHandle {
            admin_url,
            admin_key: Secret::new(admin_key),
            admin_certificate_pem: cert_pem,
            data_dir,
            sessions,
            metrics,
            shutdown,
            tracker,
            server,
        })
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn provider_client(config: &ServiceConfig) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().use_rustls_tls().timeout(Duration::from_secs(30));
    if let Some(file) = &config.providers.ca_file {
        let pem = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
        for der in crate::tls::parse_pem_certificates(&pem)? {
            builder = builder.add_root_certificate(reqwest::Certificate::from_der(der.as_ref())?);
        }
    }
    if let Some(url) = &config.proxy.url {
        let no_proxy = reqwest::NoProxy::from_string(&config.proxy.no_proxy.join(","));
        builder = builder.proxy(reqwest::Proxy::all(url.expose())?.no_proxy(no_proxy));
    } else if !config.proxy.use_environment {
        builder = builder.no_proxy();
    }
    builder.build().context("cannot build the HTTP client for provider URLs")
}

impl ServiceHandle {
    /// `https://127.0.0.1:PORT` of the admin listener.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// The admin key.
    pub fn admin_key(&self) -> &str {
        self.admin_key.expose()
    }

    /// The admin listener's certificate (PEM).
    pub fn admin_certificate_pem(&self) -> &str {
        &self.admin_certificate_pem
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A client of this service's admin API.
    pub fn admin_client(&self) -> anyhow::Result<AdminClient> {
        AdminClient::new(&self.admin_url, self.admin_key.expose(), Some(&self.admin_certificate_pem))
    }

    /// Established sessions (one per group), to send requests such as notifications over.
    pub fn sessions(&self) -> Arc<Sessions> {
        self.sessions.clone()
    }

    /// The metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// A token cancelled when the service stops.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops everything (connections close with 1001 GOING_AWAY) and waits for every task to end.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.server.graceful_shutdown(Some(Duration::from_secs(2)));
        self.tracker.close();
        self.tracker.wait().await;
        tracing::info!("NBWSS service stopped");
    }
}

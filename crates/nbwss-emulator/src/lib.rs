//! An emulated NetBackup primary server REST API for development and tests.
//!
//! [`Emulator::start`] serves `https://HOST:PORT/netbackup/...` with the shapes and quirks real NetBackup
//! clients rely on, and runs a job engine on an emulated clock: backups go QUEUED → ACTIVE → DONE and
//! leave catalog images, images expire copy by copy, restores and image deletions make their own jobs.
//! The [`EmulatorHandle`] gives tests the address, the certificate to trust, in-process helpers and the
//! journal of everything that happened ([`EmulatorEvent`]).
//!
//! This crate depends on no other crate of the workspace: it imitates a third party.

#![warn(missing_docs)]
#![recursion_limit = "256"]

mod api;
mod asset;
mod catalog;
mod clock;
mod config;
mod contents;
mod engine;
mod error;
mod event;
mod eventlog;
mod filter;
mod media;
mod model;
mod query;
mod seed;
mod shape;
mod slp;
mod state;
mod storage;
mod tls;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::ServiceExt;
use tower::Layer;

pub use crate::config::{EmulatorConfig, DEFAULT_API_VERSION, DEFAULT_JOB_DURATION, DEFAULT_PORT};
pub use crate::event::{CopySummary, EmulatorEvent, EventKind, ImageSummary, JobSummary};
pub use crate::media::ApiVersion;
use crate::state::Shared;
use crate::tls::TlsMaterial;

/// Entry points for the cargo-fuzz targets in `fuzz/`: the parsers that read untrusted request text.
/// Each panics only on a broken invariant (which is what a fuzzer looks for). Not a stable API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use serde_json::json;

    use crate::filter::{Field, Filter, Kind, Logic, Op, Sort, EQ, MAX_FILTER_BYTES, ORDERED};
    use crate::media::{negotiate, ApiVersion};
    use crate::query::{OffsetPage, Params, MAX_QUERY_BYTES};

    const TEXT: &[Op] =
        &[Op::Eq, Op::Ne, Op::Lt, Op::Gt, Op::Le, Op::Ge, Op::Contains, Op::StartsWith, Op::EndsWith];
    const FIELDS: &[Field] = &[
        Field { name: "jobId", kind: Kind::Int, ops: ORDERED },
        Field { name: "clientName", kind: Kind::Str, ops: TEXT },
        Field { name: "startTime", kind: Kind::Time, ops: ORDERED },
        Field { name: "isOptimized", kind: Kind::Bool, ops: EQ },
        Field { name: "commonAssetAttributes/displayName", kind: Kind::Str, ops: TEXT },
    ];

    /// Parses `text` as a filter (both grammars) and a sort list, and evaluates what parses.
    pub fn filter(text: &str) {
        let record = json!({
            "jobId": 7, "clientName": "client01", "startTime": "2026-01-01T00:00:00.000Z", "isOptimized": false,
            "commonAssetAttributes": {"displayName": "vm-app01"},
        });
        for logic in [Logic::And, Logic::AndOrNot] {
            if let Ok(filter) = Filter::parse_with(text, FIELDS, logic) {
                assert!(text.len() <= MAX_FILTER_BYTES, "a filter over the limit parsed");
                let _ = filter.matches(&record);
                let _ = filter.mentions("jobId");
                let _ = filter.equals("clientName");
            }
        }
        let default = [Sort { field: "jobId", descending: false }];
        if let Ok(keys) = Sort::parse_list(Some(text), FIELDS, &default) {
            let _ = Sort::compare_all(&keys, &record, &json!({}));
        }
    }

    /// Decodes `text` as a query string and reads the paging parameters from it.
    pub fn query(text: &str) {
        let Ok(params) = Params::parse(Some(text)) else {
            assert!(text.len() > MAX_QUERY_BYTES, "a query within the limit was refused");
            return;
        };
        for key in ["filter", "page[limit]", "page[offset]", "sort"] {
            if let Some(value) = params.get(key) {
                assert!(!value.is_empty(), "an empty value counts as absent");
            }
        }
        if let Ok(page) = OffsetPage::from_params(&params, 1, 100) {
            assert!((1..=100).contains(&page.limit), "page[limit] outside its bounds: {}", page.limit);
            let _ = page.envelope((0..3).collect(), "/x", |n: &i32| json!(n), "");
        }
    }

    /// Negotiates the version of a request with these `Accept` and `Content-Type` headers.
    pub fn media(accept: Option<&str>, content_type: Option<&str>, has_body: bool) {
        let default = ApiVersion { major: 14, minor: 0 };
        if let Ok(version) = negotiate(accept, content_type, has_body, default) {
            assert!(version.is_supported(), "negotiated an unsupported version {version}");
        }
    }
}

/// How long open connections get to finish when the emulator stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Starts emulators.
#[derive(Debug)]
pub struct Emulator;

impl Emulator {
    /// Validates `config`, binds the listener, creates the seed data and starts serving.
    pub async fn start(config: EmulatorConfig) -> anyhow::Result<EmulatorHandle> {
        config.validate()?;
        let tls = match &config.tls {
            Some((cert, key)) => TlsMaterial::from_files(cert, key)?,
            None => TlsMaterial::self_signed()?,
        };
        let rustls_config = axum_server::tls_rustls::RustlsConfig::from_config(tls.server_config()?);
        let listener = TcpListener::bind(config.bind).with_context(|| format!("binding {}", config.bind))?;
        listener.set_nonblocking(true).context("making the listener non-blocking")?;
        let local_addr = listener.local_addr().context("reading the bound address")?;

        let shared = Shared::new(config, tls);
        if shared.config.seed_data {
            let now = shared.now();
            let job_duration = chrono::TimeDelta::from_std(shared.config.job_duration)
                .unwrap_or(chrono::TimeDelta::minutes(10));
            seed::populate(&mut shared.lock(), now, job_duration);
        }
        shared.tasks.spawn(engine::expire_catalog(Arc::clone(&shared)));
        shared.tasks.spawn(engine::background_activity(Arc::clone(&shared)));
        shared.tasks.spawn(engine::run_schedules(Arc::clone(&shared)));

        let router = api::app(Arc::clone(&shared));
        let service = tower::util::MapRequestLayer::new(api::normalize_path).layer(router);
        let server_handle = axum_server::Handle::new();
        // TCP_NODELAY, as NetBackup's web server (Tomcat) sets it: a response goes out in several writes
        // (TLS records), and with Nagle's algorithm the last one would wait for the client's delayed ACK.
        let server = axum_server::from_tcp_rustls(listener, rustls_config)
            .context("serving on the listener")?
            .map(|acceptor| acceptor.acceptor(axum_server::accept::NoDelayAcceptor::new()))
            .handle(server_handle.clone());
        let serving = tokio::spawn(async move {
            if let Err(error) = server.serve(service.into_make_service()).await {
                tracing::error!(%error, "the emulator's HTTPS server stopped");
            }
        });
        let cancel = shared.cancel.clone();
        shared.tasks.spawn(async move {
            cancel.cancelled().await;
            server_handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
        });
        tracing::info!(address = %local_addr, "NetBackup emulator listening");
        Ok(EmulatorHandle { shared, local_addr, serving })
    }
}

/// A random password for a generated user (20 letters and digits).
pub fn generate_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])).collect()
}

/// A running emulator.
pub struct EmulatorHandle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    serving: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for EmulatorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorHandle").field("local_addr", &self.local_addr).finish_non_exhaustive()
    }
}

impl EmulatorHandle {
    /// The address the emulator listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The base URL of the API, e.g. `https://127.0.0.1:1556/netbackup` (the self-signed certificate
    /// covers `127.0.0.1` and `localhost`).
    pub fn base_url(&self) -> String {
        let ip = if self.local_addr.ip().is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            self.local_addr.ip()
        };
        format!("https://{}{}", SocketAddr::new(ip, self.local_addr.port()), api::PREFIX)
    }

    /// The server certificate, PEM, so that clients can trust exactly it.
    pub fn certificate_pem(&self) -> String {
        self.shared.tls.certificate_pem.clone()
    }

    /// The journal of everything that happened so far, in order.
    pub fn events(&self) -> Vec<EmulatorEvent> {
        self.shared.lock().events.clone()
    }

    /// The journal from position `from` on (for tests that poll).
    pub fn events_since(&self, from: usize) -> Vec<EmulatorEvent> {
        self.shared.lock().events.get(from..).map(<[_]>::to_vec).unwrap_or_default()
    }

    /// The emulated time now.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.shared.now()
    }

    /// Creates an API key for `user` (valid 30 days) and returns the key.
    pub fn create_api_key(&self, user: &str) -> String {
        api::create_key(&self.shared, user, "created by the emulator handle", 30).key
    }

    /// Adds a user that may log in.
    pub fn add_user(&self, name: &str, password: &str) {
        self.shared.lock().users.push((name.to_owned(), password.to_owned()));
    }

    /// Logs `user` in without HTTP and returns a token for `Authorization` (the user need not exist).
    pub fn create_token(&self, user: &str) -> String {
        let mut inner = self.shared.lock();
        let token = inner.random_token(32);
        let session = state::Session {
            user: user.to_owned(),
            expires: std::time::Instant::now() + state::TOKEN_VALIDITY,
        };
        inner.sessions.insert(token.clone(), session);
        token
    }

    /// Starts a manual backup of a policy (all its clients) with a schedule (`None`: its first full
    /// schedule); returns the top-level job ids, as `POST /admin/manual-backup` does.
    pub fn start_backup(&self, policy: &str, schedule: Option<&str>) -> anyhow::Result<Vec<u64>> {
        engine::start_backup(&self.shared, policy, schedule, None, "IMMEDIATE")
            .map_err(|error| anyhow::anyhow!("{}", error.message))
    }

    /// Expires an image now (all its copies); it leaves the catalog and an IMAGEDELETE job starts.
    pub fn expire_image(&self, backup_id: &str) -> anyhow::Result<()> {
        let now = self.shared.now();
        let mut inner = self.shared.lock();
        anyhow::ensure!(
            engine::remove_copies(&self.shared, &mut inner, backup_id, |_| true, now),
            "no image {backup_id}"
        );
        Ok(())
    }

    /// The names of the policies.
    pub fn policy_names(&self) -> Vec<String> {
        self.shared.lock().policies.keys().cloned().collect()
    }

    /// Adds `count` catalog images, copies of the oldest one, each a second older than the last (backup ids
    /// `client_unixtime`), with no job and no journal event: a large catalog for benchmarks and tests of
    /// paging. Returns how many images the catalog then holds.
    pub fn add_catalog_images(&self, count: usize) -> anyhow::Result<usize> {
        let mut inner = self.shared.lock();
        let template = inner
            .images
            .values()
            .min_by_key(|image| image.backup_time)
            .cloned()
            .context("the catalog holds no image to copy (start the emulator with its seed data)")?;
        let mut backup_time = template.backup_time;
        let mut added = 0;
        while added < count {
            backup_time -= chrono::TimeDelta::seconds(1);
            let backup_id = format!("{}_{}", template.client_name, backup_time.timestamp());
            if inner.images.contains_key(&backup_id) {
                continue;
            }
            let image = model::Image { backup_id: backup_id.clone(), backup_time, ..template.clone() };
            inner.images.insert(backup_id, image);
            added += 1;
        }
        Ok(inner.images.len())
    }

    /// The backup ids of the images in the catalog.
    pub fn image_ids(&self) -> Vec<String> {
        self.shared.lock().images.keys().cloned().collect()
    }

    /// Stops serving and every engine task, and waits for them.
    pub async fn shutdown(self) {
        self.shared.cancel.cancel();
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
        let _ = self.serving.await;
    }
}

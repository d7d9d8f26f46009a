//! Starting the whole system the way an administrator wires it, and waiting on conditions.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nbwss_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use nbwss_endpoint::{Endpoint, EndpointConfig, EndpointHandle, FeedQuery, StoredNotification};
use nbwss_protocol::{HostObject, Properties};
use nbwss_service::PrimaryCredentials;
use nbwss_service::{Service, ServiceConfig, ServiceHandle};

/// How long any condition may take on a loaded 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(90);
/// The primary server's name at the endpoint.
pub const PRIMARY: &str = "primary-e2e";

/// The three parts, connected.
pub struct System {
    pub emulator: EmulatorHandle,
    pub endpoint: EndpointHandle,
    pub service: ServiceHandle,
    pub api_key: String,
    pub endpoint_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl System {
    /// Starts everything with quick notification properties and waits until the service is connected.
    pub async fn start() -> System {
        Self::start_with(
            "notification.scheduledRate=1\nnotification.pollInterval=200\nnotification.reconcileInterval=1\nconnectionInfo.period=1\n",
        )
        .await
    }

    /// Starts everything with these `nbwss.properties` lines and waits until the service is connected.
    pub async fn start_with(properties: &str) -> System {
        let dir = tempfile::tempdir().unwrap();
        let emulator = Emulator::start(EmulatorConfig::for_tests()).await.unwrap();

        let endpoint_dir = dir.path().join("endpoint");
        let endpoint = Endpoint::start(EndpointConfig::new(&endpoint_dir)).await.unwrap();
        let details = endpoint.create_token(PRIMARY, "g1", 1).unwrap();
        let api_key = endpoint.create_api_key("tests").unwrap();

        let mut config = ServiceConfig::new(
            dir.path().join("service"),
            emulator.base_url(),
            Some(emulator.certificate_pem()),
        );
        config.primary.credentials = Some(PrimaryCredentials {
            user_name: Some("admin".into()),
            password: Some("password".into()),
            domain_type: None,
            domain_name: None,
            api_key: None,
        });
        let (properties, _) = Properties::parse(properties).unwrap();
        let service = Service::start(config, properties).await.unwrap();

        let admin = service.admin_client().unwrap();
        let mut host = HostObject::from_value(&details.to_value()).unwrap();
        let validated = admin.validate_host(&host).await.unwrap();
        assert_eq!(validated.sha256_fingerprint.as_deref(), Some(endpoint.certificate_sha256()));
        host.certificate = validated.certificate;
        admin.save(&host).await.unwrap();

        let system = System { emulator, endpoint, service, api_key, endpoint_dir, _dir: dir };
        system.wait_connected().await;
        system
    }

    /// Waits until the endpoint sees the primary server connected.
    pub async fn wait_connected(&self) {
        eventually("the service to connect to the endpoint", || async {
            self.endpoint.connected_primaries().iter().any(|name| name == PRIMARY).then_some(())
        })
        .await;
    }

    /// An HTTPS client that trusts exactly the endpoint's certificate.
    pub fn client(&self) -> reqwest::Client {
        let certificate = reqwest::Certificate::from_pem(self.endpoint.certificate_pem().as_bytes()).unwrap();
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(certificate)
            .build()
            .unwrap()
    }

    /// The relay base URL for the primary server.
    pub fn relay(&self) -> String {
        format!("{}/api/v1/primaries/{PRIMARY}/netbackup", self.endpoint.url())
    }

    /// Every notification record stored at the endpoint so far.
    pub fn notifications(&self) -> Vec<StoredNotification> {
        self.endpoint
            .store()
            .notifications(&FeedQuery { after: 0, limit: 100_000, primary: None, object: None })
            .unwrap()
    }

    pub async fn shutdown(self) {
        self.service.shutdown().await;
        self.endpoint.shutdown().await;
        self.emulator.shutdown().await;
    }
}

/// Polls `check` until it returns `Some`, or fails the test after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

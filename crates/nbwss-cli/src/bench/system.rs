//! An emulator, an endpoint and a service in this process, wired as an administrator wires them (with
//! `nbwss up`'s [`crate::wire::save_and_connect`]).

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use nbwss_emulator::{Emulator, EmulatorConfig, EmulatorHandle};
use nbwss_endpoint::{Endpoint, EndpointConfig, EndpointHandle};
use nbwss_protocol::Properties;
use nbwss_service::PrimaryCredentials;
use nbwss_service::{Service, ServiceConfig, ServiceHandle};

/// The primary server's name at the endpoint.
pub(crate) const PRIMARY: &str = "bench-primary";
/// The emulator's user.
pub(crate) const USER: &str = "admin";
const PASSWORD: &str = "password";
/// How long the system gets to come up.
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);

/// How to start the system.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Calls in flight per primary server the endpoint and the service allow (at least their defaults).
    pub(crate) max_in_flight: usize,
    /// `nbwss.properties` text for the service.
    pub(crate) properties: String,
    /// Whether the service has its own credentials on the primary server (and so polls it).
    pub(crate) service_credentials: bool,
}

/// The three parts, connected.
pub(crate) struct System {
    pub(crate) emulator: EmulatorHandle,
    pub(crate) endpoint: EndpointHandle,
    pub(crate) service: ServiceHandle,
    pub(crate) api_key: String,
}

impl System {
    pub(crate) async fn start(dir: &Path, options: &Options) -> anyhow::Result<System> {
        let emulator = Emulator::start(EmulatorConfig {
            users: vec![(USER.to_owned(), PASSWORD.to_owned())],
            ..EmulatorConfig::for_tests()
        })
        .await
        .context("starting the emulator")?;

        let mut endpoint_config = EndpointConfig::new(dir.join("endpoint"));
        endpoint_config.limits.max_in_flight_per_primary =
            endpoint_config.limits.max_in_flight_per_primary.max(options.max_in_flight);
        let endpoint = Endpoint::start(endpoint_config).await.context("starting the endpoint")?;
        let details = endpoint.create_token(PRIMARY, "bench", 1)?;
        let api_key = endpoint.create_api_key("bench")?;

        let mut config =
            ServiceConfig::new(dir.join("service"), emulator.base_url(), Some(emulator.certificate_pem()));
        if options.service_credentials {
            config.primary.credentials = Some(PrimaryCredentials {
                user_name: Some(USER.to_owned()),
                password: Some(PASSWORD.to_owned().into()),
                domain_type: None,
                domain_name: None,
                api_key: None,
            });
        }
        let in_flight = format!("command.maxInFlight={}\n", options.max_in_flight.max(64));
        let (properties, _) =
            Properties::parse(&format!("{in_flight}{}", options.properties)).context("bench properties")?;
        let service = Service::start(config, properties).await.context("starting the service")?;

        crate::wire::save_and_connect(&service, &endpoint, &details, PRIMARY, STARTUP_DEADLINE).await?;
        Ok(System { emulator, endpoint, service, api_key })
    }

    /// The relay's base URL for the primary server: `.../api/v1/primaries/{name}/netbackup`.
    pub(crate) fn relay_base(&self) -> String {
        format!("{}/api/v1/primaries/{PRIMARY}/netbackup", self.endpoint.url())
    }

    pub(crate) async fn shutdown(self) {
        self.service.shutdown().await;
        self.endpoint.shutdown().await;
        self.emulator.shutdown().await;
    }
}

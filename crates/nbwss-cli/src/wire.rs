//! Connecting a running service to a running endpoint the way an administrator does it, for `nbwss up` and
//! `nbwss bench`: validate the endpoint, check that it presents its own certificate, save it with that
//! certificate pinned, and wait until the endpoint has accepted CONNECT.

use std::time::Duration;

use anyhow::{bail, Context as _};
use nbwss_endpoint::EndpointHandle;
use nbwss_protocol::{EndpointDetails, HostObject};
use nbwss_service::ServiceHandle;

/// Saves `details` (the endpoint's own, for primary server `name`) in `service` and waits up to `deadline`
/// for the connection; returns the SHA-256 fingerprint of the pinned certificate.
pub(crate) async fn save_and_connect(
    service: &ServiceHandle,
    endpoint: &EndpointHandle,
    details: &EndpointDetails,
    name: &str,
    deadline: Duration,
) -> anyhow::Result<String> {
    let admin = service.admin_client()?;
    let mut host = HostObject::from_value(&details.to_value()).context("endpoint details")?;
    let validated = admin.validate_host(&host).await.context("validating the endpoint")?;
    let presented = validated.sha256_fingerprint.unwrap_or_default();
    if !presented.eq_ignore_ascii_case(endpoint.certificate_sha256()) {
        bail!(
            "the endpoint presented certificate {presented}, not the endpoint's own {}",
            endpoint.certificate_sha256()
        );
    }
    host.certificate = validated.certificate;
    admin.save(&host).await.context("saving the WebSocket server")?;

    let until = tokio::time::Instant::now() + deadline;
    while !endpoint.connected_primaries().iter().any(|connected| connected == name) {
        if tokio::time::Instant::now() > until {
            bail!(
                "the service did not connect to the endpoint within {} s; see the logs above",
                deadline.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(presented)
}

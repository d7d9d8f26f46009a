//! The COMMAND relay (D6–D10): runs one REST call against the configured primary server and turns the
//! answer (or the reason there is none) into a COMMAND RESPONSE.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nbwss_protocol::{CommandRequest, CommandResponse, Headers, Properties};

use crate::audit::{AuditEntry, AuditLog};
use crate::config::ServiceConfig;
use crate::metrics::Metrics;
use crate::policy::Policy;

/// Hop-by-hop headers (and those the HTTP client sets itself): never forwarded, never returned.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|hop| name.eq_ignore_ascii_case(hop))
}

/// Runs relayed calls for every connection.
#[derive(Debug)]
pub struct Relay {
    client: reqwest::Client,
    base: String,
    strip_prefix: bool,
    policy: Policy,
    timeout: Duration,
    max_body_bytes: usize,
    audit: Option<AuditLog>,
    metrics: Arc<Metrics>,
}

impl Relay {
    /// A relay for the configured primary server.
    pub fn new(
        config: &ServiceConfig,
        properties: &Properties,
        metrics: Arc<Metrics>,
        audit: Option<AuditLog>,
    ) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(crate::proxy::CONNECT_TIMEOUT);
        if let Some(pem) = config.primary_ca_pem()? {
            builder = builder.tls_built_in_root_certs(false);
            for der in crate::tls::parse_pem_certificates(&pem).context("primary CA")? {
                let certificate = reqwest::Certificate::from_der(der.as_ref()).context("primary CA")?;
                builder = builder.add_root_certificate(certificate);
            }
        }
        let client = builder.build().context("cannot build the HTTP client for the primary server")?;
        let base = config.primary.base_url.trim_end_matches('/').to_owned();
        let strip_prefix = base.ends_with("/netbackup");
        Ok(Self {
            client,
            base,
            strip_prefix,
            policy: Policy::new(&config.policy),
            timeout: properties.command_timeout,
            max_body_bytes: properties.message_max_bytes,
            audit,
            metrics,
        })
    }

    /// The full URL for a COMMAND's `uri` (which starts with `/netbackup/`).
    pub fn url_for(&self, uri: &str) -> String {
        match uri.strip_prefix("/netbackup").filter(|_| self.strip_prefix) {
            Some(rest) => format!("{}{rest}", self.base),
            None => format!("{}{uri}", self.base),
        }
    }

    /// Runs one call and answers it; never fails (every failure is a D8 response).
    pub async fn run(&self, endpoint: &str, id: &str, request: &CommandRequest) -> CommandResponse {
        let started = Instant::now();
        let response = if self.policy.allows(request.method, request.path()) {
            match tokio::time::timeout(self.timeout, self.call(request)).await {
                Ok(response) => response,
                Err(_) => CommandResponse::service_error(
                    504,
                    "The primary server did not answer in time.",
                    vec![format!(
                        "no answer to {} {} within {} s (command.timeout)",
                        request.method,
                        request.uri,
                        self.timeout.as_secs_f64()
                    )],
                ),
            }
        } else {
            CommandResponse::service_error(
                403,
                "Refused by the service's relay policy.",
                vec![format!(
                    "{} {} is not in the allow-list (policy.allow)",
                    request.method,
                    request.path()
                )],
            )
        };
        let duration = started.elapsed();
        let from_service = response.is_from_service();
        self.metrics.command_duration.observe(duration.as_secs_f64());
        self.metrics.responded(response.status_code, from_service);
        let entry =
            AuditEntry { endpoint, id, request, status: response.status_code, from_service, duration };
        tracing::info!(target: "nbwss::audit", endpoint, id, method = %request.method, uri = %request.uri,
            status = response.status_code, from_service, duration_ms = duration.as_millis() as u64, "relayed");
        if let Some(audit) = &self.audit {
            audit.record(&entry);
        }
        response
    }

    async fn call(&self, request: &CommandRequest) -> CommandResponse {
        let url = self.url_for(&request.uri);
        let method = match reqwest::Method::from_bytes(request.method.as_str().as_bytes()) {
            Ok(method) => method,
            Err(_) => return bad_request(format!("method {} is not supported", request.method)),
        };
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in request.headers.iter() {
            if is_hop_by_hop(name) {
                continue;
            }
            let (Ok(name), Ok(value)) = (
                reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                reqwest::header::HeaderValue::from_str(value),
            ) else {
                return bad_request(format!("header {name} is not a valid HTTP header"));
            };
            headers.append(name, value);
        }
        let mut builder = self.client.request(method, &url).headers(headers);
        if let Some(body) = &request.parameters {
            builder = builder.body(body.clone());
        }
        let mut response = match builder.send().await {
            Ok(response) => response,
            Err(error) => return unreachable(&error),
        };
        let status = response.status().as_u16();
        let mut out_headers = Headers::new();
        for (name, value) in response.headers() {
            if is_hop_by_hop(name.as_str()) {
                continue;
            }
            out_headers.append(
                name.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            );
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > self.max_body_bytes {
                        return CommandResponse::service_error(
                            413,
                            "The primary server's answer is too large to relay.",
                            vec![format!(
                                "the response body exceeds message.maxBytes ({} bytes)",
                                self.max_body_bytes
                            )],
                        );
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(error) => return unreachable(&error),
            }
        }
        CommandResponse {
            status_code: status,
            headers: out_headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}

fn bad_request(detail: String) -> CommandResponse {
    CommandResponse::service_error(400, "Malformed COMMAND.", vec![detail])
}

fn unreachable(error: &reqwest::Error) -> CommandResponse {
    let mut details = Vec::new();
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(current) = source {
        details.push(current.to_string());
        source = current.source();
    }
    CommandResponse::service_error(
        502,
        "The primary server cannot be reached (connection or TLS failure).",
        details,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(base: &str) -> Relay {
        let config = ServiceConfig::new("/tmp/x", base, None);
        Relay::new(&config, &Properties::default(), Arc::new(Metrics::new()), None).unwrap()
    }

    #[test]
    fn uri_joins_the_base_once() {
        assert_eq!(
            relay("https://h:1556/netbackup").url_for("/netbackup/admin/jobs?x=1"),
            "https://h:1556/netbackup/admin/jobs?x=1"
        );
        assert_eq!(
            relay("https://h:1556/netbackup/").url_for("/netbackup/netbackup/x"),
            "https://h:1556/netbackup/netbackup/x"
        );
        assert_eq!(relay("https://h:443").url_for("/netbackup/login"), "https://h:443/netbackup/login");
    }
}

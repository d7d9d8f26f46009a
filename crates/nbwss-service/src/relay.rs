//! The COMMAND relay (D6–D10): runs one REST call against the configured primary server and turns the
//! answer (or the reason there is none) into a COMMAND RESPONSE.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nbwss_protocol::{
    check_command_uri, Body, Codec, CommandRequest, CommandResponse, Headers, Message, Properties,
};

use crate::audit::{AuditEntry, AuditLog};
use crate::body::{read_limited, BodyError};
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

/// Longest piece of a request quoted in an error detail.
const MAX_QUOTED: usize = 256;

/// Runs relayed calls for every connection.
#[derive(Debug)]
pub struct Relay {
    client: reqwest::Client,
    base: String,
    strip_prefix: bool,
    policy: Policy,
    timeout: Duration,
    codec: Codec,
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
        // HTTP/1.1 only, on kept-alive connections: NetBackup's REST API speaks it, and a call costs far
        // less over it than over HTTP/2's streams, flow control and header compression (BENCHMARKS.md,
        // "Per-call cost of the relay"); calls in flight at once each take a pooled connection.
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .http1_only()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
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
            codec: Codec::new(properties.message_max_bytes),
            audit,
            metrics,
        })
    }

    /// The full URL for a checked COMMAND `uri` (which starts with `/netbackup/`).
    pub fn url_for(&self, uri: &str) -> String {
        match uri.strip_prefix("/netbackup").filter(|_| self.strip_prefix) {
            Some(rest) => format!("{}{rest}", self.base),
            None => format!("{}{uri}", self.base),
        }
    }

    /// Runs one call and answers it with the encoded COMMAND RESPONSE message; never fails (every failure
    /// is a D8 response). The answer always fits in `message.maxBytes`: a larger one is replaced by a 413
    /// for this call alone, so the connection never carries a message the endpoint must refuse (D4).
    pub async fn answer(&self, endpoint: &str, id: &str, request: &CommandRequest) -> String {
        let started = Instant::now();
        let response = self.respond(request).await;
        let (status, from_service, text) = self.fit(id, response);
        let duration = started.elapsed();
        self.metrics.command_duration.observe(duration.as_secs_f64());
        self.metrics.responded(status, from_service);
        let entry = AuditEntry { endpoint, id, request, status, from_service, duration };
        tracing::info!(target: "nbwss::audit", endpoint, id, method = %request.method, uri = %request.uri,
            status, from_service, duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX), "relayed");
        if let Some(audit) = &self.audit {
            audit.record(&entry);
        }
        text
    }

    /// The uri judged as the primary server will read it (400), then the policy on the normalised path
    /// (403), then the call within `command.timeout` (504).
    async fn respond(&self, request: &CommandRequest) -> CommandResponse {
        // The codec already refused a bad uri; a request built in-process is judged here all the same.
        let uri = match check_command_uri(&request.uri) {
            Ok(uri) => uri,
            Err(rule) => return bad_request(format!("payload.uri: {rule}")),
        };
        if !self.policy.allows(request.method, &uri.path) {
            return CommandResponse::service_error(
                403,
                "Refused by the service's relay policy.",
                vec![format!(
                    "{} {} is not in the allow-list (policy.allow)",
                    request.method,
                    excerpt(&uri.path)
                )],
            );
        }
        match tokio::time::timeout(self.timeout, self.call(request, &uri.forward)).await {
            Ok(response) => response,
            Err(_) => CommandResponse::service_error(
                504,
                "The primary server did not answer in time.",
                vec![format!(
                    "no answer to {} {} within {} s (command.timeout)",
                    request.method,
                    excerpt(&request.uri),
                    self.timeout.as_secs_f64()
                )],
            ),
        }
    }

    /// The encoded message of the response (its status and origin too), or of a 413 when that message
    /// would exceed the limit.
    fn fit(&self, id: &str, response: CommandResponse) -> (u16, bool, String) {
        let (status, from_service) = (response.status_code, response.is_from_service());
        let text = self.codec.encode(&Message::with_id(id, Body::CommandResponse(response)));
        if text.len() <= self.codec.max_message_bytes() {
            return (status, from_service, text);
        }
        let too_big = CommandResponse::service_error(
            413,
            "The primary server's answer is too large to relay.",
            vec![format!(
                "the COMMAND RESPONSE would be {} bytes, more than message.maxBytes ({} bytes)",
                text.len(),
                self.codec.max_message_bytes()
            )],
        );
        (413, true, self.codec.encode(&Message::with_id(id, Body::CommandResponse(too_big))))
    }

    async fn call(&self, request: &CommandRequest, uri: &str) -> CommandResponse {
        let url = self.url_for(uri);
        let method = match reqwest::Method::from_bytes(request.method.as_str().as_bytes()) {
            Ok(method) => method,
            Err(_) => return bad_request(format!("method {} is not supported", request.method)),
        };
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in request.headers.iter() {
            if is_hop_by_hop(name) || name.eq_ignore_ascii_case("accept-encoding") {
                continue;
            }
            let (Ok(name), Ok(value)) = (
                reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                reqwest::header::HeaderValue::from_str(value),
            ) else {
                return bad_request(format!("payload.headers.{}: is not a valid HTTP header", excerpt(name)));
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
            let Ok(text) = std::str::from_utf8(value.as_bytes()) else {
                return bad_answer(format!(
                    "the value of its {name} header is not UTF-8 text, so it cannot travel in a COMMAND RESPONSE"
                ));
            };
            out_headers.append(name.as_str().to_ascii_lowercase(), text);
        }
        if let Some(encoding) = out_headers.get("content-encoding").map(str::trim) {
            if !encoding.is_empty() && !encoding.eq_ignore_ascii_case("identity") {
                return bad_answer(format!(
                    "it answered with Content-Encoding: {encoding} although the relay asks for none; a COMMAND RESPONSE body is text"
                ));
            }
        }
        let body = match read_limited(&mut response, self.codec.max_message_bytes()).await {
            Ok(body) => body,
            Err(BodyError::TooLarge { limit }) => {
                return CommandResponse::service_error(
                    413,
                    "The primary server's answer is too large to relay.",
                    vec![format!("the response body exceeds message.maxBytes ({limit} bytes)")],
                )
            }
            Err(BodyError::Transport(error)) => return unreachable(&error),
        };
        let body = match String::from_utf8(body) {
            Ok(body) => body,
            Err(error) => {
                return bad_answer(format!(
                    "its body is not UTF-8 text (invalid byte at offset {}); binary content cannot travel in a COMMAND RESPONSE",
                    error.utf8_error().valid_up_to()
                ))
            }
        };
        CommandResponse { status_code: status, headers: out_headers, body }
    }
}

/// At most [`MAX_QUOTED`] bytes of a value from the request, for an error detail: the answer must stay small
/// whatever the request held.
fn excerpt(text: &str) -> String {
    if text.len() <= MAX_QUOTED {
        return text.to_owned();
    }
    format!("{}… ({} bytes)", crate::audit::cut(text, MAX_QUOTED), text.len())
}

fn bad_request(detail: String) -> CommandResponse {
    CommandResponse::service_error(400, "Malformed COMMAND.", vec![detail])
}

/// The primary server answered something that cannot be relayed intact (502).
fn bad_answer(detail: String) -> CommandResponse {
    CommandResponse::service_error(502, "The primary server's answer cannot be relayed intact.", vec![detail])
}

fn unreachable(error: &reqwest::Error) -> CommandResponse {
    let mut details = Vec::new();
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(current) = source {
        details.push(current.to_string());
        source = current.source();
    }
    let message = if error.is_connect() {
        "The primary server cannot be reached (connection or TLS failure)."
    } else {
        "The primary server's answer could not be read (connection lost or malformed HTTP)."
    };
    CommandResponse::service_error(502, message, details)
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

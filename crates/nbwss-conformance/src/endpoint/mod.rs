//! Checking an endpoint: the kit plays the NBWSS service against a third-party endpoint
//! (`nbwss conformance endpoint`). It connects as a service does, then runs each rule of the endpoint's side
//! on a scripted sequence of connections:
//!
//! 1. TLS and upgrade, CONNECT with the given token, a ping, notifications (single, resent, batched, with
//!    unknown keys, at the size limit), COMMANDs through the optional trigger, an orderly close;
//! 2. one connection each for a message over the limit, text that is not JSON, JSON that is no envelope and a
//!    binary message (each must close the connection with its code);
//! 3. a CONNECT with a token the endpoint never issued, and a NOTIFICATION before any CONNECT.
//!
//! The notifications it sends carry the client name [`crate::CONFORMANCE_CLIENT`]: run it against a test
//! tenant, or delete those records afterwards.

mod commands;
mod notifications;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::checklist::Checklist;
use crate::checks::{self, Incoming};
use crate::closing;
use crate::error::SetupError;
use crate::messages::{self, Outgoing};
use crate::peer::{self, describe_end, Event, Io, Peer};
use crate::pong_gate::PongGate;
use crate::report::Report;
use crate::rule::{self, Mode, Rule};
use crate::tls::{self, Presented, Trust};
use crate::Progress;

/// Default time the endpoint has to answer CONNECT (D5).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time the endpoint has to acknowledge a notification: `notification.scheduledRate`'s default,
/// after which a service sends it again.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time for everything else the endpoint must answer (pongs, close frames, COMMANDs).
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP(S) URL that makes the endpoint send a COMMAND REQUEST on the kit's connection: the endpoint
/// sends COMMANDs only when its application asks, so the kit needs a way to ask. The kit calls it with
/// GET, answers the COMMAND that follows and expects the call to end with a 2xx status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTrigger {
    /// The URL (for nbwss's own endpoint: `https://HOST:PORT/relay/API_KEY/PRIMARY/netbackup/ping`).
    pub url: String,
    /// Headers to send with it, e.g. an API key.
    pub headers: Vec<(String, String)>,
}

/// What to check and how long to wait.
#[derive(Clone)]
pub struct EndpointOptions {
    /// The endpoint's `wss://` URL.
    pub url: String,
    /// A token the endpoint issued (what the details file's `token` holds).
    pub token: String,
    /// How to trust the endpoint's certificate.
    pub trust: Trust,
    /// How to make the endpoint send COMMANDs; without it the COMMAND rules are skipped.
    pub command_trigger: Option<CommandTrigger>,
    /// The endpoint's message size limit (D4).
    pub max_message_bytes: usize,
    /// Time to answer CONNECT.
    pub connect_timeout: Duration,
    /// Time to acknowledge a notification.
    pub ack_timeout: Duration,
    /// Time for every other answer.
    pub reply_timeout: Duration,
    /// Called with a line at each step.
    pub progress: Option<Progress>,
}

impl EndpointOptions {
    /// Options with every default.
    pub fn new(url: impl Into<String>, token: impl Into<String>, trust: Trust) -> Self {
        Self {
            url: url.into(),
            token: token.into(),
            trust,
            command_trigger: None,
            max_message_bytes: nbwss_protocol::DEFAULT_MAX_MESSAGE_BYTES,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            reply_timeout: DEFAULT_REPLY_TIMEOUT,
            progress: None,
        }
    }
}

/// Runs every endpoint rule against the endpoint at `options.url`.
pub async fn check_endpoint(options: EndpointOptions) -> Result<Report, SetupError> {
    let run = EndpointRun::new(options)?;
    run.run().await
}

/// Why a connection could not be opened.
enum OpenError {
    /// The kit cannot run (the certificate is not trusted yet).
    Setup(SetupError),
    /// The endpoint broke R-WS-1.
    Refused(String),
}

impl OpenError {
    fn reason(self) -> String {
        match self {
            Self::Setup(error) => error.to_string(),
            Self::Refused(reason) => reason,
        }
    }
}

/// What waiting for a message produced.
enum Wait {
    Found(Incoming),
    Ended(Event),
    Timeout,
}

struct EndpointRun {
    options: EndpointOptions,
    checklist: Checklist,
    tls: Arc<rustls::ClientConfig>,
    presented: Arc<Presented>,
    host: String,
    port: u16,
    next_job_id: i64,
    /// Ids the kit sent, to tell the endpoint's own ids from echoes.
    sent_ids: Vec<String>,
    /// Messages that arrived while the kit waited for something else, for reasons.
    strays: Vec<String>,
}

impl EndpointRun {
    fn new(options: EndpointOptions) -> Result<Self, SetupError> {
        let parsed = url::Url::parse(&options.url)
            .map_err(|error| SetupError::new(format!("--url '{}' is not a URL: {error}", options.url)))?;
        if parsed.scheme() != "wss" {
            return Err(SetupError::new(format!(
                "--url '{}' must start with wss:// (NBWSS connects over TLS only; ws:// is not supported)",
                options.url
            )));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| SetupError::new(format!("--url '{}' names no host", options.url)))?
            .to_owned();
        let port = parsed.port_or_known_default().unwrap_or(443);
        if options.token.is_empty() {
            return Err(SetupError::new("--token must not be empty"));
        }
        let (config, presented) = tls::client_config(&options.trust)?;
        Ok(Self {
            options,
            checklist: Checklist::default(),
            tls: Arc::new(config),
            presented,
            host,
            port,
            next_job_id: 900_000_001,
            sent_ids: Vec::new(),
            strays: Vec::new(),
        })
    }

    fn progress(&self, line: &str) {
        if let Some(progress) = &self.options.progress {
            progress(line);
        }
    }

    fn job_id(&mut self) -> i64 {
        self.next_job_id += 10;
        self.next_job_id
    }

    fn report(&self, unreached: &str) -> Report {
        self.checklist.report(Mode::Endpoint, self.options.url.clone(), unreached)
    }

    async fn run(mut self) -> Result<Report, SetupError> {
        self.progress(&format!("connecting to {}", self.options.url));
        let mut main = match self.open().await {
            Ok(peer) => peer,
            Err(OpenError::Setup(error)) => return Err(error),
            Err(OpenError::Refused(reason)) => {
                self.checklist.fail(&rule::WS_1, reason);
                return Ok(self.report("not reached: no connection could be opened (R-WS-1)"));
            }
        };
        let fingerprint = self.presented.get().map(|der| tls::sha256_fingerprint(&der));
        self.checklist.pass(
            &rule::WS_1,
            match fingerprint {
                Some(fingerprint) => {
                    format!("TLS with certificate SHA-256 {fingerprint}, then 101 Switching Protocols")
                }
                None => "TLS with a certificate from --ca-file, then 101 Switching Protocols".to_owned(),
            },
        );
        let token = self.options.token.clone();
        let accepted = self.connect(&mut main, &token).await;
        if accepted {
            self.progress("keepalive, notifications and limits on an accepted connection");
            self.keepalive(&mut main).await;
            self.notifications(&mut main).await;
            self.commands(&mut main).await;
            closing::orderly_close(&self.checklist, main, self.options.reply_timeout, "endpoint").await;
            self.progress("one connection each for the messages that must close it");
            self.closes_with(
                messages::notification_of_size(0, self.options.max_message_bytes + 1)?,
                &rule::LIMIT_3,
                &[1009],
                "a message one byte over the limit",
            )
            .await;
            self.closes_with(text("this is not JSON {"), &rule::CLOSE_1, &[1007], "text that is not JSON")
                .await;
            self.closes_with(
                text(r#"{"nbwss": "not an envelope"}"#),
                &rule::CLOSE_2,
                &[1002],
                "JSON that is not an NBWSS envelope",
            )
            .await;
            self.closes_on_binary().await;
        } else {
            main.close_quietly(1008, "nbwss conformance: CONNECT not accepted").await;
        }
        self.progress("a token the endpoint never issued, and a notification before CONNECT");
        self.wrong_token().await;
        self.notification_before_connect().await;
        self.checklist.skip(&rule::NOTIF_2, "not exercised: no NOTIFICATION RESPONSE arrived");
        let unreached = if accepted {
            "not reached: an earlier step ended the connection (see the failed rules)"
        } else {
            "not reached: the endpoint did not accept CONNECT with --token (R-CONNECT-2)"
        };
        Ok(self.report(unreached))
    }

    /// TCP, TLS, WebSocket upgrade.
    async fn open(&self) -> Result<Peer, OpenError> {
        let timeout = self.options.reply_timeout;
        let address = format!("{}:{}", self.host, self.port);
        let tcp = match tokio::time::timeout(timeout, TcpStream::connect(&address)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(error)) => return Err(OpenError::Refused(format!("cannot reach {address}: {error}"))),
            Err(_) => {
                return Err(OpenError::Refused(format!("{address} did not accept TCP within {timeout:?}")))
            }
        };
        let _ = tcp.set_nodelay(true);
        let name = tls::server_name(&self.host).map_err(OpenError::Setup)?;
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let tls = match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                let presented = self.presented.get().map(|der| tls::sha256_fingerprint(&der));
                return Err(match (&self.options.trust, presented) {
                    (Trust::Unset, Some(sha256)) => OpenError::Setup(SetupError::untrusted(&self.options.url, sha256)),
                    (Trust::Fingerprint(expected), Some(sha256)) => OpenError::Refused(format!(
                        "the endpoint presented a certificate with SHA-256 {sha256}, not --fingerprint {expected}"
                    )),
                    _ => OpenError::Refused(format!("TLS handshake with {address} failed: {error}")),
                });
            }
            Err(_) => {
                return Err(OpenError::Refused(format!("TLS handshake with {address} took over {timeout:?}")))
            }
        };
        let (gate, pongs) = PongGate::new(Box::new(tls) as Box<dyn Io>);
        let config = peer::websocket_config(self.options.max_message_bytes);
        let handshake =
            tokio_tungstenite::client_async_with_config(self.options.url.as_str(), gate, Some(config));
        match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok((ws, _))) => Ok(Peer::new(
                ws,
                pongs,
                self.checklist.clone(),
                Mode::Endpoint,
                self.options.max_message_bytes,
            )),
            Ok(Err(error)) => {
                Err(OpenError::Refused(format!("WebSocket upgrade at {} failed: {error}", self.options.url)))
            }
            Err(_) => Err(OpenError::Refused(format!("WebSocket upgrade took over {timeout:?}"))),
        }
    }

    /// Opens a connection and has CONNECT accepted, for the steps that need a session; `None` when that
    /// is impossible (the rule is then failed with the reason).
    async fn session(&mut self, rule: &Rule) -> Option<Peer> {
        let mut peer = match self.open().await {
            Ok(peer) => peer,
            Err(error) => {
                self.checklist.fail(rule, format!("could not open another connection: {}", error.reason()));
                return None;
            }
        };
        let request = messages::connect_request(&self.options.token);
        self.sent_ids.push(request.id.clone());
        if let Err(error) = peer.send_text(request.text).await {
            self.checklist.fail(rule, error);
            return None;
        }
        let deadline = Instant::now() + self.options.connect_timeout;
        match self.next_message(&mut peer, deadline, |message| message.is("CONNECT", "RESPONSE")).await {
            Wait::Found(_) => Some(peer),
            Wait::Ended(event) => {
                self.checklist.fail(
                    rule,
                    format!("not exercised: the endpoint {} right after CONNECT", describe_end(&event)),
                );
                None
            }
            Wait::Timeout => {
                self.checklist.fail(rule, "not exercised: no CONNECT RESPONSE on a new connection");
                None
            }
        }
    }

    /// Waits for a message `want` takes. COMMAND REQUESTs it does not take are checked and answered (the
    /// endpoint waits for them); anything else is noted as a stray.
    async fn next_message(
        &mut self,
        peer: &mut Peer,
        deadline: Instant,
        want: impl Fn(&Incoming) -> bool,
    ) -> Wait {
        loop {
            match peer.recv(deadline).await {
                None => return Wait::Timeout,
                Some(Event::Message(message)) if want(&message) => {
                    if message.is("NOTIFICATION", "RESPONSE") {
                        self.check_ack_payload(&message);
                    }
                    return Wait::Found(message);
                }
                Some(Event::Message(message)) if message.is("COMMAND", "REQUEST") => {
                    self.answer_command(peer, &message, messages::command_response).await;
                }
                Some(Event::Message(message)) => {
                    if message.is("NOTIFICATION", "RESPONSE") {
                        self.check_ack_payload(&message);
                    }
                    self.strays.push(message.describe());
                }
                Some(event @ (Event::Closed(_) | Event::Lost(_))) => return Wait::Ended(event),
                Some(Event::NotJson | Event::Binary) => {
                    self.strays.push("a message that is not NBWSS".into())
                }
                Some(Event::Ping | Event::Pong(_)) => {}
            }
        }
    }

    /// Checks a COMMAND REQUEST (R-COMMAND-1) and answers it.
    async fn answer_command(&mut self, peer: &mut Peer, message: &Incoming, answer: fn(&str) -> Outgoing) {
        let payload = message.payload().cloned().unwrap_or(Value::Null);
        self.checklist.check(
            &rule::COMMAND_1,
            "COMMAND REQUESTs checked, all conform",
            checks::command_request(&payload),
        );
        if let Some(id) = message.id() {
            let _ = peer.send_text(answer(id).text).await;
        }
    }

    fn strays_note(&mut self) -> String {
        let strays = std::mem::take(&mut self.strays);
        if strays.is_empty() {
            String::new()
        } else {
            format!("; instead: {}", strays.join(", "))
        }
    }

    /// R-CONNECT-2.
    async fn connect(&mut self, peer: &mut Peer, token: &str) -> bool {
        let request = messages::connect_request(token);
        self.sent_ids.push(request.id.clone());
        let started = Instant::now();
        if let Err(error) = peer.send_text(request.text).await {
            self.checklist.fail(&rule::CONNECT_2, error);
            return false;
        }
        let deadline = started + self.options.connect_timeout;
        // The first message the endpoint sends must be the answer.
        let first = loop {
            match peer.recv(deadline).await {
                None => break Wait::Timeout,
                Some(Event::Message(message)) => break Wait::Found(message),
                Some(event @ (Event::Closed(_) | Event::Lost(_))) => break Wait::Ended(event),
                Some(Event::NotJson | Event::Binary) => {
                    self.checklist
                        .fail(&rule::CONNECT_2, "the first message after CONNECT is not an NBWSS message");
                    return false;
                }
                Some(Event::Ping | Event::Pong(_)) => {}
            }
        };
        let response = match first {
            Wait::Found(message) => message,
            Wait::Ended(event) => {
                self.checklist.fail(
                    &rule::CONNECT_2,
                    format!("the endpoint {} instead of answering CONNECT", describe_end(&event)),
                );
                return false;
            }
            Wait::Timeout => {
                self.checklist.fail(
                    &rule::CONNECT_2,
                    format!("no CONNECT RESPONSE within {:?} (D5)", self.options.connect_timeout),
                );
                return false;
            }
        };
        if !response.is("CONNECT", "RESPONSE") {
            self.checklist.fail(
                &rule::CONNECT_2,
                format!(
                    "the first message after CONNECT is {}, not the CONNECT RESPONSE",
                    response.describe()
                ),
            );
            return false;
        }
        let valid = response.payload().and_then(|payload| payload.get("valid")).and_then(Value::as_bool);
        let elapsed = started.elapsed();
        match (response.id() == Some(request.id.as_str()), valid) {
            (true, Some(true)) => {
                self.checklist.pass(
                    &rule::CONNECT_2,
                    format!("valid: true with the request's id after {} ms", elapsed.as_millis()),
                );
                true
            }
            (_, Some(false)) => {
                self.checklist.fail(
                    &rule::CONNECT_2,
                    "valid: false: the endpoint refused the token given with --token",
                );
                false
            }
            (false, Some(true)) => {
                // A service would close here (D5); the kit goes on to check the other rules.
                self.checklist.fail(
                    &rule::CONNECT_2,
                    format!(
                        "the CONNECT RESPONSE carries id {}, not the request's {}",
                        response.id().unwrap_or("(none)"),
                        request.id
                    ),
                );
                true
            }
            (_, None) => {
                self.checklist.fail(&rule::CONNECT_2, "the CONNECT RESPONSE's payload has no boolean valid");
                false
            }
        }
    }

    /// R-KEEPALIVE-1.
    async fn keepalive(&mut self, peer: &mut Peer) {
        match peer.ping_pong(self.options.reply_timeout, "endpoint").await {
            Ok(after) => self.checklist.pass(
                &rule::KEEPALIVE_1,
                format!("pong with the ping's payload after {} ms", after.as_millis()),
            ),
            Err(reason) => self.checklist.fail(&rule::KEEPALIVE_1, reason),
        }
    }

    /// Sends `message` on a new accepted connection and expects the endpoint to close with one of `codes`.
    async fn closes_with(&mut self, message: Outgoing, rule: &Rule, codes: &[u16], what: &str) {
        let Some(mut peer) = self.session(rule).await else { return };
        if let Err(error) = peer.send_text(message.text).await {
            self.checklist.fail(rule, error);
            return;
        }
        let id = message.id;
        let waited = self.options.reply_timeout;
        let acknowledged =
            |incoming: &Incoming| incoming.is("NOTIFICATION", "RESPONSE") && incoming.id() == Some(&id);
        let closing = closing::wait_for_close(&mut peer, Instant::now() + waited, codes, acknowledged).await;
        closing::record(&self.checklist, rule, what, "endpoint", codes, &closing, waited);
        peer.close_quietly(1000, "nbwss conformance").await;
    }

    /// R-CLOSE-3.
    async fn closes_on_binary(&mut self) {
        let Some(mut peer) = self.session(&rule::CLOSE_3).await else { return };
        if let Err(error) = peer.send_binary(b"{\"binary\": true}".to_vec()).await {
            self.checklist.fail(&rule::CLOSE_3, error);
            return;
        }
        let waited = self.options.reply_timeout;
        let codes = [1002, 1003];
        let closing = closing::wait_for_close(&mut peer, Instant::now() + waited, &codes, |_| false).await;
        closing::record(
            &self.checklist,
            &rule::CLOSE_3,
            "a binary message",
            "endpoint",
            &codes,
            &closing,
            waited,
        );
        peer.close_quietly(1000, "nbwss conformance").await;
    }

    /// R-CONNECT-3.
    async fn wrong_token(&mut self) {
        let mut peer = match self.open().await {
            Ok(peer) => peer,
            Err(error) => {
                self.checklist
                    .fail(&rule::CONNECT_3, format!("could not open a connection: {}", error.reason()));
                return;
            }
        };
        let token = format!("nbwss-conformance-never-issued-{}", nbwss_protocol::new_message_id());
        let request = messages::connect_request(&token);
        if let Err(error) = peer.send_text(request.text).await {
            self.checklist.fail(&rule::CONNECT_3, error);
            return;
        }
        let deadline = Instant::now() + self.options.connect_timeout;
        let outcome =
            self.next_message(&mut peer, deadline, |message| message.is("CONNECT", "RESPONSE")).await;
        match outcome {
            Wait::Found(response) => {
                let valid =
                    response.payload().and_then(|payload| payload.get("valid")).and_then(Value::as_bool);
                match (valid, response.id() == Some(request.id.as_str())) {
                    (Some(false), true) => {
                        self.checklist.pass(&rule::CONNECT_3, "valid: false with the request's id")
                    }
                    (Some(false), false) => self.checklist.fail(
                        &rule::CONNECT_3,
                        format!(
                            "valid: false, but with id {} instead of {}",
                            response.id().unwrap_or("(none)"),
                            request.id
                        ),
                    ),
                    (Some(true), _) => self
                        .checklist
                        .fail(&rule::CONNECT_3, "valid: true for a token the endpoint never issued"),
                    (None, _) => self
                        .checklist
                        .fail(&rule::CONNECT_3, "the CONNECT RESPONSE's payload has no boolean valid"),
                }
            }
            Wait::Ended(event) => self.checklist.fail(
                &rule::CONNECT_3,
                format!("the endpoint {} without answering valid: false", describe_end(&event)),
            ),
            Wait::Timeout => self
                .checklist
                .fail(&rule::CONNECT_3, "no CONNECT RESPONSE to a token the endpoint never issued"),
        }
        peer.close_quietly(1008, "nbwss conformance: token refused").await;
    }

    /// R-CONNECT-4.
    async fn notification_before_connect(&mut self) {
        let mut peer = match self.open().await {
            Ok(peer) => peer,
            Err(error) => {
                self.checklist
                    .fail(&rule::CONNECT_4, format!("could not open a connection: {}", error.reason()));
                return;
            }
        };
        let job = self.job_id();
        let message = messages::notification_single(job);
        if let Err(error) = peer.send_text(message.text).await {
            self.checklist.fail(&rule::CONNECT_4, error);
            return;
        }
        let id = message.id;
        let deadline = Instant::now() + self.options.ack_timeout;
        match self
            .next_message(&mut peer, deadline, |incoming| {
                incoming.is("NOTIFICATION", "RESPONSE") && incoming.id() == Some(&id)
            })
            .await
        {
            Wait::Found(_) => {
                self.checklist.fail(&rule::CONNECT_4, "a NOTIFICATION sent before CONNECT was acknowledged")
            }
            Wait::Ended(event) => self
                .checklist
                .pass(&rule::CONNECT_4, format!("not acknowledged: the endpoint {}", describe_end(&event))),
            Wait::Timeout => self.checklist.pass(
                &rule::CONNECT_4,
                format!(
                    "not acknowledged within {:?} (closing, as nbwss does with 1008, is clearer)",
                    self.options.ack_timeout
                ),
            ),
        }
        peer.close_quietly(1000, "nbwss conformance").await;
    }
}

fn text(text: &str) -> Outgoing {
    Outgoing { id: String::new(), text: text.to_owned() }
}

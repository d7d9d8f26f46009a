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

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::checklist::Checklist;
use crate::checks::{self, Incoming};
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
            self.orderly_close(main).await;
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
        self.checklist.check(&rule::COMMAND_1, "COMMAND REQUESTs", checks::command_request(&payload));
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
        let payload = b"nbwss-conformance-ping".to_vec();
        let started = Instant::now();
        if let Err(error) = peer.send_ping(payload.clone()).await {
            self.checklist.fail(&rule::KEEPALIVE_1, error);
            return;
        }
        let deadline = started + self.options.reply_timeout;
        let mut other_pong = false;
        loop {
            match peer.recv(deadline).await {
                Some(Event::Pong(answer)) if answer == payload => {
                    self.checklist.pass(
                        &rule::KEEPALIVE_1,
                        format!("pong with the ping's payload after {} ms", started.elapsed().as_millis()),
                    );
                    return;
                }
                Some(Event::Pong(_)) => other_pong = true,
                Some(Event::Message(message)) if message.is("COMMAND", "REQUEST") => {
                    self.answer_command(peer, &message, messages::command_response).await;
                }
                Some(event @ (Event::Closed(_) | Event::Lost(_))) => {
                    self.checklist.fail(
                        &rule::KEEPALIVE_1,
                        format!("the endpoint {} after a ping", describe_end(&event)),
                    );
                    return;
                }
                Some(_) => {}
                None => {
                    let note = if other_pong { " (only a pong with another payload)" } else { "" };
                    self.checklist.fail(
                        &rule::KEEPALIVE_1,
                        format!(
                            "no pong with the ping's payload within {:?}{note}",
                            self.options.reply_timeout
                        ),
                    );
                    return;
                }
            }
        }
    }

    /// Sends `message` and waits for its acknowledgement; records R-NOTIF-1 and R-NOTIF-2.
    async fn acknowledged(
        &mut self,
        peer: &mut Peer,
        message: &Outgoing,
        wait: Duration,
    ) -> Result<Duration, String> {
        let started = Instant::now();
        peer.send_text(message.text.clone()).await?;
        self.sent_ids.push(message.id.clone());
        let id = message.id.clone();
        let outcome = self
            .next_message(peer, started + wait, |incoming| {
                incoming.is("NOTIFICATION", "RESPONSE") && incoming.id() == Some(&id)
            })
            .await;
        match outcome {
            Wait::Found(_) => {
                self.checklist.observe(&rule::NOTIF_1, "notifications acknowledged in time, by id,");
                Ok(started.elapsed())
            }
            Wait::Ended(event) => {
                let reason = format!(
                    "the endpoint {} instead of acknowledging notification {id}",
                    describe_end(&event)
                );
                self.checklist.fail(&rule::NOTIF_1, reason.clone());
                Err(reason)
            }
            Wait::Timeout => {
                let note = self.strays_note();
                let reason = format!("no NOTIFICATION RESPONSE with id {id} within {wait:?}{note}");
                self.checklist.fail(&rule::NOTIF_1, reason.clone());
                Err(reason)
            }
        }
    }

    fn check_ack_payload(&self, ack: &Incoming) {
        let payload = ack.payload().cloned().unwrap_or(Value::Null);
        let outcome = match &payload {
            Value::Array(items) if items.is_empty() => Ok(()),
            other => Err(format!("acknowledgement {} has payload {other}, not []", ack.id().unwrap_or("?"))),
        };
        self.checklist.check(&rule::NOTIF_2, "acknowledgements", outcome);
    }

    /// R-NOTIF-1 to 5, R-ENV-8 and R-LIMIT-2 on the accepted connection.
    async fn notifications(&mut self, peer: &mut Peer) {
        let ack_timeout = self.options.ack_timeout;
        let job = self.job_id();
        let single = messages::notification_single(job);
        match self.acknowledged(peer, &single, ack_timeout).await {
            Ok(_) => {
                // The same message again, as a service resends it when the acknowledgement was lost (D12).
                match self.acknowledged(peer, &single, ack_timeout).await {
                    Ok(after) => self
                        .checklist
                        .pass(&rule::NOTIF_3, format!("acknowledged again after {} ms", after.as_millis())),
                    Err(reason) => self.checklist.fail(&rule::NOTIF_3, reason),
                }
            }
            Err(reason) => self.checklist.fail(
                &rule::NOTIF_3,
                format!("not exercised: the first notification was not acknowledged ({reason})"),
            ),
        }
        if peer.ended() {
            return;
        }
        self.batches(peer).await;
        if peer.ended() {
            return;
        }
        let job = self.job_id();
        match self.acknowledged(peer, &messages::notification_with_extra_keys(job), ack_timeout).await {
            Ok(_) => self.checklist.pass(
                &rule::ENV_8,
                "a NOTIFICATION with unknown keys (envelope, element, record) was acknowledged",
            ),
            Err(reason) => self.checklist.fail(&rule::ENV_8, reason),
        }
        if peer.ended() {
            return;
        }
        let size = self.options.max_message_bytes;
        let job = self.job_id();
        match messages::notification_of_size(job, size) {
            Ok(large) => match self.acknowledged(peer, &large, ack_timeout + self.options.reply_timeout).await {
                Ok(after) => self.checklist.pass(
                    &rule::LIMIT_2,
                    format!("a NOTIFICATION of {size} bytes (padded with an unknown key) was acknowledged after {} ms", after.as_millis()),
                ),
                Err(reason) => self.checklist.fail(&rule::LIMIT_2, format!("a message of exactly {size} bytes: {reason}")),
            },
            Err(error) => self.checklist.skip(&rule::LIMIT_2, error.to_string()),
        }
    }

    /// R-NOTIF-4 and R-NOTIF-5: three batches sent back to back, each acknowledged by its own id.
    async fn batches(&mut self, peer: &mut Peer) {
        let mut outstanding = Vec::new();
        for _ in 0..3 {
            let job = self.job_id();
            let batch = messages::notification_batch(job);
            if let Err(error) = peer.send_text(batch.text.clone()).await {
                self.checklist.fail(&rule::NOTIF_4, error);
                return;
            }
            self.sent_ids.push(batch.id.clone());
            outstanding.push(batch.id);
        }
        let first = outstanding[0].clone();
        let all = outstanding.clone();
        let deadline = Instant::now() + self.options.ack_timeout;
        let mut order = Vec::new();
        while !outstanding.is_empty() {
            let pending = outstanding.clone();
            let wanted = |message: &Incoming| {
                message.is("NOTIFICATION", "RESPONSE")
                    && message.id().is_some_and(|id| pending.iter().any(|p| p == id))
            };
            match self.next_message(peer, deadline, wanted).await {
                Wait::Found(ack) => {
                    self.checklist.observe(&rule::NOTIF_1, "notifications acknowledged in time, by id,");
                    let id = ack.id().unwrap_or_default().to_owned();
                    order.push(all.iter().position(|candidate| *candidate == id).unwrap_or(0) + 1);
                    outstanding.retain(|candidate| *candidate != id);
                }
                Wait::Ended(event) => {
                    let reason = format!("the endpoint {} with batches outstanding", describe_end(&event));
                    self.checklist.fail(&rule::NOTIF_4, reason.clone());
                    self.checklist.fail(&rule::NOTIF_5, reason);
                    return;
                }
                Wait::Timeout => break,
            }
        }
        if outstanding.contains(&first) {
            let note = self.strays_note();
            self.checklist.fail(
                &rule::NOTIF_4,
                format!(
                    "the batch {first} (2 elements, 2 records each) was not acknowledged within {:?}{note}",
                    self.options.ack_timeout
                ),
            );
        } else {
            self.checklist.pass(
                &rule::NOTIF_4,
                "a JOB element and an IMAGE element of 2 records each, acknowledged as one message",
            );
        }
        if outstanding.is_empty() {
            let order: Vec<String> = order.iter().map(usize::to_string).collect();
            self.checklist.pass(
                &rule::NOTIF_5,
                format!("3 batches sent together, acknowledged by id in the order {}", order.join(", ")),
            );
        } else {
            let note = self.strays_note();
            let reason =
                format!("{} of 3 batches sent together were not acknowledged by id{note}", outstanding.len());
            self.checklist.fail(&rule::NOTIF_1, reason.clone());
            self.checklist.fail(&rule::NOTIF_5, reason);
        }
    }

    /// R-COMMAND-1 to 4, through the trigger.
    async fn commands(&mut self, peer: &mut Peer) {
        let Some(trigger) = self.options.command_trigger.clone() else {
            let reason = "skipped: an endpoint sends COMMANDs only when its application asks; pass --command-trigger URL (see --help)";
            for rule in [&rule::COMMAND_1, &rule::COMMAND_2, &rule::COMMAND_3, &rule::COMMAND_4] {
                self.checklist.skip(rule, reason);
            }
            return;
        };
        self.progress(&format!("COMMANDs through the trigger {}", trigger.url));
        let client = match reqwest::Client::builder()
            .use_preconfigured_tls((*self.tls).clone())
            .timeout(self.options.reply_timeout * 2)
            .build()
        {
            Ok(client) => client,
            Err(error) => {
                self.checklist
                    .fail(&rule::COMMAND_1, format!("cannot build an HTTP client for the trigger: {error}"));
                return;
            }
        };
        let first =
            self.triggered(peer, &client, &trigger, messages::command_response, &rule::COMMAND_3).await;
        if peer.ended() {
            return;
        }
        let second = self
            .triggered(peer, &client, &trigger, messages::command_response_spring, &rule::COMMAND_4)
            .await;
        match (first, second) {
            (Some(first), Some(second)) if first == second => {
                self.checklist.fail(&rule::COMMAND_2, format!("two COMMANDs both carried id {first}"))
            }
            (Some(first), Some(second))
                if self.sent_ids.contains(&first) || self.sent_ids.contains(&second) =>
            {
                self.checklist.fail(&rule::COMMAND_2, "a COMMAND reused the id of a message the kit had sent")
            }
            (Some(_), Some(_)) => self.checklist.pass(&rule::COMMAND_2, "two COMMANDs, two fresh ids"),
            _ => self.checklist.skip(&rule::COMMAND_2, "not exercised: fewer than two COMMANDs arrived"),
        }
    }

    /// Calls the trigger, answers the COMMAND it causes with `answer` and records whether the call then
    /// succeeds under `rule`; returns the COMMAND's id.
    async fn triggered(
        &mut self,
        peer: &mut Peer,
        client: &reqwest::Client,
        trigger: &CommandTrigger,
        answer: fn(&str) -> Outgoing,
        rule: &Rule,
    ) -> Option<String> {
        let mut request = client.get(&trigger.url);
        for (name, value) in &trigger.headers {
            request = request.header(name, value);
        }
        let call = tokio::spawn(async move {
            let response = request.send().await.map_err(|error| error.to_string())?;
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            Ok::<_, String>((status, body))
        });
        let deadline = Instant::now() + self.options.reply_timeout;
        let command =
            match self.next_message(peer, deadline, |message| message.is("COMMAND", "REQUEST")).await {
                Wait::Found(command) => command,
                other => {
                    let what = match other {
                        Wait::Ended(event) => format!("the endpoint {}", describe_end(&event)),
                        _ => format!("no COMMAND REQUEST arrived within {:?}", self.options.reply_timeout),
                    };
                    let called = match tokio::time::timeout(Duration::from_millis(100), call).await {
                        Ok(Ok(Ok((status, _)))) => format!(" (the trigger answered {status})"),
                        Ok(Ok(Err(error))) => format!(" (the trigger failed: {error})"),
                        _ => String::new(),
                    };
                    self.checklist
                        .fail(&rule::COMMAND_1, format!("after calling the trigger, {what}{called}"));
                    self.checklist.skip(rule, "not exercised: no COMMAND to answer");
                    return None;
                }
            };
        self.answer_command(peer, &command, answer).await;
        let id = command.id().unwrap_or_default().to_owned();
        // Keep reading (pings, other messages) while the trigger's call completes.
        let outcome = {
            let mut call = call;
            let deadline = Instant::now() + self.options.reply_timeout * 2;
            loop {
                tokio::select! {
                    result = &mut call => break Some(result),
                    event = peer.recv(deadline) => match event {
                        None => break None,
                        Some(Event::Message(message)) if message.is("COMMAND", "REQUEST") => {
                            self.answer_command(peer, &message, messages::command_response).await;
                        }
                        Some(Event::Closed(_) | Event::Lost(_)) => break None,
                        Some(_) => {}
                    },
                }
            }
        };
        match outcome {
            Some(Ok(Ok((status, body)))) if (200..300).contains(&status) => {
                let carried = if body.contains(&id) { ", its body carried the kit's answer" } else { "" };
                self.checklist.pass(
                    rule,
                    format!("COMMAND {id} answered; the trigger then answered {status}{carried}"),
                );
            }
            Some(Ok(Ok((status, body)))) => self.checklist.fail(
                rule,
                format!("COMMAND {id} answered, but the trigger answered {status}: {}", checks::clip(&body)),
            ),
            Some(Ok(Err(error))) => {
                self.checklist.fail(rule, format!("COMMAND {id} answered, but the trigger failed: {error}"))
            }
            Some(Err(error)) => self.checklist.fail(rule, format!("the trigger call failed: {error}")),
            None => self
                .checklist
                .fail(rule, format!("COMMAND {id} answered, but the trigger did not complete in time")),
        }
        Some(id)
    }

    /// R-CLOSE-4 on the accepted connection.
    async fn orderly_close(&mut self, mut peer: Peer) {
        if peer.ended() {
            self.checklist.skip(&rule::CLOSE_4, "not exercised: the connection had already ended");
            return;
        }
        if let Err(error) = peer.send_close(1000, "nbwss conformance: done").await {
            self.checklist.fail(&rule::CLOSE_4, error);
            return;
        }
        let deadline = Instant::now() + self.options.reply_timeout;
        loop {
            match peer.recv(deadline).await {
                Some(Event::Closed(code)) => {
                    let code = code.map_or("no code".to_owned(), |(code, _)| code.to_string());
                    self.checklist.pass(
                        &rule::CLOSE_4,
                        format!("answered the kit's close (1000) with a close frame ({code})"),
                    );
                    return;
                }
                Some(event @ Event::Lost(_)) => {
                    self.checklist.fail(
                        &rule::CLOSE_4,
                        format!("the endpoint {} instead of answering the close frame", describe_end(&event)),
                    );
                    return;
                }
                Some(_) => {}
                None => {
                    self.checklist.fail(
                        &rule::CLOSE_4,
                        format!("no close frame within {:?} of the kit's", self.options.reply_timeout),
                    );
                    return;
                }
            }
        }
    }

    /// Sends `message` on a new accepted connection and expects the endpoint to close with one of `codes`.
    async fn closes_with(&mut self, message: Outgoing, rule: &Rule, codes: &[u16], what: &str) {
        let Some(mut peer) = self.session(rule).await else { return };
        if let Err(error) = peer.send_text(message.text).await {
            self.checklist.fail(rule, error);
            return;
        }
        self.expect_close(peer, rule, codes, what, Some(&message.id)).await;
    }

    /// R-CLOSE-3.
    async fn closes_on_binary(&mut self) {
        let Some(mut peer) = self.session(&rule::CLOSE_3).await else { return };
        if let Err(error) = peer.send_binary(b"{\"binary\": true}".to_vec()).await {
            self.checklist.fail(&rule::CLOSE_3, error);
            return;
        }
        self.expect_close(peer, &rule::CLOSE_3, &[1002, 1003], "a binary message", None).await;
    }

    async fn expect_close(
        &mut self,
        mut peer: Peer,
        rule: &Rule,
        codes: &[u16],
        what: &str,
        id: Option<&str>,
    ) {
        let expected: Vec<String> = codes.iter().map(u16::to_string).collect();
        let expected = expected.join(" or ");
        let deadline = Instant::now() + self.options.reply_timeout;
        loop {
            match peer.recv(deadline).await {
                Some(Event::Closed(Some((code, reason)))) if codes.contains(&code) => {
                    let reason = if reason.is_empty() { String::new() } else { format!(" ({reason})") };
                    self.checklist.pass(rule, format!("{what}: closed with {code}{reason}"));
                    return;
                }
                Some(event @ (Event::Closed(_) | Event::Lost(_))) => {
                    self.checklist.fail(
                        rule,
                        format!("{what}: the endpoint {}, not with {expected}", describe_end(&event)),
                    );
                    return;
                }
                Some(Event::Message(message))
                    if message.is("NOTIFICATION", "RESPONSE") && id.is_some() && message.id() == id =>
                {
                    self.checklist
                        .fail(rule, format!("{what}: acknowledged it instead of closing with {expected}"));
                    peer.close_quietly(1000, "nbwss conformance").await;
                    return;
                }
                Some(Event::Message(message)) if message.is("COMMAND", "REQUEST") => {
                    self.answer_command(&mut peer, &message, messages::command_response).await;
                }
                Some(_) => {}
                None => {
                    self.checklist.fail(
                        rule,
                        format!(
                            "{what}: the connection stayed open {:?}; expected a close with {expected}",
                            self.options.reply_timeout
                        ),
                    );
                    peer.close_quietly(1000, "nbwss conformance").await;
                    return;
                }
            }
        }
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

//! Checking a service: the kit plays an endpoint for a third-party service (`nbwss conformance service`),
//! for instance a real primary server's NBWSS. It listens on TLS with its own certificate and token; the
//! operator saves it as a WebSocket server on the service (the kit writes the endpoint details file), and the
//! service connects. The kit then drives the service through a scripted sequence of connections:
//!
//! 1. refuses CONNECT (`valid: false`): the service must close with 1008 and connect again;
//! 2. answers CONNECT with another id: the service must close and connect again;
//! 3. accepts CONNECT, then: a ping; a batch of COMMANDs (a GET under /netbackup/, several in flight,
//!    malformed ones, uris outside /netbackup/, another version, unknown keys, one at the size limit);
//!    notifications (held unacknowledged until resent, acknowledged with `[]` and with `{}`); the service's
//!    own pings; and finally no pongs, until the service closes;
//! 4. one connection each for a message over the limit, text that is not JSON, JSON that is no envelope and
//!    a binary message; the last is closed by the kit.
//!
//! Notifications come from the primary server: the operator runs a backup while the kit waits, or gives a
//! command (`--notify-cmd`) the kit runs whenever it needs one (it is run with `NBWSS_CONFORMANCE_ROUND` set
//! to 1, 2, ...).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nbwss_protocol::{EndpointDetails, Method, Secret};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

use crate::checklist::Checklist;
use crate::checks::{self, Incoming};
use crate::error::SetupError;
use crate::messages::{self, Outgoing};
use crate::peer::{self, describe_end, Event, Io, OpenGuard, Peer};
use crate::pong_gate::PongGate;
use crate::report::Report;
use crate::rule::{self, Mode, Rule};
use crate::tls::Identity;
use crate::Progress;

/// Default address the kit listens on.
pub const DEFAULT_BIND: &str = "127.0.0.1:9443";
/// Default path of the kit's WebSocket endpoint.
pub const DEFAULT_PATH: &str = "/nbwss";
/// Default time the service has to make its first connection.
pub const DEFAULT_FIRST_WAIT: Duration = Duration::from_secs(300);
/// Default time the service has to connect again: `connectionInfo.period`'s default (60 s) and a margin.
pub const DEFAULT_RECONNECT_WAIT: Duration = Duration::from_secs(75);
/// Default time for answers (a pong, a close frame, CONNECT after the upgrade).
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time the service has to answer the kit's COMMANDs: relayed calls go to the primary server.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time to wait for a notification.
pub const DEFAULT_NOTIFICATION_WAIT: Duration = Duration::from_secs(120);
/// Default time to wait for a resend: `notification.scheduledRate` (5 s) plus `notification.sendTimeout`
/// (2 s) and a margin.
pub const DEFAULT_RESEND_WAIT: Duration = Duration::from_secs(15);
/// `keepAlive.scheduledRate`'s default.
pub const DEFAULT_KEEPALIVE_RATE: Duration = Duration::from_secs(30);
/// `keepAlive.maxPongMissAllowed`'s default (D18).
pub const DEFAULT_MAX_PONG_MISS: u32 = 3;
/// The URI of the GET the kit relays: NetBackup's `/ping` needs no login.
pub const DEFAULT_GET_URI: &str = "/netbackup/ping";
/// How long the kit waits before answering CONNECT, watching that nothing else arrives (R-CONNECT-5).
const CONNECT_DELAY: Duration = Duration::from_millis(500);
/// A resend that crosses the acknowledgement on the wire is not held against the service.
const ACK_GRACE: Duration = Duration::from_millis(250);

/// What to check and how long to wait.
#[derive(Clone)]
pub struct ServiceOptions {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// Host name (or address) the service uses to reach the kit: in the URL, the certificate and the
    /// details file. Default: the bind address, or `localhost` for a wildcard one.
    pub public_host: Option<String>,
    /// Path of the WebSocket endpoint.
    pub path: String,
    /// The token the service must present; generated when `None`.
    pub token: Option<String>,
    /// The kit's certificate; a self-signed one for `public_host` is generated when `None`.
    pub identity: Option<Identity>,
    /// Time for the first connection.
    pub first_wait: Duration,
    /// Time for each reconnection.
    pub reconnect_wait: Duration,
    /// Time for answers.
    pub reply_timeout: Duration,
    /// Time for COMMAND RESPONSEs.
    pub command_timeout: Duration,
    /// The URI of the GET to relay.
    pub get_uri: String,
    /// A shell command that makes the service send a notification.
    pub notify_command: Option<String>,
    /// Time to wait for a notification.
    pub notification_wait: Duration,
    /// Time to wait for a resend, and to watch that an acknowledged notification is not resent.
    pub resend_wait: Duration,
    /// The service's `keepAlive.scheduledRate`.
    pub keepalive_rate: Duration,
    /// The service's `keepAlive.maxPongMissAllowed`.
    pub max_pong_miss: u32,
    /// The service's message size limit (D4).
    pub max_message_bytes: usize,
    /// Called with a line at each step.
    pub progress: Option<Progress>,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 9443)),
            public_host: None,
            path: DEFAULT_PATH.to_owned(),
            token: None,
            identity: None,
            first_wait: DEFAULT_FIRST_WAIT,
            reconnect_wait: DEFAULT_RECONNECT_WAIT,
            reply_timeout: DEFAULT_REPLY_TIMEOUT,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            get_uri: DEFAULT_GET_URI.to_owned(),
            notify_command: None,
            notification_wait: DEFAULT_NOTIFICATION_WAIT,
            resend_wait: DEFAULT_RESEND_WAIT,
            keepalive_rate: DEFAULT_KEEPALIVE_RATE,
            max_pong_miss: DEFAULT_MAX_PONG_MISS,
            max_message_bytes: nbwss_protocol::DEFAULT_MAX_MESSAGE_BYTES,
            progress: None,
        }
    }
}

/// A connection that passed TLS and the WebSocket upgrade.
struct Accepted {
    peer: Peer,
    path: String,
}

/// The kit, listening, waiting for the service under test.
pub struct ServiceKit {
    options: ServiceOptions,
    identity: Identity,
    token: String,
    url: String,
    host: String,
    local_addr: SocketAddr,
    listener: TcpListener,
}

impl ServiceKit {
    /// Binds the listener and prepares the certificate and token; nothing is accepted before [`Self::run`].
    pub async fn bind(options: ServiceOptions) -> Result<Self, SetupError> {
        if !options.path.starts_with('/') {
            return Err(SetupError::new(format!("--path '{}' must start with /", options.path)));
        }
        if options.get_uri.contains("://") || !options.get_uri.starts_with("/netbackup/") {
            return Err(SetupError::new(format!(
                "--get-uri '{}' must be a path under /netbackup/",
                options.get_uri
            )));
        }
        if options.max_pong_miss == 0 {
            return Err(SetupError::new("--max-pong-miss must be at least 1"));
        }
        let listener = TcpListener::bind(options.bind)
            .await
            .map_err(|error| SetupError::new(format!("cannot listen on {}: {error}", options.bind)))?;
        let local_addr = listener
            .local_addr()
            .map_err(|error| SetupError::new(format!("cannot read the bound address: {error}")))?;
        let host = match &options.public_host {
            Some(host) => host.clone(),
            None if local_addr.ip().is_unspecified() => "localhost".to_owned(),
            None => local_addr.ip().to_string(),
        };
        let identity = match &options.identity {
            Some(identity) => identity.clone(),
            None => {
                let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
                if !names.contains(&host) {
                    names.push(host.clone());
                }
                Identity::generate(&names)?
            }
        };
        let token = match &options.token {
            Some(token) if token.trim().is_empty() => {
                return Err(SetupError::new("--token must not be empty"))
            }
            Some(token) => token.clone(),
            None => random_token()?,
        };
        let authority = if host.contains(':') { format!("[{host}]") } else { host.clone() };
        let url = format!("wss://{authority}:{}{}", local_addr.port(), options.path);
        Ok(Self { options, identity, token, url, host, local_addr, listener })
    }

    /// The `wss://` URL the service must connect to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The token the service must present.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The address the kit listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The kit's certificate (its SHA-256 fingerprint is what the administrator accepts when saving).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The endpoint details file for the service's administrator (D15): host, URL, group, priority, token.
    pub fn details(&self) -> EndpointDetails {
        EndpointDetails {
            host_name: self.host.clone(),
            url: self.url.clone(),
            group_id: "nbwss-conformance".to_owned(),
            priority: 1,
            token: Secret::new(self.token.clone()),
        }
    }

    /// Waits for the service and runs every service rule.
    pub async fn run(self) -> Report {
        let checklist = Checklist::default();
        let failures = Arc::new(Mutex::new(Vec::new()));
        let (sender, connections) = mpsc::channel(8);
        let accept = tokio::spawn(accept_loop(
            self.listener,
            self.identity.clone(),
            checklist.clone(),
            self.options.max_message_bytes,
            failures.clone(),
            sender,
        ));
        let run = ServiceRun {
            options: self.options,
            checklist,
            connections,
            failures,
            token: self.token,
            url: self.url,
            connection: 0,
            ended_at: None,
            reconnects: Vec::new(),
            session: Session::default(),
            notify_rounds: 0,
        };
        let report = run.run().await;
        accept.abort();
        report
    }
}

/// 24 random bytes as hex.
fn random_token() -> Result<String, SetupError> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 24];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| SetupError::new("cannot generate a random token"))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

async fn accept_loop(
    listener: TcpListener,
    identity: Identity,
    checklist: Checklist,
    limit: usize,
    failures: Arc<Mutex<Vec<String>>>,
    connections: mpsc::Sender<Accepted>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let acceptor = tokio_rustls::TlsAcceptor::from(identity.config.clone());
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                // Out of descriptors or similar: try again shortly rather than spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, checklist, failures, connections, open) =
            (acceptor.clone(), checklist.clone(), failures.clone(), connections.clone(), open.clone());
        // Each handshake runs on its own (a slow client must not hold up the next); the run ends them all
        // by dropping the channel's receiver.
        tokio::spawn(async move {
            match handshake(tcp, &acceptor, limit).await {
                Ok((ws, pongs, path)) => {
                    let (guard, before) = OpenGuard::register(&open);
                    if before > 0 {
                        checklist.fail(
                            &rule::CONN_2,
                            format!(
                                "the service opened a second connection (from {remote}) while one was open"
                            ),
                        );
                    }
                    let mut peer = Peer::new(ws, pongs, checklist, Mode::Service, limit).with_guard(guard);
                    peer.remote = Some(remote);
                    let _ = connections.send(Accepted { peer, path }).await;
                }
                Err(error) => {
                    let mut failures = failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    failures.push(format!("{remote}: {error}"));
                }
            }
        });
    }
}

type Upgraded = tokio_tungstenite::WebSocketStream<PongGate<Box<dyn Io>>>;

async fn handshake(
    tcp: TcpStream,
    acceptor: &tokio_rustls::TlsAcceptor,
    limit: usize,
) -> Result<(Upgraded, crate::pong_gate::PongSwitch, String), String> {
    let _ = tcp.set_nodelay(true);
    let timeout = Duration::from_secs(30);
    let tls = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => return Err(format!("TLS handshake failed: {error}")),
        Err(_) => return Err("TLS handshake took over 30 s".into()),
    };
    let (gate, pongs) = PongGate::new(Box::new(tls) as Box<dyn Io>);
    let path = Arc::new(Mutex::new(String::new()));
    let seen = path.clone();
    // The callback's error type is tungstenite's, large or not.
    #[allow(clippy::result_large_err)]
    let callback = move |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        *seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = request.uri().path().to_owned();
        Ok(response)
    };
    let config = peer::websocket_config(limit);
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(gate, callback, Some(config));
    let ws = match tokio::time::timeout(timeout, upgrade).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(error)) => return Err(format!("WebSocket upgrade failed: {error}")),
        Err(_) => return Err("WebSocket upgrade took over 30 s".into()),
    };
    let path = path.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    Ok((ws, pongs, path))
}

/// How the kit acknowledged a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AckStyle {
    /// `[]`, as D11 prescribes.
    Plain,
    /// `{}`: any payload must do (D11).
    Lenient,
}

/// A notification kept unacknowledged on purpose.
#[derive(Debug, Clone)]
struct Held {
    id: String,
    payload: Value,
}

/// What one established connection has shown so far, kept while the script waits for other things.
#[derive(Default)]
struct Session {
    started: Option<Instant>,
    responses: HashMap<String, Incoming>,
    /// The next notification is held for the resend check instead of being acknowledged.
    capture: bool,
    captured: VecDeque<Held>,
    held: Vec<Held>,
    /// Messages equal to a held one in id or payload: (id, payload).
    resends: Vec<(String, Value)>,
    acknowledged: HashMap<String, (Instant, AckStyle)>,
    resent_after_ack: Vec<(String, AckStyle)>,
    pings: usize,
    first_ping: Option<Duration>,
    pings_unanswered: usize,
}

/// The scripted run.
struct ServiceRun {
    options: ServiceOptions,
    checklist: Checklist,
    connections: mpsc::Receiver<Accepted>,
    failures: Arc<Mutex<Vec<String>>>,
    token: String,
    url: String,
    /// How many connections the service has made.
    connection: usize,
    /// When and how the previous connection ended.
    ended_at: Option<(Instant, String)>,
    reconnects: Vec<Duration>,
    session: Session,
    notify_rounds: u32,
}

/// How a step that must end the connection went.
enum Ending {
    /// The connection ended (as the rule wanted or not: the rule is recorded).
    Ended,
    /// The connection is still usable (the service ignored the input, as `exception.ignoreDecoder=true`
    /// allows).
    Kept(Box<Peer>),
}

impl ServiceRun {
    fn progress(&self, line: &str) {
        if let Some(progress) = &self.options.progress {
            progress(line);
        }
    }

    async fn run(mut self) -> Report {
        let unreached = match self.script().await {
            Ok(()) => "not reached".to_owned(),
            Err(reason) => format!("not reached: {reason}"),
        };
        if !self.reconnects.is_empty() && !self.checklist.has_failed(&rule::CONN_1) {
            let longest = self.reconnects.iter().max().copied().unwrap_or_default();
            self.checklist.pass(
                &rule::CONN_1,
                format!(
                    "connected again {} times, at most {:.1} s after a close",
                    self.reconnects.len(),
                    longest.as_secs_f64()
                ),
            );
        }
        if self.connection > 1 && !self.checklist.has_failed(&rule::CONN_2) {
            self.checklist
                .pass(&rule::CONN_2, format!("{} connections, never two open at once", self.connection));
        }
        self.checklist.report(Mode::Service, self.url.clone(), &unreached)
    }

    /// The whole sequence; an error ends it early with the reason the remaining rules were not reached.
    async fn script(&mut self) -> Result<(), String> {
        self.progress(&format!(
            "waiting up to {} s for the service to connect to {}",
            self.options.first_wait.as_secs(),
            self.url
        ));
        // 1. CONNECT refused.
        let mut peer = self.next_connection().await?;
        let id = self.expect_connect(&mut peer).await?;
        self.quiet_before_answer(&mut peer).await;
        peer.send_text(messages::connect_response(&id, false).text).await?;
        self.refusal_closes(peer).await;

        // 2. CONNECT answered with another id.
        self.progress("refused CONNECT; waiting for the service to connect again");
        let mut peer = self.next_connection().await?;
        let id = self.expect_connect(&mut peer).await?;
        let other = nbwss_protocol::new_message_id();
        debug_assert_ne!(id, other);
        peer.send_text(messages::connect_response(&other, true).text).await?;
        self.wrong_id_closes(peer).await;

        // 3. Accepted: everything that needs an established connection.
        self.progress("answered CONNECT with another id; waiting for the service to connect again");
        let mut peer = self.next_connection().await?;
        let id = self.expect_connect(&mut peer).await?;
        self.quiet_before_answer(&mut peer).await;
        peer.send_text(messages::connect_response(&id, true).text).await?;
        self.session.started = Some(Instant::now());
        self.progress("accepted CONNECT: keepalive, COMMANDs, notifications");
        self.keepalive(&mut peer).await;
        self.commands(&mut peer).await;
        self.notifications(&mut peer).await;
        self.service_pings(&mut peer).await;
        self.progress("no more pongs: waiting for the service to close the connection");
        self.missed_pongs(peer).await;

        // 4. One connection per input that must close it.
        self.progress("one connection each for the messages that must close it");
        let mut peer = self.accepted_connection().await?;
        let over = messages::command_of_size(&self.options.get_uri, self.options.max_message_bytes + 1)
            .map_err(|error| error.to_string())?;
        peer.send_text(over.text).await?;
        self.expect_close(peer, &rule::LIMIT_3, &[1009], "a message one byte over the limit", false).await;

        let mut kept: Option<Peer> = None;
        for (rule, codes, what, input) in [
            (&rule::CLOSE_1, &[1007u16][..], "text that is not JSON", Input::Text("this is not JSON {")),
            (
                &rule::CLOSE_2,
                &[1002][..],
                "JSON that is not an NBWSS envelope",
                Input::Text(r#"{"nbwss": "not an envelope"}"#),
            ),
            (&rule::CLOSE_3, &[1002, 1003][..], "a binary message", Input::Binary),
        ] {
            let mut peer = match kept.take() {
                Some(peer) => peer,
                None => self.accepted_connection().await?,
            };
            match input {
                Input::Text(text) => peer.send_text(text.to_owned()).await?,
                Input::Binary => peer.send_binary(b"{\"binary\": true}".to_vec()).await?,
            }
            if let Ending::Kept(peer) = self.expect_close(peer, rule, codes, what, true).await {
                kept = Some(*peer);
            }
        }
        let peer = match kept.take() {
            Some(peer) => peer,
            None => self.accepted_connection().await?,
        };
        self.orderly_close(peer).await;
        Ok(())
    }

    /// The next connection from the service (R-WS-1 on it, R-CONN-1 on the wait).
    async fn next_connection(&mut self) -> Result<Peer, String> {
        let wait = if self.connection == 0 { self.options.first_wait } else { self.options.reconnect_wait };
        let started = Instant::now();
        let accepted = tokio::time::timeout(wait, self.connections.recv()).await.ok().flatten();
        let Some(accepted) = accepted else {
            let failures = self.failures.lock().map(|failures| failures.join("; ")).unwrap_or_default();
            let failures = if failures.is_empty() {
                String::new()
            } else {
                format!(" (handshakes that failed: {failures})")
            };
            return Err(match &self.ended_at {
                None => {
                    let reason = format!(
                        "no service connected within {} s{failures}; save the WebSocket server with the kit's details file and activate it",
                        wait.as_secs()
                    );
                    self.checklist.fail(&rule::WS_1, reason.clone());
                    reason
                }
                Some((_, what)) => {
                    let reason = format!(
                        "the service did not connect again within {} s after {what}{failures}",
                        wait.as_secs()
                    );
                    self.checklist.fail(&rule::CONN_1, reason.clone());
                    reason
                }
            });
        };
        self.connection += 1;
        if let Some(remote) = accepted.peer.remote {
            self.progress(&format!("connection {} from {remote}", self.connection));
        }
        if self.ended_at.is_some() {
            self.reconnects.push(started.elapsed());
        }
        if accepted.path == self.options.path {
            self.checklist.pass(&rule::WS_1, format!("TLS, then the WebSocket upgrade at {}", accepted.path));
        } else {
            self.checklist.fail(
                &rule::WS_1,
                format!(
                    "the upgrade asked for path '{}', not the URL's '{}'",
                    accepted.path, self.options.path
                ),
            );
        }
        self.session = Session::default();
        Ok(accepted.peer)
    }

    /// A new connection with CONNECT accepted at once (for the steps that only need a session).
    async fn accepted_connection(&mut self) -> Result<Peer, String> {
        let mut peer = self.next_connection().await?;
        let id = self.expect_connect(&mut peer).await?;
        peer.send_text(messages::connect_response(&id, true).text).await?;
        self.session.started = Some(Instant::now());
        Ok(peer)
    }

    fn connection_ended(&mut self, what: impl Into<String>) {
        self.ended_at = Some((Instant::now(), what.into()));
    }

    /// R-CONNECT-1: the first message is CONNECT REQUEST with the token. Returns its id.
    async fn expect_connect(&mut self, peer: &mut Peer) -> Result<String, String> {
        let deadline = Instant::now() + self.options.reply_timeout;
        loop {
            match peer.recv(deadline).await {
                Some(Event::Message(message)) => {
                    if !message.is("CONNECT", "REQUEST") {
                        let reason =
                            format!("the first message was {}, not a CONNECT REQUEST", message.describe());
                        self.checklist.fail(&rule::CONNECT_1, reason.clone());
                        return Err(reason);
                    }
                    let token =
                        message.payload().and_then(|payload| payload.get("token")).and_then(Value::as_str);
                    let outcome = match token {
                        Some(token) if token == self.token => Ok(()),
                        Some(_) => Err("CONNECT REQUEST presented another token than the kit's (check the saved WebSocket server)".to_owned()),
                        None => Err("CONNECT REQUEST has no payload.token string".to_owned()),
                    };
                    self.checklist.check(
                        &rule::CONNECT_1,
                        "connections opened with CONNECT and the token",
                        outcome,
                    );
                    return message
                        .id()
                        .map(str::to_owned)
                        .ok_or_else(|| "the CONNECT REQUEST has no id".to_owned());
                }
                Some(Event::Ping | Event::Pong(_)) => {}
                Some(event @ (Event::Closed(_) | Event::Lost(_))) => {
                    let reason = format!("the service {} before sending CONNECT", describe_end(&event));
                    self.checklist.fail(&rule::CONNECT_1, reason.clone());
                    self.connection_ended("a connection without CONNECT");
                    return Err(reason);
                }
                Some(Event::NotJson | Event::Binary) => {
                    self.checklist.fail(&rule::CONNECT_1, "the first message was not an NBWSS message");
                    return Err("the service's first message was not an NBWSS message".into());
                }
                None => {
                    let reason =
                        format!("no CONNECT REQUEST within {:?} of the upgrade", self.options.reply_timeout);
                    self.checklist.fail(&rule::CONNECT_1, reason.clone());
                    return Err(reason);
                }
            }
        }
    }

    /// R-CONNECT-5: nothing but pings while the kit holds its CONNECT RESPONSE back.
    async fn quiet_before_answer(&mut self, peer: &mut Peer) {
        let deadline = Instant::now() + CONNECT_DELAY;
        while let Some(event) = peer.recv(deadline).await {
            match event {
                Event::Message(message) => {
                    self.checklist.fail(
                        &rule::CONNECT_5,
                        format!("sent {} before the CONNECT RESPONSE", message.describe()),
                    );
                }
                Event::Closed(_) | Event::Lost(_) => return,
                _ => {}
            }
        }
        self.checklist.observe(&rule::CONNECT_5, "CONNECT RESPONSEs held back, with nothing sent meanwhile,");
    }

    /// R-CONNECT-6 (and R-CONNECT-5 after the refusal).
    async fn refusal_closes(&mut self, mut peer: Peer) {
        let deadline = Instant::now() + self.options.reply_timeout;
        loop {
            match peer.recv(deadline).await {
                Some(Event::Closed(Some((1008, reason)))) => {
                    self.checklist
                        .pass(&rule::CONNECT_6, format!("closed with 1008 ({reason}) after valid: false"));
                    break;
                }
                Some(event @ (Event::Closed(_) | Event::Lost(_))) => {
                    self.checklist.fail(
                        &rule::CONNECT_6,
                        format!("after valid: false the service {}, not with 1008", describe_end(&event)),
                    );
                    break;
                }
                Some(Event::Message(message)) => self
                    .checklist
                    .fail(&rule::CONNECT_5, format!("sent {} after valid: false", message.describe())),
                Some(_) => {}
                None => {
                    self.checklist.fail(
                        &rule::CONNECT_6,
                        format!(
                            "the connection stayed open {:?} after valid: false",
                            self.options.reply_timeout
                        ),
                    );
                    break;
                }
            }
        }
        drop(peer);
        self.connection_ended("valid: false");
    }

    /// R-CONNECT-7.
    async fn wrong_id_closes(&mut self, mut peer: Peer) {
        let deadline = Instant::now() + self.options.reply_timeout;
        loop {
            match peer.recv(deadline).await {
                Some(event @ (Event::Closed(_) | Event::Lost(_))) => {
                    self.checklist.pass(&rule::CONNECT_7, format!("the service {}", describe_end(&event)));
                    break;
                }
                Some(Event::Message(message)) => {
                    self.checklist.fail(
                        &rule::CONNECT_7,
                        format!(
                            "after a CONNECT RESPONSE with another id the service sent {}, as if accepted",
                            message.describe()
                        ),
                    );
                }
                Some(_) => {}
                None => {
                    self.checklist.fail(
                        &rule::CONNECT_7,
                        format!(
                            "the connection stayed open {:?} after a CONNECT RESPONSE with another id",
                            self.options.reply_timeout
                        ),
                    );
                    peer.close_quietly(1000, "nbwss conformance").await;
                    self.connection_ended("a CONNECT RESPONSE with another id");
                    return;
                }
            }
        }
        drop(peer);
        self.connection_ended("a CONNECT RESPONSE with another id");
    }

    /// The next event on an established connection, with the bookkeeping every wait needs: COMMAND
    /// RESPONSEs kept by id, notifications checked and acknowledged (or held), pings counted.
    async fn pump(&mut self, peer: &mut Peer, deadline: Instant) -> Option<Event> {
        let event = peer.recv(deadline).await?;
        match &event {
            Event::Message(message) if message.is("NOTIFICATION", "REQUEST") => {
                self.on_notification(peer, message).await
            }
            Event::Message(message) if message.is("COMMAND", "RESPONSE") => {
                if let Some(id) = message.id() {
                    self.session.responses.insert(id.to_owned(), message.clone());
                }
            }
            Event::Ping => {
                self.session.pings += 1;
                if self.session.first_ping.is_none() {
                    self.session.first_ping = self.session.started.map(|started| started.elapsed());
                }
                if !peer.answers_pings() {
                    self.session.pings_unanswered += 1;
                }
            }
            Event::Closed(_) | Event::Lost(_) => self.connection_ended(describe_end(&event)),
            _ => {}
        }
        Some(event)
    }

    async fn on_notification(&mut self, peer: &mut Peer, message: &Incoming) {
        let payload = message.payload().cloned().unwrap_or(Value::Null);
        self.checklist.check(&rule::NOTIF_6, "NOTIFICATION REQUESTs", checks::notification_payload(&payload));
        match checks::notification_records(&payload) {
            Ok(0) => {}
            Ok(_) => self.checklist.observe(&rule::NOTIF_7, "NOTIFICATION REQUESTs"),
            Err(reason) => self.checklist.fail(&rule::NOTIF_7, reason),
        }
        let Some(id) = message.id().map(str::to_owned) else { return };
        let session = &mut self.session;
        if let Some((at, style)) = session.acknowledged.get(&id) {
            if at.elapsed() > ACK_GRACE {
                session.resent_after_ack.push((id.clone(), *style));
            }
            let _ = peer.send_text(messages::acknowledgement(&id, json!([])).text).await;
            return;
        }
        if session.held.iter().any(|held| held.id == id || held.payload == payload) {
            session.resends.push((id, payload));
            return;
        }
        if session.capture {
            session.capture = false;
            let held = Held { id, payload };
            session.held.push(held.clone());
            session.captured.push_back(held);
            return;
        }
        self.acknowledge(peer, &id, AckStyle::Plain).await;
    }

    async fn acknowledge(&mut self, peer: &mut Peer, id: &str, style: AckStyle) {
        let payload = match style {
            AckStyle::Plain => json!([]),
            AckStyle::Lenient => json!({}),
        };
        self.session.acknowledged.insert(id.to_owned(), (Instant::now(), style));
        let _ = peer.send_text(messages::acknowledgement(id, payload).text).await;
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
        loop {
            match self.pump(peer, deadline).await {
                Some(Event::Pong(answer)) if answer == payload => {
                    self.checklist.pass(
                        &rule::KEEPALIVE_1,
                        format!("pong with the ping's payload after {} ms", started.elapsed().as_millis()),
                    );
                    return;
                }
                Some(event @ (Event::Closed(_) | Event::Lost(_))) => {
                    self.checklist.fail(
                        &rule::KEEPALIVE_1,
                        format!("the service {} after a ping", describe_end(&event)),
                    );
                    return;
                }
                Some(_) => {}
                None => {
                    self.checklist.fail(
                        &rule::KEEPALIVE_1,
                        format!("no pong with the ping's payload within {:?}", self.options.reply_timeout),
                    );
                    return;
                }
            }
        }
    }

    /// R-COMMAND-5 to 10, R-ENV-8 and R-LIMIT-2: every COMMAND sent at once, then every answer awaited.
    async fn commands(&mut self, peer: &mut Peer) {
        let uri = self.options.get_uri.clone();
        let gets: Vec<Outgoing> = (0..5).map(|_| messages::command_text(Method::Get, &uri)).collect();
        let malformed: Vec<(&str, Outgoing)> = vec![
            ("no uri", messages::command_changed(&uri, |value| remove(value, "uri"))),
            ("no method", messages::command_changed(&uri, |value| remove(value, "method"))),
            (
                "method TRACE",
                messages::command_changed(&uri, |value| value["payload"]["method"] = json!("TRACE")),
            ),
            (
                "parameters a number",
                messages::command_changed(&uri, |value| value["payload"]["parameters"] = json!(42)),
            ),
            (
                "headers a string",
                messages::command_changed(&uri, |value| value["payload"]["headers"] = json!("Accept: */*")),
            ),
        ];
        let outside: Vec<(&str, Outgoing)> =
            ["/etc/passwd", "https://example.invalid/netbackup/ping", "/netbackup/../etc/passwd"]
                .into_iter()
                .map(|bad| {
                    (bad, messages::command_changed(&uri, |value| value["payload"]["uri"] = json!(bad)))
                })
                .collect();
        let version = messages::command_changed(&uri, |value| value["version"] = json!("2.0"));
        let extra = messages::command_with_extra_keys(&uri);
        let at_limit = messages::command_of_size(&uri, self.options.max_message_bytes);

        let mut all: Vec<&Outgoing> = gets.iter().collect();
        all.extend(malformed.iter().map(|(_, message)| message));
        all.extend(outside.iter().map(|(_, message)| message));
        all.push(&version);
        all.push(&extra);
        if let Ok(message) = &at_limit {
            all.push(message);
        }
        for message in &all {
            if let Err(error) = peer.send_text(message.text.clone()).await {
                self.checklist.fail(&rule::COMMAND_5, error);
                return;
            }
        }
        let ids: Vec<String> = all.iter().map(|message| message.id.clone()).collect();
        let deadline = Instant::now() + self.options.command_timeout;
        while !ids.iter().all(|id| self.session.responses.contains_key(id)) {
            match self.pump(peer, deadline).await {
                None | Some(Event::Closed(_) | Event::Lost(_)) => break,
                Some(_) => {}
            }
        }
        let responses = self.session.responses.clone();
        for response in responses.values() {
            let payload = response.payload().cloned().unwrap_or(Value::Null);
            self.checklist.check(
                &rule::COMMAND_5,
                "COMMAND RESPONSEs",
                checks::command_response(&payload).map(|_| ()),
            );
            self.checklist.check(&rule::COMMAND_6, "COMMAND RESPONSEs", checks::response_headers(&payload));
        }
        if responses.is_empty() {
            self.checklist.skip(&rule::COMMAND_6, "not exercised: no COMMAND was answered");
        }
        let timeout = self.options.command_timeout;
        let missing = |id: &str| format!("no COMMAND RESPONSE with id {id} within {timeout:?}");
        let answer = |id: &str| responses.get(id).and_then(|response| response.payload().cloned());

        match answer(&gets[0].id) {
            Some(payload) => {
                let status = payload.get("statusCode").cloned().unwrap_or(Value::Null);
                self.checklist
                    .pass(&rule::COMMAND_5, format!("GET {uri} answered with its id: status {status}"));
            }
            None => self.checklist.fail(&rule::COMMAND_5, missing(&gets[0].id)),
        }
        let unanswered = gets.iter().filter(|get| answer(&get.id).is_none()).count();
        if unanswered == 0 {
            self.checklist.pass(
                &rule::COMMAND_10,
                format!("{} GETs sent together, each answered with its id", gets.len()),
            );
        } else {
            self.checklist.fail(
                &rule::COMMAND_10,
                format!("{unanswered} of {} GETs sent together got no answer within {timeout:?}", gets.len()),
            );
        }
        self.service_errors(&rule::COMMAND_7, &malformed, &[400], &answer, &missing);
        self.service_errors(&rule::COMMAND_8, &outside, &[400, 403], &answer, &missing);
        self.service_errors(&rule::COMMAND_9, &[("version 2.0", version.clone())], &[400], &answer, &missing);
        match answer(&extra.id) {
            Some(payload) if checks::service_error(&payload, &[400]).is_ok() => {
                self.checklist.fail(&rule::ENV_8, "a COMMAND with unknown keys was refused with 400")
            }
            Some(payload) => {
                let status = payload.get("statusCode").cloned().unwrap_or(Value::Null);
                self.checklist.pass(
                    &rule::ENV_8,
                    format!("a COMMAND with unknown keys (envelope, payload) was relayed: status {status}"),
                );
            }
            None => self
                .checklist
                .fail(&rule::ENV_8, format!("a COMMAND with unknown keys: {}", missing(&extra.id))),
        }
        match &at_limit {
            Ok(message) => match answer(&message.id) {
                Some(payload) => {
                    let status = payload.get("statusCode").cloned().unwrap_or(Value::Null);
                    self.checklist.pass(
                        &rule::LIMIT_2,
                        format!("a COMMAND of {} bytes (padded with an unknown key) was answered: status {status}", message.text.len()),
                    );
                }
                None => self.checklist.fail(
                    &rule::LIMIT_2,
                    format!("a COMMAND of exactly the limit: {}", missing(&message.id)),
                ),
            },
            Err(error) => self.checklist.skip(&rule::LIMIT_2, error.to_string()),
        }
    }

    fn service_errors(
        &self,
        rule: &Rule,
        cases: &[(&str, Outgoing)],
        statuses: &[u16],
        answer: &dyn Fn(&str) -> Option<Value>,
        missing: &dyn Fn(&str) -> String,
    ) {
        for (label, message) in cases {
            let outcome = match answer(&message.id) {
                Some(payload) => checks::service_error(&payload, statuses),
                None => Err(missing(&message.id)),
            };
            if let Err(reason) = outcome {
                self.checklist.fail(rule, format!("{label}: {reason}"));
                return;
            }
        }
        let labels: Vec<&str> = cases.iter().map(|(label, _)| *label).collect();
        let statuses: Vec<String> = statuses.iter().map(u16::to_string).collect();
        self.checklist
            .pass(rule, format!("{}: each {} from the service", labels.join(", "), statuses.join("/")));
    }

    /// Runs the notify command (if any) and waits for a notification to capture.
    async fn capture_notification(&mut self, peer: &mut Peer) -> Result<Held, String> {
        self.session.capture = true;
        let command = self.options.notify_command.clone().map(|command| {
            self.notify_rounds += 1;
            let round = self.notify_rounds;
            tokio::spawn(run_notify_command(command, round))
        });
        let wait = self.options.notification_wait;
        let deadline = Instant::now() + wait;
        while self.session.captured.is_empty() {
            match self.pump(peer, deadline).await {
                None => break,
                Some(event @ (Event::Closed(_) | Event::Lost(_))) => {
                    self.session.capture = false;
                    return Err(format!(
                        "the service {} while the kit waited for a notification",
                        describe_end(&event)
                    ));
                }
                Some(_) => {}
            }
        }
        self.session.capture = false;
        if let Some(held) = self.session.captured.pop_front() {
            return Ok(held);
        }
        let how = match command {
            Some(task) => match tokio::time::timeout(Duration::from_millis(100), task).await {
                Ok(Ok(outcome)) => format!("the --notify-cmd {outcome}, but"),
                _ => "the --notify-cmd is still running, and".to_owned(),
            },
            None => {
                "without --notify-cmd the kit waits for the primary server's own activity (run a backup), and"
                    .to_owned()
            }
        };
        Err(format!("{how} no NOTIFICATION arrived within {} s", wait.as_secs()))
    }

    /// R-NOTIF-8 to 10 (R-NOTIF-6 and 7 are checked on every notification).
    async fn notifications(&mut self, peer: &mut Peer) {
        let notification_rules =
            [&rule::NOTIF_6, &rule::NOTIF_7, &rule::NOTIF_8, &rule::NOTIF_9, &rule::NOTIF_10];
        self.progress("waiting for a notification (held unacknowledged until the service sends it again)");
        let first = match self.capture_notification(peer).await {
            Ok(held) => held,
            Err(reason) => {
                for rule in notification_rules {
                    self.checklist.skip(rule, format!("not exercised: {reason}"));
                }
                return;
            }
        };
        let resend_wait = self.options.resend_wait;
        let deadline = Instant::now() + resend_wait;
        while self.session.resends.is_empty() {
            match self.pump(peer, deadline).await {
                None | Some(Event::Closed(_) | Event::Lost(_)) => break,
                Some(_) => {}
            }
        }
        let resends = std::mem::take(&mut self.session.resends);
        match resends.first() {
            Some((id, payload)) if *id == first.id && *payload == first.payload => self.checklist.pass(
                &rule::NOTIF_8,
                format!("{id} not acknowledged: sent again with the same id and payload"),
            ),
            Some((id, _)) if *id == first.id => self
                .checklist
                .fail(&rule::NOTIF_8, format!("{id} was sent again with the same id but another payload")),
            Some((id, _)) => self.checklist.fail(
                &rule::NOTIF_8,
                format!("{} was sent again with a new id {id}: a resend keeps the id (D12)", first.id),
            ),
            None => self.checklist.fail(
                &rule::NOTIF_8,
                format!(
                    "{} was not acknowledged and not sent again within {} s (--resend-wait)",
                    first.id,
                    resend_wait.as_secs()
                ),
            ),
        }
        if peer.ended() {
            return;
        }
        // Acknowledge it (and any copy under another id), then a second one with a payload of {}.
        let mut ids = vec![first.id.clone()];
        ids.extend(resends.into_iter().map(|(id, _)| id).filter(|id| *id != first.id));
        for id in &ids {
            self.acknowledge(peer, id, AckStyle::Plain).await;
        }
        self.session.held.clear();
        self.progress("waiting for a second notification (acknowledged with payload {})");
        let second = match self.capture_notification(peer).await {
            Ok(held) => {
                self.acknowledge(peer, &held.id, AckStyle::Lenient).await;
                self.session.held.clear();
                Some(held)
            }
            Err(reason) => {
                self.checklist.skip(&rule::NOTIF_10, format!("not exercised: {reason}"));
                None
            }
        };
        if peer.ended() {
            return;
        }
        let deadline = Instant::now() + resend_wait;
        while self
            .pump(peer, deadline)
            .await
            .is_some_and(|event| !matches!(event, Event::Closed(_) | Event::Lost(_)))
        {}
        let resent = std::mem::take(&mut self.session.resent_after_ack);
        match resent.iter().find(|(_, style)| *style == AckStyle::Plain) {
            Some((id, _)) => self
                .checklist
                .fail(&rule::NOTIF_9, format!("{id} was sent again after its acknowledgement ([])")),
            None => self.checklist.pass(
                &rule::NOTIF_9,
                format!(
                    "{} acknowledged with []: not sent again within {} s",
                    first.id,
                    resend_wait.as_secs()
                ),
            ),
        }
        if let Some(second) = second {
            match resent.iter().find(|(_, style)| *style == AckStyle::Lenient) {
                Some((id, _)) => self.checklist.fail(
                    &rule::NOTIF_10,
                    format!("{id} was sent again after an acknowledgement with payload {{}}: any payload acknowledges (D11)"),
                ),
                None => self.checklist.pass(
                    &rule::NOTIF_10,
                    format!("{} acknowledged with payload {{}}: not sent again within {} s", second.id, resend_wait.as_secs()),
                ),
            }
        }
    }

    /// R-KEEPALIVE-2: the service's own pings.
    async fn service_pings(&mut self, peer: &mut Peer) {
        let started = self.session.started.unwrap_or_else(Instant::now);
        let deadline = started + self.options.keepalive_rate + self.options.reply_timeout;
        while self.session.pings == 0 {
            match self.pump(peer, deadline).await {
                None | Some(Event::Closed(_) | Event::Lost(_)) => break,
                Some(_) => {}
            }
        }
        match self.session.first_ping {
            Some(after) => self.checklist.pass(
                &rule::KEEPALIVE_2,
                format!(
                    "first ping {:.1} s after CONNECT was accepted ({} pings so far)",
                    after.as_secs_f64(),
                    self.session.pings
                ),
            ),
            None if peer.ended() => {
                self.checklist.skip(&rule::KEEPALIVE_2, "not exercised: the connection ended first")
            }
            None => self.checklist.fail(
                &rule::KEEPALIVE_2,
                format!(
                    "no ping within {:.0} s (--keepalive-rate plus a margin)",
                    (deadline - started).as_secs_f64()
                ),
            ),
        }
    }

    /// R-KEEPALIVE-3: no pongs until the service closes.
    async fn missed_pongs(&mut self, mut peer: Peer) {
        if peer.ended() {
            self.checklist.skip(&rule::KEEPALIVE_3, "not exercised: the connection had already ended");
            return;
        }
        peer.set_answer_pings(false).await;
        self.session.pings_unanswered = 0;
        let allowed = self.options.max_pong_miss;
        let wait = self.options.keepalive_rate * (allowed + 1) + self.options.reply_timeout;
        let deadline = Instant::now() + wait;
        loop {
            match self.pump(&mut peer, deadline).await {
                Some(event @ (Event::Closed(_) | Event::Lost(_))) => {
                    let unanswered = self.session.pings_unanswered;
                    if unanswered >= allowed as usize {
                        self.checklist.pass(
                            &rule::KEEPALIVE_3,
                            format!(
                                "after {unanswered} pings without a pong the service {}",
                                describe_end(&event)
                            ),
                        );
                    } else {
                        self.checklist.fail(
                            &rule::KEEPALIVE_3,
                            format!(
                                "the service {} after only {unanswered} unanswered pings (--max-pong-miss {allowed})",
                                describe_end(&event)
                            ),
                        );
                    }
                    return;
                }
                Some(_) => {}
                None => {
                    self.checklist.fail(
                        &rule::KEEPALIVE_3,
                        format!(
                            "still open {} s and {} pings after the kit stopped answering them (--max-pong-miss {allowed})",
                            wait.as_secs(),
                            self.session.pings_unanswered
                        ),
                    );
                    peer.close_quietly(1000, "nbwss conformance").await;
                    self.connection_ended("the kit's close after unanswered pings");
                    return;
                }
            }
        }
    }

    /// Waits for the service to close with one of `codes` after an input it must not accept. With
    /// `may_ignore`, a service that keeps the connection and still answers a COMMAND passes too
    /// (`exception.ignoreDecoder=true`, D8).
    async fn expect_close(
        &mut self,
        mut peer: Peer,
        rule: &Rule,
        codes: &[u16],
        what: &str,
        may_ignore: bool,
    ) -> Ending {
        let expected: Vec<String> = codes.iter().map(u16::to_string).collect();
        let expected = expected.join(" or ");
        let deadline = Instant::now() + self.options.reply_timeout;
        loop {
            match self.pump(&mut peer, deadline).await {
                Some(Event::Closed(Some((code, reason)))) if codes.contains(&code) => {
                    let reason = if reason.is_empty() { String::new() } else { format!(" ({reason})") };
                    self.checklist.pass(rule, format!("{what}: closed with {code}{reason}"));
                    return Ending::Ended;
                }
                Some(event @ (Event::Closed(_) | Event::Lost(_))) => {
                    self.checklist.fail(
                        rule,
                        format!("{what}: the service {}, not with {expected}", describe_end(&event)),
                    );
                    return Ending::Ended;
                }
                Some(_) => {}
                None => break,
            }
        }
        if may_ignore {
            let probe = messages::command_text(Method::Get, &self.options.get_uri);
            if peer.send_text(probe.text).await.is_ok() {
                let deadline = Instant::now() + self.options.command_timeout;
                while !self.session.responses.contains_key(&probe.id) {
                    match self.pump(&mut peer, deadline).await {
                        None | Some(Event::Closed(_) | Event::Lost(_)) => break,
                        Some(_) => {}
                    }
                }
                if self.session.responses.contains_key(&probe.id) {
                    self.checklist.pass(
                        rule,
                        format!("{what}: ignored, the connection kept and a COMMAND still answered (exception.ignoreDecoder=true)"),
                    );
                    return Ending::Kept(Box::new(peer));
                }
            }
            self.checklist
                .fail(rule, format!("{what}: neither closed with {expected} nor still answering COMMANDs"));
        } else {
            self.checklist.fail(
                rule,
                format!(
                    "{what}: the connection stayed open {:?}; expected a close with {expected}",
                    self.options.reply_timeout
                ),
            );
        }
        peer.close_quietly(1000, "nbwss conformance").await;
        self.connection_ended(format!("the kit's close after {what}"));
        Ending::Ended
    }

    /// R-CLOSE-4: the kit closes; the service answers with a close frame.
    async fn orderly_close(&mut self, mut peer: Peer) {
        if let Err(error) = peer.send_close(1000, "nbwss conformance: done").await {
            self.checklist.fail(&rule::CLOSE_4, error);
            return;
        }
        let deadline = Instant::now() + self.options.reply_timeout;
        loop {
            match self.pump(&mut peer, deadline).await {
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
                        format!("the service {} instead of answering the close frame", describe_end(&event)),
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
}

/// What the kit sends on a connection that must then close.
enum Input {
    Text(&'static str),
    Binary,
}

fn remove(value: &mut Value, key: &str) {
    if let Some(payload) = value.get_mut("payload").and_then(Value::as_object_mut) {
        payload.remove(key);
    }
}

/// Runs the notify command once; says how it ended.
async fn run_notify_command(command: String, round: u32) -> String {
    #[cfg(unix)]
    let mut process = tokio::process::Command::new("sh");
    #[cfg(unix)]
    process.arg("-c").arg(&command);
    #[cfg(not(unix))]
    let mut process = tokio::process::Command::new("cmd");
    #[cfg(not(unix))]
    process.arg("/C").arg(&command);
    process.env("NBWSS_CONFORMANCE_ROUND", round.to_string()).stdin(std::process::Stdio::null());
    match process.output().await {
        Ok(output) if output.status.success() => "ran (exit 0)".to_owned(),
        Ok(output) => format!(
            "failed ({}): {}",
            output.status,
            checks::clip(String::from_utf8_lossy(&output.stderr).trim())
        ),
        Err(error) => format!("could not start ({error})"),
    }
}

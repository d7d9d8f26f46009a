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
//!    a binary message, and one the kit closes itself.
//!
//! Notifications come from the primary server: the operator runs a backup while the kit waits, or gives a
//! command (`--notify-cmd`) the kit runs whenever it needs one (it is run with `NBWSS_CONFORMANCE_ROUND` set
//! to 1, 2, ...).

mod commands;
mod connect;
mod keepalive;
mod listener;
mod notifications;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nbwss_protocol::{EndpointDetails, Method, Secret};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::checklist::Checklist;
use crate::checks::{self, Incoming};
use crate::closing::{self, Closing};
use crate::error::SetupError;
use crate::messages;
use crate::peer::{describe_end, Event, Peer};
use crate::report::Report;
use crate::rule::{self, Mode, Rule};
use crate::tls::Identity;
use crate::Progress;
use listener::{accept_loop, random_token, Accepted};

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
        closing::orderly_close(&self.checklist, peer, self.options.reply_timeout, "service").await;
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
        let waited = self.options.reply_timeout;
        let closing = closing::wait_for_close(&mut peer, Instant::now() + waited, codes, |_| false).await;
        if matches!(closing, Closing::Open) && may_ignore {
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
            let expected = closing::expected_codes(codes);
            self.checklist
                .fail(rule, format!("{what}: neither closed with {expected} nor still answering COMMANDs"));
        } else {
            closing::record(&self.checklist, rule, what, "service", codes, &closing, waited);
        }
        match closing {
            Closing::Open | Closing::Accepted(_) => {
                peer.close_quietly(1000, "nbwss conformance").await;
                self.connection_ended(format!("the kit's close after {what}"));
            }
            Closing::Expected(..) | Closing::Other(_) => {
                self.connection_ended(format!("the service's close after {what}"))
            }
        }
        Ending::Ended
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_bind_is_the_documented_one() {
        assert_eq!(DEFAULT_BIND.parse::<SocketAddr>().unwrap(), ServiceOptions::default().bind);
    }
}

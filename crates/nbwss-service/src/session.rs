//! One connection to one WebSocket server: open (TCP, optional proxy, pinned TLS, WebSocket), CONNECT
//! handshake (D5), then serve: a reader that routes messages, a writer that drains a bounded channel,
//! keepalive pings (D18) and COMMANDs relayed concurrently (D9). Whichever side ends first ends the session;
//! running COMMAND tasks live in a `JoinSet` owned by the session, so nothing outlives it.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use nbwss_protocol::{
    Body, CloseReason, CloseStatus, Codec, CommandResponse, ConnectRequest, DecodeError, DecodeErrorKind,
    Message, MessageType, Properties, SubType,
};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::proxy::Connector;
use crate::relay::Relay;
use crate::store::Server;
use crate::tls::PinnedVerifier;

/// Bytes read from the WebSocket connection at a time.
const WEBSOCKET_READ_BUFFER_BYTES: usize = 4 * 1024;

/// A WebSocket over TLS over TCP.
pub type WsStream = WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// Messages waiting to be written, per connection.
const OUTBOUND_CAPACITY: usize = 256;
/// Longest error detail quoted back to the endpoint in a 400.
const MAX_DETAIL_BYTES: usize = 1024;

/// What every session needs.
#[derive(Debug)]
pub struct SessionContext {
    /// Runs COMMANDs.
    pub relay: Arc<Relay>,
    /// The service properties.
    pub properties: Properties,
    /// Outbound TCP (direct or through a proxy).
    pub connector: Connector,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Live sessions, for senders of requests (notifications).
    pub sessions: Arc<Sessions>,
}

impl SessionContext {
    fn codec(&self) -> Codec {
        Codec::new(self.properties.message_max_bytes)
    }
}

/// Why a connection could not be established, or ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// Why, as `list` reports it in words.
    pub cause: CloseReason,
    /// The closeStatus reported by `list`.
    pub close_status: CloseStatus,
    /// For logs and the administrator.
    pub reason: String,
    /// The certificate the endpoint presented instead of the pinned one (DER), for `CertificateChanged`.
    pub presented_certificate: Option<Vec<u8>>,
}

impl Ended {
    fn new(cause: CloseReason, close_status: CloseStatus, reason: impl Into<String>) -> Self {
        Self { cause, close_status, reason: reason.into(), presented_certificate: None }
    }
}

/// The answer to a request: the decoded RESPONSE, or why a RESPONSE carrying the request's `id` could not
/// be decoded whole. Either way the request was answered (D11: matched by `id` before the payload is judged).
pub type Response = Result<Message, DecodeError>;

/// A handle on a live, established session: sends requests and receives their responses by `id`.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    /// The WebSocket server.
    pub host_name: String,
    /// Its group.
    pub group_id: String,
    outbound: mpsc::Sender<WsMessage>,
    pending: Arc<Mutex<HashMap<String, oneshot::Sender<Response>>>>,
    codec: Codec,
    closed: CancellationToken,
}

/// Why a request could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The session is gone.
    #[error("the connection is closed")]
    Closed,
    /// The encoded message is larger than `message.maxBytes`; it was not sent.
    #[error("the message is {size} bytes, more than message.maxBytes ({limit} bytes); not sent")]
    TooBig {
        /// Encoded size.
        size: usize,
        /// `message.maxBytes`.
        limit: usize,
    },
}

impl SessionHandle {
    /// Sends a request; the receiver gets the response with the same `id` (or is dropped when the
    /// session ends). Sending again with the same `id` replaces the earlier waiter.
    pub async fn request(&self, message: &Message) -> Result<oneshot::Receiver<Response>, RequestError> {
        let text = self.codec.encode(message);
        // The endpoint would close the connection for it (D4): this message fails alone instead.
        if text.len() > self.codec.max_message_bytes() {
            return Err(RequestError::TooBig { size: text.len(), limit: self.codec.max_message_bytes() });
        }
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(message.id.clone(), tx);
        if self.outbound.send(WsMessage::text(text)).await.is_err() {
            lock(&self.pending).remove(&message.id);
            return Err(RequestError::Closed);
        }
        Ok(rx)
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Completes when the session ends.
    pub async fn closed(&self) {
        self.closed.cancelled().await;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Established sessions, at most one per group.
#[derive(Debug, Default)]
pub struct Sessions {
    by_group: Mutex<HashMap<String, SessionHandle>>,
}

impl Sessions {
    /// Every established session.
    pub fn connected(&self) -> Vec<SessionHandle> {
        lock(&self.by_group).values().cloned().collect()
    }

    /// The established session of a group.
    pub fn of_group(&self, group_id: &str) -> Option<SessionHandle> {
        lock(&self.by_group).get(group_id).cloned()
    }

    fn insert(&self, handle: SessionHandle) {
        lock(&self.by_group).insert(handle.group_id.clone(), handle);
    }

    fn remove(&self, handle: &SessionHandle) {
        let mut map = lock(&self.by_group);
        if map.get(&handle.group_id).is_some_and(|current| current.closed.is_cancelled()) {
            map.remove(&handle.group_id);
        }
    }
}

/// Host and port of a `wss://` URL.
pub fn host_and_port(url: &str) -> Result<(String, u16), String> {
    let parsed = url::Url::parse(url).map_err(|error| format!("'{url}' is not a valid URL: {error}"))?;
    if parsed.scheme() != "wss" {
        return Err(format!("'{url}' is not a wss:// URL (ws:// is not supported)"));
    }
    let host = parsed.host_str().ok_or_else(|| format!("'{url}' names no host"))?.to_owned();
    Ok((host, parsed.port_or_known_default().unwrap_or(443)))
}

/// Opens TCP (through the proxy when one applies) and TLS with `verifier`; the TLS handshake may take
/// `handshake_timeout` (`connect.handshakeTimeout`).
pub async fn open_tls(
    connector: &Connector,
    url: &str,
    verifier: &Arc<PinnedVerifier>,
    handshake_timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Ended> {
    let invalid_url = |reason: String| Ended::new(CloseReason::InvalidUrl, CloseStatus::CannotAccept, reason);
    let (host, port) = host_and_port(url).map_err(invalid_url)?;
    let tcp = connector.connect(&host, port).await.map_err(|error| {
        Ended::new(CloseReason::EndpointUnreachable, CloseStatus::ClosedAbnormally, format!("{error:#}"))
    })?;
    let failed = |reason: String| {
        Ended::new(CloseReason::TlsHandshakeFailed, CloseStatus::TlsHandshakeFailure, reason)
    };
    let config = verifier.client_config().map_err(|error| failed(format!("{error:#}")))?;
    let name = crate::tls::server_name(&host).map_err(|error| invalid_url(error.to_string()))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    match tokio::time::timeout(handshake_timeout, connector.connect(name, tcp)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(error)) => Err(failed(format!("TLS handshake with {host}:{port} failed: {error}"))),
        Err(_) => Err(Ended::new(
            CloseReason::TlsHandshakeTimedOut,
            CloseStatus::TlsHandshakeFailure,
            format!(
                "{host}:{port} accepted TCP but did not finish the TLS handshake within {} s (connect.handshakeTimeout)",
                handshake_timeout.as_secs_f64()
            ),
        )),
    }
}

/// Opens the WebSocket to a saved server, accepting only its pinned certificate.
pub async fn open(ctx: &SessionContext, server: &Server) -> Result<WsStream, Ended> {
    let verifier = PinnedVerifier::pinned(server.certificate_der.clone());
    let timeout = ctx.properties.connect_handshake_timeout;
    let tls = open_tls(&ctx.connector, &server.url, &verifier, timeout).await.map_err(|mut ended| {
        if let Some(seen) = verifier.seen().filter(|seen| *seen != server.certificate_der) {
            ended.cause = CloseReason::CertificateChanged;
            ended.reason = format!(
                "{} presented a certificate (SHA-256 {}) other than the pinned one (SHA-256 {}); review and accept it with `nbwss servers update {}`",
                server.url,
                crate::tls::sha256_fingerprint(&seen),
                crate::tls::sha256_fingerprint(&server.certificate_der),
                server.host_name,
            );
            ended.presented_certificate = Some(seen);
        }
        ended
    })?;
    let limit = ctx.properties.message_max_bytes.saturating_add(64 * 1024);
    // tungstenite zero-fills its whole read buffer on every read: 4 KiB instead of its default 128 KiB takes
    // a 128 KiB memset off every frame received (a larger message still grows the buffer as it needs).
    let config = WebSocketConfig::default()
        .read_buffer_size(WEBSOCKET_READ_BUFFER_BYTES)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    let upgrade_failed = |reason: String| {
        Ended::new(CloseReason::WebSocketUpgradeFailed, CloseStatus::ClosedAbnormally, reason)
    };
    match tokio::time::timeout(
        timeout,
        tokio_tungstenite::client_async_with_config(server.url.as_str(), tls, Some(config)),
    )
    .await
    {
        Ok(Ok((ws, _response))) => Ok(ws),
        Ok(Err(error)) => {
            Err(upgrade_failed(format!("WebSocket handshake with {} failed: {error}", server.url)))
        }
        Err(_) => Err(upgrade_failed(format!(
            "WebSocket handshake with {} timed out after {} s (connect.handshakeTimeout)",
            server.url,
            timeout.as_secs_f64()
        ))),
    }
}

/// How a decoder error is answered: the close status, or `None` when it is ignored.
fn decoder_close(ctx: &SessionContext, error: &DecodeError) -> Option<CloseStatus> {
    match error.kind {
        DecodeErrorKind::TooBig { .. } => Some(CloseStatus::TooBig),
        _ if ctx.properties.ignore_decoder_exceptions => None,
        DecodeErrorKind::NotJson => Some(CloseStatus::NotConsistent),
        DecodeErrorKind::NotEnvelope | DecodeErrorKind::Invalid => Some(CloseStatus::ProtocolError),
    }
}

async fn send_close(ws: &mut WsStream, status: &CloseStatus, reason: &str) {
    if let Some(code) = status.code().filter(|code| *code != 1006 && *code != 1005 && *code != 1015) {
        let frame = CloseFrame { code: CloseCode::from(code), reason: truncate(reason, 120).into() };
        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(Some(frame))).await;
    }
}

fn truncate(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

fn peer_close(frame: Option<&CloseFrame>) -> Ended {
    match frame {
        Some(frame) => Ended::new(
            CloseReason::ClosedByEndpoint,
            CloseStatus::from_code(u16::from(frame.code)),
            format!("the endpoint closed the connection ({} {})", u16::from(frame.code), frame.reason),
        ),
        None => Ended::new(
            CloseReason::ClosedByEndpoint,
            CloseStatus::NoStatusCode,
            "the endpoint closed the connection without a status",
        ),
    }
}

fn read_error(error: &tungstenite::Error) -> Ended {
    match error {
        tungstenite::Error::Capacity(_) => Ended::new(
            CloseReason::MessageTooBig,
            CloseStatus::TooBig,
            format!("message too big (message.maxBytes): {error}"),
        ),
        _ => lost(format!("connection lost: {error}")),
    }
}

fn lost(reason: impl Into<String>) -> Ended {
    Ended::new(CloseReason::ConnectionLost, CloseStatus::ClosedAbnormally, reason)
}

/// The cause of a close for an undecodable message.
fn undecodable(status: &CloseStatus) -> CloseReason {
    if *status == CloseStatus::TooBig {
        CloseReason::MessageTooBig
    } else {
        CloseReason::ProtocolError
    }
}

/// Sends CONNECT with the saved token and waits for a matching `valid: true` (D5).
pub async fn handshake(ctx: &SessionContext, server: &Server, ws: &mut WsStream) -> Result<(), Ended> {
    let codec = ctx.codec();
    let request = Message::new(Body::ConnectRequest(ConnectRequest { token: server.token.clone() }));
    let text = codec.encode(&request);
    if text.len() > codec.max_message_bytes() {
        // The endpoint would refuse it by closing (D4): say why instead of sending it.
        return Err(Ended::new(
            CloseReason::MessageTooBig,
            CloseStatus::CannotAccept,
            format!(
                "the saved token makes a {}-byte CONNECT, more than message.maxBytes ({} bytes)",
                text.len(),
                codec.max_message_bytes()
            ),
        ));
    }
    if let Err(error) = ws.send(WsMessage::text(text)).await {
        return Err(lost(format!("cannot send CONNECT: {error}")));
    }
    let deadline = tokio::time::Instant::now() + ctx.properties.connect_response_timeout;
    loop {
        let next = match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(next) => next,
            Err(_) => {
                return Err(Ended::new(
                    CloseReason::ConnectTimedOut,
                    CloseStatus::ClosedAbnormally,
                    format!(
                        "no CONNECT RESPONSE within {} s (connect.responseTimeout)",
                        ctx.properties.connect_response_timeout.as_secs_f64()
                    ),
                ))
            }
        };
        let text = match next {
            Some(Ok(WsMessage::Text(text))) => text,
            Some(Ok(WsMessage::Binary(_))) => {
                if ctx.properties.ignore_decoder_exceptions {
                    tracing::warn!(host = %server.host_name, "binary message ignored (exception.ignoreDecoder=true)");
                    continue;
                }
                let ended = Ended::new(
                    CloseReason::ProtocolError,
                    CloseStatus::ProtocolError,
                    "binary message (NBWSS messages are text)",
                );
                send_close(ws, &ended.close_status, &ended.reason).await;
                return Err(ended);
            }
            Some(Ok(WsMessage::Close(frame))) => return Err(peer_close(frame.as_ref())),
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(read_error(&error)),
            None => return Err(lost("the endpoint closed the connection during CONNECT")),
        };
        match codec.decode(&text) {
            Ok(Message { id, body: Body::ConnectResponse(response), .. }) => {
                if id != request.id {
                    return Err(Ended::new(
                        CloseReason::ConnectResponseInvalid,
                        CloseStatus::ClosedAbnormally,
                        format!("CONNECT RESPONSE carries id {id}, not the request's {}", request.id),
                    ));
                }
                if response.valid {
                    return Ok(());
                }
                let ended = Ended::new(
                    CloseReason::TokenRefused,
                    CloseStatus::ViolatedPolicy,
                    "the endpoint refused the token (valid: false): compare the token's fingerprint (`nbwss servers show`) with the endpoint's",
                );
                send_close(ws, &ended.close_status, &ended.reason).await;
                return Err(ended);
            }
            Ok(other) => {
                tracing::warn!(host = %server.host_name, message = %other.summary(), "ignored: received before the CONNECT RESPONSE");
            }
            Err(error) => match decoder_close(ctx, &error) {
                None => {
                    tracing::warn!(host = %server.host_name, %error, "undecodable message ignored (exception.ignoreDecoder=true)")
                }
                Some(status) => {
                    let ended = if error.response_id() == Some(request.id.as_str()) {
                        Ended::new(
                            CloseReason::ConnectResponseInvalid,
                            status,
                            format!("the CONNECT RESPONSE cannot be read: {error}"),
                        )
                    } else {
                        Ended::new(undecodable(&status), status, format!("undecodable message: {error}"))
                    };
                    send_close(ws, &ended.close_status, &ended.reason).await;
                    return Err(ended);
                }
            },
        }
    }
}

/// Serves an established connection until it ends, `cancel` fires (the server was deactivated, deleted or
/// changed: close 1000) or `shutdown` fires (close 1001).
pub async fn serve(
    ctx: &Arc<SessionContext>,
    server: &Server,
    ws: WsStream,
    cancel: &CancellationToken,
    shutdown: &CancellationToken,
) -> Ended {
    let (sink, stream) = ws.split();
    let (out_tx, out_rx) = mpsc::channel::<WsMessage>(OUTBOUND_CAPACITY);
    let closed = CancellationToken::new();
    let handle = SessionHandle {
        host_name: server.host_name.clone(),
        group_id: server.group_id.clone(),
        outbound: out_tx.clone(),
        pending: Arc::new(Mutex::new(HashMap::new())),
        codec: ctx.codec(),
        closed: closed.clone(),
    };
    ctx.sessions.insert(handle.clone());

    let mut reader = Reader::new(ctx, server, &handle, out_tx);
    let writer = write_queued(sink, out_rx);
    tokio::pin!(writer);
    let ended = tokio::select! {
        ended = reader.run(stream, cancel, shutdown) => {
            // After a Close frame was queued, let the writer flush it, briefly.
            if reader.sent_close {
                let _ = tokio::time::timeout(Duration::from_secs(2), &mut writer).await;
            }
            ended
        }
        failed = &mut writer => failed.unwrap_or_else(|| lost("writer stopped")),
    };
    closed.cancel();
    // Waiters for responses that will never come learn it now (their receivers see the sender dropped).
    lock(&handle.pending).clear();
    ctx.sessions.remove(&handle);
    ended
}

/// The writing half: drains the channel; stops after writing a Close frame (`None`) or on a write error.
/// Whatever is queued goes out with one flush (one TLS write for a burst of answers, not one per message).
async fn write_queued(
    mut sink: futures_util::stream::SplitSink<WsStream, WsMessage>,
    mut out_rx: mpsc::Receiver<WsMessage>,
) -> Option<Ended> {
    while let Some(first) = out_rx.recv().await {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            if matches!(message, WsMessage::Close(_)) {
                // After the endpoint's own Close, sending fails but flushing writes the queued reply.
                if sink.send(message).await.is_err() {
                    let _ = sink.flush().await;
                }
                let _ = sink.close().await;
                return None;
            }
            if let Err(error) = sink.feed(message).await {
                return Some(lost(format!("cannot write: {error}")));
            }
            next = out_rx.try_recv().ok();
        }
        if let Err(error) = sink.flush().await {
            return Some(lost(format!("cannot write: {error}")));
        }
    }
    None
}

/// The reading half of an established connection, one method per event: the service stopping or the
/// server changing, a keepalive tick, a frame read, a message decoded or not. Each returns
/// `ControlFlow::Break` with how the session ended, or `Continue`.
struct Reader<'a> {
    ctx: &'a Arc<SessionContext>,
    server: &'a Server,
    handle: &'a SessionHandle,
    codec: Codec,
    out_tx: mpsc::Sender<WsMessage>,
    /// The COMMANDs that may run at once (`command.maxInFlight`, D9).
    in_flight: Arc<Semaphore>,
    /// The running COMMANDs: owned by the session, so none outlives it.
    commands: JoinSet<()>,
    /// The unanswered keepalive ping: when it was sent and its sequence number (its payload).
    ping_sent: Option<(Instant, u64)>,
    /// Keepalive ticks in a row on which the previous ping was still unanswered.
    missed: u32,
    sequence: u64,
    /// A Close frame was queued: the writer is given a moment to send it.
    sent_close: bool,
}

impl<'a> Reader<'a> {
    fn new(
        ctx: &'a Arc<SessionContext>,
        server: &'a Server,
        handle: &'a SessionHandle,
        out_tx: mpsc::Sender<WsMessage>,
    ) -> Self {
        Self {
            ctx,
            server,
            handle,
            codec: ctx.codec(),
            out_tx,
            in_flight: Arc::new(Semaphore::new(ctx.properties.command_max_in_flight)),
            commands: JoinSet::new(),
            ping_sent: None,
            missed: 0,
            sequence: 0,
            sent_close: false,
        }
    }

    /// Reads and routes until the session ends.
    async fn run(
        &mut self,
        mut stream: futures_util::stream::SplitStream<WsStream>,
        cancel: &CancellationToken,
        shutdown: &CancellationToken,
    ) -> Ended {
        let rate = self.ctx.properties.keep_alive_scheduled_rate;
        let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + rate, rate);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let flow = tokio::select! {
                () = cancel.cancelled() => ControlFlow::Break(self.on_cancel(shutdown).await),
                Some(_) = self.commands.join_next(), if !self.commands.is_empty() => ControlFlow::Continue(()),
                _ = keepalive.tick() => self.on_keepalive_tick().await,
                next = stream.next() => self.on_frame(next).await,
            };
            if let ControlFlow::Break(ended) = flow {
                return ended;
            }
        }
    }

    /// Queues a Close frame (for codes that may be sent) and says how the session ended.
    async fn close(&mut self, cause: CloseReason, status: CloseStatus, reason: String) -> Ended {
        if let Some(code) = status.code().filter(|code| *code != 1006 && *code != 1005 && *code != 1015) {
            self.sent_close = true;
            let frame = CloseFrame { code: CloseCode::from(code), reason: truncate(&reason, 120).into() };
            let _ = self.out_tx.send(WsMessage::Close(Some(frame))).await;
        }
        Ended::new(cause, status, reason)
    }

    /// The service is stopping (1001) or the server was deactivated, deleted or changed (1000).
    async fn on_cancel(&mut self, shutdown: &CancellationToken) -> Ended {
        if shutdown.is_cancelled() {
            self.close(CloseReason::ServiceStopping, CloseStatus::GoingAway, "the service is stopping".into())
                .await
        } else {
            self.close(
                CloseReason::ServerChanged,
                CloseStatus::NormalClosure,
                "the WebSocket server was deactivated, deleted or changed".into(),
            )
            .await
        }
    }

    /// Sends the next ping; ends the session after `keepAlive.maxPongMissAllowed` unanswered ones (D18).
    async fn on_keepalive_tick(&mut self) -> ControlFlow<Ended> {
        if self.ping_sent.is_some() {
            self.missed += 1;
            if self.missed >= self.ctx.properties.keep_alive_max_pong_miss_allowed {
                return ControlFlow::Break(Ended::new(
                    CloseReason::KeepaliveTimedOut,
                    CloseStatus::ClosedAbnormally,
                    format!("{} keepalive pings without a pong (keepAlive.maxPongMissAllowed)", self.missed),
                ));
            }
        }
        self.sequence += 1;
        self.ping_sent = Some((Instant::now(), self.sequence));
        if self.out_tx.send(WsMessage::Ping(self.sequence.to_be_bytes().to_vec().into())).await.is_err() {
            return ControlFlow::Break(lost("writer stopped"));
        }
        ControlFlow::Continue(())
    }

    /// One frame read from the endpoint (or the end of the stream).
    async fn on_frame(&mut self, next: Option<Result<WsMessage, tungstenite::Error>>) -> ControlFlow<Ended> {
        match next {
            Some(Ok(WsMessage::Text(text))) => self.on_text(&text).await,
            Some(Ok(WsMessage::Pong(payload))) => {
                if let Some((sent, expected)) = self.ping_sent {
                    if payload.as_ref() == expected.to_be_bytes() {
                        self.ctx.metrics.ping_rtt.observe(sent.elapsed().as_secs_f64());
                        self.ping_sent = None;
                        self.missed = 0;
                    }
                }
                ControlFlow::Continue(())
            }
            Some(Ok(WsMessage::Binary(_))) => {
                if self.ctx.properties.ignore_decoder_exceptions {
                    tracing::warn!(host = %self.server.host_name, "binary message ignored (exception.ignoreDecoder=true)");
                    return ControlFlow::Continue(());
                }
                ControlFlow::Break(
                    self.close(
                        CloseReason::ProtocolError,
                        CloseStatus::ProtocolError,
                        "binary message (NBWSS messages are text)".into(),
                    )
                    .await,
                )
            }
            Some(Ok(WsMessage::Close(frame))) => {
                // Let the writer answer the close handshake.
                self.sent_close = true;
                let _ = self.out_tx.send(WsMessage::Close(None)).await;
                ControlFlow::Break(peer_close(frame.as_ref()))
            }
            Some(Ok(_)) => ControlFlow::Continue(()),
            Some(Err(error)) => {
                let ended = read_error(&error);
                if ended.close_status == CloseStatus::TooBig {
                    return ControlFlow::Break(
                        self.close(ended.cause, ended.close_status, ended.reason).await,
                    );
                }
                ControlFlow::Break(ended)
            }
            None => ControlFlow::Break(lost("the connection was lost")),
        }
    }

    /// A text message: routed when it decodes, judged when it does not.
    async fn on_text(&mut self, text: &str) -> ControlFlow<Ended> {
        match self.codec.decode(text) {
            Ok(message) => {
                route(
                    self.ctx,
                    self.server,
                    self.handle,
                    message,
                    &self.out_tx,
                    &self.in_flight,
                    &mut self.commands,
                );
                ControlFlow::Continue(())
            }
            Err(error) => self.on_undecodable(error).await,
        }
    }

    /// A message that does not decode: a response still answers its request by id (D11), a COMMAND with an
    /// id is answered 400, an invalid message is dropped, and the rest closes the connection unless
    /// `exception.ignoreDecoder` is set.
    async fn on_undecodable(&mut self, error: DecodeError) -> ControlFlow<Ended> {
        let host = &self.server.host_name;
        if let Some(id) = error.response_id() {
            tracing::warn!(%host, id, %error, "malformed response matched by its id (D11)");
            if let Some(waiter) = lock(&self.handle.pending).remove(id) {
                let _ = waiter.send(Err(error));
            }
            return ControlFlow::Continue(());
        }
        if let (DecodeErrorKind::Invalid, Some(id), Some((MessageType::Command, SubType::Request))) =
            (&error.kind, &error.id, error.message_type)
        {
            // The rule may quote the offending input: capped, so the answer always fits in a message.
            let detail = truncate(&error.field.to_string(), MAX_DETAIL_BYTES);
            let response = CommandResponse::service_error(400, "Malformed COMMAND.", vec![detail]);
            self.ctx.metrics.responded(400, true);
            let reply = Message::with_id(id.clone(), Body::CommandResponse(response));
            let _ = self.out_tx.send(WsMessage::text(self.codec.encode(&reply))).await;
            return ControlFlow::Continue(());
        }
        if let DecodeErrorKind::Invalid = error.kind {
            tracing::warn!(%host, %error, "invalid message dropped");
            return ControlFlow::Continue(());
        }
        match decoder_close(self.ctx, &error) {
            None => {
                tracing::warn!(%host, %error, "undecodable message ignored (exception.ignoreDecoder=true)");
                ControlFlow::Continue(())
            }
            Some(status) => ControlFlow::Break(
                self.close(undecodable(&status), status, format!("undecodable message: {error}")).await,
            ),
        }
    }
}

/// Counts a COMMAND in flight for as long as it lives (also when its task is aborted).
struct InFlight(prometheus_client::metrics::gauge::Gauge);

impl InFlight {
    fn new(metrics: &Metrics) -> Self {
        metrics.commands_in_flight.inc();
        Self(metrics.commands_in_flight.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Handles one decoded message on an established connection.
fn route(
    ctx: &Arc<SessionContext>,
    server: &Server,
    handle: &SessionHandle,
    message: Message,
    out_tx: &mpsc::Sender<WsMessage>,
    in_flight: &Arc<Semaphore>,
    commands: &mut JoinSet<()>,
) {
    match message.body {
        Body::CommandRequest(request) => {
            let codec = ctx.codec();
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                let response = CommandResponse::service_error(
                    429,
                    "Too many COMMANDs in flight.",
                    vec![format!(
                        "at most {} COMMANDs run at once on a connection (command.maxInFlight)",
                        ctx.properties.command_max_in_flight
                    )],
                );
                ctx.metrics.responded(429, true);
                let reply = Message::with_id(message.id, Body::CommandResponse(response));
                // A full channel means the endpoint is not reading: dropping this answer is the bounded choice.
                let _ = out_tx.try_send(WsMessage::text(codec.encode(&reply)));
                return;
            };
            let ctx = ctx.clone();
            let out_tx = out_tx.clone();
            let endpoint = server.host_name.clone();
            commands.spawn(async move {
                let _permit = permit;
                let _in_flight = InFlight::new(&ctx.metrics);
                let text = ctx.relay.answer(&endpoint, &message.id, &request).await;
                let _ = out_tx.send(WsMessage::text(text)).await;
            });
        }
        Body::ConnectResponse(_) | Body::CommandResponse(_) | Body::NotificationResponse(_) => {
            let waiter = lock(&handle.pending).remove(&message.id);
            match waiter {
                Some(waiter) => {
                    let _ = waiter.send(Ok(message));
                }
                None => {
                    tracing::debug!(host = %server.host_name, message = %message.summary(), "response to no pending request")
                }
            }
        }
        Body::ConnectRequest(_) | Body::NotificationRequest(_) => {
            tracing::warn!(host = %server.host_name, message = %message.summary(), "ignored: the endpoint does not send this message");
        }
    }
}

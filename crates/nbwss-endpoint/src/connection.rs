//! One WebSocket connection from an NBWSS service: the CONNECT handshake, then a reader that routes
//! COMMAND RESPONSEs to waiting calls and stores-then-acknowledges NOTIFICATIONs, and a writer that drains
//! the session's queue and pings. Whichever ends first closes the session, which stops the other.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use axum::extract::ws::{self, CloseFrame, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use nbwss_protocol::{Body, CloseStatus, ConnectResponse, DecodeErrorKind, Message, MessageType, SubType};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::session::{CallFailure, Session};
use crate::state::AppState;
use crate::store::StoreOutcome;

/// Messages queued for one session's writer.
const OUTGOING_QUEUE: usize = 256;
/// Bytes read from the socket at a time. tungstenite's default (128 KiB) is zero-filled on every read, so
/// an idle connection kept 128 KiB resident; a larger message still grows the buffer as it needs.
const READ_BUFFER_BYTES: usize = 16 * 1024;

type Sink = SplitSink<WebSocket, ws::Message>;
type Stream = SplitStream<WebSocket>;

/// `GET {websocket_path}`: the WebSocket upgrade, refused early for addresses over the failed-CONNECT limit.
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !state.limiter.allows(remote.ip()) {
        state.metrics.connect_failure("rate_limited");
        tracing::warn!(%remote, "WebSocket connection refused: too many failed CONNECTs from this address");
        return ApiError::too_many_requests("too many failed CONNECT attempts from this address; try later")
            .into_response();
    }
    let limit = state.config.limits.max_message_bytes;
    let upgrade = upgrade.read_buffer_size(READ_BUFFER_BYTES);
    upgrade.max_message_size(limit).max_frame_size(limit).on_upgrade(move |socket| {
        let tracker = state.tracker.clone();
        tracker.track_future(serve(socket, remote, state))
    })
}

enum Incoming {
    Text(ws::Utf8Bytes),
    Binary,
    Pong,
    Ping,
    Closed,
    Error(String),
}

async fn next(stream: &mut Stream) -> Incoming {
    match stream.next().await {
        None | Some(Ok(ws::Message::Close(_))) => Incoming::Closed,
        Some(Ok(ws::Message::Text(text))) => Incoming::Text(text),
        Some(Ok(ws::Message::Binary(_))) => Incoming::Binary,
        Some(Ok(ws::Message::Ping(_))) => Incoming::Ping,
        Some(Ok(ws::Message::Pong(_))) => Incoming::Pong,
        Some(Err(error)) => Incoming::Error(error.to_string()),
    }
}

/// The close status for a read error: 1009 for a message over the size limit, 1002 otherwise.
fn read_error_status(error: &str) -> CloseStatus {
    if error.contains("Message too long") || error.contains("Space limit") {
        CloseStatus::TooBig
    } else {
        CloseStatus::ProtocolError
    }
}

async fn send_close(sink: &mut Sink, status: CloseStatus, reason: &str) {
    let frame = CloseFrame { code: status.code().unwrap_or(1000), reason: truncate(reason).into() };
    let _ = sink.send(ws::Message::Close(Some(frame))).await;
    let _ = sink.close().await;
}

/// A close reason fits in 123 bytes.
fn truncate(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

fn text(message: &Message, codec: &nbwss_protocol::Codec) -> ws::Message {
    ws::Message::Text(codec.encode(message).into())
}

async fn serve(socket: WebSocket, remote: SocketAddr, state: AppState) {
    let (mut sink, mut stream) = socket.split();
    let connect_timeout = state.config.connect_timeout();
    let deadline = tokio::time::Instant::now() + connect_timeout;
    // Phase 1: the first message must be CONNECT REQUEST.
    let first = loop {
        let incoming = tokio::select! {
            _ = state.cancel.cancelled() => {
                send_close(&mut sink, CloseStatus::GoingAway, "endpoint shutting down").await;
                return;
            }
            incoming = tokio::time::timeout_at(deadline, next(&mut stream)) => incoming,
        };
        match incoming {
            Err(_) => {
                refuse(&state, remote, "no_connect");
                send_close(&mut sink, CloseStatus::ViolatedPolicy, "no CONNECT REQUEST in time").await;
                return;
            }
            Ok(Incoming::Ping | Incoming::Pong) => continue,
            Ok(Incoming::Closed) => return,
            Ok(Incoming::Error(error)) => {
                send_close(&mut sink, read_error_status(&error), &error).await;
                return;
            }
            Ok(Incoming::Binary) => {
                refuse(&state, remote, "no_connect");
                send_close(&mut sink, CloseStatus::CannotAccept, "binary messages are not NBWSS messages")
                    .await;
                return;
            }
            Ok(Incoming::Text(text)) => break text,
        }
    };
    let request = match state.codec.decode(first.as_str()) {
        Ok(Message { id, body: Body::ConnectRequest(request), .. }) => (id, request),
        Ok(other) => {
            refuse(&state, remote, "no_connect");
            let reason = format!(
                "CONNECT must be the first message, not {} {}",
                other.message_type(),
                other.sub_type()
            );
            send_close(&mut sink, CloseStatus::ViolatedPolicy, &reason).await;
            return;
        }
        Err(error) => {
            refuse(&state, remote, "no_connect");
            send_close(&mut sink, decode_error_status(&error.kind), &error.to_string()).await;
            return;
        }
    };
    let (id, request) = request;
    let token = match state.store.check_token(&request.token) {
        Ok(token) => token,
        Err(error) => {
            tracing::error!(%remote, "cannot check a CONNECT token: {error:#}");
            send_close(&mut sink, CloseStatus::TryAgainLater, "endpoint store unavailable").await;
            return;
        }
    };
    let Some(token) = token else {
        refuse(&state, remote, "bad_token");
        tracing::warn!(%remote, "CONNECT refused: unknown token");
        let answer = Message::with_id(id, Body::ConnectResponse(ConnectResponse { valid: false }));
        if sink.send(text(&answer, &state.codec)).await.is_ok() {
            // The service closes after `valid: false`; give it a moment, then close ourselves.
            let _ = tokio::time::timeout(connect_timeout.min(std::time::Duration::from_secs(5)), async {
                while !matches!(next(&mut stream).await, Incoming::Closed | Incoming::Error(_)) {}
            })
            .await;
        }
        send_close(&mut sink, CloseStatus::ViolatedPolicy, "token refused").await;
        return;
    };

    let answer = Message::with_id(id, Body::ConnectResponse(ConnectResponse { valid: true }));
    if sink.send(text(&answer, &state.codec)).await.is_err() {
        return;
    }
    let (outgoing, queue) = mpsc::channel(OUTGOING_QUEUE);
    let session = Arc::new(Session::new(
        token.name,
        token.group_id,
        remote,
        outgoing,
        state.config.limits.max_in_flight_per_primary,
        state.cancel.child_token(),
    ));
    tracing::info!(primary = %session.name, group = %session.group_id, %remote, "primary server connected");
    state.registry.insert(session.clone());
    state.metrics.connections.inc();
    state.metrics.connected.inc();

    let missed_pongs = Arc::new(AtomicU32::new(0));
    let writer =
        state.tracker.spawn(write(sink, queue, session.clone(), state.clone(), missed_pongs.clone()));
    read(&mut stream, &session, &state, &missed_pongs).await;
    session.close(CloseStatus::NormalClosure, "connection closed");
    state.registry.remove(&session);
    state.metrics.connected.dec();
    let _ = writer.await;
    let (code, reason) = session.close_frame();
    tracing::info!(primary = %session.name, %remote, code, reason, "primary server disconnected");
}

fn refuse(state: &AppState, remote: SocketAddr, reason: &str) {
    state.limiter.record_failure(remote.ip());
    state.metrics.connect_failure(reason);
}

fn decode_error_status(kind: &DecodeErrorKind) -> CloseStatus {
    match kind {
        DecodeErrorKind::TooBig { .. } => CloseStatus::TooBig,
        DecodeErrorKind::NotJson => CloseStatus::NotConsistent,
        DecodeErrorKind::NotEnvelope | DecodeErrorKind::Invalid => CloseStatus::ProtocolError,
    }
}

/// The writer: drains the session's queue, pings every interval, and sends the close frame at the end.
async fn write(
    mut sink: Sink,
    mut queue: mpsc::Receiver<ws::Message>,
    session: Arc<Session>,
    state: AppState,
    missed_pongs: Arc<AtomicU32>,
) {
    let interval = state.config.ping_interval();
    let max_missed = state.config.keepalive.max_missed_pongs;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        tokio::select! {
            _ = session.closing.cancelled() => break,
            message = queue.recv() => {
                let Some(message) = message else { break };
                if sink.send(message).await.is_err() {
                    session.close(CloseStatus::ClosedAbnormally, "write failed");
                    return;
                }
            }
            _ = ticker.tick() => {
                if missed_pongs.fetch_add(1, Ordering::Relaxed) >= max_missed {
                    tracing::warn!(primary = %session.name, "no pong for {max_missed} pings: closing the session");
                    session.close(CloseStatus::GoingAway, "keepalive: no pong");
                    break;
                }
                if sink.send(ws::Message::Ping(b"nbwss".as_slice().into())).await.is_err() {
                    session.close(CloseStatus::ClosedAbnormally, "write failed");
                    return;
                }
            }
        }
    }
    // Flush what was queued before the close (acknowledgements above all), then close.
    while let Ok(message) = queue.try_recv() {
        if sink.send(message).await.is_err() {
            return;
        }
    }
    let (code, reason) = session.close_frame();
    let status = CloseStatus::from_code(code);
    send_close(&mut sink, status, &reason).await;
}

/// The reader: returns when the connection ends or the session is closed.
async fn read(stream: &mut Stream, session: &Arc<Session>, state: &AppState, missed_pongs: &AtomicU32) {
    loop {
        let incoming = tokio::select! {
            _ = session.closing.cancelled() => return,
            incoming = next(stream) => incoming,
        };
        match incoming {
            Incoming::Closed => return,
            Incoming::Error(error) => {
                tracing::warn!(primary = %session.name, "WebSocket read failed: {error}");
                session.close(read_error_status(&error), &error);
                return;
            }
            Incoming::Binary => {
                tracing::warn!(primary = %session.name, "binary message: closing (NBWSS messages are text)");
                session.close(CloseStatus::CannotAccept, "binary messages are not NBWSS messages");
                return;
            }
            Incoming::Ping => {}
            Incoming::Pong => missed_pongs.store(0, Ordering::Relaxed),
            Incoming::Text(text) => {
                if let Err((status, reason)) = handle(text.as_str(), session, state).await {
                    tracing::warn!(primary = %session.name, "closing the session: {reason}");
                    session.close(status, &reason);
                    return;
                }
            }
        }
    }
}

async fn handle(text: &str, session: &Arc<Session>, state: &AppState) -> Result<(), (CloseStatus, String)> {
    let message = match state.codec.decode(text) {
        Ok(message) => message,
        Err(error) => {
            return match (&error.kind, &error.id, error.message_type) {
                (DecodeErrorKind::Invalid, Some(id), Some((MessageType::Command, SubType::Response))) => {
                    tracing::warn!(primary = %session.name, %id, "invalid COMMAND RESPONSE: {error}");
                    session.deliver(id, Err(CallFailure::InvalidResponse(error.to_string())));
                    Ok(())
                }
                (DecodeErrorKind::Invalid, Some(_), Some((MessageType::Notification, SubType::Request))) => {
                    // Liberal reception: a record's content never keeps a notification unacknowledged.
                    store_and_acknowledge(text, session, state).await
                }
                (DecodeErrorKind::Invalid, Some(id), _) => {
                    // Not acknowledged: the service will send it again; the log says why it is refused.
                    tracing::error!(primary = %session.name, %id, "invalid message ignored: {error}");
                    Ok(())
                }
                (kind, _, _) => Err((decode_error_status(kind), error.to_string())),
            };
        }
    };
    match message.body {
        Body::CommandResponse(response) => {
            if !session.deliver(&message.id, Ok(response)) {
                tracing::debug!(primary = %session.name, id = %message.id, "COMMAND RESPONSE for no waiting call (timed out?)");
            }
        }
        Body::NotificationRequest(_) => return store_and_acknowledge(text, session, state).await,
        Body::ConnectRequest(_) => {
            tracing::warn!(primary = %session.name, "CONNECT on an established session ignored");
        }
        Body::ConnectResponse(_) | Body::CommandRequest(_) | Body::NotificationResponse(_) => {
            tracing::warn!(primary = %session.name, "unexpected {}: ignored", message.summary());
        }
    }
    Ok(())
}

/// Stores every record of a NOTIFICATION REQUEST as received, flagging those that do not conform, and only
/// then acknowledges it (D11, D12). Unknown keys, missing or oddly typed fields never keep a notification
/// unacknowledged; only a failed commit (or an unusable envelope) does, and the service sends it again.
async fn store_and_acknowledge(
    text: &str,
    session: &Arc<Session>,
    state: &AppState,
) -> Result<(), (CloseStatus, String)> {
    let received = match state.codec.decode_notification_request(text) {
        Ok(received) => received,
        Err(error) => {
            tracing::error!(primary = %session.name, id = ?error.id, "NOTIFICATION REQUEST ignored (not acknowledged): {error}");
            return Ok(());
        }
    };
    state.metrics.notification_messages.inc();
    for problem in &received.problems {
        tracing::warn!(primary = %session.name, id = %received.id, "notification does not conform: {problem}");
    }
    let store = state.store.clone();
    let (primary, id) = (session.name.clone(), received.id.clone());
    let records = received.records;
    let stored = tokio::task::spawn_blocking(move || store.store_notification(&primary, &id, &records)).await;
    match stored {
        Ok(Ok(StoreOutcome::Stored { records, nonconforming, last_cursor })) => {
            state.metrics.notification_records.inc_by(records as u64);
            state.metrics.nonconforming_records.inc_by(nonconforming as u64);
            state.feed.send_modify(|cursor| *cursor = (*cursor).max(last_cursor));
            if nonconforming > 0 {
                tracing::warn!(primary = %session.name, id = %received.id, records, nonconforming, "notification stored with records that do not conform (flagged in the feed)");
            }
            tracing::debug!(primary = %session.name, id = %received.id, records, "notification stored");
        }
        Ok(Ok(StoreOutcome::Duplicate)) => {
            state.metrics.notification_duplicates.inc();
            tracing::debug!(primary = %session.name, id = %received.id, "notification received again");
        }
        Ok(Err(error)) => {
            tracing::error!(primary = %session.name, id = %received.id, "cannot store a notification (not acknowledged): {error:#}");
            return Ok(());
        }
        Err(error) => {
            tracing::error!(primary = %session.name, "notification store task failed: {error}");
            return Ok(());
        }
    }
    // Committed: now, and only now, acknowledge (D11, D12).
    let ack = Message::with_id(received.id, Body::notification_ack());
    if session.outgoing.send(text_of(&ack, state)).await.is_err() {
        return Err((CloseStatus::ClosedAbnormally, "writer gone".to_owned()));
    }
    Ok(())
}

fn text_of(message: &Message, state: &AppState) -> ws::Message {
    text(message, &state.codec)
}

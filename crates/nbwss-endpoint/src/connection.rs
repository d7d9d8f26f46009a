//! One WebSocket connection from an NBWSS service: the upgrade (under the pending-connection caps), the
//! CONNECT handshake under the small pre-CONNECT limits, then a reader that routes COMMAND RESPONSEs to
//! waiting calls and hands NOTIFICATIONs to a committer, which stores them and only then acknowledges them,
//! and a writer that drains the session's queue and pings. Whichever of reader and writer ends first closes
//! the session, which stops the other.
//!
//! The committer stores the NOTIFICATION REQUESTs that arrived together (those waiting when it is ready)
//! in one transaction, one durable write for all, then acknowledges each; while it commits, the reader goes
//! on reading, so a service with several messages in flight gets them committed in groups.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use hyper_util::rt::TokioIo;
use nbwss_protocol::{
    Body, CloseStatus, ConnectResponse, DecodeErrorKind, Message, MessageType, ReceivedNotification, SubType,
};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Error as WsError, Message as Frame};
use tokio_tungstenite::WebSocketStream;

use crate::error::ApiError;
use crate::pending::{PendingRefusal, PendingSlot};
use crate::session::{CallFailure, Session};
use crate::state::AppState;
use crate::store::{token_hash, StoreOutcome};
use crate::websocket;

/// Messages queued for one session's writer.
const OUTGOING_QUEUE: usize = 256;
/// NOTIFICATION REQUESTs read and waiting for the session's committer; the reader waits when it is full.
const COMMIT_QUEUE: usize = 64;
/// Most NOTIFICATION REQUESTs committed in one transaction.
const COMMIT_GROUP: usize = 64;

/// Where the reader hands NOTIFICATION REQUESTs to the committer.
type CommitQueue = mpsc::Sender<ReceivedNotification>;
/// Longest an upgrade waits for a place among the connections waiting for CONNECT (never longer than half
/// of `limits.connect_timeout_ms`, within which the oldest of them must have sent CONNECT or gone): a
/// reconnecting fleet gets in as places free up.
const PENDING_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Seconds a client refused for the pending-connection caps is asked to wait.
const RETRY_AFTER_SECONDS: u32 = 5;

/// The upgraded socket of a WebSocket connection.
type Io = TokioIo<hyper::upgrade::Upgraded>;
type SessionSink = SplitSink<WebSocketStream<Io>, Frame>;
type SessionStream = SplitStream<WebSocketStream<Io>>;

/// `GET {websocket_path}`: the WebSocket upgrade, refused early for addresses over the failed-CONNECT
/// limit and when the pending-connection caps are reached.
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    mut request: Request,
) -> Response {
    let accept = match websocket::accept_key(request.headers()) {
        Ok(accept) => accept,
        Err(error) => return error.into_response(),
    };
    if !state.limiter.allows(remote.ip()) {
        state.metrics.connect_failure("rate_limited");
        tracing::warn!(%remote, "WebSocket connection refused: too many failed CONNECTs from this address");
        return ApiError::too_many_requests("too many failed CONNECT attempts from this address; try later")
            .into_response();
    }
    let wait = (state.config.connect_timeout() / 2).min(PENDING_WAIT);
    let admitted = tokio::select! {
        _ = state.cancel.cancelled() => Err(PendingRefusal::Total(state.config.limits.max_pending_connections)),
        admitted = state.pending.admit(remote.ip(), wait) => admitted,
    };
    let slot = match admitted {
        Ok(slot) => slot,
        Err(refusal) => return refuse_pending(&state, remote, refusal),
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let task_state = state.clone();
    state.tracker.spawn(async move {
        let upgraded = tokio::select! {
            _ = task_state.cancel.cancelled() => return,
            upgraded = on_upgrade => upgraded,
        };
        match upgraded {
            Ok(upgraded) => serve(TokioIo::new(upgraded), remote, task_state, slot).await,
            Err(error) => tracing::debug!(%remote, "WebSocket upgrade failed: {error}"),
        }
    });
    websocket::switching_protocols(accept)
}

/// The 503 for a connection over a pending-connection cap, with a log line at most every few seconds.
fn refuse_pending(state: &AppState, remote: SocketAddr, refusal: PendingRefusal) -> Response {
    let reporter = &state.pending.refusals;
    let (reason, message) = match refusal {
        PendingRefusal::Total(limit) => (
            "pending_total",
            format!("{limit} connections are waiting for CONNECT (limits.max_pending_connections); try again later"),
        ),
        PendingRefusal::PerAddress(limit) => (
            "pending_per_address",
            format!(
                "{limit} connections from this address are waiting for CONNECT (limits.max_pending_per_address); try again later"
            ),
        ),
    };
    state.metrics.connect_failure(reason);
    let count = reporter.count();
    if reporter.due() {
        tracing::warn!(%remote, refused_since_last_report = count, "WebSocket connection refused: {message}");
    }
    let mut busy = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message);
    busy.retry_after(RETRY_AFTER_SECONDS);
    busy.into_response()
}

enum Incoming {
    Text(tungstenite::Utf8Bytes),
    Binary,
    Pong,
    Ping,
    Closed,
    Error(WsError),
}

async fn next<S>(stream: &mut S) -> Incoming
where
    S: Stream<Item = Result<Frame, WsError>> + Unpin,
{
    loop {
        return match stream.next().await {
            None | Some(Ok(Frame::Close(_))) => Incoming::Closed,
            Some(Ok(Frame::Text(text))) => Incoming::Text(text),
            Some(Ok(Frame::Binary(_))) => Incoming::Binary,
            Some(Ok(Frame::Ping(_))) => Incoming::Ping,
            Some(Ok(Frame::Pong(_))) => Incoming::Pong,
            // Raw frames are only ever written, never read.
            Some(Ok(Frame::Frame(_))) => continue,
            Some(Err(error)) => Incoming::Error(error),
        };
    }
}

/// The close status for a read error: 1009 for a message over a size limit, 1007 for text that is not
/// UTF-8, 1002 otherwise.
fn read_error_status(error: &WsError) -> CloseStatus {
    match error {
        WsError::Capacity(_) => CloseStatus::TooBig,
        WsError::Io(io) if websocket::is_budget_spent(io) => CloseStatus::TooBig,
        WsError::Utf8(_) => CloseStatus::NotConsistent,
        _ => CloseStatus::ProtocolError,
    }
}

async fn send_close<S>(sink: &mut S, status: CloseStatus, reason: &str)
where
    S: Sink<Frame> + Unpin,
{
    let frame =
        CloseFrame { code: CloseCode::from(status.code().unwrap_or(1000)), reason: truncate(reason).into() };
    let _ = sink.send(Frame::Close(Some(frame))).await;
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

fn text(message: &Message, codec: &nbwss_protocol::Codec) -> Frame {
    Frame::Text(codec.encode(message).into())
}

async fn serve(io: Io, remote: SocketAddr, state: AppState, pending: PendingSlot) {
    let limits = &state.config.limits;
    let pre_connect_limit = state.config.pre_connect_max_message_bytes();
    let mut socket = websocket::before_connect(io, pre_connect_limit).await;
    let connect_timeout = state.config.connect_timeout();
    let deadline = tokio::time::Instant::now() + connect_timeout;
    // Phase 1: the first message must be CONNECT REQUEST, within the small pre-CONNECT limits.
    let first = loop {
        let incoming = tokio::select! {
            _ = state.cancel.cancelled() => {
                send_close(&mut socket, CloseStatus::GoingAway, "endpoint shutting down").await;
                return;
            }
            incoming = tokio::time::timeout_at(deadline, next(&mut socket)) => incoming,
        };
        match incoming {
            Err(_) => {
                refuse(&state, remote, "no_connect");
                send_close(&mut socket, CloseStatus::ViolatedPolicy, "no CONNECT REQUEST in time").await;
                return;
            }
            Ok(Incoming::Ping | Incoming::Pong) => continue,
            Ok(Incoming::Closed) => return,
            Ok(Incoming::Error(error)) => {
                let status = read_error_status(&error);
                let reason = if status == CloseStatus::TooBig {
                    refuse(&state, remote, "too_big");
                    format!(
                        "before CONNECT a message may be at most {pre_connect_limit} bytes (and {} bytes in all)",
                        pre_connect_limit.saturating_mul(2)
                    )
                } else {
                    refuse(&state, remote, "no_connect");
                    error.to_string()
                };
                tracing::debug!(%remote, "WebSocket read failed before CONNECT: {error}");
                send_close(&mut socket, status, &reason).await;
                return;
            }
            Ok(Incoming::Binary) => {
                refuse(&state, remote, "no_connect");
                send_close(&mut socket, CloseStatus::CannotAccept, "binary messages are not NBWSS messages")
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
            send_close(&mut socket, CloseStatus::ViolatedPolicy, &reason).await;
            return;
        }
        Err(error) => {
            refuse(&state, remote, "no_connect");
            send_close(&mut socket, decode_error_status(&error.kind), &error.to_string()).await;
            return;
        }
    };
    drop(first);
    let (id, request) = request;
    let presented = request.token.clone();
    let token = match state.store.run(move |store| store.check_token(&presented)).await {
        Ok(token) => token,
        Err(error) => {
            tracing::error!(%remote, "cannot check a CONNECT token: {error:#}");
            send_close(&mut socket, CloseStatus::TryAgainLater, "endpoint store unavailable").await;
            return;
        }
    };
    let Some(token) = token else {
        refuse(&state, remote, "bad_token");
        tracing::warn!(%remote, "CONNECT refused: unknown token");
        let answer = Message::with_id(id, Body::ConnectResponse(ConnectResponse { valid: false }));
        if socket.send(text(&answer, &state.codec)).await.is_ok() {
            // The service closes after `valid: false`; give it a moment, then close ourselves.
            let _ = tokio::time::timeout(connect_timeout.min(std::time::Duration::from_secs(5)), async {
                while !matches!(next(&mut socket).await, Incoming::Closed | Incoming::Error(_)) {}
            })
            .await;
        }
        send_close(&mut socket, CloseStatus::ViolatedPolicy, "token refused").await;
        return;
    };

    // Accepted: from here on the full message limit applies and the connection no longer counts as pending.
    drop(pending);
    if socket.flush().await.is_err() {
        return;
    }
    let socket = match websocket::after_connect(socket, limits.max_message_bytes).await {
        Ok(socket) => socket,
        Err(error) => {
            tracing::error!(%remote, "cannot continue after CONNECT: {error}");
            return;
        }
    };
    let (mut sink, mut stream) = socket.split();
    let answer = Message::with_id(id, Body::ConnectResponse(ConnectResponse { valid: true }));
    if sink.send(text(&answer, &state.codec)).await.is_err() {
        return;
    }
    let (outgoing, queue) = mpsc::channel(OUTGOING_QUEUE);
    let session = Arc::new(Session::new(
        token.name,
        token.group_id,
        token_hash(&request.token),
        remote,
        outgoing,
        limits.max_in_flight_per_primary,
        state.cancel.child_token(),
    ));
    tracing::info!(primary = %session.name, group = %session.group_id, %remote, "primary server connected");
    state.registry.insert(session.clone());
    let lease = state
        .cluster
        .clone()
        .map(|cluster| state.tracker.spawn(crate::cluster::hold(state.clone(), cluster, session.clone())));
    state.metrics.connections.inc();
    state.metrics.connected.inc();

    let missed_pongs = Arc::new(AtomicU32::new(0));
    let writer =
        state.tracker.spawn(write(sink, queue, session.clone(), state.clone(), missed_pongs.clone()));
    let (notifications, commit_queue) = mpsc::channel(COMMIT_QUEUE);
    let committer = state.tracker.spawn(commit(commit_queue, session.clone(), state.clone()));
    read(&mut stream, &session, &state, &missed_pongs, &notifications).await;
    // What was read is committed and acknowledged before the close (the writer flushes the acks).
    drop(notifications);
    let _ = committer.await;
    session.close(CloseStatus::NormalClosure, "connection closed");
    state.registry.remove(&session);
    state.metrics.connected.dec();
    let _ = writer.await;
    if let Some(lease) = lease {
        let _ = lease.await;
    }
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
    mut sink: SessionSink,
    mut queue: mpsc::Receiver<Frame>,
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
                // Whatever is queued goes out with one flush (one TLS write for a burst of calls).
                let mut next = Some(message);
                let mut written = true;
                while let Some(message) = next.take() {
                    written = sink.feed(message).await.is_ok();
                    if !written {
                        break;
                    }
                    next = queue.try_recv().ok();
                }
                if !written || sink.flush().await.is_err() {
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
                if sink.send(Frame::Ping(tungstenite::Bytes::from_static(b"nbwss"))).await.is_err() {
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
async fn read(
    stream: &mut SessionStream,
    session: &Arc<Session>,
    state: &AppState,
    missed_pongs: &AtomicU32,
    notifications: &CommitQueue,
) {
    loop {
        let incoming = tokio::select! {
            _ = session.closing.cancelled() => return,
            incoming = next(stream) => incoming,
        };
        match incoming {
            Incoming::Closed => return,
            Incoming::Error(error) => {
                tracing::warn!(primary = %session.name, "WebSocket read failed: {error}");
                session.close(read_error_status(&error), &error.to_string());
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
                if let Err((status, reason)) = handle(text.as_str(), session, state, notifications).await {
                    tracing::warn!(primary = %session.name, "closing the session: {reason}");
                    session.close(status, &reason);
                    return;
                }
            }
        }
    }
}

async fn handle(
    text: &str,
    session: &Arc<Session>,
    state: &AppState,
    notifications: &CommitQueue,
) -> Result<(), (CloseStatus, String)> {
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
                    queue_notification(text, session, state, notifications).await
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
        Body::NotificationRequest(_) => return queue_notification(text, session, state, notifications).await,
        Body::ConnectRequest(_) => {
            tracing::warn!(primary = %session.name, "CONNECT on an established session ignored");
        }
        Body::ConnectResponse(_) | Body::CommandRequest(_) | Body::NotificationResponse(_) => {
            tracing::warn!(primary = %session.name, "unexpected {}: ignored", message.summary());
        }
    }
    Ok(())
}

/// Reads a NOTIFICATION REQUEST for the committer, which stores every record as received, flagging those
/// that do not conform, and only then acknowledges it (D11, D12). Unknown keys, missing or oddly typed
/// fields never keep a notification unacknowledged; only a failed commit (or an unusable envelope) does,
/// and the service sends it again.
async fn queue_notification(
    text: &str,
    session: &Arc<Session>,
    state: &AppState,
    notifications: &CommitQueue,
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
    if notifications.send(received).await.is_err() {
        return Err((CloseStatus::ClosedAbnormally, "notification committer gone".to_owned()));
    }
    Ok(())
}

/// The committer: stores the NOTIFICATION REQUESTs waiting (up to [`COMMIT_GROUP`]) together, then, and
/// only then, acknowledges each that was committed (D11, D12). Ends when the reader is gone and every
/// message it read is done, or when the writer is gone.
async fn commit(mut queue: mpsc::Receiver<ReceivedNotification>, session: Arc<Session>, state: AppState) {
    let mut group = Vec::with_capacity(COMMIT_GROUP);
    while queue.recv_many(&mut group, COMMIT_GROUP).await > 0 {
        let received = std::mem::take(&mut group);
        let (received, outcomes) = store_group(received, &session, &state).await;
        for (notification, stored) in received.into_iter().zip(outcomes) {
            let id = notification.id;
            match stored {
                Ok(StoreOutcome::Stored { records, nonconforming, last_cursor }) => {
                    state.metrics.notification_records.inc_by(u64::try_from(records).unwrap_or(u64::MAX));
                    state
                        .metrics
                        .nonconforming_records
                        .inc_by(u64::try_from(nonconforming).unwrap_or(u64::MAX));
                    state.feed.send_modify(|cursor| *cursor = (*cursor).max(last_cursor));
                    if nonconforming > 0 {
                        tracing::warn!(primary = %session.name, %id, records, nonconforming, "notification stored with records that do not conform (flagged in the feed)");
                    }
                    tracing::debug!(primary = %session.name, %id, records, "notification stored");
                }
                Ok(StoreOutcome::Duplicate) => {
                    state.metrics.notification_duplicates.inc();
                    tracing::debug!(primary = %session.name, %id, "notification received again");
                }
                Err(error) => {
                    tracing::error!(primary = %session.name, %id, "cannot store a notification (not acknowledged): {error:#}");
                    continue;
                }
            }
            // Committed: now, and only now, acknowledge (D11, D12).
            let ack = Message::with_id(id, Body::notification_ack());
            if session.outgoing.send(text_of(&ack, &state)).await.is_err() {
                session.close(CloseStatus::ClosedAbnormally, "writer gone");
                return;
            }
        }
        group = Vec::with_capacity(COMMIT_GROUP);
    }
}

/// Stores a group of NOTIFICATION REQUESTs: locally in one transaction (all committed or none), or in
/// cluster mode each published to the stream in turn (each stored once the stream has acknowledged every
/// record; every replica's copy of the stream moves the feed). Returns them with an outcome for each.
async fn store_group(
    received: Vec<ReceivedNotification>,
    session: &Arc<Session>,
    state: &AppState,
) -> (Vec<ReceivedNotification>, Vec<anyhow::Result<StoreOutcome>>) {
    let primary = session.name.clone();
    match &state.cluster {
        Some(cluster) => {
            let mut outcomes = Vec::with_capacity(received.len());
            for notification in &received {
                let started = std::time::Instant::now();
                let published =
                    crate::cluster::publish(cluster, &primary, &notification.id, &notification.records).await;
                state.metrics.stream_publish_seconds.observe(started.elapsed().as_secs_f64());
                outcomes.push(published.map(|published| {
                    if published.duplicate {
                        StoreOutcome::Duplicate
                    } else {
                        StoreOutcome::Stored {
                            records: published.records,
                            nonconforming: published.nonconforming,
                            last_cursor: 0,
                        }
                    }
                }));
            }
            (received, outcomes)
        }
        None => {
            let count = received.len();
            let stored = state
                .store
                .run(move |store| {
                    let messages: Vec<(&str, &[nbwss_protocol::ReceivedRecord])> = received
                        .iter()
                        .map(|notification| (notification.id.as_str(), notification.records.as_slice()))
                        .collect();
                    let outcomes = store.store_notifications(&primary, &messages);
                    Ok((received, outcomes))
                })
                .await;
            match stored {
                Ok((received, Ok(outcomes))) => (received, outcomes.into_iter().map(Ok).collect()),
                Ok((received, Err(error))) => {
                    let outcomes = (0..count).map(|_| Err(anyhow::anyhow!("{error:#}"))).collect();
                    (received, outcomes)
                }
                // The store task itself failed: nothing was committed and the messages are gone with it;
                // the service sends them again.
                Err(error) => {
                    tracing::error!(primary = %session.name, messages = count, "cannot store notifications (not acknowledged): {error:#}");
                    (Vec::new(), Vec::new())
                }
            }
        }
    }
}

fn text_of(message: &Message, state: &AppState) -> Frame {
    text(message, &state.codec)
}

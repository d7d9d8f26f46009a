//! One WebSocket connection to the peer under test, seen as a stream of [`Event`]s. Every text message is
//! checked on arrival against the envelope rules and the size limit, whatever the script is waiting for.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::{Sink, SinkExt as _, Stream, StreamExt as _};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::WebSocketStream;

use crate::checklist::Checklist;
use crate::checks::{self, Incoming};
use crate::pong_gate::{PongGate, PongSwitch};
use crate::rule::{self, Mode};

/// A byte stream the kit speaks WebSocket over (TLS client or server side).
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What the peer did next.
#[derive(Debug)]
pub(crate) enum Event {
    /// A text message that parsed as JSON.
    Message(Incoming),
    /// A text message that is not JSON.
    NotJson,
    /// A binary message.
    Binary,
    /// A ping (answered unless pongs are switched off).
    Ping,
    /// A pong, with its payload.
    Pong(Vec<u8>),
    /// A close frame: its code and reason (`None` for a close frame without a code).
    Closed(Option<(u16, String)>),
    /// The connection ended without a close frame, or broke.
    Lost(String),
}

/// How the kit's own side is configured: it reads messages up to well beyond the limit, so that it can
/// judge (and report) a peer that sends more than it should.
pub(crate) fn websocket_config(limit: usize) -> WebSocketConfig {
    let reading = limit.saturating_mul(4).max(limit.saturating_add(1 << 20));
    WebSocketConfig::default().max_message_size(Some(reading)).max_frame_size(Some(reading))
}

/// Counts connections open at once (R-CONN-2): held by a [`Peer`] until the connection ends.
#[derive(Debug)]
pub(crate) struct OpenGuard {
    open: Arc<AtomicUsize>,
    released: bool,
}

impl OpenGuard {
    /// Registers one more open connection; returns the guard and how many were open before.
    pub fn register(open: &Arc<AtomicUsize>) -> (Self, usize) {
        let before = open.fetch_add(1, Ordering::SeqCst);
        (Self { open: open.clone(), released: false }, before)
    }

    fn release(&mut self) {
        if !self.released {
            self.released = true;
            self.open.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.release();
    }
}

/// The connection to the peer.
pub(crate) struct Peer {
    ws: WebSocketStream<PongGate<Box<dyn Io>>>,
    pongs: PongSwitch,
    checklist: Checklist,
    /// Which side the peer plays.
    sender: Mode,
    limit: usize,
    /// Where the peer connected from (service mode).
    pub remote: Option<SocketAddr>,
    ended: bool,
    guard: Option<OpenGuard>,
    /// Events read while a send was in progress.
    backlog: VecDeque<Event>,
}

impl Peer {
    /// A connection whose WebSocket handshake is done.
    pub fn new(
        mut ws: WebSocketStream<PongGate<Box<dyn Io>>>,
        pongs: PongSwitch,
        checklist: Checklist,
        sender: Mode,
        limit: usize,
    ) -> Self {
        ws.get_mut().start_frames();
        Self {
            ws,
            pongs,
            checklist,
            sender,
            limit,
            remote: None,
            ended: false,
            guard: None,
            backlog: VecDeque::new(),
        }
    }

    pub fn with_guard(mut self, guard: OpenGuard) -> Self {
        self.guard = Some(guard);
        self
    }

    /// Whether the connection has ended (close frame or loss seen).
    pub fn ended(&self) -> bool {
        self.ended
    }

    fn end(&mut self) {
        self.ended = true;
        if let Some(guard) = self.guard.as_mut() {
            guard.release();
        }
    }

    /// Whether pings are answered.
    pub fn answers_pings(&self) -> bool {
        self.pongs.answers()
    }

    /// Answer pings (`true`, the default) or let them go unanswered. Pongs already queued for pings read
    /// earlier are written first: they answered pings from before.
    pub async fn set_answer_pings(&mut self, answer: bool) {
        if !answer {
            let _ = self.ws.flush().await;
        }
        self.pongs.set_answers(answer);
    }

    /// The next event, or `None` when `deadline` passes first.
    pub async fn recv(&mut self, deadline: Instant) -> Option<Event> {
        if let Some(event) = self.backlog.pop_front() {
            return Some(event);
        }
        if self.ended {
            tokio::time::sleep_until(deadline).await;
            return None;
        }
        let next = tokio::time::timeout_at(deadline, self.ws.next()).await.ok()?;
        Some(self.process(next))
    }

    fn process(&mut self, next: Option<Result<WsMessage, tungstenite::Error>>) -> Event {
        match next {
            Some(Ok(WsMessage::Text(text))) => self.on_text(text.as_str()),
            Some(Ok(WsMessage::Binary(_))) => {
                self.checklist
                    .fail(&rule::ENV_1, format!("the {} sent a binary message", self.sender.as_str()));
                Event::Binary
            }
            Some(Ok(WsMessage::Ping(_))) => Event::Ping,
            Some(Ok(WsMessage::Pong(payload))) => Event::Pong(payload.to_vec()),
            Some(Ok(WsMessage::Close(frame))) => {
                self.end();
                Event::Closed(frame.map(|frame| (u16::from(frame.code), frame.reason.to_string())))
            }
            Some(Ok(WsMessage::Frame(_))) => Event::Lost("an unexpected raw frame".into()),
            Some(Err(tungstenite::Error::Capacity(error))) => {
                self.checklist.fail(
                    &rule::LIMIT_1,
                    format!(
                        "the {} sent a message far over the limit of {} bytes ({error})",
                        self.sender.as_str(),
                        self.limit
                    ),
                );
                self.end();
                Event::Lost(format!("message too big: {error}"))
            }
            Some(Err(error)) => {
                self.end();
                Event::Lost(plain(&error))
            }
            None => {
                self.end();
                Event::Lost("the connection ended without a close frame".into())
            }
        }
    }

    fn on_text(&mut self, text: &str) -> Event {
        let checklist = &self.checklist;
        checklist.observe(&rule::ENV_1, "messages checked, all conform");
        if text.len() > self.limit {
            checklist.fail(
                &rule::LIMIT_1,
                format!(
                    "the {} sent a message of {} bytes, over the limit of {} bytes",
                    self.sender.as_str(),
                    text.len(),
                    self.limit
                ),
            );
        } else {
            checklist.observe(&rule::LIMIT_1, "messages checked, all conform");
        }
        let value: Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(error) => {
                checklist.fail(
                    &rule::ENV_2,
                    format!(
                        "the {} sent text that is not JSON ({error}): {}",
                        self.sender.as_str(),
                        checks::clip(text)
                    ),
                );
                return Event::NotJson;
            }
        };
        let keys = checks::envelope_keys(&value);
        let whole = keys.is_ok();
        checklist.check(&rule::ENV_2, "messages checked, all conform", keys);
        if whole {
            checklist.check(&rule::ENV_3, "messages checked, all conform", checks::version(&value));
            checklist.check(&rule::ENV_4, "messages checked, all conform", checks::id(&value));
            checklist.check(&rule::ENV_5, "messages checked, all conform", checks::kind(&value, self.sender));
            checklist.check(
                &rule::ENV_6,
                "messages checked, all conform",
                checks::time_stamp(&value, nbwss_protocol::unix_now()),
            );
            checklist.check(&rule::ENV_7, "messages checked, all conform", checks::payload_type(&value));
        }
        Event::Message(Incoming { value })
    }

    pub async fn send_text(&mut self, text: String) -> Result<(), String> {
        self.send(WsMessage::text(text)).await
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> Result<(), String> {
        self.send(WsMessage::binary(bytes)).await
    }

    /// Sends a message while reading what the peer says meanwhile: a peer that refuses a large message
    /// answers (with a close frame) and drops the connection while the kit is still writing; what it said
    /// is kept for [`Self::recv`]. A send cut short by the peer's close is not an error.
    async fn send(&mut self, message: WsMessage) -> Result<(), String> {
        if self.ended {
            return Err("cannot send: the connection has ended".into());
        }
        let ready = std::future::poll_fn(|cx| Pin::new(&mut self.ws).poll_ready(cx)).await;
        if let Err(error) = ready.and_then(|()| Pin::new(&mut self.ws).start_send(message)) {
            return self.after_send_error(error).await;
        }
        loop {
            let step = std::future::poll_fn(|cx| {
                if let Poll::Ready(flushed) = Pin::new(&mut self.ws).poll_flush(cx) {
                    return Poll::Ready(Sending::Flushed(flushed));
                }
                Pin::new(&mut self.ws).poll_next(cx).map(Sending::Read)
            })
            .await;
            match step {
                Sending::Flushed(Ok(())) => return Ok(()),
                Sending::Flushed(Err(error)) => return self.after_send_error(error).await,
                Sending::Read(next) => {
                    let event = self.process(next);
                    let last = matches!(event, Event::Closed(_) | Event::Lost(_));
                    self.backlog.push_back(event);
                    if last {
                        return Ok(());
                    }
                }
            }
        }
    }

    pub async fn send_ping(&mut self, payload: Vec<u8>) -> Result<(), String> {
        self.send(WsMessage::Ping(payload.into())).await
    }

    /// R-KEEPALIVE-1: pings and waits for the pong that carries the ping's payload. Whatever else arrives
    /// meanwhile is kept, in order, for the next [`Self::recv`]. Returns how long the pong took, or why
    /// there was none (`who` names the peer in it).
    pub async fn ping_pong(&mut self, timeout: Duration, who: &str) -> Result<Duration, String> {
        let payload = b"nbwss-conformance-ping".to_vec();
        let started = Instant::now();
        self.send_ping(payload.clone()).await?;
        let deadline = started + timeout;
        let mut kept = Vec::new();
        let mut other_pong = false;
        let outcome = loop {
            match self.recv(deadline).await {
                Some(Event::Pong(answer)) if answer == payload => break Ok(started.elapsed()),
                Some(Event::Pong(_)) => other_pong = true,
                Some(event @ (Event::Closed(_) | Event::Lost(_))) => {
                    let reason = format!("the {who} {} after a ping", describe_end(&event));
                    kept.push(event);
                    break Err(reason);
                }
                Some(event) => kept.push(event),
                None => {
                    let note = if other_pong { " (only a pong with another payload)" } else { "" };
                    break Err(format!("no pong with the ping's payload within {timeout:?}{note}"));
                }
            }
        };
        for event in kept.into_iter().rev() {
            self.backlog.push_front(event);
        }
        outcome
    }

    /// Sends a close frame (the peer's answer comes as an [`Event::Closed`]).
    pub async fn send_close(&mut self, code: u16, reason: &str) -> Result<(), String> {
        let frame = CloseFrame { code: CloseCode::from(code), reason: reason.to_owned().into() };
        self.ws
            .send(WsMessage::Close(Some(frame)))
            .await
            .map_err(|error| format!("cannot send a close frame: {error}"))
    }

    /// Closes from the kit's side and waits briefly for the answer, discarding what comes before it.
    pub async fn close_quietly(mut self, code: u16, reason: &str) {
        if self.ended {
            return;
        }
        if self.send_close(code, reason).await.is_ok() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while let Some(event) = self.recv(deadline).await {
                if matches!(event, Event::Closed(_) | Event::Lost(_)) {
                    break;
                }
            }
        }
    }

    /// A send failed (typically: the peer dropped the connection while the kit was writing). What the
    /// peer said before may still be readable: it is kept, and the send counts as cut short, not failed.
    async fn after_send_error(&mut self, error: tungstenite::Error) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_millis(500);
        while let Ok(next) = tokio::time::timeout_at(deadline, self.ws.next()).await {
            let event = self.process(next);
            let last = matches!(event, Event::Closed(_) | Event::Lost(_));
            self.backlog.push_back(event);
            if last {
                return Ok(());
            }
        }
        Err(format!("cannot send: {error}"))
    }
}

/// An error in a few words: the TCP connection closing under TLS is what it is, not a riddle.
fn plain(error: &tungstenite::Error) -> String {
    let text = error.to_string();
    if text.contains("close_notify") {
        return "the TCP connection closed without a close frame".into();
    }
    text.split(": https://").next().unwrap_or_default().to_owned()
}

/// One step of a send that reads meanwhile.
enum Sending {
    Flushed(Result<(), tungstenite::Error>),
    Read(Option<Result<WsMessage, tungstenite::Error>>),
}

/// How a connection ended, in words, for reasons.
pub(crate) fn describe_end(event: &Event) -> String {
    match event {
        Event::Closed(Some((code, reason))) if reason.is_empty() => format!("closed with {code}"),
        Event::Closed(Some((code, reason))) => format!("closed with {code} ({reason})"),
        Event::Closed(None) => "closed without a close code".into(),
        Event::Lost(why) => format!("dropped the connection ({why})"),
        _ => "did not close".into(),
    }
}

//! A small service written for these tests: correct by default (CONNECT, COMMAND answers and service
//! errors, pings and missed pongs, notifications resent until acknowledged, close codes), with one deliberate
//! fault at a time. It reconnects 100 ms after every close, like a connection task with a short period.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use nbwss_conformance::{client_tls, Trust};
use nbwss_protocol::{
    unix_now, Body, Codec, CommandResponse, ConnectRequest, DecodeErrorKind, JobRecord, JobState, JobType,
    Message, MessageType, NotificationGroup, ScheduleType, Secret, SubType,
};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};

/// What the fake service gets wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceFault {
    None,
    /// Answers COMMANDs only long after the kit stopped waiting.
    AnswersCommandsLate,
    /// Sends an unacknowledged notification again under a new id.
    ResendsWithNewId,
    /// Answers GETs with a message larger than the limit (instead of a 413).
    OversizedAnswer,
    /// Closes with 1000 on text that is not JSON (instead of 1007).
    WrongCloseCode,
}

pub const PING_RATE: Duration = Duration::from_millis(200);
pub const RESEND_RATE: Duration = Duration::from_millis(300);
pub const MAX_PONG_MISS: u32 = 3;
/// Later than the kit's command timeout in `service_mode.rs`.
pub const LATE: Duration = Duration::from_secs(6);

/// Connects to `url` again and again until aborted.
pub fn start(
    url: String,
    fingerprint: String,
    token: String,
    fault: ServiceFault,
    limit: usize,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let config = std::sync::Arc::new(client_tls(&Trust::Fingerprint(fingerprint)).unwrap());
        let mut next_job = 1;
        loop {
            connection(&url, &config, &token, fault, limit, &mut next_job).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// With the late fault, schedules `text` on the late channel and returns `None`; else gives it back to send.
fn answer_later(
    fault: ServiceFault,
    late: &tokio::sync::mpsc::Sender<String>,
    text: String,
) -> Option<String> {
    if fault != ServiceFault::AnswersCommandsLate {
        return Some(text);
    }
    let late = late.clone();
    tokio::spawn(async move {
        tokio::time::sleep(LATE).await;
        let _ = late.send(text).await;
    });
    None
}

fn close(code: u16, reason: &str) -> WsMessage {
    WsMessage::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.to_owned().into() }))
}

fn notification(job_id: i64) -> Vec<NotificationGroup> {
    vec![NotificationGroup::jobs(vec![JobRecord {
        schedule_type: ScheduleType::Full,
        client_name: "client1".into(),
        status: 0,
        start_time: unix_now(),
        state: JobState::Done,
        policy_name: "policy1".into(),
        parent_job_id: job_id,
        job_id,
        policy_type: "STANDARD".into(),
        job_type: JobType::Backup,
    }])]
}

async fn connection(
    url: &str,
    config: &std::sync::Arc<rustls::ClientConfig>,
    token: &str,
    fault: ServiceFault,
    limit: usize,
    next_job: &mut i64,
) {
    let authority = url.trim_start_matches("wss://").split('/').next().unwrap().to_owned();
    let Ok(tcp) = tokio::net::TcpStream::connect(&authority).await else { return };
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let Ok(tls) = connector.connect(name, tcp).await else { return };
    let ws_config = WebSocketConfig::default().max_message_size(Some(limit)).max_frame_size(Some(limit));
    let Ok((mut ws, _)) = tokio_tungstenite::client_async_with_config(url, tls, Some(ws_config)).await else {
        return;
    };
    let codec = Codec::new(limit);
    let connect = Message::new(Body::ConnectRequest(ConnectRequest { token: Secret::new(token) }));
    if ws.send(WsMessage::text(codec.encode(&connect))).await.is_err() {
        return;
    }
    // Wait for the matching CONNECT RESPONSE.
    loop {
        match ws.next().await {
            Some(Ok(WsMessage::Text(text))) => {
                let Ok(Message { id, body: Body::ConnectResponse(response), .. }) = codec.decode(&text)
                else {
                    continue;
                };
                if id != connect.id {
                    return; // D5: drop the connection
                }
                if !response.valid {
                    let _ = ws.send(close(1008, "token refused")).await;
                    while let Some(Ok(message)) = ws.next().await {
                        if matches!(message, WsMessage::Close(_)) {
                            break;
                        }
                    }
                    return;
                }
                break;
            }
            Some(Ok(_)) => {}
            _ => return,
        }
    }
    let (late_sender, mut late) = tokio::sync::mpsc::channel::<String>(64);
    let mut pings = tokio::time::interval_at(Instant::now() + PING_RATE, PING_RATE);
    pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    let mut outstanding_ping: Option<u64> = None;
    let mut missed = 0;
    let mut sequence = 0u64;
    // The one notification in flight: (id, groups, last sent).
    let mut pending: Option<(String, Vec<NotificationGroup>, Instant)> = None;
    loop {
        tokio::select! {
            Some(text) = late.recv() => {
                if ws.send(WsMessage::text(text)).await.is_err() { return; }
            }
            _ = pings.tick() => {
                if outstanding_ping.is_some() {
                    missed += 1;
                    if missed >= MAX_PONG_MISS {
                        return; // D18: dropped, no close frame
                    }
                }
                sequence += 1;
                outstanding_ping = Some(sequence);
                if ws.send(WsMessage::Ping(sequence.to_be_bytes().to_vec().into())).await.is_err() { return; }
            }
            _ = ticks.tick() => {
                match &mut pending {
                    None => {
                        *next_job += 1;
                        let groups = notification(*next_job);
                        let message = Message::new(Body::NotificationRequest(groups.clone()));
                        pending = Some((message.id.clone(), groups, Instant::now()));
                        if ws.send(WsMessage::text(codec.encode(&message))).await.is_err() { return; }
                    }
                    Some((id, groups, sent)) if sent.elapsed() >= RESEND_RATE => {
                        if fault == ServiceFault::ResendsWithNewId {
                            *id = nbwss_protocol::new_message_id();
                        }
                        *sent = Instant::now();
                        let message = Message::with_id(id.clone(), Body::NotificationRequest(groups.clone()));
                        if ws.send(WsMessage::text(codec.encode(&message))).await.is_err() { return; }
                    }
                    Some(_) => {}
                }
            }
            next = ws.next() => match next {
                Some(Ok(WsMessage::Text(text))) => match codec.decode(&text) {
                    Ok(Message { id, body: Body::CommandRequest(request), .. }) => {
                        let mut response = CommandResponse { status_code: 200, headers: Default::default(), body: "1700000000000".into() };
                        response.headers.set("content-type", "text/vnd.netbackup+plain;version=1.0");
                        if fault == ServiceFault::OversizedAnswer && request.method == nbwss_protocol::Method::Get {
                            response.body = "x".repeat(limit);
                        }
                        let text = codec.encode(&Message::with_id(id, Body::CommandResponse(response)));
                        if let Some(text) = answer_later(fault, &late_sender, text) {
                            if ws.send(WsMessage::text(text)).await.is_err() { return; }
                        }
                    }
                    Ok(Message { id, body: Body::NotificationResponse(_), .. }) => {
                        if pending.as_ref().is_some_and(|(pending_id, _, _)| *pending_id == id) {
                            pending = None;
                        }
                    }
                    Ok(_) => {}
                    Err(error) => match (&error.kind, &error.id, error.message_type) {
                        (DecodeErrorKind::Invalid, Some(id), Some((MessageType::Command, SubType::Request))) => {
                            let response = CommandResponse::service_error(400, "Malformed COMMAND.", vec![error.field.to_string()]);
                            let text = codec.encode(&Message::with_id(id.clone(), Body::CommandResponse(response)));
                            if let Some(text) = answer_later(fault, &late_sender, text) {
                                if ws.send(WsMessage::text(text)).await.is_err() { return; }
                            }
                        }
                        (DecodeErrorKind::Invalid, Some(id), Some((MessageType::Notification, SubType::Response))) => {
                            if pending.as_ref().is_some_and(|(pending_id, _, _)| pending_id == id) {
                                pending = None;
                            }
                        }
                        (DecodeErrorKind::Invalid, _, _) => {}
                        (DecodeErrorKind::NotJson, _, _) => {
                            let code = if fault == ServiceFault::WrongCloseCode { 1000 } else { 1007 };
                            let _ = ws.send(close(code, "not JSON")).await;
                            return;
                        }
                        (DecodeErrorKind::NotEnvelope, _, _) => {
                            let _ = ws.send(close(1002, "not an envelope")).await;
                            return;
                        }
                        (DecodeErrorKind::TooBig { .. }, _, _) => {
                            let _ = ws.send(close(1009, "too big")).await;
                            return;
                        }
                    },
                },
                Some(Ok(WsMessage::Pong(payload))) => {
                    if outstanding_ping.is_some_and(|expected| payload.as_ref() == expected.to_be_bytes()) {
                        outstanding_ping = None;
                        missed = 0;
                    }
                }
                Some(Ok(WsMessage::Binary(_))) => {
                    let _ = ws.send(close(1002, "binary")).await;
                    return;
                }
                Some(Ok(WsMessage::Close(_))) => {
                    let _ = ws.flush().await;
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(WsError::Capacity(_))) => {
                    let _ = ws.send(close(1009, "too big")).await;
                    return;
                }
                Some(Err(_)) | None => return,
            },
        }
    }
}

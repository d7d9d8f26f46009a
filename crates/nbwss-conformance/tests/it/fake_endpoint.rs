//! A small endpoint written for these tests: correct by default, with one deliberate fault at a time, so
//! that each rule is shown to fail when (and only when) it should. It serves a COMMAND trigger over plain
//! HTTP: `GET /trigger` sends a COMMAND on the current connection and answers with the COMMAND RESPONSE's
//! status and body.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use futures_util::{SinkExt, StreamExt};
use nbwss_conformance::{Identity, PongGate};
use nbwss_protocol::{Body, Codec, CommandRequest, ConnectResponse, DecodeErrorKind, Message, Method};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};

/// What the fake endpoint gets wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointFault {
    None,
    /// Answers CONNECT with another id.
    ConnectWrongId,
    /// Accepts any token.
    AcceptsAnyToken,
    /// Never answers pings.
    NoPongs,
    /// Acknowledges notifications with another id.
    AckWrongId,
    /// Sends COMMANDs larger than the limit.
    OversizedCommand,
}

pub const TOKEN: &str = "fake-endpoint-token";

pub struct FakeEndpoint {
    pub url: String,
    pub fingerprint: String,
    pub trigger: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeEndpoint {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

type Calls = mpsc::Sender<oneshot::Sender<(u16, String)>>;

#[derive(Clone, Default)]
struct Current(Arc<Mutex<Option<Calls>>>);

pub async fn start(fault: EndpointFault, limit: usize) -> FakeEndpoint {
    let identity = Identity::generate(&["127.0.0.1".to_owned()]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let current = Current::default();
    let acceptor = tokio_rustls::TlsAcceptor::from(identity.server_config());
    let accepting = {
        let current = current.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let (acceptor, current) = (acceptor.clone(), current.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve(tls, fault, limit, current).await;
                    }
                });
            }
        })
    };
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let trigger = format!("http://{}/trigger", http.local_addr().unwrap());
    let app = axum::Router::new().route("/trigger", axum::routing::get(call)).with_state(current);
    let serving = tokio::spawn(async move {
        axum::serve(http, app).await.unwrap();
    });
    FakeEndpoint {
        url: format!("wss://{address}/nbwss"),
        fingerprint: identity.certificate_sha256.clone(),
        trigger,
        tasks: vec![accepting, serving],
    }
}

async fn call(State(current): State<Current>) -> (StatusCode, String) {
    let calls = current.0.lock().unwrap().clone();
    let Some(calls) = calls else { return (StatusCode::SERVICE_UNAVAILABLE, "no connection".into()) };
    let (sender, receiver) = oneshot::channel();
    if calls.send(sender).await.is_err() {
        return (StatusCode::BAD_GATEWAY, "connection gone".into());
    }
    match receiver.await {
        Ok((status, body)) => (StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY), body),
        Err(_) => (StatusCode::BAD_GATEWAY, "no answer".into()),
    }
}

fn close(code: u16, reason: &str) -> WsMessage {
    WsMessage::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.to_owned().into() }))
}

async fn serve(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    fault: EndpointFault,
    limit: usize,
    current: Current,
) {
    let (gate, pongs) = PongGate::new(tls);
    let config = WebSocketConfig::default().max_message_size(Some(limit)).max_frame_size(Some(limit));
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(gate, Some(config)).await else { return };
    ws.get_mut().start_frames();
    if fault == EndpointFault::NoPongs {
        pongs.set_answers(false);
    }
    let codec = Codec::new(limit);
    // CONNECT first.
    let request = loop {
        match ws.next().await {
            Some(Ok(WsMessage::Text(text))) => match codec.decode(&text) {
                Ok(Message { id, body: Body::ConnectRequest(request), .. }) => break (id, request),
                Ok(_) => {
                    let _ = ws.send(close(1008, "CONNECT first")).await;
                    return;
                }
                Err(_) => {
                    let _ = ws.send(close(1002, "not CONNECT")).await;
                    return;
                }
            },
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
            _ => return,
        }
    };
    let (id, connect) = request;
    let valid = connect.token.expose() == TOKEN || fault == EndpointFault::AcceptsAnyToken;
    let answer_id =
        if fault == EndpointFault::ConnectWrongId { nbwss_protocol::new_message_id() } else { id };
    let answer = Message::with_id(answer_id, Body::ConnectResponse(ConnectResponse { valid }));
    if ws.send(WsMessage::text(codec.encode(&answer))).await.is_err() || !valid {
        while let Some(Ok(message)) = ws.next().await {
            if matches!(message, WsMessage::Close(_)) {
                break;
            }
        }
        return;
    }
    let (calls, mut incoming_calls) = mpsc::channel::<oneshot::Sender<(u16, String)>>(4);
    *current.0.lock().unwrap() = Some(calls);
    let mut waiting: HashMap<String, oneshot::Sender<(u16, String)>> = HashMap::new();
    loop {
        tokio::select! {
            Some(caller) = incoming_calls.recv() => {
                let mut request = CommandRequest::new(Method::Get, "/netbackup/ping");
                if fault == EndpointFault::OversizedCommand {
                    request.headers.set("x-padding", "x".repeat(limit));
                }
                let message = Message::new(Body::CommandRequest(request));
                waiting.insert(message.id.clone(), caller);
                let _ = ws.send(WsMessage::text(codec.encode(&message))).await;
            }
            next = ws.next() => match next {
                Some(Ok(WsMessage::Text(text))) => match codec.decode(&text) {
                    Ok(Message { id, body: Body::NotificationRequest(_), .. }) => {
                        let id = if fault == EndpointFault::AckWrongId { nbwss_protocol::new_message_id() } else { id };
                        let ack = Message::with_id(id, Body::notification_ack());
                        let _ = ws.send(WsMessage::text(codec.encode(&ack))).await;
                    }
                    Ok(Message { id, body: Body::CommandResponse(response), .. }) => {
                        if let Some(caller) = waiting.remove(&id) {
                            let _ = caller.send((response.status_code, response.body));
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        let code = match error.kind {
                            DecodeErrorKind::TooBig { .. } => 1009,
                            DecodeErrorKind::NotJson => 1007,
                            DecodeErrorKind::NotEnvelope => 1002,
                            DecodeErrorKind::Invalid => continue,
                        };
                        let _ = ws.send(close(code, "undecodable")).await;
                        break;
                    }
                },
                Some(Ok(WsMessage::Binary(_))) => {
                    let _ = ws.send(close(1003, "binary")).await;
                    break;
                }
                Some(Ok(WsMessage::Close(_))) => {
                    // tungstenite answers the close frame on the next write or flush.
                    let _ = ws.flush().await;
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(WsError::Capacity(_))) => {
                    let _ = ws.send(close(1009, "too big")).await;
                    break;
                }
                Some(Err(_)) | None => break,
            },
        }
    }
}

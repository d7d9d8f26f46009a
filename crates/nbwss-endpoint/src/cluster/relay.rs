//! Forwarding an app call to the replica that holds the primary server's session, by NATS request/reply on
//! `nbwss.<cluster>.relay.<primary>`: the request carries the encoded COMMAND, the reply its answer or the
//! holder's error, which the forwarding replica returns as its own. The holder applies its limits (in-flight
//! bound, relay timeout) as for a local call.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use nbwss_protocol::{CommandResponse, Headers};
use serde::{Deserialize, Serialize};

use super::Cluster;
use crate::error::ApiError;
use crate::session::Session;
use crate::state::AppState;

/// Header of a forwarded call that carries the COMMAND's message id.
const ID_HEADER: &str = "Nbwss-Id";

/// Time allowed beyond the relay timeout for the hop between replicas.
const HOP_MARGIN: Duration = Duration::from_secs(2);

/// The holder's answer to a forwarded call.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Answer {
    Response { status_code: u16, headers: Vec<(String, String)>, body: String },
    Error { status: u16, code: String, message: String, retry_after: Option<u32> },
}

/// Forwards a call to the holder of `name`'s session.
pub(crate) async fn forward(
    state: &AppState,
    cluster: &Cluster,
    name: &str,
    id: &str,
    text: String,
) -> Result<CommandResponse, ApiError> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(ID_HEADER, id);
    let request = async_nats::Request::new()
        .headers(headers)
        .payload(text.into())
        .timeout(Some(state.config.relay_timeout() + HOP_MARGIN));
    let started = std::time::Instant::now();
    // A call in flight to a holder that dies would wait out the timeout: when the session moves to another
    // replica meanwhile (the service failed over), the call fails at once instead.
    let mut holders = cluster.holders.subscribe();
    let before = holders.borrow().get(name).cloned();
    let moved = async {
        loop {
            if holders.changed().await.is_err() {
                return std::future::pending().await;
            }
            if before.is_some() && holders.borrow().get(name) != before.as_ref() {
                return;
            }
        }
    };
    let sent = cluster.client.send_request(cluster.relay_subject(name), request);
    let outcome = tokio::select! {
        outcome = sent => outcome,
        () = moved => {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "disconnected",
                format!("primary server '{name}' connected to another replica before answering; the call may have run"),
            ));
        }
    };
    let reply = match outcome {
        Ok(reply) => reply,
        Err(error) => {
            use async_nats::client::RequestErrorKind;
            return Err(match error.kind() {
                RequestErrorKind::NoResponders => crate::relay::not_connected(state, name).await,
                RequestErrorKind::TimedOut => ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "timeout",
                    format!("the replica holding primary server '{name}' did not answer in time"),
                ),
                RequestErrorKind::Other => {
                    tracing::warn!(primary = %name, "cannot forward a call: {error}");
                    ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "cluster_unavailable",
                        format!(
                            "cannot forward the call to the replica holding primary server '{name}': {error}"
                        ),
                    )
                }
            });
        }
    };
    state.metrics.forwarded(started.elapsed().as_secs_f64());
    match serde_json::from_slice::<Answer>(&reply.payload) {
        Ok(Answer::Response { status_code, headers, body }) => {
            let mut relayed = Headers::new();
            for (name, value) in headers {
                relayed.append(&name, &value);
            }
            Ok(CommandResponse { status_code, headers: relayed, body })
        }
        Ok(Answer::Error { status, code, message, retry_after }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut error = ApiError::new(status, known_code(&code), message);
            if let Some(seconds) = retry_after {
                error.retry_after(seconds);
            }
            Err(error)
        }
        Err(error) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "invalid_response",
            format!("the replica holding primary server '{name}' answered something unreadable: {error}"),
        )),
    }
}

/// The codes a holder may answer with, as the static strings errors carry.
fn known_code(code: &str) -> &'static str {
    const CODES: [&str; 8] = [
        "too_many_requests",
        "disconnected",
        "timeout",
        "invalid_response",
        "not_connected",
        "unknown_primary",
        "too_large",
        "internal",
    ];
    CODES.into_iter().find(|known| *known == code).unwrap_or("bad_gateway")
}

/// Answers forwarded calls for `session` until it closes. A queue group: while an old and a new session of
/// one primary server overlap, each call reaches one of them only.
pub(crate) async fn serve(state: AppState, cluster: Cluster, session: Arc<Session>) {
    use futures_util::StreamExt as _;
    let subject = cluster.relay_subject(&session.name);
    let mut calls = match cluster.client.queue_subscribe(subject.clone(), "holder".to_owned()).await {
        Ok(calls) => calls,
        Err(error) => {
            tracing::error!(primary = %session.name, "cannot answer forwarded calls on {subject}: {error}");
            return;
        }
    };
    loop {
        let call = tokio::select! {
            () = session.closing.cancelled() => break,
            call = calls.next() => match call { Some(call) => call, None => break },
        };
        let (tracker, state, cluster, session) =
            (state.tracker.clone(), state.clone(), cluster.clone(), session.clone());
        tracker.spawn(async move {
            let Some(reply) = call.reply.clone() else { return };
            let answer = answer(&state, &session, call).await;
            let payload = serde_json::to_vec(&answer).unwrap_or_default();
            if let Err(error) = cluster.client.publish(reply, payload.into()).await {
                tracing::warn!(primary = %session.name, "cannot answer a forwarded call: {error}");
            }
        });
    }
    let _ = calls.unsubscribe().await;
}

async fn answer(state: &AppState, session: &Session, call: async_nats::Message) -> Answer {
    let id = call.headers.as_ref().and_then(|headers| headers.get(ID_HEADER)).map(|id| id.to_string());
    let text = String::from_utf8(call.payload.to_vec());
    let (Some(id), Ok(text)) = (id, text) else {
        return Answer::Error {
            status: 502,
            code: "invalid_response".to_owned(),
            message: "a forwarded call without its message id or not UTF-8".to_owned(),
            retry_after: None,
        };
    };
    state.metrics.forwarded_in.inc();
    match crate::relay::call_session(state, session, &session.name, &id, text).await {
        Ok(response) => Answer::Response {
            status_code: response.status_code,
            headers: response
                .headers
                .iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
            body: response.body,
        },
        Err(error) => {
            let (status, code, message, retry_after) = error.parts();
            Answer::Error {
                status: status.as_u16(),
                code: code.to_owned(),
                message: message.to_owned(),
                retry_after,
            }
        }
    }
}

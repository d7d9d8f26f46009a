//! The kit's listener: TLS with the kit's certificate, the WebSocket upgrade (noting the path asked for), and
//! R-CONN-2 counted as connections are established.

use std::fmt::Write as _;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

use crate::checklist::Checklist;
use crate::error::SetupError;
use crate::peer::{self, Io, OpenGuard, Peer};
use crate::pong_gate::PongGate;
use crate::rule::{self, Mode};
use crate::tls::Identity;

/// A connection that passed TLS and the WebSocket upgrade.
pub(super) struct Accepted {
    pub peer: Peer,
    pub path: String,
}

/// 24 random bytes as hex.
pub(super) fn random_token() -> Result<String, SetupError> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 24];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| SetupError::new("cannot generate a random token"))?;
    let mut token = String::with_capacity(2 * bytes.len());
    for byte in bytes {
        let _ = write!(token, "{byte:02x}");
    }
    Ok(token)
}

pub(super) async fn accept_loop(
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

//! The TLS listener: accepts connections up to `limits.max_connections`, gives each one
//! `limits.tls_handshake_timeout_ms` for its TLS handshake, and serves HTTP/1.1 with upgrades (the
//! WebSocket endpoint) with a header-read timeout that also closes idle keep-alive connections.
//!
//! HTTP/2 is not offered (ALPN names `http/1.1` only, and HTTP/1.1 is served without protocol detection),
//! so every connection is under the HTTP/1.1 timeouts. A connection's place under the cap is held by its
//! socket, so an upgraded WebSocket keeps it until it closes.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::state::AppState;

/// How long shutdown lets open HTTP connections finish.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Largest HTTP/1.1 read buffer of a connection, so also the largest request head (hyper's own default is
/// about 400 KiB); bodies stream through it in pieces.
const MAX_HTTP_BUFFER_BYTES: usize = 64 * 1024;
/// Shortest interval between two log lines about refused connections or failed accepts.
const REPORT_INTERVAL: Duration = Duration::from_secs(10);
/// Pause after an accept fails for lack of resources (file descriptors), so as not to spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts and serves until `state.cancel` is cancelled; connection tasks are tracked by
/// `state.tracker` and end within [`SHUTDOWN_GRACE`] of the cancellation.
pub(crate) async fn serve(listener: TcpListener, tls: TlsAcceptor, router: Router, state: AppState) {
    let slots = Arc::new(Semaphore::new(state.config.limits.max_connections));
    let refused = Reporter::default();
    let failed_accepts = Reporter::default();
    loop {
        let accepted = tokio::select! {
            _ = state.cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                let count = failed_accepts.count();
                if failed_accepts.due() {
                    tracing::warn!(failed = count, "cannot accept connections: {error}");
                }
                if !is_transient(&error) {
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
                continue;
            }
        };
        // Every write is a whole message or response: Nagle's algorithm would only hold back its last
        // segment waiting for an acknowledgement.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%remote, "cannot set TCP_NODELAY: {error}");
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            state.metrics.connection_refused("max_connections");
            let count = refused.count();
            if refused.due() {
                tracing::warn!(
                    %remote, refused_since_last_report = count,
                    "connection refused: limits.max_connections ({}) connections are open; raise it if they are legitimate",
                    state.config.limits.max_connections
                );
            }
            drop(stream);
            continue;
        };
        let socket = Counted { stream, _permit: permit, _open: OpenConnection::new(&state) };
        let connection = serve_connection(socket, remote, tls.clone(), router.clone(), state.clone());
        state.tracker.spawn(connection);
    }
}

async fn serve_connection(
    socket: Counted,
    remote: SocketAddr,
    tls: TlsAcceptor,
    router: Router,
    state: AppState,
) {
    let handshake = tokio::time::timeout(state.config.tls_handshake_timeout(), tls.accept(socket));
    let stream = tokio::select! {
        _ = state.cancel.cancelled() => return,
        handshake = handshake => match handshake {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!(%remote, "TLS handshake failed: {error}");
                return;
            }
            Err(_) => {
                state.metrics.connection_refused("tls_handshake_timeout");
                tracing::debug!(%remote, "TLS handshake not completed in time: closed");
                return;
            }
        },
    };
    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ConnectInfo(remote));
        router.clone().oneshot(request)
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(state.config.http_header_timeout())
        .max_buf_size(MAX_HTTP_BUFFER_BYTES);
    let connection = http.serve_connection(TokioIo::new(stream), service).with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = state.cancel.cancelled() => {
            connection.as_mut().graceful_shutdown();
            match tokio::time::timeout(SHUTDOWN_GRACE, connection).await {
                Ok(result) => result,
                Err(_) => return,
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(%remote, "HTTP connection ended: {error}");
    }
}

/// Errors about one connection that went away before it was accepted; others (out of file descriptors,
/// of memory) call for a pause, which lets other connections end.
fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted
    )
}

/// Counts events and says when one is due for a log line, at most once per [`REPORT_INTERVAL`].
#[derive(Default)]
pub(crate) struct Reporter {
    since_report: AtomicU64,
    last_report: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Reporter {
    /// Counts one event; returns the events since the last report, this one included.
    pub(crate) fn count(&self) -> u64 {
        self.since_report.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Whether a log line is due now; if so, the count starts again.
    pub(crate) fn due(&self) -> bool {
        let now = tokio::time::Instant::now();
        let mut last = self.last_report.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.is_some_and(|last| now.duration_since(last) < REPORT_INTERVAL) {
            return false;
        }
        *last = Some(now);
        self.since_report.store(0, Ordering::Relaxed);
        true
    }
}

/// Keeps the open-connections gauge right: up when a connection is accepted, down when its socket closes.
struct OpenConnection(prometheus_client::metrics::gauge::Gauge);

impl OpenConnection {
    fn new(state: &AppState) -> Self {
        state.metrics.open_connections.inc();
        Self(state.metrics.open_connections.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A TCP socket that holds its place under `limits.max_connections` until it is dropped.
struct Counted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    _open: OpenConnection,
}

impl AsyncRead for Counted {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

//! The WebSocket handshake (RFC 6455, section 4.2) and the two limits of a connection's life: until its CONNECT
//! is accepted it is read through a [`FrameGate`] with small limits (D4: before CONNECT an endpoint may
//! apply a much smaller limit), after that with the full message limit.
//!
//! tungstenite fixes its limits when a stream is built, and axum's WebSocket does not hand back its
//! socket. So the endpoint upgrades the connection itself and builds two streams in turn on the same
//! socket. The gate passes bytes to the first stream one WebSocket frame at a time, never beyond the end of
//! a frame: when the first stream returns the CONNECT REQUEST it holds no unread byte, and whatever the
//! peer sent after it is still in the gate, handed to the second stream.

use std::io::{self, Cursor};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use crate::error::ApiError;

/// Bytes read from the socket at a time. tungstenite zero-fills its whole read buffer on every read, so its
/// default (128 KiB) would keep 128 KiB resident per idle connection and cost a 128 KiB memset per read;
/// at 4 KiB a relayed call's frames cost little, and a larger message still grows the buffer as it needs.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// Checks a WebSocket upgrade request and returns the `Sec-WebSocket-Accept` value to answer it with.
/// No extension (compression) and no subprotocol is ever agreed: NBWSS messages are plain text frames.
pub(crate) fn accept_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .any(|value| value.split(',').any(|item| item.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_websocket",
            "this is the NBWSS WebSocket endpoint: send a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)",
        ));
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
        return Err(ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "websocket_version",
            "Sec-WebSocket-Version must be 13",
        ));
    }
    let key = headers.get(header::SEC_WEBSOCKET_KEY).map(HeaderValue::as_bytes).unwrap_or_default();
    if key.is_empty() || key.len() > 64 {
        return Err(ApiError::bad_request("Sec-WebSocket-Key: missing or malformed"));
    }
    Ok(tokio_tungstenite::tungstenite::handshake::derive_accept_key(key))
}

/// The `101 Switching Protocols` answer to an accepted upgrade.
pub(crate) fn switching_protocols(accept: String) -> Response {
    let accept = HeaderValue::from_str(&accept).unwrap_or_else(|_| HeaderValue::from_static(""));
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::CONNECTION, HeaderValue::from_static("upgrade")),
            (header::UPGRADE, HeaderValue::from_static("websocket")),
            (header::SEC_WEBSOCKET_ACCEPT, accept),
        ],
    )
        .into_response()
}

/// The stream of a connection whose CONNECT is not accepted yet.
pub(crate) type PendingSocket<S> = WebSocketStream<FrameGate<S>>;

/// Builds the stream for the time before CONNECT: messages and frames up to `max_message_bytes`, and at
/// most twice that many bytes in all.
pub(crate) async fn before_connect<S>(io: S, max_message_bytes: usize) -> PendingSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let budget = u64::try_from(max_message_bytes).unwrap_or(u64::MAX).saturating_mul(2);
    let config = config(max_message_bytes).read_buffer_size(READ_BUFFER_BYTES.min(max_message_bytes));
    let gate = FrameGate { inner: io, buffer: Vec::new(), start: 0, frame_left: 0, budget };
    WebSocketStream::from_raw_socket(gate, Role::Server, Some(config)).await
}

/// Turns the stream of an accepted connection into one with the full limit, keeping every byte the peer
/// has sent after its CONNECT. Fails (and the connection must be closed) only if the gate was not at a
/// frame boundary, which the gate's design excludes.
pub(crate) async fn after_connect<S>(
    socket: PendingSocket<S>,
    max_message_bytes: usize,
) -> io::Result<WebSocketStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let gate = socket.into_inner();
    if gate.frame_left != 0 {
        return Err(io::Error::other("the CONNECT REQUEST did not end at a frame boundary"));
    }
    let unread = gate.buffer[gate.start..].to_vec();
    let config = config(max_message_bytes);
    Ok(WebSocketStream::from_partially_read(gate.inner, unread, Role::Server, Some(config)).await)
}

fn config(max_message_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes))
}

/// The error a [`FrameGate`] reads when its byte budget is spent.
#[derive(Debug, thiserror::Error)]
#[error("too many bytes before CONNECT")]
pub(crate) struct PreConnectBudgetSpent;

/// Whether a read error is the gate's budget being spent.
pub(crate) fn is_budget_spent(error: &io::Error) -> bool {
    error.get_ref().is_some_and(|inner| inner.is::<PreConnectBudgetSpent>())
}

/// Reads the socket in chunks but passes bytes on only up to the end of the current WebSocket frame, and
/// at most `budget` bytes in all. Writes pass straight through.
pub(crate) struct FrameGate<S> {
    inner: S,
    /// Bytes read from the socket; `buffer[start..]` are not passed on yet.
    buffer: Vec<u8>,
    start: usize,
    /// Bytes of the current frame not passed on yet: 0 exactly at a frame boundary.
    frame_left: u64,
    /// Bytes that may still be passed on.
    budget: u64,
}

/// How many bytes the frame starting at `bytes[0]` has in all (header and payload); `None` while its header
/// is incomplete. A header tungstenite will refuse counts as all the bytes there are: tungstenite reads it,
/// fails, and the connection ends.
fn frame_length(bytes: &[u8]) -> Option<u64> {
    let mut cursor = Cursor::new(bytes);
    match FrameHeader::parse(&mut cursor) {
        Ok(Some((_, payload))) => Some(cursor.position().saturating_add(payload)),
        Ok(None) => None,
        Err(_) => Some(bytes.len() as u64),
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FrameGate<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let unread = &this.buffer[this.start..];
            if this.frame_left == 0 && !unread.is_empty() {
                if let Some(length) = frame_length(unread) {
                    this.frame_left = length;
                }
            }
            if this.frame_left > 0 && !unread.is_empty() {
                let frame_left = usize::try_from(this.frame_left).unwrap_or(usize::MAX);
                let count = unread.len().min(out.remaining()).min(frame_left);
                let counted = count as u64;
                if counted > this.budget {
                    return Poll::Ready(Err(io::Error::other(PreConnectBudgetSpent)));
                }
                out.put_slice(&unread[..count]);
                this.start += count;
                this.frame_left -= counted;
                this.budget -= counted;
                if this.start == this.buffer.len() {
                    this.buffer.clear();
                    this.start = 0;
                }
                return Poll::Ready(Ok(()));
            }
            // Nothing to pass on: the buffer is empty or holds the start of a header. Read more.
            this.buffer.drain(..this.start);
            this.start = 0;
            let had = this.buffer.len();
            this.buffer.resize(had + READ_BUFFER_BYTES, 0);
            let mut read = ReadBuf::new(&mut this.buffer[had..]);
            let polled = Pin::new(&mut this.inner).poll_read(cx, &mut read);
            let got = read.filled().len();
            this.buffer.truncate(had + got);
            match polled {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Ready(Ok(())) if got > 0 => {}
                Poll::Ready(Ok(())) if had == 0 => return Poll::Ready(Ok(())),
                // End of stream inside a header: pass the stub on, then the end; tungstenite reports it.
                Poll::Ready(Ok(())) => this.frame_left = had as u64,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FrameGate<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::tungstenite::{Error as WsError, Message};

    /// A masked client frame.
    fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut bytes = vec![opcode | if fin { 0x80 } else { 0 }];
        match payload.len() {
            length @ 0..=125 => bytes.push(0x80 | length as u8),
            length @ 126..=65535 => {
                bytes.push(0x80 | 126);
                bytes.extend_from_slice(&(length as u16).to_be_bytes());
            }
            length => {
                bytes.push(0x80 | 127);
                bytes.extend_from_slice(&(length as u64).to_be_bytes());
            }
        }
        let mask = [1, 2, 3, 4];
        bytes.extend_from_slice(&mask);
        bytes.extend(payload.iter().enumerate().map(|(index, byte)| byte ^ mask[index % 4]));
        bytes
    }

    #[test]
    fn frame_lengths() {
        assert_eq!(frame_length(&frame(1, true, b"hello")), Some(2 + 4 + 5));
        assert_eq!(frame_length(&frame(1, true, &[b'x'; 300])[..4]), None, "extended length incomplete");
        assert_eq!(frame_length(&frame(1, true, &[b'x'; 300])), Some(2 + 2 + 4 + 300));
        assert_eq!(frame_length(&[0x81]), None);
        let mut huge = vec![0x81, 0x80 | 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        huge.extend_from_slice(&[0; 4]);
        assert_eq!(frame_length(&huge), Some(u64::MAX), "no overflow");
    }

    /// Everything the peer sends after CONNECT, in the same write, reaches the established stream.
    #[tokio::test]
    async fn bytes_after_connect_are_kept() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut wire = frame(1, false, b"{\"first\":");
        wire.extend(frame(9, true, b"ping"));
        wire.extend(frame(0, true, b"1}"));
        wire.extend(frame(1, true, &vec![b'a'; 5000]));
        wire.extend(frame(1, true, b"third"));
        client.write_all(&wire).await.unwrap();
        let mut pending = before_connect(server, 1024).await;
        assert!(matches!(pending.next().await, Some(Ok(Message::Ping(_)))));
        assert_eq!(pending.next().await.unwrap().unwrap(), Message::text("{\"first\":1}"));
        pending.flush().await.unwrap();
        let mut established = after_connect(pending, 1 << 20).await.unwrap();
        let second = established.next().await.unwrap().unwrap();
        assert_eq!(second.len(), 5000, "larger than the pending limit, accepted once established");
        assert_eq!(established.next().await.unwrap().unwrap(), Message::text("third"));
    }

    #[tokio::test]
    async fn the_pending_limits_hold() {
        // A message one byte over the limit, in one frame: refused at its header.
        let (mut client, server) = tokio::io::duplex(1 << 20);
        client.write_all(&frame(1, true, &vec![b'a'; 1025])).await.unwrap();
        let mut pending = before_connect(server, 1024).await;
        assert!(matches!(pending.next().await, Some(Err(WsError::Capacity(_)))));

        // Exactly the limit passes.
        let (mut client, server) = tokio::io::duplex(1 << 20);
        client.write_all(&frame(1, true, &vec![b'a'; 1024])).await.unwrap();
        let mut pending = before_connect(server, 1024).await;
        assert_eq!(pending.next().await.unwrap().unwrap().len(), 1024);

        // Fragments adding up to more than the limit.
        let (mut client, server) = tokio::io::duplex(1 << 20);
        client.write_all(&frame(1, false, &vec![b'a'; 1000])).await.unwrap();
        client.write_all(&frame(0, true, &[b'a'; 25])).await.unwrap();
        let mut pending = before_connect(server, 1024).await;
        assert!(matches!(pending.next().await, Some(Err(WsError::Capacity(_)))));

        // Empty fragments and pings forever: the byte budget ends them.
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let writer = tokio::spawn(async move {
            let mut wire = frame(1, false, b"{");
            for _ in 0..2000 {
                wire.extend(frame(0, false, b""));
                wire.extend(frame(9, true, b""));
            }
            let _ = client.write_all(&wire).await;
            client
        });
        let mut pending = before_connect(server, 1024).await;
        let error = loop {
            match pending.next().await {
                Some(Ok(Message::Ping(_))) => continue,
                Some(Err(error)) => break error,
                other => panic!("expected the budget to end it, got {other:?}"),
            }
        };
        assert!(matches!(&error, WsError::Io(io) if is_budget_spent(io)), "{error}");
        drop(writer);
    }
}

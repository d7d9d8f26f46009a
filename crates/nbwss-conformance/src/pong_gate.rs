//! A stream wrapper that can withhold outgoing pong frames. tungstenite answers every ping by itself; to check
//! what a peer does when its pings go unanswered (D18), the kit must be able to stay silent. Once the
//! WebSocket handshake is done ([`PongGate::start_frames`]), the gate parses the frames written through it
//! (RFC 6455 §5.2: a 2-byte header, 0/2/8 length bytes, a 4-byte mask when masked, the payload) and drops
//! whole pong frames while pongs are switched off; everything else passes byte for byte.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// WebSocket opcode of a pong frame.
const OPCODE_PONG: u8 = 0xA;

/// Switches the pongs of one [`PongGate`] on and off.
#[derive(Debug, Clone)]
pub struct PongSwitch(Arc<AtomicBool>);

impl PongSwitch {
    /// Whether pongs are written (the default).
    pub fn answers(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Writes pongs (`true`) or drops them (`false`) from the next frame on.
    pub fn set_answers(&self, answer: bool) {
        self.0.store(answer, Ordering::SeqCst);
    }
}

/// Splits written bytes into frames and keeps all but dropped pongs.
#[derive(Debug, Default)]
struct FrameFilter {
    header: [u8; 14],
    have: usize,
    need: usize,
    remaining: u64,
    in_payload: bool,
    dropping: bool,
}

impl FrameFilter {
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>, answer_pings: bool) {
        let mut index = 0;
        while index < input.len() {
            if self.in_payload {
                let take = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(input.len() - index);
                if !self.dropping {
                    out.extend_from_slice(&input[index..index + take]);
                }
                index += take;
                self.remaining -= take as u64;
                self.in_payload = self.remaining > 0;
                continue;
            }
            self.header[self.have] = input[index];
            self.have += 1;
            index += 1;
            if self.have == 2 {
                let length_bytes = match self.header[1] & 0x7F {
                    126 => 2,
                    127 => 8,
                    _ => 0,
                };
                let mask_bytes = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
                self.need = 2 + length_bytes + mask_bytes;
            }
            if self.have >= 2 && self.have == self.need {
                self.remaining = match self.header[1] & 0x7F {
                    126 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
                    127 => {
                        let mut bytes = [0u8; 8];
                        bytes.copy_from_slice(&self.header[2..10]);
                        u64::from_be_bytes(bytes)
                    }
                    length => u64::from(length),
                };
                self.dropping = self.header[0] & 0x0F == OPCODE_PONG && !answer_pings;
                if !self.dropping {
                    out.extend_from_slice(&self.header[..self.have]);
                }
                self.have = 0;
                self.in_payload = self.remaining > 0;
            }
        }
    }
}

/// A stream whose outgoing pong frames can be withheld (see the module documentation).
#[derive(Debug)]
pub struct PongGate<S> {
    inner: S,
    /// False during the HTTP handshake, whose bytes are not frames.
    framing: bool,
    switch: PongSwitch,
    filter: FrameFilter,
    pending: Vec<u8>,
    written: usize,
}

impl<S> PongGate<S> {
    /// Wraps `inner`; everything passes until [`Self::start_frames`], then pongs pass until the switch
    /// says otherwise.
    pub fn new(inner: S) -> (Self, PongSwitch) {
        let switch = PongSwitch(Arc::new(AtomicBool::new(true)));
        let gate = Self {
            inner,
            framing: false,
            switch: switch.clone(),
            filter: FrameFilter::default(),
            pending: Vec::new(),
            written: 0,
        };
        (gate, switch)
    }

    /// The WebSocket handshake is over: what is written from now on is frames (call it once the handshake
    /// has completed, e.g. through `WebSocketStream::get_mut`).
    pub fn start_frames(&mut self) {
        self.framing = true;
    }
}

impl<S: AsyncWrite + Unpin> PongGate<S> {
    /// Writes what the filter kept; ready when all of it is in the inner stream.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let count = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if count == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += count;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PongGate<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PongGate<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        if this.framing {
            let answer = this.switch.answers();
            this.filter.feed(buf, &mut this.pending, answer);
        } else {
            this.pending.extend_from_slice(buf);
        }
        // Push it on now if the stream takes it; what it does not take waits for the next write or flush.
        if let Poll::Ready(Err(error)) = this.poll_drain(cx) {
            return Poll::Ready(Err(error));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
        let mut out = vec![0x80 | opcode];
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload.len() {
            len if len < 126 => out.push(mask_bit | len as u8),
            len if len <= 0xFFFF => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        if masked {
            out.extend_from_slice(&[1, 2, 3, 4]);
        }
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn drops_only_pongs_and_only_when_switched_off() {
        for masked in [false, true] {
            let text = frame(0x1, b"hello", masked);
            let pong = frame(OPCODE_PONG, b"ping-data", masked);
            let big = frame(0x2, &vec![7u8; 70_000], masked);
            let medium = frame(0x1, &vec![b'x'; 300], masked);
            let stream: Vec<u8> = [text.clone(), pong.clone(), big.clone(), medium.clone()].concat();
            // Fed one byte at a time and in one piece: the same result.
            for chunk in [1usize, 7, stream.len()] {
                let mut filter = FrameFilter::default();
                let mut out = Vec::new();
                for piece in stream.chunks(chunk) {
                    filter.feed(piece, &mut out, false);
                }
                assert_eq!(out, [text.clone(), big.clone(), medium.clone()].concat(), "chunk {chunk}");
                let mut filter = FrameFilter::default();
                let mut out = Vec::new();
                for piece in stream.chunks(chunk) {
                    filter.feed(piece, &mut out, true);
                }
                assert_eq!(out, stream, "chunk {chunk}");
            }
        }
    }
}

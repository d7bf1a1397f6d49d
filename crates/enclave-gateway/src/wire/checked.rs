//! The client's byte stream as the protocol decoder reads it: handed on one whole,
//! well-formed message at a time ([`super::frames`]), so the decoder never sees a message
//! that could make it read past its end.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::frames::{frame, FrameLimits, Malformed};

pub(crate) struct Checked<IO> {
    io: IO,
    /// Read from the client, not yet a whole message.
    pending: BytesMut,
    /// Whole, checked messages not yet handed on.
    ready: BytesMut,
    /// The next message is the connection's first (untyped) one.
    startup: bool,
    limits: FrameLimits,
    failed: Option<Malformed>,
}

/// The error a malformed message ends the connection with (its text goes to the client).
#[derive(Debug)]
pub(crate) struct MalformedMessage(pub String);

impl std::fmt::Display for MalformedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MalformedMessage {}

impl<IO> Checked<IO> {
    /// `read`: what was already read from the client before this wrapper took over.
    pub(crate) fn new(io: IO, read: BytesMut, limits: FrameLimits) -> Self {
        Checked {
            io,
            pending: read,
            ready: BytesMut::new(),
            startup: true,
            limits,
            failed: None,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Checked<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            if let Some(m) = &this.failed {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    MalformedMessage(m.0.clone()),
                )));
            }
            match frame(&this.pending, this.startup, &this.limits) {
                Ok(Some(len)) => {
                    this.ready = this.pending.split_to(len);
                    this.startup = false;
                    continue;
                }
                Ok(None) => {}
                Err(m) => {
                    this.failed = Some(m);
                    continue;
                }
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // End of stream; a message cut short by it is dropped.
                return Poll::Ready(Ok(()));
            }
            this.pending.extend_from_slice(read.filled());
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Checked<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

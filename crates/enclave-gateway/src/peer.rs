//! The client's end of a wire connection, watched so that work stops when the client hangs
//! up: the statement running is interrupted, and the rest of its query string never runs.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use tokio::net::TcpStream;

/// A second handle on a connection's socket, used only to look (never read) at what the
/// client sent: nothing and a closed end means it is gone.
pub struct Peer {
    socket: TcpStream,
}

impl Peer {
    /// Watches `socket` through a duplicate of its descriptor (the protocol keeps reading
    /// from the original).
    pub fn watch(socket: &TcpStream) -> io::Result<Peer> {
        let duplicate = std::net::TcpStream::from(socket.as_fd().try_clone_to_owned()?);
        duplicate.set_nonblocking(true)?;
        Ok(Peer {
            socket: TcpStream::from_std(duplicate)?,
        })
    }

    /// Whether the client has closed its end, without waiting.
    pub fn gone(&self) -> bool {
        let mut byte = [MaybeUninit::<u8>::uninit()];
        match socket2::SockRef::from(&self.socket).peek(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
        }
    }

    /// Resolves when the client closes its end. Once it has sent more (a pipelined message),
    /// whether it is still there cannot be told without reading: never resolves then.
    pub async fn closed(&self) {
        let mut byte = [0u8];
        match self.socket.peek(&mut byte).await {
            Ok(0) | Err(_) => {}
            Ok(_) => std::future::pending::<()>().await,
        }
    }
}

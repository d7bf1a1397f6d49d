//! One wire connection from `accept` to close, within the server's connection budget.
//!
//! A connection holds a file descriptor and, until it has authenticated, gives nothing back:
//! the gateway admits at most `max_connections` at once, of which at most
//! `max_unauthenticated` (and `max_unauthenticated_per_source` from one address) may still
//! be in their startup, and a startup has `startup_timeout` to finish. Past a limit the
//! connection is told `53300` and closed at once, so a flood of idle sockets costs the
//! flooder, not the file descriptors the HTTP side and the stores need.
//!
//! Messages reach pgwire's decoder through [`Checked`], and a panic anywhere in a
//! connection's task ends that connection only, logged once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use futures::{FutureExt, StreamExt};
use pgwire::api::{ClientInfo, PgWireConnectionState};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use pgwire::tokio::TlsAcceptor;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::{Framed, FramedParts};

use super::checked::{Checked, MalformedMessage};
use super::frames::FrameLimits;
use super::{Handlers, Prepared};
use crate::peer::Peer;

/// The gateway's connection budget.
#[derive(Debug, Clone)]
pub struct WireLimits {
    /// Connections open at once (authenticated or not).
    pub max_connections: usize,
    /// Connections still in their startup (TLS, startup packet, password) at once.
    pub max_unauthenticated: usize,
    /// Of those, from one source address.
    pub max_unauthenticated_per_source: usize,
    /// How long a connection may take to authenticate.
    pub startup_timeout: Duration,
    /// The longest SQL text a `Query` or `Parse` may carry.
    pub max_sql_bytes: usize,
    /// The longest `Bind` or `CopyData` message.
    pub max_data_bytes: usize,
}

impl Default for WireLimits {
    fn default() -> Self {
        WireLimits {
            max_connections: 1000,
            max_unauthenticated: 256,
            max_unauthenticated_per_source: 32,
            startup_timeout: Duration::from_secs(10),
            max_sql_bytes: 1 << 20,
            max_data_bytes: 64 << 20,
        }
    }
}

/// Connections open and starting, by source.
pub(crate) struct Occupancy {
    limits: WireLimits,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    open: usize,
    starting: usize,
    starting_by_source: HashMap<IpAddr, usize>,
}

/// A place among the open connections, given back when dropped.
pub(crate) struct Open(Arc<Occupancy>);

/// A place among the starting connections, given back when dropped (or once authenticated).
pub(crate) struct Starting(Arc<Occupancy>, IpAddr);

impl Occupancy {
    pub(crate) fn new(limits: WireLimits) -> Arc<Occupancy> {
        Arc::new(Occupancy {
            limits,
            counts: Mutex::default(),
        })
    }

    /// Places for a new connection from `source`, or why there is none.
    fn admit(self: &Arc<Self>, source: IpAddr) -> Result<(Open, Starting), &'static str> {
        let mut c = self.counts.lock().unwrap();
        if c.open >= self.limits.max_connections {
            return Err("sorry, too many clients already");
        }
        let from_source = c.starting_by_source.get(&source).copied().unwrap_or(0);
        if c.starting >= self.limits.max_unauthenticated
            || from_source >= self.limits.max_unauthenticated_per_source
        {
            return Err("sorry, too many connections are authenticating; try again shortly");
        }
        c.open += 1;
        c.starting += 1;
        *c.starting_by_source.entry(source).or_default() += 1;
        Ok((Open(self.clone()), Starting(self.clone(), source)))
    }

    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let c = self.counts.lock().unwrap();
        (c.open, c.starting)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.counts.lock().unwrap().open -= 1;
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        let mut c = self.0.counts.lock().unwrap();
        c.starting -= 1;
        if let Some(n) = c.starting_by_source.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                c.starting_by_source.remove(&self.1);
            }
        }
    }
}

/// Takes an accepted connection: runs it in a task of its own, or refuses it at once when
/// the budget is spent.
pub(crate) fn spawn(
    socket: TcpStream,
    handlers: Arc<Handlers>,
    tls: Option<TlsAcceptor>,
    occupancy: &Arc<Occupancy>,
) {
    let Ok(source) = socket.peer_addr().map(|a| a.ip()) else {
        return;
    };
    let places = match occupancy.admit(source) {
        Ok(p) => p,
        Err(why) => {
            refuse_now(&socket, why);
            tracing::debug!(%source, why, "wire connection refused");
            return;
        }
    };
    let limits = occupancy.limits.clone();
    tokio::spawn(async move {
        let run = AssertUnwindSafe(run(socket, handlers, tls, places, limits)).catch_unwind();
        if run.await.is_err() {
            // The panic hook has logged the panic itself; this names the connection.
            tracing::error!(%source, "a wire connection's task panicked; that connection was closed");
        }
    });
}

/// Tells a client it is refused (`53300`) without waiting on it, and closes.
fn refuse_now(socket: &TcpStream, why: &str) {
    let info = ErrorInfo::new("FATAL".into(), "53300".into(), why.into());
    let mut buf = BytesMut::new();
    if PgWireBackendMessage::ErrorResponse(info.into())
        .encode(&mut buf)
        .is_ok()
    {
        let _ = socket.try_write(&buf);
    }
}

type Codec = pgwire::tokio::server::PgWireMessageServerCodec<Prepared>;

async fn run(
    socket: TcpStream,
    handlers: Arc<Handlers>,
    tls: Option<TlsAcceptor>,
    (_open, starting): (Open, Starting),
    limits: WireLimits,
) {
    let deadline = Instant::now() + limits.startup_timeout;
    let peer = Peer::watch(&socket).ok();
    let negotiated =
        tokio::time::timeout_at(deadline, negotiate_tls::<Prepared>(socket, tls)).await;
    let Ok(Ok(Some(framed))) = negotiated else {
        return;
    };
    let mut socket = checked(framed, &limits);
    if let Some(peer) = peer {
        socket.session_extensions().insert(peer);
    }
    let mut starting = Some(starting);

    loop {
        let authenticating = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        if !authenticating {
            starting = None;
        }
        let message = if starting.is_some() {
            match tokio::time::timeout_at(deadline, socket.next()).await {
                Ok(m) => m,
                Err(_) => {
                    let e = fatal("08P01", "the connection did not authenticate in time");
                    let _ = process_error(&mut socket, e, false).await;
                    return;
                }
            }
        } else {
            socket.next().await
        };
        let message = match message {
            Some(Ok(m)) => m,
            Some(Err(PgWireError::IoError(e))) => {
                if let Some(m) = e
                    .get_ref()
                    .and_then(|e| e.downcast_ref::<MalformedMessage>())
                {
                    let _ = process_error(&mut socket, fatal("08P01", &m.0), false).await;
                }
                return;
            }
            Some(Err(e)) => {
                let _ = process_error(&mut socket, fatal("08P01", &e.to_string()), false).await;
                return;
            }
            None => return,
        };
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            return;
        }
        let extended = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        let cancel_request = matches!(message, PgWireFrontendMessage::CancelRequest(_));
        if let Err(e) = process_message(
            message,
            &mut socket,
            handlers.startup.clone(),
            handlers.query.clone(),
            handlers.query.clone(),
            handlers.query.clone(),
            handlers.cancel.clone(),
        )
        .await
        {
            let is_fatal = e.is_fatal();
            if process_error(&mut socket, e, extended).await.is_err() || is_fatal {
                return;
            }
        }
        if cancel_request {
            return;
        }
    }
}

fn fatal(code: &str, message: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        code.into(),
        message.into(),
    )))
}

/// The negotiated connection, its reads going through [`Checked`] (with what pgwire had
/// already read from it).
fn checked(
    framed: Framed<pgwire::tokio::server::MaybeTls, Codec>,
    limits: &WireLimits,
) -> Framed<Checked<pgwire::tokio::server::MaybeTls>, Codec> {
    let parts = framed.into_parts();
    let frames = FrameLimits::new(limits.max_sql_bytes, limits.max_data_bytes);
    let mut checked = FramedParts::new(Checked::new(parts.io, parts.read_buf, frames), parts.codec);
    checked.write_buf = parts.write_buf;
    Framed::from_parts(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_counted_by_source_and_given_back() {
        let occupancy = Occupancy::new(WireLimits {
            max_connections: 3,
            max_unauthenticated: 2,
            max_unauthenticated_per_source: 1,
            ..WireLimits::default()
        });
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let (open_a, starting_a) = occupancy.admit(a).unwrap();
        assert!(occupancy.admit(a).is_err(), "one starting per source");
        let (open_b, starting_b) = occupancy.admit(b).unwrap();
        assert_eq!(occupancy.counts(), (2, 2));
        // Authenticated: the starting place is given back, the open one kept.
        drop(starting_a);
        drop(starting_b);
        let (open_c, _starting_c) = occupancy.admit(a).unwrap();
        assert_eq!(
            occupancy.admit(b).err(),
            Some("sorry, too many clients already")
        );
        drop((open_a, open_b, open_c));
        assert_eq!(occupancy.counts(), (0, 1));
    }
}

//! A Postgres wire client written message by message, for what real clients never send:
//! truncated and malformed messages, startups left unfinished, hang-ups mid-query.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

pub struct RawWire {
    pub stream: TcpStream,
}

/// A backend message: its type and body.
pub type Message = (u8, Vec<u8>);

impl RawWire {
    pub async fn connect(gateway: &str) -> RawWire {
        RawWire {
            stream: TcpStream::connect(gateway).await.unwrap(),
        }
    }

    /// Connects from `source` (another loopback address, so that its connections count
    /// apart from the test's own).
    pub async fn connect_from(gateway: &str, source: &str) -> std::io::Result<RawWire> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(format!("{source}:0").parse::<SocketAddr>().unwrap())?;
        Ok(RawWire {
            stream: socket.connect(gateway.parse().unwrap()).await?,
        })
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Sends a startup packet with these parameters.
    pub async fn startup(&mut self, parameters: &[(&str, &str)]) {
        let mut body = 196_608u32.to_be_bytes().to_vec();
        for (k, v) in parameters {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        packet.extend(body);
        self.write(&packet).await;
    }

    pub async fn send(&mut self, kind: u8, body: &[u8]) {
        self.write(&message(kind, body)).await;
    }

    /// The next backend message; `None` once the server closed the connection (or nothing
    /// came within 10 s).
    pub async fn read(&mut self) -> Option<Message> {
        tokio::time::timeout(Duration::from_secs(10), async {
            let kind = self.stream.read_u8().await.ok()?;
            let len = self.stream.read_u32().await.ok()? as usize;
            let mut body = vec![0; len.checked_sub(4)?];
            self.stream.read_exact(&mut body).await.ok()?;
            Some((kind, body))
        })
        .await
        .ok()
        .flatten()
    }

    /// Messages until `ReadyForQuery` (included), or until the connection closes.
    pub async fn until_ready(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        while let Some(m) = self.read().await {
            let ready = m.0 == b'Z';
            out.push(m);
            if ready {
                break;
            }
        }
        out
    }

    /// Signs in with an API key; panics unless the server accepts it.
    pub async fn login(gateway: &str, key: &str) -> RawWire {
        let mut c = RawWire::connect(gateway).await;
        c.startup(&[("user", "raw")]).await;
        let (kind, body) = c.read().await.expect("an authentication request");
        assert_eq!(
            (kind, &body[..4]),
            (b'R', &3u32.to_be_bytes()[..]),
            "cleartext"
        );
        c.send(b'p', &cstring(key)).await;
        let messages = c.until_ready().await;
        assert!(
            messages.iter().any(|m| m.0 == b'Z'),
            "not ready: {:?}",
            errors(&messages)
        );
        c
    }

    /// Sends one simple `Query`; the messages up to `ReadyForQuery`.
    pub async fn query(&mut self, sql: &str) -> Vec<Message> {
        self.send(b'Q', &cstring(sql)).await;
        self.until_ready().await
    }

    /// Whether the server closed the connection (within 10 s).
    pub async fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        matches!(
            tokio::time::timeout(Duration::from_secs(10), self.stream.read_to_end(&mut rest)).await,
            Ok(Ok(_)) | Ok(Err(_))
        )
    }
}

pub fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

pub fn cstring(s: &str) -> Vec<u8> {
    let mut b = s.as_bytes().to_vec();
    b.push(0);
    b
}

/// The fields of each `ErrorResponse` among `messages`: severity `S`, SQLSTATE `C`,
/// message `M`.
pub fn errors(messages: &[Message]) -> Vec<HashMap<char, String>> {
    messages
        .iter()
        .filter(|(k, _)| *k == b'E')
        .map(|(_, body)| fields(body))
        .collect()
}

fn fields(body: &[u8]) -> HashMap<char, String> {
    body.split(|b| *b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| (f[0] as char, String::from_utf8_lossy(&f[1..]).into_owned()))
        .collect()
}

/// The values of the `DataRow`s among `messages`, as text.
pub fn rows(messages: &[Message]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter(|(k, _)| *k == b'D')
        .map(|(_, body)| {
            let n = u16::from_be_bytes([body[0], body[1]]) as usize;
            let mut at = 2;
            (0..n)
                .map(|_| {
                    let len = i32::from_be_bytes(body[at..at + 4].try_into().unwrap());
                    at += 4;
                    if len < 0 {
                        return None;
                    }
                    let v = String::from_utf8_lossy(&body[at..at + len as usize]).into_owned();
                    at += len as usize;
                    Some(v)
                })
                .collect()
        })
        .collect()
}

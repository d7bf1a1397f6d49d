//! A real HTTP endpoint for webhook tests: records every request it gets and answers with the
//! statuses it is told to (then 200).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Clone, Default)]
struct Shared {
    got: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(addr: SocketAddr) -> Receiver {
        let shared = Shared::default();
        let s = shared.clone();
        let app = Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, body: Bytes| {
                let s = s.clone();
                async move {
                    s.got.lock().unwrap().push(Received { headers, body });
                    let status = s.script.lock().unwrap().pop_front().unwrap_or(200);
                    StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { addr, shared, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The next requests get these statuses, in order.
    pub fn answer(&self, statuses: &[u16]) {
        self.shared.script.lock().unwrap().extend(statuses);
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.got.lock().unwrap().clone()
    }

    /// Waits (up to 15 s) until `pred` holds for what was received.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        for _ in 0..300 {
            let got = self.received();
            if pred(&got) {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "timed out waiting for {what}; got {:?}",
            self.received().iter().map(|r| r.json()).collect::<Vec<_>>()
        );
    }

    /// Deliveries of events of `event_type`.
    pub fn of_type(got: &[Received], event_type: &str) -> Vec<Received> {
        got.iter()
            .filter(|r| r.header("x-enclave-event-type") == event_type)
            .cloned()
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// The Standard Webhooks check, written from its specification: some `v1,<sig>` in
/// `webhook-signature` equals base64(HMAC-SHA256(base64-decoded secret, id.timestamp.body)).
pub fn standard_signature_ok(r: &Received, secret: &str) -> bool {
    let key = B64.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let signed = format!(
        "{}.{}.{}",
        r.header("webhook-id"),
        r.header("webhook-timestamp"),
        std::str::from_utf8(&r.body).unwrap()
    );
    let expected = format!("v1,{}", B64.encode(mac(&key, signed.as_bytes())));
    r.header("webhook-signature")
        .split(' ')
        .any(|s| s == expected)
}

/// `X-Enclave-Signature: sha256=<hex HMAC-SHA256(secret string, body)>` (several, comma
/// separated, during a rotation).
pub fn enclave_signature_ok(r: &Received, secret: &str) -> bool {
    let expected = format!("sha256={}", hex::encode(mac(secret.as_bytes(), &r.body)));
    r.header("x-enclave-signature")
        .split(',')
        .any(|s| s.trim() == expected)
}

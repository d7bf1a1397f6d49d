//! The dashboard's client of the REST API: a request to the API's own router, in process, with
//! the signed-in person's token and the browser's address — the same endpoints, middleware,
//! rules and audit as a request over the network.

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt;

/// The most a dashboard page reads of one API answer.
const ANSWER_BYTES: usize = 8 * 1024 * 1024;

#[derive(Clone)]
pub(super) struct Api {
    router: Router,
}

/// What a request carries: nothing, JSON, or text (a `.env` file).
pub(super) enum Payload<'a> {
    Empty,
    Json(&'a Value),
    Text(&'a str),
}

/// An API answer as it came: status and bytes (an export, a download).
pub(super) struct Raw {
    pub(super) status: StatusCode,
    pub(super) bytes: Bytes,
}

impl Raw {
    /// The answer read as JSON (`Null` when it is none).
    pub(super) fn answer(&self) -> Answer {
        Answer {
            status: self.status,
            body: serde_json::from_slice(&self.bytes).unwrap_or(Value::Null),
        }
    }
}

/// An API answer: its status and JSON body (`Null` when empty).
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: Value,
}

impl Answer {
    pub(super) fn ok(&self) -> bool {
        self.status.is_success()
    }

    /// The body of a success, or the API's reason for a refusal.
    pub(super) fn into_result(self) -> Result<Value, String> {
        match self.ok() {
            true => Ok(self.body),
            false => Err(self.error()),
        }
    }

    /// The API's error message, with the field and rule it named.
    pub(super) fn error(&self) -> String {
        let e = &self.body["error"];
        let message = e["message"].as_str().unwrap_or("the request failed");
        match (
            e["details"]["field"].as_str(),
            e["details"]["rule"].as_str(),
        ) {
            (Some(field), Some(rule)) => format!("{message} ({field}: {rule})"),
            _ => message.to_string(),
        }
    }
}

impl Api {
    pub(super) fn new(router: Router) -> Api {
        Api { router }
    }

    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        peer: Option<SocketAddr>,
    ) -> Answer {
        let payload = body.map(Payload::Json).unwrap_or(Payload::Empty);
        self.raw(method, path, token, payload, peer).await.answer()
    }

    pub(super) async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        payload: Payload<'_>,
        peer: Option<SocketAddr>,
    ) -> Raw {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match payload {
            Payload::Json(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            Payload::Text(t) => {
                req = req.header(header::CONTENT_TYPE, "text/plain; charset=utf-8");
                Body::from(t.to_string())
            }
            Payload::Empty => Body::empty(),
        };
        let mut req = match req.body(body) {
            Ok(r) => r,
            Err(_) => return internal(),
        };
        if let Some(peer) = peer {
            req.extensions_mut().insert(ConnectInfo(peer));
        }
        let Ok(resp) = self.router.clone().oneshot(req).await;
        let status = resp.status();
        match axum::body::to_bytes(resp.into_body(), ANSWER_BYTES).await {
            Ok(bytes) => Raw { status, bytes },
            Err(_) => internal(),
        }
    }
}

fn internal() -> Raw {
    let body = serde_json::json!({"error": {"message": "the dashboard could not reach the API"}});
    Raw {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        bytes: Bytes::from(body.to_string()),
    }
}

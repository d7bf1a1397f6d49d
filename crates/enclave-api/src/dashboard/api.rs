//! The dashboard's client of the REST API: a request to the API's own router, in process, with
//! the signed-in person's token and the browser's address — the same endpoints, middleware,
//! rules and audit as a request over the network.

use std::net::SocketAddr;

use axum::body::Body;
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

/// An API answer: its status and JSON body (`Null` when empty).
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: Value,
}

impl Answer {
    pub(super) fn ok(&self) -> bool {
        self.status.is_success()
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
        let mut req = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
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
        let bytes = match axum::body::to_bytes(resp.into_body(), ANSWER_BYTES).await {
            Ok(b) => b,
            Err(_) => return internal(),
        };
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer { status, body }
    }
}

fn internal() -> Answer {
    Answer {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        body: serde_json::json!({"error": {"message": "the dashboard could not reach the API"}}),
    }
}

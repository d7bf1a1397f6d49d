//! Request context: a request id (the client's `X-Request-Id` when it is sane, else a fresh
//! `req_…`) available to every layer and echoed on every response; one structured log line
//! and the Prometheus metrics per request; oversize bodies refused before anything reads them.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::extract::{body_limit, discard_body, too_large, BodyLimit};

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The request's id, also in its extensions: for work the request hands to other tasks.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The id of the request being handled on this task.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(|id| id.clone()).ok()
}

fn request_id_of(req: &Request) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .filter(|v| {
            v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        })
        .map(str::to_string)
        .unwrap_or_else(|| format!("req_{}", ulid::Ulid::new().to_string().to_ascii_lowercase()))
}

pub async fn request_context(mut req: Request, next: Next) -> Response {
    let id = request_id_of(&req);
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let path = req.uri().path().to_string();
    let limit = body_limit(&method, &route);
    req.extensions_mut().insert(BodyLimit(limit));
    req.extensions_mut().insert(RequestId(id.clone()));
    let oversize = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > limit);

    let mut resp = REQUEST_ID
        .scope(id.clone(), async move {
            if oversize {
                discard_body(req.into_body()).await;
                ApiError(too_large(limit)).into_response()
            } else {
                next.run(req).await
            }
        })
        .await;

    let status = resp.status().as_u16();
    let elapsed = started.elapsed();
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    super::metrics::record(method.as_str(), &route, status, elapsed);
    tracing::info!(
        request_id = %id, method = %method, path = %path, route = %route, status,
        latency_ms = elapsed.as_secs_f64() * 1000.0, "request"
    );
    resp
}

/// A handler that panicked answers 500 in the usual envelope; the server keeps running.
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!(request_id = ?current_request_id(), "handler panicked");
    ApiError(enclave_core::Error::internal()).into_response()
}

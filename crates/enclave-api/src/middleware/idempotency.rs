//! `Idempotency-Key` on mutating requests: the first request with a key runs and its response
//! is stored for 24 h; the same key from the same caller on the same route with the same body
//! gets that response again (`Idempotency-Replayed: true`); with another body or route, 422;
//! while the first is still running, 409 with `Retry-After`. A 5xx is not stored, so the
//! client may retry. Requests without credentials are not deduplicated: there is no caller
//! to scope the key to.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use enclave_core::clock::now_ms;
use enclave_core::Error;
use enclave_store::{IdempotencyBegin, IdempotencyState, StoredResponse};
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::{read_body, BodyLimit, MAX_BODY_BYTES};
use crate::state::AppState;

pub const TTL_MS: i64 = 24 * 3600 * 1000;
/// Response headers kept with a stored response.
const KEPT_HEADERS: [&str; 3] = ["content-type", "etag", "location"];

/// The largest body a request with an `Idempotency-Key` may send: 64 MiB.
pub const IDEMPOTENT_BODY_BYTES: usize = 64 * 1024 * 1024;

pub async fn idempotency(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let mutating = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let key = req.headers().get("idempotency-key").cloned();
    let principal = req.extensions().get::<Caller>().map(|c| c.id().to_string());
    let (Some(key), Some(principal), true) = (key, principal, mutating) else {
        return next.run(req).await;
    };
    match run(state, req, next, key, principal).await {
        Ok(r) | Err(r) => r,
    }
}

async fn run(
    state: AppState,
    req: Request,
    next: Next,
    key: HeaderValue,
    principal: String,
) -> Result<Response, Response> {
    let reject = |e: Error| ApiError(e).into_response();
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            reject(Error::validation(
                "Idempotency-Key",
                "format",
                "Idempotency-Key must be 1–255 visible ASCII characters",
            ))
        })?
        .to_string();
    let route = format!("{} {}", req.method(), req.uri());
    let (parts, body) = req.into_parts();
    // A replayable request is hashed whole, in memory: bulk imports with a key are held to
    // IDEMPOTENT_BODY_BYTES.
    let limit = parts
        .extensions
        .get::<BodyLimit>()
        .map_or(MAX_BODY_BYTES, |l| l.0)
        .min(IDEMPOTENT_BODY_BYTES);
    let bytes = read_body(body, limit)
        .await
        .map_err(IntoResponse::into_response)?;
    let now = now_ms();
    let begin = IdempotencyBegin {
        principal: principal.clone(),
        key: key.clone(),
        route,
        body_hash: hex::encode(Sha256::digest(&bytes)),
        now,
        expired_before: now - TTL_MS,
    };
    match state.store.idempotency_begin(begin).await.map_err(reject)? {
        IdempotencyState::Started => {}
        IdempotencyState::InProgress => {
            let mut r = reject(Error::conflict(
                "idempotency_in_progress",
                "a request with this Idempotency-Key is still running",
            ));
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
            return Err(r);
        }
        IdempotencyState::Mismatch => {
            return Err(reject(
                Error::validation(
                    "Idempotency-Key",
                    "reused_with_different_request",
                    "this Idempotency-Key was used with a different request",
                )
                .with_status(422),
            ))
        }
        IdempotencyState::Completed(stored) => return Ok(replay(stored)),
    }

    let resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if resp.status().is_server_error() {
        let _ = state.store.idempotency_abandon(&principal, &key).await;
        return Ok(resp);
    }
    let (parts, body) = resp.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(_) => {
            let _ = state.store.idempotency_abandon(&principal, &key).await;
            return Err(reject(Error::internal()));
        }
    };
    let headers = KEPT_HEADERS
        .iter()
        .filter_map(|h| {
            parts
                .headers
                .get(*h)
                .and_then(|v| v.to_str().ok())
                .map(|v| (h.to_string(), v.to_string()))
        })
        .collect();
    let stored = StoredResponse {
        status: parts.status.as_u16(),
        headers,
        body: body.to_vec(),
    };
    if let Err(e) = state
        .store
        .idempotency_complete(&principal, &key, stored)
        .await
    {
        tracing::error!(error = %e, "could not store idempotent response");
    }
    let mut resp = Response::from_parts(parts, Body::from(body));
    resp.headers_mut()
        .insert("idempotency-replayed", HeaderValue::from_static("false"));
    Ok(resp)
}

fn replay(stored: StoredResponse) -> Response {
    let mut resp = Response::new(Body::from(stored.body));
    *resp.status_mut() = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    for (name, value) in stored.headers {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            resp.headers_mut().insert(n, v);
        }
    }
    resp.headers_mut()
        .insert("idempotency-replayed", HeaderValue::from_static("true"));
    resp
}

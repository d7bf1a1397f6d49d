//! Per-identity rate limits by the organization's tier (token buckets, counted on this node or,
//! in a cluster, shared through the store: `crate::rate_limits`):
//! a signed-in user is limited by the tier of the organization their token is for; requests
//! without credentials by client IP. Every limited response carries `X-RateLimit-Limit`
//! (requests per minute), `X-RateLimit-Remaining` (burst left now) and `X-RateLimit-Reset`
//! (seconds until the burst is full again); past the limit, 429 with `Retry-After`.
//! Health, readiness and metrics probes are not limited.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use enclave_core::{Error, ErrorCode};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

pub(crate) const UNLIMITED_PATHS: [&str; 3] = ["/health", "/ready", "/metrics"];

pub async fn rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if UNLIMITED_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let caller = req.extensions().get::<Caller>().cloned();
    let decision = match &caller {
        Some(c) => state.rate_limits.check(Some(c.tier()), c.id()).await,
        None => {
            let ip = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string())
                .unwrap_or_else(|| "unknown".to_string());
            state.rate_limits.check(None, &ip).await
        }
    };
    let mut resp = match decision.retry_after {
        None => next.run(req).await,
        Some(wait) => {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            let setting = if caller.is_some() {
                "rate_limits (--rate-limits)"
            } else {
                "anonymous_rate_limit (--anonymous-rate-limit)"
            };
            let mut r = ApiError(
                Error::new(
                    ErrorCode::RateLimited,
                    format!("rate limit exceeded; retry in {secs} s (the server's {setting})"),
                )
                .with_details(serde_json::json!({
                    "limit_per_minute": decision.limit,
                    "retry_after_seconds": secs,
                    "setting": setting,
                })),
            )
            .into_response();
            r.headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
            r
        }
    };
    let h = resp.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(decision.limit));
    h.insert(
        "x-ratelimit-remaining",
        HeaderValue::from(decision.remaining),
    );
    h.insert("x-ratelimit-reset", HeaderValue::from(decision.reset_secs));
    resp
}

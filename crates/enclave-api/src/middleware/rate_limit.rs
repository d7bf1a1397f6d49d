//! Per-identity rate limits by the organization's tier (GCRA token buckets from `governor`):
//! a signed-in user is limited by the tier of the organization their token is for; requests
//! without credentials by client IP. Every limited response carries `X-RateLimit-Limit`
//! (requests per minute), `X-RateLimit-Remaining` (burst left now) and `X-RateLimit-Reset`
//! (seconds until the burst is full again); past the limit, 429 with `Retry-After`.
//! Health, readiness and metrics probes are not limited.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;

use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use enclave_core::model::Tier;
use enclave_core::{Error, ErrorCode};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::auth::Caller;
use crate::config::ApiConfig;
use crate::error::ApiError;
use crate::state::AppState;

type Limiter =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

struct Bucket {
    limiter: Limiter,
    per_minute: u32,
}

pub struct RateLimits {
    tiers: HashMap<Tier, Bucket>,
    anonymous: Bucket,
    clock: DefaultClock,
}

/// The outcome of one check.
pub struct Decision {
    pub limit: u32,
    pub remaining: u32,
    pub reset_secs: u64,
    /// `Some(wait)` when refused.
    pub retry_after: Option<Duration>,
}

fn bucket(per_minute: u32, burst: u32) -> Bucket {
    let per_minute = per_minute.max(1);
    let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap())
        .allow_burst(NonZeroU32::new(burst.max(1)).unwrap());
    Bucket {
        limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
        per_minute,
    }
}

impl RateLimits {
    pub fn new(config: &ApiConfig) -> Self {
        let tiers = Tier::ALL
            .into_iter()
            .map(|t| {
                let l = config.limits(t);
                (t, bucket(l.rate_limit_per_minute, l.rate_limit_burst))
            })
            .collect();
        let (per_minute, burst) = config.anonymous_rate_limit;
        RateLimits {
            tiers,
            anonymous: bucket(per_minute, burst),
            clock: DefaultClock::default(),
        }
    }

    /// Forgets identities whose buckets are full again (they carry no state worth keeping).
    pub fn shrink(&self) {
        for b in self.tiers.values().chain([&self.anonymous]) {
            b.limiter.retain_recent();
            b.limiter.shrink_to_fit();
        }
    }

    pub fn check(&self, tier: Option<Tier>, key: &str) -> Decision {
        let b = match tier {
            Some(t) => &self.tiers[&t],
            None => &self.anonymous,
        };
        let key = key.to_string();
        match b.limiter.check_key(&key) {
            Ok(snapshot) => {
                let quota = snapshot.quota();
                let remaining = snapshot.remaining_burst_capacity();
                let missing = quota.burst_size().get().saturating_sub(remaining);
                let reset = quota.replenish_interval() * missing;
                Decision {
                    limit: b.per_minute,
                    remaining,
                    reset_secs: reset.as_secs_f64().ceil() as u64,
                    retry_after: None,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                let reset =
                    not_until.quota().replenish_interval() * not_until.quota().burst_size().get();
                Decision {
                    limit: b.per_minute,
                    remaining: 0,
                    reset_secs: reset.as_secs_f64().ceil() as u64,
                    retry_after: Some(wait),
                }
            }
        }
    }
}

/// Starts the periodic clean-up of idle identities.
pub fn spawn_housekeeping(state: AppState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            state.rate_limits.shrink();
        }
    });
}

pub(crate) const UNLIMITED_PATHS: [&str; 3] = ["/health", "/ready", "/metrics"];

pub async fn rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if UNLIMITED_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let caller = req.extensions().get::<Caller>().cloned();
    let decision = match &caller {
        Some(c) => state.rate_limits.check(Some(c.tier()), c.id()),
        None => {
            let ip = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string())
                .unwrap_or_else(|| "unknown".to_string());
            state.rate_limits.check(None, &ip)
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

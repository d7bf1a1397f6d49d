//! The per-identity token buckets behind the rate-limit middleware: one bucket set per tier
//! and one for requests without credentials (by client IP), and their housekeeping.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use enclave_core::model::Tier;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::config::ApiConfig;

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
                (t, bucket(l.rate_limits.per_minute, l.rate_limits.burst))
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
pub fn spawn_housekeeping(limits: Arc<RateLimits>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            limits.shrink();
        }
    });
}

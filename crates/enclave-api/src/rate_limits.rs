//! The per-identity token buckets behind the rate-limit middleware: one bucket set per tier
//! and one for requests without credentials (by client IP), and their housekeeping.
//!
//! One node counts in memory (GCRA, `governor`). When several nodes serve a PostgreSQL store,
//! each identity has one bucket in the store instead, and a node takes requests from it a
//! small slice at a time ([`slice`]): a request pays a round trip only when its node's slice
//! is used up. A slice lives one second; what a node took and did not use in that time is
//! lost, so the cluster never admits more than the bucket gave out, and refuses early by at
//! most a slice per node and second.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use enclave_core::clock::now_ms;
use enclave_store::Store;

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
    burst: u32,
}

pub struct RateLimits {
    tiers: HashMap<Tier, Bucket>,
    anonymous: Bucket,
    clock: DefaultClock,
    /// The store's buckets, used while other nodes serve the same PostgreSQL store.
    shared: Option<Shared>,
}

/// The buckets every node shares, and this node's slices of them.
struct Shared {
    store: Arc<Store>,
    clustered: AtomicBool,
    slices: Mutex<HashMap<String, Slice>>,
}

/// Requests a node took from a shared bucket and has not used yet.
struct Slice {
    left: u32,
    taken: Instant,
    /// What the bucket held after the take (for `X-RateLimit-Remaining`).
    bucket_left: u32,
}

/// How long a slice may be used: the most a node admits on tokens it took earlier.
const SLICE_LIFE: Duration = Duration::from_secs(1);

/// Requests a node takes from a shared bucket at once: a tenth of the burst, at least one.
pub fn slice(burst: u32) -> u32 {
    (burst / 10).max(1)
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
        burst: burst.max(1),
    }
}

impl RateLimits {
    /// Limits counted on this node, or (`store` on PostgreSQL) in the store while other nodes
    /// serve it too.
    pub fn new(config: &ApiConfig, store: Option<Arc<Store>>) -> Self {
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
            shared: store.map(|store| Shared {
                store,
                clustered: AtomicBool::new(false),
                slices: Mutex::default(),
            }),
        }
    }

    /// Whether other live nodes serve the store (then the store's buckets count).
    pub fn set_clustered(&self, clustered: bool) {
        if let Some(shared) = &self.shared {
            if shared.clustered.swap(clustered, Ordering::SeqCst) != clustered {
                tracing::info!(
                    clustered,
                    "rate limits counted {}",
                    if clustered {
                        "in the store, for every node"
                    } else {
                        "on this node"
                    }
                );
            }
        }
    }

    /// Forgets identities whose buckets are full again (they carry no state worth keeping).
    pub fn shrink(&self) {
        for b in self.tiers.values().chain([&self.anonymous]) {
            b.limiter.retain_recent();
            b.limiter.shrink_to_fit();
        }
    }

    pub async fn check(&self, tier: Option<Tier>, key: &str) -> Decision {
        let b = match tier {
            Some(t) => &self.tiers[&t],
            None => &self.anonymous,
        };
        if let Some(shared) = &self.shared {
            if shared.clustered.load(Ordering::Relaxed) {
                let name = match tier {
                    Some(t) => format!("{}:{key}", t.as_str()),
                    None => format!("anonymous:{key}"),
                };
                match shared.check(&name, b).await {
                    Ok(decision) => return decision,
                    // The store unreachable: this node's own count keeps limiting.
                    Err(e) => tracing::warn!(error = %e.message, "shared rate limit unavailable"),
                }
            }
        }
        self.check_here(b, key)
    }

    fn check_here(&self, b: &Bucket, key: &str) -> Decision {
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

impl Shared {
    async fn check(&self, name: &str, b: &Bucket) -> enclave_core::Result<Decision> {
        let burst = b.burst;
        let per_ms = b.per_minute as f64 / 60_000.0;
        let refill = |missing: f64| Duration::from_secs_f64(missing.max(0.0) / per_ms / 1000.0);
        let decision = |left: u32, bucket_left: u32| Decision {
            limit: b.per_minute,
            remaining: (left + bucket_left).min(burst),
            reset_secs: refill(burst as f64 - (left + bucket_left) as f64)
                .as_secs_f64()
                .ceil() as u64,
            retry_after: None,
        };
        {
            let mut slices = self.slices.lock().unwrap();
            if let Some(s) = slices.get_mut(name) {
                if s.left > 0 && s.taken.elapsed() < SLICE_LIFE {
                    s.left -= 1;
                    return Ok(decision(s.left, s.bucket_left));
                }
            }
        }
        let taken = self
            .store
            .take_rate_tokens(name, burst as f64, per_ms, slice(burst), now_ms())
            .await?;
        if taken.granted == 0 {
            return Ok(Decision {
                limit: b.per_minute,
                remaining: 0,
                reset_secs: refill(burst as f64 - taken.left).as_secs_f64().ceil() as u64,
                retry_after: Some(refill(1.0 - taken.left)),
            });
        }
        let bucket_left = taken.left.floor() as u32;
        let left = taken.granted - 1;
        self.slices.lock().unwrap().insert(
            name.to_string(),
            Slice {
                left,
                taken: Instant::now(),
                bucket_left,
            },
        );
        Ok(decision(left, bucket_left))
    }
}

/// Starts the periodic clean-up of idle identities.
pub fn spawn_housekeeping(limits: Arc<RateLimits>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            limits.shrink();
            if let Some(shared) = &limits.shared {
                shared
                    .slices
                    .lock()
                    .unwrap()
                    .retain(|_, s| s.taken.elapsed() < SLICE_LIFE);
                // A bucket untouched for an hour is full again: nothing worth keeping.
                if let Err(e) = shared.store.purge_rate_buckets(now_ms() - 3_600_000).await {
                    tracing::warn!(error = %e.message, "rate bucket purge failed");
                }
            }
        }
    });
}

//! Stage 4's agent capability grants (docs/provisioning.md): a statement carrying an agent id
//! is held to that agent's grant in the environment — its actions, its tables (through
//! views, as the policy catalog knows them), its rate and its daily credits — after the key's
//! or person's own authorization, so a grant only ever narrows. An environment with
//! `settings.agents_require_capabilities` refuses agents without one any data.
//!
//! Grants are read per environment and kept until the store announces a change (from any
//! node). Rates are counted per node; daily credits come from the registry the audit writer
//! keeps (read again at most every second), so every node counts every node's statements.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use enclave_core::agent::Grant;
use enclave_core::billing::Credits;
use enclave_core::id::EnvId;
use enclave_core::policy::table::TableRef;
use enclave_core::query::Analyzed;
use enclave_core::Result;
use enclave_store::{EnvRecord, Invalidation, Store};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// A day's credits read from the registry are trusted this long.
const USAGE_TTL: Duration = Duration::from_secs(1);
const DAY_MS: i64 = 86_400_000;

type Grants = Arc<HashMap<String, Grant>>;

struct Rate {
    per_minute: u32,
    limiter: DefaultDirectRateLimiter,
}

struct Usage {
    day: i64,
    credits: Credits,
    read_at: Instant,
}

pub struct Capabilities {
    store: Arc<Store>,
    grants: RwLock<HashMap<EnvId, Grants>>,
    /// Bumped by every invalidation: grants read while one happened are not kept.
    generation: AtomicU64,
    rates: Mutex<HashMap<(EnvId, String), Rate>>,
    usage: Mutex<HashMap<(EnvId, String), Usage>>,
}

impl Capabilities {
    pub fn start(store: Arc<Store>) -> Arc<Capabilities> {
        let caps = Arc::new(Capabilities {
            store: store.clone(),
            grants: RwLock::default(),
            generation: AtomicU64::new(0),
            rates: Mutex::default(),
            usage: Mutex::default(),
        });
        let weak = Arc::downgrade(&caps);
        store.bus().on_publish(move |event| {
            let Some(caps) = weak.upgrade() else { return };
            match event {
                Invalidation::Capabilities { env_id } | Invalidation::Environment { env_id } => {
                    caps.generation.fetch_add(1, Ordering::SeqCst);
                    caps.grants.write().unwrap().remove(env_id);
                }
                Invalidation::All => {
                    caps.generation.fetch_add(1, Ordering::SeqCst);
                    caps.grants.write().unwrap().clear();
                }
                _ => {}
            }
        });
        caps
    }

    /// The environment's grants by agent id.
    async fn env_grants(&self, env_id: &EnvId) -> Result<Grants> {
        if let Some(g) = self.grants.read().unwrap().get(env_id) {
            return Ok(g.clone());
        }
        let read_at = self.generation.load(Ordering::SeqCst);
        let grants: Grants = Arc::new(
            self.store
                .env_capabilities(env_id)
                .await?
                .iter()
                .map(|r| (r.agent_id.clone(), r.grant()))
                .collect(),
        );
        if self.generation.load(Ordering::SeqCst) == read_at {
            self.grants
                .write()
                .unwrap()
                .insert(env_id.clone(), grants.clone());
        }
        Ok(grants)
    }

    /// The grant `agent` (none: no agent) acts under in `env` now, if any. Where the
    /// environment requires a grant, a statement of an agent without one is refused here
    /// unless it reads no data.
    pub async fn grant(
        &self,
        env: &EnvRecord,
        agent: Option<&str>,
        statement: &Analyzed,
    ) -> Result<Option<Grant>> {
        let Some(agent) = agent else { return Ok(None) };
        let grants = self.env_grants(&env.id).await?;
        let grant = grants
            .get(agent)
            .filter(|g| g.live_at(enclave_core::clock::now()));
        if grant.is_none() && env.settings.0.agents_require_capabilities {
            enclave_core::agent::ungranted(agent, statement.kind, &statement.tables)?;
        }
        Ok(grant.cloned())
    }

    /// Holds a statement to `grant`: its actions and tables (`reached`: what the statement's
    /// relations are and read through views), then — when it `runs` now — one of its
    /// statements a minute.
    pub fn admit(
        &self,
        env_id: &EnvId,
        grant: &Grant,
        statement: &Analyzed,
        reached: &[TableRef],
        runs: bool,
    ) -> Result<()> {
        grant.check(statement.kind, &statement.tables, reached)?;
        if let Some(per_minute) = grant.spec.max_queries_per_minute {
            if runs
                && enclave_core::agent::Action::of(statement.kind).is_some()
                && !self.take(env_id, &grant.agent_id, per_minute)
            {
                return Err(grant.rate_refusal(per_minute));
            }
        }
        Ok(())
    }

    /// One statement of the agent's rate, or `false` when its minute is used up.
    fn take(&self, env_id: &EnvId, agent: &str, per_minute: u32) -> bool {
        let mut rates = self.rates.lock().unwrap();
        let key = (env_id.clone(), agent.to_string());
        let rate = rates
            .entry(key)
            .and_modify(|r| {
                if r.per_minute != per_minute {
                    *r = rate(per_minute);
                }
            })
            .or_insert_with(|| rate(per_minute));
        rate.limiter.check().is_ok()
    }

    /// Stage 6 for an agent's statement estimated at `estimate`: refused when the grant's
    /// daily credits would be passed. An allowed statement's estimate counts on this node
    /// at once, until the registry (which the audit writer fills) is read again.
    pub async fn check_credits(
        &self,
        env_id: &EnvId,
        grant: &Grant,
        estimate: Credits,
    ) -> Result<()> {
        if grant.spec.max_credits_per_day.is_none() {
            return Ok(());
        }
        let used = self.used_today(env_id, &grant.agent_id).await?;
        grant.check_credits(used, estimate)?;
        let key = (env_id.clone(), grant.agent_id.clone());
        if let Some(u) = self.usage.lock().unwrap().get_mut(&key) {
            u.credits += estimate;
        }
        Ok(())
    }

    async fn used_today(&self, env_id: &EnvId, agent: &str) -> Result<Credits> {
        let now = enclave_core::clock::now_ms();
        let day = now - now.rem_euclid(DAY_MS);
        let key = (env_id.clone(), agent.to_string());
        if let Some(u) = self.usage.lock().unwrap().get(&key) {
            if u.day == day && u.read_at.elapsed() < USAGE_TTL {
                return Ok(u.credits);
            }
        }
        let credits = self
            .store
            .agent(env_id, agent)
            .await?
            .map_or(Credits::ZERO, |a| a.credits_on(day));
        self.usage.lock().unwrap().insert(
            key,
            Usage {
                day,
                credits,
                read_at: Instant::now(),
            },
        );
        Ok(credits)
    }
}

fn rate(per_minute: u32) -> Rate {
    let n = NonZeroU32::new(per_minute.max(1)).expect("at least 1");
    Rate {
        per_minute,
        limiter: RateLimiter::direct(Quota::per_minute(n)),
    }
}

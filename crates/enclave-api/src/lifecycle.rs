//! Lifecycle steps the system drives, not a request: API keys' expiry, and the environment
//! lifecycle's system-driven steps: a new environment turns `active` once its
//! data store is ready, and a deleted one is removed once its resources are gone. Both are
//! resumable — a node that died in between finishes them at its next start.
//!
//! The engine's per-environment storage (the embedded engine's database file, or the managed
//! PostgreSQL engine's database) is created before an environment turns `active` and removed
//! before the environment's rows go. An embedded environment's file is removed by its home
//! node: a deletion that reaches another node leaves the environment `decommissioning` until
//! the home node settles it (every [`SETTLE_EVERY`]).

use enclave_core::environment::{EnvStatus, Transition};
use enclave_core::id::EnvId;
use enclave_core::{Error, ErrorCode, Result};
use enclave_gateway::engine::Engines;
use enclave_store::{EnvRecord, Origin, Store};

/// Readies a `provisioning` environment's resources and marks it `active`.
pub async fn provision(store: &Store, engines: &Engines, env_id: &EnvId) -> Result<EnvRecord> {
    let env = store
        .environment(env_id)
        .await?
        .ok_or_else(|| Error::not_found("environment"))?;
    engines.provision(&env).await?;
    activate(store, env_id).await
}

/// Marks a provisioned environment `active`.
pub async fn activate(store: &Store, env_id: &EnvId) -> Result<EnvRecord> {
    match store
        .transition_environment(env_id, None, Transition::Activate, &Origin::system())
        .await
    {
        // Another node (settling at its start) activated it first.
        Err(e) if e.code == ErrorCode::Conflict => store
            .environment(env_id)
            .await?
            .ok_or_else(|| Error::not_found("environment")),
        other => other,
    }
}

/// Deletes an environment that could not be readied (its data copy failed): it never
/// became active, so nobody used it.
pub async fn abandon(store: &Store, engines: &Engines, env: &EnvRecord) -> Result<()> {
    let env = store
        .transition_environment(&env.id, None, Transition::Decommission, &Origin::system())
        .await?;
    decommission(store, engines, &env).await.map(|_| ())
}

/// Removes a `decommissioning` environment's resources, then the environment; one whose
/// embedded file is on another live node stays `decommissioning` for that node to finish
/// (`false`).
pub async fn decommission(store: &Store, engines: &Engines, env: &EnvRecord) -> Result<bool> {
    if !engines.remove(env).await? {
        return Ok(false);
    }
    store.purge_environment(&env.id).await?;
    Ok(true)
}

/// How often each node settles what is left to it (deletions of environments it is home to).
pub const SETTLE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Finishes what a previous run left half-done; returns how many environments it settled.
/// A failure is logged and left for the next start rather than stopping this one. With
/// `quiet_since`, an environment provisioning since after it is left alone: the request that
/// created it is still provisioning it.
pub async fn settle(store: &Store, engines: &Engines, quiet_since: Option<i64>) -> usize {
    let unsettled = match store.unsettled_environments().await {
        Ok(envs) => envs,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list unsettled environments");
            return 0;
        }
    };
    let mut settled = 0;
    for env in unsettled {
        if env.status == EnvStatus::Provisioning
            && quiet_since.is_some_and(|since| env.updated_at > since)
        {
            continue;
        }
        let id = env.id.clone();
        let done = match env.status {
            EnvStatus::Provisioning => provision(store, engines, &id).await.map(|_| true),
            EnvStatus::Decommissioning => decommission(store, engines, &env).await,
            _ => Ok(false),
        };
        match done {
            Ok(true) => settled += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(env_id = %id, error = %e, "environment lifecycle step failed"),
        }
    }
    settled
}

/// Every minute: writes `expired` for just-in-time requests unanswered for 24 hours and
/// grants past their end on `clock` (audited as the system's `jit.expired`, announced to
/// webhooks). Nobody waits for it: the role a grant gives is compared with the clock on every
/// request and statement.
pub fn spawn_jit_housekeeping(store: std::sync::Arc<Store>, clock: enclave_core::clock::Clock) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            match store.expire_jit_requests(clock.now_ms()).await {
                Ok(rows) => {
                    for r in rows {
                        tracing::info!(event = "jit.expired", request_id = %r.id,
                            env_id = %r.env_id, requester_id = %r.requester_id,
                            "just-in-time request expired");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "just-in-time expiry failed"),
            }
        }
    });
}

/// Every minute: writes `expired` for keys past their expiry or rotation grace (each one's
/// cache entries drop on every node), and notices keys expiring within
/// [`enclave_core::api_key::EXPIRING_NOTICE_DAYS`] once each. The store audits both (actor
/// `system`) and queues the `key.expiring` webhook event with the notice.
pub fn spawn_key_housekeeping(store: std::sync::Arc<Store>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            let now = enclave_core::clock::now_ms();
            match store.expire_api_keys(now).await {
                Ok(ids) if !ids.is_empty() => tracing::info!(keys = ?ids, "API keys expired"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "API key expiry failed"),
            }
            let horizon = now + enclave_core::api_key::EXPIRING_NOTICE_DAYS * 86_400_000;
            match store.notice_expiring_api_keys(horizon).await {
                Ok(keys) => {
                    for k in keys {
                        tracing::info!(event = "key.expiring", key_id = %k.id, env_id = %k.env_id,
                            expires_at = ?k.expires_at, "API key expires within 7 days");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "API key expiry notice failed"),
            }
        }
    });
}

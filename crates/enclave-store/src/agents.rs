//! The agent registry and capability grants. The registry is written only with the query
//! audit (`record_agents`, in the transaction of each batch): no write per statement. A grant
//! is written like a policy — the environment row locked, the content kept with every version,
//! audited — and publishes `Invalidation::Capabilities`, so every node's gateway reads the
//! environment's grants again before its next statement.

use std::collections::BTreeMap;

use enclave_core::agent::CapabilitySpec;
use enclave_core::clock::now_ms;
use enclave_core::id::{new_id, EnvId, Kind};
use enclave_core::query::audit::QueryAuditEntry;
use enclave_core::{Error, Result};
use serde_json::{json, Value};
use sqlx::types::Json;

use crate::db::{self, Tx};
use crate::db_error::internal;
use crate::journal::*;
use crate::policies::writable_env;
use crate::records::*;
use crate::store::Store;
use crate::Invalidation;

const AGENT_COLUMNS: &str = "env_id, agent_id, framework, first_seen_at, last_seen_at, \
     query_count, credits_milli, day, credits_day_milli";
pub(crate) const CAPABILITY_COLUMNS: &str =
    "id, org_id, env_id, agent_id, spec, version, created_by, created_at, updated_at";

const DAY_MS: i64 = 86_400_000;

impl Audited for CapabilityRecord {
    const RESOURCE_TYPE: &'static str = "agent_capability";
    fn org_id(&self) -> &str {
        &self.org_id
    }
    fn resource_id(&self) -> &str {
        &self.id
    }
    fn env_id(&self) -> Option<&str> {
        Some(&self.env_id)
    }
    fn audit(&self) -> Value {
        let mut view = serde_json::to_value(&self.spec.0).unwrap_or_default();
        view["grant_id"] = json!(self.id);
        view["agent_id"] = json!(self.agent_id);
        view["env_id"] = json!(self.env_id);
        view["version"] = json!(self.version);
        view
    }
}

/// What one batch adds to one agent's row.
struct Seen {
    framework: Option<String>,
    first: i64,
    last: i64,
    count: i64,
    credits: i64,
}

/// Adds the statements of `entries` that carry an agent id to the registry, one upsert per
/// agent, environment and UTC day in the batch. Entries carry their time as RFC 3339.
pub(crate) async fn record_agents(tx: &mut Tx, entries: &[QueryAuditEntry]) -> Result<()> {
    let mut seen: BTreeMap<(EnvId, String, i64), Seen> = BTreeMap::new();
    for e in entries {
        let Some(agent_id) = e.agent.id.as_ref() else {
            continue;
        };
        let at = chrono::DateTime::parse_from_rfc3339(&e.created_at)
            .map(|t| t.timestamp_millis())
            .unwrap_or_else(|_| now_ms());
        let day = at - at.rem_euclid(DAY_MS);
        let s = seen
            .entry((e.env_id.clone(), agent_id.clone(), day))
            .or_insert(Seen {
                framework: None,
                first: at,
                last: at,
                count: 0,
                credits: 0,
            });
        if e.agent.framework.is_some() {
            s.framework = e.agent.framework.clone();
        }
        s.first = s.first.min(at);
        s.last = s.last.max(at);
        s.count += 1;
        s.credits += e.credits_consumed.milli() as i64;
    }
    for ((env_id, agent_id, day), s) in seen {
        db::query(
            "INSERT INTO agents (env_id, agent_id, framework, first_seen_at, last_seen_at, \
             query_count, credits_milli, day, credits_day_milli) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7) \
             ON CONFLICT (env_id, agent_id) DO UPDATE SET \
             framework = COALESCE(excluded.framework, agents.framework), \
             first_seen_at = CASE WHEN excluded.first_seen_at < agents.first_seen_at \
                 THEN excluded.first_seen_at ELSE agents.first_seen_at END, \
             last_seen_at = CASE WHEN excluded.last_seen_at > agents.last_seen_at \
                 THEN excluded.last_seen_at ELSE agents.last_seen_at END, \
             query_count = agents.query_count + excluded.query_count, \
             credits_milli = agents.credits_milli + excluded.credits_milli, \
             credits_day_milli = CASE WHEN agents.day = excluded.day \
                 THEN agents.credits_day_milli + excluded.credits_day_milli \
                 WHEN agents.day > excluded.day THEN agents.credits_day_milli \
                 ELSE excluded.credits_day_milli END, \
             day = CASE WHEN excluded.day > agents.day THEN excluded.day ELSE agents.day END",
        )
        .bind(&env_id)
        .bind(&agent_id)
        .bind(&s.framework)
        .bind(s.first)
        .bind(s.last)
        .bind(s.count)
        .bind(s.credits)
        .bind(day)
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
    }
    Ok(())
}

impl Store {
    /// The environment's agents by id (keyset on it), with the number of them.
    pub async fn agents(
        &self,
        env_id: &EnvId,
        page: &PageQuery,
    ) -> Result<(Vec<AgentRecord>, i64)> {
        let rows = db::query_as(format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE env_id = $1 \
             AND ($2 IS NULL OR agent_id > $2) ORDER BY agent_id LIMIT $3"
        ))
        .bind(env_id)
        .bind(page.after.as_deref())
        .bind(i64::from(page.limit) + 1)
        .fetch_all(self.reader())
        .await
        .map_err(internal)?;
        let total = db::query_scalar("SELECT COUNT(*) FROM agents WHERE env_id = $1")
            .bind(env_id)
            .fetch_one(self.reader())
            .await
            .map_err(internal)?;
        Ok((rows, total))
    }

    pub async fn agent(&self, env_id: &EnvId, agent_id: &str) -> Result<Option<AgentRecord>> {
        db::query_as(format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE env_id = $1 AND agent_id = $2"
        ))
        .bind(env_id)
        .bind(agent_id)
        .fetch_optional(self.reader())
        .await
        .map_err(internal)
    }

    /// Saves `spec` as the agent's grant (a new one, or the next version of its grant);
    /// audited as `agent_capability.granted` / `.updated`. Content equal to the current one
    /// changes nothing. 404 / 409 as other writes of a locked or departing environment.
    pub async fn grant_capabilities(
        &self,
        env_id: &EnvId,
        agent_id: &str,
        spec: CapabilitySpec,
        origin: &Origin,
    ) -> Result<CapabilityRecord> {
        let mut tx = self.begin_write().await?;
        let env = writable_env(&mut tx, env_id).await?;
        let before = select_capabilities(&mut tx, env_id, agent_id).await?;
        if let Some(same) = before.as_ref().filter(|b| b.spec.0 == spec) {
            return Ok(same.clone());
        }
        let rec = save_capabilities(
            &mut tx,
            &env.org_id,
            env_id,
            agent_id,
            spec,
            &origin.actor.id,
            before.as_ref(),
        )
        .await?;
        let action = match before {
            Some(_) => "agent_capability.updated",
            None => "agent_capability.granted",
        };
        journal(
            &mut tx,
            origin,
            Change::of(action, before.as_ref(), Some(&rec)),
        )
        .await?;
        self.commit(
            tx,
            vec![Invalidation::Capabilities {
                env_id: env_id.clone(),
            }],
        )
        .await?;
        Ok(rec)
    }

    /// Removes the agent's grant (audited as `agent_capability.revoked`); 404 without one.
    pub async fn revoke_capabilities(
        &self,
        env_id: &EnvId,
        agent_id: &str,
        origin: &Origin,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        writable_env(&mut tx, env_id).await?;
        let Some(before) = select_capabilities(&mut tx, env_id, agent_id).await? else {
            return Err(Error::not_found("capability_grant"));
        };
        db::query("DELETE FROM agent_capabilities WHERE id = $1")
            .bind(&before.id)
            .execute(&mut tx)
            .await
            .map_err(internal)?;
        journal(
            &mut tx,
            origin,
            Change::of("agent_capability.revoked", Some(&before), None),
        )
        .await?;
        self.commit(
            tx,
            vec![Invalidation::Capabilities {
                env_id: env_id.clone(),
            }],
        )
        .await
    }

    pub async fn capabilities(
        &self,
        env_id: &EnvId,
        agent_id: &str,
    ) -> Result<Option<CapabilityRecord>> {
        db::query_as(format!(
            "SELECT {CAPABILITY_COLUMNS} FROM agent_capabilities WHERE env_id = $1 AND agent_id = $2"
        ))
        .bind(env_id)
        .bind(agent_id)
        .fetch_optional(self.reader())
        .await
        .map_err(internal)
    }

    /// Every grant of the environment, by agent: what the gateway, promotion, clone and diff
    /// read.
    pub async fn env_capabilities(&self, env_id: &EnvId) -> Result<Vec<CapabilityRecord>> {
        db::query_as(format!(
            "SELECT {CAPABILITY_COLUMNS} FROM agent_capabilities WHERE env_id = $1 ORDER BY agent_id"
        ))
        .bind(env_id)
        .fetch_all(self.reader())
        .await
        .map_err(internal)
    }

    /// A grant's saved versions, newest first (keyset on the version).
    pub async fn capability_versions(
        &self,
        grant_id: &str,
        page: &PageQuery,
    ) -> Result<(Vec<CapabilityVersionRecord>, i64)> {
        let after = page.after_number()?;
        let rows = db::query_as(
            "SELECT grant_id, version, spec, created_by, created_at FROM agent_capability_versions \
             WHERE grant_id = $1 AND ($2 IS NULL OR version < $2) ORDER BY version DESC LIMIT $3",
        )
        .bind(grant_id)
        .bind(after)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(self.reader())
        .await
        .map_err(internal)?;
        let total =
            db::query_scalar("SELECT COUNT(*) FROM agent_capability_versions WHERE grant_id = $1")
                .bind(grant_id)
                .fetch_one(self.reader())
                .await
                .map_err(internal)?;
        Ok((rows, total))
    }
}

/// The agent's grant as it is before a change.
pub(crate) async fn select_capabilities(
    tx: &mut Tx,
    env_id: &EnvId,
    agent_id: &str,
) -> Result<Option<CapabilityRecord>> {
    db::query_as(format!(
        "SELECT {CAPABILITY_COLUMNS} FROM agent_capabilities WHERE env_id = $1 AND agent_id = $2"
    ))
    .bind(env_id)
    .bind(agent_id)
    .fetch_optional(tx)
    .await
    .map_err(internal)
}

/// Writes `spec` as the agent's grant — inserted, or the next version of `before` — and
/// appends the version; not audited (callers journal the change their way).
pub(crate) async fn save_capabilities(
    tx: &mut Tx,
    org_id: &str,
    env_id: &EnvId,
    agent_id: &str,
    spec: CapabilitySpec,
    by: &str,
    before: Option<&CapabilityRecord>,
) -> Result<CapabilityRecord> {
    let now = now_ms();
    let rec: CapabilityRecord = match before {
        Some(b) => db::query_as(format!(
            "UPDATE agent_capabilities SET spec = $2, version = version + 1, updated_at = $3 \
             WHERE id = $1 RETURNING {CAPABILITY_COLUMNS}"
        ))
        .bind(&b.id)
        .bind(Json(&spec))
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(internal)?,
        None => db::query_as(format!(
            "INSERT INTO agent_capabilities (id, org_id, env_id, agent_id, spec, version, \
             created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $7) \
             RETURNING {CAPABILITY_COLUMNS}"
        ))
        .bind(new_id(Kind::Capability))
        .bind(org_id)
        .bind(env_id)
        .bind(agent_id)
        .bind(Json(&spec))
        .bind(by)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(internal)?,
    };
    db::query(
        "INSERT INTO agent_capability_versions (grant_id, version, spec, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&rec.id)
    .bind(rec.version)
    .bind(Json(&spec))
    .bind(by)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(internal)?;
    Ok(rec)
}

/// Writes `spec` as `agent_id`'s grant in `env` (a clone's copy, a promotion's write) and
/// journals it, in `tx`; the caller announces `Invalidation::Capabilities`.
pub(crate) async fn copy_capabilities(
    tx: &mut Tx,
    origin: &Origin,
    env: &EnvRecord,
    agent_id: &str,
    spec: CapabilitySpec,
) -> Result<()> {
    let before = select_capabilities(tx, &env.id, agent_id).await?;
    let rec = save_capabilities(
        tx,
        &env.org_id,
        &env.id,
        agent_id,
        spec,
        &origin.actor.id,
        before.as_ref(),
    )
    .await?;
    let action = match before {
        Some(_) => "agent_capability.updated",
        None => "agent_capability.granted",
    };
    journal(tx, origin, Change::of(action, before.as_ref(), Some(&rec))).await
}

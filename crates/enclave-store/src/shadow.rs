//! Shadow environments: each environment's shadowing configuration, the running counts of its
//! last start and its latest mismatches. The gateway's replay worker reports comparisons in
//! batches (`record_shadow`): no store write on the path of the statement replayed.

use std::collections::BTreeMap;

use enclave_core::clock::now_ms;
use enclave_core::id::{new_id, EnvId, Kind};
use enclave_core::shadow::{ShadowMismatch, ShadowSpec, Verdict, KEPT_MISMATCHES};
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

const SHADOW_COLUMNS: &str = "env_id, org_id, target_env_id, spec, created_by, created_at";
const STATS_COLUMNS: &str = "env_id, target_env_id, since, matches, mismatches, errors, \
     dropped, primary_ms_total, shadow_ms_total";

impl Audited for ShadowRecord {
    const RESOURCE_TYPE: &'static str = "shadow";
    fn org_id(&self) -> &str {
        &self.org_id
    }
    fn resource_id(&self) -> &str {
        &self.env_id
    }
    fn env_id(&self) -> Option<&str> {
        Some(&self.env_id)
    }
    fn audit(&self) -> Value {
        let mut view = serde_json::to_value(&self.spec.0).unwrap_or_default();
        view["env_id"] = json!(self.env_id);
        view
    }
}

impl Store {
    /// Starts (or restarts with new settings) shadowing `env_id` into the spec's target, which
    /// must be an active environment of the same organization (404 otherwise); the counts and
    /// kept mismatches start again. Audited as `shadow.started`.
    pub async fn start_shadow(
        &self,
        env_id: &EnvId,
        spec: ShadowSpec,
        origin: &Origin,
    ) -> Result<ShadowRecord> {
        let mut tx = self.begin_write().await?;
        let env = writable_env(&mut tx, env_id).await?;
        let target: Option<(String, String)> =
            db::query_as("SELECT org_id, status FROM environments WHERE id = $1")
                .bind(&spec.target_env_id)
                .fetch_optional(&mut tx)
                .await
                .map_err(internal)?;
        match target {
            Some((org, status)) if org == env.org_id.as_str() && status != "decommissioning" => {}
            _ => return Err(Error::not_found("target environment")),
        }
        let before = select_shadow(&mut tx, env_id).await?;
        let now = now_ms();
        let rec: ShadowRecord = db::query_as(format!(
            "INSERT INTO shadow_configs (env_id, org_id, target_env_id, spec, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (env_id) DO UPDATE SET target_env_id = excluded.target_env_id, \
             spec = excluded.spec, created_by = excluded.created_by, created_at = excluded.created_at \
             RETURNING {SHADOW_COLUMNS}"
        ))
        .bind(env_id)
        .bind(&env.org_id)
        .bind(&spec.target_env_id)
        .bind(Json(&spec))
        .bind(&origin.actor.id)
        .bind(now)
        .fetch_one(&mut tx)
        .await
        .map_err(internal)?;
        db::query(
            "INSERT INTO shadow_stats (env_id, target_env_id, since, matches, mismatches, errors, \
             dropped, primary_ms_total, shadow_ms_total) VALUES ($1, $2, $3, 0, 0, 0, 0, 0, 0) \
             ON CONFLICT (env_id) DO UPDATE SET target_env_id = excluded.target_env_id, \
             since = excluded.since, matches = 0, mismatches = 0, errors = 0, dropped = 0, \
             primary_ms_total = 0, shadow_ms_total = 0",
        )
        .bind(env_id)
        .bind(&spec.target_env_id)
        .bind(now)
        .execute(&mut tx)
        .await
        .map_err(internal)?;
        db::query("DELETE FROM shadow_mismatches WHERE env_id = $1")
            .bind(env_id)
            .execute(&mut tx)
            .await
            .map_err(internal)?;
        journal(
            &mut tx,
            origin,
            Change::of("shadow.started", before.as_ref(), Some(&rec)),
        )
        .await?;
        self.commit(
            tx,
            vec![Invalidation::Shadow {
                env_id: env_id.clone(),
            }],
        )
        .await?;
        Ok(rec)
    }

    /// Stops shadowing `env_id` (404 when it is not shadowed); its report stays readable
    /// until the next start. Audited as `shadow.stopped`.
    pub async fn stop_shadow(&self, env_id: &EnvId, origin: &Origin) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let Some(before) = select_shadow(&mut tx, env_id).await? else {
            return Err(Error::not_found("shadow"));
        };
        db::query("DELETE FROM shadow_configs WHERE env_id = $1")
            .bind(env_id)
            .execute(&mut tx)
            .await
            .map_err(internal)?;
        journal(
            &mut tx,
            origin,
            Change::of("shadow.stopped", Some(&before), None),
        )
        .await?;
        self.commit(
            tx,
            vec![Invalidation::Shadow {
                env_id: env_id.clone(),
            }],
        )
        .await
    }

    pub async fn shadow(&self, env_id: &EnvId) -> Result<Option<ShadowRecord>> {
        db::query_as(format!(
            "SELECT {SHADOW_COLUMNS} FROM shadow_configs WHERE env_id = $1"
        ))
        .bind(env_id)
        .fetch_optional(self.reader())
        .await
        .map_err(internal)
    }

    /// Adds a batch of replays' comparisons and of statements dropped unreplayed (by
    /// environment) to the environments' counts, keeping the latest mismatches, in one
    /// transaction. Environments no longer shadowed since their last start still count.
    pub async fn record_shadow(
        &self,
        results: Vec<ShadowResult>,
        dropped: &BTreeMap<EnvId, i64>,
    ) -> Result<()> {
        #[derive(Default)]
        struct Sums {
            matches: i64,
            mismatches: i64,
            errors: i64,
            dropped: i64,
            primary_ms: i64,
            shadow_ms: i64,
            kept: Vec<ShadowMismatch>,
        }
        let mut by_env: BTreeMap<EnvId, Sums> = BTreeMap::new();
        for r in results {
            let s = by_env.entry(r.env_id).or_default();
            match r.verdict {
                Verdict::Match => s.matches += 1,
                Verdict::Mismatch => s.mismatches += 1,
                Verdict::Error => s.errors += 1,
            }
            s.primary_ms += r.detail.primary.duration_ms;
            s.shadow_ms += r.detail.shadow.duration_ms;
            if r.verdict != Verdict::Match {
                s.kept.push(r.detail);
            }
        }
        for (env_id, n) in dropped {
            by_env.entry(env_id.clone()).or_default().dropped += n;
        }
        if by_env.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for (env_id, s) in by_env {
            db::query(
                "UPDATE shadow_stats SET matches = matches + $2, mismatches = mismatches + $3, \
                 errors = errors + $4, dropped = dropped + $5, \
                 primary_ms_total = primary_ms_total + $6, shadow_ms_total = shadow_ms_total + $7 \
                 WHERE env_id = $1",
            )
            .bind(&env_id)
            .bind(s.matches)
            .bind(s.mismatches)
            .bind(s.errors)
            .bind(s.dropped)
            .bind(s.primary_ms)
            .bind(s.shadow_ms)
            .execute(&mut tx)
            .await
            .map_err(internal)?;
            if !s.kept.is_empty() {
                keep_mismatches(&mut tx, &env_id, s.kept).await?;
            }
        }
        tx.commit().await.map_err(internal)
    }

    /// The counts since the last start and the latest kept mismatches, newest first; `None`
    /// when the environment was never shadowed.
    pub async fn shadow_report(
        &self,
        env_id: &EnvId,
        latest: i64,
    ) -> Result<Option<(ShadowStatsRecord, Vec<ShadowMismatch>)>> {
        let stats: Option<ShadowStatsRecord> = db::query_as(format!(
            "SELECT {STATS_COLUMNS} FROM shadow_stats WHERE env_id = $1"
        ))
        .bind(env_id)
        .fetch_optional(self.reader())
        .await
        .map_err(internal)?;
        let Some(stats) = stats else { return Ok(None) };
        let rows: Vec<(Json<ShadowMismatch>,)> = db::query_as(
            "SELECT entry FROM shadow_mismatches WHERE env_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(env_id)
        .bind(latest)
        .fetch_all(self.reader())
        .await
        .map_err(internal)?;
        Ok(Some((stats, rows.into_iter().map(|(m,)| m.0).collect())))
    }
}

async fn select_shadow(tx: &mut Tx, env_id: &EnvId) -> Result<Option<ShadowRecord>> {
    db::query_as(format!(
        "SELECT {SHADOW_COLUMNS} FROM shadow_configs WHERE env_id = $1"
    ))
    .bind(env_id)
    .fetch_optional(tx)
    .await
    .map_err(internal)
}

/// Appends `kept` to the environment's mismatches and forgets all but the latest
/// [`KEPT_MISMATCHES`].
async fn keep_mismatches(tx: &mut Tx, env_id: &EnvId, kept: Vec<ShadowMismatch>) -> Result<()> {
    let now = now_ms();
    for m in kept {
        db::query(
            "INSERT INTO shadow_mismatches (id, env_id, created_at, entry) VALUES ($1, $2, $3, $4)",
        )
        .bind(new_id(Kind::ShadowResult))
        .bind(env_id)
        .bind(now)
        .bind(Json(&m))
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
    }
    db::query(
        "DELETE FROM shadow_mismatches WHERE env_id = $1 AND id NOT IN \
         (SELECT id FROM shadow_mismatches WHERE env_id = $1 ORDER BY id DESC LIMIT $2)",
    )
    .bind(env_id)
    .bind(KEPT_MISMATCHES)
    .execute(&mut *tx)
    .await
    .map_err(internal)?;
    Ok(())
}

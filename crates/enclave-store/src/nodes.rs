//! The nodes serving this store and the home node of each embedded environment: the node
//! whose data directory holds its database file, the only one that may answer for it.
//! Heartbeats are plain writes outside the audit: they describe the servers, not anyone's
//! data or configuration.

use enclave_core::id::{EnvId, NodeId};
use enclave_core::Result;

use crate::db;
use crate::db_error::internal;
use crate::records::*;
use crate::store::Store;
use crate::Invalidation;

const NODE_COLUMNS: &str = "id, name, api_url, gateway_addr, started_at, heartbeat_at, stopped_at";

/// How long a node may go without a heartbeat before the others call it gone.
pub const NODE_GONE_AFTER_MS: i64 = 30_000;

impl Store {
    /// Records this node as started (again) at `now`: its name and addresses as they are now.
    pub async fn register_node(&self, node: &NewNode, now: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        db::query(
            "INSERT INTO nodes (id, name, api_url, gateway_addr, started_at, heartbeat_at) \
             VALUES ($1, $2, $3, $4, $5, $5) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, api_url = excluded.api_url, \
             gateway_addr = excluded.gateway_addr, started_at = excluded.started_at, \
             heartbeat_at = excluded.heartbeat_at, stopped_at = NULL",
        )
        .bind(&node.id)
        .bind(&node.name)
        .bind(&node.api_url)
        .bind(&node.gateway_addr)
        .bind(now)
        .execute(&mut tx)
        .await
        .map_err(internal)?;
        self.commit(tx, vec![Invalidation::Nodes]).await
    }

    /// This node is alive at `now`.
    pub async fn node_heartbeat(&self, node_id: &NodeId, now: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        db::query("UPDATE nodes SET heartbeat_at = $2, stopped_at = NULL WHERE id = $1")
            .bind(node_id)
            .bind(now)
            .execute(&mut tx)
            .await
            .map_err(internal)?;
        self.commit(tx, vec![]).await
    }

    /// This node stopped on purpose at `now` (the others need not wait for its heartbeat to
    /// go stale to say so).
    pub async fn node_stopped(&self, node_id: &NodeId, now: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        db::query("UPDATE nodes SET stopped_at = $2 WHERE id = $1")
            .bind(node_id)
            .bind(now)
            .execute(&mut tx)
            .await
            .map_err(internal)?;
        self.commit(tx, vec![Invalidation::Nodes]).await
    }

    pub async fn node(&self, node_id: &NodeId) -> Result<Option<NodeRecord>> {
        db::query_as(format!("SELECT {NODE_COLUMNS} FROM nodes WHERE id = $1"))
            .bind(node_id)
            .fetch_optional(self.reader())
            .await
            .map_err(internal)
    }

    /// Every node that ever registered, by id.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        db::query_as(format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY id"))
            .fetch_all(self.reader())
            .await
            .map_err(internal)
    }

    /// Nodes alive at `now`: a heartbeat within [`NODE_GONE_AFTER_MS`] and not stopped.
    pub async fn live_node_count(&self, now: i64) -> Result<i64> {
        db::query_scalar(
            "SELECT COUNT(*) FROM nodes WHERE stopped_at IS NULL AND heartbeat_at > $1",
        )
        .bind(now - NODE_GONE_AFTER_MS)
        .fetch_one(self.reader())
        .await
        .map_err(internal)
    }

    /// Makes `node_id` the environment's home node unless it already has one; answers the
    /// home node it has afterwards (`None` when the environment is gone).
    pub async fn claim_home_node(
        &self,
        env_id: &EnvId,
        node_id: &NodeId,
    ) -> Result<Option<NodeId>> {
        let mut tx = self.begin_write().await?;
        let claimed =
            db::query("UPDATE environments SET home_node = $2 WHERE id = $1 AND home_node IS NULL")
                .bind(env_id)
                .bind(node_id)
                .execute(&mut tx)
                .await
                .map_err(internal)?;
        let home: Option<Option<NodeId>> =
            db::query_scalar("SELECT home_node FROM environments WHERE id = $1")
                .bind(env_id)
                .fetch_optional(&mut tx)
                .await
                .map_err(internal)?;
        let events = if claimed.rows_affected() > 0 {
            vec![Invalidation::Environment {
                env_id: env_id.clone(),
            }]
        } else {
            vec![]
        };
        self.commit(tx, events).await?;
        Ok(home.flatten())
    }

    /// Embedded environments no node has claimed yet (created before nodes were recorded):
    /// a node claims those whose database file it holds when it starts.
    pub async fn unclaimed_environments(&self) -> Result<Vec<EnvId>> {
        db::query_scalar("SELECT id FROM environments WHERE home_node IS NULL ORDER BY id")
            .fetch_all(self.reader())
            .await
            .map_err(internal)
    }
}

impl Store {
    /// Points an environment at the managed PostgreSQL engine once its data has been copied
    /// there: `settings.engine` becomes `postgres` without `engine_secret`, and it no longer
    /// has a home node. Refused (409) unless the environment is still embedded, active,
    /// unlocked and at `expected_version` (the version the copy started from: a settings
    /// change in between fails the move rather than being lost). Audited as
    /// `environment.engine_moved`, with the tables and rows moved in the entry.
    pub async fn switch_to_managed_engine(
        &self,
        env_id: &EnvId,
        expected_version: i64,
        moved: serde_json::Value,
        origin: &crate::Origin,
    ) -> Result<EnvRecord> {
        use enclave_core::environment::{EngineKind, Placement};
        let mut tx = self.begin_write().await?;
        let cur = crate::policies::writable_env(&mut tx, env_id).await?;
        crate::db_error::check_if_match("environment", Some(expected_version), cur.version)?;
        if cur.settings.0.placement() != Placement::Embedded {
            return Err(enclave_core::Error::conflict(
                "not_embedded",
                "the environment's data is not on the embedded engine",
            ));
        }
        let settings = enclave_core::environment::EnvSettings {
            engine: EngineKind::Postgres,
            engine_secret: None,
            ..cur.settings.0.clone()
        };
        let rec: EnvRecord = db::query_as(format!(
            "UPDATE environments SET settings = $2, home_node = NULL, updated_at = $3, \
             version = version + 1 WHERE id = $1 RETURNING {}",
            crate::environments::ENV_COLUMNS
        ))
        .bind(env_id)
        .bind(sqlx::types::Json(settings))
        .bind(enclave_core::clock::now_ms())
        .fetch_one(&mut tx)
        .await
        .map_err(internal)?;
        let mut change = crate::Change::of("environment.engine_moved", Some(&cur), Some(&rec));
        change.after["moved"] = moved;
        crate::journal::journal(&mut tx, origin, change).await?;
        self.commit(
            tx,
            vec![Invalidation::Environment {
                env_id: env_id.clone(),
            }],
        )
        .await?;
        Ok(rec)
    }

    /// Writes to the audit trail what a clone copied into its new environment's database
    /// from its source (`copied`: the source, its tables with their rows, its views).
    pub async fn record_data_copy(
        &self,
        env_id: &EnvId,
        copied: serde_json::Value,
        origin: &crate::Origin,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let rec = crate::environments::select_env(&mut tx, env_id).await?;
        let mut change = crate::Change::of("environment.data_copied", None, Some(&rec));
        change.after = serde_json::json!({ "copied": copied });
        crate::journal::journal(&mut tx, origin, change).await?;
        self.commit(tx, vec![]).await
    }
}

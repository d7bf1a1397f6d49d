//! Moving an environment's data from the embedded engine to the managed PostgreSQL engine,
//! on the environment's home node: statements wait outside while the tables are copied (one
//! PostgreSQL transaction, row counts compared), then the environment points at its new
//! database in one audited change and the DuckDB file is removed. A move that fails leaves
//! the environment as it was.

use std::time::Duration;

use enclave_core::environment::{check_writable, EngineKind, Placement};
use enclave_core::{Error, Result};
use enclave_gateway::engine::transfer::{self, MovePlan, PgSink};
use enclave_store::{EnvRecord, Invalidation, Origin};
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// How long a move waits for the environment's running statements to end.
const PATIENCE: Duration = Duration::from_secs(30);

/// What a move did, or (dry run) would do.
#[derive(Serialize, ToSchema)]
pub struct EngineMove {
    pub env_id: enclave_core::id::EnvId,
    pub dry_run: bool,
    /// Where the data goes: `postgres`, the managed engine.
    pub engine: &'static str,
    /// The managed engine's database (and role) the data goes to.
    pub database: String,
    #[serde(flatten)]
    pub plan: MovePlan,
    /// Rows in all the tables.
    pub rows: u64,
    /// The environment's version after the move (null in a dry run).
    pub version: Option<i64>,
}

/// Moves `env`'s embedded data to the managed engine (or, `dry_run`, says what would move).
pub async fn to_managed(
    state: &AppState,
    env: EnvRecord,
    dry_run: bool,
    origin: &Origin,
) -> Result<EngineMove> {
    let engines = state.gateway.engines();
    let managed = engines.managed.clone().ok_or_else(|| {
        Error::validation(
            "engine",
            "managed_engine",
            "this server has no managed PostgreSQL engine to move data to (--engine-postgres-url)",
        )
    })?;
    if env.settings.0.placement() != Placement::Embedded {
        return Err(Error::conflict(
            "not_embedded",
            "the environment's data is not on the embedded engine: there is nothing to move",
        ));
    }
    check_writable(env.locked, env.status, false)?;
    // Only the home node holds the file (elsewhere: 421 naming it).
    engines.home.check(&env).await?;
    let database = enclave_gateway::engine::managed_postgres::ManagedPostgres::name(&env.id);
    if dry_run {
        let mut source = engines.connect(&env).await?;
        let plan = plan_of(engines, source.as_mut()).await?;
        return Ok(EngineMove {
            env_id: env.id,
            dry_run,
            engine: "postgres",
            database,
            rows: plan.rows(),
            plan,
            version: None,
        });
    }

    let gate = state.gateway.close_for_move(&env.id, PATIENCE).await?;
    // What the copy starts from: a change after this fails the switch instead of being lost.
    let env = state
        .store
        .environment(&env.id)
        .await?
        .ok_or_else(|| Error::not_found("environment"))?;
    let mut source = engines.connect(&env).await?;
    let plan = plan_of(engines, source.as_mut()).await?;
    // A fresh database: whatever an earlier, failed move left is gone.
    managed.drop_database(&env.id).await?;
    managed.provision(&env.id).await?;
    let copied = async {
        let mut target = PgSink::new(managed.connect(&env.id).await?);
        transfer::copy(source.as_mut(), &mut target, &plan).await?;
        let mut moved = plan.summary();
        moved["database"] = serde_json::json!(database);
        state
            .store
            .switch_to_managed_engine(&env.id, env.version, moved, origin)
            .await
    }
    .await;
    let rec = match copied {
        Ok(rec) => rec,
        Err(e) => {
            if let Err(cleanup) = managed.drop_database(&env.id).await {
                tracing::warn!(env_id = %env.id, error = %cleanup.message, "cannot drop a failed move's database");
            }
            return Err(e);
        }
    };
    drop(source);
    // The data is in PostgreSQL and the environment points there: the file goes.
    if let Err(e) = engines.embedded.remove(&env.id).await {
        tracing::warn!(env_id = %env.id, error = %e.message, "cannot remove a moved environment's file");
    }
    state
        .store
        .announce(vec![
            Invalidation::Catalog {
                env_id: env.id.clone(),
            },
            Invalidation::Data {
                env_id: env.id.clone(),
            },
        ])
        .await?;
    drop(gate);
    tracing::info!(env_id = %env.id, tables = plan.tables.len(), rows = plan.rows(), "environment data moved to the managed PostgreSQL engine");
    Ok(EngineMove {
        env_id: rec.id,
        dry_run,
        engine: "postgres",
        database,
        rows: plan.rows(),
        plan,
        version: Some(rec.version),
    })
}

/// What moving the embedded data `source` reads would copy.
async fn plan_of(
    engines: &enclave_gateway::engine::Engines,
    source: &mut dyn enclave_gateway::engine::EngineConnection,
) -> Result<MovePlan> {
    transfer::plan(
        source,
        engines.embedded.catalog_query(),
        EngineKind::Duckdb,
        EngineKind::Postgres,
    )
    .await
}

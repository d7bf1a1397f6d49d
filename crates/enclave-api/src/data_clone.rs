//! A clone that copies its source's data (`include: ["data"]`): the new environment's
//! database is filled from one snapshot of the source before the environment becomes
//! active, and a copy that fails deletes the new environment again. The source keeps
//! serving statements throughout: it is only read, inside a transaction of its own.
//!
//! Data goes DuckDB → DuckDB (an embedded source, the clone embedded on the same node),
//! DuckDB → managed PostgreSQL, and PostgreSQL → managed PostgreSQL. Tables (columns, types,
//! rows) and views are copied; constraints, defaults and indexes are not.

use enclave_core::environment::{EnvSettings, Placement};
use enclave_core::{Error, Result};
use enclave_gateway::engine::transfer::{self, MovePlan};
use enclave_store::{EnvRecord, NewEnvironment, Origin};

use crate::lifecycle;
use crate::state::AppState;

/// Refuses, before anything is created, a copy this node cannot make: into a database of
/// the user's own, from PostgreSQL into DuckDB, or from an embedded source whose file is on
/// another node (421 naming it).
pub async fn check(state: &AppState, source: &EnvRecord, target: &EnvSettings) -> Result<()> {
    if target.placement() == Placement::OwnPostgres {
        return Err(Error::validation(
            "include",
            "managed_target",
            "data is copied only into a database Enclave manages: the clone's settings name one of your own (settings.engine_secret); clone without data, or without settings",
        ));
    }
    let from = source.settings.0.engine;
    if !transfer::supported(from, target.engine) {
        return Err(Error::validation(
            "include",
            "engine_pair",
            "data on PostgreSQL cannot be copied into the embedded engine: include settings, so the clone keeps the source's engine",
        ));
    }
    if source.settings.0.placement() == Placement::Embedded {
        state.gateway.engines().home.check(source).await?;
    }
    Ok(())
}

/// Creates the clone under the organization's quota, copies `source`'s data into its new
/// database, records the copy in the audit trail and only then marks it active.
pub async fn create(
    state: &AppState,
    env: NewEnvironment,
    source: &EnvRecord,
    origin: &Origin,
) -> Result<EnvRecord> {
    let limit = crate::billing::org_quotas(state, &env.org_id)
        .await?
        .max_environments;
    let rec = state.store.create_environment(env, limit, origin).await?;
    let engines = state.gateway.engines();
    let copied = async {
        engines.provision(&rec).await?;
        copy(state, source, &rec).await
    }
    .await;
    let plan = match copied {
        Ok(plan) => plan,
        Err(e) => {
            if let Err(cleanup) = lifecycle::abandon(state.store.as_ref(), engines, &rec).await {
                tracing::warn!(env_id = %rec.id, error = %cleanup.message,
                    "cannot delete a clone whose data copy failed");
            }
            return Err(e);
        }
    };
    let mut copied = plan.summary();
    copied["source_env_id"] = serde_json::json!(source.id);
    state
        .store
        .record_data_copy(&rec.id, copied, origin)
        .await?;
    tracing::info!(env_id = %rec.id, source_env_id = %source.id, tables = plan.tables.len(),
        rows = plan.rows(), "clone filled with its source's data");
    lifecycle::activate(state.store.as_ref(), &rec.id).await
}

/// Copies every table and view of `source` into `target`'s empty database.
async fn copy(state: &AppState, source: &EnvRecord, target: &EnvRecord) -> Result<MovePlan> {
    let engines = state.gateway.engines();
    let (from, to) = (source.settings.0.engine, target.settings.0.engine);
    let catalog = match from {
        enclave_core::environment::EngineKind::Duckdb => engines.embedded.catalog_query(),
        enclave_core::environment::EngineKind::Postgres => transfer::POSTGRES_CATALOG,
    };
    let mut reader = engines.connect(source).await?;
    transfer::begin_snapshot(reader.as_mut(), from).await?;
    let plan = transfer::plan(reader.as_mut(), catalog, from, to).await?;
    let mut sink = engines.of(target).sink(target).await?;
    transfer::copy(reader.as_mut(), sink.as_mut(), &plan).await?;
    transfer::end_snapshot(reader.as_mut()).await?;
    Ok(plan)
}

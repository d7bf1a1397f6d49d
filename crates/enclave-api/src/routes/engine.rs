//! `POST /v1/environments/{env_id}/engine`: moving an environment's data to another engine —
//! today from the embedded engine to the managed PostgreSQL engine (`crate::engine_move`).

use axum::extract::State;
use enclave_core::environment::EngineKind;
use enclave_core::{Error, Permission};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::access::env_access;
use crate::auth::{Caller, Origin};
use crate::engine_move::{self, EngineMove};
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::{JsonBody, Path};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveEngine {
    /// Where the data goes: `postgres` (the managed PostgreSQL engine).
    pub engine: EngineKind,
    /// Answer what would move (tables, columns with their types on both sides, row counts,
    /// views); change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

#[utoipa::path(post, path = "/v1/environments/{env_id}/engine", tag = "environments", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path)), request_body = MoveEngine, responses(
    (status = 200, description = "moved (or, dry run, what would move)", body = EngineMove),
    (status = 400, description = "no managed engine; an engine that is not a move's target", body = ErrorEnvelope),
    (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    (status = 409, description = "not on the embedded engine; locked; statements kept running; a view PostgreSQL cannot create", body = ErrorEnvelope),
    (status = 412, description = "the environment changed during the move", body = ErrorEnvelope),
    (status = 421, description = "the environment's data is on another node: its home node runs the move", body = ErrorEnvelope)))]
pub async fn move_data(
    State(state): State<AppState>,
    who: Caller,
    origin: Origin,
    Path(env_id): Path<String>,
    JsonBody(req): JsonBody<MoveEngine>,
) -> ApiResult<axum::Json<EngineMove>> {
    let (env, access) = env_access(&state, &who, &env_id, Permission::ManageEnvironments).await?;
    if req.engine != EngineKind::Postgres {
        return Err(Error::validation(
            "engine",
            "move_target",
            "engine: data moves to `postgres` (the managed PostgreSQL engine)",
        )
        .into());
    }
    let origin = origin.via(access.grant());
    let moved = engine_move::to_managed(&state, env, req.dry_run, &origin).await?;
    Ok(axum::Json(moved))
}

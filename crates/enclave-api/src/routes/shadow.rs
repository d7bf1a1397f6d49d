//! `/v1/environments/{env_id}/shadow`: replaying a sample of an environment's reads against
//! another environment, and the report of how they compared. The gateway samples, replays and
//! compares (`enclave_gateway::shadow`); the rules of a configuration are
//! `enclave_core::shadow`'s.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use enclave_core::clock::from_ms;
use enclave_core::shadow::{Shadow, ShadowReport, ShadowSpec};
use enclave_core::{Error, Permission};
use enclave_store::ShadowRecord;

use crate::access::env_access;
use crate::auth::{Caller, Origin};
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::{JsonBody, Path};
use crate::state::AppState;

/// The latest mismatches a report shows.
const REPORT_LATEST: i64 = 20;

fn view(r: ShadowRecord) -> Shadow {
    Shadow {
        env_id: r.env_id,
        spec: r.spec.0,
        created_by: r.created_by,
        created_at: from_ms(r.created_at),
    }
}

#[utoipa::path(post, path = "/v1/environments/{env_id}/shadow", tag = "shadow", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path)), request_body = ShadowSpec, responses(
    (status = 201, description = "shadowing (re)started: the counts start again", body = Shadow),
    (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
    (status = 404, description = "the environment, or the target in the same organization", body = ErrorEnvelope),
    (status = 409, description = "environment locked", body = ErrorEnvelope)))]
pub async fn start(
    State(state): State<AppState>,
    who: Caller,
    origin: Origin,
    Path(env_id): Path<String>,
    JsonBody(spec): JsonBody<ShadowSpec>,
) -> ApiResult<Response> {
    let (env, access) = env_access(&state, &who, &env_id, Permission::ManageEnvironments).await?;
    spec.check(&env.id)?;
    // Replays run in the target for the same principal: whoever starts them may manage it too.
    env_access(
        &state,
        &who,
        &spec.target_env_id,
        Permission::ManageEnvironments,
    )
    .await
    .map_err(|e| e.within("target_env_id"))?;
    let origin = origin.via(access.grant());
    let rec = state.store.start_shadow(&env.id, spec, &origin).await?;
    Ok((StatusCode::CREATED, axum::Json(view(rec))).into_response())
}

#[utoipa::path(get, path = "/v1/environments/{env_id}/shadow", tag = "shadow", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path)), responses(
    (status = 200, body = Shadow), (status = 404, description = "not shadowed", body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    who: Caller,
    Path(env_id): Path<String>,
) -> ApiResult<axum::Json<Shadow>> {
    let (env, _) = env_access(&state, &who, &env_id, Permission::ReadEnvironments).await?;
    let rec = state
        .store
        .shadow(&env.id)
        .await?
        .ok_or_else(|| Error::not_found("shadow"))?;
    Ok(axum::Json(view(rec)))
}

#[utoipa::path(delete, path = "/v1/environments/{env_id}/shadow", tag = "shadow", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path)), responses(
    (status = 204, description = "stopped; the report stays until the next start"),
    (status = 403, body = ErrorEnvelope), (status = 404, description = "not shadowed", body = ErrorEnvelope)))]
pub async fn stop(
    State(state): State<AppState>,
    who: Caller,
    origin: Origin,
    Path(env_id): Path<String>,
) -> ApiResult<StatusCode> {
    let (env, access) = env_access(&state, &who, &env_id, Permission::ManageEnvironments).await?;
    let origin = origin.via(access.grant());
    state.store.stop_shadow(&env.id, &origin).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/environments/{env_id}/shadow/report", tag = "shadow", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path)), responses(
    (status = 200, body = ShadowReport), (status = 404, description = "never shadowed", body = ErrorEnvelope)))]
pub async fn report(
    State(state): State<AppState>,
    who: Caller,
    Path(env_id): Path<String>,
) -> ApiResult<axum::Json<ShadowReport>> {
    let (env, _) = env_access(&state, &who, &env_id, Permission::ReadEnvironments).await?;
    let (stats, latest) = state
        .store
        .shadow_report(&env.id, REPORT_LATEST)
        .await?
        .ok_or_else(|| Error::not_found("shadow"))?;
    let active = state.store.shadow(&env.id).await?.is_some();
    let compared = stats.matches + stats.mismatches + stats.errors;
    let mean = |total: i64| (compared > 0).then(|| total as f64 / compared as f64);
    Ok(axum::Json(ShadowReport {
        env_id: stats.env_id,
        target_env_id: stats.target_env_id,
        active,
        since: Some(from_ms(stats.since)),
        matches: stats.matches,
        mismatches: stats.mismatches,
        errors: stats.errors,
        dropped: stats.dropped,
        primary_mean_ms: mean(stats.primary_ms_total),
        shadow_mean_ms: mean(stats.shadow_ms_total),
        latest,
    }))
}

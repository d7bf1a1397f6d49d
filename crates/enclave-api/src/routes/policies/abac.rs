//! `/v1/environments/{env_id}/abac-policies`: attribute-based allow/deny rules. Same
//! permissions, versions and restore as standard policies (shared in `policies.rs`).

use axum::extract::State;

use crate::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use enclave_core::pagination::Page;
use enclave_core::policy::input::{AbacInput, AbacPatch};
use enclave_store::PolicyKind;

use super::{
    access, changing, create_spec, delete_kind, list_kind, load, one, restore_version, save_spec,
    versions_of, Policy, PolicyVersion,
};
use crate::auth::{Caller, Origin};
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::{IfMatch, JsonBody, ListParams, QueryParams};
use crate::state::AppState;

const KIND: PolicyKind = PolicyKind::Abac;

#[utoipa::path(get, path = "/v1/environments/{env_id}/abac-policies", tag = "policies", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ListParams), responses(
    (status = 200, body = Page<Policy>), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    who: Caller,
    Path(env_id): Path<String>,
    QueryParams(q): QueryParams<ListParams>,
) -> ApiResult<axum::Json<Page<Policy>>> {
    Ok(axum::Json(list_kind(&state, &who, &env_id, KIND, q).await?))
}

#[utoipa::path(post, path = "/v1/environments/{env_id}/abac-policies", tag = "policies", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path)), request_body = AbacInput, responses(
    (status = 201, body = Policy), (status = 400, description = "names the field, e.g. `conditions.time.timezone`", body = ErrorEnvelope),
    (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    who: Caller,
    origin: Origin,
    Path(env_id): Path<String>,
    JsonBody(req): JsonBody<AbacInput>,
) -> ApiResult<Response> {
    let (env, origin) = changing(&state, &who, &env_id, &origin).await?;
    let spec = req.into_spec()?;
    Ok(create_spec(&state, &env, &origin, spec).await?)
}

#[utoipa::path(get, path = "/v1/environments/{env_id}/abac-policies/{policy_id}", tag = "policies", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ("policy_id" = String, Path)), responses(
    (status = 200, body = Policy), (status = 404, body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    who: Caller,
    Path((env_id, policy_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let env_id = access(&state, &who, &env_id, false).await?.0.id;
    Ok(one(load(&state, &env_id, &policy_id, KIND).await?))
}

#[utoipa::path(patch, path = "/v1/environments/{env_id}/abac-policies/{policy_id}", tag = "policies", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ("policy_id" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = AbacPatch, responses(
    (status = 200, body = Policy), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    (status = 409, body = ErrorEnvelope), (status = 412, body = ErrorEnvelope)))]
pub async fn update(
    State(state): State<AppState>,
    who: Caller,
    origin: Origin,
    Path((env_id, policy_id)): Path<(String, String)>,
    IfMatch(expected): IfMatch,
    JsonBody(req): JsonBody<AbacPatch>,
) -> ApiResult<Response> {
    let (env, origin) = changing(&state, &who, &env_id, &origin).await?;
    let env_id = env.id;
    let current = load(&state, &env_id, &policy_id, KIND).await?;
    let spec = req.apply(&current.spec.0)?;
    Ok(save_spec(&state, &current, expected, spec, &origin).await?)
}

#[utoipa::path(put, path = "/v1/environments/{env_id}/abac-policies/{policy_id}", tag = "policies", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ("policy_id" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = AbacInput, responses(
    (status = 200, body = Policy), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    (status = 409, body = ErrorEnvelope), (status = 412, body = ErrorEnvelope)))]
pub async fn replace(
    State(state): State<AppState>,
    who: Caller,
    origin: Origin,
    Path((env_id, policy_id)): Path<(String, String)>,
    IfMatch(expected): IfMatch,
    JsonBody(req): JsonBody<AbacInput>,
) -> ApiResult<Response> {
    let (env, origin) = changing(&state, &who, &env_id, &origin).await?;
    let env_id = env.id;
    let current = load(&state, &env_id, &policy_id, KIND).await?;
    let spec = req.into_spec()?;
    Ok(save_spec(&state, &current, expected, spec, &origin).await?)
}

#[utoipa::path(delete, path = "/v1/environments/{env_id}/abac-policies/{policy_id}", tag = "policies", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ("policy_id" = String, Path), ("If-Match" = Option<String>, Header)), responses(
    (status = 204), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope), (status = 412, body = ErrorEnvelope)))]
pub async fn delete(
    State(state): State<AppState>,
    who: Caller,
    origin: Origin,
    Path((env_id, policy_id)): Path<(String, String)>,
    IfMatch(expected): IfMatch,
) -> ApiResult<StatusCode> {
    delete_kind(&state, &who, &origin, &env_id, &policy_id, KIND, expected).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/environments/{env_id}/abac-policies/{policy_id}/versions", tag = "policies", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ("policy_id" = String, Path), ListParams), responses(
    (status = 200, description = "newest first", body = Page<PolicyVersion>), (status = 404, body = ErrorEnvelope)))]
pub async fn versions(
    State(state): State<AppState>,
    who: Caller,
    Path((env_id, policy_id)): Path<(String, String)>,
    QueryParams(q): QueryParams<ListParams>,
) -> ApiResult<axum::Json<Page<PolicyVersion>>> {
    Ok(axum::Json(
        versions_of(&state, &who, &env_id, &policy_id, KIND, q).await?,
    ))
}

#[utoipa::path(post, path = "/v1/environments/{env_id}/abac-policies/{policy_id}/versions/{version}/restore", tag = "policies",
    security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ("policy_id" = String, Path), ("version" = i64, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = Policy), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope),
    (status = 412, body = ErrorEnvelope)))]
pub async fn restore(
    State(state): State<AppState>,
    who: Caller,
    origin: Origin,
    Path(path): Path<(String, String, i64)>,
    IfMatch(expected): IfMatch,
) -> ApiResult<Response> {
    Ok(restore_version(&state, &who, &origin, path, KIND, expected).await?)
}

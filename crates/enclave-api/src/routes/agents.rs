//! `/v1/environments/{env_id}/agents`: the agents seen in an environment's statements, and
//! each one's capability grant (`…/agents/{agent_id}/capabilities`). The rules are
//! `enclave_core::agent`'s; the gateway applies grants at stage 4.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use enclave_core::agent::{
    check_agent_id, Agent, CapabilityGrant, CapabilitySpec, CapabilityVersion,
};
use enclave_core::clock::from_ms;
use enclave_core::pagination::{Page, PageRequest};
use enclave_core::{Error, Permission, Result};
use enclave_store::{AgentRecord, CapabilityRecord, EnvRecord};

use crate::access::env_access;
use crate::auth::{Caller, Origin};
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::{JsonBody, ListParams, Path, QueryParams};
use crate::state::AppState;

fn grant_view(r: CapabilityRecord) -> CapabilityGrant {
    CapabilityGrant {
        grant_id: r.id,
        env_id: r.env_id,
        agent_id: r.agent_id,
        spec: r.spec.0,
        version: r.version,
        created_by: r.created_by,
        created_at: from_ms(r.created_at),
        updated_at: from_ms(r.updated_at),
    }
}

fn agent_view(r: AgentRecord, capabilities: Option<CapabilityGrant>) -> Agent {
    Agent {
        agent_id: r.agent_id,
        framework: r.framework,
        first_seen_at: from_ms(r.first_seen_at),
        last_seen_at: from_ms(r.last_seen_at),
        query_count: r.query_count,
        credits_used: enclave_core::billing::Credits::from_milli(r.credits_milli.max(0) as u64),
        capabilities,
    }
}

/// The environment, once the caller may use `permission` there, and the agent id of the path
/// (1–128 printable characters: 400 otherwise).
async fn agent_env(
    state: &AppState,
    who: &Caller,
    env_id: &str,
    agent_id: &str,
    permission: Permission,
) -> Result<(EnvRecord, crate::access::OrgAccess)> {
    let found = env_access(state, who, env_id, permission).await?;
    check_agent_id("agent_id", agent_id)?;
    Ok(found)
}

#[utoipa::path(get, path = "/v1/environments/{env_id}/agents", tag = "agents", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ListParams), responses(
    (status = 200, description = "the agents seen in the environment's statements, by id, with their grants", body = Page<Agent>),
    (status = 404, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    who: Caller,
    Path(env_id): Path<String>,
    QueryParams(q): QueryParams<ListParams>,
) -> ApiResult<axum::Json<Page<Agent>>> {
    let (env, _) = env_access(&state, &who, &env_id, Permission::ReadEnvironments).await?;
    // Pending statements of this node are in the registry before it is read.
    state.gateway.audit().flush().await;
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let (rows, total) = state.store.agents(&env.id, &page).await?;
    let mut grants: HashMap<String, CapabilityRecord> = state
        .store
        .env_capabilities(&env.id)
        .await?
        .into_iter()
        .map(|g| (g.agent_id.clone(), g))
        .collect();
    let rows = rows
        .into_iter()
        .map(|r| {
            let grant = grants.remove(&r.agent_id).map(grant_view);
            agent_view(r, grant)
        })
        .collect();
    Ok(axum::Json(Page::from_rows(
        rows,
        &page,
        total,
        |a: &Agent| a.agent_id.clone(),
    )))
}

#[utoipa::path(get, path = "/v1/environments/{env_id}/agents/{agent_id}", tag = "agents", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ("agent_id" = String, Path)), responses(
    (status = 200, body = Agent), (status = 400, body = ErrorEnvelope), (status = 404, description = "never seen here", body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    who: Caller,
    Path((env_id, agent_id)): Path<(String, String)>,
) -> ApiResult<axum::Json<Agent>> {
    let (env, _) = agent_env(
        &state,
        &who,
        &env_id,
        &agent_id,
        Permission::ReadEnvironments,
    )
    .await?;
    state.gateway.audit().flush().await;
    let agent = state
        .store
        .agent(&env.id, &agent_id)
        .await?
        .ok_or_else(|| Error::not_found("agent"))?;
    let grant = state.store.capabilities(&env.id, &agent_id).await?;
    Ok(axum::Json(agent_view(agent, grant.map(grant_view))))
}

#[utoipa::path(post, path = "/v1/environments/{env_id}/agents/{agent_id}/capabilities", tag = "agents", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ("agent_id" = String, Path)), request_body = CapabilitySpec, responses(
    (status = 201, description = "the agent's first grant here", body = CapabilityGrant),
    (status = 200, description = "the grant's next version (or the same, unchanged)", body = CapabilityGrant),
    (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    (status = 409, description = "environment locked", body = ErrorEnvelope)))]
pub async fn grant(
    State(state): State<AppState>,
    who: Caller,
    origin: Origin,
    Path((env_id, agent_id)): Path<(String, String)>,
    JsonBody(spec): JsonBody<CapabilitySpec>,
) -> ApiResult<Response> {
    let (env, access) =
        agent_env(&state, &who, &env_id, &agent_id, Permission::ManagePolicies).await?;
    let origin = origin.via(access.grant());
    let spec = spec.validated(enclave_core::clock::now())?;
    let rec = state
        .store
        .grant_capabilities(&env.id, &agent_id, spec, &origin)
        .await?;
    let status = match rec.version {
        1 => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    Ok((status, axum::Json(grant_view(rec))).into_response())
}

#[utoipa::path(get, path = "/v1/environments/{env_id}/agents/{agent_id}/capabilities", tag = "agents", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ("agent_id" = String, Path)), responses(
    (status = 200, body = CapabilityGrant), (status = 400, body = ErrorEnvelope), (status = 404, description = "no grant", body = ErrorEnvelope)))]
pub async fn get_grant(
    State(state): State<AppState>,
    who: Caller,
    Path((env_id, agent_id)): Path<(String, String)>,
) -> ApiResult<axum::Json<CapabilityGrant>> {
    let (env, _) = agent_env(&state, &who, &env_id, &agent_id, Permission::ReadPolicies).await?;
    let rec = state
        .store
        .capabilities(&env.id, &agent_id)
        .await?
        .ok_or_else(|| Error::not_found("capability_grant"))?;
    Ok(axum::Json(grant_view(rec)))
}

#[utoipa::path(delete, path = "/v1/environments/{env_id}/agents/{agent_id}/capabilities", tag = "agents", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ("agent_id" = String, Path)), responses(
    (status = 204, description = "removed: the agent is held to no grant (or, where the environment requires one, reads nothing) from its next statement"),
    (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    (status = 409, description = "environment locked", body = ErrorEnvelope)))]
pub async fn revoke(
    State(state): State<AppState>,
    who: Caller,
    origin: Origin,
    Path((env_id, agent_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (env, access) =
        agent_env(&state, &who, &env_id, &agent_id, Permission::ManagePolicies).await?;
    let origin = origin.via(access.grant());
    state
        .store
        .revoke_capabilities(&env.id, &agent_id, &origin)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/environments/{env_id}/agents/{agent_id}/capabilities/versions", tag = "agents", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ("agent_id" = String, Path), ListParams), responses(
    (status = 200, description = "newest first", body = Page<CapabilityVersion>),
    (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn versions(
    State(state): State<AppState>,
    who: Caller,
    Path((env_id, agent_id)): Path<(String, String)>,
    QueryParams(q): QueryParams<ListParams>,
) -> ApiResult<axum::Json<Page<CapabilityVersion>>> {
    let (env, _) = agent_env(&state, &who, &env_id, &agent_id, Permission::ReadPolicies).await?;
    let rec = state
        .store
        .capabilities(&env.id, &agent_id)
        .await?
        .ok_or_else(|| Error::not_found("capability_grant"))?;
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let (rows, total) = state.store.capability_versions(&rec.id, &page).await?;
    let rows = rows
        .into_iter()
        .map(|v| CapabilityVersion {
            version: v.version,
            spec: v.spec.0,
            created_by: v.created_by,
            created_at: from_ms(v.created_at),
        })
        .collect();
    Ok(axum::Json(Page::from_rows(
        rows,
        &page,
        total,
        |v: &CapabilityVersion| v.version.to_string(),
    )))
}

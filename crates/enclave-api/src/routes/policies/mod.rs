//! `/v1/environments/{env_id}/policies` (column masking, row-level security) and what both
//! policy families share: loading, the views, versions and restore, and `evaluate`.
//! ABAC policies' own routes are in `abac.rs`.
//!
//! Reading: every member (keys: `policies:read`); changing: owner and admin (keys:
//! `policies:manage`). Validation and evaluation live in `enclave_core::policy`.

pub mod abac;

use axum::extract::State;
use enclave_core::clock::from_ms;

use crate::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use enclave_core::id::{is_id, new_id, EnvId, Kind};
use enclave_core::pagination::{Page, PageRequest};
use enclave_core::policy::evaluate::{Evaluation, PolicySet, Principal};
use enclave_core::policy::input::{self, EvaluateInput, StandardInput, StandardPatch};
use enclave_core::policy::{
    AbacAction, Effect, MaskingRule, PolicyBody, PolicyMode, PolicySpec, PolicyType, RlsRule,
};
use enclave_core::{Error, Permission, Result};
use enclave_store::{EnvRecord, NewPolicy, PolicyKind, PolicyRecord, PolicyVersionRecord};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::access::{env_access, OrgAccess};
use crate::auth::{Caller, Origin};
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::{IfMatch, JsonBody, ListParams, QueryParams};
use crate::state::AppState;
use crate::views;

/// A standard policy's rules, by type.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Rules {
    Masking(Vec<MaskingRule>),
    RowLevelSecurity(Vec<RlsRule>),
}

/// A policy's content: what every version holds.
#[derive(Serialize, ToSchema)]
pub struct PolicyContent {
    pub name: String,
    #[serde(rename = "type")]
    pub policy_type: PolicyType,
    pub description: String,
    pub enabled: bool,
    pub mode: PolicyMode,
    /// Standard policies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<Rules>,
    /// ABAC policies: `allow` or `deny`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect: Option<Effect>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<AbacAction>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub conditions: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
}

#[derive(Serialize, ToSchema)]
pub struct Policy {
    pub policy_id: String,
    pub env_id: EnvId,
    #[serde(flatten)]
    pub content: PolicyContent,
    /// Increments on every saved change; the `ETag`.
    pub version: i64,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One saved version.
#[derive(Serialize, ToSchema)]
pub struct PolicyVersion {
    pub policy_id: String,
    pub version: i64,
    #[serde(flatten)]
    pub content: PolicyContent,
    /// Who saved it.
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

fn content(spec: PolicySpec) -> PolicyContent {
    let policy_type = spec.policy_type();
    let mut c = PolicyContent {
        name: spec.name,
        policy_type,
        description: spec.description,
        enabled: spec.enabled,
        mode: spec.mode,
        rules: None,
        effect: None,
        actions: None,
        resources: None,
        conditions: None,
        priority: None,
    };
    match spec.body {
        PolicyBody::ColumnMasking { rules } => c.rules = Some(Rules::Masking(rules)),
        PolicyBody::RowLevelSecurity { rules } => c.rules = Some(Rules::RowLevelSecurity(rules)),
        PolicyBody::Abac(def) => {
            c.effect = Some(def.effect);
            c.actions = Some(def.actions);
            c.resources = Some(def.resources);
            c.conditions = Some(def.conditions);
            c.priority = Some(def.priority);
        }
    }
    c
}

pub fn view(r: PolicyRecord) -> Policy {
    Policy {
        policy_id: r.id,
        env_id: r.env_id,
        content: content(r.spec.0),
        version: r.version,
        created_by: r.created_by,
        created_at: from_ms(r.created_at),
        updated_at: from_ms(r.updated_at),
    }
}

fn version_view(r: PolicyVersionRecord) -> PolicyVersion {
    PolicyVersion {
        policy_id: r.policy_id,
        version: r.version,
        content: content(r.spec.0),
        created_by: r.created_by,
        created_at: from_ms(r.created_at),
    }
}

fn path_of(kind: PolicyKind) -> &'static str {
    match kind {
        PolicyKind::Standard => "policies",
        PolicyKind::Abac => "abac-policies",
    }
}

pub fn one(rec: PolicyRecord) -> Response {
    views::with_etag(rec.version, view(rec))
}

/// Reads need [`Permission::ReadPolicies`], changes [`Permission::ManagePolicies`].
pub async fn access(
    state: &AppState,
    who: &Caller,
    env_id: &str,
    change: bool,
) -> Result<(EnvRecord, OrgAccess)> {
    let permission = if change {
        Permission::ManagePolicies
    } else {
        Permission::ReadPolicies
    };
    env_access(state, who, env_id, permission).await
}

/// [`access`] for a change: the environment, and the origin of the change naming the
/// just-in-time grant the caller acts with, if any.
pub async fn changing(
    state: &AppState,
    who: &Caller,
    env_id: &str,
    origin: &Origin,
) -> Result<(EnvRecord, Origin)> {
    let (env, access) = access(state, who, env_id, true).await?;
    Ok((env, origin.clone().via(access.grant())))
}

/// The policy `policy_id` of `env_id` if it is of `kind`; 404 otherwise (an ABAC policy is
/// not found under `/policies`, nor a standard one under `/abac-policies`).
pub async fn load(
    state: &AppState,
    env_id: &EnvId,
    policy_id: &str,
    kind: PolicyKind,
) -> Result<PolicyRecord> {
    let not_found = || Error::not_found("policy");
    if !is_id(Kind::Policy, policy_id) {
        return Err(not_found());
    }
    let rec = state
        .store
        .policy(env_id, policy_id)
        .await?
        .ok_or_else(not_found)?;
    if rec.kind != kind {
        return Err(not_found());
    }
    Ok(rec)
}

pub async fn create_spec(
    state: &AppState,
    env: &EnvRecord,
    origin: &Origin,
    spec: PolicySpec,
) -> Result<Response> {
    let kind = PolicyKind::of(&spec);
    let rec = state
        .store
        .create_policy(
            NewPolicy {
                id: new_id(Kind::Policy),
                org_id: env.org_id.clone(),
                env_id: env.id.clone(),
                spec,
                created_by: origin.actor.id.clone(),
            },
            origin,
        )
        .await?;
    let location = format!(
        "/v1/environments/{}/{}/{}",
        rec.env_id,
        path_of(kind),
        rec.id
    );
    Ok(views::created(rec.version, location, view(rec)))
}

pub async fn save_spec(
    state: &AppState,
    current: &PolicyRecord,
    expected: Option<i64>,
    spec: PolicySpec,
    origin: &Origin,
) -> Result<Response> {
    let rec = state
        .store
        .update_policy(&current.env_id, &current.id, expected, spec, origin)
        .await?;
    Ok(one(rec))
}

pub async fn list_kind(
    state: &AppState,
    who: &Caller,
    env_id: &str,
    kind: PolicyKind,
    q: ListParams,
) -> Result<Page<Policy>> {
    let env_id = &access(state, who, env_id, false).await?.0.id;
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let (rows, total) = state.store.policies(env_id, kind, &page).await?;
    let rows: Vec<Policy> = rows.into_iter().map(view).collect();
    Ok(Page::from_rows(rows, &page, total, |p| p.policy_id.clone()))
}

pub async fn versions_of(
    state: &AppState,
    who: &Caller,
    env_id: &str,
    policy_id: &str,
    kind: PolicyKind,
    q: ListParams,
) -> Result<Page<PolicyVersion>> {
    let env_id = &access(state, who, env_id, false).await?.0.id;
    load(state, env_id, policy_id, kind).await?;
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let (rows, total) = state.store.policy_versions(policy_id, &page).await?;
    let rows: Vec<PolicyVersion> = rows.into_iter().map(version_view).collect();
    Ok(Page::from_rows(rows, &page, total, |v| {
        v.version.to_string()
    }))
}

/// Saves version `version`'s content as the next version.
pub async fn restore_version(
    state: &AppState,
    who: &Caller,
    origin: &Origin,
    (env_id, policy_id, version): (String, String, i64),
    kind: PolicyKind,
    expected: Option<i64>,
) -> Result<Response> {
    let (env, origin) = changing(state, who, &env_id, origin).await?;
    let (env_id, origin) = (env.id, &origin);
    let current = load(state, &env_id, &policy_id, kind).await?;
    let old = state
        .store
        .policy_version(&policy_id, version)
        .await?
        .ok_or_else(|| Error::not_found("policy version"))?;
    save_spec(state, &current, expected, old.spec.0, origin).await
}

#[utoipa::path(get, path = "/v1/environments/{env_id}/policies", tag = "policies", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ListParams), responses(
    (status = 200, body = Page<Policy>), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    who: Caller,
    Path(env_id): Path<String>,
    QueryParams(q): QueryParams<ListParams>,
) -> ApiResult<axum::Json<Page<Policy>>> {
    Ok(axum::Json(
        list_kind(&state, &who, &env_id, PolicyKind::Standard, q).await?,
    ))
}

#[utoipa::path(post, path = "/v1/environments/{env_id}/policies", tag = "policies", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path)), request_body = StandardInput, responses(
    (status = 201, body = Policy), (status = 400, description = "names the field, e.g. `rules[2].filter`", body = ErrorEnvelope),
    (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    (status = 409, description = "name taken, or the environment is locked", body = ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    who: Caller,
    origin: Origin,
    Path(env_id): Path<String>,
    JsonBody(req): JsonBody<StandardInput>,
) -> ApiResult<Response> {
    let (env, origin) = changing(&state, &who, &env_id, &origin).await?;
    let spec = req.into_spec()?;
    Ok(create_spec(&state, &env, &origin, spec).await?)
}

#[utoipa::path(get, path = "/v1/environments/{env_id}/policies/{policy_id}", tag = "policies", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ("policy_id" = String, Path)), responses(
    (status = 200, body = Policy), (status = 404, body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    who: Caller,
    Path((env_id, policy_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let env_id = access(&state, &who, &env_id, false).await?.0.id;
    let rec = load(&state, &env_id, &policy_id, PolicyKind::Standard).await?;
    Ok(one(rec))
}

#[utoipa::path(patch, path = "/v1/environments/{env_id}/policies/{policy_id}", tag = "policies", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ("policy_id" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = StandardPatch, responses(
    (status = 200, body = Policy), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    (status = 409, body = ErrorEnvelope), (status = 412, body = ErrorEnvelope)))]
pub async fn update(
    State(state): State<AppState>,
    who: Caller,
    origin: Origin,
    Path((env_id, policy_id)): Path<(String, String)>,
    IfMatch(expected): IfMatch,
    JsonBody(req): JsonBody<StandardPatch>,
) -> ApiResult<Response> {
    let (env, origin) = changing(&state, &who, &env_id, &origin).await?;
    let env_id = env.id;
    let current = load(&state, &env_id, &policy_id, PolicyKind::Standard).await?;
    let spec = req.apply(&current.spec.0)?;
    Ok(save_spec(&state, &current, expected, spec, &origin).await?)
}

#[utoipa::path(put, path = "/v1/environments/{env_id}/policies/{policy_id}", tag = "policies", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ("policy_id" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = StandardInput, responses(
    (status = 200, body = Policy), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    (status = 409, body = ErrorEnvelope), (status = 412, body = ErrorEnvelope)))]
pub async fn replace(
    State(state): State<AppState>,
    who: Caller,
    origin: Origin,
    Path((env_id, policy_id)): Path<(String, String)>,
    IfMatch(expected): IfMatch,
    JsonBody(req): JsonBody<StandardInput>,
) -> ApiResult<Response> {
    let (env, origin) = changing(&state, &who, &env_id, &origin).await?;
    let env_id = env.id;
    let current = load(&state, &env_id, &policy_id, PolicyKind::Standard).await?;
    let spec = req.replacing(&current.spec.0)?;
    Ok(save_spec(&state, &current, expected, spec, &origin).await?)
}

#[utoipa::path(delete, path = "/v1/environments/{env_id}/policies/{policy_id}", tag = "policies", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ("policy_id" = String, Path), ("If-Match" = Option<String>, Header)), responses(
    (status = 204), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope), (status = 412, body = ErrorEnvelope)))]
pub async fn delete(
    State(state): State<AppState>,
    who: Caller,
    origin: Origin,
    Path((env_id, policy_id)): Path<(String, String)>,
    IfMatch(expected): IfMatch,
) -> ApiResult<StatusCode> {
    delete_kind(
        &state,
        &who,
        &origin,
        &env_id,
        &policy_id,
        PolicyKind::Standard,
        expected,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete_kind(
    state: &AppState,
    who: &Caller,
    origin: &Origin,
    env_id: &str,
    policy_id: &str,
    kind: PolicyKind,
    expected: Option<i64>,
) -> Result<()> {
    let (env, origin) = changing(state, who, env_id, origin).await?;
    let (env_id, origin) = (&env.id, &origin);
    load(state, env_id, policy_id, kind).await?;
    state
        .store
        .delete_policy(env_id, policy_id, expected, origin)
        .await
}

#[utoipa::path(get, path = "/v1/environments/{env_id}/policies/{policy_id}/versions", tag = "policies", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ("policy_id" = String, Path), ListParams), responses(
    (status = 200, description = "newest first", body = Page<PolicyVersion>), (status = 404, body = ErrorEnvelope)))]
pub async fn versions(
    State(state): State<AppState>,
    who: Caller,
    Path((env_id, policy_id)): Path<(String, String)>,
    QueryParams(q): QueryParams<ListParams>,
) -> ApiResult<axum::Json<Page<PolicyVersion>>> {
    Ok(axum::Json(
        versions_of(&state, &who, &env_id, &policy_id, PolicyKind::Standard, q).await?,
    ))
}

#[utoipa::path(post, path = "/v1/environments/{env_id}/policies/{policy_id}/versions/{version}/restore", tag = "policies",
    security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ("policy_id" = String, Path), ("version" = i64, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, description = "the policy, its content now that of `version` (saved as a new version)", body = Policy),
    (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope), (status = 412, body = ErrorEnvelope)))]
pub async fn restore(
    State(state): State<AppState>,
    who: Caller,
    origin: Origin,
    Path(path): Path<(String, String, i64)>,
    IfMatch(expected): IfMatch,
) -> ApiResult<Response> {
    Ok(restore_version(&state, &who, &origin, path, PolicyKind::Standard, expected).await?)
}

#[utoipa::path(post, path = "/v1/environments/{env_id}/policies/evaluate", tag = "policies", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path)), request_body = EvaluateInput, responses(
    (status = 200, description = "what the gateway would do; `decision` is `deny` for a refusal (this call itself succeeds)", body = Evaluation),
    (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn evaluate(
    State(state): State<AppState>,
    who: Caller,
    Path(env_id): Path<String>,
    JsonBody(req): JsonBody<EvaluateInput>,
) -> ApiResult<axum::Json<Evaluation>> {
    let (env, _) = access(&state, &who, &env_id, false).await?;
    let principal = match req.principal {
        Some(p) => p.into_principal()?,
        None => caller_principal(&state, &who, &env).await?,
    };
    let request = input::request(&env.org_id, &env.id, req.action, req.resource, req.context)?;
    let records = state.store.env_policies(&env.id).await?;
    // Stored policies were validated when saved: one that no longer compiles is our fault,
    // not the caller's.
    let set =
        PolicySet::compile(records.iter().map(|r| (r.id.as_str(), &r.spec.0))).map_err(|e| {
            tracing::error!(env_id = %env.id, error = %e, "a stored policy does not compile");
            Error::internal()
        })?;
    Ok(axum::Json(set.evaluate(&principal, &request)))
}

/// The caller as the gateway would see it: a user's role and attributes in the
/// organization, or a key's role, attributes and scopes.
async fn caller_principal(state: &AppState, who: &Caller, env: &EnvRecord) -> Result<Principal> {
    match who {
        Caller::Key(k) => Ok(Principal {
            role: k.role,
            user_id: None,
            email: None,
            key_id: Some(k.key_id.clone()),
            attributes: k.attributes.clone(),
            scopes: Some(k.scopes.clone()),
            agent_id: None,
            framework: None,
        }),
        Caller::User(u) => {
            let m = state
                .store
                .member(&env.org_id, &u.user_id)
                .await?
                .ok_or_else(|| Error::not_found("environment"))?;
            Ok(Principal {
                role: m.role,
                user_id: Some(u.user_id.clone()),
                email: Some(m.email.clone()),
                key_id: None,
                attributes: m.attributes.0.clone(),
                scopes: None,
                agent_id: None,
                framework: None,
            })
        }
    }
}

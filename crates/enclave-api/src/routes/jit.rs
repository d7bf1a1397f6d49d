//! `/v1/environments/{env_id}/jit-access`: a member asks for a higher role in one environment
//! for a while; an owner or admin approves or denies; the grant ends at its deadline or when
//! revoked. The rules are `enclave_core::jit`'s; the role a live grant gives is applied by
//! `access::env_access` and the gateway's sign-in.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use enclave_core::api_key::key_can;
use enclave_core::id::JitId;
use enclave_core::jit::{self, JitRequest, JitStatus};
use enclave_core::pagination::{Page, PageRequest};
use enclave_core::{Error, ErrorCode, Permission, Result, Role};
use enclave_store::{EnvRecord, JitFilter, JitRecord, NewJitRequest};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::access::{env_access, find_env, member_of, OrgAccess};
use crate::auth::{Caller, Origin, UserCaller};
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::{parse_optional_json, JsonBody, Path, QueryParams};
use crate::state::AppState;
use crate::views;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJitRequest {
    /// A role above the requester's own (never `owner`).
    pub requested_role: Role,
    /// Why the access is needed (1–1000 characters); the deciders read it.
    pub reason: String,
    /// 15–1440: how long the grant lasts once approved.
    pub duration_minutes: i64,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct JitDecision {
    /// Up to 1000 characters, kept with the decision.
    pub comment: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JitListParams {
    /// `pending`, `approved`, `denied`, `expired` or `revoked` (as of now).
    pub status: Option<String>,
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `pagination.cursor` of the previous page.
    pub cursor: Option<String>,
}

fn not_found() -> Error {
    Error::not_found("jit_request")
}

fn request_path(env_id: &str, id: &str) -> String {
    format!("/v1/environments/{env_id}/jit-access/{id}")
}

/// The environment and the person's own standing in its organization (not the role of a
/// grant: deciding on grants and asking for one go by a member's own role).
async fn own_standing(
    state: &AppState,
    who: &UserCaller,
    env_id: &str,
) -> Result<(EnvRecord, OrgAccess)> {
    let env = find_env(state, env_id).await?;
    let access = member_of(state, who, &env.org_id)
        .await
        .map_err(|e| match e.code {
            ErrorCode::NotFound => Error::not_found("environment"),
            _ => e,
        })?;
    Ok((env, access))
}

/// Whether the caller sees every request of the environment (owner, admin, auditor; keys
/// with `audit:read`) or only their own.
fn sees_all(who: &Caller, access: &OrgAccess) -> bool {
    match who {
        Caller::User(_) => access.role.can(Permission::ReadAudit),
        Caller::Key(key) => key_can(key.role, &key.scopes, Permission::ReadAudit),
    }
}

/// The request `id` of `env`, if the caller may see it (their own, or everyone's).
async fn visible(
    state: &AppState,
    env: &EnvRecord,
    access: &OrgAccess,
    who: &Caller,
    id: &str,
) -> Result<JitRecord> {
    let rec = find(state, env, id).await?;
    let own = matches!(who, Caller::User(u) if u.user_id == rec.requester_id);
    if !own && !sees_all(who, access) {
        return Err(not_found());
    }
    Ok(rec)
}

/// The request `id` of `env`, whoever made it: deciding and revoking check who the caller
/// is to it before anything else.
async fn find(state: &AppState, env: &EnvRecord, id: &str) -> Result<JitRecord> {
    let id = JitId::parse(id).ok_or_else(not_found)?;
    state
        .store
        .jit_request(&env.id, &id)
        .await?
        .ok_or_else(not_found)
}

fn created(env_id: &str, view: JitRequest) -> Response {
    let mut resp = (StatusCode::CREATED, axum::Json(&view)).into_response();
    if let Ok(v) = HeaderValue::from_str(&request_path(env_id, &view.request_id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

#[utoipa::path(post, path = "/v1/environments/{env_id}/jit-access", tag = "jit-access", security(("bearer" = [])),
    params(("env_id" = String, Path)), request_body = CreateJitRequest, responses(
    (status = 201, description = "the request, `pending`", body = JitRequest),
    (status = 400, description = "a role not above the requester's, `owner`, a duration outside 15–1440, no reason", body = ErrorEnvelope),
    (status = 403, description = "an API key: only people ask for access", body = ErrorEnvelope),
    (status = 404, body = ErrorEnvelope),
    (status = 409, description = "`jit_already_open`: a pending request or live grant exists", body = ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    Path(env_id): Path<String>,
    JsonBody(req): JsonBody<CreateJitRequest>,
) -> ApiResult<Response> {
    let (env, me) = own_standing(&state, &who, &env_id).await?;
    jit::check_request(
        me.role,
        req.requested_role,
        req.duration_minutes,
        &req.reason,
    )?;
    let now = state.config.clock.now_ms();
    let rec = state
        .store
        .create_jit_request(
            NewJitRequest {
                env_id: env.id.clone(),
                requester_id: who.user_id.clone(),
                current_role: me.role,
                requested_role: req.requested_role,
                reason: req.reason.trim().to_string(),
                duration_minutes: req.duration_minutes,
            },
            now,
            &origin,
        )
        .await?;
    Ok(created(&env_id, views::jit_request(rec, now)))
}

#[utoipa::path(get, path = "/v1/environments/{env_id}/jit-access", tag = "jit-access", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), JitListParams), responses(
    (status = 200, description = "owners, admins and auditors see every request; others their own", body = Page<JitRequest>),
    (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    who: Caller,
    Path(env_id): Path<String>,
    QueryParams(q): QueryParams<JitListParams>,
) -> ApiResult<axum::Json<Page<JitRequest>>> {
    let (env, access) = env_access(&state, &who, &env_id, Permission::ReadEnvironments).await?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(JitStatus::parse(s).ok_or_else(|| {
            Error::validation(
                "status",
                "one_of",
                "status must be pending, approved, denied, expired or revoked",
            )
        })?),
    };
    let requester_id = match &who {
        _ if sees_all(&who, &access) => None,
        Caller::User(u) => Some(u.user_id.clone()),
        Caller::Key(_) => {
            return Err(Error::forbidden(
                "scope:audit:read",
                "this API key may not read access requests",
            )
            .into())
        }
    };
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let now = state.config.clock.now_ms();
    let filter = JitFilter {
        status,
        requester_id,
    };
    let (rows, total) = state
        .store
        .jit_requests(&env.id, &filter, now, &page)
        .await?;
    let rows = rows
        .into_iter()
        .map(|r| views::jit_request(r, now))
        .collect();
    Ok(axum::Json(Page::from_rows(
        rows,
        &page,
        total,
        |r: &JitRequest| r.request_id.to_string(),
    )))
}

#[utoipa::path(get, path = "/v1/environments/{env_id}/jit-access/{request_id}", tag = "jit-access", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ("request_id" = String, Path)), responses(
    (status = 200, body = JitRequest), (status = 404, body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    who: Caller,
    Path((env_id, request_id)): Path<(String, String)>,
) -> ApiResult<axum::Json<JitRequest>> {
    let (env, access) = env_access(&state, &who, &env_id, Permission::ReadEnvironments).await?;
    let rec = visible(&state, &env, &access, &who, &request_id).await?;
    Ok(axum::Json(views::jit_request(
        rec,
        state.config.clock.now_ms(),
    )))
}

/// Approves or denies a request as `who`, an owner or admin who did not make it.
async fn decide(
    state: &AppState,
    who: &UserCaller,
    origin: &Origin,
    env_id: &str,
    request_id: &str,
    approve: bool,
    decision: JitDecision,
) -> Result<JitRequest> {
    let (env, me) = own_standing(state, who, env_id).await?;
    let rec = find(state, &env, request_id).await?;
    jit::check_decider(me.role, rec.requester_id == who.user_id)?;
    jit::check_comment(decision.comment.as_deref())?;
    let now = state.config.clock.now_ms();
    let rec = state
        .store
        .decide_jit_request(
            &env.id,
            &rec.id,
            approve,
            decision.comment.as_deref(),
            now,
            origin,
        )
        .await?;
    Ok(views::jit_request(rec, now))
}

#[utoipa::path(post, path = "/v1/environments/{env_id}/jit-access/{request_id}/approve", tag = "jit-access", security(("bearer" = [])),
    params(("env_id" = String, Path), ("request_id" = String, Path)), request_body = JitDecision, responses(
    (status = 200, description = "approved: the grant runs from now for `duration_minutes`", body = JitRequest),
    (status = 403, description = "not an owner or admin, or the requester", body = ErrorEnvelope),
    (status = 404, body = ErrorEnvelope), (status = 409, description = "`jit_not_pending`", body = ErrorEnvelope)))]
pub async fn approve(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    Path((env_id, request_id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<axum::Json<JitRequest>> {
    let decision = parse_optional_json(&body)?;
    let view = decide(&state, &who, &origin, &env_id, &request_id, true, decision).await?;
    Ok(axum::Json(view))
}

#[utoipa::path(post, path = "/v1/environments/{env_id}/jit-access/{request_id}/deny", tag = "jit-access", security(("bearer" = [])),
    params(("env_id" = String, Path), ("request_id" = String, Path)), request_body = JitDecision, responses(
    (status = 200, body = JitRequest),
    (status = 403, description = "not an owner or admin, or the requester", body = ErrorEnvelope),
    (status = 404, body = ErrorEnvelope), (status = 409, description = "`jit_not_pending`", body = ErrorEnvelope)))]
pub async fn deny(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    Path((env_id, request_id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<axum::Json<JitRequest>> {
    let decision = parse_optional_json(&body)?;
    let view = decide(&state, &who, &origin, &env_id, &request_id, false, decision).await?;
    Ok(axum::Json(view))
}

#[utoipa::path(post, path = "/v1/environments/{env_id}/jit-access/{request_id}/revoke", tag = "jit-access", security(("bearer" = [])),
    params(("env_id" = String, Path), ("request_id" = String, Path)), responses(
    (status = 200, description = "revoked: the requester's own role applies from the next request or statement, on every node", body = JitRequest),
    (status = 403, description = "neither an owner, an admin nor the requester", body = ErrorEnvelope),
    (status = 404, body = ErrorEnvelope), (status = 409, description = "`jit_not_approved`: no live grant", body = ErrorEnvelope)))]
pub async fn revoke(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    Path((env_id, request_id)): Path<(String, String)>,
) -> ApiResult<axum::Json<JitRequest>> {
    let (env, me) = own_standing(&state, &who, &env_id).await?;
    let rec = find(&state, &env, &request_id).await?;
    jit::check_revoker(me.role, rec.requester_id == who.user_id)?;
    let now = state.config.clock.now_ms();
    let rec = state
        .store
        .revoke_jit_grant(&env.id, &rec.id, now, &origin)
        .await?;
    Ok(axum::Json(views::jit_request(rec, now)))
}

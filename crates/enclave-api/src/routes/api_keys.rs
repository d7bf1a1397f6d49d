//! `/v1/environments/{env_id}/api-keys`: list, create (plaintext shown once), get, patch,
//! revoke, rotate with a grace period.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;

use crate::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use enclave_core::api_key::{self, check_grant, expand_scopes, ApiKey, Scope};
use enclave_core::environment::check_writable;
use enclave_core::id::KeyId;
use enclave_core::pagination::{Page, PageRequest};
use enclave_core::{validate, Error, Permission, Result, Role};
use enclave_store::{ApiKeyPatch, EnvRecord};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::access::{env_access, OrgAccess};
use crate::auth::{Caller, Origin};
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::{parse_optional_json, JsonBody, QueryParams};
use crate::key_issue::{create_prepared, grant_power, prepare, CreateApiKey};
use crate::state::AppState;
use crate::views;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateApiKey {
    pub name: Option<String>,
    pub role: Option<Role>,
    pub attributes: Option<BTreeMap<String, String>>,
    pub scopes: Option<Vec<String>>,
    pub ip_allowlist: Option<Vec<String>>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateApiKey {
    /// 0–720, default 24: how long the old key keeps working.
    pub grace_period_hours: Option<i64>,
}

pub use crate::extract::ListParams;

/// A response carrying a plaintext key: never stored by caches on the way.
fn secret_response(status: StatusCode, location: String, key: ApiKey) -> Response {
    let mut resp = (status, axum::Json(key)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    resp
}

async fn writable_env(
    state: &AppState,
    who: &Caller,
    env_id: &str,
) -> Result<(EnvRecord, OrgAccess)> {
    let (env, access) = env_access(state, who, env_id, Permission::ManageApiKeys).await?;
    check_writable(env.locked, env.status, false)?;
    if access.grant.is_some() {
        // A key would outlive the grant and keep its powers after it ends.
        return Err(Error::forbidden(
            "jit:lasting_credentials",
            "API keys outlive a just-in-time grant: creating, changing or rotating one needs              your own role",
        ));
    }
    Ok((env, access))
}

fn key_path(env_id: &str, key_id: &str) -> String {
    format!("/v1/environments/{env_id}/api-keys/{key_id}")
}

fn not_found() -> Error {
    Error::not_found("api_key")
}

#[utoipa::path(get, path = "/v1/environments/{env_id}/api-keys", tag = "api-keys", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ListParams), responses(
    (status = 200, body = Page<ApiKey>), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    who: Caller,
    Path(env_id): Path<String>,
    QueryParams(q): QueryParams<ListParams>,
) -> ApiResult<axum::Json<Page<ApiKey>>> {
    let env_id = env_access(&state, &who, &env_id, Permission::ManageApiKeys)
        .await?
        .0
        .id;
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let (rows, total) = state.store.api_keys(&env_id, &page).await?;
    let rows = rows.into_iter().map(|r| views::api_key(r, None)).collect();
    Ok(axum::Json(Page::from_rows(
        rows,
        &page,
        total,
        |k: &ApiKey| k.key_id.to_string(),
    )))
}

#[utoipa::path(post, path = "/v1/environments/{env_id}/api-keys", tag = "api-keys", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path)), request_body = CreateApiKey, responses(
    (status = 201, description = "the key, with its plaintext `key` shown this once", body = ApiKey),
    (status = 400, body = ErrorEnvelope), (status = 403, description = "role or scopes beyond the caller's", body = ErrorEnvelope),
    (status = 404, body = ErrorEnvelope), (status = 409, description = "environment locked", body = ErrorEnvelope),
    (status = 429, description = "QUOTA_EXCEEDED: max_api_keys_per_environment", body = ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    who: Caller,
    origin: Origin,
    Path(env_id): Path<String>,
    JsonBody(req): JsonBody<CreateApiKey>,
) -> ApiResult<Response> {
    let (env, access) = writable_env(&state, &who, &env_id).await?;
    let origin = origin.via(access.grant());
    let (key, plaintext) = prepare(&state, &who, &access, &env.id, env.env_type, req).await?;
    let key = create_prepared(&state, &access, key, plaintext, &origin).await?;
    let location = key_path(&env_id, &key.key_id);
    Ok(secret_response(StatusCode::CREATED, location, key))
}

#[utoipa::path(get, path = "/v1/environments/{env_id}/api-keys/{key_id}", tag = "api-keys", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ("key_id" = String, Path)), responses(
    (status = 200, body = ApiKey), (status = 404, body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    who: Caller,
    Path((env_id, key_id)): Path<(String, String)>,
) -> ApiResult<axum::Json<ApiKey>> {
    let env_id = env_access(&state, &who, &env_id, Permission::ManageApiKeys)
        .await?
        .0
        .id;
    let key_id = KeyId::parse(&key_id).ok_or_else(not_found)?;
    let rec = state
        .store
        .api_key(&env_id, &key_id)
        .await?
        .ok_or_else(not_found)?;
    Ok(axum::Json(views::api_key(rec, None)))
}

#[utoipa::path(patch, path = "/v1/environments/{env_id}/api-keys/{key_id}", tag = "api-keys", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ("key_id" = String, Path)), request_body = UpdateApiKey, responses(
    (status = 200, body = ApiKey), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
    (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn update(
    State(state): State<AppState>,
    who: Caller,
    origin: Origin,
    Path((env_id, key_id)): Path<(String, String)>,
    JsonBody(req): JsonBody<UpdateApiKey>,
) -> ApiResult<axum::Json<ApiKey>> {
    let (env, access) = writable_env(&state, &who, &env_id).await?;
    let origin = origin.via(access.grant());
    let key_id = KeyId::parse(&key_id).ok_or_else(not_found)?;
    let current = state
        .store
        .api_key(&env.id, &key_id)
        .await?
        .ok_or_else(not_found)?;
    let scopes = req.scopes.as_deref().map(expand_scopes).transpose()?;
    if let Some(a) = &req.attributes {
        validate::attributes("attributes", a)?;
    }
    let allowlist = req
        .ip_allowlist
        .as_deref()
        .map(|l| api_key::allowlist("ip_allowlist", l))
        .transpose()?;
    // What the key would be after the change must still be within what the caller holds.
    let (caller_role, caller_scopes) = grant_power(&who, &access);
    let new_role = req.role.unwrap_or(current.role);
    let new_scopes: BTreeSet<Scope> = match &scopes {
        Some(s) => s.clone(),
        None => BTreeSet::new(),
    };
    if req.role.is_some() || scopes.is_some() {
        check_grant(caller_role, &caller_scopes, new_role, &new_scopes)?;
    }
    let patch = ApiKeyPatch {
        name: req
            .name
            .as_deref()
            .map(|n| validate::display_name("name", n, 64))
            .transpose()?,
        role: req.role,
        attributes: req.attributes,
        scopes: scopes.map(|s| s.into_iter().collect()),
        ip_allowlist: allowlist.map(|l| l.iter().map(|n| n.to_string()).collect()),
    };
    let rec = state
        .store
        .update_api_key(&env.id, &key_id, patch, &origin)
        .await?;
    Ok(axum::Json(views::api_key(rec, None)))
}

#[utoipa::path(delete, path = "/v1/environments/{env_id}/api-keys/{key_id}", tag = "api-keys", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ("key_id" = String, Path)), responses(
    (status = 204, description = "revoked: refused everywhere from the next request"),
    (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    (status = 409, description = "already revoked or expired", body = ErrorEnvelope)))]
pub async fn revoke(
    State(state): State<AppState>,
    who: Caller,
    origin: Origin,
    Path((env_id, key_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    // Revoking stays possible in a locked environment: a leaked key must be stoppable.
    let (env, access) = env_access(&state, &who, &env_id, Permission::ManageApiKeys).await?;
    let (env_id, origin) = (env.id, origin.via(access.grant()));
    let key_id = KeyId::parse(&key_id).ok_or_else(not_found)?;
    state
        .store
        .revoke_api_key(&env_id, &key_id, &origin)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/environments/{env_id}/api-keys/{key_id}/rotate", tag = "api-keys", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ("key_id" = String, Path)), request_body = RotateApiKey, responses(
    (status = 201, description = "the new key, its plaintext shown this once", body = ApiKey),
    (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    (status = 409, description = "not active, or environment locked", body = ErrorEnvelope)))]
pub async fn rotate(
    State(state): State<AppState>,
    who: Caller,
    origin: Origin,
    Path((env_id, key_id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    // The body is optional: no body means the default grace period.
    let req: RotateApiKey = parse_optional_json(&body)?;
    let grace_hours = api_key::grace_period_hours(
        req.grace_period_hours
            .unwrap_or(api_key::DEFAULT_GRACE_HOURS),
    )?;
    let (env, access) = writable_env(&state, &who, &env_id).await?;
    let origin = origin.via(access.grant());
    let key_id = KeyId::parse(&key_id).ok_or_else(not_found)?;
    let old = state
        .store
        .api_key(&env.id, &key_id)
        .await?
        .ok_or_else(not_found)?;
    let now = enclave_core::clock::now_ms();
    // The successor gets the same lifetime the old key was given.
    let lifetime_days = old
        .expires_at
        .map(|e| ((e - old.created_at) / 86_400_000).clamp(1, api_key::MAX_EXPIRES_IN_DAYS));
    let request = CreateApiKey {
        name: old.name.clone(),
        scopes: old
            .scopes
            .0
            .iter()
            .map(|s| s.as_str().to_string())
            .collect(),
        role: Some(old.role),
        attributes: Some(old.attributes.0.clone()),
        ip_allowlist: Some(old.ip_allowlist.0.clone()),
        expires_in_days: lifetime_days,
    };
    let (new, plaintext) = prepare(&state, &who, &access, &env.id, env.env_type, request).await?;
    let grace_expires_at = now + grace_hours * 3_600_000;
    let (_, rec) = state
        .store
        .rotate_api_key(&env.id, &key_id, new, grace_expires_at, &origin)
        .await?;
    let location = key_path(&env_id, &rec.id);
    Ok(secret_response(
        StatusCode::CREATED,
        location,
        views::api_key(rec, Some(plaintext)),
    ))
}

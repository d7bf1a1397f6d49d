//! Environments: list, create, get (by id or slug), update, delete (with a dry run), reorder,
//! suspend and resume. Promotion, clone and diff are in `promotion.rs`.

use axum::extract::State;

use crate::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use enclave_core::api_key::ApiKey;
use enclave_core::environment::{
    self, EnvSettings, EnvStatus, EnvType, Environment, SettingsPatch,
};
use enclave_core::id::EnvId;
use enclave_core::pagination::{PageRequest, Pagination};
use enclave_core::{secret, validate, Error, Permission, Result};
use enclave_store::{EnvFilter, EnvPageQuery, EnvPatch};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::access::{env_access, require};
use crate::auth::{Caller, Origin, UserCaller};
use crate::environments::{create_and_provision, created, new_environment, shown, EnvFields};
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::{IfMatch, JsonBody, QueryParams};
use crate::key_issue;
use crate::state::AppState;
use crate::{lifecycle, views};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnvironment {
    /// 1–64 characters.
    pub name: String,
    /// `^[a-z0-9][a-z0-9_-]{0,63}$`, unique in the organization; default derived from `name`.
    pub slug: Option<String>,
    /// Default inferred from the slug.
    #[serde(rename = "type")]
    pub env_type: Option<EnvType>,
    /// `#RRGGBB`; default by type.
    pub color: Option<String>,
    pub parent_env_id: Option<String>,
    pub description: Option<String>,
    pub settings: Option<SettingsPatch>,
    /// Secret keys the environment must hold; the resource reports those it lacks in
    /// `missing_keys`.
    pub required_keys: Option<Vec<String>>,
    /// A first API key for the new environment, returned (once) in `api_key`.
    pub create_api_key: Option<key_issue::CreateApiKey>,
}

/// `PATCH` and `PUT` take the same body: every field optional, absent ones unchanged.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEnvironment {
    pub name: Option<String>,
    pub slug: Option<String>,
    #[serde(rename = "type")]
    pub env_type: Option<EnvType>,
    pub color: Option<String>,
    pub description: Option<String>,
    /// `null` removes the parent.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub parent_env_id: Option<Option<String>>,
    pub settings: Option<SettingsPatch>,
    /// Replaces the list of secret keys the environment must hold.
    pub required_keys: Option<Vec<String>>,
    /// While true, every other write is refused.
    pub locked: Option<bool>,
    /// New display position; the others shift to keep `0..n-1` dense.
    pub index: Option<i64>,
}

/// Tells `"field": null` (Some(None)) from an absent field (None).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> std::result::Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    pub status: Option<EnvStatus>,
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub env_type: Option<EnvType>,
    #[param(value_type = Option<String>)]
    pub parent_env_id: Option<EnvId>,
    /// Name or slug contains (case-insensitive).
    pub q: Option<String>,
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// A page of environments in display order, with the order's current version (what a
/// reorder must name).
#[derive(Serialize, ToSchema)]
pub struct EnvironmentList {
    pub data: Vec<Environment>,
    pub pagination: Pagination,
    pub order_version: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reorder {
    /// Every environment of the organization, exactly once, in the new order.
    pub order: Vec<EnvId>,
    /// The `order_version` of the list this order was made from.
    pub expected_version: i64,
}

#[derive(Serialize, ToSchema)]
pub struct Order {
    pub order: Vec<EnvId>,
    pub order_version: i64,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteParams {
    /// Answer what would be deleted, delete nothing.
    pub dry_run: Option<bool>,
}

/// What deleting an environment would remove, and what would stop it.
#[derive(Serialize, ToSchema)]
pub struct DeletePreview {
    pub env_id: EnvId,
    pub dry_run: bool,
    pub would_delete: WouldDelete,
    /// Why a real delete would be refused now (`environment_locked`, `has_children`,
    /// `decommissioning`); empty when it would succeed.
    pub blocked_by: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct WouldDelete {
    pub api_keys: i64,
    pub secrets: i64,
    pub policies: i64,
    /// Tables and views in the environment's data; null when its engine cannot be reached
    /// (a PostgreSQL engine whose connection string is missing or wrong).
    pub tables: Option<i64>,
}

async fn one(state: &AppState, rec: enclave_store::EnvRecord) -> Result<Response> {
    let version = rec.version;
    let env = shown(state, vec![rec])
        .await?
        .pop()
        .ok_or_else(Error::internal)?;
    Ok(views::with_etag(version, env))
}

/// `position:env_id`, the keyset of the display order.
fn env_cursor(e: &Environment) -> String {
    format!("{}:{}", e.index, e.env_id)
}

fn parse_env_cursor(after: Option<String>) -> Result<Option<(i64, EnvId)>> {
    let Some(key) = after else { return Ok(None) };
    let bad = || Error::validation("cursor", "invalid", "cursor is not one this API returned");
    let (pos, id) = key.split_once(':').ok_or_else(bad)?;
    let pos: i64 = pos.parse().map_err(|_| bad())?;
    let id = EnvId::parse(id).ok_or_else(bad)?;
    Ok(Some((pos, id)))
}

#[utoipa::path(get, path = "/v1/organizations/{org_id}/environments", tag = "environments", security(("bearer" = [])),
    params(("org_id" = String, Path), ListParams), responses(
    (status = 200, body = EnvironmentList), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    who: UserCaller,
    Path(org_id): Path<String>,
    QueryParams(q): QueryParams<ListParams>,
) -> ApiResult<axum::Json<EnvironmentList>> {
    let org_id = require(&state, &who, &org_id, Permission::ReadEnvironments)
        .await?
        .org_id;
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    if let Some(text) = &q.q {
        if text.chars().count() > 128 {
            return Err(
                Error::validation("q", "max_length", "q must be at most 128 characters").into(),
            );
        }
    }
    let filter = EnvFilter {
        status: q.status,
        env_type: q.env_type,
        parent_env_id: q.parent_env_id,
        q: q.q.filter(|s| !s.is_empty()),
    };
    let query = EnvPageQuery {
        limit: page.limit,
        after: parse_env_cursor(page.after.clone())?,
    };
    let result = state.store.environments(&org_id, &filter, &query).await?;
    let rows = shown(&state, result.rows).await?;
    let p = enclave_core::pagination::Page::from_rows(rows, &page, result.total, env_cursor);
    Ok(axum::Json(EnvironmentList {
        data: p.data,
        pagination: p.pagination,
        order_version: result.order_version,
    }))
}

#[utoipa::path(post, path = "/v1/organizations/{org_id}/environments", tag = "environments", security(("bearer" = [])),
    params(("org_id" = String, Path)), request_body = CreateEnvironment, responses(
    (status = 201, description = "the environment; with `api_key` when `create_api_key` was given", body = EnvironmentWithKey), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
    (status = 404, body = ErrorEnvelope), (status = 409, description = "slug taken", body = ErrorEnvelope),
    (status = 429, description = "QUOTA_EXCEEDED: the organization's max_environments", body = ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    Path(org_id): Path<String>,
    JsonBody(req): JsonBody<CreateEnvironment>,
) -> ApiResult<Response> {
    let access = require(&state, &who, &org_id, Permission::ManageEnvironments).await?;
    let settings = crate::environments::initial_settings(state.gateway.engines().default_engine)
        .apply(&req.settings.unwrap_or_default())?;
    crate::environments::check_placement(&state, None, &settings)?;
    let mut env = new_environment(
        &access.org_id,
        EnvFields {
            name: req.name,
            slug: req.slug,
            env_type: req.env_type,
            color: req.color,
            parent_env_id: req.parent_env_id,
            description: req.description,
        },
        settings,
    )?;
    if let Some(keys) = &req.required_keys {
        env.required_keys = secret::validate_required_keys("required_keys", keys)?;
    }
    // The first key is checked (and its secret hashed) before anything is written, so a bad
    // key request creates no environment.
    let caller = Caller::User(who);
    let key = match req.create_api_key {
        Some(k) => {
            let prepared = key_issue::prepare(&state, &caller, &access, &env.id, env.env_type, k);
            Some(prepared.await.map_err(|e| e.within("create_api_key"))?)
        }
        None => None,
    };
    let rec = create_and_provision(&state, env, &origin).await?;
    let Some((key, plaintext)) = key else {
        return Ok(created(&state, rec).await?);
    };
    let api_key = key_issue::create_prepared(&state, &access, key, plaintext, &origin).await?;
    let location = format!("/v1/environments/{}", rec.id);
    let mut resp = views::created(
        rec.version,
        location,
        EnvironmentWithKey {
            environment: shown(&state, vec![rec])
                .await?
                .pop()
                .ok_or_else(Error::internal)?,
            api_key: Some(api_key),
        },
    );
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

/// A new environment and the first API key asked for with it (its `key` shown this once).
#[derive(Serialize, ToSchema)]
pub struct EnvironmentWithKey {
    #[serde(flatten)]
    pub environment: Environment,
    /// Only when `create_api_key` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKey>,
}

#[utoipa::path(get, path = "/v1/environments/{env_id}", tag = "environments", security(("bearer" = [])),
    params(("env_id" = String, Path)), responses((status = 200, body = Environment), (status = 404, body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    who: Caller,
    Path(env_id): Path<String>,
) -> ApiResult<Response> {
    let (env, _) = env_access(&state, &who, &env_id, Permission::ReadEnvironments).await?;
    Ok(one(&state, env).await?)
}

#[utoipa::path(get, path = "/v1/organizations/{org_id}/environments/{slug}", tag = "environments", security(("bearer" = [])),
    params(("org_id" = String, Path), ("slug" = String, Path, description = "current slug, or an old one of a renamed environment")),
    responses((status = 200, body = Environment), (status = 404, body = ErrorEnvelope)))]
pub async fn get_by_slug(
    State(state): State<AppState>,
    who: UserCaller,
    Path((org_id, slug)): Path<(String, String)>,
) -> ApiResult<Response> {
    let org_id = require(&state, &who, &org_id, Permission::ReadEnvironments)
        .await?
        .org_id;
    let env = if slug.len() <= 64 {
        state.store.environment_by_slug(&org_id, &slug).await?
    } else {
        None
    };
    let env = env.ok_or_else(|| Error::not_found("environment"))?;
    Ok(one(&state, env).await?)
}

fn patch_of(req: UpdateEnvironment) -> Result<EnvPatch> {
    if let Some(s) = &req.settings {
        // Ranges are checked now; the store applies the patch onto the current values.
        EnvSettings::default().apply(s)?;
    }
    let parent_env_id = match &req.parent_env_id {
        Some(Some(p)) => Some(Some(EnvId::parse(p).ok_or_else(|| {
            Error::validation(
                "parent_env_id",
                "same_organization",
                "parent_env_id must name an environment of this organization",
            )
        })?)),
        Some(None) => Some(None),
        None => None,
    };
    Ok(EnvPatch {
        name: req
            .name
            .as_deref()
            .map(|n| validate::display_name("name", n, environment::MAX_NAME_CHARS))
            .transpose()?,
        slug: req
            .slug
            .as_deref()
            .map(|s| environment::slug("slug", s))
            .transpose()?,
        env_type: req.env_type,
        color: req
            .color
            .as_deref()
            .map(|c| environment::color("color", c))
            .transpose()?,
        description: req
            .description
            .as_deref()
            .map(|d| environment::description("description", d))
            .transpose()?,
        parent_env_id,
        settings: req.settings,
        required_keys: req
            .required_keys
            .as_deref()
            .map(|k| secret::validate_required_keys("required_keys", k))
            .transpose()?,
        locked: req.locked,
        index: req.index,
    })
}

#[utoipa::path(patch, path = "/v1/environments/{env_id}", tag = "environments", security(("bearer" = [])),
    params(("env_id" = String, Path), ("If-Match" = Option<String>, Header)), request_body = UpdateEnvironment, responses(
    (status = 200, body = Environment), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
    (status = 404, body = ErrorEnvelope), (status = 409, description = "slug taken, locked", body = ErrorEnvelope),
    (status = 412, body = ErrorEnvelope)))]
pub async fn update(
    State(state): State<AppState>,
    who: Caller,
    origin: Origin,
    Path(env_id): Path<String>,
    IfMatch(expected): IfMatch,
    JsonBody(req): JsonBody<UpdateEnvironment>,
) -> ApiResult<Response> {
    let (env, access) = env_access(&state, &who, &env_id, Permission::ManageEnvironments).await?;
    let (env_id, origin) = (env.id, origin.via(access.grant()));
    let mut expected = expected;
    if let Some(settings) = &req.settings {
        let next = env.settings.0.apply(settings)?;
        crate::environments::check_placement(&state, Some(&env.settings.0), &next)?;
        if next.placement() != env.settings.0.placement() {
            // Checked against the settings read now: they must still be the ones changed.
            expected = expected.or(Some(env.version));
        }
    }
    let patch = patch_of(req)?;
    let rec = state
        .store
        .update_environment(&env_id, expected, patch, &origin)
        .await?;
    Ok(one(&state, rec).await?)
}

#[utoipa::path(put, path = "/v1/environments/{env_id}", tag = "environments", security(("bearer" = [])),
    params(("env_id" = String, Path), ("If-Match" = Option<String>, Header)), request_body = UpdateEnvironment, responses(
    (status = 200, body = Environment), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
    (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope), (status = 412, body = ErrorEnvelope)))]
pub async fn replace(
    state: State<AppState>,
    who: Caller,
    origin: Origin,
    path: Path<String>,
    if_match: IfMatch,
    body: JsonBody<UpdateEnvironment>,
) -> ApiResult<Response> {
    update(state, who, origin, path, if_match, body).await
}

#[utoipa::path(delete, path = "/v1/environments/{env_id}", tag = "environments", security(("bearer" = [])),
    params(("env_id" = String, Path), ("If-Match" = Option<String>, Header), DeleteParams), responses(
    (status = 204, description = "deleted with everything in it"), (status = 200, description = "dry run", body = DeletePreview),
    (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    (status = 409, description = "locked, has children", body = ErrorEnvelope), (status = 412, body = ErrorEnvelope)))]
pub async fn delete(
    State(state): State<AppState>,
    who: Caller,
    origin: Origin,
    Path(env_id): Path<String>,
    IfMatch(expected): IfMatch,
    QueryParams(q): QueryParams<DeleteParams>,
) -> ApiResult<Response> {
    let (env, access) = env_access(&state, &who, &env_id, Permission::ManageEnvironments).await?;
    let origin = origin.via(access.grant());
    if q.dry_run.unwrap_or(false) {
        let contents = state.store.environment_contents(&env.id).await?;
        let mut blocked_by = Vec::new();
        if env.status == EnvStatus::Decommissioning {
            blocked_by.push("decommissioning".to_string());
        }
        if env.locked {
            blocked_by.push("environment_locked".to_string());
        }
        if state.store.child_count(&env.id).await? > 0 {
            blocked_by.push("has_children".to_string());
        }
        let preview = DeletePreview {
            env_id: env.id.clone(),
            dry_run: true,
            would_delete: WouldDelete {
                api_keys: contents.api_keys,
                secrets: contents.secrets,
                policies: contents.policies,
                tables: state.gateway.table_count(&env).await.ok(),
            },
            blocked_by,
        };
        return Ok(axum::Json(preview).into_response());
    }
    let rec = state
        .store
        .decommission_environment(&env.id, expected, &origin)
        .await?;
    lifecycle::decommission(state.store.as_ref(), state.gateway.engines(), &rec).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(post, path = "/v1/organizations/{org_id}/environments/reorder", tag = "environments", security(("bearer" = [])),
    params(("org_id" = String, Path)), request_body = Reorder, responses(
    (status = 200, body = Order), (status = 400, description = "not a complete order", body = ErrorEnvelope),
    (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    (status = 412, description = "the order changed since expected_version", body = ErrorEnvelope)))]
pub async fn reorder(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    Path(org_id): Path<String>,
    JsonBody(req): JsonBody<Reorder>,
) -> ApiResult<axum::Json<Order>> {
    let org_id = require(&state, &who, &org_id, Permission::ManageEnvironments)
        .await?
        .org_id;
    let order_version = state
        .store
        .reorder_environments(&org_id, req.expected_version, &req.order, &origin)
        .await?;
    Ok(axum::Json(Order {
        order: req.order,
        order_version,
    }))
}

async fn transition(
    state: &AppState,
    who: &Caller,
    origin: &Origin,
    env_id: &str,
    expected: Option<i64>,
    t: environment::Transition,
) -> ApiResult<Response> {
    let (env, access) = env_access(state, who, env_id, Permission::ManageEnvironments).await?;
    let origin = &origin.clone().via(access.grant());
    let rec = state
        .store
        .transition_environment(&env.id, expected, t, origin)
        .await?;
    Ok(one(state, rec).await?)
}

#[utoipa::path(post, path = "/v1/environments/{env_id}/suspend", tag = "environments", security(("bearer" = [])),
    params(("env_id" = String, Path), ("If-Match" = Option<String>, Header)), responses(
    (status = 200, body = Environment), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    (status = 409, description = "not active, or locked", body = ErrorEnvelope)))]
pub async fn suspend(
    State(state): State<AppState>,
    who: Caller,
    origin: Origin,
    Path(env_id): Path<String>,
    IfMatch(expected): IfMatch,
) -> ApiResult<Response> {
    transition(
        &state,
        &who,
        &origin,
        &env_id,
        expected,
        environment::Transition::Suspend,
    )
    .await
}

#[utoipa::path(post, path = "/v1/environments/{env_id}/resume", tag = "environments", security(("bearer" = [])),
    params(("env_id" = String, Path), ("If-Match" = Option<String>, Header)), responses(
    (status = 200, body = Environment), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    (status = 409, description = "not suspended, or locked", body = ErrorEnvelope)))]
pub async fn resume(
    State(state): State<AppState>,
    who: Caller,
    origin: Origin,
    Path(env_id): Path<String>,
    IfMatch(expected): IfMatch,
) -> ApiResult<Response> {
    transition(
        &state,
        &who,
        &origin,
        &env_id,
        expected,
        environment::Transition::Resume,
    )
    .await
}

/// What the caller may do in one environment.
#[derive(Serialize, ToSchema)]
pub struct EnvPermissions {
    pub env_id: EnvId,
    /// The role the caller acts with here: a member's own, or that of their live
    /// just-in-time grant; a key's role.
    #[schema(value_type = String)]
    pub role: enclave_core::Role,
    /// The just-in-time grant the role comes from, if any.
    pub jit_request_id: Option<String>,
    /// Every permission the role (and, for a key, its scopes) gives here, by name
    /// (`manage_secrets`, `read_secret_values`, …).
    pub permissions: Vec<&'static str>,
}

#[utoipa::path(get, path = "/v1/environments/{env_id}/permissions", tag = "environments", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path)), responses(
    (status = 200, description = "what the caller may do here; the endpoints enforce the same rules", body = EnvPermissions),
    (status = 404, body = ErrorEnvelope)))]
pub async fn permissions(
    State(state): State<AppState>,
    who: Caller,
    Path(env_id): Path<String>,
) -> ApiResult<axum::Json<EnvPermissions>> {
    let (env, access) = env_access(&state, &who, &env_id, Permission::ReadEnvironments).await?;
    let permissions = crate::access::permitted(|p| match &who {
        Caller::Key(key) => enclave_core::api_key::key_can(key.role, &key.scopes, p),
        Caller::User(_) => access.role.can(p),
    });
    Ok(axum::Json(EnvPermissions {
        env_id: env.id,
        role: access.role,
        jit_request_id: access.grant.map(|g| g.to_string()),
        permissions,
    }))
}

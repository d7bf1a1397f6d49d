//! `/v1/organizations`: create, list mine, get, update, delete, transfer ownership.

use axum::extract::State;

use crate::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use enclave_core::id::{EnvId, OrgId, UserId};
use enclave_core::membership::{check_transfer, ActingMember, Target};
use enclave_core::model::Organization;
use enclave_core::pagination::{Page, PageRequest};
use enclave_core::{validate, Error, Permission};
use enclave_store::{NewEnvironment, NewOrg, OrgPatch};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::access::{member_of, require};
use crate::auth::{Origin, UserCaller};
use crate::environments::{default_environments, new_environment, EnvFields};
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::{IfMatch, JsonBody, QueryParams};
use crate::state::AppState;
use crate::{lifecycle, views};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrganization {
    pub name: String,
    /// `^[a-z0-9][a-z0-9-]{1,62}$`, globally unique.
    pub slug: String,
    pub billing_email: String,
    pub cloud_region: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Value>,
    /// `true` or absent: development, staging and production; `false` or `[]`: none; a list
    /// of names: those environments, in that order.
    #[schema(value_type = Option<Object>)]
    pub default_environments: Option<DefaultEnvironments>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum DefaultEnvironments {
    Standard(bool),
    Named(Vec<String>),
}

/// The environments a new organization starts with, validated and within its quota.
fn first_environments(
    state: &AppState,
    org_id: &OrgId,
    requested: Option<DefaultEnvironments>,
) -> Result<Vec<NewEnvironment>, Error> {
    let settings = crate::environments::initial_settings(state.gateway.engines().default_engine);
    let envs = match requested {
        None | Some(DefaultEnvironments::Standard(true)) => default_environments(org_id, &settings),
        Some(DefaultEnvironments::Standard(false)) => Vec::new(),
        Some(DefaultEnvironments::Named(names)) => {
            let mut envs: Vec<NewEnvironment> = Vec::with_capacity(names.len());
            for (i, name) in names.into_iter().enumerate() {
                let field = format!("default_environments[{i}]");
                let env = new_environment(
                    org_id,
                    EnvFields {
                        name,
                        slug: None,
                        env_type: None,
                        color: None,
                        parent_env_id: None,
                        description: None,
                    },
                    settings.clone(),
                )
                .map_err(|e| Error::validation(&field, "environment_name", e.message))?;
                if envs.iter().any(|e| e.slug == env.slug) {
                    return Err(Error::validation(
                        &field,
                        "unique",
                        format!("{field} gives the slug `{}` twice", env.slug),
                    ));
                }
                envs.push(env);
            }
            envs
        }
    };
    if let Some(max) = state
        .config
        .limits(state.config.default_tier)
        .quotas
        .max_environments
    {
        if envs.len() > max as usize {
            return Err(Error::quota_exceeded("max_environments", u64::from(max)));
        }
    }
    Ok(envs)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrganization {
    pub name: Option<String>,
    pub billing_email: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Value>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferOwnership {
    pub user_id: UserId,
}

pub use crate::extract::ListParams;

fn cloud_region(value: &str) -> Result<String, Error> {
    let ok = (1..=32).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(value.to_string())
    } else {
        Err(Error::validation(
            "cloud_region",
            "pattern",
            "cloud_region must match ^[a-z0-9-]{1,32}$",
        ))
    }
}

#[utoipa::path(post, path = "/v1/organizations", tag = "organizations", security(("bearer" = [])),
    request_body = CreateOrganization, responses(
    (status = 201, body = Organization), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope),
    (status = 409, description = "slug taken", body = ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    JsonBody(req): JsonBody<CreateOrganization>,
) -> ApiResult<Response> {
    let name = validate::display_name("name", &req.name, 128)?;
    validate::org_slug("slug", &req.slug)?;
    let billing_email = validate::email("billing_email", &req.billing_email)?;
    let cloud_region = req.cloud_region.as_deref().map(cloud_region).transpose()?;
    let settings = req.settings.unwrap_or_else(|| serde_json::json!({}));
    validate::org_settings("settings", &settings)?;
    own_second_factor_first(&who, &settings)?;
    let user = state
        .store
        .user_by_id(&who.user_id)
        .await?
        .ok_or_else(Error::internal)?;
    let org_id = OrgId::generate();
    let environments = first_environments(&state, &org_id, req.default_environments)?;
    let env_ids: Vec<EnvId> = environments.iter().map(|e| e.id.clone()).collect();
    let org = NewOrg {
        id: org_id,
        name,
        slug: req.slug,
        billing_email,
        cloud_region,
        tier: state.config.default_tier,
        settings,
    };
    let rec = state
        .store
        .create_org(org, &user.id, &user.name, environments, &origin)
        .await?;
    for env_id in env_ids {
        lifecycle::provision(state.store.as_ref(), state.gateway.engines(), &env_id).await?;
    }
    let location = format!("/v1/organizations/{}", rec.id);
    Ok(views::created(
        rec.version,
        location,
        views::organization(&state.config, rec),
    ))
}

#[utoipa::path(get, path = "/v1/organizations", tag = "organizations", security(("bearer" = [])),
    params(ListParams), responses((status = 200, body = Page<Organization>), (status = 400, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    who: UserCaller,
    QueryParams(q): QueryParams<ListParams>,
) -> ApiResult<axum::Json<Page<Organization>>> {
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let (rows, total) = state.store.orgs_of_user(&who.user_id, &page).await?;
    let rows = rows
        .into_iter()
        .map(|r| views::organization(&state.config, r))
        .collect();
    Ok(axum::Json(Page::from_rows(
        rows,
        &page,
        total,
        |o: &Organization| o.org_id.to_string(),
    )))
}

#[utoipa::path(get, path = "/v1/organizations/{org_id}", tag = "organizations", security(("bearer" = [])),
    params(("org_id" = String, Path)), responses((status = 200, body = Organization), (status = 404, body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    who: UserCaller,
    Path(org_id): Path<String>,
) -> ApiResult<Response> {
    let org_id = member_of(&state, &who, &org_id).await?.org_id;
    let rec = state
        .auth_cache
        .org(&org_id)
        .await?
        .ok_or_else(|| Error::not_found("organization"))?;
    Ok(views::with_etag(
        rec.version,
        views::organization(&state.config, rec),
    ))
}

#[utoipa::path(patch, path = "/v1/organizations/{org_id}", tag = "organizations", security(("bearer" = [])),
    params(("org_id" = String, Path), ("If-Match" = Option<String>, Header)), request_body = UpdateOrganization, responses(
    (status = 200, body = Organization), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
    (status = 404, body = ErrorEnvelope), (status = 412, body = ErrorEnvelope)))]
pub async fn update(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    Path(org_id): Path<String>,
    IfMatch(expected): IfMatch,
    JsonBody(req): JsonBody<UpdateOrganization>,
) -> ApiResult<Response> {
    let org_id = require(&state, &who, &org_id, Permission::ManageOrganization)
        .await?
        .org_id;
    let patch = OrgPatch {
        name: req
            .name
            .as_deref()
            .map(|n| validate::display_name("name", n, 128))
            .transpose()?,
        billing_email: req
            .billing_email
            .as_deref()
            .map(|e| validate::email("billing_email", e))
            .transpose()?,
        settings: req.settings,
    };
    if let Some(s) = &patch.settings {
        validate::org_settings("settings", s)?;
        own_second_factor_first(&who, s)?;
    }
    let rec = state
        .store
        .update_org(&org_id, expected, patch, &origin)
        .await?;
    Ok(views::with_etag(
        rec.version,
        views::organization(&state.config, rec),
    ))
}

#[utoipa::path(delete, path = "/v1/organizations/{org_id}", tag = "organizations", security(("bearer" = [])),
    params(("org_id" = String, Path), ("If-Match" = Option<String>, Header)), responses(
    (status = 204, description = "deleted with everything it owns"), (status = 403, body = ErrorEnvelope),
    (status = 404, body = ErrorEnvelope), (status = 412, body = ErrorEnvelope)))]
pub async fn delete(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    Path(org_id): Path<String>,
    IfMatch(expected): IfMatch,
) -> ApiResult<StatusCode> {
    let org_id = require(&state, &who, &org_id, Permission::DeleteOrganization)
        .await?
        .org_id;
    state.store.delete_org(&org_id, expected, &origin).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/organizations/{org_id}/transfer-ownership", tag = "organizations", security(("bearer" = [])),
    params(("org_id" = String, Path)), request_body = TransferOwnership, responses(
    (status = 200, body = Organization), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    (status = 409, description = "target not an active member", body = ErrorEnvelope)))]
pub async fn transfer_ownership(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    Path(org_id): Path<String>,
    JsonBody(req): JsonBody<TransferOwnership>,
) -> ApiResult<Response> {
    let me = member_of(&state, &who, &org_id).await?;
    let target = state
        .store
        .member(&me.org_id, &req.user_id)
        .await?
        .ok_or_else(|| Error::not_found("user"))?;
    check_transfer(
        ActingMember {
            user_id: &me.user_id,
            role: me.role,
        },
        Target {
            user_id: &target.user_id,
            role: target.role,
            status: target.status,
        },
    )?;
    let rec = state
        .store
        .transfer_ownership(&me.org_id, &who.user_id, &target.user_id, &origin)
        .await?;
    Ok(views::with_etag(
        rec.version,
        views::organization(&state.config, rec),
    ))
}

/// Requiring a second factor of every member starts with one's own: an owner or admin without
/// one would lock themselves out.
fn own_second_factor_first(who: &UserCaller, settings: &serde_json::Value) -> Result<(), Error> {
    if validate::requires_mfa(settings) && !who.mfa {
        return Err(Error::conflict(
            "enrol_first",
            "turn on your own second factor (and sign in with it) before requiring one of every member",
        ));
    }
    Ok(())
}

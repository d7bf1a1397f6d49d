//! Request-level access control: the caller's standing in the organization of the path,
//! checked against the permission matrix (the rules are `auth::access`'s), the environment a
//! request names, and the origin of a change. Not being an (active) member answers 404, never
//! 403, so nobody learns which organizations exist.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use enclave_core::api_key::{key_can, Scope};
use enclave_core::id::{EnvId, OrgId};
use enclave_core::{Error, Permission, Result};
use enclave_store::{EnvRecord, Origin};

pub use crate::auth::access::{second_factor, standing, OrgAccess};
use crate::auth::origin::actor_of;
use crate::auth::{Caller, RequestMeta, UserCaller};
use crate::error::ApiError;
use crate::state::AppState;

/// The caller's active membership in `org_id`, or the error [`standing`] gives; 403
/// `mfa_required` where the organization requires a second factor the session lacks.
pub async fn member_of(state: &AppState, who: &UserCaller, org_id: &str) -> Result<OrgAccess> {
    let org_id = OrgId::parse(org_id).ok_or_else(|| Error::not_found("organization"))?;
    let m = standing(state.auth_cache.membership(&who.user_id, &org_id).await?)?;
    second_factor(&m, who.mfa)?;
    Ok(OrgAccess {
        org_id,
        user_id: who.user_id.to_string(),
        role: m.role,
        tier: m.tier,
        grant: None,
    })
}

/// [`member_of`], then the permission.
pub async fn require(
    state: &AppState,
    who: &UserCaller,
    org_id: &str,
    permission: Permission,
) -> Result<OrgAccess> {
    permit(member_of(state, who, org_id).await?, permission)
}

/// `access` if its role may exercise `permission`; 403 naming the permission otherwise.
fn permit(access: OrgAccess, permission: Permission) -> Result<OrgAccess> {
    if !access.role.can(permission) {
        return Err(Error::forbidden(
            &format!("permission:{}", permission.name()),
            format!(
                "the {} role may not {}",
                access.role,
                permission.name().replace('_', " ")
            ),
        ));
    }
    Ok(access)
}

/// The environment `env_id` and the caller's standing in its organization, checked against
/// `permission`. A person acts with the role of their live just-in-time grant in the
/// environment, if they have one (`OrgAccess::grant` names it). Unknown ids and environments
/// of organizations the caller does not belong to are both 404. An API key acts only in its
/// own environment (another one of its organization is 403) and only where both its role and
/// its scopes allow.
pub async fn env_access(
    state: &AppState,
    who: &Caller,
    env_id: &str,
    permission: Permission,
) -> Result<(EnvRecord, OrgAccess)> {
    let env = find_env(state, env_id).await?;
    match who {
        Caller::User(user) => {
            let mut access =
                member_of(state, user, &env.org_id)
                    .await
                    .map_err(|e| match e.code {
                        enclave_core::ErrorCode::NotFound => Error::not_found("environment"),
                        _ => e,
                    })?;
            (access.role, access.grant) = crate::auth::jit::acting_role(
                &state.auth_cache,
                &state.config.clock,
                &user.user_id,
                &env.id,
                access.role,
            )
            .await?;
            Ok((env, permit(access, permission)?))
        }
        Caller::Key(key) => {
            if env.org_id != key.org_id {
                return Err(Error::not_found("environment"));
            }
            if env.id != key.env_id {
                return Err(Error::forbidden(
                    "key_environment",
                    "an API key acts only in its own environment",
                ));
            }
            if !key_can(key.role, &key.scopes, permission) {
                let rule = match Scope::for_permission(permission) {
                    Some(scope) if key.role.can(permission) => format!("scope:{}", scope.as_str()),
                    _ => format!("permission:{}", permission.name()),
                };
                return Err(Error::forbidden(
                    &rule,
                    format!(
                        "this API key may not {}",
                        permission.name().replace('_', " ")
                    ),
                ));
            }
            let access = OrgAccess {
                org_id: key.org_id.clone(),
                user_id: key.key_id.to_string(),
                role: key.role,
                tier: key.tier,
                grant: None,
            };
            Ok((env, access))
        }
    }
}

/// The organization `org_id` for a person who is an active member of it (and may exercise
/// `for_users` when given) or for an API key of that organization whose role and scopes
/// allow `for_keys`. A key of another organization gets 404, as a non-member does.
pub async fn org_reader(
    state: &AppState,
    who: &Caller,
    org_id: &str,
    for_users: Option<Permission>,
    for_keys: Permission,
) -> Result<OrgAccess> {
    match who {
        Caller::User(user) => match for_users {
            Some(p) => require(state, user, org_id, p).await,
            None => member_of(state, user, org_id).await,
        },
        Caller::Key(key) => {
            if key.org_id.as_str() != org_id {
                return Err(Error::not_found("organization"));
            }
            let permission = for_keys;
            if !key_can(key.role, &key.scopes, permission) {
                let rule = match Scope::for_permission(permission) {
                    Some(scope) => format!("scope:{}", scope.as_str()),
                    None => format!("permission:{}", permission.name()),
                };
                return Err(Error::forbidden(
                    &rule,
                    format!(
                        "this API key may not {}",
                        permission.name().replace('_', " ")
                    ),
                ));
            }
            Ok(OrgAccess {
                org_id: key.org_id.clone(),
                user_id: key.key_id.to_string(),
                role: key.role,
                tier: key.tier,
                grant: None,
            })
        }
    }
}

/// The environment `env_id`, or 404 (also for anything that is not an environment id). No
/// authorization: callers check the caller's standing in its organization.
pub async fn find_env(state: &AppState, env_id: &str) -> Result<EnvRecord> {
    let not_found = || Error::not_found("environment");
    let env_id = EnvId::parse(env_id).ok_or_else(not_found)?;
    state
        .auth_cache
        .environment(&env_id)
        .await?
        .ok_or_else(not_found)
}
impl FromRequestParts<AppState> for Origin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let meta = RequestMeta::from_request_parts(parts, state).await?;
        Ok(meta.by(actor_of(&caller)))
    }
}

/// The names of every permission `can` allows, for an answer that tells a caller what it may
/// do (the endpoints themselves check each request).
pub fn permitted(can: impl Fn(Permission) -> bool) -> Vec<&'static str> {
    Permission::ALL
        .into_iter()
        .filter(|p| can(*p))
        .map(Permission::name)
        .collect()
}

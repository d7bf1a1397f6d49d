//! Organization-scoped authorization: the caller's membership in the organization of the
//! path, checked against the permission matrix. Not being an (active) member answers 404,
//! never 403, so nobody learns which organizations exist.

use enclave_core::api_key::{key_can, Scope};
use enclave_core::id::{is_id, Kind};
use enclave_core::model::{MemberStatus, OrgStatus, Tier};
use enclave_core::{Error, Permission, Result, Role};
use enclave_store::{AuthMembership, EnvRecord};

use crate::auth::{Caller, Principal};
use crate::state::AppState;

/// The caller's standing in one organization.
#[derive(Debug, Clone)]
pub struct OrgAccess {
    pub org_id: String,
    /// The acting user, or the acting API key.
    pub user_id: String,
    pub role: Role,
    pub tier: Tier,
}

/// What a membership allows, decided in one place for every door (requests, login, refresh):
/// an active membership of an active organization is `Ok`; a suspended one is 401 (its tokens
/// stop working at once); a suspended organization is 403; none, or a mere invitation, is 404
/// (nothing tells which organizations exist).
pub fn standing(m: Option<AuthMembership>) -> Result<AuthMembership> {
    let m = m.ok_or_else(|| Error::not_found("organization"))?;
    match m.status {
        MemberStatus::Active => {}
        MemberStatus::Suspended => {
            return Err(Error::unauthorized(
                "your membership in this organization is suspended",
            ))
        }
        MemberStatus::Invited => return Err(Error::not_found("organization")),
    }
    if m.org_status == OrgStatus::Suspended {
        return Err(Error::forbidden(
            "organization_suspended",
            "this organization is suspended",
        ));
    }
    Ok(m)
}

/// An organization that requires a second factor refuses a session opened without one.
pub fn second_factor(m: &AuthMembership, session_mfa: bool) -> Result<()> {
    if m.mfa_required && !session_mfa {
        return Err(Error::forbidden(
            "mfa_required",
            "this organization requires two-factor authentication: enrol a TOTP factor \
             (POST /v1/auth/mfa/totp) or sign in again with your code",
        ));
    }
    Ok(())
}

/// The caller's active membership in `org_id`, or the error [`standing`] gives; 403
/// `mfa_required` where the organization requires a second factor the session lacks.
pub async fn member_of(state: &AppState, who: &Principal, org_id: &str) -> Result<OrgAccess> {
    if !is_id(Kind::Organization, org_id) {
        return Err(Error::not_found("organization"));
    }
    let m = standing(state.auth_cache.membership(&who.user_id, org_id).await?)?;
    second_factor(&m, who.mfa)?;
    Ok(OrgAccess {
        org_id: org_id.to_string(),
        user_id: who.user_id.clone(),
        role: m.role,
        tier: m.tier,
    })
}

/// [`member_of`], then the permission.
pub async fn require(
    state: &AppState,
    who: &Principal,
    org_id: &str,
    permission: Permission,
) -> Result<OrgAccess> {
    let access = member_of(state, who, org_id).await?;
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
/// `permission`. Unknown ids and environments of organizations the caller does not belong to
/// are both 404. An API key acts only in its own environment (another one of its
/// organization is 403) and only where both its role and its scopes allow.
pub async fn env_access(
    state: &AppState,
    who: &Caller,
    env_id: &str,
    permission: Permission,
) -> Result<(EnvRecord, OrgAccess)> {
    let env = find_env(state, env_id).await?;
    match who {
        Caller::User(user) => {
            let access = require(state, user, &env.org_id, permission)
                .await
                .map_err(|e| match e.code {
                    enclave_core::ErrorCode::NotFound => Error::not_found("environment"),
                    _ => e,
                })?;
            Ok((env, access))
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
                user_id: key.key_id.clone(),
                role: key.role,
                tier: key.tier,
            };
            Ok((env, access))
        }
    }
}

/// The environment `env_id`, or 404 (also for anything that is not an environment id). No
/// authorization: callers check the caller's standing in its organization.
pub async fn find_env(state: &AppState, env_id: &str) -> Result<EnvRecord> {
    let not_found = || Error::not_found("environment");
    if !is_id(Kind::Environment, env_id) {
        return Err(not_found());
    }
    state
        .auth_cache
        .environment(env_id)
        .await?
        .ok_or_else(not_found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn membership(status: MemberStatus, org_status: OrgStatus) -> Option<AuthMembership> {
        Some(AuthMembership {
            role: Role::Developer,
            status,
            tier: Tier::Free,
            org_status,
            attributes: Default::default(),
            mfa_required: false,
        })
    }

    fn outcome(m: Option<AuthMembership>) -> std::result::Result<Role, (u16, String)> {
        standing(m).map(|m| m.role).map_err(|e| {
            let rule = e.details["rule"].as_str().unwrap_or_default().to_string();
            (e.http_status(), rule)
        })
    }

    #[test]
    fn a_required_second_factor_refuses_sessions_without_one() {
        let mut m = membership(MemberStatus::Active, OrgStatus::Active).unwrap();
        assert!(second_factor(&m, false).is_ok());
        m.mfa_required = true;
        assert!(second_factor(&m, true).is_ok());
        let e = second_factor(&m, false).unwrap_err();
        assert_eq!(
            (e.http_status(), e.details["rule"].as_str()),
            (403, Some("mfa_required"))
        );
    }

    #[test]
    fn standing_of_each_membership() {
        use MemberStatus::*;
        assert_eq!(
            outcome(membership(Active, OrgStatus::Active)),
            Ok(Role::Developer)
        );
        assert_eq!(
            outcome(membership(Suspended, OrgStatus::Active))
                .unwrap_err()
                .0,
            401
        );
        assert_eq!(
            outcome(membership(Invited, OrgStatus::Active))
                .unwrap_err()
                .0,
            404
        );
        assert_eq!(outcome(None).unwrap_err().0, 404);
        assert_eq!(
            outcome(membership(Active, OrgStatus::Suspended)),
            Err((403, "organization_suspended".to_string()))
        );
        // A suspended member of a suspended organization learns of their own suspension first.
        assert_eq!(
            outcome(membership(Suspended, OrgStatus::Suspended))
                .unwrap_err()
                .0,
            401
        );
    }
}

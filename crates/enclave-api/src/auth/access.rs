//! Organization-scoped authorization: the caller's membership in the organization of the
//! path, checked against the permission matrix. Not being an (active) member answers 404,
//! never 403, so nobody learns which organizations exist.

use enclave_core::id::{is_id, Kind};
use enclave_core::model::{MemberStatus, OrgStatus, Tier};
use enclave_core::{Error, Permission, Result, Role};
use enclave_store::AuthMembership;

use crate::auth::Principal;
use crate::state::AppState;

/// The caller's standing in one organization.
#[derive(Debug, Clone)]
pub struct OrgAccess {
    pub org_id: String,
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

/// The caller's active membership in `org_id`, or the error [`standing`] gives.
pub async fn member_of(state: &AppState, who: &Principal, org_id: &str) -> Result<OrgAccess> {
    if !is_id(Kind::Organization, org_id) {
        return Err(Error::not_found("organization"));
    }
    let m = standing(state.auth_cache.membership(&who.user_id, org_id).await?)?;
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

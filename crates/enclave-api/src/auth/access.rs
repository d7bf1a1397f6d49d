//! Organization-scoped authorization: the caller's membership in the organization of the
//! path, checked against the permission matrix. Not being an (active) member answers 404,
//! never 403, so nobody learns which organizations exist.

use enclave_core::id::{JitId, OrgId};
use enclave_core::model::{MemberStatus, OrgStatus, Tier};
use enclave_core::{Error, Result, Role};
use enclave_store::AuthMembership;

/// The caller's standing in one organization.
#[derive(Debug, Clone)]
pub struct OrgAccess {
    pub org_id: OrgId,
    /// The acting user, or the acting API key.
    pub user_id: String,
    /// The role the caller acts with: a member's own, or that of their live just-in-time
    /// grant in the environment of the request.
    pub role: Role,
    pub tier: Tier,
    /// The grant `role` comes from, if any.
    pub grant: Option<JitId>,
}

impl OrgAccess {
    /// The grant whose role the caller acts with, as an audit entry names it.
    pub fn grant(&self) -> Option<&str> {
        self.grant.as_deref()
    }
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

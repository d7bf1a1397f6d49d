//! The rules of membership changes (docs/identity.md): exactly one owner, only the owner
//! grants — or takes away — `admin`, nobody changes their own role, the owner is never
//! removed, demoted or suspended except by transferring ownership.
//!
//! Each function checks one kind of change, given who acts and on whom. The caller has
//! already checked the `manage_users` permission.

use crate::error::{Error, Result};
use crate::model::MemberStatus;
use crate::role::Role;

/// The member who makes the change (their own membership: the caller passed `member_of`).
#[derive(Debug, Clone, Copy)]
pub struct ActingMember<'a> {
    pub user_id: &'a str,
    pub role: Role,
}

/// The member acted upon.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub user_id: &'a str,
    pub role: Role,
    pub status: MemberStatus,
}

fn owner_is_fixed(what: &str) -> Error {
    Error::conflict(
        "single_owner",
        format!("the owner cannot be {what}; transfer ownership first"),
    )
}

/// Managing an admin (role, status, removal) is the owner's alone, like granting it.
fn admin_needs_owner(actor: ActingMember, target: Target) -> Result<()> {
    if target.role == Role::Admin && actor.role != Role::Owner {
        return Err(Error::forbidden(
            "only_owner_manages_admins",
            "only the owner can change, suspend or remove an admin",
        ));
    }
    Ok(())
}

/// Inviting someone with `role`.
pub fn check_invite(actor: ActingMember, role: Role) -> Result<()> {
    if role == Role::Owner {
        return Err(Error::validation(
            "role",
            "not_owner",
            "nobody can be invited as owner; transfer ownership instead",
        ));
    }
    if role == Role::Admin && actor.role != Role::Owner {
        return Err(Error::forbidden(
            "only_owner_grants_admin",
            "only the owner can grant admin",
        ));
    }
    Ok(())
}

/// `PUT …/users/{id}/role`.
pub fn check_role_change(actor: ActingMember, target: Target, new_role: Role) -> Result<()> {
    if actor.user_id == target.user_id {
        return Err(Error::forbidden(
            "own_role",
            "nobody can change their own role",
        ));
    }
    if target.role == Role::Owner {
        return Err(owner_is_fixed("demoted"));
    }
    if new_role == Role::Owner {
        return Err(Error::validation(
            "role",
            "not_owner",
            "ownership moves only through transfer-ownership",
        ));
    }
    if new_role == Role::Admin && actor.role != Role::Owner {
        return Err(Error::forbidden(
            "only_owner_grants_admin",
            "only the owner can grant admin",
        ));
    }
    admin_needs_owner(actor, target)
}

/// `PATCH …/users/{id}` with a `status`.
pub fn check_status_change(
    actor: ActingMember,
    target: Target,
    new_status: MemberStatus,
) -> Result<()> {
    if new_status == target.status {
        return Ok(());
    }
    if target.role == Role::Owner {
        return Err(owner_is_fixed("suspended"));
    }
    if actor.user_id == target.user_id {
        return Err(Error::forbidden(
            "own_status",
            "nobody can change their own status",
        ));
    }
    match (target.status, new_status) {
        (MemberStatus::Active, MemberStatus::Suspended)
        | (MemberStatus::Suspended, MemberStatus::Active) => admin_needs_owner(actor, target),
        (MemberStatus::Invited, _) => Err(Error::conflict(
            "illegal_transition",
            "an invited member becomes active only by accepting the invitation",
        )),
        (_, MemberStatus::Invited) => Err(Error::validation(
            "status",
            "enum",
            "status can be set to active or suspended",
        )),
        _ => Ok(()),
    }
}

/// `DELETE …/users/{id}`. Members other than the owner may remove themselves (leave).
pub fn check_removal(actor: ActingMember, target: Target) -> Result<()> {
    if target.role == Role::Owner {
        return Err(owner_is_fixed("removed"));
    }
    if actor.user_id == target.user_id {
        return Ok(());
    }
    admin_needs_owner(actor, target)
}

/// Recovering a member's account — a password reset link, or turning off a second factor
/// they lost — by an owner or admin. Never one's own (change it yourself), never the owner's
/// (the owner keeps recovery codes; nobody above them could vouch), an admin's only by the
/// owner, and not before the invitation is accepted.
pub fn check_account_recovery(actor: ActingMember, target: Target) -> Result<()> {
    if actor.user_id == target.user_id {
        return Err(Error::forbidden(
            "own_account",
            "recover someone else's account; change your own password or second factor under /v1/auth",
        ));
    }
    if target.role == Role::Owner {
        return Err(Error::forbidden(
            "owner_account",
            "nobody can reset the owner's account; the owner uses a recovery code",
        ));
    }
    admin_needs_owner(actor, target)?;
    if target.status == MemberStatus::Invited {
        return Err(Error::conflict(
            "invitation_pending",
            "this member has not accepted the invitation yet; invite them again instead",
        ));
    }
    Ok(())
}

/// `POST …/transfer-ownership`.
pub fn check_transfer(actor: ActingMember, target: Target) -> Result<()> {
    if actor.role != Role::Owner {
        return Err(Error::forbidden(
            "owner_only",
            "only the owner can transfer ownership",
        ));
    }
    if actor.user_id == target.user_id {
        return Err(Error::validation(
            "user_id",
            "not_self",
            "the owner already owns the organization",
        ));
    }
    if target.status != MemberStatus::Active {
        return Err(Error::conflict(
            "member_not_active",
            "ownership can only go to an active member",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn account_recovery() {
        let admin = ActingMember {
            user_id: "usr_a",
            role: Role::Admin,
        };
        let owner = ActingMember {
            user_id: "usr_o",
            role: Role::Owner,
        };
        let member = |user_id, role, status| Target {
            user_id,
            role,
            status,
        };
        let rule = |r: Result<()>| {
            r.map_err(|e| e.details["rule"].as_str().unwrap_or_default().to_string())
        };
        let dev = member("usr_d", Role::Developer, MemberStatus::Active);
        assert_eq!(rule(check_account_recovery(admin, dev)), Ok(()));
        assert_eq!(rule(check_account_recovery(owner, dev)), Ok(()));
        let suspended = member("usr_d", Role::Developer, MemberStatus::Suspended);
        assert_eq!(rule(check_account_recovery(admin, suspended)), Ok(()));
        assert_eq!(
            rule(check_account_recovery(
                admin,
                member("usr_a", Role::Admin, MemberStatus::Active)
            )),
            Err("own_account".into())
        );
        assert_eq!(
            rule(check_account_recovery(
                admin,
                member("usr_o", Role::Owner, MemberStatus::Active)
            )),
            Err("owner_account".into())
        );
        assert_eq!(
            rule(check_account_recovery(
                admin,
                member("usr_b", Role::Admin, MemberStatus::Active)
            )),
            Err("only_owner_manages_admins".into())
        );
        assert_eq!(
            rule(check_account_recovery(
                owner,
                member("usr_b", Role::Admin, MemberStatus::Active)
            )),
            Ok(())
        );
        let invited = member("usr_i", Role::Developer, MemberStatus::Invited);
        assert_eq!(
            check_account_recovery(admin, invited).unwrap_err().code,
            ErrorCode::Conflict
        );
    }

    const OWNER: ActingMember = ActingMember {
        user_id: "usr_o",
        role: Role::Owner,
    };
    const ADMIN: ActingMember = ActingMember {
        user_id: "usr_a",
        role: Role::Admin,
    };

    fn t(user_id: &str, role: Role, status: MemberStatus) -> Target<'_> {
        Target {
            user_id,
            role,
            status,
        }
    }

    fn code<T>(r: Result<T>) -> Option<(ErrorCode, String)> {
        r.err().map(|e| {
            (
                e.code,
                e.details["rule"].as_str().unwrap_or_default().to_string(),
            )
        })
    }

    #[test]
    fn invitations() {
        assert!(check_invite(OWNER, Role::Admin).is_ok());
        assert!(check_invite(ADMIN, Role::Developer).is_ok());
        assert_eq!(
            code(check_invite(ADMIN, Role::Admin)).unwrap().0,
            ErrorCode::Forbidden
        );
        assert_eq!(
            code(check_invite(OWNER, Role::Owner)).unwrap().0,
            ErrorCode::ValidationError
        );
    }

    #[test]
    fn role_changes() {
        let dev = t("usr_d", Role::Developer, MemberStatus::Active);
        assert!(check_role_change(OWNER, dev, Role::Admin).is_ok());
        assert!(check_role_change(ADMIN, dev, Role::Analyst).is_ok());
        assert_eq!(
            code(check_role_change(ADMIN, dev, Role::Admin)).unwrap().1,
            "only_owner_grants_admin"
        );
        let me = t("usr_a", Role::Admin, MemberStatus::Active);
        assert_eq!(
            code(check_role_change(ADMIN, me, Role::Developer))
                .unwrap()
                .1,
            "own_role"
        );
        let owner = t("usr_o", Role::Owner, MemberStatus::Active);
        assert_eq!(
            code(check_role_change(ADMIN, owner, Role::Developer))
                .unwrap()
                .1,
            "single_owner"
        );
        assert_eq!(
            code(check_role_change(OWNER, dev, Role::Owner)).unwrap().0,
            ErrorCode::ValidationError
        );
        let other_admin = t("usr_b", Role::Admin, MemberStatus::Active);
        assert_eq!(
            code(check_role_change(ADMIN, other_admin, Role::Developer))
                .unwrap()
                .1,
            "only_owner_manages_admins"
        );
        assert!(check_role_change(OWNER, other_admin, Role::Developer).is_ok());
    }

    #[test]
    fn status_changes() {
        let dev = t("usr_d", Role::Developer, MemberStatus::Active);
        assert!(check_status_change(ADMIN, dev, MemberStatus::Suspended).is_ok());
        let owner = t("usr_o", Role::Owner, MemberStatus::Active);
        assert_eq!(
            code(check_status_change(ADMIN, owner, MemberStatus::Suspended))
                .unwrap()
                .1,
            "single_owner"
        );
        let invited = t("usr_i", Role::Developer, MemberStatus::Invited);
        assert_eq!(
            code(check_status_change(ADMIN, invited, MemberStatus::Active))
                .unwrap()
                .1,
            "illegal_transition"
        );
        assert_eq!(
            code(check_status_change(ADMIN, dev, MemberStatus::Invited))
                .unwrap()
                .0,
            ErrorCode::ValidationError
        );
        let me = t("usr_a", Role::Admin, MemberStatus::Active);
        assert_eq!(
            code(check_status_change(ADMIN, me, MemberStatus::Suspended))
                .unwrap()
                .1,
            "own_status"
        );
        assert!(
            check_status_change(ADMIN, dev, MemberStatus::Active).is_ok(),
            "no-op"
        );
    }

    #[test]
    fn removal_and_transfer() {
        let owner = t("usr_o", Role::Owner, MemberStatus::Active);
        assert_eq!(code(check_removal(OWNER, owner)).unwrap().1, "single_owner");
        assert!(
            check_removal(ADMIN, t("usr_a", Role::Admin, MemberStatus::Active)).is_ok(),
            "leaving"
        );
        assert_eq!(
            code(check_removal(
                ADMIN,
                t("usr_b", Role::Admin, MemberStatus::Active)
            ))
            .unwrap()
            .0,
            ErrorCode::Forbidden
        );
        let dev = t("usr_d", Role::Developer, MemberStatus::Active);
        assert!(check_transfer(OWNER, dev).is_ok());
        assert_eq!(code(check_transfer(ADMIN, dev)).unwrap().1, "owner_only");
        assert_eq!(
            code(check_transfer(
                OWNER,
                t("usr_d", Role::Developer, MemberStatus::Suspended)
            ))
            .unwrap()
            .1,
            "member_not_active"
        );
    }
}

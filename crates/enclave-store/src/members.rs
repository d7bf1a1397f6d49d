//! Memberships: invitations (tokens kept as hashes), acceptance, roles and status, removal,
//! and what authorization reads on every request.

use enclave_core::clock::now_ms;
use enclave_core::id::{OrgId, UserId};
use enclave_core::model::{MemberStatus, OrgStatus, Tier};
use enclave_core::{Error, Result};

use crate::db::{self, Tx};
use crate::db_error::{internal, unique_or};
use crate::journal::*;
use crate::organizations::*;
use crate::records::*;
use crate::store::{for_update, Store};
use crate::users::*;
use crate::Invalidation;

pub(crate) const MEMBER_SELECT: &str = "SELECT m.org_id, m.user_id, u.email, m.name, m.role, \
     m.status, m.attributes, m.invite_token, m.invite_expires_at, m.created_at, m.updated_at, \
     m.version, u.mfa_enabled_at FROM memberships m JOIN users u ON u.id = m.user_id";

impl Store {
    pub async fn member(
        &self,
        org_id: &OrgId,
        user_id: &UserId,
    ) -> enclave_core::Result<Option<MemberRecord>> {
        db::query_as(format!(
            "{MEMBER_SELECT} WHERE m.org_id = $1 AND m.user_id = $2"
        ))
        .bind(org_id)
        .bind(user_id)
        .fetch_optional(self.reader())
        .await
        .map_err(internal)
    }

    pub async fn members(
        &self,
        org_id: &OrgId,
        filter: &MemberFilter,
        page: &PageQuery,
    ) -> enclave_core::Result<(Vec<MemberRecord>, i64)> {
        let role = filter.role.map(|r| r.as_str());
        let status = filter.status.map(|s| s.as_str());
        let rows = db::query_as(format!(
            "{MEMBER_SELECT} WHERE m.org_id = $1 AND ($2 IS NULL OR m.role = $2) \
             AND ($3 IS NULL OR m.status = $3) AND ($4 IS NULL OR m.user_id > $4) \
             ORDER BY m.user_id LIMIT $5"
        ))
        .bind(org_id)
        .bind(role)
        .bind(status)
        .bind(page.after.as_deref())
        .bind(page.limit as i64 + 1)
        .fetch_all(self.reader())
        .await
        .map_err(internal)?;
        let total = db::query_scalar(
            "SELECT COUNT(*) FROM memberships WHERE org_id = $1 AND ($2 IS NULL OR role = $2) \
             AND ($3 IS NULL OR status = $3)",
        )
        .bind(org_id)
        .bind(role)
        .bind(status)
        .fetch_one(self.reader())
        .await
        .map_err(internal)?;
        Ok((rows, total))
    }

    /// Creates the user when the e-mail is new, then an `invited` membership. `max_users` is
    /// the organization's quota of members, invitations included (`None`: unlimited) → 429
    /// past it.
    pub async fn invite(
        &self,
        invite: NewInvite,
        max_users: Option<u32>,
        origin: &Origin,
    ) -> enclave_core::Result<MemberRecord> {
        let mut tx = self.begin_write().await?;
        if let Some(max) = max_users {
            // The organization's row, locked: concurrent invitations count one at a time.
            crate::organizations::select_org_for_update(&mut tx, &invite.org_id).await?;
            let members: i64 =
                db::query_scalar("SELECT COUNT(*) FROM memberships WHERE org_id = $1")
                    .bind(&invite.org_id)
                    .fetch_one(&mut tx)
                    .await
                    .map_err(internal)?;
            if members >= i64::from(max) {
                return Err(Error::quota_exceeded("max_users", u64::from(max)));
            }
        }
        let existing: Option<UserRecord> =
            db::query_as(format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1"))
                .bind(&invite.email)
                .fetch_optional(&mut tx)
                .await
                .map_err(internal)?;
        let user = match existing {
            Some(u) => u,
            None => {
                let default_name = invite
                    .email
                    .split('@')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let new = NewUser {
                    id: invite.new_user_id.clone(),
                    email: invite.email.clone(),
                    name: invite.name.clone().unwrap_or(default_name),
                    password_hash: None,
                };
                insert_user(&mut tx, new).await.map_err(internal)?
            }
        };
        let now = now_ms();
        db::query(
            "INSERT INTO memberships (org_id, user_id, name, role, status, attributes, invite_token, \
             invite_expires_at, created_at, updated_at, version) \
             VALUES ($1, $2, $3, $4, 'invited', $5, $6, $7, $8, $8, 1)",
        )
        .bind(&invite.org_id)
        .bind(&user.id)
        .bind(invite.name.as_deref().unwrap_or(&user.name))
        .bind(invite.role.as_str())
        .bind(sqlx::types::Json(std::collections::BTreeMap::<String, String>::new()))
        .bind(&invite.token)
        .bind(invite.expires_at)
        .bind(now)
        .execute(&mut tx)
        .await
        .map_err(unique_or(|| Error::conflict("already_member", "this e-mail is already a member or invited")))?;
        let rec = select_member(&mut tx, &invite.org_id, &user.id).await?;
        journal(
            &mut tx,
            origin,
            Change::of("user.invited", None, Some(&rec)),
        )
        .await?;
        self.commit(tx, vec![]).await?;
        Ok(rec)
    }

    /// The invited membership whose token hashes to `token_hash`.
    pub async fn member_by_invite(
        &self,
        token: &str,
    ) -> enclave_core::Result<Option<(MemberRecord, UserRecord)>> {
        let member: Option<MemberRecord> =
            db::query_as(format!("{MEMBER_SELECT} WHERE m.invite_token = $1"))
                .bind(token)
                .fetch_optional(self.reader())
                .await
                .map_err(internal)?;
        let Some(member) = member else {
            return Ok(None);
        };
        let user = self
            .user_by_id(&member.user_id)
            .await?
            .ok_or_else(Error::internal)?;
        Ok(Some((member, user)))
    }

    /// Replaces every invitation token an older release stored in clear (`inv_…`) by its
    /// `hash`; returns how many.
    pub async fn hash_invite_tokens(&self, hash: &crate::HashToken) -> enclave_core::Result<u64> {
        let mut tx = self.begin_write().await?;
        let clear: Vec<(String, String, String)> = db::query_as(format!(
            "SELECT org_id, user_id, invite_token FROM memberships WHERE invite_token LIKE 'inv_%'{}",
            crate::store::for_update(&tx)
        ))
        .fetch_all(&mut tx)
        .await
        .map_err(internal)?;
        let count = clear.len() as u64;
        let hashed: Vec<(String, String, String)> = clear
            .into_iter()
            .map(|(o, u, t)| (o, u, hash(&t)))
            .collect();
        for (org_id, user_id, token_hash) in hashed {
            db::query(
                "UPDATE memberships SET invite_token = $3 WHERE org_id = $1 AND user_id = $2",
            )
            .bind(org_id)
            .bind(user_id)
            .bind(token_hash)
            .execute(&mut tx)
            .await
            .map_err(internal)?;
        }
        self.commit(tx, vec![]).await?;
        Ok(count)
    }

    /// Activates an invited membership; sets the user's password when given.
    pub async fn accept_invite(
        &self,
        org_id: &OrgId,
        user_id: &UserId,
        password_hash: Option<String>,
        name: Option<String>,
        origin: &Origin,
    ) -> enclave_core::Result<MemberRecord> {
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        let done = db::query(
            "UPDATE memberships SET status = 'active', invite_token = NULL, invite_expires_at = NULL, \
             name = COALESCE($3, name), updated_at = $4, version = version + 1 \
             WHERE org_id = $1 AND user_id = $2 AND status = 'invited'",
        )
        .bind(org_id)
        .bind(user_id)
        .bind(name.as_deref())
        .bind(now)
        .execute(&mut tx)
        .await
        .map_err(internal)?
        .rows_affected();
        if done != 1 {
            return Err(Error::conflict(
                "invitation_used",
                "this invitation was already accepted",
            ));
        }
        if let Some(hash) = password_hash {
            db::query("UPDATE users SET password_hash = $2, name = COALESCE($3, name), updated_at = $4 WHERE id = $1")
                .bind(user_id)
                .bind(hash)
                .bind(name.as_deref())
                .bind(now)
                .execute(&mut tx)
                .await
                .map_err(internal)?;
        }
        let rec = select_member(&mut tx, org_id, user_id).await?;
        let change = Change::of("user.joined", None, Some(&rec))
            .before(serde_json::json!({"status": "invited"}));
        journal(&mut tx, origin, change).await?;
        let events = vec![
            Invalidation::Member {
                org_id: org_id.into(),
                user_id: user_id.into(),
            },
            Invalidation::User {
                user_id: user_id.into(),
            },
        ];
        self.commit(tx, events).await?;
        Ok(rec)
    }

    pub async fn update_member(
        &self,
        org_id: &OrgId,
        user_id: &UserId,
        expected_version: i64,
        patch: MemberPatch,
        origin: &Origin,
    ) -> enclave_core::Result<MemberRecord> {
        let mut tx = self.begin_write().await?;
        let before = find_member(&mut tx, org_id, user_id).await?;
        let done = db::query(
            "UPDATE memberships SET name = COALESCE($3, name), status = COALESCE($4, status), \
             attributes = COALESCE($5, attributes), role = COALESCE($6, role), updated_at = $7, \
             version = version + 1 WHERE org_id = $1 AND user_id = $2 AND version = $8",
        )
        .bind(org_id)
        .bind(user_id)
        .bind(patch.name)
        .bind(patch.status.map(|s| s.as_str()))
        .bind(patch.attributes.map(sqlx::types::Json))
        .bind(patch.role.map(|r| r.as_str()))
        .bind(now_ms())
        .bind(expected_version)
        .execute(&mut tx)
        .await
        .map_err(unique_or(|| {
            Error::conflict("single_owner", "the organization already has an owner")
        }))?
        .rows_affected();
        if done == 0 {
            return Err(missing_or_stale(
                &mut tx,
                "SELECT COUNT(*) FROM memberships WHERE org_id = $1 AND user_id = $2",
                &[org_id, user_id],
                "user",
            )
            .await);
        }
        let rec = select_member(&mut tx, org_id, user_id).await?;
        if let Some(before) = &before {
            let action = if before.role != rec.role {
                "user.role_changed"
            } else {
                "user.updated"
            };
            journal(
                &mut tx,
                origin,
                Change::of(action, Some(before), Some(&rec)),
            )
            .await?;
        }
        self.commit(
            tx,
            vec![Invalidation::Member {
                org_id: org_id.into(),
                user_id: user_id.into(),
            }],
        )
        .await?;
        Ok(rec)
    }

    pub async fn remove_member(
        &self,
        org_id: &OrgId,
        user_id: &UserId,
        expected_version: i64,
        origin: &Origin,
    ) -> enclave_core::Result<()> {
        let mut tx = self.begin_write().await?;
        let before = find_member(&mut tx, org_id, user_id).await?;
        let done = db::query(
            "DELETE FROM memberships WHERE org_id = $1 AND user_id = $2 AND version = $3 AND role <> 'owner'",
        )
        .bind(org_id)
        .bind(user_id)
        .bind(expected_version)
        .execute(&mut tx)
        .await
        .map_err(internal)?
        .rows_affected();
        if done == 0 {
            return Err(missing_or_stale(
                &mut tx,
                "SELECT COUNT(*) FROM memberships WHERE org_id = $1 AND user_id = $2",
                &[org_id, user_id],
                "user",
            )
            .await);
        }
        if let Some(before) = &before {
            journal(
                &mut tx,
                origin,
                Change::of("user.removed", Some(before), None),
            )
            .await?;
        }
        self.commit(
            tx,
            vec![Invalidation::Member {
                org_id: org_id.into(),
                user_id: user_id.into(),
            }],
        )
        .await
    }

    /// What authorization needs on every request: role, status and organization tier.
    pub async fn auth_membership(
        &self,
        user_id: &UserId,
        org_id: &OrgId,
    ) -> enclave_core::Result<Option<AuthMembership>> {
        #[allow(clippy::type_complexity)]
        let row: Option<(String, String, String, String, sqlx::types::Json<std::collections::BTreeMap<String, String>>, sqlx::types::Json<serde_json::Value>)> = db::query_as(
            "SELECT m.role, m.status, o.tier, o.status, m.attributes, o.settings FROM memberships m \
             JOIN organizations o ON o.id = m.org_id WHERE m.user_id = $1 AND m.org_id = $2",
        )
        .bind(user_id)
        .bind(org_id)
        .fetch_optional(self.reader())
        .await
        .map_err(internal)?;
        Ok(row.map(
            |(role, status, tier, org_status, attributes, settings)| AuthMembership {
                role: role.parse().unwrap_or(enclave_core::Role::Auditor),
                status: MemberStatus::parse(&status).unwrap_or(MemberStatus::Suspended),
                tier: Tier::parse(&tier).unwrap_or(Tier::Free),
                org_status: OrgStatus::parse(&org_status).unwrap_or(OrgStatus::Suspended),
                attributes: attributes.0,
                mfa_required: enclave_core::validate::requires_mfa(&settings.0),
            },
        ))
    }
}

/// The member `(org_id, user_id)`, which must exist.
pub(crate) async fn select_member(
    tx: &mut Tx,
    org_id: &OrgId,
    user_id: &UserId,
) -> Result<MemberRecord> {
    db::query_as::<MemberRecord>(&format!(
        "{MEMBER_SELECT} WHERE m.org_id = $1 AND m.user_id = $2"
    ))
    .bind(org_id)
    .bind(user_id)
    .fetch_one(tx)
    .await
    .map_err(internal)
}

/// The member, if any, locked until commit on PostgreSQL.
pub(crate) async fn find_member(
    tx: &mut Tx,
    org_id: &OrgId,
    user_id: &UserId,
) -> Result<Option<MemberRecord>> {
    db::query_as::<MemberRecord>(&format!(
        "{MEMBER_SELECT} WHERE m.org_id = $1 AND m.user_id = $2{}",
        for_update(tx)
    ))
    .bind(org_id)
    .bind(user_id)
    .fetch_optional(tx)
    .await
    .map_err(internal)
}

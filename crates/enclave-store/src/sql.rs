//! The store's SQL, written once. `impl_store!` expands it for a concrete backend type that
//! provides three hooks:
//! - `self.reader()` — the pool for reads;
//! - `self.begin_write()` — a transaction that holds the write lock from its first
//!   statement (SQLite: `BEGIN IMMEDIATE`, so it can never fail with SQLITE_BUSY halfway);
//! - `self.commit(tx, events)` — commits, then publishes the invalidations (PostgreSQL also
//!   sends them to other nodes with `pg_notify` inside the transaction).
//!
//! Placeholders are `$N` on both backends; timestamps are epoch milliseconds.

pub(crate) const ORG_COLUMNS: &str = "id, name, slug, billing_email, cloud_region, tier, status, \
     settings, created_at, updated_at, version";

pub(crate) const MEMBER_SELECT: &str = "SELECT m.org_id, m.user_id, u.email, m.name, m.role, \
     m.status, m.attributes, m.invite_token, m.invite_expires_at, m.created_at, m.updated_at, \
     m.version, u.mfa_enabled_at FROM memberships m JOIN users u ON u.id = m.user_id";

pub(crate) const USER_COLUMNS: &str =
    "id, email, name, password_hash, mfa_enabled_at, created_at, updated_at";

pub(crate) const SESSION_COLUMNS: &str =
    "id, user_id, org_id, created_at, expires_at, revoked_at, mfa_at";

macro_rules! impl_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::Store for $store {
            fn backend(&self) -> $crate::Backend {
                self.which()
            }

            fn bus(&self) -> &$crate::Bus {
                self.invalidations()
            }

            async fn ping(&self) -> enclave_core::Result<()> {
                db::query("SELECT 1").execute(self.reader()).await.map(|_| ()).map_err(internal)
            }

            async fn announce(&self, events: Vec<$crate::Invalidation>) -> enclave_core::Result<()> {
                let tx = self.begin_write().await?;
                self.commit(tx, events).await
            }

            async fn count_users(&self) -> enclave_core::Result<i64> {
                db::query_scalar("SELECT COUNT(*) FROM users")
                    .fetch_one(self.reader())
                    .await
                    .map_err(internal)
            }

            async fn create_user(&self, user: NewUser) -> enclave_core::Result<UserRecord> {
                let mut tx = self.begin_write().await?;
                let rec = insert_user!(&mut tx, user)
                    .map_err(unique_or(|| Error::conflict("email_taken", "a user with this e-mail already exists")))?;
                self.commit(tx, vec![]).await?;
                Ok(rec)
            }

            async fn user_by_email(&self, email: &str) -> enclave_core::Result<Option<UserRecord>> {
                db::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1"))
                    .bind(email)
                    .fetch_optional(self.reader())
                    .await
                    .map_err(internal)
            }

            async fn user_by_id(&self, user_id: &str) -> enclave_core::Result<Option<UserRecord>> {
                db::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
                    .bind(user_id)
                    .fetch_optional(self.reader())
                    .await
                    .map_err(internal)
            }

            async fn bootstrap(&self, user: NewUser, org: NewOrg, environments: Vec<NewEnvironment>) -> enclave_core::Result<Option<OrgRecord>> {
                let mut tx = self.begin_write().await?;
                let users: i64 = db::query_scalar("SELECT COUNT(*) FROM users")
                    .fetch_one(&mut tx)
                    .await
                    .map_err(internal)?;
                if users > 0 {
                    return Ok(None);
                }
                let owner_name = user.name.clone();
                let owner_id = user.id.clone();
                let inserted = async {
                    insert_user!(&mut tx, user)?;
                    let rec = insert_org!(&mut tx, org)?;
                    insert_owner!(&mut tx, &rec.id, &owner_id, &owner_name, rec.created_at)?;
                    Ok::<_, sqlx::Error>(rec)
                }
                .await;
                match inserted {
                    Ok(rec) => {
                        let change = org_created(&rec, &environments);
                        insert_default_envs!(&mut tx, &rec.id, environments)?;
                        journal!(&mut tx, &Origin::system(), change)?;
                        self.commit(tx, vec![]).await?;
                        Ok(Some(rec))
                    }
                    // Another node bootstrapped at the same moment.
                    Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Ok(None),
                    Err(e) => Err(internal(e)),
                }
            }

            async fn create_org(&self, org: NewOrg, owner_id: &str, owner_name: &str, environments: Vec<NewEnvironment>, origin: &Origin) -> enclave_core::Result<OrgRecord> {
                let mut tx = self.begin_write().await?;
                let rec = insert_org!(&mut tx, org)
                    .map_err(unique_or(|| Error::conflict("slug_taken", "an organization with this slug already exists")))?;
                insert_owner!(&mut tx, &rec.id, owner_id, owner_name, rec.created_at).map_err(internal)?;
                let change = org_created(&rec, &environments);
                insert_default_envs!(&mut tx, &rec.id, environments)?;
                journal!(&mut tx, origin, change)?;
                self.commit(tx, vec![]).await?;
                Ok(rec)
            }

            async fn org(&self, org_id: &str) -> enclave_core::Result<Option<OrgRecord>> {
                db::query_as(&format!("SELECT {ORG_COLUMNS} FROM organizations WHERE id = $1"))
                    .bind(org_id)
                    .fetch_optional(self.reader())
                    .await
                    .map_err(internal)
            }

            async fn orgs_of_user(&self, user_id: &str, page: &PageQuery) -> enclave_core::Result<(Vec<OrgRecord>, i64)> {
                let cols = ORG_COLUMNS.split(", ").map(|c| format!("o.{c}")).collect::<Vec<_>>().join(", ");
                let rows = db::query_as(&format!(
                    "SELECT {cols} FROM organizations o JOIN memberships m ON m.org_id = o.id \
                     WHERE m.user_id = $1 AND m.status = 'active' AND ($2 IS NULL OR o.id > $2) \
                     ORDER BY o.id LIMIT $3"
                ))
                .bind(user_id)
                .bind(page.after.as_deref())
                .bind(page.limit as i64 + 1)
                .fetch_all(self.reader())
                .await
                .map_err(internal)?;
                let total = db::query_scalar(
                    "SELECT COUNT(*) FROM memberships WHERE user_id = $1 AND status = 'active'",
                )
                .bind(user_id)
                .fetch_one(self.reader())
                .await
                .map_err(internal)?;
                Ok((rows, total))
            }

            async fn update_org(&self, org_id: &str, expected_version: Option<i64>, patch: OrgPatch, origin: &Origin) -> enclave_core::Result<OrgRecord> {
                let mut tx = self.begin_write().await?;
                let before = select_org_for_update!(&mut tx, org_id)?;
                let rec: Option<OrgRecord> = db::query_as(&format!(
                    "UPDATE organizations SET name = COALESCE($2, name), \
                     billing_email = COALESCE($3, billing_email), settings = COALESCE($4, settings), \
                     updated_at = $5, version = version + 1 \
                     WHERE id = $1 AND ($6 IS NULL OR version = $6) RETURNING {ORG_COLUMNS}"
                ))
                .bind(org_id)
                .bind(patch.name)
                .bind(patch.billing_email)
                .bind(patch.settings.map(sqlx::types::Json))
                .bind(now_ms())
                .bind(expected_version)
                .fetch_optional(&mut tx)
                .await
                .map_err(internal)?;
                match rec {
                    Some(rec) => {
                        if let Some(before) = &before {
                            journal!(&mut tx, origin, Change::of("organization.updated", Some(before), Some(&rec)))?;
                        }
                        self.commit(tx, vec![Invalidation::Org { org_id: org_id.to_string() }]).await?;
                        Ok(rec)
                    }
                    None => Err(missing_or_stale!(&mut tx, "SELECT COUNT(*) FROM organizations WHERE id = $1", org_id, "organization")),
                }
            }

            async fn delete_org(&self, org_id: &str, expected_version: Option<i64>, origin: &Origin) -> enclave_core::Result<()> {
                let mut tx = self.begin_write().await?;
                let before = select_org_for_update!(&mut tx, org_id)?;
                let done = db::query("DELETE FROM organizations WHERE id = $1 AND ($2 IS NULL OR version = $2)")
                    .bind(org_id)
                    .bind(expected_version)
                    .execute(&mut tx)
                    .await
                    .map_err(internal)?
                    .rows_affected();
                if done == 0 {
                    return Err(missing_or_stale!(&mut tx, "SELECT COUNT(*) FROM organizations WHERE id = $1", org_id, "organization"));
                }
                if let Some(before) = &before {
                    journal!(&mut tx, origin, Change::of("organization.deleted", Some(before), None))?;
                }
                self.commit(tx, vec![Invalidation::Org { org_id: org_id.to_string() }]).await
            }

            async fn transfer_ownership(&self, org_id: &str, from: &str, to: &str, origin: &Origin) -> enclave_core::Result<OrgRecord> {
                let mut tx = self.begin_write().await?;
                let now = now_ms();
                let demoted = db::query(
                    "UPDATE memberships SET role = 'admin', updated_at = $3, version = version + 1 \
                     WHERE org_id = $1 AND user_id = $2 AND role = 'owner'",
                )
                .bind(org_id)
                .bind(from)
                .bind(now)
                .execute(&mut tx)
                .await
                .map_err(internal)?
                .rows_affected();
                if demoted != 1 {
                    return Err(Error::forbidden("owner_only", "only the owner can transfer ownership"));
                }
                let promoted = db::query(
                    "UPDATE memberships SET role = 'owner', updated_at = $3, version = version + 1 \
                     WHERE org_id = $1 AND user_id = $2 AND status = 'active'",
                )
                .bind(org_id)
                .bind(to)
                .bind(now)
                .execute(&mut tx)
                .await
                .map_err(unique_or(|| Error::conflict("single_owner", "the organization already has an owner")))?
                .rows_affected();
                if promoted != 1 {
                    return Err(Error::conflict("member_not_active", "ownership can only go to an active member"));
                }
                let rec: OrgRecord = db::query_as(&format!(
                    "UPDATE organizations SET updated_at = $2, version = version + 1 WHERE id = $1 RETURNING {ORG_COLUMNS}"
                ))
                .bind(org_id)
                .bind(now)
                .fetch_one(&mut tx)
                .await
                .map_err(internal)?;
                let change = Change::new(org_id, "organization.ownership_transferred", "organization", org_id)
                    .before(serde_json::json!({"owner": from}))
                    .after(serde_json::json!({"owner": to, "previous_owner_role": "admin"}));
                journal!(&mut tx, origin, change)?;
                let mut events = [from, to]
                    .map(|u| Invalidation::Member { org_id: org_id.to_string(), user_id: u.to_string() })
                    .to_vec();
                events.push(Invalidation::Org { org_id: org_id.to_string() });
                self.commit(tx, events).await?;
                Ok(rec)
            }

            async fn member(&self, org_id: &str, user_id: &str) -> enclave_core::Result<Option<MemberRecord>> {
                db::query_as(&format!("{MEMBER_SELECT} WHERE m.org_id = $1 AND m.user_id = $2"))
                    .bind(org_id)
                    .bind(user_id)
                    .fetch_optional(self.reader())
                    .await
                    .map_err(internal)
            }

            async fn members(&self, org_id: &str, filter: &MemberFilter, page: &PageQuery) -> enclave_core::Result<(Vec<MemberRecord>, i64)> {
                let role = filter.role.map(|r| r.as_str());
                let status = filter.status.map(|s| s.as_str());
                let rows = db::query_as(&format!(
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

            async fn invite(&self, invite: NewInvite, origin: &Origin) -> enclave_core::Result<MemberRecord> {
                let mut tx = self.begin_write().await?;
                let existing: Option<UserRecord> = db::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1"))
                    .bind(&invite.email)
                    .fetch_optional(&mut tx)
                    .await
                    .map_err(internal)?;
                let user = match existing {
                    Some(u) => u,
                    None => {
                        let default_name = invite.email.split('@').next().unwrap_or_default().to_string();
                        let new = NewUser {
                            id: invite.new_user_id.clone(),
                            email: invite.email.clone(),
                            name: invite.name.clone().unwrap_or(default_name),
                            password_hash: None,
                        };
                        insert_user!(&mut tx, new).map_err(internal)?
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
                let rec = select_member!(&mut tx, &invite.org_id, &user.id)?;
                journal!(&mut tx, origin, Change::of("user.invited", None, Some(&rec)))?;
                self.commit(tx, vec![]).await?;
                Ok(rec)
            }

            async fn member_by_invite(&self, token: &str) -> enclave_core::Result<Option<(MemberRecord, UserRecord)>> {
                let member: Option<MemberRecord> = db::query_as(&format!("{MEMBER_SELECT} WHERE m.invite_token = $1"))
                    .bind(token)
                    .fetch_optional(self.reader())
                    .await
                    .map_err(internal)?;
                let Some(member) = member else { return Ok(None) };
                let user = self.user_by_id(&member.user_id).await?.ok_or_else(Error::internal)?;
                Ok(Some((member, user)))
            }

            async fn hash_invite_tokens(&self, hash: &$crate::HashToken) -> enclave_core::Result<u64> {
                let mut tx = self.begin_write().await?;
                let clear: Vec<(String, String, String)> = db::query_as(&format!(
                    "SELECT org_id, user_id, invite_token FROM memberships WHERE invite_token LIKE 'inv_%'{}",
                    crate::store::for_update(&tx)
                ))
                .fetch_all(&mut tx)
                .await
                .map_err(internal)?;
                let count = clear.len() as u64;
                let hashed: Vec<(String, String, String)> =
                    clear.into_iter().map(|(o, u, t)| (o, u, hash(&t))).collect();
                for (org_id, user_id, token_hash) in hashed {
                    db::query("UPDATE memberships SET invite_token = $3 WHERE org_id = $1 AND user_id = $2")
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

            async fn accept_invite(&self, org_id: &str, user_id: &str, password_hash: Option<String>, name: Option<String>, origin: &Origin) -> enclave_core::Result<MemberRecord> {
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
                    return Err(Error::conflict("invitation_used", "this invitation was already accepted"));
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
                let rec = select_member!(&mut tx, org_id, user_id)?;
                let change = Change::of("user.joined", None, Some(&rec)).before(serde_json::json!({"status": "invited"}));
                journal!(&mut tx, origin, change)?;
                let events = vec![
                    Invalidation::Member { org_id: org_id.into(), user_id: user_id.into() },
                    Invalidation::User { user_id: user_id.into() },
                ];
                self.commit(tx, events).await?;
                Ok(rec)
            }

            async fn update_member(&self, org_id: &str, user_id: &str, expected_version: i64, patch: MemberPatch, origin: &Origin) -> enclave_core::Result<MemberRecord> {
                let mut tx = self.begin_write().await?;
                let before = find_member!(&mut tx, org_id, user_id)?;
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
                .map_err(unique_or(|| Error::conflict("single_owner", "the organization already has an owner")))?
                .rows_affected();
                if done == 0 {
                    return Err(missing_or_stale!(&mut tx, "SELECT COUNT(*) FROM memberships WHERE org_id = $1 AND user_id = $2", org_id, user_id, "user"));
                }
                let rec = select_member!(&mut tx, org_id, user_id)?;
                if let Some(before) = &before {
                    let action = if before.role != rec.role { "user.role_changed" } else { "user.updated" };
                    journal!(&mut tx, origin, Change::of(action, Some(before), Some(&rec)))?;
                }
                self.commit(tx, vec![Invalidation::Member { org_id: org_id.into(), user_id: user_id.into() }]).await?;
                Ok(rec)
            }

            async fn remove_member(&self, org_id: &str, user_id: &str, expected_version: i64, origin: &Origin) -> enclave_core::Result<()> {
                let mut tx = self.begin_write().await?;
                let before = find_member!(&mut tx, org_id, user_id)?;
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
                    return Err(missing_or_stale!(&mut tx, "SELECT COUNT(*) FROM memberships WHERE org_id = $1 AND user_id = $2", org_id, user_id, "user"));
                }
                if let Some(before) = &before {
                    journal!(&mut tx, origin, Change::of("user.removed", Some(before), None))?;
                }
                self.commit(tx, vec![Invalidation::Member { org_id: org_id.into(), user_id: user_id.into() }]).await
            }

            async fn auth_membership(&self, user_id: &str, org_id: &str) -> enclave_core::Result<Option<AuthMembership>> {
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
                Ok(row.map(|(role, status, tier, org_status, attributes, settings)| AuthMembership {
                    role: role.parse().unwrap_or(enclave_core::Role::Auditor),
                    status: MemberStatus::parse(&status).unwrap_or(MemberStatus::Suspended),
                    tier: Tier::parse(&tier).unwrap_or(Tier::Free),
                    org_status: OrgStatus::parse(&org_status).unwrap_or(OrgStatus::Suspended),
                    attributes: attributes.0,
                    mfa_required: enclave_core::validate::requires_mfa(&settings.0),
                }))
            }

            async fn create_session(&self, s: NewSession, origin: Option<&Origin>) -> enclave_core::Result<SessionRecord> {
                let mut tx = self.begin_write().await?;
                let rec: SessionRecord = db::query_as(&format!(
                    "INSERT INTO sessions (id, user_id, org_id, created_at, expires_at, mfa_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING {SESSION_COLUMNS}"
                ))
                .bind(&s.id)
                .bind(&s.user_id)
                .bind(&s.org_id)
                .bind(now_ms())
                .bind(s.expires_at)
                .bind(s.mfa.then(now_ms))
                .fetch_one(&mut tx)
                .await
                .map_err(internal)?;
                db::query("INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES ($1, $2, $3)")
                    .bind(&s.refresh_hash)
                    .bind(&s.id)
                    .bind(s.refresh_expires_at.min(s.expires_at))
                    .execute(&mut tx)
                    .await
                    .map_err(internal)?;
                if let (Some(origin), Some(change)) = (origin, session_change(&rec, "session.created")) {
                    journal!(&mut tx, origin, change)?;
                }
                self.commit(tx, vec![]).await?;
                Ok(rec)
            }

            async fn session(&self, session_id: &str) -> enclave_core::Result<Option<SessionRecord>> {
                db::query_as(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1"))
                    .bind(session_id)
                    .fetch_optional(self.reader())
                    .await
                    .map_err(internal)
            }

            async fn rotate_refresh(&self, r: RefreshRotation, origin: &Origin) -> enclave_core::Result<RotateOutcome> {
                let mut tx = self.begin_write().await?;
                let claimed: Option<String> = db::query_scalar(
                    "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL \
                     AND expires_at > $2 RETURNING session_id",
                )
                .bind(&r.old_hash)
                .bind(r.now)
                .fetch_optional(&mut tx)
                .await
                .map_err(internal)?;
                let Some(session_id) = claimed else {
                    let used: Option<(String, Option<i64>)> = db::query_as(
                        "SELECT session_id, used_at FROM refresh_tokens WHERE token_hash = $1",
                    )
                    .bind(&r.old_hash)
                    .fetch_optional(&mut tx)
                    .await
                    .map_err(internal)?;
                    return match used {
                        Some((session_id, Some(_))) => {
                            let revoked: Option<SessionRecord> = db::query_as(&format!(
                                "UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING {SESSION_COLUMNS}"
                            ))
                                .bind(&session_id)
                                .bind(r.now)
                                .fetch_optional(&mut tx)
                                .await
                                .map_err(internal)?;
                            if let Some(change) = revoked.as_ref().and_then(|s| session_change(s, "session.revoked")) {
                                let change = change.after(serde_json::json!({"reason": "refresh_token_reused"}));
                                journal!(&mut tx, origin, change)?;
                            }
                            self.commit(tx, vec![Invalidation::Session { session_id }]).await?;
                            Ok(RotateOutcome::Reused)
                        }
                        _ => Ok(RotateOutcome::Invalid),
                    };
                };
                let session: SessionRecord = db::query_as(&format!(
                    "UPDATE sessions SET org_id = COALESCE($2, org_id) WHERE id = $1 RETURNING {SESSION_COLUMNS}"
                ))
                .bind(&session_id)
                .bind(r.org_id.as_deref())
                .fetch_one(&mut tx)
                .await
                .map_err(internal)?;
                if session.revoked_at.is_some() || session.expires_at <= r.now {
                    return Ok(RotateOutcome::Invalid);
                }
                let refresh_expires_at = r.new_expires_at.min(session.expires_at);
                db::query("INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES ($1, $2, $3)")
                    .bind(&r.new_hash)
                    .bind(&session_id)
                    .bind(refresh_expires_at)
                    .execute(&mut tx)
                    .await
                    .map_err(internal)?;
                if let Some(change) = session_change(&session, "session.refreshed") {
                    journal!(&mut tx, origin, change)?;
                }
                self.commit(tx, vec![Invalidation::Session { session_id }]).await?;
                Ok(RotateOutcome::Rotated { session, refresh_expires_at })
            }

            async fn revoke_session(&self, session_id: &str, origin: &Origin) -> enclave_core::Result<()> {
                let mut tx = self.begin_write().await?;
                let revoked: Option<SessionRecord> = db::query_as(&format!(
                    "UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING {SESSION_COLUMNS}"
                ))
                    .bind(session_id)
                    .bind(now_ms())
                    .fetch_optional(&mut tx)
                    .await
                    .map_err(internal)?;
                if let Some(change) = revoked.as_ref().and_then(|s| session_change(s, "session.revoked")) {
                    journal!(&mut tx, origin, change)?;
                }
                self.commit(tx, vec![Invalidation::Session { session_id: session_id.into() }]).await
            }

            async fn refresh_token_owner(&self, token_hash: &str) -> enclave_core::Result<Option<String>> {
                db::query_scalar(
                    "SELECT s.user_id FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE r.token_hash = $1",
                )
                .bind(token_hash)
                .fetch_optional(self.reader())
                .await
                .map_err(internal)
            }

            async fn idempotency_begin(&self, b: IdempotencyBegin) -> enclave_core::Result<IdempotencyState> {
                let mut tx = self.begin_write().await?;
                let inserted = db::query(
                    "INSERT INTO idempotency_keys (principal, key, route, body_hash, state, created_at) \
                     VALUES ($1, $2, $3, $4, 'running', $5) ON CONFLICT (principal, key) DO NOTHING",
                )
                .bind(&b.principal)
                .bind(&b.key)
                .bind(&b.route)
                .bind(&b.body_hash)
                .bind(b.now)
                .execute(&mut tx)
                .await
                .map_err(internal)?
                .rows_affected();
                let replaced = if inserted == 1 {
                    1
                } else {
                    db::query(
                        "UPDATE idempotency_keys SET route = $3, body_hash = $4, state = 'running', status = NULL, \
                         headers = NULL, body = NULL, created_at = $5 \
                         WHERE principal = $1 AND key = $2 AND created_at < $6",
                    )
                    .bind(&b.principal)
                    .bind(&b.key)
                    .bind(&b.route)
                    .bind(&b.body_hash)
                    .bind(b.now)
                    .bind(b.expired_before)
                    .execute(&mut tx)
                    .await
                    .map_err(internal)?
                    .rows_affected()
                };
                if replaced == 1 {
                    self.commit(tx, vec![]).await?;
                    return Ok(IdempotencyState::Started);
                }
                type Row = (String, String, String, Option<i64>, Option<sqlx::types::Json<Vec<(String, String)>>>, Option<Vec<u8>>);
                let (route, body_hash, state, status, headers, body): Row = db::query_as(
                    "SELECT route, body_hash, state, status, headers, body FROM idempotency_keys \
                     WHERE principal = $1 AND key = $2",
                )
                .bind(&b.principal)
                .bind(&b.key)
                .fetch_one(&mut tx)
                .await
                .map_err(internal)?;
                Ok(if route != b.route || body_hash != b.body_hash {
                    IdempotencyState::Mismatch
                } else if state != "done" {
                    IdempotencyState::InProgress
                } else {
                    IdempotencyState::Completed(StoredResponse {
                        status: status.unwrap_or(200) as u16,
                        headers: headers.map(|h| h.0).unwrap_or_default(),
                        body: body.unwrap_or_default(),
                    })
                })
            }

            async fn idempotency_complete(&self, principal: &str, key: &str, response: StoredResponse) -> enclave_core::Result<()> {
                let mut tx = self.begin_write().await?;
                db::query(
                    "UPDATE idempotency_keys SET state = 'done', status = $3, headers = $4, body = $5 \
                     WHERE principal = $1 AND key = $2",
                )
                .bind(principal)
                .bind(key)
                .bind(response.status as i64)
                .bind(sqlx::types::Json(response.headers))
                .bind(response.body)
                .execute(&mut tx)
                .await
                .map_err(internal)?;
                self.commit(tx, vec![]).await
            }

            async fn idempotency_abandon(&self, principal: &str, key: &str) -> enclave_core::Result<()> {
                let mut tx = self.begin_write().await?;
                db::query("DELETE FROM idempotency_keys WHERE principal = $1 AND key = $2 AND state = 'running'")
                    .bind(principal)
                    .bind(key)
                    .execute(&mut tx)
                    .await
                    .map_err(internal)?;
                self.commit(tx, vec![]).await
            }

            async fn idempotency_purge(&self, before_ms: i64) -> enclave_core::Result<u64> {
                let mut tx = self.begin_write().await?;
                let n = db::query("DELETE FROM idempotency_keys WHERE created_at < $1")
                    .bind(before_ms)
                    .execute(&mut tx)
                    .await
                    .map_err(internal)?
                    .rows_affected();
                self.commit(tx, vec![]).await?;
                Ok(n)
            }
        }
    };
}

/// Inserts a user; evaluates to `Result<UserRecord, sqlx::Error>`.
macro_rules! insert_user {
    ($conn:expr, $user:expr) => {{
        let u = $user;
        let now = now_ms();
        db::query_as::<UserRecord>(&format!(
            "INSERT INTO users (id, email, name, password_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING {USER_COLUMNS}"
        ))
        .bind(u.id)
        .bind(u.email)
        .bind(u.name)
        .bind(u.password_hash)
        .bind(now)
        .fetch_one($conn)
        .await
    }};
}

/// Inserts an organization; evaluates to `Result<OrgRecord, sqlx::Error>`.
macro_rules! insert_org {
    ($conn:expr, $org:expr) => {{
        let o = $org;
        let now = now_ms();
        db::query_as::<OrgRecord>(&format!(
            "INSERT INTO organizations (id, name, slug, billing_email, cloud_region, tier, status, settings, \
             created_at, updated_at, version) VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8, $8, 1) \
             RETURNING {ORG_COLUMNS}"
        ))
        .bind(o.id)
        .bind(o.name)
        .bind(o.slug)
        .bind(o.billing_email)
        .bind(o.cloud_region)
        .bind(o.tier.as_str())
        .bind(sqlx::types::Json(o.settings))
        .bind(now)
        .fetch_one($conn)
        .await
    }};
}

/// Inserts a new organization's first environments, in order; evaluates to
/// `Result<(), Error>`.
macro_rules! insert_default_envs {
    ($conn:expr, $org_id:expr, $envs:expr) => {{
        let envs: Vec<NewEnvironment> = $envs;
        let n = envs.len() as i64;
        let mut result = Ok(());
        if n > 0 {
            result = lock_org_envs!(&mut *$conn, $org_id, n).map(|_| ());
            for (position, env) in envs.into_iter().enumerate() {
                if result.is_err() {
                    break;
                }
                result = insert_env!(&mut *$conn, env, position as i64).map(|_| ());
            }
        }
        result
    }};
}

/// Inserts the owner membership of a new organization.
macro_rules! insert_owner {
    ($conn:expr, $org_id:expr, $user_id:expr, $name:expr, $now:expr) => {
        db::query(
            "INSERT INTO memberships (org_id, user_id, name, role, status, attributes, created_at, updated_at, version) \
             VALUES ($1, $2, $3, 'owner', 'active', $4, $5, $5, 1)",
        )
        .bind($org_id)
        .bind($user_id)
        .bind($name)
        .bind(sqlx::types::Json(std::collections::BTreeMap::<String, String>::new()))
        .bind($now)
        .execute($conn)
        .await
    };
}

/// The member `(org_id, user_id)`, read on `conn`; evaluates to `Result<MemberRecord, Error>`.
macro_rules! select_member {
    ($conn:expr, $org_id:expr, $user_id:expr) => {
        db::query_as::<MemberRecord>(&format!(
            "{MEMBER_SELECT} WHERE m.org_id = $1 AND m.user_id = $2"
        ))
        .bind($org_id)
        .bind($user_id)
        .fetch_one($conn)
        .await
        .map_err(internal)
    };
}

/// After a conditional write matched no row: 404 when the row is gone, 412 when only its
/// version moved on.
macro_rules! missing_or_stale {
    ($conn:expr, $count_sql:expr, $($bind:expr),+ ; $resource:expr) => {{
        let mut q = db::query_scalar::<i64>($count_sql);
        $(q = q.bind($bind);)+
        match q.fetch_one($conn).await {
            Ok(0) => Error::not_found($resource),
            Ok(_) => Error::precondition_failed("the resource changed since it was read (stale If-Match)"),
            Err(e) => internal(e),
        }
    }};
    ($conn:expr, $count_sql:expr, $a:expr, $resource:expr) => {
        missing_or_stale!($conn, $count_sql, $a; $resource)
    };
    ($conn:expr, $count_sql:expr, $a:expr, $b:expr, $resource:expr) => {
        missing_or_stale!($conn, $count_sql, $a, $b; $resource)
    };
}

/// The organization row, locked until commit on PostgreSQL (so `before` is exact); evaluates
/// to `Result<Option<OrgRecord>, Error>`.
macro_rules! select_org_for_update {
    ($conn:expr, $org_id:expr) => {
        db::query_as::<OrgRecord>(&format!(
            "SELECT {ORG_COLUMNS} FROM organizations WHERE id = $1{}",
            crate::store::for_update($conn)
        ))
        .bind($org_id)
        .fetch_optional($conn)
        .await
        .map_err(internal)
    };
}

/// The member, if any; evaluates to `Result<Option<MemberRecord>, Error>`.
macro_rules! find_member {
    ($conn:expr, $org_id:expr, $user_id:expr) => {
        db::query_as::<MemberRecord>(&format!(
            "{MEMBER_SELECT} WHERE m.org_id = $1 AND m.user_id = $2{}",
            crate::store::for_update($conn)
        ))
        .bind($org_id)
        .bind($user_id)
        .fetch_optional($conn)
        .await
        .map_err(internal)
    };
}

/// `organization.created`, listing the environments it starts with.
pub(crate) fn org_created(
    rec: &crate::OrgRecord,
    environments: &[crate::NewEnvironment],
) -> crate::journal::Change {
    let mut after = crate::journal::Audited::audit(rec);
    after["environments"] = environments.iter().map(|e| e.slug.clone()).collect();
    crate::journal::Change::of("organization.created", None, Some(rec)).after(after)
}

/// A session event, audited in the session's organization (a session without one — a user
/// with no organization yet — has no trail to be recorded in).
pub(crate) fn session_change(
    s: &crate::SessionRecord,
    action: &str,
) -> Option<crate::journal::Change> {
    let org_id = s.org_id.as_deref()?;
    Some(
        crate::journal::Change::new(org_id, action, "session", &s.id).after(serde_json::json!({
            "session_id": s.id,
            "user_id": s.user_id,
            "expires_at": enclave_core::audit::timestamp(s.expires_at),
        })),
    )
}

pub(crate) use {
    find_member, impl_store, insert_default_envs, insert_org, insert_owner, insert_user,
    missing_or_stale, select_member, select_org_for_update,
};

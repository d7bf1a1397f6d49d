//! Organizations: created with their owner and first environments, changed, deleted with
//! everything in them, and ownership transferred.

use enclave_core::clock::now_ms;
use enclave_core::id::{OrgId, UserId};
use std::collections::BTreeMap;

use enclave_core::{Error, Result};
use sqlx::types::Json;

use crate::db::{self, Tx};
use crate::db_error::{internal, unique_or};
use crate::environments::*;
use crate::journal::*;
use crate::records::*;
use crate::store::{for_update, Store};
use crate::Invalidation;

pub(crate) const ORG_COLUMNS: &str = "id, name, slug, billing_email, cloud_region, tier, status, \
     settings, quota_overrides, created_at, updated_at, version";

impl Store {
    /// Creates the organization with `owner_id` as its owner and `environments` (in order),
    /// atomically.
    pub async fn create_org(
        &self,
        org: NewOrg,
        owner_id: &UserId,
        owner_name: &str,
        environments: Vec<NewEnvironment>,
        origin: &Origin,
    ) -> enclave_core::Result<OrgRecord> {
        let mut tx = self.begin_write().await?;
        let rec = insert_org(&mut tx, org).await.map_err(unique_or(|| {
            Error::conflict(
                "slug_taken",
                "an organization with this slug already exists",
            )
        }))?;
        insert_owner(&mut tx, &rec.id, owner_id, owner_name, rec.created_at)
            .await
            .map_err(internal)?;
        let change = org_created(&rec, &environments);
        insert_default_envs(&mut tx, &rec.id, environments).await?;
        journal(&mut tx, origin, change).await?;
        self.commit(tx, vec![]).await?;
        Ok(rec)
    }

    pub async fn org(&self, org_id: &OrgId) -> enclave_core::Result<Option<OrgRecord>> {
        db::query_as(format!(
            "SELECT {ORG_COLUMNS} FROM organizations WHERE id = $1"
        ))
        .bind(org_id)
        .fetch_optional(self.reader())
        .await
        .map_err(internal)
    }

    /// Organizations where `user_id` has an active or suspended (not merely invited) membership.
    pub async fn orgs_of_user(
        &self,
        user_id: &UserId,
        page: &PageQuery,
    ) -> enclave_core::Result<(Vec<OrgRecord>, i64)> {
        let cols = ORG_COLUMNS
            .split(", ")
            .map(|c| format!("o.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = db::query_as(format!(
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

    pub async fn update_org(
        &self,
        org_id: &OrgId,
        expected_version: Option<i64>,
        patch: OrgPatch,
        origin: &Origin,
    ) -> enclave_core::Result<OrgRecord> {
        let mut tx = self.begin_write().await?;
        let before = select_org_for_update(&mut tx, org_id).await?;
        let rec: Option<OrgRecord> = db::query_as(format!(
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
                    journal(
                        &mut tx,
                        origin,
                        Change::of("organization.updated", Some(before), Some(&rec)),
                    )
                    .await?;
                }
                self.commit(
                    tx,
                    vec![Invalidation::Org {
                        org_id: org_id.clone(),
                    }],
                )
                .await?;
                Ok(rec)
            }
            None => Err(missing_or_stale(
                &mut tx,
                "SELECT COUNT(*) FROM organizations WHERE id = $1",
                &[org_id],
                "organization",
            )
            .await),
        }
    }

    pub async fn delete_org(
        &self,
        org_id: &OrgId,
        expected_version: Option<i64>,
        origin: &Origin,
    ) -> enclave_core::Result<()> {
        let mut tx = self.begin_write().await?;
        let before = select_org_for_update(&mut tx, org_id).await?;
        let done =
            db::query("DELETE FROM organizations WHERE id = $1 AND ($2 IS NULL OR version = $2)")
                .bind(org_id)
                .bind(expected_version)
                .execute(&mut tx)
                .await
                .map_err(internal)?
                .rows_affected();
        if done == 0 {
            return Err(missing_or_stale(
                &mut tx,
                "SELECT COUNT(*) FROM organizations WHERE id = $1",
                &[org_id],
                "organization",
            )
            .await);
        }
        if let Some(before) = &before {
            journal(
                &mut tx,
                origin,
                Change::of("organization.deleted", Some(before), None),
            )
            .await?;
        }
        self.commit(
            tx,
            vec![Invalidation::Org {
                org_id: org_id.clone(),
            }],
        )
        .await
    }

    /// `from` (the owner) becomes admin and `to` (an active member) owner, in one transaction.
    pub async fn transfer_ownership(
        &self,
        org_id: &OrgId,
        from: &UserId,
        to: &UserId,
        origin: &Origin,
    ) -> enclave_core::Result<OrgRecord> {
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
            return Err(Error::forbidden(
                "owner_only",
                "only the owner can transfer ownership",
            ));
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
        .map_err(unique_or(|| {
            Error::conflict("single_owner", "the organization already has an owner")
        }))?
        .rows_affected();
        if promoted != 1 {
            return Err(Error::conflict(
                "member_not_active",
                "ownership can only go to an active member",
            ));
        }
        let rec: OrgRecord = db::query_as(format!(
            "UPDATE organizations SET updated_at = $2, version = version + 1 WHERE id = $1 RETURNING {ORG_COLUMNS}"
        ))
        .bind(org_id)
        .bind(now)
        .fetch_one(&mut tx)
        .await
        .map_err(internal)?;
        let change = Change::new(
            org_id,
            "organization.ownership_transferred",
            "organization",
            org_id,
        )
        .before(serde_json::json!({"owner": from}))
        .after(serde_json::json!({"owner": to, "previous_owner_role": "admin"}));
        journal(&mut tx, origin, change).await?;
        let mut events = [from, to]
            .map(|u| Invalidation::Member {
                org_id: org_id.clone(),
                user_id: u.clone(),
            })
            .to_vec();
        events.push(Invalidation::Org {
            org_id: org_id.clone(),
        });
        self.commit(tx, events).await?;
        Ok(rec)
    }
}

pub(crate) async fn insert_org(
    tx: &mut Tx,
    o: NewOrg,
) -> std::result::Result<OrgRecord, sqlx::Error> {
    let now = now_ms();
    db::query_as::<OrgRecord>(&format!(
        "INSERT INTO organizations (id, name, slug, billing_email, cloud_region, tier, status, \
         settings, created_at, updated_at, version) \
         VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8, $8, 1) RETURNING {ORG_COLUMNS}"
    ))
    .bind(o.id)
    .bind(o.name)
    .bind(o.slug)
    .bind(o.billing_email)
    .bind(o.cloud_region)
    .bind(o.tier.as_str())
    .bind(Json(o.settings))
    .bind(now)
    .fetch_one(tx)
    .await
}

/// Inserts a new organization's first environments, in order.
pub(crate) async fn insert_default_envs(
    tx: &mut Tx,
    org_id: &OrgId,
    envs: Vec<NewEnvironment>,
) -> Result<()> {
    if envs.is_empty() {
        return Ok(());
    }
    lock_org_envs(tx, org_id, envs.len() as i64, 1).await?;
    for (position, env) in envs.into_iter().enumerate() {
        insert_env(tx, env, position as i64).await?;
    }
    Ok(())
}

/// Inserts the owner membership of a new organization.
pub(crate) async fn insert_owner(
    tx: &mut Tx,
    org_id: &OrgId,
    user_id: &UserId,
    name: &str,
    now: i64,
) -> std::result::Result<(), sqlx::Error> {
    db::query(
        "INSERT INTO memberships (org_id, user_id, name, role, status, attributes, created_at, \
         updated_at, version) VALUES ($1, $2, $3, 'owner', 'active', $4, $5, $5, 1)",
    )
    .bind(org_id)
    .bind(user_id)
    .bind(name)
    .bind(Json(BTreeMap::<String, String>::new()))
    .bind(now)
    .execute(tx)
    .await
    .map(|_| ())
}

/// The organization row, locked until commit on PostgreSQL (so `before` is exact).
pub(crate) async fn select_org_for_update(
    tx: &mut Tx,
    org_id: &OrgId,
) -> Result<Option<OrgRecord>> {
    db::query_as::<OrgRecord>(&format!(
        "SELECT {ORG_COLUMNS} FROM organizations WHERE id = $1{}",
        for_update(tx)
    ))
    .bind(org_id)
    .fetch_optional(tx)
    .await
    .map_err(internal)
}

/// After a conditional write matched no row: 404 when the row is gone (`count_sql`, with
/// `keys` bound, counts 0), 412 when only its version moved on.
pub(crate) async fn missing_or_stale(
    tx: &mut Tx,
    count_sql: &str,
    keys: &[&str],
    resource: &str,
) -> Error {
    let mut q = db::query_scalar::<i64>(count_sql);
    for key in keys {
        q = q.bind(*key);
    }
    match q.fetch_one(tx).await {
        Ok(0) => Error::not_found(resource),
        Ok(_) => {
            Error::precondition_failed("the resource changed since it was read (stale If-Match)")
        }
        Err(e) => internal(e),
    }
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

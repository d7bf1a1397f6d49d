//! An environment's policies and every saved version of each. Writes lock the environment
//! row (refused while it is locked or being deleted), keep the current content in
//! `policies` and append it to `policy_versions`, and are audited in the same transaction.

use enclave_core::clock::now_ms;
use enclave_core::id::EnvId;
use enclave_core::policy::PolicySpec;

use enclave_core::environment::check_writable;
use enclave_core::{Error, Result};

use sqlx::types::Json;

use crate::db::{self, Tx};
use crate::db_error::{check_if_match, internal, unique_or};
use crate::environments::*;
use crate::journal::*;
use crate::records::*;
use crate::store::for_update;
use crate::store::Store;
use crate::Invalidation;

pub(crate) const POLICY_COLUMNS: &str = "id, org_id, env_id, name, kind, policy_type, spec, \
     version, created_by, created_at, updated_at";

impl Store {
    /// 409 `name_taken` when the environment already has a policy of that name.
    pub async fn create_policy(
        &self,
        policy: NewPolicy,
        origin: &Origin,
    ) -> enclave_core::Result<PolicyRecord> {
        let mut tx = self.begin_write().await?;
        writable_env(&mut tx, &policy.env_id).await?;
        let rec = insert_policy(&mut tx, policy).await?;
        journal(
            &mut tx,
            origin,
            Change::of("policy.created", None, Some(&rec)),
        )
        .await?;
        self.commit(
            tx,
            vec![Invalidation::Policies {
                env_id: rec.env_id.clone(),
            }],
        )
        .await?;
        Ok(rec)
    }

    /// One kind, oldest first (keyset on the id).
    pub async fn policies(
        &self,
        env_id: &EnvId,
        kind: PolicyKind,
        page: &PageQuery,
    ) -> enclave_core::Result<(Vec<PolicyRecord>, i64)> {
        let rows = db::query_as(format!(
            "SELECT {POLICY_COLUMNS} FROM policies WHERE env_id = $1 AND kind = $2 \
             AND ($3 IS NULL OR id > $3) ORDER BY id LIMIT $4"
        ))
        .bind(env_id)
        .bind(kind.as_str())
        .bind(page.after.as_deref())
        .bind(i64::from(page.limit) + 1)
        .fetch_all(self.reader())
        .await
        .map_err(internal)?;
        let total =
            db::query_scalar("SELECT COUNT(*) FROM policies WHERE env_id = $1 AND kind = $2")
                .bind(env_id)
                .bind(kind.as_str())
                .fetch_one(self.reader())
                .await
                .map_err(internal)?;
        Ok((rows, total))
    }

    /// Every policy of the environment, by name: what evaluation, promotion, clone and diff
    /// read.
    pub async fn env_policies(&self, env_id: &EnvId) -> enclave_core::Result<Vec<PolicyRecord>> {
        db::query_as(format!(
            "SELECT {POLICY_COLUMNS} FROM policies WHERE env_id = $1 ORDER BY name"
        ))
        .bind(env_id)
        .fetch_all(self.reader())
        .await
        .map_err(internal)
    }

    pub async fn policy(
        &self,
        env_id: &EnvId,
        policy_id: &str,
    ) -> enclave_core::Result<Option<PolicyRecord>> {
        db::query_as(format!(
            "SELECT {POLICY_COLUMNS} FROM policies WHERE env_id = $1 AND id = $2"
        ))
        .bind(env_id)
        .bind(policy_id)
        .fetch_optional(self.reader())
        .await
        .map_err(internal)
    }

    /// Saves `spec` as the next version. Content equal to the current one changes nothing
    /// (no version, no audit entry) and returns the policy as it is.
    pub async fn update_policy(
        &self,
        env_id: &EnvId,
        policy_id: &str,
        expected_version: Option<i64>,
        spec: enclave_core::policy::PolicySpec,
        origin: &Origin,
    ) -> enclave_core::Result<PolicyRecord> {
        let mut tx = self.begin_write().await?;
        writable_env(&mut tx, env_id).await?;
        let before = select_policy(&mut tx, env_id, policy_id, expected_version).await?;
        if before.spec.0 == spec {
            return Ok(before);
        }
        let by = origin.actor.id.clone();
        let rec = save_policy_version(&mut tx, policy_id, before.version, &spec, &by)
            .await?
            .ok_or_else(|| {
                Error::precondition_failed("the policy changed while it was being saved")
            })?;
        journal(
            &mut tx,
            origin,
            Change::of("policy.updated", Some(&before), Some(&rec)),
        )
        .await?;
        self.commit(
            tx,
            vec![Invalidation::Policies {
                env_id: env_id.into(),
            }],
        )
        .await?;
        Ok(rec)
    }

    pub async fn delete_policy(
        &self,
        env_id: &EnvId,
        policy_id: &str,
        expected_version: Option<i64>,
        origin: &Origin,
    ) -> enclave_core::Result<()> {
        let mut tx = self.begin_write().await?;
        writable_env(&mut tx, env_id).await?;
        let before = select_policy(&mut tx, env_id, policy_id, expected_version).await?;
        db::query("DELETE FROM policies WHERE id = $1")
            .bind(policy_id)
            .execute(&mut tx)
            .await
            .map_err(internal)?;
        journal(
            &mut tx,
            origin,
            Change::of("policy.deleted", Some(&before), None),
        )
        .await?;
        self.commit(
            tx,
            vec![Invalidation::Policies {
                env_id: env_id.into(),
            }],
        )
        .await
    }

    /// Newest first.
    pub async fn policy_versions(
        &self,
        policy_id: &str,
        page: &PageQuery,
    ) -> enclave_core::Result<(Vec<PolicyVersionRecord>, i64)> {
        let after = page.after_number()?;
        let rows = db::query_as(
            "SELECT policy_id, version, spec, created_by, created_at FROM policy_versions \
             WHERE policy_id = $1 AND ($2 IS NULL OR version < $2) ORDER BY version DESC LIMIT $3",
        )
        .bind(policy_id)
        .bind(after)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(self.reader())
        .await
        .map_err(internal)?;
        let total = db::query_scalar("SELECT COUNT(*) FROM policy_versions WHERE policy_id = $1")
            .bind(policy_id)
            .fetch_one(self.reader())
            .await
            .map_err(internal)?;
        Ok((rows, total))
    }

    pub async fn policy_version(
        &self,
        policy_id: &str,
        version: i64,
    ) -> enclave_core::Result<Option<PolicyVersionRecord>> {
        db::query_as(
            "SELECT policy_id, version, spec, created_by, created_at FROM policy_versions \
             WHERE policy_id = $1 AND version = $2",
        )
        .bind(policy_id)
        .bind(version)
        .fetch_optional(self.reader())
        .await
        .map_err(internal)
    }
}

/// Locks environment `env_id` until commit and refuses unless it accepts writes (not
/// locked, not being deleted); 404 when absent.
pub(crate) async fn writable_env(tx: &mut Tx, env_id: &EnvId) -> Result<EnvRecord> {
    let env: Option<EnvRecord> = db::query_as(format!(
        "SELECT {ENV_COLUMNS} FROM environments WHERE id = $1{}",
        for_update(tx)
    ))
    .bind(env_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(internal)?;
    let env = env.ok_or_else(|| Error::not_found("environment"))?;
    check_writable(env.locked, env.status, false)?;
    Ok(env)
}

fn name_taken(name: &str) -> Error {
    Error::conflict(
        "name_taken",
        format!("this environment already has a policy named `{name}`"),
    )
}

/// Inserts a new policy at version 1 with its first version row.
pub(crate) async fn insert_policy(tx: &mut Tx, p: NewPolicy) -> Result<PolicyRecord> {
    let now = now_ms();
    let rec: PolicyRecord = db::query_as(format!(
        "INSERT INTO policies (id, org_id, env_id, name, kind, policy_type, spec, version, \
         created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9, $9) \
         RETURNING {POLICY_COLUMNS}"
    ))
    .bind(&p.id)
    .bind(&p.org_id)
    .bind(&p.env_id)
    .bind(&p.spec.name)
    .bind(PolicyKind::of(&p.spec).as_str())
    .bind(p.spec.policy_type().as_str())
    .bind(Json(&p.spec))
    .bind(&p.created_by)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(unique_or(|| name_taken(&p.spec.name)))?;
    record_version(tx, &rec.id, 1, &p.spec, &p.created_by, now).await?;
    Ok(rec)
}

/// Writes `spec` as version `from + 1` if the policy is still at version `from`; `None`
/// when it is not.
pub(crate) async fn save_policy_version(
    tx: &mut Tx,
    policy_id: &str,
    from: i64,
    spec: &PolicySpec,
    by: &str,
) -> Result<Option<PolicyRecord>> {
    let now = now_ms();
    let rec: Option<PolicyRecord> = db::query_as(format!(
        "UPDATE policies SET name = $3, kind = $4, policy_type = $5, spec = $6, \
         version = version + 1, updated_at = $7 WHERE id = $1 AND version = $2 \
         RETURNING {POLICY_COLUMNS}"
    ))
    .bind(policy_id)
    .bind(from)
    .bind(&spec.name)
    .bind(PolicyKind::of(spec).as_str())
    .bind(spec.policy_type().as_str())
    .bind(Json(spec))
    .bind(now)
    .fetch_optional(&mut *tx)
    .await
    .map_err(unique_or(|| name_taken(&spec.name)))?;
    if let Some(rec) = &rec {
        record_version(tx, &rec.id, rec.version, spec, by, now).await?;
    }
    Ok(rec)
}

async fn record_version(
    tx: &mut Tx,
    policy_id: &str,
    version: i64,
    spec: &PolicySpec,
    by: &str,
    now: i64,
) -> Result<()> {
    db::query(
        "INSERT INTO policy_versions (policy_id, version, spec, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(policy_id)
    .bind(version)
    .bind(Json(spec))
    .bind(by)
    .bind(now)
    .execute(tx)
    .await
    .map(|_| ())
    .map_err(internal)
}

/// The policy, locked until commit on PostgreSQL; 404 when absent, 412 when `expected` is
/// given and differs.
pub(crate) async fn select_policy(
    tx: &mut Tx,
    env_id: &EnvId,
    policy_id: &str,
    expected: Option<i64>,
) -> Result<PolicyRecord> {
    let row: Option<PolicyRecord> = db::query_as(format!(
        "SELECT {POLICY_COLUMNS} FROM policies WHERE env_id = $1 AND id = $2{}",
        for_update(tx)
    ))
    .bind(env_id)
    .bind(policy_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(internal)?;
    let row = row.ok_or_else(|| Error::not_found("policy"))?;
    check_if_match("policy", expected, row.version)?;
    Ok(row)
}

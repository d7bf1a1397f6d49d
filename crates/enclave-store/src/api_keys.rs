//! Environment API keys. Every change publishes `Invalidation::ApiKey`, so verified-key
//! caches drop the key at once on this node and (PostgreSQL) on every other.

use enclave_core::clock::now_ms;
use enclave_core::environment::EnvStatus;
use enclave_core::id::{EnvId, KeyId, OrgId};
use enclave_core::model::{OrgStatus, Tier};
use enclave_core::{Error, Result};

use sqlx::types::Json;

use crate::db::{self, Tx};
use crate::db_error::internal;
use crate::environments::*;
use crate::journal::*;
use crate::records::*;
use crate::store::for_update;
use crate::store::Store;
use crate::Invalidation;

pub(crate) const KEY_COLUMNS: &str = "id, env_id, org_id, name, prefix, secret_hash, role, \
     attributes, scopes, ip_allowlist, status, last_used_at, expires_at, grace_expires_at, \
     rotated_to, created_at, created_by, updated_at, version";

impl Store {
    /// Creates a key in its environment: 404 when the environment is gone or being deleted,
    /// 429 past `max_live` active or rotating keys there.
    pub async fn create_api_key(
        &self,
        key: NewApiKey,
        max_live: u32,
        origin: &Origin,
    ) -> enclave_core::Result<ApiKeyRecord> {
        let mut tx = self.begin_write().await?;
        let env = db::query_as::<(OrgId, String)>(
            "SELECT org_id, status FROM environments WHERE id = $1",
        )
        .bind(&key.env_id)
        .fetch_optional(&mut tx)
        .await
        .map_err(internal)?;
        let Some((org_id, status)) = env else {
            return Err(Error::not_found("environment"));
        };
        if status == "decommissioning" {
            return Err(Error::not_found("environment"));
        }
        // Serialised with other creates in the organization: the count below holds.
        lock_org_envs(&mut tx, &org_id, 0, 0).await?;
        let live: i64 = db::query_scalar(
            "SELECT COUNT(*) FROM api_keys WHERE env_id = $1 AND status IN ('active', 'rotating')",
        )
        .bind(&key.env_id)
        .fetch_one(&mut tx)
        .await
        .map_err(internal)?;
        if live >= i64::from(max_live) {
            return Err(Error::quota_exceeded(
                "max_api_keys_per_environment",
                u64::from(max_live),
            ));
        }
        let rec = insert_key(&mut tx, &org_id, key).await?;
        journal(&mut tx, origin, Change::of("key.created", None, Some(&rec))).await?;
        self.commit(tx, vec![]).await?;
        Ok(rec)
    }

    /// The environment's keys, newest first (keyset on the id).
    pub async fn api_keys(
        &self,
        env_id: &EnvId,
        page: &PageQuery,
    ) -> enclave_core::Result<(Vec<ApiKeyRecord>, i64)> {
        let rows = db::query_as(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE env_id = $1 AND ($2 IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(env_id)
        .bind(page.after.as_deref())
        .bind(i64::from(page.limit) + 1)
        .fetch_all(self.reader())
        .await
        .map_err(internal)?;
        let total = db::query_scalar("SELECT COUNT(*) FROM api_keys WHERE env_id = $1")
            .bind(env_id)
            .fetch_one(self.reader())
            .await
            .map_err(internal)?;
        Ok((rows, total))
    }

    pub async fn api_key(
        &self,
        env_id: &EnvId,
        key_id: &KeyId,
    ) -> enclave_core::Result<Option<ApiKeyRecord>> {
        db::query_as(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1 AND env_id = $2"
        ))
        .bind(key_id)
        .bind(env_id)
        .fetch_optional(self.reader())
        .await
        .map_err(internal)
    }

    /// The key with its environment's and organization's standing, for authentication.
    pub async fn key_auth(&self, key_id: &KeyId) -> enclave_core::Result<Option<KeyAuthRecord>> {
        let key: Option<ApiKeyRecord> =
            db::query_as(format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"))
                .bind(key_id)
                .fetch_optional(self.reader())
                .await
                .map_err(internal)?;
        let Some(key) = key else { return Ok(None) };
        let standing: Option<(String, String, String)> = db::query_as(
            "SELECT e.status, o.status, o.tier FROM environments e JOIN organizations o ON o.id = e.org_id \
             WHERE e.id = $1",
        )
        .bind(&key.env_id)
        .fetch_optional(self.reader())
        .await
        .map_err(internal)?;
        let Some((env_status, org_status, tier)) = standing else {
            return Ok(None);
        };
        Ok(Some(KeyAuthRecord {
            env_status: EnvStatus::parse(&env_status).unwrap_or(EnvStatus::Suspended),
            org_status: OrgStatus::parse(&org_status).unwrap_or(OrgStatus::Suspended),
            tier: Tier::parse(&tier).unwrap_or(Tier::Free),
            key,
        }))
    }

    pub async fn update_api_key(
        &self,
        env_id: &EnvId,
        key_id: &KeyId,
        patch: ApiKeyPatch,
        origin: &Origin,
    ) -> enclave_core::Result<ApiKeyRecord> {
        let mut tx = self.begin_write().await?;
        let before = find_key(&mut tx, env_id, key_id).await?;
        let rec: Option<ApiKeyRecord> = db::query_as(format!(
            "UPDATE api_keys SET name = COALESCE($3, name), role = COALESCE($4, role), \
             attributes = COALESCE($5, attributes), scopes = COALESCE($6, scopes), \
             ip_allowlist = COALESCE($7, ip_allowlist), updated_at = $8, version = version + 1 \
             WHERE id = $1 AND env_id = $2 RETURNING {KEY_COLUMNS}"
        ))
        .bind(key_id)
        .bind(env_id)
        .bind(patch.name)
        .bind(patch.role.map(|r| r.as_str()))
        .bind(patch.attributes.map(sqlx::types::Json))
        .bind(patch.scopes.map(sqlx::types::Json))
        .bind(patch.ip_allowlist.map(sqlx::types::Json))
        .bind(now_ms())
        .fetch_optional(&mut tx)
        .await
        .map_err(internal)?;
        let rec = rec.ok_or_else(|| Error::not_found("api_key"))?;
        journal(
            &mut tx,
            origin,
            Change::of("key.updated", before.as_ref(), Some(&rec)),
        )
        .await?;
        self.commit(
            tx,
            vec![Invalidation::ApiKey {
                key_id: key_id.into(),
            }],
        )
        .await?;
        Ok(rec)
    }

    /// Revokes a live key (409 when it is already revoked or expired).
    pub async fn revoke_api_key(
        &self,
        env_id: &EnvId,
        key_id: &KeyId,
        origin: &Origin,
    ) -> enclave_core::Result<ApiKeyRecord> {
        let mut tx = self.begin_write().await?;
        let before = find_key(&mut tx, env_id, key_id).await?;
        let now = now_ms();
        let rec: Option<ApiKeyRecord> = db::query_as(format!(
            "UPDATE api_keys SET status = 'revoked', updated_at = $3, version = version + 1 \
             WHERE id = $1 AND env_id = $2 AND status IN ('active', 'rotating') RETURNING {KEY_COLUMNS}"
        ))
        .bind(key_id)
        .bind(env_id)
        .bind(now)
        .fetch_optional(&mut tx)
        .await
        .map_err(internal)?;
        let Some(rec) = rec else {
            return Err(key_refusal(
                &mut tx,
                env_id,
                key_id,
                "key_not_live",
                "the key is already",
            )
            .await);
        };
        journal(
            &mut tx,
            origin,
            Change::of("key.revoked", before.as_ref(), Some(&rec)),
        )
        .await?;
        self.commit(
            tx,
            vec![Invalidation::ApiKey {
                key_id: key_id.into(),
            }],
        )
        .await?;
        Ok(rec)
    }

    /// Replaces an active key by `new`: the old one turns `rotating` until
    /// `grace_expires_at` (expired at once when that is now). Returns (old, new).
    pub async fn rotate_api_key(
        &self,
        env_id: &EnvId,
        key_id: &KeyId,
        new: NewApiKey,
        grace_expires_at: i64,
        origin: &Origin,
    ) -> enclave_core::Result<(ApiKeyRecord, ApiKeyRecord)> {
        let mut tx = self.begin_write().await?;
        let before = find_key(&mut tx, env_id, key_id).await?;
        let now = now_ms();
        let status = if grace_expires_at <= now {
            "expired"
        } else {
            "rotating"
        };
        let old: Option<ApiKeyRecord> = db::query_as(format!(
            "UPDATE api_keys SET status = $3, grace_expires_at = $4, rotated_to = $5, updated_at = $6, \
             version = version + 1 WHERE id = $1 AND env_id = $2 AND status = 'active' \
             AND (expires_at IS NULL OR expires_at > $6) RETURNING {KEY_COLUMNS}"
        ))
        .bind(key_id)
        .bind(env_id)
        .bind(status)
        .bind(grace_expires_at)
        .bind(&new.id)
        .bind(now)
        .fetch_optional(&mut tx)
        .await
        .map_err(internal)?;
        let Some(old) = old else {
            return Err(key_refusal(
                &mut tx,
                env_id,
                key_id,
                "key_not_active",
                "only an active key can be rotated; this one is",
            )
            .await);
        };
        let new = insert_key(&mut tx, &old.org_id, new).await?;
        let mut after = crate::journal::Audited::audit(&old);
        after["successor"] = crate::journal::Audited::audit(&new);
        journal(
            &mut tx,
            origin,
            Change::of("key.rotated", before.as_ref(), Some(&old)).after(after),
        )
        .await?;
        self.commit(
            tx,
            vec![Invalidation::ApiKey {
                key_id: key_id.into(),
            }],
        )
        .await?;
        Ok((old, new))
    }

    /// Records when a key was last used (never moving it back).
    pub async fn touch_api_key(&self, key_id: &KeyId, at: i64) -> enclave_core::Result<()> {
        let mut tx = self.begin_write().await?;
        db::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)")
            .bind(key_id)
            .bind(at)
            .execute(&mut tx)
            .await
            .map_err(internal)?;
        self.commit(tx, vec![]).await
    }

    /// Writes `expired` for keys past `expires_at` or their rotation grace (audited as the
    /// system's `key.expired`); returns them.
    pub async fn expire_api_keys(&self, now_ms: i64) -> enclave_core::Result<Vec<KeyId>> {
        let mut tx = self.begin_write().await?;
        let expired: Vec<ApiKeyRecord> = db::query_as(format!(
            "UPDATE api_keys SET status = 'expired', updated_at = $1, version = version + 1 \
             WHERE (status = 'active' AND expires_at <= $1) \
                OR (status = 'rotating' AND (grace_expires_at <= $1 OR expires_at <= $1)) \
             RETURNING {KEY_COLUMNS}"
        ))
        .bind(now_ms)
        .fetch_all(&mut tx)
        .await
        .map_err(internal)?;
        for key in &expired {
            journal(
                &mut tx,
                &Origin::system(),
                Change::of("key.expired", None, Some(key)),
            )
            .await?;
        }
        let ids: Vec<KeyId> = expired.into_iter().map(|k| k.id).collect();
        let events = ids
            .iter()
            .map(|k| Invalidation::ApiKey { key_id: k.clone() })
            .collect();
        self.commit(tx, events).await?;
        Ok(ids)
    }

    /// Live keys expiring before `horizon_ms` not yet noticed: marks them, audits and announces
    /// `key.expiring` for each, and returns them.
    pub async fn notice_expiring_api_keys(
        &self,
        horizon_ms: i64,
    ) -> enclave_core::Result<Vec<ApiKeyRecord>> {
        let mut tx = self.begin_write().await?;
        let rows: Vec<ApiKeyRecord> = db::query_as(format!(
            "UPDATE api_keys SET expiring_noticed_at = $2 \
             WHERE status = 'active' AND expires_at IS NOT NULL AND expires_at <= $1 \
             AND expiring_noticed_at IS NULL RETURNING {KEY_COLUMNS}"
        ))
        .bind(horizon_ms)
        .bind(now_ms())
        .fetch_all(&mut tx)
        .await
        .map_err(internal)?;
        for key in &rows {
            journal(
                &mut tx,
                &Origin::system(),
                Change::of("key.expiring", None, Some(key)),
            )
            .await?;
        }
        self.commit(tx, vec![]).await?;
        Ok(rows)
    }
}

/// Why a conditional change of key `key_id` matched no row: 404 when it is gone, else 409
/// `rule` saying `message` and the key's status.
pub(crate) async fn key_refusal(
    tx: &mut Tx,
    env_id: &EnvId,
    key_id: &KeyId,
    rule: &str,
    message: &str,
) -> Error {
    match db::query_scalar::<String>("SELECT status FROM api_keys WHERE id = $1 AND env_id = $2")
        .bind(key_id)
        .bind(env_id)
        .fetch_optional(tx)
        .await
    {
        Ok(None) => Error::not_found("api_key"),
        Ok(Some(status)) => Error::conflict(rule, format!("{message} {status}")),
        Err(e) => internal(e),
    }
}

/// Inserts a key of organization `org_id`.
pub(crate) async fn insert_key(tx: &mut Tx, org_id: &OrgId, k: NewApiKey) -> Result<ApiKeyRecord> {
    let now = now_ms();
    db::query_as::<ApiKeyRecord>(&format!(
        "INSERT INTO api_keys (id, env_id, org_id, name, prefix, secret_hash, role, attributes, \
         scopes, ip_allowlist, status, expires_at, created_at, created_by, updated_at, version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'active', $11, $12, $13, $12, 1) \
         RETURNING {KEY_COLUMNS}"
    ))
    .bind(k.id)
    .bind(k.env_id)
    .bind(org_id)
    .bind(k.name)
    .bind(k.prefix)
    .bind(k.secret_hash)
    .bind(k.role.as_str())
    .bind(Json(k.attributes))
    .bind(Json(k.scopes))
    .bind(Json(k.ip_allowlist))
    .bind(k.expires_at)
    .bind(now)
    .bind(k.created_by)
    .fetch_one(tx)
    .await
    .map_err(internal)
}

/// The key as it is before a change (locked until commit on PostgreSQL).
pub(crate) async fn find_key(
    tx: &mut Tx,
    env_id: &EnvId,
    key_id: &KeyId,
) -> Result<Option<ApiKeyRecord>> {
    db::query_as::<ApiKeyRecord>(&format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1 AND env_id = $2{}",
        for_update(tx)
    ))
    .bind(key_id)
    .bind(env_id)
    .fetch_optional(tx)
    .await
    .map_err(internal)
}

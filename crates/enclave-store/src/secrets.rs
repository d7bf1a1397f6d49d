//! An environment's secrets, every saved version of each, its data key and the database's
//! keyring. Only ciphertext and wrapped keys pass through here: sealing and opening happen
//! above, where the master key is.
//!
//! Writes lock the environment row (refused while it is locked or being deleted), write one
//! audit entry per secret (names and metadata, never values) and queue one `secret.changed`
//! event per transaction naming the keys it touched.

use enclave_core::clock::now_ms;
use enclave_core::id::{EnvId, OrgId};
use enclave_core::secret::crypto::WrappedKey;

use enclave_core::{Error, Result};

use crate::accounts::*;
use crate::db::{self, Tx};
use crate::db_error::{check_if_match, internal, unique_or};
use crate::journal::*;
use crate::policies::*;
use crate::records::*;
use crate::store::for_update;
use crate::store::Store;
use crate::webhooks::*;

pub(crate) const SECRET_COLUMNS: &str = "id, org_id, env_id, key_name, ciphertext, comment, tags, \
     version, created_by, created_at, updated_by, updated_at";

/// Re-wraps one data key: `(env_id, key_id, wrapped) → wrapped under the new master key`.
pub type Rewrap<'a> = dyn Fn(&str, &str, &[u8]) -> Result<Vec<u8>> + Send + Sync + 'a;

impl Store {
    /// The id of the master key this database's data keys are wrapped with; the first call
    /// records `master_key_id` as that key.
    pub async fn keyring(&self, master_key_id: &str) -> enclave_core::Result<String> {
        let mut tx = self.begin_write().await?;
        db::query("INSERT INTO keyring (id, master_key_id, created_at) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING")
            .bind(master_key_id)
            .bind(now_ms())
            .execute(&mut tx)
            .await
            .map_err(internal)?;
        let id: String = db::query_scalar("SELECT master_key_id FROM keyring WHERE id = 1")
            .fetch_one(&mut tx)
            .await
            .map_err(internal)?;
        self.commit(tx, vec![]).await?;
        Ok(id)
    }

    /// The recorded master key id, if any.
    pub async fn keyring_id(&self) -> enclave_core::Result<Option<String>> {
        db::query_scalar("SELECT master_key_id FROM keyring WHERE id = 1")
            .fetch_optional(self.reader())
            .await
            .map_err(internal)
    }

    /// The environment's data key, as stored.
    pub async fn data_key(&self, env_id: &EnvId) -> enclave_core::Result<Option<WrappedKey>> {
        let row: Option<(String, Vec<u8>, String)> = db::query_as(
            "SELECT key_id, wrapped, master_key_id FROM secret_keys WHERE env_id = $1",
        )
        .bind(env_id)
        .fetch_optional(self.reader())
        .await
        .map_err(internal)?;
        Ok(row.map(|(key_id, wrapped, master_key_id)| WrappedKey {
            key_id,
            wrapped,
            master_key_id,
        }))
    }

    /// Stores `key` as the environment's data key unless it already has one, and returns the
    /// one it has. 503 `master_key_rotated` when the keyring names another master key than
    /// the one `key` is wrapped with (this node holds a rotated-out key).
    pub async fn create_data_key(
        &self,
        env_id: &EnvId,
        key: WrappedKey,
    ) -> enclave_core::Result<WrappedKey> {
        let mut tx = self.begin_write().await?;
        check_keyring(&mut tx, &key.master_key_id).await?;
        insert_data_key(&mut tx, env_id, &key).await?;
        let (key_id, wrapped, master_key_id): (String, Vec<u8>, String) = db::query_as(
            "SELECT key_id, wrapped, master_key_id FROM secret_keys WHERE env_id = $1",
        )
        .bind(env_id)
        .fetch_one(&mut tx)
        .await
        .map_err(internal)?;
        self.commit(tx, vec![]).await?;
        Ok(WrappedKey {
            key_id,
            wrapped,
            master_key_id,
        })
    }

    /// Re-wraps every data key from master key `from` to `to`, re-seals every webhook
    /// signing secret (`reseal`) and records `to`, in one transaction; returns how many data
    /// keys moved. 412 when the keyring is not at `from`.
    pub async fn rotate_master_key(
        &self,
        from: &str,
        to: &str,
        rewrap: &crate::secrets::Rewrap<'_>,
        reseal: &crate::webhooks::Reseal<'_>,
    ) -> enclave_core::Result<u64> {
        let mut tx = self.begin_write().await?;
        let current: Option<String> = db::query_scalar(format!(
            "SELECT master_key_id FROM keyring WHERE id = 1{}",
            crate::store::for_update(&tx)
        ))
        .fetch_optional(&mut tx)
        .await
        .map_err(internal)?;
        if current.as_deref() != Some(from) {
            return Err(Error::precondition_failed(format!(
                "the database's master key is {}, not {from}",
                current.as_deref().unwrap_or("not recorded yet")
            )));
        }
        let keys: Vec<(String, String, Vec<u8>, String)> = db::query_as(format!(
            "SELECT env_id, key_id, wrapped, master_key_id FROM secret_keys ORDER BY env_id{}",
            crate::store::for_update(&tx)
        ))
        .fetch_all(&mut tx)
        .await
        .map_err(internal)?;
        let mut moved = 0;
        for (env_id, key_id, wrapped, master_key_id) in keys {
            if master_key_id != from {
                tracing::error!(env_id = %env_id, master_key_id = %master_key_id, "a data key is wrapped by another master key than the keyring's");
                return Err(Error::internal());
            }
            let rewrapped = rewrap(&env_id, &key_id, &wrapped)?;
            db::query("UPDATE secret_keys SET wrapped = $2, master_key_id = $3 WHERE env_id = $1")
                .bind(&env_id)
                .bind(rewrapped)
                .bind(to)
                .execute(&mut tx)
                .await
                .map_err(internal)?;
            moved += 1;
        }
        reseal_webhooks(&mut tx, reseal).await?;
        reseal_totp_secrets(&mut tx, reseal).await?;
        db::query("UPDATE keyring SET master_key_id = $1, rotated_at = $2 WHERE id = 1")
            .bind(to)
            .bind(now_ms())
            .execute(&mut tx)
            .await
            .map_err(internal)?;
        self.commit(tx, vec![]).await?;
        Ok(moved)
    }

    /// By key (byte order), keyset on the key.
    pub async fn secrets(
        &self,
        env_id: &EnvId,
        page: &PageQuery,
    ) -> enclave_core::Result<(Vec<SecretRecord>, i64)> {
        let rows = db::query_as(format!(
            "SELECT {SECRET_COLUMNS} FROM secrets WHERE env_id = $1 \
             AND ($2 IS NULL OR key_name > $2) ORDER BY key_name LIMIT $3"
        ))
        .bind(env_id)
        .bind(page.after.as_deref())
        .bind(i64::from(page.limit) + 1)
        .fetch_all(self.reader())
        .await
        .map_err(internal)?;
        let total = db::query_scalar("SELECT COUNT(*) FROM secrets WHERE env_id = $1")
            .bind(env_id)
            .fetch_one(self.reader())
            .await
            .map_err(internal)?;
        Ok((rows, total))
    }

    /// Every secret of the environment, by key: export, import, promotion, clone, diff.
    pub async fn env_secrets(&self, env_id: &EnvId) -> enclave_core::Result<Vec<SecretRecord>> {
        db::query_as(format!(
            "SELECT {SECRET_COLUMNS} FROM secrets WHERE env_id = $1 ORDER BY key_name"
        ))
        .bind(env_id)
        .fetch_all(self.reader())
        .await
        .map_err(internal)
    }

    pub async fn secret(
        &self,
        env_id: &EnvId,
        key: &str,
    ) -> enclave_core::Result<Option<SecretRecord>> {
        db::query_as(format!(
            "SELECT {SECRET_COLUMNS} FROM secrets WHERE env_id = $1 AND key_name = $2"
        ))
        .bind(env_id)
        .bind(key)
        .fetch_optional(self.reader())
        .await
        .map_err(internal)
    }

    /// Creates and updates secrets of one environment, all or nothing; returns them as
    /// written, in order.
    pub async fn write_secrets(
        &self,
        env_id: &EnvId,
        writes: Vec<SecretWrite>,
        origin: &Origin,
    ) -> enclave_core::Result<Vec<SecretRecord>> {
        let mut tx = self.begin_write().await?;
        let env = writable_env(&mut tx, env_id).await?;
        let mut changed = SecretChanges::default();
        let out = write_secret_batch(&mut tx, origin, env_id, writes, &mut changed).await?;
        announce_secrets(&mut tx, &env.org_id, env_id, &changed).await?;
        self.commit(tx, vec![]).await?;
        Ok(out)
    }

    pub async fn delete_secret(
        &self,
        env_id: &EnvId,
        key: &str,
        expected_version: Option<i64>,
        origin: &Origin,
    ) -> enclave_core::Result<()> {
        let mut tx = self.begin_write().await?;
        let env = writable_env(&mut tx, env_id).await?;
        let before: Option<SecretRecord> = db::query_as(format!(
            "SELECT {SECRET_COLUMNS} FROM secrets WHERE env_id = $1 AND key_name = $2{}",
            crate::store::for_update(&tx)
        ))
        .bind(env_id)
        .bind(key)
        .fetch_optional(&mut tx)
        .await
        .map_err(internal)?;
        let before = before.ok_or_else(|| Error::not_found("secret"))?;
        check_if_match("secret", expected_version, before.version)?;
        db::query("DELETE FROM secrets WHERE id = $1")
            .bind(&before.id)
            .execute(&mut tx)
            .await
            .map_err(internal)?;
        journal(
            &mut tx,
            origin,
            Change::of("secret.deleted", Some(&before), None),
        )
        .await?;
        let changed = SecretChanges {
            deleted: vec![before.key.clone()],
            ..Default::default()
        };
        announce_secrets(&mut tx, &env.org_id, env_id, &changed).await?;
        self.commit(tx, vec![]).await
    }

    /// Newest first.
    pub async fn secret_versions(
        &self,
        secret_id: &str,
        page: &PageQuery,
    ) -> enclave_core::Result<(Vec<SecretVersionRecord>, i64)> {
        let after: Option<i64> = match page.after.as_deref() {
            None => None,
            Some(c) => Some(c.parse().map_err(|_| {
                Error::validation("cursor", "cursor", "the cursor is not one this list gave")
            })?),
        };
        let rows = db::query_as(
            "SELECT secret_id, version, ciphertext, comment, tags, created_by, created_at FROM secret_versions \
             WHERE secret_id = $1 AND ($2 IS NULL OR version < $2) ORDER BY version DESC LIMIT $3",
        )
        .bind(secret_id)
        .bind(after)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(self.reader())
        .await
        .map_err(internal)?;
        let total = db::query_scalar("SELECT COUNT(*) FROM secret_versions WHERE secret_id = $1")
            .bind(secret_id)
            .fetch_one(self.reader())
            .await
            .map_err(internal)?;
        Ok((rows, total))
    }

    pub async fn secret_version(
        &self,
        secret_id: &str,
        version: i64,
    ) -> enclave_core::Result<Option<SecretVersionRecord>> {
        db::query_as(
            "SELECT secret_id, version, ciphertext, comment, tags, created_by, created_at FROM secret_versions \
             WHERE secret_id = $1 AND version = $2",
        )
        .bind(secret_id)
        .bind(version)
        .fetch_optional(self.reader())
        .await
        .map_err(internal)
    }

    /// Which of the `(env_id, key)` pairs exist (for environments' missing required keys).
    pub async fn existing_secret_keys(
        &self,
        pairs: &[(EnvId, String)],
    ) -> enclave_core::Result<Vec<(EnvId, String)>> {
        let mut found = Vec::new();
        // 100 pairs (200 parameters) per query: sqlx's SQLite binding slows with more.
        for chunk in pairs.chunks(100) {
            let tuples: Vec<String> = (0..chunk.len())
                .map(|i| format!("(env_id = ${} AND key_name = ${})", 2 * i + 1, 2 * i + 2))
                .collect();
            let sql = format!(
                "SELECT env_id, key_name FROM secrets WHERE {}",
                tuples.join(" OR ")
            );
            let mut q = db::query_as::<(EnvId, String)>(&sql);
            for (env_id, key) in chunk {
                q = q.bind(env_id).bind(key);
            }
            found.extend(q.fetch_all(self.reader()).await.map_err(internal)?);
        }
        Ok(found)
    }
}

/// The keys one transaction created, updated and deleted: its one `secret.changed` event.
#[derive(Debug, Default)]
pub(crate) struct SecretChanges {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub deleted: Vec<String>,
}

/// 409 `key_taken`: the environment has a secret `key` (empty when the database, not the
/// check before it, found the clash).
pub(crate) fn key_taken(key: &str) -> enclave_core::Error {
    enclave_core::Error::conflict(
        "key_taken",
        format!("this environment already has a secret `{key}`"),
    )
    .with_details(serde_json::json!({"rule": "key_taken", "key": key}))
}

impl SecretChanges {
    pub(crate) fn is_empty(&self) -> bool {
        self.created.is_empty() && self.updated.is_empty() && self.deleted.is_empty()
    }

    /// The event's `data`: key names, sorted.
    pub(crate) fn data(&self, env_id: &EnvId) -> serde_json::Value {
        let sorted = |keys: &[String]| {
            let mut keys = keys.to_vec();
            keys.sort();
            keys
        };
        serde_json::json!({
            "env_id": env_id,
            "created": sorted(&self.created),
            "updated": sorted(&self.updated),
            "deleted": sorted(&self.deleted),
        })
    }
}

/// Queues the transaction's one `secret.changed` event (key names only), unless nothing
/// changed.
pub(crate) async fn announce_secrets(
    tx: &mut Tx,
    org_id: &OrgId,
    env_id: &EnvId,
    changes: &SecretChanges,
) -> Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    announce(
        tx,
        org_id,
        Some(env_id),
        "secret.changed",
        changes.data(env_id),
    )
    .await
}

/// Applies `writes` (one environment's) in the transaction: creates 100 rows per statement
/// (a key that exists → 409 `key_taken` naming it), then updates one by one (each only from
/// its expected version, else 412), every version row, and one audit entry per secret
/// through [`journal_batch`]; records the keys in `changes`. Returns the records: creates in
/// the order given, then updates.
pub(crate) async fn write_secret_batch(
    tx: &mut Tx,
    origin: &Origin,
    env_id: &EnvId,
    writes: Vec<SecretWrite>,
    changes: &mut SecretChanges,
) -> Result<Vec<SecretRecord>> {
    let now = now_ms();
    let by = &origin.actor.id;
    let mut creates = Vec::new();
    let mut updates = Vec::new();
    for write in writes {
        match write {
            SecretWrite::Create(new) if new.env_id == *env_id => creates.push(new),
            SecretWrite::Create(_) => return Err(Error::internal()),
            update => updates.push(update),
        }
    }
    let mut out: Vec<SecretRecord> = Vec::with_capacity(creates.len() + updates.len());
    let mut journal = Vec::with_capacity(creates.len() + updates.len());
    for chunk in creates.chunks(100) {
        let list: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        let taken_sql = format!(
            "SELECT key_name FROM secrets WHERE env_id = $1 AND key_name IN ({}) ORDER BY key_name LIMIT 1",
            list.join(", ")
        );
        let mut taken = db::query_scalar::<String>(&taken_sql).bind(env_id);
        for new in chunk {
            taken = taken.bind(&new.key);
        }
        if let Some(key) = taken.fetch_optional(&mut *tx).await.map_err(internal)? {
            return Err(crate::secrets::key_taken(&key));
        }
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                let b = 2 + i * 7;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, 1, $1, $2, $1, $2)",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO secrets (id, org_id, env_id, key_name, ciphertext, comment, tags, version, \
             created_by, created_at, updated_by, updated_at) VALUES {} RETURNING {SECRET_COLUMNS}",
            rows.join(", ")
        );
        let mut q = db::query_as::<SecretRecord>(&sql).bind(by).bind(now);
        for new in chunk {
            q = q
                .bind(&new.id)
                .bind(&new.org_id)
                .bind(&new.env_id)
                .bind(&new.key)
                .bind(&new.ciphertext)
                .bind(&new.comment)
                .bind(sqlx::types::Json(&new.tags));
        }
        let mut recs = q
            .fetch_all(&mut *tx)
            .await
            .map_err(unique_or(|| crate::secrets::key_taken("")))?;
        // RETURNING's row order is not promised: put them back in the order given.
        let order: std::collections::HashMap<&str, usize> = chunk
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.as_str(), i))
            .collect();
        recs.sort_by_key(|r| order.get(r.id.as_str()).copied().unwrap_or(usize::MAX));
        record_secret_versions(&mut *tx, &recs, now).await?;
        for rec in recs {
            journal.push(Change::of("secret.created", None, Some(&rec)));
            changes.created.push(rec.key.clone());
            out.push(rec);
        }
    }
    for update in updates {
        let SecretWrite::Update {
            secret_id,
            key,
            expected_version,
            ciphertext,
            comment,
            tags,
        } = update
        else {
            return Err(Error::internal());
        };
        let before: Option<SecretRecord> = db::query_as(format!(
            "SELECT {SECRET_COLUMNS} FROM secrets WHERE env_id = $1 AND id = $2{}",
            crate::store::for_update(tx)
        ))
        .bind(env_id)
        .bind(&secret_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(internal)?;
        let stale = || {
            Error::precondition_failed(format!(
                "the secret `{key}` changed while this write was prepared"
            ))
        };
        let before = before.ok_or_else(stale)?;
        if before.version != expected_version {
            return Err(stale());
        }
        let rec: SecretRecord = db::query_as(format!(
            "UPDATE secrets SET ciphertext = $2, comment = $3, tags = $4, version = version + 1, \
             updated_by = $5, updated_at = $6 WHERE id = $1 RETURNING {SECRET_COLUMNS}"
        ))
        .bind(&secret_id)
        .bind(&ciphertext)
        .bind(&comment)
        .bind(sqlx::types::Json(&tags))
        .bind(by)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(internal)?;
        record_secret_versions(&mut *tx, std::slice::from_ref(&rec), now).await?;
        journal.push(Change::of("secret.updated", Some(&before), Some(&rec)));
        changes.updated.push(rec.key.clone());
        out.push(rec);
    }
    journal_batch(&mut *tx, origin, journal).await?;
    Ok(out)
}

/// Appends each record's current version to its history, 100 rows per statement.
async fn record_secret_versions(tx: &mut Tx, recs: &[SecretRecord], now: i64) -> Result<()> {
    for chunk in recs.chunks(100) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                let b = 1 + i * 6;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, $1)",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO secret_versions (secret_id, version, ciphertext, comment, tags, created_by, created_at) VALUES {}",
            rows.join(", ")
        );
        let mut q = db::query(&sql).bind(now);
        for rec in chunk {
            q = q
                .bind(&rec.id)
                .bind(rec.version)
                .bind(&rec.ciphertext)
                .bind(&rec.comment)
                .bind(sqlx::types::Json(&rec.tags.0))
                .bind(&rec.updated_by);
        }
        q.execute(&mut *tx).await.map_err(internal)?;
    }
    Ok(())
}

/// Checks, holding the keyring row until commit, that the database's master key is
/// `master_key_id`; 503 `master_key_rotated` otherwise.
pub(crate) async fn check_keyring(tx: &mut Tx, master_key_id: &str) -> Result<()> {
    let current: Option<String> = db::query_scalar(format!(
        "SELECT master_key_id FROM keyring WHERE id = 1{}",
        for_update(tx)
    ))
    .fetch_optional(&mut *tx)
    .await
    .map_err(internal)?;
    if current.as_deref() == Some(master_key_id) {
        Ok(())
    } else {
        Err(Error::unavailable(
            "the master key was rotated: this server must be restarted with the new one",
        )
        .with_details(serde_json::json!({"rule": "master_key_rotated"})))
    }
}

/// Stores an environment's data key unless it has one.
pub(crate) async fn insert_data_key(tx: &mut Tx, env_id: &EnvId, key: &WrappedKey) -> Result<()> {
    db::query(
        "INSERT INTO secret_keys (env_id, key_id, wrapped, master_key_id, created_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (env_id) DO NOTHING",
    )
    .bind(env_id)
    .bind(&key.key_id)
    .bind(&key.wrapped)
    .bind(&key.master_key_id)
    .bind(now_ms())
    .execute(tx)
    .await
    .map(|_| ())
    .map_err(internal)
}

//! Secrets in the control plane: the master key (loading, checking, rotating), the node's
//! keyring, and sealing and opening values for the routes.

pub mod keyring;
pub mod master;

use enclave_core::clock::from_ms;
use enclave_core::id::EnvId;
use enclave_core::secret::crypto::DataKey;
use enclave_core::secret::{Content, Secret, SecretVersion};
use std::collections::BTreeMap;

use enclave_core::api_key::key_can;
use enclave_core::{Error, Permission, Result};

use crate::access::OrgAccess;
use crate::auth::Caller;
use enclave_store::{SecretRecord, SecretVersionRecord, Store};

pub use keyring::Keyring;
pub use master::MasterKeySource;

fn undecryptable(env_id: &EnvId, secret_id: &str, version: i64) -> Error {
    tracing::error!(
        env_id = %env_id,
        secret_id,
        version,
        "a secret value does not open with its environment's data key"
    );
    Error::internal()
}

/// The record's current value.
pub fn open(key: &DataKey, rec: &SecretRecord) -> Result<String> {
    key.open(&rec.id, rec.version, &rec.ciphertext)
        .map_err(|_| undecryptable(&rec.env_id, &rec.id, rec.version))
}

/// The record's current content (value, comment, tags).
pub fn content(key: &DataKey, rec: &SecretRecord) -> Result<Content> {
    Ok(Content {
        value: open(key, rec)?,
        comment: rec.comment.clone(),
        tags: rec.tags.0.clone(),
    })
}

/// A secret as the API shows it; `value` only when revealed.
pub fn view(rec: &SecretRecord, value: Option<String>) -> Secret {
    Secret {
        secret_id: rec.id.clone(),
        env_id: rec.env_id.clone(),
        key: rec.key.clone(),
        value,
        comment: rec.comment.clone(),
        tags: rec.tags.0.clone(),
        version: rec.version,
        created_at: from_ms(rec.created_at),
        updated_at: from_ms(rec.updated_at),
        updated_by: rec.updated_by.clone(),
    }
}

pub fn version_view(
    key: &DataKey,
    env_id: &EnvId,
    current: i64,
    v: &SecretVersionRecord,
) -> Result<SecretVersion> {
    Ok(SecretVersion {
        version: v.version,
        value: key
            .open(&v.secret_id, v.version, &v.ciphertext)
            .map_err(|_| undecryptable(env_id, &v.secret_id, v.version))?,
        comment: v.comment.clone(),
        tags: v.tags.0.clone(),
        created_at: from_ms(v.created_at),
        created_by: v.created_by.clone(),
        current: v.version == current,
    })
}

/// Every secret of an environment with its opened content, by key.
pub async fn env_contents(
    store: &Store,
    keyring: &Keyring,
    env_id: &EnvId,
) -> Result<BTreeMap<String, (SecretRecord, Content)>> {
    let recs = store.env_secrets(env_id).await?;
    if recs.is_empty() {
        return Ok(Default::default());
    }
    let key = keyring
        .existing(env_id)
        .await?
        .ok_or_else(Error::internal)?;
    recs.into_iter()
        .map(|r| {
            let c = content(&key, &r)?;
            Ok((r.key.clone(), (r, c)))
        })
        .collect()
}

/// The environment's key for `hash` masks, derived from its data key (made on first use).
#[async_trait::async_trait]
impl enclave_gateway::enforcement::MaskKeys for EngineSecrets {
    async fn mask_key(&self, env_id: &EnvId) -> Result<String> {
        Ok(self
            .keyring
            .for_writing(env_id)
            .await?
            .mask_hash_key()
            .to_string())
    }
}

/// The environment's secrets as the PostgreSQL engine reads its connection string.
pub struct EngineSecrets {
    pub store: std::sync::Arc<enclave_store::Store>,
    pub keyring: std::sync::Arc<Keyring>,
}

#[async_trait::async_trait]
impl enclave_gateway::engine::postgres::SecretSource for EngineSecrets {
    async fn secret(&self, env_id: &EnvId, key: &str) -> Result<Option<String>> {
        let Some(rec) = self.store.secret(env_id, key).await? else {
            return Ok(None);
        };
        let Some(data_key) = self.keyring.existing(env_id).await? else {
            return Ok(None);
        };
        open(&data_key, &rec).map(Some)
    }
}

/// Whether the caller, already admitted to the environment, may also read values.
pub fn may_read_values(who: &Caller, access: &OrgAccess) -> bool {
    let p = Permission::ReadSecretValues;
    match who {
        Caller::User(_) => access.role.can(p),
        Caller::Key(k) => key_can(k.role, &k.scopes, p),
    }
}

/// Every secret's value, by key.
pub async fn env_values(
    store: &Store,
    keyring: &Keyring,
    env_id: &EnvId,
) -> Result<BTreeMap<String, String>> {
    Ok(env_contents(store, keyring, env_id)
        .await?
        .into_iter()
        .map(|(k, (_, c))| (k, c.value))
        .collect())
}

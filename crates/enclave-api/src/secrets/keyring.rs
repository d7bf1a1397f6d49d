//! The node's keys in memory: the master key, and each environment's data key once it has
//! been unwrapped. Data keys never change (a master key rotation only re-wraps them), so the
//! cache is dropped only when an environment changes or is deleted.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use enclave_core::id::EnvId;
use enclave_core::secret::crypto::{
    is_sealed_text, sealed_text_key_id, DataKey, MasterKey, WrappedKey,
};
use enclave_core::{Error, Result};
use enclave_store::{Invalidation, Store};
use serde_json::json;
use zeroize::Zeroizing;

use super::master::{read_key_file, MasterKeySource};

pub struct Keyring {
    store: Arc<Store>,
    source: MasterKeySource,
    master: RwLock<Arc<MasterKey>>,
    keys: Arc<RwLock<HashMap<EnvId, Arc<DataKey>>>>,
}

fn rotated_away() -> Error {
    Error::unavailable(
        "this server's master key was rotated away: restart it with the new master key",
    )
    .with_details(json!({"rule": "master_key_rotated"}))
}

impl Keyring {
    pub fn new(store: Arc<Store>, source: MasterKeySource, master: MasterKey) -> Arc<Self> {
        let keys: Arc<RwLock<HashMap<EnvId, Arc<DataKey>>>> = Arc::default();
        let cache = Arc::downgrade(&keys);
        store.bus().on_publish(move |event| {
            let Some(keys) = cache.upgrade() else { return };
            let mut keys = keys.write().unwrap();
            match event {
                Invalidation::Environment { env_id } => {
                    keys.remove(env_id);
                }
                Invalidation::All => keys.clear(),
                _ => {}
            }
        });
        Arc::new(Keyring {
            store,
            source,
            master: RwLock::new(Arc::new(master)),
            keys,
        })
    }

    pub fn master_key_id(&self) -> String {
        self.master().id().to_string()
    }

    fn master(&self) -> Arc<MasterKey> {
        self.master.read().unwrap().clone()
    }

    /// After another process rotated the master key: a key file source is read again (a
    /// configured key cannot change under a running server). True when the key changed.
    fn reload(&self) -> bool {
        let MasterKeySource::File(path) = &self.source else {
            return false;
        };
        match read_key_file(path) {
            Ok(key) if key.id() != self.master().id() => {
                tracing::warn!(
                    master_key_id = key.id(),
                    "the master key file changed; using the new key"
                );
                *self.master.write().unwrap() = Arc::new(key);
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the master key file again");
                false
            }
        }
    }

    /// `value`, a secret the server keeps for `owner` (a webhook's signing secret), sealed by
    /// the master key for storing.
    pub fn seal_text(&self, owner: &str, value: &str) -> String {
        self.master().seal_text(owner, value)
    }

    /// Opens what [`Keyring::seal_text`] stored; the key file is read again when another
    /// process rotated the master key since.
    pub fn open_text(&self, owner: &str, stored: &str) -> Result<Zeroizing<String>> {
        let key_id = sealed_text_key_id(stored).unwrap_or_default();
        if key_id != self.master().id() && !self.reload() {
            return Err(rotated_away());
        }
        self.master()
            .open_text(owner, stored)
            .map(Zeroizing::new)
            .map_err(|_| {
                tracing::error!(owner, "a sealed secret does not open with the master key");
                Error::internal()
            })
    }

    /// Seals every webhook signing secret an older release stored in clear; returns how many
    /// webhooks changed (none once done: sealed ones are left as they are).
    pub async fn seal_stored_in_clear(&self) -> Result<u64> {
        let master = self.master();
        let seal = |owner: &str, stored: &str| -> Result<String> {
            Ok(if is_sealed_text(stored) {
                stored.to_string()
            } else {
                master.seal_text(owner, stored)
            })
        };
        self.store.reseal_webhook_secrets(&seal).await
    }

    /// The environment's data key, if it has one (it gets one with its first secret).
    pub async fn existing(&self, env_id: &EnvId) -> Result<Option<Arc<DataKey>>> {
        if let Some(k) = self.keys.read().unwrap().get(env_id) {
            return Ok(Some(k.clone()));
        }
        match self.store.data_key(env_id).await? {
            Some(wrapped) => self.unwrap_and_keep(env_id, &wrapped).map(Some),
            None => Ok(None),
        }
    }

    /// The environment's data key, made now if it has none. Call only for an environment
    /// the caller may write to.
    pub async fn for_writing(&self, env_id: &EnvId) -> Result<Arc<DataKey>> {
        if let Some(k) = self.existing(env_id).await? {
            return Ok(k);
        }
        let mut reloaded = false;
        loop {
            let (_, wrapped) = self.master().new_data_key(env_id);
            match self.store.create_data_key(env_id, wrapped).await {
                // Whichever key won a race between nodes is the one stored and returned.
                Ok(stored) => return self.unwrap_and_keep(env_id, &stored),
                Err(e) if e.details["rule"] == "master_key_rotated" && !reloaded => {
                    reloaded = true;
                    if !self.reload() {
                        return Err(rotated_away());
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A data key for a new environment (a clone), wrapped for storing with it.
    pub fn new_data_key(&self, env_id: &EnvId) -> (DataKey, WrappedKey) {
        self.master().new_data_key(env_id)
    }

    fn unwrap_and_keep(&self, env_id: &EnvId, wrapped: &WrappedKey) -> Result<Arc<DataKey>> {
        if wrapped.master_key_id != self.master().id() && !self.reload() {
            return Err(rotated_away());
        }
        let key = self
            .master()
            .unwrap(env_id, &wrapped.key_id, &wrapped.wrapped)
            .map_err(|_| {
                tracing::error!(env_id = %env_id, key_id = %wrapped.key_id, "an environment's data key does not open with the master key");
                Error::internal()
            })?;
        let key = Arc::new(key);
        self.keys
            .write()
            .unwrap()
            .insert(env_id.clone(), key.clone());
        Ok(key)
    }
}

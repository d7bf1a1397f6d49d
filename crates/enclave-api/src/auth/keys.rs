//! Authenticating environment API keys.
//!
//! Anything that cannot be a key is refused before the database or Argon2id is touched. A
//! well-formed key is looked up by the key id inside it and its secret checked with
//! Argon2id on the blocking pool — once per key per node: the result is kept in a verified
//! cache keyed by an HMAC of the whole key under a per-process random key (never the key).
//! Every change to a key, its environment or its organization drops the affected entries the
//! moment the store publishes it (from any node on PostgreSQL), so revocation, expiry, scope
//! changes and suspension take effect on the next request.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use enclave_core::api_key::{ip_allowed, KeyParts, KeyStatus, Scope};
use enclave_core::environment::EnvStatus;
use enclave_core::id::{EnvId, KeyId, OrgId};
use enclave_core::model::{OrgStatus, Tier};
use enclave_core::{Error, Result, Role};
use enclave_store::{Invalidation, KeyAuthRecord, Store};
use ipnet::IpNet;
use ring::hmac;

use crate::auth::passwords::Passwords;
use crate::auth::throttle::{Subject, Throttle};

const MAX_ENTRIES: usize = 100_000;
/// `last_used_at` is written at most this often per key (per node).
const LAST_USED_EVERY: Duration = Duration::from_secs(60);

/// An authenticated key: what authorization needs about it.
#[derive(Debug, Clone)]
pub struct KeyCaller {
    pub key_id: KeyId,
    pub env_id: EnvId,
    pub org_id: OrgId,
    pub name: String,
    pub role: Role,
    pub scopes: BTreeSet<Scope>,
    pub attributes: BTreeMap<String, String>,
    pub tier: Tier,
}

/// A verified key as cached: who it acts for and what decides, per request, whether it may be
/// used now.
#[derive(Clone)]
struct Verified {
    caller: KeyCaller,
    status: KeyStatus,
    expires_at: Option<i64>,
    grace_expires_at: Option<i64>,
    allowlist: Vec<IpNet>,
    env_status: EnvStatus,
    org_status: OrgStatus,
}

pub struct KeyAuth {
    store: Arc<Store>,
    passwords: Passwords,
    throttle: Arc<Throttle>,
    mac: hmac::Key,
    verified: RwLock<HashMap<[u8; 32], Verified>>,
    /// Bumped by every invalidation; a lookup that raced one is not cached.
    generation: AtomicU64,
    last_used: Mutex<HashMap<KeyId, Instant>>,
}

impl KeyAuth {
    /// `throttle` slows down the failed checks of cold keys, per source and per key id.
    pub fn start(store: Arc<Store>, passwords: Passwords, throttle: Arc<Throttle>) -> Arc<Self> {
        let rng = ring::rand::SystemRandom::new();
        let auth = Arc::new(KeyAuth {
            store: store.clone(),
            passwords,
            throttle,
            mac: hmac::Key::generate(hmac::HMAC_SHA256, &rng).expect("system randomness"),
            verified: RwLock::default(),
            generation: AtomicU64::new(0),
            last_used: Mutex::default(),
        });
        let weak = Arc::downgrade(&auth);
        store.bus().on_publish(move |event| {
            if let Some(auth) = weak.upgrade() {
                auth.invalidate(event);
            }
        });
        auth
    }

    fn invalidate(&self, event: &Invalidation) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let mut map = self.verified.write().unwrap();
        match event {
            Invalidation::ApiKey { key_id } => map.retain(|_, v| &v.caller.key_id != key_id),
            Invalidation::Environment { env_id } => map.retain(|_, v| &v.caller.env_id != env_id),
            Invalidation::Org { org_id } => map.retain(|_, v| &v.caller.org_id != org_id),
            Invalidation::All => map.clear(),
            Invalidation::Session { .. }
            | Invalidation::Member { .. }
            | Invalidation::User { .. }
            | Invalidation::OrgEnvironments { .. }
            | Invalidation::Policies { .. }
            | Invalidation::Catalog { .. }
            | Invalidation::Data { .. }
            | Invalidation::Jit { .. }
            | Invalidation::Capabilities { .. }
            | Invalidation::Shadow { .. }
            | Invalidation::Nodes => {}
        }
    }

    /// The key as a caller if `presented` is a live key usable from `ip`; 401 otherwise, with
    /// a message saying why only once the secret has been shown to be right.
    pub async fn authenticate(&self, presented: &str, ip: Option<IpAddr>) -> Result<KeyCaller> {
        let invalid = || Error::unauthorized("invalid API key");
        let parts = KeyParts::parse(presented).ok_or_else(invalid)?;
        let tag = hmac::sign(&self.mac, presented.as_bytes());
        let mut id = [0u8; 32];
        id.copy_from_slice(tag.as_ref());
        let cached = self.verified.read().unwrap().get(&id).cloned();
        let verified = match cached {
            Some(v) => v,
            None => {
                // Guessing from one address, or at one key, slows down before Argon2id runs.
                let account = Subject::Account(parts.key_id.to_string());
                let mut subjects = vec![account.clone()];
                subjects.extend(ip.map(Subject::Source));
                self.throttle.check(&subjects)?;
                let generation = self.generation.load(Ordering::SeqCst);
                let record = self.store.key_auth(&parts.key_id).await?;
                let hash = record.as_ref().map(|r| r.key.secret_hash.clone());
                // An unknown key id costs a (dummy) Argon2id check too: the time taken never
                // tells whether a guessed key exists.
                let right = self.passwords.verify(parts.secret.clone(), hash).await?
                    && record
                        .as_ref()
                        .is_some_and(|r| r.key.prefix == enclave_core::api_key::prefix(presented));
                if !right {
                    self.throttle.failed(&subjects);
                    return Err(invalid());
                }
                self.throttle.succeeded(&account);
                let record = record.ok_or_else(invalid)?;
                let v = verified(record)?;
                if self.generation.load(Ordering::SeqCst) == generation {
                    let mut map = self.verified.write().unwrap();
                    if map.len() >= MAX_ENTRIES {
                        map.clear();
                    }
                    map.insert(id, v.clone());
                }
                v
            }
        };
        usable_now(&verified, ip)?;
        self.note_use(&verified.caller.key_id);
        Ok(verified.caller)
    }

    /// Writes `last_used_at` off the request path, at most once a minute per key.
    fn note_use(&self, key_id: &KeyId) {
        let due = {
            let mut seen = self.last_used.lock().unwrap();
            if seen.len() >= MAX_ENTRIES {
                seen.clear();
            }
            match seen.get(key_id) {
                Some(at) if at.elapsed() < LAST_USED_EVERY => false,
                _ => {
                    seen.insert(key_id.clone(), Instant::now());
                    true
                }
            }
        };
        if due {
            let (store, key_id) = (self.store.clone(), key_id.clone());
            tokio::spawn(async move {
                if let Err(e) = store
                    .touch_api_key(&key_id, enclave_core::clock::now_ms())
                    .await
                {
                    tracing::warn!(error = %e, "could not record API key use");
                }
            });
        }
    }
}

fn verified(r: KeyAuthRecord) -> Result<Verified> {
    let k = r.key;
    let allowlist = enclave_core::api_key::allowlist("ip_allowlist", &k.ip_allowlist.0)
        .map_err(|_| Error::internal())?;
    Ok(Verified {
        caller: KeyCaller {
            role: k.role,
            scopes: k.scopes.0.iter().copied().collect(),
            attributes: k.attributes.0.clone(),
            key_id: k.id,
            env_id: k.env_id,
            org_id: k.org_id,
            name: k.name,
            tier: r.tier,
        },
        status: k.status,
        expires_at: k.expires_at,
        grace_expires_at: k.grace_expires_at,
        allowlist,
        env_status: r.env_status,
        org_status: r.org_status,
    })
}

/// Whether a genuine key may be used now, from `ip`.
fn usable_now(v: &Verified, ip: Option<IpAddr>) -> Result<()> {
    let status = v.status.at(
        enclave_core::clock::now_ms(),
        v.expires_at,
        v.grace_expires_at,
    );
    match status {
        KeyStatus::Revoked => return Err(Error::unauthorized("this API key has been revoked")),
        KeyStatus::Expired => return Err(Error::unauthorized("this API key has expired")),
        KeyStatus::Active | KeyStatus::Rotating => {}
    }
    match v.env_status {
        EnvStatus::Suspended => {
            return Err(Error::unauthorized(
                "this API key's environment is suspended",
            ))
        }
        EnvStatus::Decommissioning => {
            return Err(Error::unauthorized(
                "this API key's environment is being deleted",
            ))
        }
        EnvStatus::Provisioning | EnvStatus::Active => {}
    }
    if v.org_status == OrgStatus::Suspended {
        return Err(Error::unauthorized(
            "this API key's organization is suspended",
        ));
    }
    let allowed = match ip {
        Some(ip) => ip_allowed(&v.allowlist, ip),
        None => v.allowlist.is_empty(),
    };
    if !allowed {
        return Err(Error::unauthorized(
            "this API key may not be used from this IP address",
        ));
    }
    Ok(())
}

/// The gateway authenticates keys through this same cache (both doors).
impl KeyAuth {
    /// A key presented to the gateway, as its pipeline sees it.
    pub async fn api_key(
        &self,
        key: &str,
        ip: Option<IpAddr>,
    ) -> Result<enclave_gateway::Identity> {
        Ok(self.authenticate(key, ip).await?.identity())
    }
}

impl KeyCaller {
    /// The key as the gateway's pipeline sees it.
    pub fn identity(&self) -> enclave_gateway::Identity {
        enclave_gateway::Identity {
            actor: enclave_core::audit::Actor::api_key(&self.key_id),
            org_id: self.org_id.clone(),
            env_id: self.env_id.clone(),
            role: self.role,
            scopes: Some(self.scopes.clone()),
            attributes: self.attributes.clone(),
            email: None,
            grant: None,
        }
    }
}

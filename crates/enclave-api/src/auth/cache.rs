//! What every authenticated request needs — is the token genuine, is the session live, what
//! is the caller's role in this organization, the caller's, the organization's and the
//! environment's records —
//! without a signature check or a database round trip each time.
//!
//! Database-backed entries are dropped the moment the store publishes an invalidation (on
//! PostgreSQL, from any node), so logout, suspension, role and organization changes take
//! effect at once; a short TTL is only a safety net. Verified tokens are keyed by the
//! SHA-256 of the token (never the token itself) and kept until the token expires: a
//! signature, once checked, stays valid — revocation is the session's business.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use enclave_core::id::{EnvId, OrgId, UserId};
use enclave_core::Result;
use enclave_store::{
    AuthMembership, EnvRecord, Invalidation, JitRecord, OrgRecord, SessionRecord, Store, UserRecord,
};
use sha2::{Digest, Sha256};

use crate::auth::tokens::{Claims, TokenKeys};

const TTL: Duration = Duration::from_secs(60);
const MAX_ENTRIES: usize = 100_000;

/// One cached map: values with the instant they were loaded.
struct Table<K, V> {
    map: RwLock<HashMap<K, (V, Instant)>>,
}

impl<K: Hash + Eq, V: Clone> Table<K, V> {
    fn new() -> Self {
        Table {
            map: RwLock::default(),
        }
    }

    fn get(&self, key: &K, ttl: Duration) -> Option<V> {
        let map = self.map.read().unwrap();
        map.get(key)
            .filter(|(_, at)| at.elapsed() < ttl)
            .map(|(v, _)| v.clone())
    }

    fn put(&self, key: K, value: V) {
        let mut map = self.map.write().unwrap();
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(key, (value, Instant::now()));
    }

    /// Inserts unless an invalidation happened since `read_at` (then the value may be stale).
    fn insert(&self, generation: &AtomicU64, read_at: u64, key: K, value: V) {
        if generation.load(Ordering::SeqCst) == read_at {
            self.put(key, value);
        }
    }

    fn remove(&self, key: &K) {
        self.map.write().unwrap().remove(key);
    }

    fn retain(&self, keep: impl Fn(&K, &V) -> bool) {
        self.map.write().unwrap().retain(|k, (v, _)| keep(k, v));
    }

    fn clear(&self) {
        self.map.write().unwrap().clear();
    }
}

pub struct AuthCache {
    store: Arc<Store>,
    tokens: Table<[u8; 32], Claims>,
    sessions: Table<String, Option<SessionRecord>>,
    members: Table<(UserId, OrgId), Option<AuthMembership>>,
    users: Table<UserId, Option<UserRecord>>,
    orgs: Table<OrgId, Option<OrgRecord>>,
    envs: Table<EnvId, Option<EnvRecord>>,
    /// Each member's latest approved just-in-time grant per environment (live or not: the
    /// deadline is compared with the clock at each use).
    jit_grants: Table<(UserId, EnvId), Option<JitRecord>>,
    /// Bumped by every invalidation. A value read from the database is cached only if no
    /// invalidation happened meanwhile, so a read racing a change never re-caches stale data.
    generation: AtomicU64,
}

impl AuthCache {
    pub fn start(store: Arc<Store>) -> Arc<Self> {
        let cache = Arc::new(AuthCache {
            store: store.clone(),
            tokens: Table::new(),
            sessions: Table::new(),
            members: Table::new(),
            users: Table::new(),
            orgs: Table::new(),
            envs: Table::new(),
            jit_grants: Table::new(),
            generation: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&cache);
        store.bus().on_publish(move |event| {
            if let Some(cache) = weak.upgrade() {
                cache.invalidate(event);
            }
        });
        cache
    }

    pub fn invalidate(&self, event: &Invalidation) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        match event {
            Invalidation::Session { session_id } => self.sessions.remove(session_id),
            Invalidation::Member { org_id, user_id } => {
                self.members.remove(&(user_id.clone(), org_id.clone()))
            }
            Invalidation::Org { org_id } => {
                self.orgs.remove(org_id);
                self.members.retain(|(_, o), _| o != org_id);
                self.envs
                    .retain(|_, e| e.as_ref().is_none_or(|e| &e.org_id != org_id));
            }
            Invalidation::User { user_id } => self.users.remove(user_id),
            Invalidation::Environment { env_id } => self.envs.remove(env_id),
            Invalidation::Jit { env_id, user_id } => {
                self.jit_grants.remove(&(user_id.clone(), env_id.clone()))
            }
            Invalidation::OrgEnvironments { org_id } => self
                .envs
                .retain(|_, e| e.as_ref().is_none_or(|e| &e.org_id != org_id)),
            Invalidation::ApiKey { .. }
            | Invalidation::Policies { .. }
            | Invalidation::Catalog { .. }
            | Invalidation::Data { .. }
            | Invalidation::Capabilities { .. }
            | Invalidation::Shadow { .. }
            | Invalidation::Nodes => {}
            Invalidation::All => {
                self.sessions.clear();
                self.members.clear();
                self.users.clear();
                self.orgs.clear();
                self.envs.clear();
                self.jit_grants.clear();
            }
        }
    }

    /// The claims of a genuine, unexpired token; the signature is checked once per token.
    pub fn verified_claims(&self, keys: &TokenKeys, token: &str) -> Option<Claims> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = enclave_core::clock::now().timestamp();
        if let Some(claims) = self.tokens.get(&key, Duration::MAX) {
            return (claims.exp > now).then_some(claims);
        }
        let claims = keys.verify(token)?;
        // A signature never goes stale: no generation check.
        self.tokens.put(key, claims.clone());
        Some(claims)
    }

    /// Reads `key` from `table`, or loads it and caches it unless an invalidation intervened.
    async fn read_through<K, V, F>(&self, table: &Table<K, V>, key: K, load: F) -> Result<V>
    where
        K: Hash + Eq,
        V: Clone,
        F: std::future::Future<Output = Result<V>>,
    {
        if let Some(v) = table.get(&key, TTL) {
            return Ok(v);
        }
        let read_at = self.generation.load(Ordering::SeqCst);
        let value = load.await?;
        table.insert(&self.generation, read_at, key, value.clone());
        Ok(value)
    }

    pub async fn session(&self, session_id: &str) -> Result<Option<SessionRecord>> {
        self.read_through(
            &self.sessions,
            session_id.to_string(),
            self.store.session(session_id),
        )
        .await
    }

    pub async fn membership(
        &self,
        user_id: &UserId,
        org_id: &OrgId,
    ) -> Result<Option<AuthMembership>> {
        let key = (user_id.clone(), org_id.clone());
        self.read_through(
            &self.members,
            key,
            self.store.auth_membership(user_id, org_id),
        )
        .await
    }

    /// The member's latest approved just-in-time grant in the environment, live or not.
    pub async fn jit_grant(&self, user_id: &UserId, env_id: &EnvId) -> Result<Option<JitRecord>> {
        let key = (user_id.clone(), env_id.clone());
        self.read_through(
            &self.jit_grants,
            key,
            self.store.approved_jit_grant(user_id, env_id),
        )
        .await
    }

    /// A user's profile. The password hash is never kept in the cache.
    pub async fn user(&self, user_id: &UserId) -> Result<Option<UserRecord>> {
        let load = async {
            let user = self.store.user_by_id(user_id).await?;
            Ok(user.map(|u| UserRecord {
                password_hash: None,
                ..u
            }))
        };
        self.read_through(&self.users, user_id.clone(), load).await
    }

    /// An environment as last written; every write to it (or to its organization's order)
    /// drops the entry.
    pub async fn environment(&self, env_id: &EnvId) -> Result<Option<EnvRecord>> {
        self.read_through(&self.envs, env_id.clone(), self.store.environment(env_id))
            .await
    }

    pub async fn org(&self, org_id: &OrgId) -> Result<Option<OrgRecord>> {
        self.read_through(&self.orgs, org_id.clone(), self.store.org(org_id))
            .await
    }
}

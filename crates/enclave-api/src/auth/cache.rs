//! What every authenticated request needs — is the session live, what is the caller's role in
//! this organization — without a database round trip each time. Entries are dropped the
//! moment the store publishes an invalidation (on PostgreSQL, from any node), so logout,
//! suspension and role changes take effect at once; a short TTL is only a safety net.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use enclave_core::Result;
use enclave_store::{AuthMembership, Invalidation, SessionRecord, Store};

const TTL: Duration = Duration::from_secs(60);
const MAX_ENTRIES: usize = 100_000;

struct Entry<T> {
    value: T,
    at: Instant,
}

type MemberKey = (String, String);

pub struct AuthCache {
    store: Arc<dyn Store>,
    sessions: RwLock<HashMap<String, Entry<Option<SessionRecord>>>>,
    members: RwLock<HashMap<MemberKey, Entry<Option<AuthMembership>>>>,
    /// Bumped by every invalidation. A value read from the database is cached only if no
    /// invalidation happened meanwhile, so a read racing a change never re-caches stale data.
    generation: AtomicU64,
}

impl AuthCache {
    pub fn start(store: Arc<dyn Store>) -> Arc<Self> {
        let cache = Arc::new(AuthCache {
            store: store.clone(),
            sessions: RwLock::default(),
            members: RwLock::default(),
            generation: AtomicU64::new(0),
        });
        let mut rx = store.bus().subscribe();
        let weak = Arc::downgrade(&cache);
        tokio::spawn(async move {
            loop {
                let event = rx.recv().await;
                let Some(cache) = weak.upgrade() else { break };
                match event {
                    Ok(e) => cache.invalidate(&e),
                    // Missed some: forget everything.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        cache.invalidate(&Invalidation::All)
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        cache
    }

    pub fn invalidate(&self, event: &Invalidation) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        match event {
            Invalidation::Session { session_id } => {
                self.sessions.write().unwrap().remove(session_id);
            }
            Invalidation::Member { org_id, user_id } => {
                self.members
                    .write()
                    .unwrap()
                    .remove(&(user_id.clone(), org_id.clone()));
            }
            Invalidation::Org { org_id } => {
                self.members
                    .write()
                    .unwrap()
                    .retain(|(_, o), _| o != org_id);
            }
            Invalidation::All => {
                self.sessions.write().unwrap().clear();
                self.members.write().unwrap().clear();
            }
        }
    }

    pub async fn session(&self, session_id: &str) -> Result<Option<SessionRecord>> {
        if let Some(e) = self.sessions.read().unwrap().get(session_id) {
            if e.at.elapsed() < TTL {
                return Ok(e.value.clone());
            }
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let value = self.store.session(session_id).await?;
        insert(
            &self.sessions,
            &self.generation,
            generation,
            session_id.to_string(),
            value.clone(),
        );
        Ok(value)
    }

    pub async fn membership(&self, user_id: &str, org_id: &str) -> Result<Option<AuthMembership>> {
        let key = (user_id.to_string(), org_id.to_string());
        if let Some(e) = self.members.read().unwrap().get(&key) {
            if e.at.elapsed() < TTL {
                return Ok(e.value.clone());
            }
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let value = self.store.auth_membership(user_id, org_id).await?;
        insert(
            &self.members,
            &self.generation,
            generation,
            key,
            value.clone(),
        );
        Ok(value)
    }
}

fn insert<K: std::hash::Hash + Eq, V>(
    map: &RwLock<HashMap<K, Entry<V>>>,
    current: &AtomicU64,
    read_at: u64,
    key: K,
    value: V,
) {
    let mut map = map.write().unwrap();
    if current.load(Ordering::SeqCst) != read_at {
        return;
    }
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    map.insert(
        key,
        Entry {
            value,
            at: Instant::now(),
        },
    );
}

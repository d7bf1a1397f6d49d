//! Stage 9, the result cache: a read's answer kept by what determines it — the environment,
//! the statement as it runs (after the policy rewrite, so the caller's masks and filters are
//! part of it), its parameters (the caller's and the rewrite's), and the environment's data
//! generation. Any write or DDL in the environment, on any node, moves the generation on
//! (through the store's invalidation path), so an older entry is never found again; moka
//! drops it in its time. Per environment rather than per table: a view's rows change with
//! the tables under it, which the gateway does not track.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use duckdb::arrow::datatypes::SchemaRef;
use duckdb::arrow::record_batch::RecordBatch;
use enclave_core::id::EnvId;
use enclave_store::{Invalidation, Store};
use moka::sync::Cache;
use sha2::{Digest, Sha256};

use crate::engine::Param;

/// How long an entry may answer at most: the backstop for data changed outside the gateway
/// (a PostgreSQL engine's database written by its owner's other programs).
const TIME_TO_LIVE: Duration = Duration::from_secs(600);

/// The key of one answer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Key([u8; 32]);

/// A kept answer: Arrow batches (shared buffers, never copied out of the cache).
pub struct Answer {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub truncated: bool,
    bytes: u64,
}

pub struct ResultCache {
    entries: Option<Cache<Key, Arc<Answer>>>,
    /// The largest answer kept; a larger one is not.
    max_entry_bytes: u64,
    generations: Mutex<HashMap<EnvId, u64>>,
    /// Moves on when everything is stale (a node that may have missed notices).
    epoch: AtomicU64,
    store: Arc<Store>,
}

impl ResultCache {
    /// A cache of at most `capacity_bytes` of results (0: none kept), following the store's
    /// invalidations.
    pub fn start(store: Arc<Store>, capacity_bytes: u64) -> Arc<ResultCache> {
        let entries = (capacity_bytes > 0).then(|| {
            Cache::builder()
                .max_capacity(capacity_bytes)
                .weigher(|_: &Key, a: &Arc<Answer>| a.bytes.min(u32::MAX as u64) as u32)
                .time_to_live(TIME_TO_LIVE)
                .build()
        });
        let cache = Arc::new(ResultCache {
            entries,
            max_entry_bytes: (capacity_bytes / 16).min(64 << 20),
            generations: Mutex::default(),
            epoch: AtomicU64::new(0),
            store: store.clone(),
        });
        let weak = Arc::downgrade(&cache);
        store.bus().on_publish(move |event| {
            let Some(cache) = weak.upgrade() else { return };
            match event {
                Invalidation::Data { env_id }
                | Invalidation::Catalog { env_id }
                | Invalidation::Environment { env_id }
                | Invalidation::Policies { env_id } => cache.stale(env_id),
                Invalidation::All => {
                    cache.epoch.fetch_add(1, Ordering::SeqCst);
                }
                _ => {}
            }
        });
        cache
    }

    pub fn enabled(&self) -> bool {
        self.entries.is_some()
    }

    fn stale(&self, env_id: &EnvId) {
        *self
            .generations
            .lock()
            .unwrap()
            .entry(env_id.clone())
            .or_default() += 1;
    }

    /// The key of `sql` with `params` in the environment's current data generation.
    pub fn key(&self, env_id: &EnvId, sql: &str, params: &[Param]) -> Key {
        let generation = self
            .generations
            .lock()
            .unwrap()
            .get(env_id)
            .copied()
            .unwrap_or(0);
        let mut h = Sha256::new();
        h.update(self.epoch.load(Ordering::SeqCst).to_le_bytes());
        h.update(generation.to_le_bytes());
        h.update((env_id.len() as u64).to_le_bytes());
        h.update(env_id.as_bytes());
        h.update((sql.len() as u64).to_le_bytes());
        h.update(sql.as_bytes());
        for p in params {
            let (tag, number, bytes): (u8, [u8; 8], &[u8]) = match p {
                Param::Null => (0, [0; 8], &[]),
                Param::Bool(b) => (1, [*b as u8; 8], &[]),
                Param::Int(i) => (2, i.to_le_bytes(), &[]),
                Param::Float(f) => (3, f.to_bits().to_le_bytes(), &[]),
                Param::Text(s) => (4, (s.len() as u64).to_le_bytes(), s.as_bytes()),
                Param::Bytes(b) => (5, (b.len() as u64).to_le_bytes(), b),
            };
            h.update([tag]);
            h.update(number);
            h.update(bytes);
        }
        Key(h.finalize().into())
    }

    pub fn get(&self, key: &Key) -> Option<Arc<Answer>> {
        self.entries.as_ref()?.get(key)
    }

    /// Collects an answer as it streams, to keep it under `key` if it ends well.
    pub fn capture(self: &Arc<Self>, key: Key) -> Capture {
        Capture {
            cache: self.clone(),
            key,
            batches: Vec::new(),
            bytes: 0,
            overflowed: false,
        }
    }

    /// Rows of the environment changed here: every node's entries for it go stale.
    pub async fn data_changed(&self, env_id: &EnvId) {
        let event = Invalidation::Data {
            env_id: env_id.clone(),
        };
        if let Err(e) = self.store.announce(vec![event]).await {
            // Other nodes keep their entries until the time-to-live; this node's go now.
            tracing::warn!(env_id = %env_id, error = %e.message, "cannot announce a data change");
            self.stale(env_id);
        }
    }
}

/// An answer on its way to the client, kept a batch at a time (shared, not copied).
pub struct Capture {
    cache: Arc<ResultCache>,
    key: Key,
    batches: Vec<RecordBatch>,
    bytes: u64,
    overflowed: bool,
}

impl Capture {
    pub(crate) fn push(&mut self, batch: &RecordBatch) {
        if self.overflowed {
            return;
        }
        self.bytes += batch.get_array_memory_size() as u64;
        if self.bytes > self.cache.max_entry_bytes {
            self.overflowed = true;
            self.batches = Vec::new();
            return;
        }
        self.batches.push(batch.clone());
    }

    /// The answer ended without error: kept, unless it was too large.
    pub(crate) fn keep(self, schema: SchemaRef, truncated: bool) {
        if self.overflowed {
            return;
        }
        if let Some(entries) = &self.cache.entries {
            entries.insert(
                self.key,
                Arc::new(Answer {
                    schema,
                    batches: self.batches,
                    truncated,
                    bytes: self.bytes.max(64),
                }),
            );
        }
    }
}

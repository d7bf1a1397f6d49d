//! Stage 5's table statistics: each environment's row counts as its engine's catalog keeps
//! them (DuckDB's `duckdb_tables()`, PostgreSQL's `pg_class`), read when an estimate first
//! needs them and again after the environment's data changes (on any node) — never a count
//! of a table's rows per statement.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use enclave_core::id::EnvId;
use enclave_core::Result;
use enclave_store::{EnvRecord, Invalidation, Store};

use crate::engine::Engines;
use crate::results::json_rows;

/// Rows per table, by `table` and `schema.table`.
pub type RowCounts = HashMap<String, u64>;

/// Once stale, statistics are read again at most this often (a busy writer would otherwise
/// cost a catalog read per estimate).
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Writes another node made outside the cached-results path announce nothing here: past this
/// age statistics are read again anyway.
const MAX_AGE: Duration = Duration::from_secs(60);

struct Entry {
    counts: Arc<RowCounts>,
    read_at: Instant,
    stale: bool,
}

pub struct Statistics {
    envs: RwLock<HashMap<EnvId, Entry>>,
}

impl Statistics {
    pub fn start(store: &Store) -> Arc<Statistics> {
        let stats = Arc::new(Statistics {
            envs: RwLock::default(),
        });
        let weak = Arc::downgrade(&stats);
        store.bus().on_publish(move |event| {
            let Some(stats) = weak.upgrade() else { return };
            match event {
                Invalidation::Data { env_id } | Invalidation::Catalog { env_id } => {
                    stats.changed(env_id)
                }
                Invalidation::Environment { env_id } => {
                    stats.envs.write().unwrap().remove(env_id);
                }
                Invalidation::All => stats.envs.write().unwrap().clear(),
                _ => {}
            }
        });
        stats
    }

    /// The environment's rows changed: its statistics are read again when next needed.
    pub fn changed(&self, env_id: &EnvId) {
        if let Some(entry) = self.envs.write().unwrap().get_mut(env_id) {
            entry.stale = true;
        }
    }

    /// The environment's row counts, read from its engine when missing or stale.
    pub async fn row_counts(&self, engines: &Engines, env: &EnvRecord) -> Result<Arc<RowCounts>> {
        if let Some(entry) = self.envs.read().unwrap().get(&env.id) {
            let age = entry.read_at.elapsed();
            if (!entry.stale && age < MAX_AGE) || age < MIN_INTERVAL {
                return Ok(entry.counts.clone());
            }
        }
        let engine = engines.of(env);
        let mut conn = engines.connect(env).await?;
        let mut execution = conn
            .execute(engine.statistics_query(), vec![], u64::MAX)
            .await?;
        let mut counts = RowCounts::new();
        while let Some(batch) = execution.batches.recv().await {
            for row in json_rows(&batch?) {
                let text = |i: usize| row[i].as_str().unwrap_or_default().to_string();
                let rows = row[2]
                    .as_u64()
                    .or_else(|| row[2].as_str().and_then(|s| s.parse().ok()))
                    .unwrap_or(0);
                let (schema, table) = (text(0), text(1));
                // An unqualified name is the table of the default schema when two share it.
                let bare = counts.entry(table.clone()).or_insert(0);
                if matches!(schema.as_str(), "main" | "public") || *bare == 0 {
                    *bare = rows;
                }
                counts.insert(format!("{schema}.{table}"), rows);
            }
        }
        let counts = Arc::new(counts);
        self.envs.write().unwrap().insert(
            env.id.clone(),
            Entry {
                counts: counts.clone(),
                read_at: Instant::now(),
                stale: false,
            },
        );
        Ok(counts)
    }
}

//! Stages 2, 3 and 8 remembered (the gateway keeps one per node): a statement text's parse, translation and classification, per
//! engine dialect, so that a repeated statement pays a hash lookup. The result depends on the
//! text and the dialect alone (the caller's policies apply afterwards, to a copy), and only
//! what parsed is kept. Bounded by an estimate of the syntax trees' memory, per node.

use std::sync::Arc;

use crate::query::{Analyzed, Dialect};
use moka::sync::Cache;

/// What the cache may hold, in estimated bytes.
const CAPACITY_BYTES: u64 = 32 << 20;

/// A syntax tree takes some multiple of its text's length; this errs on the large side.
#[allow(clippy::borrowed_box)] // moka's weigher is handed the key as stored.
fn weight(sql: &Box<str>, _: &Arc<Vec<Analyzed>>) -> u32 {
    (sql.len().saturating_mul(16) + 1024).min(u32::MAX as usize) as u32
}

pub struct Translations {
    duckdb: Cache<Box<str>, Arc<Vec<Analyzed>>>,
    postgres: Cache<Box<str>, Arc<Vec<Analyzed>>>,
}

impl Default for Translations {
    fn default() -> Self {
        let cache = || {
            Cache::builder()
                .max_capacity(CAPACITY_BYTES / 2)
                .weigher(weight)
                .build()
        };
        Translations {
            duckdb: cache(),
            postgres: cache(),
        }
    }
}

impl Translations {
    fn of(&self, dialect: Dialect) -> &Cache<Box<str>, Arc<Vec<Analyzed>>> {
        match dialect {
            Dialect::DuckDb => &self.duckdb,
            Dialect::Postgres => &self.postgres,
        }
    }

    pub fn get(&self, dialect: Dialect, sql: &str) -> Option<Arc<Vec<Analyzed>>> {
        self.of(dialect).get(sql)
    }

    pub fn insert(&self, dialect: Dialect, sql: &str, statements: Arc<Vec<Analyzed>>) {
        self.of(dialect).insert(sql.into(), statements);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_is_kept_per_dialect() {
        let cache = Translations::default();
        let sql = "SELECT IFF(a, 1, 2) FROM t";
        let duck = Arc::new(crate::query::parse(sql, Dialect::DuckDb).unwrap());
        cache.insert(Dialect::DuckDb, sql, duck);
        let hit = cache.get(Dialect::DuckDb, sql).expect("kept");
        assert_eq!(hit[0].sql, "SELECT CASE WHEN a THEN 1 ELSE 2 END FROM t");
        assert!(cache.get(Dialect::Postgres, sql).is_none());
        assert!(cache.get(Dialect::DuckDb, "SELECT 1").is_none());
    }
}

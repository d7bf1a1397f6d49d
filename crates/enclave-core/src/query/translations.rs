//! Stages 2, 3 and 8 remembered (the gateway keeps one per node): a statement text's parse,
//! translation and classification, per engine dialect, so that a repeated statement pays a
//! hash lookup. The result depends on the text and the dialect alone (the caller's policies
//! apply afterwards, to a copy), and only what parsed is kept. Texts that differ only in their
//! literals share a template once two of them have confirmed it (`shapes.rs`), so a statement
//! repeated with new values skips the parser too. Bounded by an estimate of the syntax trees'
//! memory, per node.

use std::sync::Arc;

use crate::query::shapes::{shape_of, Template};
use crate::query::{Analyzed, Dialect};
use moka::sync::Cache;

/// What the cache may hold, in estimated bytes.
const CAPACITY_BYTES: u64 = 32 << 20;

/// A syntax tree takes some multiple of its text's length; this errs on the large side.
fn weight(sql: &str) -> u32 {
    (sql.len().saturating_mul(16) + 1024).min(u32::MAX as usize) as u32
}

/// What a shape has taught so far.
#[derive(Clone)]
enum Learned {
    /// One text of it parsed; the next one decides.
    Candidate(Arc<Template>),
    /// Two texts agreed: later ones are built from the template.
    Confirmed(Arc<Template>),
    /// Its texts parse to trees that are not the same but for their values.
    Refuted,
}

/// One dialect's texts and shapes.
struct Kept {
    texts: Cache<Box<str>, Arc<Vec<Analyzed>>>,
    shapes: Cache<Box<str>, Learned>,
}

impl Kept {
    fn new() -> Kept {
        #[allow(clippy::borrowed_box)] // moka's weigher is handed the key as stored.
        fn by_key<V>(key: &Box<str>, _: &V) -> u32 {
            weight(key)
        }
        Kept {
            texts: Cache::builder()
                .max_capacity(CAPACITY_BYTES / 4)
                .weigher(by_key)
                .build(),
            shapes: Cache::builder()
                .max_capacity(CAPACITY_BYTES / 4)
                .weigher(by_key)
                .build(),
        }
    }
}

pub struct Translations {
    duckdb: Kept,
    postgres: Kept,
}

impl Default for Translations {
    fn default() -> Self {
        Translations {
            duckdb: Kept::new(),
            postgres: Kept::new(),
        }
    }
}

impl Translations {
    fn of(&self, dialect: Dialect) -> &Kept {
        match dialect {
            Dialect::DuckDb => &self.duckdb,
            Dialect::Postgres => &self.postgres,
        }
    }

    /// The statements of a text seen before, or of a text whose shape has a confirmed
    /// template.
    pub fn get(&self, dialect: Dialect, sql: &str) -> Option<Vec<Analyzed>> {
        let kept = self.of(dialect);
        if let Some(statements) = kept.texts.get(sql) {
            return Some(statements.as_ref().clone());
        }
        let shape = shape_of(sql)?;
        match kept.shapes.get(shape.key.as_str())? {
            Learned::Confirmed(template) => template.instantiate(&shape).map(|s| vec![s]),
            Learned::Candidate(_) | Learned::Refuted => None,
        }
    }

    /// Keeps what a text parsed to, and learns from its shape.
    pub fn insert(&self, dialect: Dialect, sql: &str, statements: Arc<Vec<Analyzed>>) {
        let kept = self.of(dialect);
        if let Some(shape) = shape_of(sql) {
            let learned = match kept.shapes.get(shape.key.as_str()) {
                None => Template::candidate(&shape, &statements)
                    .map_or(Learned::Refuted, |t| Learned::Candidate(Arc::new(t))),
                Some(Learned::Candidate(template)) => {
                    match template.confirmed_by(&shape, &statements) {
                        true => Learned::Confirmed(template),
                        false => Learned::Refuted,
                    }
                }
                Some(settled) => settled,
            };
            kept.shapes.insert(shape.key.into(), learned);
        }
        kept.texts.insert(sql.into(), statements);
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

    fn postgres(sql: &str) -> Arc<Vec<Analyzed>> {
        Arc::new(crate::query::parse(sql, Dialect::Postgres).unwrap())
    }

    /// Parses each text for PostgreSQL and keeps what it parsed to, as the gateway does.
    fn teach(cache: &Translations, texts: &[String]) {
        for sql in texts {
            cache.insert(Dialect::Postgres, sql, postgres(sql));
        }
    }

    #[test]
    fn a_shape_confirmed_by_two_texts_answers_the_third() {
        let cache = Translations::default();
        let text = |id: u32| format!("SELECT abalance FROM pgbench_accounts WHERE aid = {id}");
        teach(&cache, &[text(1)]);
        assert!(
            cache.get(Dialect::Postgres, &text(3)).is_none(),
            "one text proves nothing"
        );
        teach(&cache, &[text(2)]);
        let hit = cache
            .get(Dialect::Postgres, &text(3))
            .expect("built from the template");
        assert_eq!(hit[0].sql, postgres(&text(3))[0].sql);
        assert_eq!(
            hit[0].sql,
            "SELECT abalance FROM pgbench_accounts WHERE aid = 3"
        );
        // Another dialect learns on its own.
        assert!(cache.get(Dialect::DuckDb, &text(3)).is_none());
    }

    #[test]
    fn a_refuted_shape_is_parsed_each_time() {
        let cache = Translations::default();
        let text = |n: u32| format!("SELECT coalesce(a, {n}) FROM t");
        teach(&cache, &[text(1), text(2)]);
        assert!(cache.get(Dialect::Postgres, &text(3)).is_none());
    }
}

//! Times the gateway's parse and translation of Snowflake-style statements (bench/translate.sh):
//! every statement of a corpus file (`{"sql": …}` a line), uncached — the whole of stages 2,
//! 3 and 8, as a statement seen for the first time pays — and cached — the lookup by text and
//! the copy of the parsed statements a repeat pays. Prints one line per measure:
//! `<target> <uncached|cached> <microseconds per statement>`.
//!
//!   cargo run --release -p enclave-core --example translate_corpus -- CORPUS [ROUNDS]

use std::sync::Arc;
use std::time::Instant;

use enclave_core::query::{parse, Dialect, Translations};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "crates/enclave/tests/corpus/snowflake.jsonl".into());
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(200);
    let corpus: Vec<String> = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let case: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            case["sql"].as_str().expect("sql").to_string()
        })
        .collect();
    for (name, dialect) in [("duckdb", Dialect::DuckDb), ("postgres", Dialect::Postgres)] {
        // Every statement must translate: a refusal would time an error path.
        for sql in &corpus {
            parse(sql, dialect).unwrap_or_else(|e| panic!("{sql}: {}", e.message));
        }
        let started = Instant::now();
        let mut kept = 0usize;
        for _ in 0..rounds {
            for sql in &corpus {
                kept += parse(sql, dialect).map(|s| s.len()).unwrap_or(0);
            }
        }
        let uncached = started.elapsed();
        let cache = Translations::default();
        for sql in &corpus {
            cache.insert(dialect, sql, Arc::new(parse(sql, dialect).unwrap()));
        }
        let started = Instant::now();
        for _ in 0..rounds {
            for sql in &corpus {
                let hit = cache.get(dialect, sql).expect("kept");
                kept += hit.len();
            }
        }
        let cached = started.elapsed();
        let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / (rounds * corpus.len()) as f64;
        println!("{name} uncached {:.2}", per(uncached));
        println!("{name} cached {:.2}", per(cached));
        assert!(kept > 0);
    }
}

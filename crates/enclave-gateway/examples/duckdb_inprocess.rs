//! The engine's own time for the gateway benchmark's queries (`bench/gateway.sh`): the same
//! table in a DuckDB database file, each query prepared, run and read to the end in this
//! process, `ITERATIONS` times. Prints `name|mean ms|p50 ms` per query.
//!
//!     duckdb_inprocess ROWS ITERATIONS DIR

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let rows: u64 = args.get(1).map_or(Ok(1_000_000), |a| a.parse())?;
    let iterations: usize = args.get(2).map_or(Ok(200), |a| a.parse())?;
    let dir = std::path::PathBuf::from(args.get(3).cloned().unwrap_or_else(|| ".".into()));
    let path = dir.join("inprocess.duckdb");
    let _ = std::fs::remove_file(&path);
    let conn = duckdb::Connection::open(&path)?;
    conn.execute_batch(&enclave_table_sql(rows))?;
    for (name, sql) in QUERIES {
        let mut times = Vec::with_capacity(iterations);
        for i in 0..iterations + iterations / 10 {
            let started = Instant::now();
            let mut statement = conn.prepare(sql)?;
            let mut result = statement.query([])?;
            let mut n = 0;
            while result.next()?.is_some() {
                n += 1;
            }
            assert!(n > 0);
            // The first tenth warms the caches, as the served runs are warmed.
            if i >= iterations / 10 {
                times.push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        times.sort_by(f64::total_cmp);
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        println!("{name}|{mean:.3}|{:.3}", times[times.len() / 2]);
    }
    drop(conn);
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// The benchmark's table (the script creates the same one through the gateway).
fn enclave_table_sql(rows: u64) -> String {
    format!(
        "CREATE TABLE t AS SELECT range AS id, range % 100 AS g, (range * 7 % 1000) / 10.0 AS v FROM range({rows})"
    )
}

const QUERIES: [(&str, &str); 2] = [
    ("point", "SELECT id, g, v FROM t WHERE id = 4242"),
    (
        "aggregate",
        "SELECT g, sum(v) AS total, count(*) AS n FROM t GROUP BY g ORDER BY g",
    ),
];

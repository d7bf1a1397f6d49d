//! Bulk load into an environment's PostgreSQL database: the spooled file (CSV or Parquet) is
//! read by the in-memory DuckDB of [`super::duckdb_load`], written out as headerless CSV with
//! the table's columns, and streamed to `COPY … FROM STDIN (FORMAT csv)` — in a transaction
//! with the `CREATE TABLE` when the load creates the table.

use std::time::Instant;

use enclave_core::{Error, Result};
use sqlx::pool::PoolConnection;
use sqlx::{Executor, Postgres};
use tokio::io::AsyncReadExt;

use super::duckdb_load::{export_csv, ident, interrupted, Column};
use super::postgres::pg_error;
use crate::load::{LoadRequest, Loaded};

pub(super) async fn load(
    conn: &mut PoolConnection<Postgres>,
    request: &LoadRequest,
    in_transaction: bool,
    deadline: Instant,
) -> Result<Loaded> {
    let (table, target) = table_columns(conn, &request.table).await?;
    let empty = tokio::fs::metadata(&request.path)
        .await
        .map_or(true, |m| m.len() == 0);
    match (empty, target.is_empty()) {
        (true, false) => {
            return Ok(Loaded {
                rows: 0,
                created: false,
            })
        }
        (true, true) if request.create => {
            return Err(Error::validation(
                "body",
                "not_empty",
                "an empty file has no columns to create the table from",
            ))
        }
        _ => {}
    }
    let csv = request.path.with_extension("pgcsv");
    let _remove = RemoveOnDrop(csv.clone());
    let filled = {
        let (request, target, csv) = (request.clone(), target.clone(), csv.clone());
        tokio::task::spawn_blocking(move || export_csv(&request, &target, &csv))
            .await
            .map_err(|_| Error::internal())??
    };
    let created = target.is_empty();
    let table = if created {
        request.table.clone()
    } else {
        table
    };

    if !in_transaction {
        (&mut **conn).execute("BEGIN").await.map_err(pg_error)?;
    }
    let result = copy(conn, &table, &filled, created, &csv, deadline).await;
    if !in_transaction {
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        (&mut **conn).execute(end).await.map_err(pg_error)?;
    }
    result.map(|rows| Loaded { rows, created })
}

async fn copy(
    conn: &mut PoolConnection<Postgres>,
    table: &str,
    columns: &[Column],
    create: bool,
    csv: &std::path::Path,
    deadline: Instant,
) -> Result<u64> {
    if create {
        let defs: Vec<String> = columns
            .iter()
            .map(|(name, ty)| format!("{} {}", ident(name), pg_type(ty)))
            .collect();
        let ddl = format!("CREATE TABLE {} ({})", ident(table), defs.join(", "));
        (&mut **conn)
            .execute(ddl.as_str())
            .await
            .map_err(pg_error)?;
    }
    let names: Vec<String> = columns.iter().map(|(n, _)| ident(n)).collect();
    let statement = format!(
        "COPY {} ({}) FROM STDIN (FORMAT csv)",
        ident(table),
        names.join(", ")
    );
    let mut file = tokio::fs::File::open(csv).await.map_err(io_error)?;
    let mut copy = conn.copy_in_raw(&statement).await.map_err(pg_error)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        if Instant::now() >= deadline {
            let _ = copy.abort("the load's time is up").await;
            return Err(interrupted());
        }
        let n = file.read(&mut buf).await.map_err(io_error)?;
        if n == 0 {
            break;
        }
        copy.send(&buf[..n]).await.map_err(pg_error)?;
    }
    copy.finish().await.map_err(pg_error)
}

/// The table's name as the catalog spells it and its columns (none: no such table).
async fn table_columns(
    conn: &mut PoolConnection<Postgres>,
    table: &str,
) -> Result<(String, Vec<Column>)> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text \
         FROM information_schema.columns \
         WHERE table_schema = current_schema() AND lower(table_name) = lower($1) \
         ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(&mut **conn)
    .await
    .map_err(pg_error)?;
    let name = rows.first().map_or(table.to_string(), |r| r.0.clone());
    Ok((name, rows.into_iter().map(|(_, c, t)| (c, t)).collect()))
}

/// The PostgreSQL type a new table's column gets for the type DuckDB read the file's as.
pub(super) fn pg_type(duckdb_type: &str) -> String {
    let upper = duckdb_type.to_ascii_uppercase();
    match upper.as_str() {
        "BOOLEAN" => "boolean".into(),
        "TINYINT" | "SMALLINT" | "UTINYINT" => "smallint".into(),
        "INTEGER" | "USMALLINT" => "integer".into(),
        "BIGINT" | "UINTEGER" => "bigint".into(),
        "FLOAT" => "real".into(),
        "DOUBLE" => "double precision".into(),
        "DATE" => "date".into(),
        "TIME" => "time".into(),
        "TIMESTAMP" | "TIMESTAMP_NS" | "TIMESTAMP_MS" | "TIMESTAMP_S" => "timestamp".into(),
        "TIMESTAMP WITH TIME ZONE" => "timestamptz".into(),
        "UUID" => "uuid".into(),
        "BLOB" => "bytea".into(),
        "UBIGINT" | "HUGEINT" | "UHUGEINT" => "numeric".into(),
        _ if upper.starts_with("DECIMAL") => upper.replace("DECIMAL", "numeric"),
        _ => "text".into(),
    }
}

fn io_error(e: std::io::Error) -> Error {
    tracing::error!(error = %e, "cannot read a load's spool file");
    Error::internal()
}

struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

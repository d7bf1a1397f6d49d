//! Moving an environment's data from the embedded engine to the managed PostgreSQL engine:
//! every table, its columns' types mapped, its rows streamed from DuckDB into PostgreSQL's
//! `COPY … FROM STDIN`, and each table's row count compared on both sides — all in one
//! PostgreSQL transaction, so a move that fails leaves nothing behind. Views follow the
//! tables with DuckDB's own definition of them.

use std::collections::BTreeSet;

use enclave_core::query::with_sqlstate;
use enclave_core::{Error, Result};
use serde::Serialize;
use sqlx::{Connection, Executor, PgConnection};

use super::duckdb_load::ident;
use super::postgres::pg_error;
use super::postgres_load::pg_type;
use super::EngineConnection;
use crate::results::{json_rows, Cell, ColumnReader};

/// A column as it is moved.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ColumnMove {
    pub name: String,
    /// Its type in DuckDB.
    pub from_type: String,
    /// Its type in PostgreSQL.
    pub to_type: String,
}

/// A table as it is moved.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TableMove {
    /// DuckDB's `main` becomes PostgreSQL's `public`; other schemas keep their names.
    pub schema: String,
    pub name: String,
    pub columns: Vec<ColumnMove>,
    /// Rows in the table (counted before the copy, and compared after it).
    pub rows: u64,
}

/// A view, created again after the tables from DuckDB's definition of it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ViewMove {
    pub schema: String,
    pub name: String,
    pub definition: String,
}

/// What a move copies.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MovePlan {
    pub tables: Vec<TableMove>,
    pub views: Vec<ViewMove>,
}

impl MovePlan {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

/// The schema a DuckDB schema's relations go to.
fn target_schema(schema: &str) -> &str {
    if schema == "main" {
        "public"
    } else {
        schema
    }
}

/// Reads what the move would copy from the environment's embedded database: its tables with
/// their columns and row counts, and its views.
pub async fn plan(source: &mut dyn EngineConnection, catalog_query: &str) -> Result<MovePlan> {
    let mut tables: Vec<TableMove> = Vec::new();
    let mut views: Vec<ViewMove> = Vec::new();
    let mut execution = source.execute(catalog_query, vec![], u64::MAX).await?;
    while let Some(batch) = execution.batches.recv().await {
        for row in json_rows(&batch?) {
            let text = |i: usize| row[i].as_str().unwrap_or_default().to_string();
            let (schema, name, kind) = (text(0), text(1), text(2));
            if kind.eq_ignore_ascii_case("VIEW") {
                let schema = target_schema(&schema);
                if !views.iter().any(|v| v.schema == schema && v.name == name) {
                    views.push(ViewMove {
                        schema: schema.to_string(),
                        name,
                        definition: text(5),
                    });
                }
                continue;
            }
            let column = ColumnMove {
                name: text(3),
                to_type: pg_type(&text(4)),
                from_type: text(4),
            };
            match tables.last_mut() {
                Some(t) if t.schema == schema && t.name == name => t.columns.push(column),
                _ => tables.push(TableMove {
                    schema,
                    name,
                    columns: vec![column],
                    rows: 0,
                }),
            }
        }
    }
    for table in &mut tables {
        let sql = format!(
            "SELECT count(*) FROM {}.{}",
            ident(&table.schema),
            ident(&table.name)
        );
        let mut counted = source.execute(&sql, vec![], 1).await?;
        if let Some(batch) = counted.batches.recv().await {
            table.rows = json_rows(&batch?)
                .first()
                .and_then(|r| r[0].as_u64())
                .unwrap_or(0);
        }
        table.schema = target_schema(&table.schema).to_string();
    }
    Ok(MovePlan { tables, views })
}

/// Copies every table of `plan` from `source` into `target` (an empty database) in one
/// transaction, checking each table's row count on arrival; then creates the views.
pub async fn copy(
    source: &mut dyn EngineConnection,
    target: &mut PgConnection,
    plan: &MovePlan,
) -> Result<()> {
    let mut tx = target.begin().await.map_err(pg_error)?;
    let schemas: BTreeSet<&str> = plan
        .tables
        .iter()
        .map(|t| t.schema.as_str())
        .chain(plan.views.iter().map(|v| v.schema.as_str()))
        .filter(|s| *s != "public")
        .collect();
    for schema in schemas {
        tx.execute(format!("CREATE SCHEMA IF NOT EXISTS {}", ident(schema)).as_str())
            .await
            .map_err(pg_error)?;
    }
    for table in &plan.tables {
        copy_table(source, &mut tx, table).await?;
    }
    for view in &plan.views {
        let definition = view.definition.trim().trim_end_matches(';');
        tx.execute(format!("SET search_path TO {}", ident(&view.schema)).as_str())
            .await
            .map_err(pg_error)?;
        if let Err(e) = tx.execute(definition).await {
            return Err(Error::conflict(
                "view_not_portable",
                format!(
                    "view {}.{} cannot be created in PostgreSQL from its DuckDB definition ({}): drop it, move, then create it again",
                    view.schema,
                    view.name,
                    pg_error(e).message
                ),
            ));
        }
    }
    tx.execute("RESET search_path").await.map_err(pg_error)?;
    tx.commit().await.map_err(pg_error)
}

async fn copy_table(
    source: &mut dyn EngineConnection,
    tx: &mut PgConnection,
    table: &TableMove,
) -> Result<()> {
    // The source's name: `public` was DuckDB's `main`.
    let from_schema = if table.schema == "public" {
        "main"
    } else {
        &table.schema
    };
    let target = format!("{}.{}", ident(&table.schema), ident(&table.name));
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| format!("{} {}", ident(&c.name), c.to_type))
        .collect();
    tx.execute(format!("CREATE TABLE {target} ({})", columns.join(", ")).as_str())
        .await
        .map_err(pg_error)?;
    let names: Vec<String> = table.columns.iter().map(|c| ident(&c.name)).collect();
    let select = format!(
        "SELECT {} FROM {}.{}",
        names.join(", "),
        ident(from_schema),
        ident(&table.name)
    );
    let mut rows = source.execute(&select, vec![], u64::MAX).await?;
    let mut copy = tx
        .copy_in_raw(&format!(
            "COPY {target} ({}) FROM STDIN (FORMAT csv)",
            names.join(", ")
        ))
        .await
        .map_err(pg_error)?;
    let mut sent = 0u64;
    let mut buf = Vec::with_capacity(256 * 1024);
    while let Some(batch) = rows.batches.recv().await {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                let _ = copy.abort("the source failed").await;
                return Err(e);
            }
        };
        write_rows(&mut buf, &batch);
        sent += batch.num_rows() as u64;
        if buf.len() >= 256 * 1024 {
            copy.send(std::mem::take(&mut buf))
                .await
                .map_err(pg_error)?;
        }
    }
    if !buf.is_empty() {
        copy.send(buf).await.map_err(pg_error)?;
    }
    let copied = copy.finish().await.map_err(pg_error)?;
    let counted: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {target}"))
        .fetch_one(&mut *tx)
        .await
        .map_err(pg_error)?;
    if sent != table.rows || copied != table.rows || counted as u64 != table.rows {
        tracing::error!(table = %target, expected = table.rows, sent, copied, counted,
            "a moved table's row count differs");
        return Err(with_sqlstate(Error::internal(), "XX001"));
    }
    Ok(())
}

/// A batch's rows as CSV lines.
fn write_rows(buf: &mut Vec<u8>, batch: &duckdb::arrow::record_batch::RecordBatch) {
    let readers: Vec<ColumnReader<'_>> = batch.columns().iter().map(ColumnReader::new).collect();
    for row in 0..batch.num_rows() {
        for (i, r) in readers.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            csv_value(buf, r.cell(row));
        }
        buf.push(b'\n');
    }
}

/// One value in PostgreSQL's CSV form: NULL unquoted and empty, everything else quoted, in
/// the text form PostgreSQL reads for the column's type.
fn csv_value(out: &mut Vec<u8>, cell: Cell<'_>) {
    let text: std::borrow::Cow<'_, str> = match cell {
        Cell::Null => return,
        Cell::Bool(b) => (if b { "t" } else { "f" }).into(),
        Cell::I16(v) => v.to_string().into(),
        Cell::I32(v) => v.to_string().into(),
        Cell::I64(v) => v.to_string().into(),
        Cell::F32(v) => float(v as f64).into(),
        Cell::F64(v) => float(v).into(),
        Cell::Numeric(d) => d.to_string().into(),
        Cell::Text(s) => s.into(),
        Cell::Owned(s) => s.into(),
        Cell::Bytes(b) => format!("\\x{}", hex::encode(b)).into(),
        Cell::Date(d) => d.format("%Y-%m-%d").to_string().into(),
        Cell::Timestamp(t) => t.format("%Y-%m-%d %H:%M:%S%.f").to_string().into(),
        Cell::TimestampTz(t) => t.format("%Y-%m-%d %H:%M:%S%.f+00").to_string().into(),
        Cell::Time(t) => t.format("%H:%M:%S%.f").to_string().into(),
    };
    out.push(b'"');
    for b in text.bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        (if v > 0.0 { "Infinity" } else { "-Infinity" }).into()
    } else {
        format!("{v:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(cell: Cell<'_>) -> String {
        let mut out = Vec::new();
        csv_value(&mut out, cell);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn values_in_postgres_csv() {
        assert_eq!(csv(Cell::Null), "");
        assert_eq!(csv(Cell::Text("")), "\"\"");
        assert_eq!(
            csv(Cell::Text("say \"hi\", twice\n")),
            "\"say \"\"hi\"\", twice\n\""
        );
        assert_eq!(csv(Cell::Bool(true)), "\"t\"");
        assert_eq!(csv(Cell::F64(f64::NEG_INFINITY)), "\"-Infinity\"");
        assert_eq!(csv(Cell::F64(0.1)), "\"0.1\"");
        assert_eq!(csv(Cell::Bytes(&[0, 255])), "\"\\x00ff\"");
        let t = chrono::NaiveDate::from_ymd_opt(2026, 12, 4)
            .unwrap()
            .and_hms_micro_opt(1, 2, 3, 500)
            .unwrap();
        assert_eq!(csv(Cell::Timestamp(t)), "\"2026-12-04 01:02:03.000500\"");
        assert_eq!(
            csv(Cell::TimestampTz(t.and_utc())),
            "\"2026-12-04 01:02:03.000500+00\""
        );
    }
}

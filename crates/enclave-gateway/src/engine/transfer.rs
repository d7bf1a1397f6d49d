//! Copying an environment's data into another engine's empty database: every table, its
//! columns' types mapped, its rows streamed batch by batch, and each table's row count
//! compared on both sides — all in one transaction of the target, so a copy that fails
//! leaves nothing behind. Views follow the tables with the source's own definition of them.
//!
//! Two callers: moving an embedded environment to the managed PostgreSQL engine, and a clone
//! that copies its source's data (DuckDB into DuckDB, DuckDB or PostgreSQL into the managed
//! engine). The source is read inside one transaction of its own, so the copy is one
//! snapshot of it even while its sessions keep writing.

use std::collections::BTreeSet;

use ::duckdb::arrow::record_batch::RecordBatch;
use enclave_core::environment::EngineKind;
use enclave_core::query::with_sqlstate;
use enclave_core::{Error, Result};
use serde::Serialize;
use sqlx::{Executor, PgConnection};
use tokio::sync::mpsc;

use super::duckdb_load::ident;
use super::postgres::pg_error;
use super::postgres_load::pg_type;
use super::EngineConnection;
use crate::results::{json_rows, Cell, ColumnReader};

/// A column as it is copied.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ColumnMove {
    pub name: String,
    /// Its type in the source.
    pub from_type: String,
    /// Its type in the target.
    pub to_type: String,
}

/// A table as it is copied.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TableMove {
    /// Its schema in the target: DuckDB's `main` becomes PostgreSQL's `public`; other
    /// schemas keep their names.
    pub schema: String,
    pub name: String,
    pub columns: Vec<ColumnMove>,
    /// Rows in the table (counted before the copy, and compared after it).
    pub rows: u64,
    /// Its schema in the source.
    #[serde(skip)]
    pub source_schema: String,
}

/// A view, created again after the tables from the source's definition of it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ViewMove {
    pub schema: String,
    pub name: String,
    pub definition: String,
    /// The schema the definition's unqualified names resolve in.
    #[serde(skip)]
    pub resolve_in: String,
}

/// What a copy copies.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MovePlan {
    pub tables: Vec<TableMove>,
    pub views: Vec<ViewMove>,
}

impl TableMove {
    /// `schema.name`, quoted, in the target.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", ident(&self.schema), ident(&self.name))
    }

    /// The statement creating the table in the target: its columns with their target types.
    pub fn create_sql(&self) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("{} {}", ident(&c.name), c.to_type))
            .collect();
        format!(
            "CREATE TABLE {} ({})",
            self.qualified_name(),
            columns.join(", ")
        )
    }
}

impl MovePlan {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }

    /// What an audit entry records of a copy: each table with its rows, the views, the total.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "tables": self.tables.iter().map(|t| serde_json::json!({
                "schema": t.schema, "name": t.name, "rows": t.rows,
            })).collect::<Vec<_>>(),
            "views": self.views.len(),
            "rows": self.rows(),
        })
    }
}

/// The relations of a PostgreSQL database as [`plan`] reads them: each column's exact type
/// (`numeric(10,2)`, `character varying(20)`, arrays), and each view as a whole `CREATE VIEW`.
pub const POSTGRES_CATALOG: &str = "SELECT n.nspname, c.relname, \
       CASE c.relkind WHEN 'v' THEN 'VIEW' ELSE 'BASE TABLE' END, a.attname, \
       pg_catalog.format_type(a.atttypid, a.atttypmod), \
       CASE c.relkind WHEN 'v' THEN 'CREATE VIEW ' || quote_ident(n.nspname) || '.' \
         || quote_ident(c.relname) || ' AS ' || pg_catalog.pg_get_viewdef(c.oid) END \
     FROM pg_catalog.pg_class AS c \
     JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace \
     JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 \
       AND NOT a.attisdropped \
     WHERE c.relkind IN ('r', 'p', 'v') \
       AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
       AND n.nspname NOT LIKE 'pg\\_%' \
     ORDER BY c.relkind <> 'v' DESC, c.oid, a.attnum";

/// Whether data can be copied from one engine to the other: into PostgreSQL from either, and
/// from DuckDB into DuckDB. PostgreSQL's types have no faithful DuckDB form for all of them
/// (domains, ranges, custom types), so that direction is refused rather than approximated.
pub fn supported(from: EngineKind, to: EngineKind) -> bool {
    !(from == EngineKind::Postgres && to == EngineKind::Duckdb)
}

/// The schema a source schema's relations go to.
fn target_schema(schema: &str, from: EngineKind, to: EngineKind) -> String {
    match (from, to) {
        (EngineKind::Duckdb, EngineKind::Postgres) if schema == "main" => "public".into(),
        _ => schema.into(),
    }
}

/// Reads what a copy from `from` to `to` would copy from the source: its tables with their
/// columns and row counts, and its views. `catalog_query` lists the source's columns as rows
/// of `(schema, name, table_type, column, data_type, view_definition)`.
pub async fn plan(
    source: &mut dyn EngineConnection,
    catalog_query: &str,
    from: EngineKind,
    to: EngineKind,
) -> Result<MovePlan> {
    let mut tables: Vec<TableMove> = Vec::new();
    let mut views: Vec<ViewMove> = Vec::new();
    let mut execution = source.execute(catalog_query, vec![], u64::MAX).await?;
    while let Some(batch) = execution.batches.recv().await {
        for row in json_rows(&batch?) {
            let text = |i: usize| row[i].as_str().unwrap_or_default().to_string();
            let (schema, name, kind) = (text(0), text(1), text(2));
            if kind.eq_ignore_ascii_case("VIEW") {
                let target = target_schema(&schema, from, to);
                if !views.iter().any(|v| v.schema == target && v.name == name) {
                    views.push(ViewMove {
                        // PostgreSQL prints a view's names as its default search path
                        // resolves them; DuckDB's relative to the view's own schema.
                        resolve_in: match from {
                            EngineKind::Postgres => "public".into(),
                            EngineKind::Duckdb => target.clone(),
                        },
                        schema: target,
                        name,
                        definition: text(5),
                    });
                }
                continue;
            }
            let from_type = text(4);
            let column = ColumnMove {
                name: text(3),
                to_type: if from == to {
                    from_type.clone()
                } else {
                    pg_type(&from_type)
                },
                from_type,
            };
            match tables.last_mut() {
                Some(t) if t.source_schema == schema && t.name == name => t.columns.push(column),
                _ => tables.push(TableMove {
                    schema: target_schema(&schema, from, to),
                    source_schema: schema,
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
            ident(&table.source_schema),
            ident(&table.name)
        );
        let mut counted = source.execute(&sql, vec![], 1).await?;
        if let Some(batch) = counted.batches.recv().await {
            table.rows = json_rows(&batch?)
                .first()
                .and_then(|r| r[0].as_u64().or_else(|| r[0].as_str()?.parse().ok()))
                .unwrap_or(0);
        }
    }
    Ok(MovePlan { tables, views })
}

/// Opens a read-only snapshot on the source: everything read until [`end_snapshot`] sees
/// the data as it was at this moment.
pub async fn begin_snapshot(source: &mut dyn EngineConnection, kind: EngineKind) -> Result<()> {
    let sql = match kind {
        EngineKind::Duckdb => "BEGIN TRANSACTION",
        EngineKind::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    };
    run(source, sql).await
}

/// Ends the snapshot [`begin_snapshot`] opened.
pub async fn end_snapshot(source: &mut dyn EngineConnection) -> Result<()> {
    run(source, "COMMIT").await
}

async fn run(source: &mut dyn EngineConnection, sql: &str) -> Result<()> {
    let mut execution = source.execute(sql, vec![], 0).await?;
    while let Some(batch) = execution.batches.recv().await {
        batch?;
    }
    Ok(())
}

/// Where a copy writes: a new environment's empty database, filled in one transaction.
#[async_trait::async_trait]
pub trait Sink: Send {
    /// Runs one statement of the copy's own (no rows) in the target.
    async fn execute(&mut self, sql: &str) -> Result<()>;
    /// Creates the table and fills it with the batches of `rows`; answers how many rows it
    /// received and how many the table then holds.
    async fn table(
        &mut self,
        table: &TableMove,
        rows: &mut mpsc::Receiver<Result<RecordBatch>>,
    ) -> Result<(u64, u64)>;
    /// Creates a view from its definition, its unqualified names resolved in `resolve_in`.
    async fn view(&mut self, view: &ViewMove) -> Result<()>;

    async fn begin(&mut self) -> Result<()> {
        self.execute("BEGIN").await
    }

    async fn create_schema(&mut self, schema: &str) -> Result<()> {
        self.execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", ident(schema)))
            .await
    }

    async fn commit(&mut self) -> Result<()> {
        self.execute("COMMIT").await
    }

    async fn rollback(&mut self) {
        if let Err(e) = self.execute("ROLLBACK").await {
            tracing::warn!(error = %e.message, "cannot roll back a failed copy");
        }
    }
}

/// Copies every table of `plan` from `source` into `sink` in one transaction of the sink,
/// checking each table's row count on arrival; then creates the views.
pub async fn copy(
    source: &mut dyn EngineConnection,
    sink: &mut dyn Sink,
    plan: &MovePlan,
) -> Result<()> {
    sink.begin().await?;
    match fill(source, sink, plan).await {
        Ok(()) => sink.commit().await,
        Err(e) => {
            sink.rollback().await;
            Err(e)
        }
    }
}

async fn fill(
    source: &mut dyn EngineConnection,
    sink: &mut dyn Sink,
    plan: &MovePlan,
) -> Result<()> {
    let schemas: BTreeSet<&str> = plan
        .tables
        .iter()
        .map(|t| t.schema.as_str())
        .chain(plan.views.iter().map(|v| v.schema.as_str()))
        .filter(|s| !matches!(*s, "public" | "main"))
        .collect();
    for schema in schemas {
        sink.create_schema(schema).await?;
    }
    for table in &plan.tables {
        let names: Vec<String> = table.columns.iter().map(|c| ident(&c.name)).collect();
        let select = format!(
            "SELECT {} FROM {}.{}",
            names.join(", "),
            ident(&table.source_schema),
            ident(&table.name)
        );
        let mut rows = source.execute(&select, vec![], u64::MAX).await?;
        let (sent, counted) = sink.table(table, &mut rows.batches).await?;
        if sent != table.rows || counted != table.rows {
            tracing::error!(schema = %table.schema, table = %table.name, expected = table.rows,
                sent, counted, "a copied table's row count differs");
            return Err(with_sqlstate(Error::internal(), "XX001"));
        }
    }
    for view in &plan.views {
        sink.view(view).await.map_err(|e| {
            Error::conflict(
                "view_not_portable",
                format!(
                    "view {}.{} cannot be created from its definition in the source ({}): drop it, copy, then create it again",
                    view.schema, view.name, e.message
                ),
            )
        })?;
    }
    Ok(())
}

/// A PostgreSQL database as a [`Sink`]: rows arrive through `COPY … FROM STDIN (FORMAT csv)`.
pub struct PgSink {
    conn: PgConnection,
}

impl PgSink {
    pub fn new(conn: PgConnection) -> PgSink {
        PgSink { conn }
    }
}

#[async_trait::async_trait]
impl Sink for PgSink {
    async fn execute(&mut self, sql: &str) -> Result<()> {
        self.conn.execute(sql).await.map_err(pg_error).map(|_| ())
    }

    async fn table(
        &mut self,
        table: &TableMove,
        rows: &mut mpsc::Receiver<Result<RecordBatch>>,
    ) -> Result<(u64, u64)> {
        self.execute(&table.create_sql()).await?;
        let target = table.qualified_name();
        let names: Vec<String> = table.columns.iter().map(|c| ident(&c.name)).collect();
        let mut copy = self
            .conn
            .copy_in_raw(&format!(
                "COPY {target} ({}) FROM STDIN (FORMAT csv)",
                names.join(", ")
            ))
            .await
            .map_err(pg_error)?;
        let mut sent = 0u64;
        let mut buf = Vec::with_capacity(256 * 1024);
        while let Some(batch) = rows.recv().await {
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
        copy.finish().await.map_err(pg_error)?;
        let counted: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {target}"))
            .fetch_one(&mut self.conn)
            .await
            .map_err(pg_error)?;
        Ok((sent, counted.max(0) as u64))
    }

    async fn view(&mut self, view: &ViewMove) -> Result<()> {
        self.execute(&format!(
            "SET LOCAL search_path TO {}",
            ident(&view.resolve_in)
        ))
        .await?;
        self.execute(view.definition.trim().trim_end_matches(';'))
            .await
    }
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

//! The PostgreSQL engine: an environment whose `settings.engine` is `postgres` keeps its data
//! in the database the managed engine provisioned for it (`managed_postgres.rs`), or in one of
//! the user's own, named by a connection string in one of its secrets
//! (`settings.engine_secret`). Statements go through the same pipeline; the database's own
//! role decides what it may do beyond that (give Enclave a role without superuser rights).
//!
//! Statements run with the simple query protocol, parameters written into the statement as
//! literals from the syntax tree (never spliced as text), so every result value arrives in
//! PostgreSQL's text form and any type can be returned: booleans, integers, floats, text,
//! bytea, dates and timestamps keep their type; others (numeric, uuid, json, arrays,
//! intervals, …) arrive as text. Each session holds one pooled connection, so transactions
//! span statements; a connection that may still be in a transaction is closed rather than
//! pooled again. Timeouts and cancel requests reach the server as `pg_cancel_backend`.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::duckdb::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Float32Builder, Float64Builder,
    Int16Builder, Int32Builder, Int64Array, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use ::duckdb::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use ::duckdb::arrow::record_batch::RecordBatch;
use enclave_core::environment::Placement;
use enclave_core::id::EnvId;
use enclave_core::query::{with_sqlstate, Dialect};
use enclave_core::{Error, ErrorCode, Result};
use enclave_store::EnvRecord;
use futures::StreamExt;
use sqlparser::ast::{visit_expressions_mut, Expr, Statement, Value};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Column as _, Either, Executor, Postgres, Row, TypeInfo as _};
use tokio::sync::{mpsc, oneshot, Mutex};

use super::managed_postgres::ManagedPostgres;
use super::{Engine, EngineConnection, Execution, Interrupt, Param};
use crate::load::{LoadRequest, Loaded};

/// Where the engine finds an environment's secrets (the control plane decrypts them).
#[async_trait::async_trait]
pub trait SecretSource: Send + Sync {
    async fn secret(&self, env_id: &EnvId, key: &str) -> Result<Option<String>>;
}

/// Connections one environment's sessions may hold at once.
const POOL_SIZE: u32 = 32;
/// Rows per Arrow batch.
const BATCH_ROWS: usize = 1024;

pub struct PgEngine {
    secrets: Arc<dyn SecretSource>,
    /// The server environments without an `engine_secret` get a database on.
    managed: Option<Arc<ManagedPostgres>>,
    /// Each environment's pools, with the connection string they were opened for (a changed
    /// secret opens new ones; the old close as their sessions end).
    pools: std::sync::Mutex<HashMap<EnvId, (String, Pools)>>,
}

#[derive(Clone)]
struct Pools {
    sessions: PgPool,
    /// For `pg_cancel_backend` while every session connection is busy.
    control: PgPool,
}

impl PgEngine {
    pub fn new(secrets: Arc<dyn SecretSource>, managed: Option<Arc<ManagedPostgres>>) -> PgEngine {
        PgEngine {
            secrets,
            managed,
            pools: std::sync::Mutex::default(),
        }
    }

    /// Whether this server has a managed engine (`--engine-postgres-url`).
    pub fn managed(&self) -> Option<&Arc<ManagedPostgres>> {
        self.managed.as_ref()
    }

    fn managed_engine(&self) -> Result<&Arc<ManagedPostgres>> {
        self.managed.as_ref().ok_or_else(|| {
            unavailable(
                "the environment is on the managed PostgreSQL engine, which this server is not configured with (--engine-postgres-url)".into(),
            )
        })
    }

    async fn pools(&self, env: &EnvRecord) -> Result<Pools> {
        let settings = &env.settings.0;
        let (opened_for, options) = match (settings.placement(), &settings.engine_secret) {
            (Placement::ManagedPostgres, _) => (
                "managed".to_string(),
                self.managed_engine()?.options(&env.id),
            ),
            (Placement::OwnPostgres, Some(key)) => {
                let url = self.secrets.secret(&env.id, key).await?.ok_or_else(|| {
                    unavailable(format!(
                        "the environment's engine secret {key} is not set: store the PostgreSQL connection string in it"
                    ))
                })?;
                let options: PgConnectOptions = url.parse().map_err(|_| {
                    unavailable(format!(
                        "the environment's engine secret {key} does not hold a PostgreSQL connection string"
                    ))
                })?;
                (url, options)
            }
            _ => return Err(Error::internal()),
        };
        if let Some((opened, pools)) = self.pools.lock().unwrap().get(&env.id) {
            if *opened == opened_for {
                return Ok(pools.clone());
            }
        }
        // Text results are read as these settings print them.
        let options = options
            .options([
                ("TimeZone", "UTC"),
                ("DateStyle", "ISO"),
                ("IntervalStyle", "postgres"),
                ("standard_conforming_strings", "on"),
            ])
            .application_name("enclave");
        let pool = || {
            PgPoolOptions::new()
                .min_connections(0)
                .acquire_timeout(Duration::from_secs(5))
                .idle_timeout(Duration::from_secs(300))
        };
        let pools = Pools {
            sessions: pool()
                .max_connections(POOL_SIZE)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute(SESSION_FUNCTIONS).await?;
                        Ok(())
                    })
                })
                .connect_lazy_with(options.clone()),
            control: pool().max_connections(2).connect_lazy_with(options.clone()),
        };
        self.pools
            .lock()
            .unwrap()
            .insert(env.id.clone(), (opened_for, pools.clone()));
        Ok(pools)
    }

    /// A session connection; on the managed engine a refused password (the administrative
    /// credentials changed) sets the role's password again, once.
    async fn acquire(&self, env: &EnvRecord, pools: &Pools) -> Result<PoolConnection<Postgres>> {
        match pools.sessions.acquire().await {
            Err(sqlx::Error::Database(db))
                if db.code().as_deref() == Some("28P01")
                    && env.settings.0.placement() == Placement::ManagedPostgres =>
            {
                self.managed_engine()?.reset_password(&env.id).await?;
                pools.sessions.acquire().await.map_err(pg_error)
            }
            other => other.map_err(pg_error),
        }
    }
}

/// Functions translated statements call that PostgreSQL lacks, created in each session's
/// temporary schema (nothing is written to the environment's database): `TRY_CAST` and the
/// `TRY_` conversions, which answer NULL where the cast fails.
const SESSION_FUNCTIONS: &str = "
CREATE FUNCTION pg_temp.enclave_try_cast(value text, target anyelement)
RETURNS anyelement LANGUAGE plpgsql STABLE AS $$
BEGIN
  EXECUTE format('SELECT %L::%s', value, pg_typeof(target)) INTO target;
  RETURN target;
EXCEPTION WHEN others THEN
  RETURN NULL;
END
$$;
";

fn unavailable(message: String) -> Error {
    with_sqlstate(Error::unavailable(message), "08006")
}

/// A PostgreSQL error as the client sees it: its own SQLSTATE and message.
pub(super) fn pg_error(e: sqlx::Error) -> Error {
    match e {
        sqlx::Error::Database(db) => {
            let state = db.code().map(|c| c.to_string()).unwrap_or("XX000".into());
            let status = match &state[..2] {
                "42" if state == "42501" => 403,
                "57" => 408,
                "53" => 503,
                "08" => 503,
                _ => 400,
            };
            let code = match status {
                403 => ErrorCode::Forbidden,
                503 => ErrorCode::ServiceUnavailable,
                _ => ErrorCode::ValidationError,
            };
            let error = Error::new(code, db.message().to_string())
                .with_details(serde_json::json!({"rule": "engine"}))
                .with_status(status);
            with_sqlstate(error, &state)
        }
        sqlx::Error::PoolTimedOut => with_sqlstate(
            Error::unavailable("every connection to the environment's database is in use"),
            "53300",
        ),
        other => {
            tracing::warn!(error = %other, "PostgreSQL engine connection failed");
            unavailable("the environment's PostgreSQL database cannot be reached".into())
        }
    }
}

#[async_trait::async_trait]
impl Engine for PgEngine {
    fn catalog_query(&self) -> &'static str {
        "SELECT c.table_schema, c.table_name, t.table_type, c.column_name, c.data_type, v.definition \
         FROM information_schema.columns AS c \
         JOIN information_schema.tables AS t ON t.table_schema = c.table_schema \
           AND t.table_name = c.table_name \
         LEFT JOIN pg_catalog.pg_views AS v ON v.schemaname = c.table_schema \
           AND v.viewname = c.table_name \
         WHERE c.table_schema NOT IN ('information_schema', 'pg_catalog') \
         ORDER BY c.table_schema, c.table_name, c.ordinal_position"
    }

    fn statistics_query(&self) -> &'static str {
        // reltuples is what ANALYZE (or autovacuum) last counted, -1 before; the statistics
        // collector's live-row count covers tables written since.
        "SELECT n.nspname, c.relname, \
           CAST(GREATEST(c.reltuples, COALESCE(s.n_live_tup, 0), 0) AS BIGINT) \
         FROM pg_catalog.pg_class AS c \
         JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace \
         LEFT JOIN pg_catalog.pg_stat_user_tables AS s ON s.relid = c.oid \
         WHERE c.relkind IN ('r', 'p', 'm') \
           AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
           AND n.nspname NOT LIKE 'pg_toast%'"
    }

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn render(
        &self,
        statement: &Statement,
        params: Vec<Param>,
        database: &str,
    ) -> (String, Vec<Param>) {
        let mut statement = statement.clone();
        super::strip_database(&mut statement, database);
        if params.is_empty() {
            return (statement.to_string(), params);
        }
        let _ = visit_expressions_mut(&mut statement, |e| {
            if let Expr::Value(v) = e {
                if let Value::Placeholder(p) = &v.value {
                    let n = p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok());
                    if let Some(param) = n.and_then(|n| params.get(n.wrapping_sub(1))) {
                        *e = literal(param);
                    }
                }
            }
            ControlFlow::<()>::Continue(())
        });
        (statement.to_string(), vec![])
    }

    /// The managed engine's database and role (a user's own database has nothing to create).
    async fn provision(&self, env_id: &EnvId) -> Result<()> {
        self.managed_engine()?.provision(env_id).await
    }

    /// Pools are closed; the managed engine's database and role are dropped (a user's own
    /// database stays where its owner put it).
    async fn remove(&self, env_id: &EnvId) -> Result<()> {
        if let Some((_, pools)) = self.pools.lock().unwrap().remove(env_id) {
            // Closing waits for sessions still streaming; dropping the database ends them.
            tokio::spawn(async move {
                pools.sessions.close().await;
                pools.control.close().await;
            });
        }
        match &self.managed {
            Some(managed) => managed.drop_database(env_id).await,
            None => Ok(()),
        }
    }

    async fn stored_bytes(&self, env: &EnvRecord) -> Result<u64> {
        let pools = self.pools(env).await?;
        let bytes: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
            .fetch_one(&pools.control)
            .await
            .map_err(pg_error)?;
        Ok(bytes.max(0) as u64)
    }

    /// The managed engine's database only: a database of the user's own is theirs to fill.
    async fn sink(&self, env: &EnvRecord) -> Result<Box<dyn super::transfer::Sink>> {
        if env.settings.0.placement() != Placement::ManagedPostgres {
            return Err(Error::validation(
                "include",
                "managed_target",
                "data is copied only into a database Enclave manages, not into one named by settings.engine_secret",
            ));
        }
        let conn = self.managed_engine()?.connect(&env.id).await?;
        Ok(Box::new(super::transfer::PgSink::new(conn)))
    }

    async fn connect(&self, env: &EnvRecord) -> Result<Box<dyn EngineConnection>> {
        let pools = self.pools(env).await?;
        let mut conn = self.acquire(env, &pools).await?;
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *conn)
            .await
            .map_err(pg_error)?;
        let in_transaction = Arc::new(std::sync::atomic::AtomicBool::new(false));
        Ok(Box::new(PgSession {
            conn: Arc::new(Mutex::new(Held {
                conn: Some(conn),
                in_transaction: in_transaction.clone(),
            })),
            in_transaction,
            interrupt: Arc::new(PgInterrupt {
                control: pools.control,
                pid,
            }),
        }))
    }
}

/// A parameter as a literal of the statement.
fn literal(param: &Param) -> Expr {
    let text = |s: String| Expr::value(Value::SingleQuotedString(s));
    let cast = |s: String, ty: &str| Expr::Cast {
        kind: sqlparser::ast::CastKind::DoubleColon,
        expr: Box::new(text(s)),
        data_type: sqlparser::ast::DataType::Custom(
            sqlparser::ast::ObjectName::from(vec![sqlparser::ast::Ident::new(ty)]),
            vec![],
        ),
        format: None,
    };
    match param {
        Param::Null => Expr::value(Value::Null),
        Param::Bool(b) => Expr::value(Value::Boolean(*b)),
        Param::Int(i) => Expr::Nested(Box::new(Expr::value(Value::Number(i.to_string(), false)))),
        Param::Float(f) if f.is_finite() => Expr::Nested(Box::new(Expr::value(Value::Number(
            format!("{f:?}"),
            false,
        )))),
        Param::Float(f) => cast(format!("{f}").replace("inf", "Infinity"), "float8"),
        Param::Text(s) => text(s.clone()),
        Param::Bytes(b) => cast(format!("\\x{}", hex::encode(b)), "bytea"),
    }
}

struct PgInterrupt {
    control: PgPool,
    pid: i32,
}

impl Interrupt for PgInterrupt {
    fn interrupt(&self) {
        let (pool, pid) = (self.control.clone(), self.pid);
        tokio::spawn(async move {
            if let Err(e) = sqlx::query("SELECT pg_cancel_backend($1)")
                .bind(pid)
                .execute(&pool)
                .await
            {
                tracing::warn!(error = %e, pid, "cannot cancel a PostgreSQL statement");
            }
        });
    }
}

struct PgSession {
    /// Locked by the statement running on it.
    conn: Arc<Mutex<Held>>,
    /// Whether the session may be inside a transaction it began (then its connection is
    /// closed at the end rather than handed to another session mid-transaction).
    in_transaction: Arc<std::sync::atomic::AtomicBool>,
    interrupt: Arc<PgInterrupt>,
}

impl PgSession {
    /// Follows the session's transaction control statements.
    fn track(&self, sql: &str) {
        if let Some(open) = super::transaction_change(sql) {
            self.in_transaction
                .store(open, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// A session's pooled connection. Whenever the last holder lets go — the session, or a
/// statement still streaming after the client left — a connection that may be inside a
/// transaction is closed (which rolls the transaction back) instead of going back to the pool.
struct Held {
    conn: Option<PoolConnection<Postgres>>,
    in_transaction: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if self
            .in_transaction
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            if let Some(conn) = self.conn.take() {
                drop(conn.detach());
            }
        }
    }
}

/// Whether a statement's text may answer rows (otherwise it answers a count).
fn may_return_rows(sql: &str) -> bool {
    let first = sql
        .trim_start_matches(['(', ' '])
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    matches!(
        first.as_str(),
        "SELECT" | "WITH" | "VALUES" | "TABLE" | "SHOW" | "EXPLAIN" | "FETCH"
    ) || sql.to_ascii_uppercase().contains(" RETURNING ")
}

#[async_trait::async_trait]
impl EngineConnection for PgSession {
    async fn execute(&mut self, sql: &str, params: Vec<Param>, row_cap: u64) -> Result<Execution> {
        if !params.is_empty() {
            // The engine's `render` wrote them into the statement.
            return Err(Error::internal());
        }
        self.track(sql);
        let (schema_tx, schema_rx) = oneshot::channel();
        let (tx, rx) = mpsc::channel(2);
        let truncated = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = truncated.clone();
        let conn = self.conn.clone().lock_owned().await;
        let sql = sql.to_string();
        tokio::spawn(async move {
            let mut conn = conn;
            let Some(conn) = conn.conn.as_mut() else {
                return;
            };
            stream(conn, &sql, row_cap, schema_tx, tx, &flag).await;
        });
        let schema = schema_rx.await.map_err(|_| Error::internal())??;
        Ok(Execution {
            schema,
            batches: rx,
            truncated,
        })
    }

    async fn load(&mut self, request: LoadRequest, deadline: Instant) -> Result<Loaded> {
        use std::sync::atomic::Ordering;
        let mut slot = self.conn.clone().lock_owned().await;
        let conn = slot.conn.as_mut().ok_or_else(Error::internal)?;
        // A load runs in a transaction: should the session end in the middle, its connection
        // is closed rather than pooled.
        let in_transaction = self.in_transaction.swap(true, Ordering::SeqCst);
        let loaded = super::postgres_load::load(conn, &request, in_transaction, deadline).await;
        self.in_transaction.store(in_transaction, Ordering::SeqCst);
        loaded
    }

    fn interrupter(&self) -> Arc<dyn Interrupt> {
        self.interrupt.clone()
    }
}

/// Runs `sql` and sends its schema, then its rows in batches (or the count of a statement
/// without rows).
async fn stream(
    conn: &mut PoolConnection<Postgres>,
    sql: &str,
    row_cap: u64,
    schema_tx: oneshot::Sender<Result<SchemaRef>>,
    tx: mpsc::Sender<Result<RecordBatch>>,
    truncated: &std::sync::atomic::AtomicBool,
) {
    let mut schema_tx = Some(schema_tx);
    let mut batch: Option<BatchBuilder> = None;
    let mut affected = 0u64;
    let mut left = row_cap;
    let fail =
        |schema_tx: &mut Option<oneshot::Sender<Result<SchemaRef>>>, e: Error| match schema_tx
            .take()
        {
            Some(s) => {
                let _ = s.send(Err(e));
            }
            None => {
                let _ = tx.try_send(Err(e));
            }
        };
    {
        let mut results = sqlx::raw_sql(sql).fetch_many(&mut **conn);
        while let Some(item) = results.next().await {
            match item {
                Err(e) => {
                    let e = pg_error(e);
                    if schema_tx.is_none() {
                        let _ = tx.send(Err(e)).await;
                    } else {
                        fail(&mut schema_tx, e);
                    }
                    return;
                }
                Ok(Either::Left(done)) => affected += done.rows_affected(),
                Ok(Either::Right(row)) => {
                    if batch.is_none() {
                        let builder = BatchBuilder::new(&row);
                        if let Some(s) = schema_tx.take() {
                            if s.send(Ok(builder.schema.clone())).is_err() {
                                return;
                            }
                        }
                        batch = Some(builder);
                    }
                    if left == 0 {
                        truncated.store(true, std::sync::atomic::Ordering::Relaxed);
                        continue; // read to the end: the connection must be ready again
                    }
                    let builder = batch.as_mut().expect("set above");
                    if let Err(e) = builder.push(&row) {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                    left -= 1;
                    if builder.len == BATCH_ROWS && tx.send(builder.finish()).await.is_err() {
                        return; // the client went away
                    }
                }
            }
        }
    }
    match (batch, schema_tx) {
        (Some(mut builder), _) => {
            if builder.len > 0 {
                let _ = tx.send(builder.finish()).await;
            }
        }
        (None, Some(schema_tx)) => {
            // No rows: the columns a query would have had, or the count of a write.
            let described = if may_return_rows(sql) {
                match (&mut **conn).describe(sql).await {
                    Ok(d) => d.columns().iter().map(field_of).collect(),
                    Err(e) => {
                        let _ = schema_tx.send(Err(pg_error(e)));
                        return;
                    }
                }
            } else {
                vec![]
            };
            if described.is_empty() {
                let schema = Arc::new(Schema::new(vec![Field::new(
                    "Count",
                    DataType::Int64,
                    false,
                )]));
                let count: ArrayRef = Arc::new(Int64Array::from(vec![affected as i64]));
                if schema_tx.send(Ok(schema.clone())).is_ok() {
                    let _ = tx
                        .send(
                            RecordBatch::try_new(schema, vec![count])
                                .map_err(|_| Error::internal()),
                        )
                        .await;
                }
            } else {
                let _ = schema_tx.send(Ok(Arc::new(Schema::new(described))));
            }
        }
        (None, None) => {}
    }
}

/// How a column's text values become Arrow values.
enum ColumnBuilder {
    Bool(BooleanBuilder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Bytes(BinaryBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    TimestampTz(TimestampMicrosecondBuilder),
    Text(StringBuilder),
}

/// The Arrow type a PostgreSQL type (by name) is read as.
fn data_type(pg_type: &str) -> DataType {
    match pg_type {
        "BOOL" => DataType::Boolean,
        "INT2" => DataType::Int16,
        "INT4" => DataType::Int32,
        "INT8" | "OID" => DataType::Int64,
        "FLOAT4" => DataType::Float32,
        "FLOAT8" => DataType::Float64,
        "BYTEA" => DataType::Binary,
        "DATE" => DataType::Date32,
        "TIMESTAMP" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "TIMESTAMPTZ" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        _ => DataType::Utf8,
    }
}

fn field_of(column: &sqlx::postgres::PgColumn) -> Field {
    Field::new(column.name(), data_type(column.type_info().name()), true)
}

impl ColumnBuilder {
    fn new(dt: &DataType) -> ColumnBuilder {
        match dt {
            DataType::Boolean => ColumnBuilder::Bool(BooleanBuilder::new()),
            DataType::Int16 => ColumnBuilder::I16(Int16Builder::new()),
            DataType::Int32 => ColumnBuilder::I32(Int32Builder::new()),
            DataType::Int64 => ColumnBuilder::I64(Int64Builder::new()),
            DataType::Float32 => ColumnBuilder::F32(Float32Builder::new()),
            DataType::Float64 => ColumnBuilder::F64(Float64Builder::new()),
            DataType::Binary => ColumnBuilder::Bytes(BinaryBuilder::new()),
            DataType::Date32 => ColumnBuilder::Date(Date32Builder::new()),
            DataType::Timestamp(_, None) => {
                ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::new())
            }
            DataType::Timestamp(_, Some(_)) => {
                ColumnBuilder::TimestampTz(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
            }
            _ => ColumnBuilder::Text(StringBuilder::new()),
        }
    }

    fn push(&mut self, value: Option<&str>) -> std::result::Result<(), ()> {
        use chrono::{DateTime, NaiveDate, NaiveDateTime};
        fn parse<T: std::str::FromStr>(s: &str) -> std::result::Result<T, ()> {
            s.parse().map_err(|_| ())
        }
        let Some(s) = value else {
            match self {
                ColumnBuilder::Bool(b) => b.append_null(),
                ColumnBuilder::I16(b) => b.append_null(),
                ColumnBuilder::I32(b) => b.append_null(),
                ColumnBuilder::I64(b) => b.append_null(),
                ColumnBuilder::F32(b) => b.append_null(),
                ColumnBuilder::F64(b) => b.append_null(),
                ColumnBuilder::Bytes(b) => b.append_null(),
                ColumnBuilder::Date(b) => b.append_null(),
                ColumnBuilder::Timestamp(b) | ColumnBuilder::TimestampTz(b) => b.append_null(),
                ColumnBuilder::Text(b) => b.append_null(),
            }
            return Ok(());
        };
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date");
        match self {
            ColumnBuilder::Bool(b) => b.append_value(s == "t"),
            ColumnBuilder::I16(b) => b.append_value(parse(s)?),
            ColumnBuilder::I32(b) => b.append_value(parse(s)?),
            ColumnBuilder::I64(b) => b.append_value(parse(s)?),
            ColumnBuilder::F32(b) => b.append_value(parse(s)?),
            ColumnBuilder::F64(b) => b.append_value(parse(s)?),
            ColumnBuilder::Bytes(b) => {
                b.append_value(hex::decode(s.strip_prefix("\\x").ok_or(())?).map_err(|_| ())?)
            }
            ColumnBuilder::Date(b) => {
                let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| ())?;
                b.append_value((d - epoch).num_days() as i32)
            }
            ColumnBuilder::Timestamp(b) => {
                let t = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").map_err(|_| ())?;
                b.append_value(t.and_utc().timestamp_micros())
            }
            ColumnBuilder::TimestampTz(b) => {
                let t = DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z").map_err(|_| ())?;
                b.append_value(t.timestamp_micros())
            }
            ColumnBuilder::Text(b) => b.append_value(s),
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Bool(b) => Arc::new(b.finish()),
            ColumnBuilder::I16(b) => Arc::new(b.finish()),
            ColumnBuilder::I32(b) => Arc::new(b.finish()),
            ColumnBuilder::I64(b) => Arc::new(b.finish()),
            ColumnBuilder::F32(b) => Arc::new(b.finish()),
            ColumnBuilder::F64(b) => Arc::new(b.finish()),
            ColumnBuilder::Bytes(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) | ColumnBuilder::TimestampTz(b) => Arc::new(b.finish()),
            ColumnBuilder::Text(b) => Arc::new(b.finish()),
        }
    }
}

/// Rows gathered into one Arrow batch.
struct BatchBuilder {
    schema: SchemaRef,
    columns: Vec<ColumnBuilder>,
    len: usize,
}

impl BatchBuilder {
    fn new(row: &PgRow) -> BatchBuilder {
        let fields: Vec<Field> = row.columns().iter().map(field_of).collect();
        let columns = fields
            .iter()
            .map(|f| ColumnBuilder::new(f.data_type()))
            .collect();
        BatchBuilder {
            schema: Arc::new(Schema::new(fields)),
            columns,
            len: 0,
        }
    }

    fn push(&mut self, row: &PgRow) -> Result<()> {
        for (i, column) in self.columns.iter_mut().enumerate() {
            let raw = row.try_get_raw(i).map_err(pg_error)?;
            let text = if sqlx::ValueRef::is_null(&raw) {
                None
            } else {
                Some(raw.as_str().map_err(|_| Error::internal())?)
            };
            column.push(text).map_err(|()| {
                let field = self.schema.field(i);
                tracing::error!(column = field.name(), "unreadable PostgreSQL value");
                Error::internal()
            })?;
        }
        self.len += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        self.len = 0;
        let arrays = self.columns.iter_mut().map(ColumnBuilder::finish).collect();
        RecordBatch::try_new(self.schema.clone(), arrays).map_err(|_| Error::internal())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoSecrets;

    #[async_trait::async_trait]
    impl SecretSource for NoSecrets {
        async fn secret(&self, _env_id: &EnvId, _key: &str) -> Result<Option<String>> {
            Ok(None)
        }
    }

    #[test]
    fn parameters_become_literals_of_the_statement() {
        let engine = PgEngine::new(Arc::new(NoSecrets), None);
        let statement = enclave_core::query::parse(
            "SELECT $1, $2, $3, $4, $5, $6 FROM t WHERE name = $1",
            Dialect::Postgres,
        )
        .unwrap()
        .remove(0)
        .statement;
        let params = vec![
            Param::Text("it's; DROP TABLE t --".into()),
            Param::Int(-5),
            Param::Null,
            Param::Bytes(vec![0, 255]),
            Param::Float(f64::NEG_INFINITY),
            Param::Bool(true),
        ];
        let (sql, left) = engine.render(&statement, params, "db");
        assert!(left.is_empty());
        assert_eq!(
            sql,
            "SELECT 'it''s; DROP TABLE t --', (-5), NULL, '\\x00ff'::bytea, '-Infinity'::float8, \
             true FROM t WHERE name = 'it''s; DROP TABLE t --'"
        );
    }

    #[test]
    fn statements_that_may_answer_rows() {
        assert!(may_return_rows("SELECT 1"));
        assert!(may_return_rows("WITH x AS (SELECT 1) SELECT * FROM x"));
        assert!(may_return_rows("INSERT INTO t VALUES (1) RETURNING id"));
        assert!(!may_return_rows("INSERT INTO t VALUES (1)"));
        assert!(!may_return_rows("CREATE TABLE t (a INT)"));
    }
}

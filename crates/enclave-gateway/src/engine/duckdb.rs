//! The embedded engine: one DuckDB database file per environment under
//! `<data-dir>/engine/`, created at provisioning and removed at deletion.
//!
//! Sandbox: every database is opened with external access disabled (no file, network or
//! `ATTACH` from SQL), extension auto-install/auto-load off, and the configuration locked, so
//! no statement can turn any of it back on. The pipeline's allow-list refuses such
//! statements earlier; this holds even for a statement that slipped past it.
//!
//! DuckDB is synchronous: statements run on the blocking pool, and their batches cross to
//! the async side through a bounded channel.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use duckdb::{params_from_iter, Config, Connection, InterruptHandle};
use enclave_core::id::EnvId;
use enclave_core::query::{with_sqlstate, Dialect};
use enclave_core::{Error, ErrorCode, Result};
use tokio::sync::{mpsc, oneshot};

use super::transfer::{Sink, TableMove, ViewMove};
use super::{Engine, EngineConnection, Execution, Interrupt, Param};
use crate::load::{LoadRequest, Loaded};
use duckdb::arrow::record_batch::RecordBatch;
use enclave_store::EnvRecord;

pub struct DuckDbEngine {
    inner: Arc<Databases>,
}

/// How many databases stay open while idle. Each open database holds DuckDB's buffer pool
/// and worker threads; an organization with hundreds of environments must not hold them all.
pub const OPEN_DATABASES: usize = 32;

struct Databases {
    dir: PathBuf,
    /// Open databases, most recently used last. Opening replays the WAL, so busy
    /// environments stay open; idle ones beyond [`OPEN_DATABASES`] are closed.
    open: Mutex<Vec<(String, Arc<Database>)>>,
}

/// One open environment database: the connection sessions are cloned from. Sessions hold
/// an `Arc` of it, so it is closed only once nobody uses it — opening a file a second time
/// while an instance still has it open would let two instances write one file.
struct Database {
    root: Mutex<Connection>,
}

impl DuckDbEngine {
    pub fn new(data_dir: &std::path::Path) -> Result<DuckDbEngine> {
        let dir = data_dir.join("engine");
        std::fs::create_dir_all(&dir).map_err(|e| {
            tracing::error!(error = %e, dir = %dir.display(), "cannot create the engine directory");
            Error::internal()
        })?;
        Ok(DuckDbEngine {
            inner: Arc::new(Databases {
                dir,
                open: Mutex::default(),
            }),
        })
    }

    /// The environment's database, opened (and created) on the blocking pool.
    async fn database(&self, env_id: &EnvId) -> Result<Arc<Database>> {
        let inner = self.inner.clone();
        let env_id = env_id.clone();
        tokio::task::spawn_blocking(move || inner.database(&env_id))
            .await
            .map_err(|_| Error::internal())?
    }
}

impl Databases {
    fn path(&self, env_id: &EnvId) -> Result<PathBuf> {
        // Ids are generated (`env_` + ULID); refuse anything else before it names a path.
        if !env_id.starts_with("env_") || !env_id[4..].bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Error::internal());
        }
        Ok(self.dir.join(format!("{env_id}.duckdb")))
    }

    /// The environment's database, opened (and created) if needed.
    fn database(&self, env_id: &EnvId) -> Result<Arc<Database>> {
        // Opening happens under the lock: two sessions of one environment racing here must
        // not open its file twice. Opens are rare (idle databases stay open) and short.
        let mut open = self.open.lock().unwrap();
        if let Some(i) = open.iter().position(|(id, _)| id == env_id) {
            let entry = open.remove(i);
            let db = entry.1.clone();
            open.push(entry);
            return Ok(db);
        }
        let db = Arc::new(self.open_file(env_id)?);
        open.push((env_id.to_string(), db.clone()));
        // Close the least recently used idle databases beyond the limit (the list's only
        // holder is the list itself).
        let mut excess = open.len().saturating_sub(OPEN_DATABASES);
        open.retain(|(_, db)| {
            let close = excess > 0 && Arc::strong_count(db) == 1;
            excess -= usize::from(close);
            !close
        });
        Ok(db)
    }

    /// Closes the environment's database (once no session uses it) and removes its files.
    fn remove(&self, env_id: &EnvId) -> Result<()> {
        let path = self.path(env_id)?;
        // A session still running keeps its instance until it ends; the environment's status
        // already refuses new statements, and the unlinked file goes with the instance.
        self.open.lock().unwrap().retain(|(id, _)| id != env_id);
        for p in [path.clone(), path.with_extension("duckdb.wal")] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::error!(error = %e, file = %p.display(), "cannot remove the environment's database");
                    return Err(Error::internal());
                }
            }
        }
        Ok(())
    }

    fn open_file(&self, env_id: &EnvId) -> Result<Database> {
        let path = self.path(env_id)?;
        let conn = Connection::open_with_flags(&path, sandbox()?).map_err(|e| {
            tracing::error!(error = %e, env_id = %env_id, "cannot open the environment's database");
            Error::unavailable("the environment's database cannot be opened")
        })?;
        // The catalog shim psql and drivers read (see `compat`), written once per version.
        let current = conn
            .query_row(super::compat::SHIM_VERSION_SQL, [], |row| {
                row.get::<_, i64>(0)
            })
            .is_ok_and(|v| v == super::compat::SHIM_VERSION);
        if !current {
            conn.execute_batch(&super::compat::shim_sql())
                .map_err(|e| {
                    tracing::error!(error = %e, env_id = %env_id, "cannot create the catalog shim");
                    Error::internal()
                })?;
        }
        Ok(Database {
            root: Mutex::new(conn),
        })
    }
}

/// The configuration every database is opened with.
fn sandbox() -> Result<Config> {
    let config = || -> duckdb::Result<Config> {
        Config::default()
            .enable_external_access(false)?
            .enable_autoload_extension(false)?
            .with("allow_community_extensions", "false")?
            .with("lock_configuration", "true")
    };
    config().map_err(|e| {
        tracing::error!(error = %e, "DuckDB refused the sandbox configuration");
        Error::internal()
    })
}

#[async_trait::async_trait]
impl Engine for DuckDbEngine {
    fn catalog_query(&self) -> &'static str {
        "SELECT c.table_schema, c.table_name, t.table_type, c.column_name, c.data_type, v.sql \
         FROM information_schema.columns AS c \
         JOIN information_schema.tables AS t ON t.table_catalog = c.table_catalog \
           AND t.table_schema = c.table_schema AND t.table_name = c.table_name \
         LEFT JOIN duckdb_views() AS v ON v.database_name = c.table_catalog \
           AND v.schema_name = c.table_schema AND v.view_name = c.table_name AND NOT v.internal \
         WHERE c.table_catalog = current_database() \
           AND c.table_schema NOT IN ('information_schema', 'pg_catalog', 'enclave_catalog') \
         ORDER BY c.table_schema, c.table_name, c.ordinal_position"
    }

    fn statistics_query(&self) -> &'static str {
        "SELECT schema_name, table_name, estimated_size FROM duckdb_tables() \
         WHERE database_name = current_database() AND NOT internal"
    }

    fn dialect(&self) -> Dialect {
        Dialect::DuckDb
    }

    fn render(
        &self,
        statement: &sqlparser::ast::Statement,
        params: Vec<Param>,
        database: &str,
    ) -> (String, Vec<Param>) {
        (super::compat::render(statement, database), params)
    }

    async fn provision(&self, env_id: &EnvId) -> Result<()> {
        self.database(env_id).await.map(|_| ())
    }

    async fn remove(&self, env_id: &EnvId) -> Result<()> {
        // The list's lock may be held by an open in progress, and unlinking blocks: both on
        // the blocking pool.
        let inner = self.inner.clone();
        let env_id = env_id.clone();
        tokio::task::spawn_blocking(move || inner.remove(&env_id))
            .await
            .map_err(|_| Error::internal())?
    }

    async fn connect(&self, env: &EnvRecord) -> Result<Box<dyn EngineConnection>> {
        self.connect_to(&env.id).await
    }

    async fn sink(&self, env: &EnvRecord) -> Result<Box<dyn Sink>> {
        Ok(Box::new(DuckDbSink {
            conn: Arc::new(self.session_connection(&env.id).await?),
        }))
    }

    fn holds(&self, env_id: &EnvId) -> bool {
        self.inner.path(env_id).is_ok_and(|p| p.exists())
    }

    async fn stored_bytes(&self, env: &EnvRecord) -> Result<u64> {
        // The database file and its write-ahead log (what a checkpoint has not moved yet).
        let file = self.inner.path(&env.id)?;
        tokio::task::spawn_blocking(move || {
            let mut wal = file.clone().into_os_string();
            wal.push(".wal");
            [file, PathBuf::from(wal)]
                .iter()
                .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
                .sum()
        })
        .await
        .map_err(|_| Error::internal())
    }
}

impl DuckDbEngine {
    /// A session's connection to the environment's database.
    async fn connect_to(&self, env_id: &EnvId) -> Result<Box<dyn EngineConnection>> {
        let conn = self.session_connection(env_id).await?;
        let interrupt = conn.conn.lock().unwrap().interrupt_handle();
        Ok(Box::new(DuckDbConnection {
            in_transaction: AtomicBool::new(false),
            conn: Arc::new(conn),
            interrupt: Arc::new(DuckInterrupt(interrupt)),
        }))
    }

    /// A connection of its own to the environment's database, keeping the database open.
    async fn session_connection(&self, env_id: &EnvId) -> Result<SessionConnection> {
        let database = self.database(env_id).await?;
        let conn = database
            .root
            .lock()
            .unwrap()
            .try_clone()
            .map_err(engine_error)?;
        Ok(SessionConnection {
            conn: Mutex::new(conn),
            _database: database,
        })
    }
}

struct DuckInterrupt(Arc<InterruptHandle>);

impl Interrupt for DuckInterrupt {
    fn interrupt(&self) {
        self.0.interrupt();
    }
}

struct DuckDbConnection {
    conn: Arc<SessionConnection>,
    /// Whether the session began a transaction it has not ended (a load then joins it).
    in_transaction: AtomicBool,
    interrupt: Arc<DuckInterrupt>,
}

/// A session's connection, keeping its database open for as long as it (or a statement
/// still streaming on the blocking pool) lives.
struct SessionConnection {
    conn: Mutex<Connection>,
    _database: Arc<Database>,
}

/// An environment's DuckDB database as a copy's [`Sink`]: rows arrive as Arrow batches
/// through the appender. DuckDB is synchronous: each step runs on the blocking pool.
struct DuckDbSink {
    conn: Arc<SessionConnection>,
}

impl DuckDbSink {
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> duckdb::Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || work(&conn.conn.lock().unwrap()))
            .await
            .map_err(|_| Error::internal())?
            .map_err(engine_error)
    }
}

#[async_trait::async_trait]
impl Sink for DuckDbSink {
    async fn execute(&mut self, sql: &str) -> Result<()> {
        let sql = sql.to_string();
        self.blocking(move |conn| conn.execute_batch(&sql)).await
    }

    async fn table(
        &mut self,
        table: &TableMove,
        rows: &mut mpsc::Receiver<Result<RecordBatch>>,
    ) -> Result<(u64, u64)> {
        self.execute(&table.create_sql()).await?;
        let target = table.qualified_name();
        let mut sent = 0u64;
        while let Some(batch) = rows.recv().await {
            let batch = batch?;
            sent += batch.num_rows() as u64;
            let (schema, name) = (table.schema.clone(), table.name.clone());
            self.blocking(move |conn| {
                let mut appender = conn.appender_to_db(&name, &schema)?;
                appender.append_record_batch(batch)?;
                appender.flush()
            })
            .await?;
        }
        let count = format!("SELECT count(*) FROM {target}");
        let counted: i64 = self
            .blocking(move |conn| conn.query_row(&count, [], |row| row.get(0)))
            .await?;
        Ok((sent, counted.max(0) as u64))
    }

    async fn view(&mut self, view: &ViewMove) -> Result<()> {
        // DuckDB's own definition names the view's schema where it is not `main`.
        self.execute(&view.definition).await
    }
}

fn to_value(p: Param) -> duckdb::types::Value {
    use duckdb::types::Value;
    match p {
        Param::Null => Value::Null,
        Param::Bool(b) => Value::Boolean(b),
        Param::Int(i) => Value::BigInt(i),
        Param::Float(f) => Value::Double(f),
        Param::Text(s) => Value::Text(s),
        Param::Bytes(b) => Value::Blob(b),
    }
}

#[async_trait::async_trait]
impl EngineConnection for DuckDbConnection {
    async fn execute(&mut self, sql: &str, params: Vec<Param>, row_cap: u64) -> Result<Execution> {
        if let Some(open) = super::transaction_change(sql) {
            self.in_transaction.store(open, Ordering::SeqCst);
        }
        let (schema_tx, schema_rx) = oneshot::channel();
        let (tx, rx) = mpsc::channel(2);
        let truncated = Arc::new(AtomicBool::new(false));
        let flag = truncated.clone();
        let conn = self.conn.clone();
        let sql = sql.to_string();
        tokio::task::spawn_blocking(move || {
            let conn = conn.conn.lock().unwrap();
            let mut stmt = match conn.prepare(&sql) {
                Ok(s) => s,
                Err(e) => {
                    let _ = schema_tx.send(Err(engine_error(e)));
                    return;
                }
            };
            let values = params.into_iter().map(to_value);
            let mut stream = match stmt.stream_arrow(params_from_iter(values)) {
                Ok(s) => s,
                Err(e) => {
                    let _ = schema_tx.send(Err(engine_error(e)));
                    return;
                }
            };
            if schema_tx.send(Ok(stream.get_schema())).is_err() {
                return;
            }
            let mut left = row_cap;
            for batch in stream.by_ref() {
                let batch = match batch {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(engine_error(e)));
                        return;
                    }
                };
                let rows = batch.num_rows() as u64;
                let (batch, done) = if rows > left {
                    flag.store(true, Ordering::Relaxed);
                    (batch.slice(0, left as usize), true)
                } else {
                    (batch, false)
                };
                left -= batch.num_rows() as u64;
                if batch.num_rows() > 0 && tx.blocking_send(Ok(batch)).is_err() {
                    return; // the client went away
                }
                if done {
                    return;
                }
            }
        });
        let schema = schema_rx.await.map_err(|_| Error::internal())??;
        Ok(Execution {
            schema,
            batches: rx,
            truncated,
        })
    }

    async fn load(&mut self, request: LoadRequest, deadline: Instant) -> Result<Loaded> {
        let conn = self.conn.clone();
        let in_transaction = self.in_transaction.load(Ordering::SeqCst);
        tokio::task::spawn_blocking(move || {
            let conn = conn.conn.lock().unwrap();
            super::duckdb_load::load(&conn, &request, in_transaction, deadline)
        })
        .await
        .map_err(|_| Error::internal())?
    }

    fn interrupter(&self) -> Arc<dyn Interrupt> {
        self.interrupt.clone()
    }
}

/// A DuckDB error as the client sees it: its message, with the SQLSTATE PostgreSQL uses for
/// the same failure.
pub fn engine_error(e: duckdb::Error) -> Error {
    let message = e.to_string();
    let first = message.lines().next().unwrap_or_default().to_string();
    let state = sqlstate_of(&first);
    let code = match state {
        "57014" => ErrorCode::ValidationError,
        "42501" => ErrorCode::Forbidden,
        "XX000" => ErrorCode::InternalError,
        _ => ErrorCode::ValidationError,
    };
    if state == "XX000" {
        tracing::error!(error = %message, "engine failure");
    }
    let mut error = Error::new(code, first).with_details(serde_json::json!({"rule": "engine"}));
    if state == "57014" {
        error = error.with_status(408);
    }
    with_sqlstate(error, state)
}

fn sqlstate_of(message: &str) -> &'static str {
    let has = |p: &str| message.contains(p);
    if has("INTERRUPT") || has("Interrupted") {
        "57014"
    } else if has("Permission Error")
        || has("disabled by configuration")
        || has("lock_configuration")
        || has("locked")
    {
        "42501"
    } else if has("Parser Error") {
        "42601"
    } else if has("Catalog Error") && has("already exists") {
        // Before the table check: "Table with name x already exists!" is not a missing table.
        "42P07"
    } else if has("Catalog Error") && (has("Table with name") || has("Table or view")) {
        "42P01"
    } else if has("Catalog Error") && has("Function") {
        "42883"
    } else if has("Catalog Error") {
        "42704"
    } else if has("Binder Error") && has("column") {
        "42703"
    } else if has("Binder Error") {
        "42803"
    } else if has("Constraint Error") && (has("Duplicate key") || has("unique")) {
        "23505"
    } else if has("Constraint Error") && has("NOT NULL") {
        "23502"
    } else if has("Constraint Error") {
        "23514"
    } else if has("Conversion Error") {
        "22P02"
    } else if has("Out of Range") {
        "22003"
    } else if has("CSV Error") || has("Parquet") {
        "22P04"
    } else if has("Invalid Input") {
        "22023"
    } else if has("Division by zero") || has("division by zero") {
        "22012"
    } else if has("TransactionContext Error") {
        "25000"
    } else if has("Out of Memory") {
        "53200"
    } else if has("Error") {
        "42000"
    } else {
        "XX000"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl DuckDbEngine {
        fn open_databases(&self) -> usize {
            self.inner.open.lock().unwrap().len()
        }
    }

    fn env_id(i: usize) -> EnvId {
        EnvId::from(format!("env_{i:026}"))
    }

    async fn rows(engine: &DuckDbEngine, env_id: &EnvId, sql: &str) -> usize {
        let mut conn = engine.connect_to(env_id).await.unwrap();
        let mut execution = conn.execute(sql, vec![], u64::MAX).await.unwrap();
        let mut n = 0;
        while let Some(batch) = execution.batches.recv().await {
            n += batch.unwrap().num_rows();
        }
        n
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_databases_close_beyond_the_limit_and_keep_their_data() {
        let dir = std::env::temp_dir().join(format!("enclave-engine-{}", std::process::id()));
        let engine = DuckDbEngine::new(&dir).unwrap();
        let first = env_id(0);
        engine.provision(&first).await.unwrap();
        rows(&engine, &first, "CREATE TABLE t AS SELECT * FROM range(3)").await;
        // A session holding the first environment keeps it open however many others open.
        let held = engine.connect_to(&first).await.unwrap();
        for i in 1..=OPEN_DATABASES + 8 {
            engine.provision(&env_id(i)).await.unwrap();
        }
        assert_eq!(engine.open_databases(), OPEN_DATABASES);
        assert!(engine
            .inner
            .open
            .lock()
            .unwrap()
            .iter()
            .any(|(id, _)| *id == first));
        drop(held);
        for i in OPEN_DATABASES + 9..=OPEN_DATABASES + 16 {
            engine.provision(&env_id(i)).await.unwrap();
        }
        assert!(!engine
            .inner
            .open
            .lock()
            .unwrap()
            .iter()
            .any(|(id, _)| *id == first));
        // Reopened: the data and the catalog shim are there.
        assert_eq!(rows(&engine, &first, "SELECT * FROM t").await, 3);
        assert_eq!(
            rows(&engine, &first, crate::engine::compat::SHIM_VERSION_SQL).await,
            1
        );
        for i in 0..=OPEN_DATABASES + 16 {
            engine.remove(&env_id(i)).await.unwrap();
        }
        assert_eq!(engine.open_databases(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The engine's own errors, as a client sees them: PostgreSQL's SQLSTATE for each kind.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn engine_errors_carry_postgresql_sqlstates() {
        let dir = std::env::temp_dir().join(format!("enclave-states-{}", std::process::id()));
        let engine = DuckDbEngine::new(&dir).unwrap();
        let env = env_id(1);
        engine.provision(&env).await.unwrap();
        rows(
            &engine,
            &env,
            "CREATE TABLE t (id INT PRIMARY KEY, n INT NOT NULL)",
        )
        .await;
        rows(&engine, &env, "INSERT INTO t VALUES (1, 1)").await;
        for (sql, state) in [
            ("CREATE TABLE t (id INT)", "42P07"),
            ("SELECT * FROM missing", "42P01"),
            ("SELECT nope FROM t", "42703"),
            ("SELECT no_such_function(1)", "42883"),
            ("INSERT INTO t VALUES (1, 2)", "23505"),
            ("INSERT INTO t VALUES (2, NULL)", "23502"),
            ("SELECT 'abc'::INTEGER", "22P02"),
            ("SELECT 1 +", "42601"),
        ] {
            let mut conn = engine.connect_to(&env).await.unwrap();
            let failed = match conn.execute(sql, vec![], u64::MAX).await {
                Err(e) => e,
                Ok(mut execution) => {
                    let mut error = None;
                    while let Some(batch) = execution.batches.recv().await {
                        if let Err(e) = batch {
                            error = Some(e);
                        }
                    }
                    error.unwrap_or_else(|| panic!("{sql} succeeded"))
                }
            };
            assert_eq!(
                enclave_core::query::sqlstate(&failed),
                state,
                "{sql}: {}",
                failed.message
            );
        }
        engine.remove(&env).await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Engines run statements for the pipeline; results come back as Arrow record batches,
//! streamed through a bounded channel so a large result is never held whole.

pub mod compat;
pub mod duckdb;
mod duckdb_load;
pub mod home;
pub mod managed_postgres;
pub mod postgres;
mod postgres_load;
pub mod transfer;

use std::sync::Arc;
use std::time::Instant;

use ::duckdb::arrow::datatypes::SchemaRef;
use ::duckdb::arrow::record_batch::RecordBatch;
use enclave_core::environment::{EngineKind, Placement};
use enclave_core::id::EnvId;
use enclave_core::query::Dialect;
use enclave_core::Result;
use tokio::sync::mpsc;

use crate::load::{LoadRequest, Loaded};
use enclave_store::EnvRecord;
use home::Home;

/// A bound parameter value, as either door decoded it.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
}

/// What an execution produced.
pub struct Execution {
    pub schema: SchemaRef,
    /// The result's batches, at most `row_cap` rows in all; an error ends the stream.
    pub batches: mpsc::Receiver<Result<RecordBatch>>,
    /// Whether rows beyond the cap were left out.
    pub truncated: Arc<std::sync::atomic::AtomicBool>,
}

/// Stops a running statement from another task (the timeout, a cancel request).
pub trait Interrupt: Send + Sync {
    fn interrupt(&self);
}

/// One client session's connection to its environment's data.
#[async_trait::async_trait]
pub trait EngineConnection: Send + Sync {
    /// Runs one statement. Rows stream through the returned [`Execution`]; statements without
    /// rows return a schema without fields, or (for writes) DuckDB's single `Count` column.
    async fn execute(&mut self, sql: &str, params: Vec<Param>, row_cap: u64) -> Result<Execution>;
    /// Loads a spooled file into a table in one transaction (or the session's open one);
    /// past `deadline` the load stops with 57014.
    async fn load(&mut self, request: LoadRequest, deadline: Instant) -> Result<Loaded>;
    /// A handle that interrupts whatever this connection runs.
    fn interrupter(&self) -> Arc<dyn Interrupt>;
}

/// Whether a statement opens (`Some(true)`) or ends (`Some(false)`) a transaction: sessions
/// follow their own, as engines cannot be asked without disturbing it.
pub(crate) fn transaction_change(sql: &str) -> Option<bool> {
    let first = sql.split_whitespace().next().unwrap_or_default();
    match first.to_ascii_uppercase().trim_end_matches(';') {
        "BEGIN" | "START" => Some(true),
        "COMMIT" | "ROLLBACK" | "END" | "ABORT" => Some(false),
        _ => None,
    }
}

/// `development.main.t` → `main.t`: clients (dbt among them) qualify relations with the
/// database they connected to, which is the environment's slug, not the engine's own name
/// for its database.
pub(crate) fn strip_database(statement: &mut sqlparser::ast::Statement, database: &str) {
    use sqlparser::ast::{ObjectName, ObjectNamePart, Statement};
    let strip = |name: &mut ObjectName| {
        if name.0.len() == 3 {
            if let ObjectNamePart::Identifier(first) = &name.0[0] {
                let matches = match first.quote_style {
                    Some(_) => first.value == database,
                    None => first.value.eq_ignore_ascii_case(database),
                };
                if matches {
                    name.0.remove(0);
                }
            }
        }
    };
    let _ = sqlparser::ast::visit_relations_mut(statement, |name| {
        strip(name);
        std::ops::ControlFlow::<()>::Continue(())
    });
    // Names the relation visitor does not reach.
    match statement {
        Statement::Drop { names, .. } => names.iter_mut().for_each(strip),
        Statement::AlterTable(alter) => strip(&mut alter.name),
        Statement::AlterView { name, .. } => strip(name),
        Statement::CreateView(view) => strip(&mut view.name),
        Statement::CreateTable(create) => strip(&mut create.name),
        Statement::Truncate(truncate) => truncate
            .table_names
            .iter_mut()
            .for_each(|t| strip(&mut t.name)),
        _ => {}
    }
}

/// An engine: where each environment's data lives.
#[async_trait::async_trait]
pub trait Engine: Send + Sync + 'static {
    /// The SQL grammar statements for this engine are parsed with.
    fn dialect(&self) -> Dialect;
    /// A query listing every user relation's columns in order, as rows of `(schema, name,
    /// table_type, column, data_type, view_definition)`; what the policy rewrite resolves
    /// names against.
    fn catalog_query(&self) -> &'static str;
    /// A query of the engine's own table statistics, as rows of `(schema, table, rows)`:
    /// what estimates read (stage 5), never a count of the rows themselves.
    fn statistics_query(&self) -> &'static str;
    /// The text of a (parsed, allowed) statement as this engine runs it, and the parameters
    /// still to bind (an engine may write them into the text instead). `database` is the
    /// name clients know the environment by (its slug).
    fn render(
        &self,
        statement: &sqlparser::ast::Statement,
        params: Vec<Param>,
        database: &str,
    ) -> (String, Vec<Param>);
    /// Creates the environment's storage (at provisioning).
    async fn provision(&self, env_id: &EnvId) -> Result<()>;
    /// Removes the environment's storage for good (at deletion).
    async fn remove(&self, env_id: &EnvId) -> Result<()>;
    /// A new connection to the environment's data.
    async fn connect(&self, env: &EnvRecord) -> Result<Box<dyn EngineConnection>>;
    /// A writer that fills the environment's (new, empty) database in one transaction: what
    /// a clone copies its source's data into.
    async fn sink(&self, env: &EnvRecord) -> Result<Box<dyn transfer::Sink>>;
    /// What the environment's data takes on disk, as the engine reports it (the storage
    /// quota's measure).
    async fn stored_bytes(&self, env: &EnvRecord) -> Result<u64>;
    /// Whether this node holds the environment's data (the embedded engine's file is here).
    fn holds(&self, _env_id: &EnvId) -> bool {
        false
    }
}

/// The engines environments keep their data in; `settings.engine` picks one.
#[derive(Clone)]
pub struct Engines {
    /// DuckDB: each environment's database file on its home node.
    pub embedded: Arc<dyn Engine>,
    /// PostgreSQL: the managed engine's databases and users' own.
    pub postgres: Arc<dyn Engine>,
    /// The managed engine `postgres` provisions databases on (`--engine-postgres-url`).
    pub managed: Option<Arc<managed_postgres::ManagedPostgres>>,
    /// What a new environment's data goes to unless its settings say.
    pub default_engine: EngineKind,
    /// This node, the home of the embedded environments it provisioned.
    pub home: Arc<Home>,
}

impl Engines {
    pub fn of(&self, env: &EnvRecord) -> &Arc<dyn Engine> {
        match env.settings.0.engine {
            EngineKind::Duckdb => &self.embedded,
            EngineKind::Postgres => &self.postgres,
        }
    }

    /// A new connection to the environment's data; an embedded environment answers only on
    /// its home node (elsewhere: 57P03 naming it).
    pub async fn connect(&self, env: &EnvRecord) -> Result<Box<dyn EngineConnection>> {
        if env.settings.0.placement() == Placement::Embedded {
            self.home.check(env).await?;
        }
        self.of(env).connect(env).await
    }

    /// What the environment's data takes on disk (an embedded environment's, on its home
    /// node only).
    pub async fn stored_bytes(&self, env: &EnvRecord) -> Result<u64> {
        if env.settings.0.placement() == Placement::Embedded {
            self.home.check(env).await?;
        }
        self.of(env).stored_bytes(env).await
    }

    /// Readies a new environment's storage where its settings place it: the embedded
    /// database file (this node becomes its home) or the managed engine's database.
    pub async fn provision(&self, env: &EnvRecord) -> Result<()> {
        match env.settings.0.placement() {
            Placement::Embedded => {
                self.home.check(env).await?;
                self.embedded.provision(&env.id).await
            }
            Placement::ManagedPostgres => self.postgres.provision(&env.id).await,
            Placement::OwnPostgres => Ok(()),
        }
    }

    /// Removes a deleted environment's storage and closes its connections. `false` when its
    /// embedded file is on another node that is alive: that node removes it.
    pub async fn remove(&self, env: &EnvRecord) -> Result<bool> {
        if !self.home.may_remove(env).await? {
            return Ok(false);
        }
        self.postgres.remove(&env.id).await?;
        self.embedded.remove(&env.id).await?;
        Ok(true)
    }
}

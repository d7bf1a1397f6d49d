//! The pipeline every statement goes through, from both doors, in the order of
//! docs/gateway.md:
//!
//! - 1, admission ([`crate::admission`]);
//! - 2, 3 and 8, parse, classify and translate Snowflake-style SQL for the engine
//!   ([`enclave_core::query::parse`]), remembered by text ([`enclave_core::query::Translations`]);
//! - 4, authorize ([`enclave_core::query::authorize`], plus the environment's and the
//!   credential's standing, and ABAC in [`crate::enforcement`]);
//! - 7, rewrite: masks and row filters under the query ([`crate::enforcement`],
//!   [`enclave_core::query::enforce`]);
//! - 5 and 6, estimate the statement's credits ([`enclave_core::query::cost`], from the
//!   engine's statistics: [`crate::statistics`]) and refuse it past the organization's
//!   remaining credits ([`crate::meter`]);
//! - 9, answer a read from the result cache when nothing it reads changed
//!   ([`crate::result_cache`]);
//! - 10, execute on the environment's engine with `settings.query_timeout_ms` and the row cap
//!   (the server's, at most the organization's `max_rows_per_query`);
//! - 11 and 12, meter and audit: one entry per statement, allowed or refused, with what it
//!   cost ([`crate::running::Ticket`], [`crate::audit`]);
//! - 13, respond: rows stream from the engine to the client as they come ([`Rows`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use duckdb::arrow::datatypes::SchemaRef;
use enclave_core::agent::Grant;
use enclave_core::audit::timestamp;
use enclave_core::billing::usage::UsageKind;
use enclave_core::billing::{Credits, Quotas};
use enclave_core::environment::{EnvStatus, EnvType};
use enclave_core::id::{new_id, EnvId, Kind as IdKind};
use enclave_core::query::audit::{QueryAuditEntry, QueryPrincipal};
use enclave_core::query::{
    self, sqlstate, with_sqlstate, Analyzed, Kind, SessionCommand, Translations,
};
use enclave_core::shadow::SideOutcome;
use enclave_core::{Error, Result};
use enclave_store::{EnvRecord, Invalidation, Store, UsageCharge};

use crate::admission::{Admission, Permit};
use crate::audit::AuditWriter;
use crate::capabilities::Capabilities;
use crate::enforcement::{self, Enforcement, ErrorPolicy, MaskKeys, PolicyAudit, PolicyState};
use crate::engine::{Engines, Param};
use crate::identity::Authenticator;
use crate::load::{LoadRequest, Loaded};
use crate::meter::{Meter, TierQuotas};
use crate::result_cache::ResultCache;
use crate::running::{outcome_of, timeout_error, Bill, Rows, Ticket, Timer};
use crate::session::Session;
use crate::session_functions;
use crate::shadow::{ShadowCapture, Shadowing};
use crate::statistics::Statistics;
use crate::storage::StorageMeter;

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Most rows a statement returns; the rest are left out (`truncated`).
    pub row_limit: u64,
    /// Statements that may wait per environment once its concurrency limit is reached.
    pub queue_limit: usize,
    /// Where loads are spooled (emptied at start).
    pub spool_dir: std::path::PathBuf,
    /// The largest load (HTTP import body or COPY data), in bytes.
    pub load_limit: u64,
    /// What one request's SQL may hold.
    pub sql_limits: query::Limits,
    /// Bytes of read results this node keeps (stage 9); 0 keeps none.
    pub result_cache_bytes: u64,
    /// Each tier's quotas as the server is configured (an organization's own changes apply
    /// on top).
    pub tier_quotas: TierQuotas,
    /// Shadow replays that may wait per node; past it, sampled reads are dropped (counted).
    pub shadow_queue: usize,
}

/// One request's time: an HTTP query, a wire `Query` message (every statement in it) or an
/// `Execute`. The environment's `query_timeout_ms`, or the caller's shorter `timeout_ms`,
/// bounds the whole request, not each of its statements.
#[derive(Debug, Clone, Copy)]
pub struct RequestClock {
    pub started: Instant,
    pub timeout_ms: Option<i64>,
}

impl RequestClock {
    pub fn start(timeout_ms: Option<i64>) -> RequestClock {
        RequestClock {
            started: Instant::now(),
            timeout_ms,
        }
    }
}

/// How deep a statement kept by the translation cache may nest.
const MAX_CACHED_DEPTH: usize = 64;

/// SQL texts longer than this are parsed on the blocking pool, a few at a time: parsing a
/// megabyte takes long enough to stall the other tasks of an async worker.
const INLINE_PARSE_BYTES: usize = 16 << 10;

/// The data plane's shared state.
pub struct Gateway {
    store: Arc<Store>,
    engines: Engines,
    auth: Arc<dyn Authenticator>,
    admission: Arc<Admission>,
    audit: AuditWriter,
    config: GatewayConfig,
    envs: Arc<RwLock<HashMap<EnvId, EnvRecord>>>,
    policies: Arc<PolicyState>,
    /// Long SQL texts parsed at once (each may take a large syntax tree's memory).
    parse_slots: tokio::sync::Semaphore,
    translations: Translations,
    results: Arc<ResultCache>,
    meter: Arc<Meter>,
    statistics: Arc<Statistics>,
    storage: Arc<StorageMeter>,
    capabilities: Arc<Capabilities>,
    shadowing: Arc<Shadowing>,
    /// Environments whose data is being moved to another engine: their statements wait
    /// outside (55006) until the move ends.
    moves: std::sync::Mutex<std::collections::HashSet<EnvId>>,
}

/// An environment closed to statements while its data moves; dropping it opens it again.
pub struct MoveGate {
    gateway: Arc<Gateway>,
    env_id: EnvId,
}

impl Drop for MoveGate {
    fn drop(&mut self) {
        self.gateway.moves.lock().unwrap().remove(&self.env_id);
    }
}

/// What stages 5 and 6 decided for a statement: its bill, and the quotas it runs under.
struct Budget {
    bill: Bill,
    quotas: Quotas,
}

/// What one statement produced.
pub enum Outcome {
    /// Rows streaming from the engine.
    Rows(Box<Rows>),
    /// A statement without rows: its command tag (`INSERT 0 3`, `CREATE TABLE`, `SET`), the
    /// rows it changed, and the warning PostgreSQL would give with it.
    Command {
        query_id: String,
        tag: String,
        rows: Option<u64>,
        notice: Option<Notice>,
        /// What it cost (stage 11).
        credits: Credits,
    },
    /// `SHOW name`: one value.
    Show {
        query_id: String,
        name: String,
        value: String,
    },
}

/// A warning answered with a statement that otherwise succeeded (a `NoticeResponse` on the
/// wire, `notices` over HTTP), as PostgreSQL gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Notice {
    pub sqlstate: &'static str,
    pub message: &'static str,
}

/// `BEGIN` inside a transaction and `COMMIT`/`ROLLBACK` outside one change nothing: PostgreSQL
/// answers them with a warning and goes on (clients such as psycopg2 under dbt rely on it),
/// where DuckDB would fail the statement.
fn redundant_transaction_control(in_transaction: bool, statement: &Analyzed) -> Option<Notice> {
    use sqlparser::ast::Statement as S;
    match &statement.statement {
        S::StartTransaction { .. } if in_transaction => Some(Notice {
            sqlstate: "25001",
            message: "there is already a transaction in progress",
        }),
        S::Commit { chain: false, .. }
        | S::Rollback {
            chain: false,
            savepoint: None,
        } if !in_transaction => Some(Notice {
            sqlstate: "25P01",
            message: "there is no transaction in progress",
        }),
        _ => None,
    }
}

/// Whether a statement may make the environment's data larger: what the storage quota
/// refuses once it is reached (deleting, truncating and dropping stay allowed).
fn adds_data(statement: &Analyzed) -> bool {
    use sqlparser::ast::Statement as S;
    match statement.kind {
        Kind::Write => !matches!(statement.statement, S::Delete(_) | S::Truncate { .. }),
        _ => statement.creates,
    }
}

/// Whether the session answers the statement itself, without the engine.
fn answered_by_session(in_transaction: bool, statement: &Analyzed) -> bool {
    matches!(&statement.session, Some(c) if !matches!(c, SessionCommand::Transaction))
        || redundant_transaction_control(in_transaction, statement).is_some()
}

impl Gateway {
    pub fn new(
        store: Arc<Store>,
        engines: Engines,
        auth: Arc<dyn Authenticator>,
        mask_keys: Arc<dyn MaskKeys>,
        config: GatewayConfig,
    ) -> Arc<Gateway> {
        let envs: Arc<RwLock<HashMap<EnvId, EnvRecord>>> = Arc::default();
        let weak = Arc::downgrade(&envs);
        store.bus().on_publish(move |event| {
            let Some(envs) = weak.upgrade() else { return };
            let mut envs = envs.write().unwrap();
            match event {
                Invalidation::Environment { env_id } => {
                    envs.remove(env_id);
                }
                Invalidation::OrgEnvironments { org_id } | Invalidation::Org { org_id } => {
                    envs.retain(|_, e| &e.org_id != org_id)
                }
                Invalidation::All => envs.clear(),
                _ => {}
            }
        });
        clear_spool(&config.spool_dir);
        let meter = Meter::start(store.clone(), config.tier_quotas.clone());
        let gateway = Arc::new(Gateway {
            policies: PolicyState::start(store.clone(), mask_keys),
            results: ResultCache::start(store.clone(), config.result_cache_bytes),
            audit: AuditWriter::start(store.clone(), meter.clone()),
            statistics: Statistics::start(&store),
            capabilities: Capabilities::start(store.clone()),
            shadowing: Shadowing::new(store.clone(), config.shadow_queue),
            storage: StorageMeter::new(store.clone(), engines.clone()),
            meter,
            admission: Admission::new(
                config.queue_limit,
                (store.backend() == enclave_store::Backend::Postgres)
                    .then(|| (store.clone(), engines.home.node().clone())),
            ),
            store,
            engines,
            auth,
            config,
            envs,
            parse_slots: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            translations: Translations::default(),
            moves: std::sync::Mutex::default(),
        });
        gateway.shadowing.start(Arc::downgrade(&gateway));
        gateway
    }

    pub fn engines(&self) -> &Engines {
        &self.engines
    }

    /// Whether other live nodes serve the store: then each environment's concurrency limit
    /// holds across all of them.
    pub fn set_clustered(&self, clustered: bool) {
        self.admission.set_clustered(clustered);
    }

    /// Closes the environment to statements for a move of its data, once the ones running
    /// have finished (within `patience`; otherwise 409 and nothing changes). The gate opens
    /// when the returned guard drops.
    pub async fn close_for_move(
        self: &Arc<Self>,
        env_id: &EnvId,
        patience: std::time::Duration,
    ) -> Result<MoveGate> {
        if !self.moves.lock().unwrap().insert(env_id.clone()) {
            return Err(Error::conflict(
                "move_in_progress",
                "the environment's data is already moving",
            ));
        }
        let gate = MoveGate {
            gateway: self.clone(),
            env_id: env_id.clone(),
        };
        let deadline = Instant::now() + patience;
        while self.admission.load(env_id).0 > 0 {
            if Instant::now() >= deadline {
                return Err(Error::conflict(
                    "statements_running",
                    "statements of the environment kept running: try the move again when they end",
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Ok(gate)
    }

    pub fn audit(&self) -> &AuditWriter {
        &self.audit
    }

    pub fn auth(&self) -> &Arc<dyn Authenticator> {
        &self.auth
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// The environment as the pipeline sees it (cached; every change drops the entry).
    async fn environment(&self, env_id: &EnvId) -> Result<EnvRecord> {
        if let Some(env) = self.envs.read().unwrap().get(env_id) {
            return Ok(env.clone());
        }
        let env = self
            .store
            .environment(env_id)
            .await?
            .ok_or_else(|| Error::not_found("environment"))?;
        self.envs
            .write()
            .unwrap()
            .insert(env_id.clone(), env.clone());
        Ok(env)
    }

    /// The slug clients name the environment by (`database` on the wire).
    pub async fn environment_slug(&self, env_id: &EnvId) -> Result<String> {
        Ok(self.environment(env_id).await?.slug)
    }

    /// What the environment's policies decide for the session's caller reading `tables` (an
    /// empty list: a statement without tables) — the evaluation stages 4 and 7 make, for the
    /// caller to see.
    pub async fn explain_access(
        &self,
        session: &Session,
        tables: &[String],
    ) -> Result<enclave_core::policy::evaluate::Evaluation> {
        let env = self.environment(&session.identity.env_id).await?;
        enforcement::explain(&self.policies, &self.engines, session, &env, tables).await
    }

    /// The columns a read statement returns, found by running it under `LIMIT 0` (with the
    /// caller's authorization, no rows and no audit entry: nothing is read).
    pub async fn describe(
        &self,
        session: &mut Session,
        statement: &Analyzed,
        params: Vec<Param>,
    ) -> Result<SchemaRef> {
        let env = self.check(session, statement, false).await?;
        let enforcement = self
            .enforce(session, &env, statement, params.len())
            .await
            .map_err(|(e, _)| e)?;
        let (sql, params) = self.render(session, &env, statement, params, &enforcement);
        let sql = format!("SELECT * FROM ({sql}) AS enclave_describe LIMIT 0");
        let conn = self.connection(session, &env).await?;
        let mut execution = conn.execute(&sql, params, 0).await?;
        while execution.batches.recv().await.is_some() {}
        Ok(execution.schema)
    }

    /// Stages 2, 3 and 8 for a whole string: its statements translated for the engine, or the
    /// refusal (audited) of the string. A text seen before is answered from the cache.
    pub async fn parse(&self, session: &Session, sql: &str) -> Result<Vec<Analyzed>> {
        let started = Instant::now();
        let dialect = self
            .engines
            .of(&self.environment(&session.identity.env_id).await?)
            .dialect();
        if let Some(statements) = self.translations.get(dialect, sql) {
            return Ok(statements);
        }
        let limits = self.config.sql_limits;
        let parsed = if sql.len() <= INLINE_PARSE_BYTES || sql.len() > limits.max_statement_bytes {
            query::parse_within(sql, dialect, &limits)
        } else {
            let _slot = self
                .parse_slots
                .acquire()
                .await
                .map_err(|_| Error::internal())?;
            let sql = sql.to_string();
            tokio::task::spawn_blocking(move || query::parse_within(&sql, dialect, &limits))
                .await
                .map_err(|_| Error::internal())?
        };
        match parsed {
            Ok(statements) => {
                // Deeply nested trees are not kept: copying or dropping one needs the larger
                // stack the parse ran on, which the cache's callers and evictions do not have.
                if statements.iter().all(|s| s.depth <= MAX_CACHED_DEPTH) {
                    self.translations
                        .insert(dialect, sql, Arc::new(statements.clone()));
                }
                Ok(statements)
            }
            Err(e) => {
                self.refused(session, None, started, &e);
                Err(e)
            }
        }
    }

    /// Stages 1 and 4–13 for one parsed statement.
    pub async fn execute(
        &self,
        session: &mut Session,
        statement: &Analyzed,
        params: Vec<Param>,
        clock: RequestClock,
    ) -> Result<Outcome> {
        let started = Instant::now();
        if answered_by_session(session.in_transaction, statement) {
            return self.answer_from_session(session, statement, started).await;
        }
        // Stage 1 before any other work on the statement.
        let (permit, deadline, timeout) =
            self.admit_first(session, statement, started, clock).await?;
        let env = match self.check(session, statement, true).await {
            Ok(env) => env,
            Err(e) => {
                self.refused(session, Some(statement), started, &e);
                return Err(e);
            }
        };
        if statement.copy_in.is_some() {
            // The wire door turns COPY … FROM STDIN into a load; no other door has a STDIN.
            let e = with_sqlstate(
                Error::validation(
                    "sql",
                    "copy_from_stdin",
                    "COPY … FROM STDIN needs the wire protocol; over HTTP, use POST /v1/environments/{env_id}/tables/{table}/import",
                ),
                "0A000",
            );
            self.refused(session, Some(statement), started, &e);
            return Err(e);
        }
        let (enforcement, budget) = self
            .enforce_and_budget(session, &env, statement, params.len(), started)
            .await?;
        let outcome = self
            .run(
                session,
                &env,
                statement,
                params,
                &enforcement,
                (deadline, timeout),
                permit,
                started,
                budget,
            )
            .await;
        self.after(session, &env, statement, outcome.is_ok()).await;
        outcome
    }

    /// A statement the session answers without the engine (`SET`, `SHOW`, a redundant
    /// `BEGIN`/`COMMIT`): authorized and audited, costing nothing and taking no slot.
    async fn answer_from_session(
        &self,
        session: &mut Session,
        statement: &Analyzed,
        started: Instant,
    ) -> Result<Outcome> {
        let env = match self.check(session, statement, true).await {
            Ok(env) => env,
            Err(e) => {
                self.refused(session, Some(statement), started, &e);
                return Err(e);
            }
        };
        if let Some(notice) = redundant_transaction_control(session.in_transaction, statement) {
            let query_id = self.answered(session, &env, statement, started);
            return Ok(Outcome::Command {
                query_id,
                tag: command_tag(statement),
                rows: None,
                notice: Some(notice),
                credits: Credits::ZERO,
            });
        }
        let query_id = self.answered(session, &env, statement, started);
        match &statement.session {
            Some(command) => self
                .session_command(session, command, query_id)
                .ok_or_else(Error::internal),
            None => Err(Error::internal()),
        }
    }

    /// Stage 1 for a statement that has not been authorized yet: its environment (as this
    /// node last saw it) and its organization's quotas bound the slots.
    async fn admit_first(
        &self,
        session: &Session,
        statement: &Analyzed,
        started: Instant,
        clock: RequestClock,
    ) -> Result<(Permit, Instant, Duration)> {
        let bounds = async {
            let env = self.environment(&session.identity.env_id).await?;
            let quotas = self.meter.quotas(&env.org_id).await?;
            Ok::<_, Error>((env, quotas))
        };
        let (env, quotas) = match bounds.await {
            Ok(x) => x,
            Err(e) => {
                self.refused(session, Some(statement), started, &e);
                return Err(e);
            }
        };
        self.admit(session, statement, &env, &quotas, started, clock)
            .await
    }

    /// Stage 4's ABAC and stage 7 for one statement.
    async fn enforce(
        &self,
        session: &Session,
        env: &EnvRecord,
        statement: &Analyzed,
        params: usize,
    ) -> std::result::Result<Enforcement, (Error, PolicyAudit)> {
        enforcement::apply(
            &self.policies,
            &self.engines,
            session,
            env,
            statement,
            params,
        )
        .await
    }

    /// Stage 4's ABAC and stage 7, then stages 5 and 6; a refusal by any of them is audited
    /// with what was decided.
    async fn enforce_and_budget(
        &self,
        session: &Session,
        env: &EnvRecord,
        statement: &Analyzed,
        params: usize,
        started: Instant,
    ) -> Result<(Enforcement, Budget)> {
        let enforcement = match self.enforce(session, env, statement, params).await {
            Ok(x) => x,
            Err((e, audit)) => {
                self.refused_with(session, Some(statement), started, &e, &audit, Credits::ZERO);
                return Err(e);
            }
        };
        match self.budget(session, env, statement).await {
            Ok(budget) => Ok((enforcement, budget)),
            Err((e, estimate)) => {
                let audit = &enforcement.audit;
                self.refused_with(session, Some(statement), started, &e, audit, estimate);
                Err(e)
            }
        }
    }

    /// Stages 5 and 6: the statement's estimate, from the engine's statistics when it scans a
    /// whole table, checked against the organization's remaining credits when it counts
    /// (production environments); its bill, and the quotas it runs under. A refusal comes
    /// with the estimate (for its audit entry).
    async fn budget(
        &self,
        session: &Session,
        env: &EnvRecord,
        statement: &Analyzed,
    ) -> std::result::Result<Budget, (Error, Credits)> {
        let quotas = self
            .meter
            .quotas(&env.org_id)
            .await
            .map_err(|e| (e, Credits::ZERO))?;
        if adds_data(statement) {
            self.meter
                .check_storage(&env.org_id)
                .await
                .map_err(|e| (e, Credits::ZERO))?;
        }
        let cost = &statement.cost;
        let counts = match cost.needs_statistics() {
            Some(_) => match self.statistics.row_counts(&self.engines, env).await {
                Ok(counts) => Some(counts),
                Err(e) => {
                    // No statistics: the estimate counts the scan's rows as unknown.
                    tracing::warn!(env_id = %env.id, error = %e.message, "cannot read table statistics");
                    None
                }
            },
            None => None,
        };
        let estimate = cost.estimate(
            |table| counts.as_ref().and_then(|c| c.get(table).copied()),
            self.row_cap(session, &quotas),
        );
        let limit = match env.env_type == EnvType::Prod && !cost.free {
            true => self
                .meter
                .check(&env.org_id, estimate)
                .await
                .map_err(|e| (e, estimate))?,
            false => None,
        };
        // Last, as it counts the estimate against the agent's day once it passes.
        if let Some(grant) = &session.capability {
            self.capabilities
                .check_credits(&env.id, grant, estimate)
                .await
                .map_err(|e| (e, estimate))?;
        }
        Ok(Budget {
            bill: Bill {
                charge: charge_of(env, statement, limit),
                base: cost.base(),
                free: cost.free,
                estimate,
            },
            quotas,
        })
    }

    /// The most rows a statement returns: the server's cap, at most the organization's, at
    /// most the agent's capability grant's, at most what the caller asked for.
    fn row_cap(&self, session: &Session, quotas: &Quotas) -> u64 {
        let grant = session
            .capability
            .as_ref()
            .and_then(|g| g.spec.max_rows_per_query);
        self.config
            .row_limit
            .min(quotas.max_rows_per_query)
            .min(grant.unwrap_or(u64::MAX))
            .min(session.max_rows.unwrap_or(u64::MAX))
    }

    /// The statement's text for the engine: as the policies rewrote it, with the parameters
    /// the rewrite added after the caller's.
    fn render(
        &self,
        session: &Session,
        env: &EnvRecord,
        statement: &Analyzed,
        mut params: Vec<Param>,
        enforcement: &Enforcement,
    ) -> (String, Vec<Param>) {
        let parsed = match &enforcement.rewrite {
            Some(r) => {
                params.extend(r.params.iter().cloned().map(Param::Text));
                &r.statement
            }
            None => &statement.statement,
        };
        statement.with_stack(|| {
            let engine = self.engines.of(env);
            if session_functions::mentions(parsed) {
                let id = &session.identity;
                let caller = id.email.as_deref().unwrap_or(&id.actor.id);
                let answered = session_functions::answered(parsed, caller);
                engine.render(&answered, params, &env.slug)
            } else {
                engine.render(parsed, params, &env.slug)
            }
        })
    }

    /// After DDL the policy rewrite reads the catalog again, here and on every node — once
    /// more at the end of the transaction, when what it made becomes visible to others.
    async fn after(&self, session: &mut Session, env: &EnvRecord, statement: &Analyzed, ok: bool) {
        use sqlparser::ast::Statement as S;
        match &statement.statement {
            S::StartTransaction { .. } if ok => session.in_transaction = true,
            S::Commit { .. }
            | S::Rollback {
                savepoint: None, ..
            } => {
                session.in_transaction = false;
                // What the transaction wrote is now what everyone reads (or is gone).
                if std::mem::take(&mut session.wrote_in_transaction) {
                    self.data_changed(env).await;
                }
            }
            _ => {}
        }
        if ok && statement.kind == Kind::Write {
            session.wrote_in_transaction |= session.in_transaction;
            self.data_changed(env).await;
        }
        let ddl = ok && statement.kind == Kind::Ddl;
        let transaction_ended = matches!(statement.session, Some(SessionCommand::Transaction));
        if ddl {
            // Created, filled or dropped tables change what the environment holds.
            self.storage.changed(env);
        }
        if ddl || (transaction_ended && session.ddl_pending) {
            session.ddl_pending = ddl;
            self.policies.catalog_changed(&env.id).await;
        }
    }

    /// Rows of the environment changed: cached results of it, on every node, are stale, and
    /// so are its statistics here.
    async fn data_changed(&self, env: &EnvRecord) {
        self.statistics.changed(&env.id);
        self.storage.changed(env);
        if self.results.enabled() && env.settings.0.cache_enabled {
            self.results.data_changed(&env.id).await;
        }
    }

    /// Whether a statement's answer may come from, and go to, the result cache: a query
    /// that reads only data (no clock or randomness), outside a transaction (which may hold
    /// its own uncommitted writes), in an environment with `settings.cache_enabled`.
    fn cacheable(&self, session: &Session, env: &EnvRecord, statement: &Analyzed) -> bool {
        self.results.enabled()
            && env.settings.0.cache_enabled
            && statement.cacheable
            && !session.in_transaction
    }

    /// Stage 1: a slot among the environment's concurrent statements, waited for until the
    /// request's deadline (refusals and timeouts are audited here).
    async fn admit(
        &self,
        session: &Session,
        statement: &Analyzed,
        env: &EnvRecord,
        quotas: &Quotas,
        started: Instant,
        clock: RequestClock,
    ) -> Result<(Permit, Instant, Duration)> {
        let limit = env.settings.0.query_timeout_ms;
        let timeout = Duration::from_millis(match clock.timeout_ms {
            Some(t) if t > 0 && t < limit => t as u64,
            _ => limit as u64,
        });
        let deadline = clock.started + timeout;
        if deadline <= Instant::now() {
            // The request's earlier statements used up its time.
            let e = timeout_error(timeout);
            self.finish(session, Some(statement), started, 0, "timeout", Some(&e));
            return Err(e);
        }
        match tokio::time::timeout_at(
            deadline.into(),
            self.admission.admit(
                &env.id,
                (env.settings.0.max_concurrent_queries as usize)
                    .min(quotas.max_concurrent_queries as usize),
                session.priority,
            ),
        )
        .await
        {
            Ok(Ok(p)) => Ok((p, deadline, timeout)),
            Ok(Err(e)) => {
                self.refused(session, Some(statement), started, &e);
                Err(e)
            }
            Err(_) => {
                let e = timeout_error(timeout);
                self.finish(session, Some(statement), started, 0, "timeout", Some(&e));
                Err(e)
            }
        }
    }

    /// A bulk load (HTTP import, `COPY … FROM STDIN`) through stages 1, 4–6 and 10–12,
    /// authorized and audited as its `COPY` statement; creating a missing table also needs
    /// what `CREATE TABLE` needs. Returns the query id and what was loaded.
    pub async fn load(
        &self,
        session: &mut Session,
        statement: &Analyzed,
        mut request: LoadRequest,
    ) -> Result<(String, Loaded)> {
        let started = Instant::now();
        let clock = RequestClock::start(None);
        let (permit, deadline, timeout) =
            self.admit_first(session, statement, started, clock).await?;
        let env = match self.check(session, statement, true).await {
            Ok(env) => env,
            Err(e) => {
                self.refused(session, Some(statement), started, &e);
                return Err(e);
            }
        };
        let (_, budget) = self
            .enforce_and_budget(session, &env, statement, 0, started)
            .await?;
        let mut may_not_create = None;
        if request.create {
            let ddl = query::parse(
                &format!("CREATE TABLE \"{}\" (c INTEGER)", request.table),
                self.engines.of(&env).dialect(),
            )?;
            if let Err(e) = query::authorize(&ddl[0], &session.principal()) {
                request.create = false;
                may_not_create = Some(e);
            }
        }
        let mut ticket = self.ticket(session, statement, started, permit, budget.bill);
        let query_id = ticket.query_id();
        let loaded = match self.connection(session, &env).await {
            Ok(conn) => conn.load(request, deadline).await,
            Err(e) => Err(e),
        };
        match loaded {
            Ok(loaded) => {
                ticket.rows = loaded.rows as i64;
                ticket.close("ok", None);
                if loaded.created {
                    self.policies.catalog_changed(&env.id).await;
                }
                self.data_changed(&env).await;
                Ok((query_id, loaded))
            }
            Err(e) => {
                let e = match (sqlstate(&e), may_not_create) {
                    ("57014", _) => timeout_error(timeout),
                    ("42P01", Some(denied)) => denied,
                    _ => e,
                };
                ticket.close(outcome_of(&e), Some(&e));
                Err(e)
            }
        }
    }

    /// Stage 4: the credential is still good, the environment is active, and the caller's
    /// role (and a key's scopes) allow the statement's kind. `runs`: the statement runs now
    /// (it counts in its agent's rate); a describe or the start of a `COPY` only looks.
    pub(crate) async fn check(
        &self,
        session: &mut Session,
        statement: &Analyzed,
        runs: bool,
    ) -> Result<EnvRecord> {
        if let Some(credential) = session.credential.clone() {
            // The verified-key and token caches answer this without Argon2id or the database;
            // it is what makes revocation, logout, expiry and suspension reach open sessions.
            let identity = credential
                .authenticate(self.auth.as_ref(), session.source_ip)
                .await?;
            if identity.env_id != session.identity.env_id {
                return Err(Error::unauthorized("the credential changed environment"));
            }
            session.identity = identity;
        }
        let env = self.environment(&session.identity.env_id).await?;
        if self.moves.lock().unwrap().contains(&env.id) {
            return Err(with_sqlstate(
                Error::unavailable(
                    "the environment's data is moving to the managed PostgreSQL engine: retry in a moment",
                ),
                "55006",
            ));
        }
        match env.status {
            EnvStatus::Active => {}
            EnvStatus::Suspended => {
                return Err(with_sqlstate(
                    Error::forbidden("environment_suspended", "the environment is suspended"),
                    "42501",
                ))
            }
            EnvStatus::Provisioning => {
                return Err(with_sqlstate(
                    Error::unavailable("the environment is still being provisioned"),
                    "57P03",
                ))
            }
            EnvStatus::Decommissioning => {
                return Err(with_sqlstate(Error::not_found("environment"), "3D000"))
            }
        }
        query::authorize(statement, &session.principal())?;
        session.capability = self.capability(session, &env, statement, runs).await?;
        Ok(env)
    }

    /// Stage 4's capability grant: the one the session's agent acts under, once the
    /// statement is within it (tables reached through views read from the policy catalog,
    /// only when the grant denies some).
    async fn capability(
        &self,
        session: &Session,
        env: &EnvRecord,
        statement: &Analyzed,
        runs: bool,
    ) -> Result<Option<Grant>> {
        let agent = session.agent.id.as_deref();
        let Some(grant) = self.capabilities.grant(env, agent, statement).await? else {
            return Ok(None);
        };
        let reached = match grant.spec.denied_tables.is_empty() {
            true => Vec::new(),
            false => self
                .policies
                .catalog(&self.engines, env, false)
                .await?
                .expand(&statement.tables),
        };
        self.capabilities
            .admit(&env.id, &grant, statement, &reached, runs)?;
        Ok(Some(grant))
    }

    /// `SET`, `SHOW`, `RESET`, `DISCARD` are answered from the session (with the statement's
    /// query id); transaction control goes on to the engine (`None`).
    fn session_command(
        &self,
        session: &mut Session,
        command: &SessionCommand,
        query_id: String,
    ) -> Option<Outcome> {
        let tag = match command {
            SessionCommand::Set { name, value } => {
                session.set(name, value);
                "SET"
            }
            SessionCommand::Show { name } => {
                return Some(Outcome::Show {
                    query_id,
                    name: name.clone(),
                    value: session.show(name).unwrap_or_default().to_string(),
                })
            }
            SessionCommand::Reset { name: Some(n) } => {
                session.parameters.remove(n);
                "RESET"
            }
            SessionCommand::Reset { name: None } => {
                session.parameters.clear();
                "RESET"
            }
            SessionCommand::Discard => {
                session.parameters.clear();
                "DISCARD ALL"
            }
            SessionCommand::Transaction => return None,
        };
        Some(Outcome::Command {
            query_id,
            tag: tag.to_string(),
            rows: None,
            notice: None,
            credits: Credits::ZERO,
        })
    }

    /// The session's engine connection, opened on first use (kept so transactions span
    /// statements).
    async fn connection<'s>(
        &self,
        session: &'s mut Session,
        env: &EnvRecord,
    ) -> Result<&'s mut Box<dyn crate::engine::EngineConnection>> {
        let placed = (env.settings.0.engine, env.settings.0.engine_secret.clone());
        if session.connection.is_some() && session.connected_to.as_ref() != Some(&placed) {
            // The environment's data moved (or its engine changed) since the session
            // connected: what its open transaction did stays behind, and is said to be lost.
            session.connection = None;
            if std::mem::take(&mut session.in_transaction) {
                session.wrote_in_transaction = false;
                return Err(with_sqlstate(
                    Error::conflict(
                        "engine_changed",
                        "the environment's data moved to another engine during this transaction, which was rolled back: run it again",
                    ),
                    "40001",
                ));
            }
        }
        if session.connection.is_none() {
            session.connection = Some(self.engines.connect(env).await?);
            session.connected_to = Some(placed);
        }
        Ok(session.connection.as_mut().expect("connected above"))
    }

    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        session: &mut Session,
        env: &EnvRecord,
        statement: &Analyzed,
        params: Vec<Param>,
        enforcement: &Enforcement,
        (deadline, timeout): (Instant, Duration),
        permit: Permit,
        started: Instant,
        budget: Budget,
    ) -> Result<Outcome> {
        // From here on the ticket writes the statement's audit entry, whatever happens.
        let row_cap = self.row_cap(session, &budget.quotas);
        let mut ticket = self.ticket(session, statement, started, permit, budget.bill);
        ticket.set_policy(&enforcement.audit);
        let errors = ErrorPolicy::of(enforcement);
        let shadow = self
            .shadow_capture(session, env, statement, &params, started)
            .await;
        let (sql, params) = self.render(session, env, statement, params, enforcement);
        let key = self
            .cacheable(session, env, statement)
            .then(|| self.results.key(&env.id, &sql, &params));
        if let Some(answer) = key.as_ref().and_then(|k| self.results.get(k)) {
            let mut rows = cached_rows(ticket, answer, command_tag(statement), errors);
            rows.shadow = shadow;
            return Ok(Outcome::Rows(Box::new(rows)));
        }
        let cancel = session.cancel.take();
        let peer = session.peer.clone();
        let conn = match self.connection(session, env).await {
            Ok(c) => c,
            Err(e) => {
                ticket.close("error", Some(&e));
                return Err(e);
            }
        };
        let timer = Timer::start(conn.interrupter(), deadline, cancel, peer);
        let conn = session.connection.as_mut().expect("connected above");
        let execution = match conn.execute(&sql, params, row_cap).await {
            Ok(x) => x,
            Err(e) => {
                let e = errors.explain(timer.explain(e, timeout));
                ticket.close(outcome_of(&e), Some(&e));
                return Err(e);
            }
        };
        let mut rows = Rows {
            query_id: ticket.query_id(),
            schema: execution.schema,
            batches: execution.batches,
            truncated: execution.truncated,
            timer,
            timeout,
            ticket,
            done: false,
            tag: command_tag(statement),
            errors,
            capture: key.map(|k| self.results.capture(k)),
            shadow,
            cache_hit: false,
        };
        if statement.kind == Kind::Read || returns_rows(statement, &rows.schema) {
            return Ok(Outcome::Rows(Box::new(rows)));
        }
        // Writes, DDL and transaction control: the engine's answer is a count at most.
        let count = rows.drain().await?;
        let tag = match (statement.kind, count) {
            (Kind::Write, Some(n)) if rows.tag == "INSERT" => format!("INSERT 0 {n}"),
            (Kind::Write, Some(n)) => format!("{} {n}", rows.tag),
            _ => rows.tag.clone(),
        };
        Ok(Outcome::Command {
            query_id: rows.query_id.clone(),
            tag,
            rows: count,
            notice: None,
            credits: rows.credits_consumed(),
        })
    }

    /// Where a read's answer is kept for its shadow replay, when the environment is shadowed
    /// and the read sampled (never inside a transaction, whose reads may see its own writes).
    async fn shadow_capture(
        &self,
        session: &Session,
        env: &EnvRecord,
        statement: &Analyzed,
        params: &[Param],
        started: Instant,
    ) -> Option<ShadowCapture> {
        if statement.kind != Kind::Read || session.in_transaction {
            return None;
        }
        let target = self.shadowing.sample(env).await?;
        Some(ShadowCapture::new(
            self.shadowing.clone(),
            env.id.clone(),
            target,
            session.identity.clone(),
            session.agent.clone(),
            session.door,
            session.source_ip,
            statement.clone(),
            params.to_vec(),
            started,
        ))
    }

    pub(crate) fn shadowing(&self) -> &Arc<Shadowing> {
        &self.shadowing
    }

    /// A shadow replay: the statement run again in `target` — its data, its policies and the
    /// agent's grant there — for the same principal, answered by the count and hash of its
    /// rows. Not admitted, metered or audited: the report is its record.
    pub(crate) async fn replay(&self, job: &crate::shadow::Job, target: &EnvId) -> SideOutcome {
        let started = Instant::now();
        let failed = |e: &Error| {
            SideOutcome::failed(
                sqlstate(e),
                &e.message,
                started.elapsed().as_millis() as i64,
            )
        };
        if job.identity.grant.is_some() {
            let e = Error::forbidden(
                "jit:other_environment",
                "the statement ran with a just-in-time grant of the shadowed environment, which does not reach the target",
            );
            return failed(&with_sqlstate(e, "42501"));
        }
        let env = match self.environment(target).await {
            Ok(env) if env.status == EnvStatus::Active => env,
            Ok(_) => {
                return failed(&with_sqlstate(
                    Error::unavailable("the shadow target is not active"),
                    "55000",
                ))
            }
            Err(e) => return failed(&e),
        };
        let mut identity = job.identity.clone();
        identity.env_id = env.id.clone();
        let mut session = Session::new(identity, None, job.door, job.source_ip);
        session.agent = job.agent.clone();
        let dialect = self.engines.of(&env).dialect();
        let statement =
            match query::parse_within(&job.statement.sql, dialect, &self.config.sql_limits)
                .map(|mut s| s.pop())
            {
                Ok(Some(s)) => s,
                Ok(None) => return failed(&Error::internal()),
                Err(e) => return failed(&e),
            };
        if let Err(e) = query::authorize(&statement, &session.principal()) {
            return failed(&e);
        }
        match self.capability(&session, &env, &statement, false).await {
            Ok(grant) => session.capability = grant,
            Err(e) => return failed(&e),
        }
        let enforcement = match self
            .enforce(&session, &env, &statement, job.params.len())
            .await
        {
            Ok(x) => x,
            Err((e, _)) => return failed(&e),
        };
        let row_cap = match self.meter.quotas(&env.org_id).await {
            Ok(q) => self.row_cap(&session, &q),
            Err(e) => return failed(&e),
        };
        let (sql, params) =
            self.render(&session, &env, &statement, job.params.clone(), &enforcement);
        let timeout = Duration::from_millis(env.settings.0.query_timeout_ms.max(1) as u64);
        let deadline = started + timeout;
        let mut conn =
            match tokio::time::timeout_at(deadline.into(), self.engines.connect(&env)).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => return failed(&e),
                Err(_) => return failed(&timeout_error(timeout)),
            };
        let interrupter = conn.interrupter();
        let run = async {
            let mut execution = conn.execute(&sql, params, row_cap).await?;
            crate::shadow::hash_stream(&mut execution.batches).await
        };
        match tokio::time::timeout_at(deadline.into(), run).await {
            Ok(Ok(hash)) => SideOutcome::rows(
                hash.rows(),
                hash.hex(),
                started.elapsed().as_millis() as i64,
            ),
            Ok(Err(e)) => failed(&e),
            Err(_) => {
                // The engine stops the statement too, not only the wait for it.
                interrupter.interrupt();
                failed(&timeout_error(timeout))
            }
        }
    }

    /// The ticket of an admitted statement: its slot and its audit entry, written when the
    /// ticket closes (or is dropped).
    fn ticket(
        &self,
        session: &Session,
        statement: &Analyzed,
        started: Instant,
        permit: Permit,
        bill: Bill,
    ) -> Ticket {
        Ticket {
            writer: self.audit.clone(),
            entry: Some(self.entry(session, Some(statement))),
            started,
            rows: 0,
            _permit: Some(permit),
            bill: Some(bill),
            consumed: Credits::ZERO,
        }
    }

    /// A draft audit entry for a statement of `session` (outcome filled in later).
    fn entry(&self, session: &Session, statement: Option<&Analyzed>) -> QueryAuditEntry {
        QueryAuditEntry {
            query_id: new_id(IdKind::Query),
            env_id: session.identity.env_id.clone(),
            seq: 0,
            principal: QueryPrincipal {
                actor: session.identity.actor.clone(),
                role: session.identity.role.as_str().to_string(),
                grant: session.identity.grant.as_ref().map(|g| g.to_string()),
            },
            agent: session.agent.clone(),
            door: session.door.as_str().to_string(),
            source_ip: session.source_ip.map(|ip| ip.to_string()),
            sql_redacted: statement.map(|s| s.redacted.clone()),
            statement_kind: statement.map(|s| s.kind.as_str().to_string()),
            tables: statement.map(|s| s.tables.clone()).unwrap_or_default(),
            columns_masked: vec![],
            row_filters_applied: vec![],
            policy_verdicts: vec![],
            rows_returned: 0,
            duration_ms: 0,
            credits_estimated: Credits::ZERO,
            credits_consumed: Credits::ZERO,
            cache_hit: false,
            outcome: String::new(),
            error_code: None,
            created_at: timestamp(enclave_core::clock::now_ms()),
            prev_hash: String::new(),
            entry_hash: String::new(),
        }
    }

    pub(crate) fn refused(
        &self,
        session: &Session,
        statement: Option<&Analyzed>,
        started: Instant,
        e: &Error,
    ) {
        let none = PolicyAudit::default();
        self.refused_with(session, statement, started, e, &none, Credits::ZERO);
    }

    /// A refusal, with what the policies said about the statement.
    pub(crate) fn refused_with(
        &self,
        session: &Session,
        statement: Option<&Analyzed>,
        started: Instant,
        e: &Error,
        audit: &PolicyAudit,
        estimate: Credits,
    ) {
        let mut entry = self.entry(session, statement);
        let query_id = entry.query_id.clone();
        entry.duration_ms = started.elapsed().as_millis() as i64;
        entry.credits_estimated = estimate;
        entry.outcome = "refused".to_string();
        entry.error_code = Some(sqlstate(e).to_string());
        audit.fill(&mut entry);
        self.audit.record(entry, None);
        tracing::debug!(%query_id, error = %e.message, "statement refused");
    }

    /// Writes the audit entry of a statement that is over; returns its query id.
    pub(crate) fn finish(
        &self,
        session: &Session,
        statement: Option<&Analyzed>,
        started: Instant,
        rows: i64,
        outcome: &str,
        error: Option<&Error>,
    ) -> String {
        let mut entry = self.entry(session, statement);
        let query_id = entry.query_id.clone();
        entry.rows_returned = rows;
        entry.duration_ms = started.elapsed().as_millis() as i64;
        entry.outcome = outcome.to_string();
        entry.error_code = error.map(|e| sqlstate(e).to_string());
        self.audit.record(entry, None);
        query_id
    }

    /// Writes the audit entry of a statement the session answered itself (`SET`, `SHOW`, a
    /// redundant `BEGIN`): it costs nothing, and counts among the statements of its usage.
    fn answered(
        &self,
        session: &Session,
        env: &EnvRecord,
        statement: &Analyzed,
        started: Instant,
    ) -> String {
        let mut entry = self.entry(session, Some(statement));
        let query_id = entry.query_id.clone();
        entry.duration_ms = started.elapsed().as_millis() as i64;
        entry.outcome = "ok".to_string();
        let charge = UsageCharge {
            at_ms: enclave_core::clock::now_ms(),
            ..charge_of(env, statement, None)
        };
        self.audit.record(entry, Some(charge));
        query_id
    }
}

/// The usage a statement of `env` records, its time and credits still to fill in; production
/// statements count against the organization's monthly credits (`limit`).
fn charge_of(env: &EnvRecord, statement: &Analyzed, limit: Option<Credits>) -> UsageCharge {
    UsageCharge {
        org_id: env.org_id.clone(),
        env_id: env.id.clone(),
        at_ms: 0,
        kind: UsageKind::of(statement),
        counted: env.env_type == EnvType::Prod,
        credits: Credits::ZERO,
        limit,
    }
}

/// Loads interrupted by a crash leave their spool files behind; nothing can resume them.
fn clear_spool(dir: &std::path::Path) {
    if let Err(e) = std::fs::create_dir_all(dir) {
        tracing::error!(error = %e, dir = %dir.display(), "cannot create the spool directory");
        return;
    }
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().extension().is_some_and(|x| x == "spool") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The first words of a statement's PostgreSQL command tag.
fn command_tag(statement: &Analyzed) -> String {
    use sqlparser::ast::Statement as S;
    match &statement.statement {
        S::Query(_) | S::Explain { .. } | S::ExplainTable { .. } => "SELECT".into(),
        S::Insert(_) => "INSERT".into(),
        S::Update(_) => "UPDATE".into(),
        S::Delete(_) => "DELETE".into(),
        S::Merge(_) => "MERGE".into(),
        S::Copy { .. } => "COPY".into(),
        S::StartTransaction { .. } => "BEGIN".into(),
        S::Commit { .. } => "COMMIT".into(),
        S::Rollback { .. } => "ROLLBACK".into(),
        _ => {
            // DDL: `CREATE TABLE`, `DROP VIEW`, `ALTER TABLE`, … (the first two keywords).
            let text = statement.sql.to_ascii_uppercase();
            let words: Vec<&str> = text
                .split_whitespace()
                .filter(|w| !matches!(*w, "OR" | "REPLACE" | "TEMPORARY" | "TEMP" | "UNIQUE"))
                .take(2)
                .collect();
            words.join(" ")
        }
    }
}

/// Rows answered from the result cache: the kept batches, streamed as an engine's would be,
/// with the statement's own audit entry marked as a cache hit.
fn cached_rows(
    mut ticket: Ticket,
    answer: Arc<crate::result_cache::Answer>,
    tag: String,
    errors: ErrorPolicy,
) -> Rows {
    if let Some(entry) = ticket.entry.as_mut() {
        entry.cache_hit = true;
    }
    let (tx, rx) = tokio::sync::mpsc::channel(answer.batches.len().max(1));
    for batch in &answer.batches {
        let _ = tx.try_send(Ok(batch.clone()));
    }
    Rows {
        query_id: ticket.query_id(),
        schema: answer.schema.clone(),
        batches: rx,
        truncated: Arc::new(std::sync::atomic::AtomicBool::new(answer.truncated)),
        timer: Timer::idle(),
        timeout: Duration::ZERO,
        ticket,
        done: false,
        tag,
        errors,
        capture: None,
        shadow: None,
        cache_hit: true,
    }
}

/// `INSERT … RETURNING` and the like answer with rows rather than a count.
fn returns_rows(statement: &Analyzed, schema: &SchemaRef) -> bool {
    statement.kind == Kind::Write
        && !(schema.fields().len() == 1 && schema.field(0).name() == "Count")
}

//! Stage 4's ABAC and stage 7, rewrite, as the gateway runs them: the environment's policies
//! (compiled once, dropped when they change on any node), the engine's catalog (read once,
//! dropped after DDL on any node and at the latest after [`CATALOG_TTL`]), the
//! environment's `hash` mask key, and what each statement's audit entry says about them.
//!
//! The rules themselves live in `enclave-core` (`policy::evaluate`, `query::enforce`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use enclave_core::id::EnvId;
use enclave_core::policy::abac::AbacAction;
use enclave_core::policy::evaluate::{Decision, Evaluation, PolicySet, Request};
use enclave_core::policy::{MaskFunction, PolicyBody};
use enclave_core::query::catalog::{Catalog, Column, Relation, RelationKind};
use enclave_core::query::enforce::{
    enforce, max_placeholder, request_tables, Enforced, WITH_CHECK_MARK,
};
use enclave_core::query::{self, sqlstate, with_sqlstate, Analyzed, Dialect, Kind};
use enclave_core::{Error, ErrorCode, Result};
use enclave_store::{EnvRecord, Invalidation, Store};
use serde_json::{json, Value};
use sqlparser::ast::Statement;

use crate::engine::Engines;
use crate::results::json_rows;
use crate::session::Session;

/// How long a catalog read is trusted without a DDL notice: the backstop for changes made
/// to a PostgreSQL engine's database outside Enclave.
pub const CATALOG_TTL: Duration = Duration::from_secs(30);

/// The environment's key for `hash` masks.
#[async_trait::async_trait]
pub trait MaskKeys: Send + Sync + 'static {
    async fn mask_key(&self, env_id: &EnvId) -> Result<String>;
}

/// An environment's enabled policies, compiled.
pub(crate) struct Policies {
    set: PolicySet,
    /// Whether any is a masking or row-level policy (only then is the catalog needed).
    data_rules: bool,
    empty: bool,
}

/// The policy caches of one node.
pub(crate) struct PolicyState {
    store: Arc<Store>,
    keys: Arc<dyn MaskKeys>,
    policies: RwLock<HashMap<EnvId, Arc<Policies>>>,
    catalogs: RwLock<HashMap<EnvId, (Arc<Catalog>, Instant)>>,
    mask_keys: RwLock<HashMap<EnvId, String>>,
    /// Bumped by every invalidation: a value read meanwhile is used but not kept.
    generation: AtomicU64,
}

impl PolicyState {
    pub(crate) fn start(store: Arc<Store>, keys: Arc<dyn MaskKeys>) -> Arc<PolicyState> {
        let state = Arc::new(PolicyState {
            store: store.clone(),
            keys,
            policies: RwLock::default(),
            catalogs: RwLock::default(),
            mask_keys: RwLock::default(),
            generation: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&state);
        store.bus().on_publish(move |event| {
            if let Some(state) = weak.upgrade() {
                state.invalidate(event);
            }
        });
        state
    }

    fn invalidate(&self, event: &Invalidation) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        match event {
            Invalidation::Policies { env_id } => {
                self.policies.write().unwrap().remove(env_id);
            }
            Invalidation::Catalog { env_id } => {
                self.catalogs.write().unwrap().remove(env_id);
            }
            Invalidation::Environment { env_id } => {
                self.policies.write().unwrap().remove(env_id);
                self.catalogs.write().unwrap().remove(env_id);
                self.mask_keys.write().unwrap().remove(env_id);
            }
            Invalidation::All => {
                self.policies.write().unwrap().clear();
                self.catalogs.write().unwrap().clear();
                self.mask_keys.write().unwrap().clear();
            }
            _ => {}
        }
    }

    async fn policies(&self, env_id: &EnvId) -> Result<Arc<Policies>> {
        if let Some(p) = self.policies.read().unwrap().get(env_id) {
            return Ok(p.clone());
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let records = self.store.env_policies(env_id).await?;
        let set = PolicySet::compile(records.iter().map(|r| (r.id.as_str(), &r.spec.0))).map_err(
            |e| {
                tracing::error!(env_id = %env_id, error = %e, "a stored policy does not compile");
                Error::internal()
            },
        )?;
        let enabled = records.iter().filter(|r| r.spec.0.enabled);
        let data_rules = enabled
            .clone()
            .any(|r| !matches!(r.spec.0.body, PolicyBody::Abac(_)));
        let policies = Arc::new(Policies {
            set,
            data_rules,
            empty: enabled.count() == 0,
        });
        if self.generation.load(Ordering::SeqCst) == generation {
            self.policies
                .write()
                .unwrap()
                .insert(env_id.clone(), policies.clone());
        }
        Ok(policies)
    }

    async fn mask_key(&self, env_id: &EnvId) -> Result<String> {
        if let Some(k) = self.mask_keys.read().unwrap().get(env_id) {
            return Ok(k.clone());
        }
        let key = self.keys.mask_key(env_id).await?;
        self.mask_keys
            .write()
            .unwrap()
            .insert(env_id.clone(), key.clone());
        Ok(key)
    }

    pub(crate) async fn catalog(
        &self,
        engines: &Engines,
        env: &EnvRecord,
        fresh: bool,
    ) -> Result<Arc<Catalog>> {
        if !fresh {
            if let Some((c, at)) = self.catalogs.read().unwrap().get(&env.id) {
                if at.elapsed() < CATALOG_TTL {
                    return Ok(c.clone());
                }
            }
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let engine = engines.of(env);
        let mut conn = engines.connect(env).await?;
        let mut execution = conn
            .execute(engine.catalog_query(), vec![], u64::MAX)
            .await?;
        let mut relations: Vec<Relation> = Vec::new();
        while let Some(batch) = execution.batches.recv().await {
            for row in json_rows(&batch?) {
                let text = |i: usize| row[i].as_str().unwrap_or_default().to_string();
                let (schema, name) = (text(0), text(1));
                if relations
                    .last()
                    .is_none_or(|r| r.schema != schema || r.name != name)
                {
                    let view = text(2).eq_ignore_ascii_case("VIEW");
                    relations.push(Relation {
                        reads: if view {
                            view_reads(&text(5), &name, engine.dialect())
                        } else {
                            None
                        },
                        kind: if view {
                            RelationKind::View
                        } else {
                            RelationKind::Table
                        },
                        schema,
                        name,
                        columns: vec![],
                    });
                }
                relations
                    .last_mut()
                    .expect("pushed above")
                    .columns
                    .push(Column {
                        name: text(3),
                        data_type: text(4),
                    });
            }
        }
        let catalog = Arc::new(Catalog::new(relations));
        if self.generation.load(Ordering::SeqCst) == generation {
            self.catalogs
                .write()
                .unwrap()
                .insert(env.id.clone(), (catalog.clone(), Instant::now()));
        }
        Ok(catalog)
    }

    /// After DDL: this node's catalog and every other node's are read again.
    pub(crate) async fn catalog_changed(&self, env_id: &EnvId) {
        let event = Invalidation::Catalog {
            env_id: env_id.clone(),
        };
        if let Err(e) = self.store.announce(vec![event.clone()]).await {
            tracing::warn!(env_id = %env_id, error = %e.message, "cannot announce a catalog change");
            self.invalidate(&event);
        }
    }
}

/// The engines' own catalogs (what psql's `\d` reads): never tables of the environment.
fn system_relation(parts: &[String]) -> bool {
    let first = parts[0].to_ascii_lowercase();
    matches!(first.as_str(), "information_schema" | "pg_catalog")
        || (parts.len() == 1 && first.starts_with("pg_"))
}

/// The relations a view's definition names; `None` when it cannot be read.
fn view_reads(definition: &str, view: &str, dialect: Dialect) -> Option<Vec<String>> {
    let statements = query::parse(definition, dialect).ok()?;
    let [statement] = statements.as_slice() else {
        return None;
    };
    // DuckDB keeps `CREATE VIEW v AS …`; PostgreSQL only the query.
    let own = |t: &String| {
        matches!(statement.statement, Statement::CreateView(_)) && t.eq_ignore_ascii_case(view)
    };
    Some(
        statement
            .relations
            .iter()
            .filter(|t| !own(t))
            .cloned()
            .collect(),
    )
}

/// What the policies did to one statement: the rewrite (if any) and the audit's account.
#[derive(Default)]
pub(crate) struct Enforcement {
    pub(crate) rewrite: Option<Enforced>,
    pub(crate) audit: PolicyAudit,
}

/// The policy fields of a query audit entry.
#[derive(Debug, Clone, Default)]
pub struct PolicyAudit {
    pub columns_masked: Vec<String>,
    pub row_filters_applied: Vec<String>,
    pub policy_verdicts: Vec<Value>,
}

impl PolicyAudit {
    pub(crate) fn fill(&self, entry: &mut enclave_core::query::audit::QueryAuditEntry) {
        entry.columns_masked = self.columns_masked.clone();
        entry.row_filters_applied = self.row_filters_applied.clone();
        entry.policy_verdicts = self.policy_verdicts.clone();
    }

    /// The verdicts of ABAC policies (enforced and shadow) in an evaluation.
    fn abac_verdicts(eval: &Evaluation) -> Vec<Value> {
        let mut verdicts = Vec::new();
        for m in &eval.matched {
            if let Some(effect) = m.effect {
                let effect = serde_json::to_value(effect).unwrap_or(Value::Null);
                let action = match (m.mode, effect.as_str()) {
                    (enclave_core::policy::PolicyMode::Shadow, Some(e)) => format!("would_{e}"),
                    (_, Some(e)) => e.to_string(),
                    _ => continue,
                };
                verdicts.push(json!({"policy_id": m.policy_id, "name": m.name, "action": action, "mode": m.mode, "tables": m.tables}));
            }
        }
        if let Some(p) = &eval.shadow.would_deny {
            let known = verdicts
                .iter()
                .any(|v| v["policy_id"] == p.policy_id && v["action"] == "would_deny");
            if !known {
                verdicts.push(json!({"policy_id": p.policy_id, "name": p.name, "action": "would_deny", "mode": "shadow"}));
            }
        }
        verdicts
    }

    fn of(eval: &Evaluation) -> PolicyAudit {
        let mut verdicts = Self::abac_verdicts(eval);
        let mut mask_verdicts = |masks: &[enclave_core::policy::evaluate::ColumnMask],
                                 action: &str,
                                 mode: &str| {
            for m in masks {
                verdicts.push(json!({"policy_id": m.policy_id, "name": m.policy_name, "action": action, "mode": mode,
                    "table": m.table, "column": m.column, "function": m.function}));
            }
        };
        mask_verdicts(&eval.masks, "mask", "enforce");
        mask_verdicts(&eval.shadow.would_mask, "would_mask", "shadow");
        for (filters, action, mode) in [
            (&eval.row_filters, "filter", "enforce"),
            (&eval.shadow.would_filter, "would_filter", "shadow"),
        ] {
            for f in filters {
                for s in &f.sources {
                    verdicts.push(json!({"policy_id": s.policy_id, "name": s.policy_name, "action": action, "mode": mode, "table": f.table}));
                }
            }
        }
        PolicyAudit {
            columns_masked: vec![],
            row_filters_applied: vec![],
            policy_verdicts: verdicts,
        }
    }
}

/// The ABAC action a statement is.
fn action_of(statement: &Analyzed) -> AbacAction {
    match statement.kind {
        Kind::Read | Kind::Session => AbacAction::Query,
        Kind::Write => match statement.statement {
            Statement::Delete(_) | Statement::Truncate(_) => AbacAction::Delete,
            _ => AbacAction::Write,
        },
        Kind::Ddl => AbacAction::Ddl,
    }
}

/// The refusal of a denied evaluation: 42501, naming the rule and the policy.
pub fn violation(eval: &Evaluation) -> Error {
    let policy = eval.denied_by.as_ref();
    with_sqlstate(
        Error::new(ErrorCode::PolicyViolation, eval.message.clone()).with_details(json!({
            "rule": eval.reason,
            "policy_id": policy.map(|p| p.policy_id.clone()),
            "policy_name": policy.map(|p| p.name.clone()),
        })),
        "42501",
    )
}

/// What the policies decide for `session` reading `tables`: the evaluation [`apply`] makes
/// for a query of them, without a statement.
pub(crate) async fn explain(
    state: &PolicyState,
    engines: &Engines,
    session: &Session,
    env: &EnvRecord,
    tables: &[String],
) -> Result<Evaluation> {
    let policies = state.policies(&env.id).await?;
    let catalog = match policies.data_rules {
        true => Some(state.catalog(engines, env, false).await?),
        false => None,
    };
    let request = Request {
        org_id: env.org_id.clone(),
        env_id: env.id.clone(),
        action: AbacAction::Query,
        tables: request_tables(catalog.as_deref(), tables),
        ip: session.source_ip,
        at: enclave_core::clock::now(),
    };
    Ok(policies.set.evaluate(&session.principal(), &request))
}

/// Applies the environment's policies to one statement: ABAC (refusing with the policy's
/// name), then masks and row filters. A refusal comes with what the audit should say.
pub(crate) async fn apply(
    state: &PolicyState,
    engines: &Engines,
    session: &Session,
    env: &EnvRecord,
    statement: &Analyzed,
    params: usize,
) -> std::result::Result<Enforcement, (Error, PolicyAudit)> {
    let plain = |e: Error| (e, PolicyAudit::default());
    if statement.kind == Kind::Session {
        return Ok(Enforcement::default());
    }
    let policies = state.policies(&env.id).await.map_err(plain)?;
    if policies.empty {
        return Ok(Enforcement::default());
    }
    let dialect = engines.of(env).dialect();
    let mut fresh = false;
    loop {
        let catalog = match policies.data_rules {
            true => Some(state.catalog(engines, env, fresh).await.map_err(plain)?),
            false => None,
        };
        // A name the catalog does not know may be a table or view made since it was read:
        // read it again once before deciding what applies.
        if let Some(c) = &catalog {
            let unknown = statement.tables.iter().any(|t| {
                let parts = enclave_core::query::catalog::split(t);
                !system_relation(&parts) && c.resolve(&parts).is_none()
            });
            if unknown && !fresh {
                fresh = true;
                continue;
            }
        }
        let request = Request {
            org_id: env.org_id.clone(),
            env_id: env.id.clone(),
            action: action_of(statement),
            tables: request_tables(catalog.as_deref(), &statement.relations),
            ip: session.source_ip,
            at: enclave_core::clock::now(),
        };
        let eval = policies.set.evaluate(&session.principal(), &request);
        let mut audit = PolicyAudit::of(&eval);
        if eval.decision == Decision::Deny {
            return Err((violation(&eval), audit));
        }
        if session.export && statement.kind == Kind::Read {
            // A download is a read and an export: both must be allowed.
            let export = Request {
                action: AbacAction::Export,
                ..request.clone()
            };
            let verdict = policies.set.evaluate(&session.principal(), &export);
            audit
                .policy_verdicts
                .extend(PolicyAudit::abac_verdicts(&verdict));
            if verdict.decision == Decision::Deny {
                return Err((violation(&verdict), audit));
            }
        }
        let Some(catalog) = catalog else {
            return Ok(Enforcement {
                rewrite: None,
                audit,
            });
        };
        let used = max_placeholder(&statement.statement);
        if used > params && !(eval.masks.is_empty() && eval.row_filters.is_empty()) {
            let e = Error::validation(
                "params",
                "count",
                format!("the statement uses ${used} but {params} parameters were given"),
            );
            return Err((with_sqlstate(e, "08P01"), audit));
        }
        let hash_key = match eval.masks.iter().any(|m| m.function == MaskFunction::Hash) {
            true => Some(
                state
                    .mask_key(&env.id)
                    .await
                    .map_err(|e| (e, audit.clone()))?,
            ),
            false => None,
        };
        match enforce(
            statement,
            &eval,
            &catalog,
            dialect,
            params,
            hash_key.as_deref(),
        ) {
            Ok(rewrite) => {
                if let Some(r) = &rewrite {
                    audit.columns_masked = r.columns_masked.clone();
                    audit.row_filters_applied = r.row_filters.clone();
                }
                return Ok(Enforcement { rewrite, audit });
            }
            // A relation the catalog did not know: read it again once (it may be new).
            Err(e) if sqlstate(&e) == "42P01" && !fresh => fresh = true,
            Err(e) => {
                let e = if sqlstate(&e) == "42P01" {
                    with_sqlstate(
                        Error::validation(
                            "sql",
                            "policy_catalog",
                            format!(
                                "relation \"{}\" does not exist (policies apply to it, so it must be a table or view of the environment)",
                                e.details["relation"].as_str().unwrap_or_default()
                            ),
                        ),
                        "42P01",
                    )
                } else {
                    e
                };
                return Err((e, audit));
            }
        }
    }
}

/// How an engine error of a rewritten statement is reported.
#[derive(Debug, Clone, Default)]
pub(crate) struct ErrorPolicy {
    /// The row filter policies of the statement's INSERT check.
    with_check: Option<(Vec<String>, Vec<String>)>,
    /// Row filters applied: data errors (class 22) are reported without the engine's text,
    /// which could quote a value of a hidden row (a filter's own cast, say).
    withhold: bool,
}

impl ErrorPolicy {
    pub(crate) fn of(enforcement: &Enforcement) -> ErrorPolicy {
        match &enforcement.rewrite {
            None => ErrorPolicy::default(),
            Some(r) => ErrorPolicy {
                with_check: matches!(r.statement, Statement::Insert(_))
                    .then(|| (r.filter_policies.clone(), r.row_filters.clone())),
                withhold: !r.row_filters.is_empty(),
            },
        }
    }

    pub(crate) fn explain(&self, e: Error) -> Error {
        if let Some((policies, tables)) = &self.with_check {
            if e.message.contains(WITH_CHECK_MARK) {
                return with_sqlstate(
                    Error::new(
                        ErrorCode::PolicyViolation,
                        format!(
                            "new row violates the row filter on {} (policy {}): an INSERT may only add rows you could read",
                            tables.join(", "),
                            policies.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
                        ),
                    )
                    .with_details(json!({"rule": "with_check", "policies": policies, "tables": tables})),
                    "42501",
                );
            }
        }
        let state = sqlstate(&e).to_string();
        if self.withhold && state.starts_with("22") {
            return with_sqlstate(
                Error::new(
                    ErrorCode::ValidationError,
                    format!(
                        "data exception ({state}); the engine's message is withheld because row filters apply to this statement"
                    ),
                )
                .with_details(json!({"rule": "engine"})),
                &state,
            );
        }
        e
    }
}

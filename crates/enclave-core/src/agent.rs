//! AI agents in an environment (docs/provisioning.md): the registry's view of an agent, and
//! capability grants — what one agent may do on top of what its key or person may. A grant
//! only narrows: every rule here can refuse a statement, none can allow one the pipeline's own
//! authorization refused. Pure: the store keeps grants, the gateway applies them at stage 4.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::billing::Credits;
use crate::error::{Error, ErrorCode, Result};
use crate::policy::table::{table_name, TableRef};
use crate::query::Kind;

/// The longest agent id (they come from clients: `X-Agent-Id`, `application_name`).
pub const MAX_AGENT_ID_LEN: usize = 128;
/// The most tables one grant lists (allowed and denied each).
pub const MAX_TABLES: usize = 500;

/// What a statement does, as a grant allows it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Reads (`SELECT`, `EXPLAIN`).
    Query,
    /// Row changes (`INSERT`, `UPDATE`, `DELETE`, `MERGE`, `TRUNCATE`, `COPY … FROM`).
    Write,
    /// Schema changes (`CREATE`, `ALTER`, `DROP`).
    Ddl,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Query => "query",
            Action::Write => "write",
            Action::Ddl => "ddl",
        }
    }

    /// The action of a statement of `kind`; `None` for session statements (`SET`, `BEGIN`),
    /// which every agent may run.
    pub fn of(kind: Kind) -> Option<Action> {
        match kind {
            Kind::Read => Some(Action::Query),
            Kind::Write => Some(Action::Write),
            Kind::Ddl => Some(Action::Ddl),
            Kind::Session => None,
        }
    }
}

/// A capability grant as it is written (`POST …/agents/{agent_id}/capabilities`) and kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CapabilitySpec {
    /// What the agent may do at all (at least one of `query`, `write`, `ddl`).
    pub allowed_actions: Vec<Action>,
    /// The only tables (or views) it may touch, `table` or `schema.table`; empty or absent:
    /// any table its key or person may touch.
    #[serde(default)]
    pub allowed_tables: Vec<String>,
    /// Tables it may never touch, whatever else allows them.
    #[serde(default)]
    pub denied_tables: Vec<String>,
    /// At most this many rows per statement (below the environment's own cap).
    #[serde(default)]
    pub max_rows_per_query: Option<u64>,
    /// At most this many statements a minute (each node counts its own).
    #[serde(default)]
    pub max_queries_per_minute: Option<u32>,
    /// At most this many credits a day (UTC), counted across nodes.
    #[serde(default)]
    #[schema(value_type = Option<f64>)]
    pub max_credits_per_day: Option<Credits>,
    /// After this, the grant no longer applies (the agent is then as if it had none).
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

impl CapabilitySpec {
    /// The spec checked and normalised (table names lower-cased, actions and tables sorted
    /// and unique): 400 naming the field and the rule otherwise.
    pub fn validated(mut self, now: DateTime<Utc>) -> Result<CapabilitySpec> {
        if self.allowed_actions.is_empty() {
            return Err(Error::validation(
                "allowed_actions",
                "non_empty",
                "allowed_actions must name at least one of query, write, ddl",
            ));
        }
        let actions: BTreeSet<Action> = self.allowed_actions.iter().copied().collect();
        if actions.len() != self.allowed_actions.len() {
            return Err(Error::validation(
                "allowed_actions",
                "unique",
                "allowed_actions must not repeat an action",
            ));
        }
        self.allowed_actions = actions.into_iter().collect();
        self.allowed_tables = tables("allowed_tables", &self.allowed_tables)?;
        self.denied_tables = tables("denied_tables", &self.denied_tables)?;
        if self.max_rows_per_query == Some(0) {
            return Err(Error::validation(
                "max_rows_per_query",
                "minimum",
                "max_rows_per_query must be at least 1",
            ));
        }
        if let Some(n) = self.max_queries_per_minute {
            if !(1..=1_000_000).contains(&n) {
                return Err(Error::validation(
                    "max_queries_per_minute",
                    "range",
                    "max_queries_per_minute must be between 1 and 1000000",
                ));
            }
        }
        if self.max_credits_per_day == Some(Credits::ZERO) {
            return Err(Error::validation(
                "max_credits_per_day",
                "minimum",
                "max_credits_per_day must be above 0",
            ));
        }
        if self.expires_at.is_some_and(|t| t <= now) {
            return Err(Error::validation(
                "expires_at",
                "future",
                "expires_at must be in the future",
            ));
        }
        Ok(self)
    }
}

fn tables(field: &str, names: &[String]) -> Result<Vec<String>> {
    if names.len() > MAX_TABLES {
        return Err(Error::validation(
            field,
            "max_items",
            format!("{field} may list at most {MAX_TABLES} tables"),
        ));
    }
    let mut out = BTreeSet::new();
    for (i, name) in names.iter().enumerate() {
        out.insert(table_name(&format!("{field}[{i}]"), name)?);
    }
    Ok(out.into_iter().collect())
}

/// An agent id from a path or a client: 1–128 printable characters without spaces at the
/// ends.
pub fn check_agent_id(field: &str, id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.chars().count() <= MAX_AGENT_ID_LEN
        && id.trim() == id
        && !id.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(Error::validation(
            field,
            "agent_id",
            format!("{field} must be 1–{MAX_AGENT_ID_LEN} printable characters"),
        ))
    }
}

/// An agent as the API shows it (`GET /v1/environments/{env_id}/agents`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Agent {
    pub agent_id: String,
    /// The framework the client last named (`X-Agent-Framework`, `enclave_framework`).
    pub framework: Option<String>,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// Statements it sent, allowed or refused.
    pub query_count: i64,
    #[schema(value_type = f64)]
    pub credits_used: Credits,
    /// Its capability grant in the environment, if it has one.
    pub capabilities: Option<CapabilityGrant>,
}

/// A capability grant as the API shows it: its content with its id and version.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CapabilityGrant {
    /// `cap_…`: what refusals name.
    pub grant_id: String,
    pub env_id: crate::id::EnvId,
    pub agent_id: String,
    #[serde(flatten)]
    pub spec: CapabilitySpec,
    pub version: i64,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A saved version of a grant.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CapabilityVersion {
    pub version: i64,
    #[serde(flatten)]
    pub spec: CapabilitySpec,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// A grant in force: its id (named in refusals), the agent and what it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub grant_id: String,
    pub agent_id: String,
    pub spec: CapabilitySpec,
}

impl Grant {
    /// Whether the grant applies at `now` (not past `expires_at`).
    pub fn live_at(&self, now: DateTime<Utc>) -> bool {
        self.spec.expires_at.is_none_or(|t| now < t)
    }

    /// Checks a statement of `kind` against the grant's actions and tables: `named` are the
    /// tables and views it names (as the classifier found them, through joins, subqueries
    /// and CTEs, `schema.table` when qualified), `reached` what those are and read through
    /// views. Every named relation must be allowed (a listed view is allowed as itself); no
    /// named or reached one may be denied, so a view is no way around a denied table. The
    /// 422 / `42501` refusal names the grant and the rule.
    pub fn check(&self, kind: Kind, named: &[String], reached: &[TableRef]) -> Result<()> {
        let Some(action) = Action::of(kind) else {
            return Ok(());
        };
        if !self.spec.allowed_actions.contains(&action) {
            return Err(self.refusal(
                "allowed_actions",
                format!(
                    "agent {} may not {} here: its capability grant {} allows {}",
                    self.agent_id,
                    describe(action),
                    self.grant_id,
                    self.spec
                        .allowed_actions
                        .iter()
                        .map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        for table in named {
            let Ok(t) = TableRef::parse("table", table) else {
                // A quoted name no grant could list: allowed only where no table list applies.
                if self.spec.allowed_tables.is_empty() {
                    continue;
                }
                return Err(self.table_refusal("allowed_tables", table));
            };
            if self.denies(&t) {
                return Err(self.table_refusal("denied_tables", table));
            }
            if !self.spec.allowed_tables.is_empty()
                && !self.spec.allowed_tables.iter().any(|a| allows(a, &t))
            {
                return Err(self.table_refusal("allowed_tables", table));
            }
        }
        if let Some(t) = reached.iter().find(|t| self.denies(t)) {
            return Err(self.table_refusal("denied_tables", &t.display()));
        }
        Ok(())
    }

    fn denies(&self, t: &TableRef) -> bool {
        self.spec.denied_tables.iter().any(|d| t.named_by(d))
    }

    /// Refuses a statement estimated at `estimate` when `used_today` and it would pass the
    /// grant's daily credits.
    pub fn check_credits(&self, used_today: Credits, estimate: Credits) -> Result<()> {
        match self.spec.max_credits_per_day {
            Some(max) if used_today + estimate > max => Err(self.refusal(
                "max_credits_per_day",
                format!(
                    "agent {} has used {} of the {} credits a day its capability grant {} \
                     allows; this statement is estimated at {}",
                    self.agent_id, used_today, max, self.grant_id, estimate
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The refusal of a statement past the grant's rate.
    pub fn rate_refusal(&self, per_minute: u32) -> Error {
        self.refusal(
            "max_queries_per_minute",
            format!(
                "agent {} may run {per_minute} statements a minute under its capability grant {}",
                self.agent_id, self.grant_id
            ),
        )
    }

    fn table_refusal(&self, rule: &str, table: &str) -> Error {
        let why = if rule == "denied_tables" {
            "denies it"
        } else {
            "does not list it"
        };
        self.refusal(
            rule,
            format!(
                "agent {} may not touch table {table}: its capability grant {} {why}",
                self.agent_id, self.grant_id
            ),
        )
    }

    fn refusal(&self, rule: &str, message: String) -> Error {
        Error::new(ErrorCode::PolicyViolation, message).with_details(json!({
            "grant_id": self.grant_id,
            "agent_id": self.agent_id,
            "rule": rule,
            "sqlstate": "42501",
        }))
    }
}

/// The refusal of a statement by an agent without a grant where the environment requires one
/// (`settings.agents_require_capabilities`): such agents read nothing.
pub fn ungranted(agent_id: &str, kind: Kind, tables: &[String]) -> Result<()> {
    if Action::of(kind).is_none() || (kind == Kind::Read && tables.is_empty()) {
        return Ok(());
    }
    Err(Error::new(
        ErrorCode::PolicyViolation,
        format!(
            "agent {agent_id} has no capability grant in this environment, which requires one \
             (settings.agents_require_capabilities)"
        ),
    )
    .with_details(json!({
        "agent_id": agent_id,
        "rule": "agents_require_capabilities",
        "sqlstate": "42501",
    })))
}

/// Whether an allowed table name lets a statement touch `t`. Narrowing reads names the
/// safe way round: an unqualified name allows that table in the default schema only (where a
/// denied one denies it in every schema).
fn allows(allowed: &str, t: &TableRef) -> bool {
    match allowed.split_once('.') {
        Some(_) => t.named_by(allowed),
        None => t.name == allowed && (t.in_schema("main") || t.in_schema("public")),
    }
}

fn describe(action: Action) -> &'static str {
    match action {
        Action::Query => "read data",
        Action::Write => "write data",
        Action::Ddl => "change the schema",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(spec: serde_json::Value) -> Grant {
        let spec: CapabilitySpec = serde_json::from_value(spec).unwrap();
        Grant {
            grant_id: "cap_1".into(),
            agent_id: "support-bot".into(),
            spec: spec.validated(Utc::now()).unwrap(),
        }
    }

    fn rule(r: Result<()>) -> String {
        r.unwrap_err().details["rule"].as_str().unwrap().to_string()
    }

    fn t(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn specs_are_checked_and_normalised() {
        let now = Utc::now();
        let bad = |v: serde_json::Value| {
            let spec: CapabilitySpec = serde_json::from_value(v).unwrap();
            let e = spec.validated(now).unwrap_err();
            (
                e.details["field"].as_str().unwrap().to_string(),
                e.details["rule"].as_str().unwrap().to_string(),
            )
        };
        assert_eq!(
            bad(json!({"allowed_actions": []})),
            ("allowed_actions".into(), "non_empty".into())
        );
        assert_eq!(
            bad(json!({"allowed_actions": ["query", "query"]})),
            ("allowed_actions".into(), "unique".into())
        );
        assert_eq!(
            bad(json!({"allowed_actions": ["query"], "allowed_tables": ["a;b"]})),
            ("allowed_tables[0]".into(), "identifier".into())
        );
        assert_eq!(
            bad(json!({"allowed_actions": ["query"], "max_rows_per_query": 0})),
            ("max_rows_per_query".into(), "minimum".into())
        );
        assert_eq!(
            bad(json!({"allowed_actions": ["query"], "max_queries_per_minute": 0})),
            ("max_queries_per_minute".into(), "range".into())
        );
        assert_eq!(
            bad(json!({"allowed_actions": ["query"], "expires_at": "2020-01-01T00:00:00Z"})),
            ("expires_at".into(), "future".into())
        );
        assert!(serde_json::from_value::<CapabilitySpec>(
            json!({"allowed_actions": ["query"], "x": 1})
        )
        .is_err());
        assert!(
            serde_json::from_value::<CapabilitySpec>(json!({"allowed_actions": ["delete"]}))
                .is_err()
        );
        let g = grant(
            json!({"allowed_actions": ["write", "query"], "allowed_tables": ["Orders", "crm.Customers", "orders"]}),
        );
        assert_eq!(g.spec.allowed_actions, [Action::Query, Action::Write]);
        assert_eq!(g.spec.allowed_tables, ["crm.customers", "orders"]);
    }

    #[test]
    fn a_grant_narrows_actions_and_tables() {
        let g = grant(
            json!({"allowed_actions": ["query"], "allowed_tables": ["orders", "customers"],
                             "denied_tables": ["customers"]}),
        );
        assert!(g.check(Kind::Read, &t(&["orders"]), &[]).is_ok());
        assert!(g.check(Kind::Read, &t(&["main.orders"]), &[]).is_ok());
        assert!(g.check(Kind::Session, &t(&[]), &[]).is_ok());
        assert_eq!(
            rule(g.check(Kind::Write, &t(&["orders"]), &[])),
            "allowed_actions"
        );
        assert_eq!(rule(g.check(Kind::Ddl, &t(&["x"]), &[])), "allowed_actions");
        assert_eq!(
            rule(g.check(Kind::Read, &t(&["orders", "customers"]), &[])),
            "denied_tables"
        );
        assert_eq!(
            rule(g.check(Kind::Read, &t(&["payments"]), &[])),
            "allowed_tables"
        );
        assert_eq!(
            rule(g.check(Kind::Read, &t(&["crm.orders"]), &[])),
            "allowed_tables"
        );
        let e = g.check(Kind::Read, &t(&["payments"]), &[]).unwrap_err();
        assert_eq!(e.code, ErrorCode::PolicyViolation);
        assert_eq!(e.details["grant_id"], "cap_1");
        assert!(e.message.contains("payments") && e.message.contains("cap_1"));
        // No table list: every table but the denied ones.
        // A view that reads a denied table is refused for what it reads.
        let salaries = TableRef::parse("t", "hr.salaries").unwrap();
        let e = g.check(
            Kind::Read,
            &t(&["orders"]),
            &[TableRef::parse("t", "customers").unwrap()],
        );
        assert_eq!(rule(e), "denied_tables");
        let open =
            grant(json!({"allowed_actions": ["query", "write"], "denied_tables": ["salaries"]}));
        assert_eq!(
            rule(open.check(Kind::Read, &t(&["payroll_view"]), &[salaries])),
            "denied_tables"
        );
        assert!(open.check(Kind::Write, &t(&["orders"]), &[]).is_ok());
        assert_eq!(
            rule(open.check(Kind::Read, &t(&["hr.salaries"]), &[])),
            "denied_tables"
        );
    }

    #[test]
    fn credits_rates_and_deadlines() {
        let g = grant(
            json!({"allowed_actions": ["query"], "max_credits_per_day": 10,
                             "expires_at": "2999-01-01T00:00:00Z"}),
        );
        assert!(g
            .check_credits(Credits::whole(8), Credits::whole(2))
            .is_ok());
        assert_eq!(
            rule(g.check_credits(Credits::whole(9), Credits::whole(2))),
            "max_credits_per_day"
        );
        assert_eq!(g.rate_refusal(5).details["rule"], "max_queries_per_minute");
        assert!(g.live_at(Utc::now()));
        assert!(!g.live_at("2999-01-01T00:00:00Z".parse().unwrap()));
    }

    #[test]
    fn agents_without_a_grant_read_nothing_where_one_is_required() {
        assert!(ungranted("bot", Kind::Session, &t(&[])).is_ok());
        assert!(
            ungranted("bot", Kind::Read, &t(&[])).is_ok(),
            "SELECT 1 reads no data"
        );
        assert_eq!(
            rule(ungranted("bot", Kind::Read, &t(&["orders"]))),
            "agents_require_capabilities"
        );
        assert_eq!(
            rule(ungranted("bot", Kind::Write, &t(&["orders"]))),
            "agents_require_capabilities"
        );
        assert!(check_agent_id("agent_id", "support-bot/1.2").is_ok());
        assert!(check_agent_id("agent_id", " x").is_err());
        assert!(check_agent_id("agent_id", &"x".repeat(129)).is_err());
    }
}

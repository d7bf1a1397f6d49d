//! Attribute-based policies: `{effect, actions, resources, conditions, priority}` validated
//! when saved and compiled into something cheap to match on every statement.
//!
//! Conditions are an object keyed by what they test, each with one operator:
//!
//! | key | operators |
//! |---|---|
//! | `principal.role` | `in`, `not_in` (role names) |
//! | `principal.attribute.<name>` | `eq` (a string), `in` (strings) |
//! | `agent.id`, `agent.framework` | `in`, `not_in` (strings) |
//! | `request.ip` | `in` (CIDRs or addresses) |
//! | `time` | a window `{days?, start: "HH:MM", end: "HH:MM", timezone?}` or a list of them |
//! | `resource.table` | `in`, `not_in` (table names) |
//!
//! All conditions must hold. A condition on something the request does not carry (no
//! source IP, no such attribute) does not hold; `not_in` holds when the value is absent.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::table::{table_name, TableRef};
use crate::api_key::ip_allowed;
use crate::error::{Error, Result};
use crate::role::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Allow,
    Deny,
}

/// What a statement does; `*` in a policy means every action.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AbacAction {
    Query,
    Write,
    Ddl,
    Delete,
    Export,
    #[serde(rename = "*")]
    All,
}

impl AbacAction {
    pub const CONCRETE: [AbacAction; 5] = [
        AbacAction::Query,
        AbacAction::Write,
        AbacAction::Ddl,
        AbacAction::Delete,
        AbacAction::Export,
    ];
}

/// An ABAC policy's rule as stored (validated; `conditions` as written).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AbacDefinition {
    pub effect: Effect,
    pub actions: Vec<AbacAction>,
    /// `*`, `table:*`, `table:<name>`, `schema:<name>`.
    pub resources: Vec<String>,
    #[schema(value_type = Object)]
    pub conditions: Map<String, Value>,
    /// Higher first: the order policies are evaluated and reported in.
    pub priority: i32,
}

pub const MAX_ITEMS: usize = 64;

/// Validates the parts of an ABAC policy; errors name `actions[i]`, `resources[i]`,
/// `conditions.<key>…` or `priority`.
pub fn definition(
    effect: Effect,
    actions: Vec<AbacAction>,
    resources: Vec<String>,
    conditions: Option<Map<String, Value>>,
    priority: Option<i64>,
) -> Result<AbacDefinition> {
    list_size("actions", actions.len())?;
    for (i, a) in actions.iter().enumerate() {
        if actions[..i].contains(a) {
            return Err(Error::validation(
                &format!("actions[{i}]"),
                "unique",
                "actions must not repeat",
            ));
        }
    }
    list_size("resources", resources.len())?;
    let mut normal = Vec::with_capacity(resources.len());
    for (i, r) in resources.iter().enumerate() {
        let field = format!("resources[{i}]");
        let parsed = Resource::parse(&field, r)?;
        let text = parsed.to_string();
        if normal.contains(&text) {
            return Err(Error::validation(
                &field,
                "unique",
                "resources must not repeat",
            ));
        }
        normal.push(text);
    }
    let conditions = conditions.unwrap_or_default();
    compile_conditions(&conditions)?;
    let priority = match priority {
        None => 0,
        Some(p) if (-1000..=1000).contains(&p) => p as i32,
        Some(_) => {
            return Err(Error::validation(
                "priority",
                "range",
                "priority must be between -1000 and 1000",
            ))
        }
    };
    Ok(AbacDefinition {
        effect,
        actions,
        resources: normal,
        conditions,
        priority,
    })
}

fn list_size(field: &str, n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::validation(
            field,
            "non_empty",
            format!("{field} must name at least one entry"),
        ));
    }
    if n > MAX_ITEMS {
        return Err(Error::validation(
            field,
            "max_items",
            format!("{field} may hold at most {MAX_ITEMS} entries"),
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Any,
    AnyTable,
    Table(String),
    Schema(String),
}

impl Resource {
    fn parse(field: &str, s: &str) -> Result<Resource> {
        let s = s.trim();
        let bad = || {
            Error::validation(
                field,
                "resource",
                format!("`{s}` is not a resource: use `*`, `table:*`, `table:<name>` or `schema:<name>`"),
            )
        };
        if s == "*" {
            return Ok(Resource::Any);
        }
        if s == "table:*" {
            return Ok(Resource::AnyTable);
        }
        if let Some(t) = s.strip_prefix("table:") {
            return table_name(field, t).map(Resource::Table);
        }
        if let Some(sc) = s.strip_prefix("schema:") {
            let name = table_name(field, sc).map_err(|_| bad())?;
            if name.contains('.') {
                return Err(bad());
            }
            return Ok(Resource::Schema(name));
        }
        Err(bad())
    }

    /// Whether it covers `table` (`None`: a statement that touches no table, which only
    /// `*` covers).
    fn covers(&self, table: Option<&TableRef>) -> bool {
        match (self, table) {
            (Resource::Any, _) => true,
            (_, None) => false,
            (Resource::AnyTable, Some(_)) => true,
            (Resource::Table(name), Some(t)) => t.named_by(name),
            (Resource::Schema(s), Some(t)) => t.in_schema(s),
        }
    }
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resource::Any => f.write_str("*"),
            Resource::AnyTable => f.write_str("table:*"),
            Resource::Table(t) => write!(f, "table:{t}"),
            Resource::Schema(s) => write!(f, "schema:{s}"),
        }
    }
}

/// One time window; minutes since midnight in `tz`.
#[derive(Debug, Clone)]
struct Window {
    /// Bit `n` set: weekday `n` (Monday = 0).
    days: u8,
    start: u32,
    end: u32,
    tz: Tz,
}

impl Window {
    fn holds(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.tz);
        let day = local.weekday().num_days_from_monday();
        let minute = local.hour() * 60 + local.minute();
        let on = |d: u32| self.days & (1 << d) != 0;
        if self.start < self.end {
            on(day) && (self.start..self.end).contains(&minute)
        } else {
            // Past midnight: the window belongs to the day it started on.
            (on(day) && minute >= self.start) || (on((day + 6) % 7) && minute < self.end)
        }
    }
}

#[derive(Debug, Clone)]
enum Condition {
    Role { negate: bool, roles: Vec<Role> },
    Attribute { key: String, values: Vec<String> },
    AgentId { negate: bool, values: Vec<String> },
    AgentFramework { negate: bool, values: Vec<String> },
    Ip(Vec<IpNet>),
    Time(Vec<Window>),
    Table { negate: bool, tables: Vec<String> },
}

/// What conditions are tested against.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub role: Role,
    pub attributes: &'a BTreeMap<String, String>,
    pub agent_id: Option<&'a str>,
    pub framework: Option<&'a str>,
    pub ip: Option<IpAddr>,
    pub at: DateTime<Utc>,
    pub table: Option<&'a TableRef>,
}

impl Condition {
    fn holds(&self, f: &Facts) -> bool {
        let member = |negate: bool, found: bool| found != negate;
        match self {
            Condition::Role { negate, roles } => member(*negate, roles.contains(&f.role)),
            Condition::Attribute { key, values } => f
                .attributes
                .get(key)
                .is_some_and(|v| values.iter().any(|x| x == v)),
            Condition::AgentId { negate, values } => member(
                *negate,
                f.agent_id.is_some_and(|v| values.iter().any(|x| x == v)),
            ),
            Condition::AgentFramework { negate, values } => member(
                *negate,
                f.framework.is_some_and(|v| values.iter().any(|x| x == v)),
            ),
            // `nets` is never empty (validated), so "allowed" means "in one of them".
            Condition::Ip(nets) => f.ip.is_some_and(|ip| ip_allowed(nets, ip)),
            Condition::Time(windows) => windows.iter().any(|w| w.holds(f.at)),
            Condition::Table { negate, tables } => member(
                *negate,
                f.table
                    .is_some_and(|t| tables.iter().any(|name| t.named_by(name))),
            ),
        }
    }
}

/// A validated ABAC rule, ready to match.
#[derive(Debug, Clone)]
pub struct CompiledAbac {
    pub effect: Effect,
    pub priority: i32,
    all_actions: bool,
    actions: Vec<AbacAction>,
    resources: Vec<Resource>,
    conditions: Vec<Condition>,
}

impl CompiledAbac {
    pub fn compile(def: &AbacDefinition) -> Result<CompiledAbac> {
        let resources = def
            .resources
            .iter()
            .enumerate()
            .map(|(i, r)| Resource::parse(&format!("resources[{i}]"), r))
            .collect::<Result<_>>()?;
        Ok(CompiledAbac {
            effect: def.effect,
            priority: def.priority,
            all_actions: def.actions.contains(&AbacAction::All),
            actions: def.actions.clone(),
            resources,
            conditions: compile_conditions(&def.conditions)?,
        })
    }

    /// Whether the policy is about this action on this table (its conditions aside).
    pub fn targets(&self, action: AbacAction, table: Option<&TableRef>) -> bool {
        (self.all_actions || self.actions.contains(&action))
            && self.resources.iter().any(|r| r.covers(table))
    }

    /// Whether every condition holds.
    pub fn holds(&self, facts: &Facts) -> bool {
        self.conditions.iter().all(|c| c.holds(facts))
    }
}

fn compile_conditions(map: &Map<String, Value>) -> Result<Vec<Condition>> {
    if map.len() > MAX_ITEMS {
        return Err(Error::validation(
            "conditions",
            "max_items",
            format!("conditions may hold at most {MAX_ITEMS} entries"),
        ));
    }
    map.iter()
        .map(|(key, value)| condition(&format!("conditions.{key}"), key, value))
        .collect()
}

fn condition(field: &str, key: &str, value: &Value) -> Result<Condition> {
    match key {
        "principal.role" => {
            let (negate, values) = set_op(field, value, true)?;
            let roles = values
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    r.parse::<Role>().map_err(|_| {
                        Error::validation(
                            &format!("{field}[{i}]"),
                            "role",
                            format!("`{r}` is not a role (owner, admin, developer, analyst, auditor, service_account)"),
                        )
                    })
                })
                .collect::<Result<_>>()?;
            Ok(Condition::Role { negate, roles })
        }
        "agent.id" | "agent.framework" => {
            let (negate, values) = set_op(field, value, true)?;
            Ok(if key == "agent.id" {
                Condition::AgentId { negate, values }
            } else {
                Condition::AgentFramework { negate, values }
            })
        }
        "resource.table" => {
            let (negate, values) = set_op(field, value, true)?;
            let tables = values
                .iter()
                .enumerate()
                .map(|(i, t)| table_name(&format!("{field}[{i}]"), t))
                .collect::<Result<_>>()?;
            Ok(Condition::Table { negate, tables })
        }
        "request.ip" => {
            let (_, values) = set_op(field, value, false)?;
            let nets = crate::api_key::allowlist(&format!("{field}.in"), &values)?;
            Ok(Condition::Ip(nets))
        }
        "time" => {
            let windows = match value {
                Value::Array(list) if !list.is_empty() && list.len() <= MAX_ITEMS => list
                    .iter()
                    .enumerate()
                    .map(|(i, w)| window(&format!("{field}[{i}]"), w))
                    .collect::<Result<_>>()?,
                Value::Object(_) => vec![window(field, value)?],
                _ => {
                    return Err(Error::validation(
                        field,
                        "time_window",
                        "time must be a window {days, start, end, timezone} or a non-empty list of them",
                    ))
                }
            };
            Ok(Condition::Time(windows))
        }
        _ => match key.strip_prefix("principal.attribute.") {
            Some(name) if !name.is_empty() => {
                let values = attribute_op(field, value)?;
                Ok(Condition::Attribute {
                    key: name.to_string(),
                    values,
                })
            }
            _ => Err(Error::validation(
                field,
                "unknown_condition",
                format!(
                    "`{key}` is not a condition: use principal.role, principal.attribute.<name>, \
                     agent.id, agent.framework, request.ip, time or resource.table"
                ),
            )),
        },
    }
}

/// `{"in": [...]}` or (when `negatable`) `{"not_in": [...]}`, of non-empty strings.
fn set_op(field: &str, value: &Value, negatable: bool) -> Result<(bool, Vec<String>)> {
    let ops = if negatable {
        "`in` or `not_in`"
    } else {
        "`in`"
    };
    let shape = || {
        Error::validation(
            field,
            "operator",
            format!("{field} must be an object with exactly one operator: {ops} and a list"),
        )
    };
    let obj = value
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(shape)?;
    let (op, list) = obj.iter().next().ok_or_else(shape)?;
    let negate = match op.as_str() {
        "in" => false,
        "not_in" if negatable => true,
        _ => return Err(shape()),
    };
    let at = format!("{field}.{op}");
    Ok((negate, strings(&at, list)?))
}

/// `{"eq": "v"}` or `{"in": ["v", …]}`.
fn attribute_op(field: &str, value: &Value) -> Result<Vec<String>> {
    let shape = || {
        Error::validation(
            field,
            "operator",
            format!("{field} must be {{\"eq\": string}} or {{\"in\": [strings]}}"),
        )
    };
    let obj = value
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(shape)?;
    match obj.iter().next() {
        Some((op, Value::String(s))) if op == "eq" => Ok(vec![s.clone()]),
        Some((op, list)) if op == "in" => strings(&format!("{field}.in"), list),
        _ => Err(shape()),
    }
}

fn strings(field: &str, list: &Value) -> Result<Vec<String>> {
    let items = list.as_array().ok_or_else(|| {
        Error::validation(field, "type", format!("{field} must be a list of strings"))
    })?;
    list_size(field, items.len())?;
    items
        .iter()
        .enumerate()
        .map(|(i, v)| match v.as_str() {
            Some(s) if !s.is_empty() && s.chars().count() <= 256 => Ok(s.to_string()),
            _ => Err(Error::validation(
                &format!("{field}[{i}]"),
                "string",
                "each entry must be a string of 1–256 characters",
            )),
        })
        .collect()
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn window(field: &str, value: &Value) -> Result<Window> {
    let obj = value.as_object().ok_or_else(|| {
        Error::validation(
            field,
            "time_window",
            "a time window is an object {days, start, end, timezone}",
        )
    })?;
    if let Some(unknown) = obj
        .keys()
        .find(|k| !["days", "start", "end", "timezone"].contains(&k.as_str()))
    {
        return Err(Error::validation(
            &format!("{field}.{unknown}"),
            "unknown_field",
            format!("unknown field `{unknown}` in a time window"),
        ));
    }
    let days = match obj.get("days") {
        None => 0x7f,
        Some(list) => {
            let names = strings(&format!("{field}.days"), list)?;
            let mut bits = 0u8;
            for (i, d) in names.iter().enumerate() {
                let n = DAYS
                    .iter()
                    .position(|x| x.eq_ignore_ascii_case(d))
                    .ok_or_else(|| {
                        Error::validation(
                            &format!("{field}.days[{i}]"),
                            "day",
                            "days are mon, tue, wed, thu, fri, sat, sun",
                        )
                    })?;
                bits |= 1 << n;
            }
            bits
        }
    };
    let clock = |name: &str| -> Result<u32> {
        let at = format!("{field}.{name}");
        let bad = || {
            Error::validation(
                &at,
                "time_of_day",
                format!("{at} must be \"HH:MM\" (00:00–24:00)"),
            )
        };
        let s = obj
            .get(name)
            .ok_or_else(|| Error::validation(&at, "required", format!("`{at}` is required")))?
            .as_str()
            .ok_or_else(bad)?;
        let (h, m) = s.split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(bad());
        }
        let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if m > 59 || h > 24 || (h == 24 && m != 0) {
            return Err(bad());
        }
        Ok(h * 60 + m)
    };
    let (start, end) = (clock("start")?, clock("end")?);
    if start == end {
        return Err(Error::validation(
            &format!("{field}.end"),
            "empty_window",
            "a window's end must differ from its start",
        ));
    }
    let tz = match obj.get("timezone") {
        None => Tz::UTC,
        Some(Value::String(name)) => name.parse::<Tz>().map_err(|_| {
            Error::validation(
                &format!("{field}.timezone"),
                "timezone",
                format!("`{name}` is not an IANA time zone (e.g. Europe/Berlin, UTC)"),
            )
        })?,
        Some(_) => {
            return Err(Error::validation(
                &format!("{field}.timezone"),
                "timezone",
                "timezone must be an IANA time zone name",
            ))
        }
    };
    Ok(Window {
        days,
        start,
        end,
        tz,
    })
}

#[cfg(test)]
mod tests;

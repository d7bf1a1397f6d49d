//! The evaluation model: every enabled policy of an environment, for one principal, action
//! and set of tables → the decision, the masks per column and the row filters per table.
//!
//! Order (docs/policies.md): the role's permission and the key's scopes first; then ABAC —
//! for each table, any matching `deny` refuses (deny overrides) and, if any `allow` policy
//! targets the action on that table, at least one must match. Masks: the strictest rule per
//! column wins. Row filters: every applicable filter on a table, AND-ed, with placeholders
//! bound as parameters. `shadow` policies are evaluated beside the others and reported
//! (`would_deny`, `would_mask`, `would_filter`) without effect.
//!
//! This is what the gateway applies to each statement and what `…/policies/evaluate`
//! shows, so the two can never disagree.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlparser::ast::{BinaryOperator, Expr};
use utoipa::ToSchema;

use super::abac::{AbacAction, CompiledAbac, Effect, Facts};
use super::filter::RowFilter;
use super::table::TableRef;
use super::{MaskFunction, MaskingRule, PolicyBody, PolicyMode, PolicySpec, PolicyType};
use crate::api_key::Scope;
use crate::error::Result;
use crate::id::{EnvId, KeyId, OrgId, UserId};
use crate::role::{Permission, Role};

/// Who is acting.
#[derive(Debug, Clone)]
pub struct Principal {
    pub role: Role,
    pub user_id: Option<UserId>,
    pub email: Option<String>,
    pub key_id: Option<KeyId>,
    pub attributes: BTreeMap<String, String>,
    /// An API key's scopes; `None` for a user (the role alone decides).
    pub scopes: Option<BTreeSet<Scope>>,
    pub agent_id: Option<String>,
    pub framework: Option<String>,
}

/// What is being done, where, from where and when.
#[derive(Debug, Clone)]
pub struct Request {
    pub org_id: OrgId,
    pub env_id: EnvId,
    /// A concrete action (never `*`).
    pub action: AbacAction,
    pub tables: Vec<TableRef>,
    pub ip: Option<IpAddr>,
    pub at: DateTime<Utc>,
}

/// The permission of the matrix, and the key scopes (any one suffices), an action needs.
pub fn action_requirement(action: AbacAction) -> (Permission, &'static [Scope]) {
    match action {
        AbacAction::Query | AbacAction::Export | AbacAction::All => {
            (Permission::ExecuteQueries, &[Scope::QueryRead])
        }
        AbacAction::Write | AbacAction::Delete => (Permission::WriteData, &[Scope::QueryWrite]),
        AbacAction::Ddl => (
            Permission::WriteData,
            &[Scope::TablesCreate, Scope::TablesAlter],
        ),
    }
}

enum Compiled {
    Masking(Vec<MaskingRule>),
    Rls(Vec<(String, Vec<Role>, RowFilter)>),
    Abac(CompiledAbac),
}

struct CompiledPolicy {
    id: String,
    name: String,
    policy_type: PolicyType,
    mode: PolicyMode,
    body: Compiled,
}

/// An environment's enabled policies, compiled once (the gateway keeps one per environment
/// until a policy changes).
pub struct PolicySet {
    policies: Vec<CompiledPolicy>,
}

impl PolicySet {
    /// Compiles the enabled policies among `(policy_id, spec)`. Stored policies were
    /// validated when saved, so an error here means a corrupt row.
    pub fn compile<'a>(specs: impl IntoIterator<Item = (&'a str, &'a PolicySpec)>) -> Result<Self> {
        let mut policies = Vec::new();
        for (id, spec) in specs {
            if !spec.enabled {
                continue;
            }
            let body = match &spec.body {
                PolicyBody::ColumnMasking { rules } => Compiled::Masking(rules.clone()),
                PolicyBody::RowLevelSecurity { rules } => Compiled::Rls(
                    rules
                        .iter()
                        .map(|r| {
                            RowFilter::parse("filter", &r.filter, &r.table)
                                .map(|f| (r.table.clone(), r.exempt_roles.clone(), f))
                        })
                        .collect::<Result<_>>()?,
                ),
                PolicyBody::Abac(def) => Compiled::Abac(CompiledAbac::compile(def)?),
            };
            policies.push(CompiledPolicy {
                id: id.to_string(),
                name: spec.name.clone(),
                policy_type: spec.policy_type(),
                mode: spec.mode,
                body,
            });
        }
        // ABAC policies in evaluation order: priority (higher first), then name.
        policies.sort_by(|a, b| {
            let pa = a.priority();
            let pb = b.priority();
            pb.cmp(&pa).then_with(|| a.name.cmp(&b.name))
        });
        Ok(PolicySet { policies })
    }

    pub fn evaluate(&self, who: &Principal, req: &Request) -> Evaluation {
        let mut out = Evaluation {
            decision: Decision::Allow,
            reason: "allowed".into(),
            message: "allowed".into(),
            denied_by: None,
            matched: Vec::new(),
            masks: Vec::new(),
            row_filters: Vec::new(),
            shadow: Shadow::default(),
        };
        let (permission, scopes) = action_requirement(req.action);
        if !who.role.can(permission) {
            out.deny(
                format!("permission:{}", permission.name()),
                format!(
                    "the {} role may not {}",
                    who.role,
                    permission.name().replace('_', " ")
                ),
                None,
            );
            return out;
        }
        if let Some(held) = &who.scopes {
            if !scopes.iter().any(|s| held.contains(s)) {
                out.deny(
                    format!("scope:{}", scopes[0].as_str()),
                    format!("this API key lacks the {} scope", scopes[0].as_str()),
                    None,
                );
                return out;
            }
        }
        let mut matched: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
        let enforced = self.abac(who, req, PolicyMode::Enforce, &mut matched);
        let with_shadow = self.abac(who, req, PolicyMode::Shadow, &mut matched);
        if let Some(refusal) = enforced {
            out.deny(refusal.reason, refusal.message, Some(refusal.policy));
        } else if let Some(refusal) = with_shadow {
            out.shadow.would_deny = Some(refusal.policy);
        }
        let (masks, shadow_masks) = self.masks(who, req, &mut matched);
        out.masks = masks;
        out.shadow.would_mask = shadow_masks;
        out.row_filters = self.filters(who, req, PolicyMode::Enforce, &mut matched);
        out.shadow.would_filter = self.filters(who, req, PolicyMode::Shadow, &mut matched);
        out.matched = matched
            .into_iter()
            .map(|(i, tables)| {
                let p = &self.policies[i];
                MatchedPolicy {
                    policy_id: p.id.clone(),
                    name: p.name.clone(),
                    policy_type: p.policy_type,
                    mode: p.mode,
                    effect: match &p.body {
                        Compiled::Abac(a) => Some(a.effect),
                        _ => None,
                    },
                    tables: tables.into_iter().collect(),
                }
            })
            .collect();
        out
    }

    /// ABAC with the enforced policies (`Enforce`), or with every policy (`Shadow`: what
    /// would happen if the shadow ones were switched on). Records what matched.
    fn abac(
        &self,
        who: &Principal,
        req: &Request,
        mode: PolicyMode,
        matched: &mut BTreeMap<usize, BTreeSet<String>>,
    ) -> Option<Refusal> {
        let tables: Vec<Option<&TableRef>> = if req.tables.is_empty() {
            vec![None]
        } else {
            req.tables.iter().map(Some).collect()
        };
        let mut refusal: Option<Refusal> = None;
        for table in tables {
            let facts = Facts {
                role: who.role,
                attributes: &who.attributes,
                agent_id: who.agent_id.as_deref(),
                framework: who.framework.as_deref(),
                ip: req.ip,
                at: req.at,
                table,
            };
            let mut deny: Option<usize> = None;
            let mut first_allow_targeting: Option<usize> = None;
            let mut allow_matched = false;
            for (i, p) in self.policies.iter().enumerate() {
                let Compiled::Abac(rule) = &p.body else {
                    continue;
                };
                if (mode == PolicyMode::Enforce && p.mode == PolicyMode::Shadow)
                    || !rule.targets(req.action, table)
                {
                    continue;
                }
                let holds = rule.holds(&facts);
                if holds && (mode == PolicyMode::Enforce || p.mode == PolicyMode::Shadow) {
                    matched
                        .entry(i)
                        .or_default()
                        .insert(table.map(TableRef::display).unwrap_or_else(|| "*".into()));
                }
                match rule.effect {
                    Effect::Deny if holds => {
                        deny.get_or_insert(i);
                    }
                    Effect::Allow => {
                        first_allow_targeting.get_or_insert(i);
                        allow_matched |= holds;
                    }
                    Effect::Deny => {}
                }
            }
            let on = table.map(TableRef::display);
            let this = if let Some(i) = deny {
                let p = &self.policies[i];
                Some(Refusal {
                    reason: "policy_denied".into(),
                    message: format!(
                        "policy `{}` denies {} {}",
                        p.name,
                        action_name(req.action),
                        on.as_deref().map(|t| format!("on {t}")).unwrap_or_default()
                    ),
                    policy: p.reference(),
                })
            } else if let (Some(i), false) = (first_allow_targeting, allow_matched) {
                let p = &self.policies[i];
                Some(Refusal {
                    reason: "no_allow_matched".into(),
                    message: format!(
                        "no allow policy matches this request ({} {}); `{}` is the first that targets it",
                        action_name(req.action),
                        on.as_deref().map(|t| format!("on {t}")).unwrap_or_default(),
                        p.name
                    ),
                    policy: p.reference(),
                })
            } else {
                None
            };
            if refusal.is_none() {
                refusal = this;
            }
        }
        refusal
    }

    /// The strictest applicable mask per (table, column): enforced, and what the shadow
    /// policies would add or make stricter.
    fn masks(
        &self,
        who: &Principal,
        req: &Request,
        matched: &mut BTreeMap<usize, BTreeSet<String>>,
    ) -> (Vec<ColumnMask>, Vec<ColumnMask>) {
        let mut enforced: BTreeMap<(String, String), ColumnMask> = BTreeMap::new();
        let mut shadow: BTreeMap<(String, String), ColumnMask> = BTreeMap::new();
        for (i, p) in self.policies.iter().enumerate() {
            let Compiled::Masking(rules) = &p.body else {
                continue;
            };
            for rule in rules {
                if rule.exempt_roles.contains(&who.role) {
                    continue;
                }
                for t in req.tables.iter().filter(|t| t.named_by(&rule.table)) {
                    matched.entry(i).or_default().insert(t.display());
                    let mask = ColumnMask {
                        table: t.display(),
                        column: rule.column.clone(),
                        function: rule.function,
                        visible_chars: rule.visible_chars,
                        policy_id: p.id.clone(),
                        policy_name: p.name.clone(),
                    };
                    let into = match p.mode {
                        PolicyMode::Enforce => &mut enforced,
                        PolicyMode::Shadow => &mut shadow,
                    };
                    let key = (mask.table.clone(), mask.column.clone());
                    match into.get(&key) {
                        Some(held) if !mask.stricter_than(held) => {}
                        _ => {
                            into.insert(key, mask);
                        }
                    }
                }
            }
        }
        let would: Vec<ColumnMask> = shadow
            .into_iter()
            .filter(|(key, m)| enforced.get(key).is_none_or(|e| m.stricter_than(e)))
            .map(|(_, m)| m)
            .collect();
        (enforced.into_values().collect(), would)
    }

    /// Per table, every applicable filter of policies in `mode`, AND-ed, parameters
    /// numbered from 1 per table.
    fn filters(
        &self,
        who: &Principal,
        req: &Request,
        mode: PolicyMode,
        matched: &mut BTreeMap<usize, BTreeSet<String>>,
    ) -> Vec<TableFilter> {
        let mut out = Vec::new();
        for t in &req.tables {
            let mut predicate: Option<Expr> = None;
            let mut parameters = Vec::new();
            let mut sources = Vec::new();
            for (i, p) in self.policies.iter().enumerate() {
                let Compiled::Rls(rules) = &p.body else {
                    continue;
                };
                if p.mode != mode {
                    continue;
                }
                for (table, exempt, filter) in rules {
                    if exempt.contains(&who.role) || !t.named_by(table) {
                        continue;
                    }
                    matched.entry(i).or_default().insert(t.display());
                    let bound = filter.bind(parameters.len(), |name| placeholder(who, req, name));
                    parameters.extend(bound.parameters);
                    predicate = Some(match predicate {
                        None => bound.predicate,
                        Some(left) => Expr::BinaryOp {
                            left: Box::new(nest(left)),
                            op: BinaryOperator::And,
                            right: Box::new(nest(bound.predicate)),
                        },
                    });
                    sources.push(FilterSource {
                        policy_id: p.id.clone(),
                        policy_name: p.name.clone(),
                        filter: filter.source().to_string(),
                        missing: bound.missing,
                    });
                }
            }
            if let Some(predicate) = predicate {
                out.push(TableFilter {
                    table: t.display(),
                    predicate: predicate.to_string(),
                    parameters,
                    sources,
                });
            }
        }
        out
    }
}

fn nest(e: Expr) -> Expr {
    match e {
        Expr::Nested(_) | Expr::Value(_) => e,
        other => Expr::Nested(Box::new(other)),
    }
}

/// A caller's value for a filter placeholder: the built-ins first, then attributes.
pub fn placeholder(who: &Principal, req: &Request, name: &str) -> Option<String> {
    match name {
        "user_id" => who.user_id.as_ref().map(|id| id.to_string()),
        "email" => who.email.clone(),
        "role" => Some(who.role.as_str().to_string()),
        "org_id" => Some(req.org_id.to_string()),
        "env_id" => Some(req.env_id.to_string()),
        "key_id" => who.key_id.as_ref().map(|id| id.to_string()),
        "agent_id" => who.agent_id.clone(),
        "framework" => who.framework.clone(),
        attribute => who.attributes.get(attribute).cloned(),
    }
}

fn action_name(a: AbacAction) -> &'static str {
    match a {
        AbacAction::Query => "query",
        AbacAction::Write => "write",
        AbacAction::Ddl => "ddl",
        AbacAction::Delete => "delete",
        AbacAction::Export => "export",
        AbacAction::All => "*",
    }
}

impl CompiledPolicy {
    fn priority(&self) -> i32 {
        match &self.body {
            Compiled::Abac(a) => a.priority,
            _ => 0,
        }
    }

    fn reference(&self) -> PolicyRef {
        PolicyRef {
            policy_id: self.id.clone(),
            name: self.name.clone(),
        }
    }
}

struct Refusal {
    reason: String,
    message: String,
    policy: PolicyRef,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PolicyRef {
    pub policy_id: String,
    pub name: String,
}

/// A policy that applied to this request, and on which tables (`*`: a statement without
/// tables).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MatchedPolicy {
    pub policy_id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub policy_type: PolicyType,
    pub mode: PolicyMode,
    /// ABAC policies only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect: Option<Effect>,
    pub tables: Vec<String>,
}

/// The mask one column gets, and the policy whose rule won.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ColumnMask {
    pub table: String,
    pub column: String,
    pub function: MaskFunction,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visible_chars: Option<u32>,
    pub policy_id: String,
    pub policy_name: String,
}

impl ColumnMask {
    /// `null` > `full` > `hash` > `partial`; of two partial masks, the one showing fewer
    /// characters.
    pub fn stricter_than(&self, other: &ColumnMask) -> bool {
        match self.function.cmp(&other.function) {
            std::cmp::Ordering::Equal => {
                self.function == MaskFunction::Partial
                    && self.visible_chars.unwrap_or(0) < other.visible_chars.unwrap_or(0)
            }
            order => order == std::cmp::Ordering::Greater,
        }
    }
}

/// The rows of one table the caller may see: `predicate` with `$n` parameters whose values
/// are `parameters`, in order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TableFilter {
    pub table: String,
    pub predicate: String,
    pub parameters: Vec<String>,
    pub sources: Vec<FilterSource>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FilterSource {
    pub policy_id: String,
    pub policy_name: String,
    pub filter: String,
    /// Placeholders the caller lacks: this filter is `FALSE` (no rows).
    pub missing: Vec<String>,
}

/// What `shadow` policies would change if they were enforced.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Shadow {
    pub would_deny: Option<PolicyRef>,
    pub would_mask: Vec<ColumnMask>,
    pub would_filter: Vec<TableFilter>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Evaluation {
    pub decision: Decision,
    /// `allowed`, `permission:<name>`, `scope:<name>`, `policy_denied` or
    /// `no_allow_matched`.
    pub reason: String,
    pub message: String,
    /// The policy that refused (`policy_denied`, `no_allow_matched`).
    pub denied_by: Option<PolicyRef>,
    pub matched: Vec<MatchedPolicy>,
    pub masks: Vec<ColumnMask>,
    pub row_filters: Vec<TableFilter>,
    pub shadow: Shadow,
}

impl Evaluation {
    fn deny(&mut self, reason: String, message: String, policy: Option<PolicyRef>) {
        self.decision = Decision::Deny;
        self.reason = reason;
        self.message = message;
        self.denied_by = policy;
    }
}

#[cfg(test)]
mod tests;

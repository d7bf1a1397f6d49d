//! Request bodies that create, replace and patch policies and ask for an evaluation, and
//! how each becomes a validated [`PolicySpec`] (or principal and request). Errors name the
//! field as the client wrote it (`rules[2].visible_chars`, `conditions.time.timezone`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::abac::{self, AbacAction, Effect};
use super::evaluate::{Principal, Request};
use super::table::TableRef;
use super::{
    description, name, standard_rules, PolicyBody, PolicyMode, PolicySpec, PolicyType, RuleInput,
    StandardType,
};
use crate::error::{Error, Result};
use crate::id::{EnvId, KeyId, OrgId, UserId};
use crate::role::Role;

/// A standard policy, whole (create and `PUT`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StandardInput {
    /// Unique in the environment (across standard and ABAC policies).
    pub name: String,
    #[serde(rename = "type")]
    pub policy_type: StandardType,
    pub description: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
    /// Default `enforce`.
    pub mode: Option<PolicyMode>,
    pub rules: Vec<RuleInput>,
}

/// A partial update of a standard policy; the type cannot change.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StandardPatch {
    pub name: Option<String>,
    /// Accepted only if it is the policy's type.
    #[serde(rename = "type")]
    pub policy_type: Option<StandardType>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    pub mode: Option<PolicyMode>,
    /// Replaces every rule.
    pub rules: Option<Vec<RuleInput>>,
}

/// An ABAC policy, whole (create and `PUT`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AbacInput {
    pub name: String,
    pub description: Option<String>,
    pub effect: Effect,
    /// `query`, `write`, `ddl`, `delete`, `export`, `*`.
    pub actions: Vec<AbacAction>,
    /// `*`, `table:*`, `table:<name>`, `schema:<name>`.
    pub resources: Vec<String>,
    /// All must hold; see docs/policies.md for the keys and operators.
    #[schema(value_type = Object)]
    pub conditions: Option<Map<String, Value>>,
    /// −1000…1000, default 0; higher first.
    pub priority: Option<i64>,
    pub enabled: Option<bool>,
    pub mode: Option<PolicyMode>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AbacPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub effect: Option<Effect>,
    pub actions: Option<Vec<AbacAction>>,
    pub resources: Option<Vec<String>>,
    /// Replaces every condition.
    #[schema(value_type = Object)]
    pub conditions: Option<Map<String, Value>>,
    pub priority: Option<i64>,
    pub enabled: Option<bool>,
    pub mode: Option<PolicyMode>,
}

impl StandardInput {
    pub fn into_spec(self) -> Result<PolicySpec> {
        Ok(PolicySpec {
            name: name("name", &self.name)?,
            description: description("description", self.description)?,
            enabled: self.enabled.unwrap_or(true),
            mode: self.mode.unwrap_or_default(),
            body: standard_rules(self.policy_type, &self.rules)?,
        })
    }
}

impl StandardInput {
    /// A `PUT`: the whole policy anew; its type cannot change.
    pub fn replacing(self, current: &PolicySpec) -> Result<PolicySpec> {
        check_type(Some(self.policy_type), standard_type(current)?)?;
        self.into_spec()
    }
}

fn standard_type(spec: &PolicySpec) -> Result<StandardType> {
    match spec.policy_type() {
        PolicyType::ColumnMasking => Ok(StandardType::ColumnMasking),
        PolicyType::RowLevelSecurity => Ok(StandardType::RowLevelSecurity),
        PolicyType::Abac => Err(Error::not_found("policy")),
    }
}

impl StandardPatch {
    /// `current` with this patch applied.
    pub fn apply(self, current: &PolicySpec) -> Result<PolicySpec> {
        let current_type = standard_type(current)?;
        check_type(self.policy_type, current_type)?;
        Ok(PolicySpec {
            name: match self.name {
                Some(n) => name("name", &n)?,
                None => current.name.clone(),
            },
            description: match self.description {
                Some(d) => description("description", Some(d))?,
                None => current.description.clone(),
            },
            enabled: self.enabled.unwrap_or(current.enabled),
            mode: self.mode.unwrap_or(current.mode),
            body: match self.rules {
                Some(rules) => standard_rules(current_type, &rules)?,
                None => current.body.clone(),
            },
        })
    }
}

/// A standard policy's type is fixed once created.
fn check_type(requested: Option<StandardType>, current: StandardType) -> Result<()> {
    match requested {
        Some(t) if t != current => Err(Error::validation(
            "type",
            "immutable",
            "a policy's type cannot change: create a new policy instead",
        )),
        _ => Ok(()),
    }
}

impl AbacInput {
    pub fn into_spec(self) -> Result<PolicySpec> {
        Ok(PolicySpec {
            name: name("name", &self.name)?,
            description: description("description", self.description)?,
            enabled: self.enabled.unwrap_or(true),
            mode: self.mode.unwrap_or_default(),
            body: PolicyBody::Abac(abac::definition(
                self.effect,
                self.actions,
                self.resources,
                self.conditions,
                self.priority,
            )?),
        })
    }
}

impl AbacPatch {
    pub fn apply(self, current: &PolicySpec) -> Result<PolicySpec> {
        let PolicyBody::Abac(def) = &current.body else {
            return Err(Error::not_found("policy"));
        };
        Ok(PolicySpec {
            name: match self.name {
                Some(n) => name("name", &n)?,
                None => current.name.clone(),
            },
            description: match self.description {
                Some(d) => description("description", Some(d))?,
                None => current.description.clone(),
            },
            enabled: self.enabled.unwrap_or(current.enabled),
            mode: self.mode.unwrap_or(current.mode),
            body: PolicyBody::Abac(abac::definition(
                self.effect.unwrap_or(def.effect),
                self.actions.unwrap_or_else(|| def.actions.clone()),
                self.resources.unwrap_or_else(|| def.resources.clone()),
                Some(self.conditions.unwrap_or_else(|| def.conditions.clone())),
                Some(self.priority.unwrap_or(i64::from(def.priority))),
            )?),
        })
    }
}

/// `POST …/policies/evaluate`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateInput {
    /// Default: the caller (its role, attributes and, for a key, scopes).
    pub principal: Option<PrincipalInput>,
    /// `query`, `write`, `ddl`, `delete` or `export`.
    pub action: AbacAction,
    pub resource: Option<ResourceInput>,
    pub context: Option<ContextInput>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrincipalInput {
    pub role: Role,
    pub user_id: Option<UserId>,
    pub email: Option<String>,
    pub key_id: Option<KeyId>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Evaluate as an API key with these scopes (bundles allowed); absent: a user.
    pub scopes: Option<Vec<String>>,
    pub agent: Option<AgentInput>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentInput {
    pub id: Option<String>,
    pub framework: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceInput {
    /// The tables the statement touches (`table` or `schema.table`).
    #[serde(default)]
    pub tables: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextInput {
    /// The client's address (default: none, so `request.ip` conditions do not hold).
    pub ip: Option<String>,
    /// When (default: now).
    pub time: Option<DateTime<Utc>>,
}

impl PrincipalInput {
    pub fn into_principal(self) -> Result<Principal> {
        crate::validate::attributes("principal.attributes", &self.attributes)?;
        let scopes = match self.scopes {
            Some(list) => {
                Some(crate::api_key::expand_scopes(&list).map_err(|e| e.within("principal"))?)
            }
            None => None,
        };
        let agent = self.agent.unwrap_or_default();
        Ok(Principal {
            role: self.role,
            user_id: self.user_id,
            email: self.email,
            key_id: self.key_id,
            attributes: self.attributes,
            scopes,
            agent_id: agent.id,
            framework: agent.framework,
        })
    }
}

/// The statement described by an evaluate request, in environment `env_id` of `org_id`.
pub fn request(
    org_id: &OrgId,
    env_id: &EnvId,
    action: AbacAction,
    resource: Option<ResourceInput>,
    context: Option<ContextInput>,
) -> Result<Request> {
    if action == AbacAction::All {
        return Err(Error::validation(
            "action",
            "concrete_action",
            "evaluate one action: query, write, ddl, delete or export",
        ));
    }
    let tables = resource.unwrap_or_default().tables;
    if tables.len() > abac::MAX_ITEMS {
        return Err(Error::validation(
            "resource.tables",
            "max_items",
            format!("at most {} tables", abac::MAX_ITEMS),
        ));
    }
    let tables = tables
        .iter()
        .enumerate()
        .map(|(i, t)| TableRef::parse(&format!("resource.tables[{i}]"), t))
        .collect::<Result<Vec<_>>>()?;
    let context = context.unwrap_or_default();
    let ip = match context.ip {
        None => None,
        Some(s) => Some(s.trim().parse::<IpAddr>().map_err(|_| {
            Error::validation(
                "context.ip",
                "ip_address",
                format!("`{s}` is not an IP address"),
            )
        })?),
    };
    Ok(Request {
        org_id: org_id.clone(),
        env_id: env_id.clone(),
        action,
        tables,
        ip,
        at: context.time.unwrap_or_else(Utc::now),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::MaskFunction;

    fn masking() -> PolicySpec {
        StandardInput {
            name: " pii ".into(),
            policy_type: StandardType::ColumnMasking,
            description: None,
            enabled: None,
            mode: None,
            rules: vec![RuleInput {
                table: Some("Customers".into()),
                column: Some("Email".into()),
                function: Some(MaskFunction::Hash),
                ..Default::default()
            }],
        }
        .into_spec()
        .unwrap()
    }

    #[test]
    fn create_defaults_and_normalises() {
        let spec = masking();
        assert_eq!(spec.name, "pii");
        assert!(spec.enabled);
        assert_eq!(spec.mode, PolicyMode::Enforce);
        let PolicyBody::ColumnMasking { rules } = &spec.body else {
            panic!()
        };
        assert_eq!(
            (rules[0].table.as_str(), rules[0].column.as_str()),
            ("customers", "email")
        );
    }

    #[test]
    fn patches_keep_what_they_do_not_name() {
        let spec = masking();
        let patched = StandardPatch {
            enabled: Some(false),
            mode: Some(PolicyMode::Shadow),
            ..Default::default()
        }
        .apply(&spec)
        .unwrap();
        assert!(!patched.enabled);
        assert_eq!(patched.body, spec.body);
        assert_eq!(patched.name, "pii");
        let e = StandardPatch {
            policy_type: Some(StandardType::RowLevelSecurity),
            ..Default::default()
        }
        .apply(&spec)
        .unwrap_err();
        assert_eq!(e.details["rule"], "immutable");
        let e = StandardPatch {
            name: Some("  ".into()),
            ..Default::default()
        }
        .apply(&spec)
        .unwrap_err();
        assert_eq!(e.details["field"], "name");
        // An ABAC patch does not apply to a standard policy.
        assert!(AbacPatch::default().apply(&spec).is_err());
    }

    #[test]
    fn abac_patch_revalidates_the_whole_rule() {
        let spec = AbacInput {
            name: "deny-export".into(),
            description: None,
            effect: Effect::Deny,
            actions: vec![AbacAction::Export],
            resources: vec!["table:*".into()],
            conditions: None,
            priority: Some(5),
            enabled: None,
            mode: None,
        }
        .into_spec()
        .unwrap();
        let patched = AbacPatch {
            resources: Some(vec!["schema:finance".into()]),
            ..Default::default()
        }
        .apply(&spec)
        .unwrap();
        let PolicyBody::Abac(def) = &patched.body else {
            panic!()
        };
        assert_eq!(def.priority, 5);
        assert_eq!(def.resources, ["schema:finance"]);
        let e = AbacPatch {
            actions: Some(vec![]),
            ..Default::default()
        }
        .apply(&spec)
        .unwrap_err();
        assert_eq!(e.details["field"], "actions");
    }

    #[test]
    fn evaluate_request_fields() {
        let r = request(
            &"org_1".into(),
            &"env_1".into(),
            AbacAction::Query,
            Some(ResourceInput {
                tables: vec!["crm.Customers".into()],
            }),
            Some(ContextInput {
                ip: Some("10.0.0.1".into()),
                time: None,
            }),
        )
        .unwrap();
        assert_eq!(r.tables[0].display(), "crm.customers");
        let field = |e: Error| e.details["field"].as_str().unwrap().to_string();
        assert_eq!(
            field(request(&"o".into(), &"e".into(), AbacAction::All, None, None).unwrap_err()),
            "action"
        );
        assert_eq!(
            field(
                request(
                    &"o".into(),
                    &"e".into(),
                    AbacAction::Query,
                    Some(ResourceInput {
                        tables: vec!["ok".into(), "not ok".into()]
                    }),
                    None
                )
                .unwrap_err()
            ),
            "resource.tables[1]"
        );
        assert_eq!(
            field(
                request(
                    &"o".into(),
                    &"e".into(),
                    AbacAction::Query,
                    None,
                    Some(ContextInput {
                        ip: Some("10.0.0".into()),
                        time: None
                    })
                )
                .unwrap_err()
            ),
            "context.ip"
        );
    }
}

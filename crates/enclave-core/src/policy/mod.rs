//! Access policies of one environment (docs/policies.md): what they are, how a request to
//! save one is validated, and how they combine into a decision for one statement.
//!
//! - [`PolicySpec`] is a policy's content — everything a version snapshot holds and a
//!   promotion compares.
//! - [`filter`] parses and binds row-level filters, [`abac`] compiles attribute-based rules,
//!   [`evaluate`] combines every policy of an environment for one principal and statement.

pub mod abac;
pub mod evaluate;
pub mod filter;
pub mod input;
pub mod table;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{Error, Result};
use crate::role::Role;
use crate::validate;

pub use abac::{AbacAction, AbacDefinition, Effect};
pub use filter::MAX_FILTER_DEPTH;
pub use table::TableRef;

/// At most this many rules in one standard policy.
pub const MAX_RULES: usize = 100;
/// Names: 1–128 characters.
pub const MAX_NAME: usize = 128;
pub const MAX_DESCRIPTION: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyType {
    ColumnMasking,
    RowLevelSecurity,
    Abac,
}

impl PolicyType {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyType::ColumnMasking => "column_masking",
            PolicyType::RowLevelSecurity => "row_level_security",
            PolicyType::Abac => "abac",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            PolicyType::ColumnMasking,
            PolicyType::RowLevelSecurity,
            PolicyType::Abac,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }

    /// Standard policies live under `/policies`, ABAC ones under `/abac-policies`.
    pub fn is_standard(self) -> bool {
        self != PolicyType::Abac
    }

    /// The `kind` a promotion's details give a policy of this type.
    pub fn promotion_kind(self) -> &'static str {
        match self {
            PolicyType::ColumnMasking => "masking_rule",
            PolicyType::RowLevelSecurity => "rls_filter",
            PolicyType::Abac => "abac_policy",
        }
    }
}

/// The two standard types, as a create request names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StandardType {
    ColumnMasking,
    RowLevelSecurity,
}

impl From<StandardType> for PolicyType {
    fn from(t: StandardType) -> Self {
        match t {
            StandardType::ColumnMasking => PolicyType::ColumnMasking,
            StandardType::RowLevelSecurity => PolicyType::RowLevelSecurity,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyMode {
    /// Applied.
    #[default]
    Enforce,
    /// Evaluated and reported (`would_mask`, `would_deny`), not applied.
    Shadow,
}

/// A masking function. Declared from the mildest to the strictest, so `Ord` is strictness:
/// when several rules hit one column the greatest wins (`null` > `full` > `hash` > `partial`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum MaskFunction {
    /// `***` and the last `visible_chars` characters.
    Partial,
    /// Hex SHA-256 keyed per environment: equal values stay equal.
    Hash,
    /// `***` for text, NULL for other types.
    Full,
    Null,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MaskingRule {
    pub table: String,
    pub column: String,
    pub function: MaskFunction,
    /// Only for `partial`: 1–64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible_chars: Option<u32>,
    /// Roles that see clear values; empty masks for everyone, owner included.
    #[serde(default)]
    pub exempt_roles: Vec<Role>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RlsRule {
    pub table: String,
    /// A SQL boolean expression over the table's columns with `{placeholder}`s.
    pub filter: String,
    #[serde(default)]
    pub exempt_roles: Vec<Role>,
}

/// What a policy does, by type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PolicyBody {
    ColumnMasking { rules: Vec<MaskingRule> },
    RowLevelSecurity { rules: Vec<RlsRule> },
    Abac(AbacDefinition),
}

impl PolicyBody {
    pub fn policy_type(&self) -> PolicyType {
        match self {
            PolicyBody::ColumnMasking { .. } => PolicyType::ColumnMasking,
            PolicyBody::RowLevelSecurity { .. } => PolicyType::RowLevelSecurity,
            PolicyBody::Abac(_) => PolicyType::Abac,
        }
    }
}

/// A policy's content: what each saved version holds and what promotion compares (ids,
/// versions and times are bookkeeping, not content).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicySpec {
    pub name: String,
    pub description: String,
    pub enabled: bool,
    pub mode: PolicyMode,
    #[serde(flatten)]
    pub body: PolicyBody,
}

impl PolicySpec {
    pub fn policy_type(&self) -> PolicyType {
        self.body.policy_type()
    }
}

/// One rule of a standard policy as a request writes it. Which fields are required depends
/// on the policy's type; [`standard_rules`] checks them and names `rules[i].<field>`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleInput {
    pub table: Option<String>,
    /// Masking: the column.
    pub column: Option<String>,
    /// Masking: `full`, `partial`, `hash` or `null`.
    pub function: Option<MaskFunction>,
    /// Masking with `partial`: how many trailing characters stay visible (1–64).
    pub visible_chars: Option<i64>,
    /// Row-level security: a SQL boolean expression with `{placeholder}`s.
    pub filter: Option<String>,
    #[serde(default)]
    pub exempt_roles: Vec<Role>,
}

pub fn name(field: &str, value: &str) -> Result<String> {
    validate::display_name(field, value, MAX_NAME)
}

pub fn description(field: &str, value: Option<String>) -> Result<String> {
    let value = value.unwrap_or_default();
    if value.chars().count() > MAX_DESCRIPTION {
        return Err(Error::validation(
            field,
            "max_length",
            format!("{field} must be at most {MAX_DESCRIPTION} characters"),
        ));
    }
    Ok(value)
}

/// Validates a standard policy's rules for its type; errors name `rules[i].<field>`.
pub fn standard_rules(ty: StandardType, rules: &[RuleInput]) -> Result<PolicyBody> {
    if rules.is_empty() {
        return Err(Error::validation(
            "rules",
            "non_empty",
            "a policy needs at least one rule",
        ));
    }
    if rules.len() > MAX_RULES {
        return Err(Error::validation(
            "rules",
            "max_items",
            format!("a policy may hold at most {MAX_RULES} rules"),
        ));
    }
    match ty {
        StandardType::ColumnMasking => rules
            .iter()
            .enumerate()
            .map(|(i, r)| masking_rule(&format!("rules[{i}]"), r))
            .collect::<Result<_>>()
            .map(|rules| PolicyBody::ColumnMasking { rules }),
        StandardType::RowLevelSecurity => rules
            .iter()
            .enumerate()
            .map(|(i, r)| rls_rule(&format!("rules[{i}]"), r))
            .collect::<Result<_>>()
            .map(|rules| PolicyBody::RowLevelSecurity { rules }),
    }
}

fn required<'a, T>(at: &str, name: &str, value: &'a Option<T>, ty: &str) -> Result<&'a T> {
    value.as_ref().ok_or_else(|| {
        Error::validation(
            &format!("{at}.{name}"),
            "required",
            format!("`{at}.{name}` is required in a {ty} rule"),
        )
    })
}

fn not_allowed<T>(at: &str, name: &str, value: &Option<T>, ty: &str) -> Result<()> {
    match value {
        Some(_) => Err(Error::validation(
            &format!("{at}.{name}"),
            "not_allowed",
            format!("`{name}` has no meaning in a {ty} rule"),
        )),
        None => Ok(()),
    }
}

fn masking_rule(at: &str, r: &RuleInput) -> Result<MaskingRule> {
    const TY: &str = "column_masking";
    let table = table::table_name(&format!("{at}.table"), required(at, "table", &r.table, TY)?)?;
    let column = table::column_name(
        &format!("{at}.column"),
        required(at, "column", &r.column, TY)?,
    )?;
    let function = *required(at, "function", &r.function, TY)?;
    not_allowed(at, "filter", &r.filter, TY)?;
    let visible_chars = match (function, r.visible_chars) {
        (MaskFunction::Partial, Some(n)) if (1..=64).contains(&n) => Some(n as u32),
        (MaskFunction::Partial, Some(_)) => {
            return Err(Error::validation(
                &format!("{at}.visible_chars"),
                "range",
                "visible_chars must be between 1 and 64",
            ))
        }
        (MaskFunction::Partial, None) => {
            return Err(Error::validation(
                &format!("{at}.visible_chars"),
                "required",
                "a `partial` mask needs visible_chars (1–64)",
            ))
        }
        (_, Some(_)) => {
            return Err(Error::validation(
                &format!("{at}.visible_chars"),
                "not_allowed",
                "visible_chars applies only to the `partial` function",
            ))
        }
        (_, None) => None,
    };
    Ok(MaskingRule {
        table,
        column,
        function,
        visible_chars,
        exempt_roles: exempt_roles(at, &r.exempt_roles)?,
    })
}

fn rls_rule(at: &str, r: &RuleInput) -> Result<RlsRule> {
    const TY: &str = "row_level_security";
    let table = table::table_name(&format!("{at}.table"), required(at, "table", &r.table, TY)?)?;
    not_allowed(at, "column", &r.column, TY)?;
    not_allowed(at, "function", &r.function, TY)?;
    not_allowed(at, "visible_chars", &r.visible_chars, TY)?;
    let text = required(at, "filter", &r.filter, TY)?;
    let parsed = filter::RowFilter::parse(&format!("{at}.filter"), text, &table)?;
    Ok(RlsRule {
        table,
        filter: parsed.source().to_string(),
        exempt_roles: exempt_roles(at, &r.exempt_roles)?,
    })
}

fn exempt_roles(at: &str, roles: &[Role]) -> Result<Vec<Role>> {
    let mut out: Vec<Role> = Vec::with_capacity(roles.len());
    for (i, role) in roles.iter().enumerate() {
        if out.contains(role) {
            return Err(Error::validation(
                &format!("{at}.exempt_roles[{i}]"),
                "unique",
                format!("exempt_roles lists `{role}` twice"),
            ));
        }
        out.push(*role);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule_of(r: Result<PolicyBody>) -> (String, String) {
        let e = r.unwrap_err();
        (
            e.details["field"].as_str().unwrap().to_string(),
            e.details["rule"].as_str().unwrap().to_string(),
        )
    }

    fn mask(table: &str, column: &str, f: MaskFunction, n: Option<i64>) -> RuleInput {
        RuleInput {
            table: Some(table.into()),
            column: Some(column.into()),
            function: Some(f),
            visible_chars: n,
            ..Default::default()
        }
    }

    #[test]
    fn strictness_order() {
        use MaskFunction::*;
        assert!(Null > Full && Full > Hash && Hash > Partial);
    }

    #[test]
    fn masking_rules_are_checked_field_by_field() {
        use MaskFunction::*;
        let ok = standard_rules(
            StandardType::ColumnMasking,
            &[
                mask("customers", "email", Hash, None),
                mask("crm.customers", "ssn", Partial, Some(4)),
            ],
        )
        .unwrap();
        let PolicyBody::ColumnMasking { rules } = ok else {
            panic!()
        };
        assert_eq!(rules[1].visible_chars, Some(4));
        let bad =
            |rules: Vec<RuleInput>| rule_of(standard_rules(StandardType::ColumnMasking, &rules));
        assert_eq!(bad(vec![]), ("rules".into(), "non_empty".into()));
        assert_eq!(
            bad(vec![
                mask("t", "c", Hash, None),
                mask("t", "c", Partial, Some(0))
            ]),
            ("rules[1].visible_chars".into(), "range".into())
        );
        assert_eq!(
            bad(vec![mask("t", "c", Partial, Some(65))]),
            ("rules[0].visible_chars".into(), "range".into())
        );
        assert_eq!(
            bad(vec![mask("t", "c", Partial, None)]),
            ("rules[0].visible_chars".into(), "required".into())
        );
        assert_eq!(
            bad(vec![mask("t", "c", Full, Some(3))]),
            ("rules[0].visible_chars".into(), "not_allowed".into())
        );
        assert_eq!(
            bad(vec![mask("t x", "c", Full, None)]),
            ("rules[0].table".into(), "identifier".into())
        );
        assert_eq!(
            bad(vec![mask("t", "", Full, None)]),
            ("rules[0].column".into(), "identifier".into())
        );
        let mut no_fn = mask("t", "c", Full, None);
        no_fn.function = None;
        assert_eq!(
            bad(vec![no_fn]),
            ("rules[0].function".into(), "required".into())
        );
        let mut with_filter = mask("t", "c", Full, None);
        with_filter.filter = Some("true".into());
        assert_eq!(
            bad(vec![with_filter]),
            ("rules[0].filter".into(), "not_allowed".into())
        );
        let mut twice = mask("t", "c", Full, None);
        twice.exempt_roles = vec![Role::Admin, Role::Admin];
        assert_eq!(
            bad(vec![twice]),
            ("rules[0].exempt_roles[1]".into(), "unique".into())
        );
        assert_eq!(
            bad((0..=MAX_RULES)
                .map(|_| mask("t", "c", Full, None))
                .collect()),
            ("rules".into(), "max_items".into())
        );
    }

    #[test]
    fn rls_rules_are_checked_field_by_field() {
        let rls = |table: &str, filter: Option<&str>| RuleInput {
            table: Some(table.into()),
            filter: filter.map(Into::into),
            ..Default::default()
        };
        let bad =
            |rules: Vec<RuleInput>| rule_of(standard_rules(StandardType::RowLevelSecurity, &rules));
        assert!(standard_rules(
            StandardType::RowLevelSecurity,
            &[rls("orders", Some("department = {department}"))]
        )
        .is_ok());
        assert_eq!(
            bad(vec![rls("orders", None)]),
            ("rules[0].filter".into(), "required".into())
        );
        assert_eq!(
            bad(vec![
                rls("orders", Some("a = 1")),
                rls("orders", Some("a = "))
            ]),
            ("rules[1].filter".into(), "sql_syntax".into())
        );
        let mut with_column = rls("orders", Some("true"));
        with_column.column = Some("c".into());
        assert_eq!(
            bad(vec![with_column]),
            ("rules[0].column".into(), "not_allowed".into())
        );
    }

    #[test]
    fn spec_round_trips_through_json() {
        let spec = PolicySpec {
            name: "pii".into(),
            description: String::new(),
            enabled: true,
            mode: PolicyMode::Shadow,
            body: PolicyBody::ColumnMasking {
                rules: vec![MaskingRule {
                    table: "customers".into(),
                    column: "email".into(),
                    function: MaskFunction::Partial,
                    visible_chars: Some(4),
                    exempt_roles: vec![Role::Admin],
                }],
            },
        };
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["type"], "column_masking");
        assert_eq!(json["mode"], "shadow");
        let back: PolicySpec = serde_json::from_value(json).unwrap();
        assert_eq!(back, spec);
    }
}

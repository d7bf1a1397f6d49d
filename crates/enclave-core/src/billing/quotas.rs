//! An organization's quotas: its tier's defaults (which the server's operator configures),
//! with the organization's own overrides on top (`PATCH …/billing/quotas`, its owner).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::billing::Credits;
use crate::error::{Error, Result};
use crate::model::Tier;

/// What an organization may use. `null` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Quotas {
    /// Credits the organization's production statements may use per calendar month (UTC).
    pub monthly_credit_limit: Option<u64>,
    /// Statements running at once in one environment (its own `max_concurrent_queries`
    /// setting may only lower it).
    pub max_concurrent_queries: u32,
    /// Rows one statement returns at most; the rest are left out (`truncated`).
    pub max_rows_per_query: u64,
    /// Data the organization's environments may hold, in GiB; writes stop past it.
    pub storage_limit_gb: Option<u32>,
    pub max_environments: Option<u32>,
    /// Members, invitations included.
    pub max_users: Option<u32>,
    /// Live (active or rotating) keys per environment.
    pub max_api_keys_per_environment: u32,
}

impl Quotas {
    /// A tier's defaults, before the operator's configuration (`--tier-quotas`).
    pub fn tier_default(tier: Tier) -> Quotas {
        match tier {
            Tier::Free => Quotas {
                monthly_credit_limit: Some(1_000),
                max_concurrent_queries: 5,
                max_rows_per_query: 10_000,
                storage_limit_gb: Some(1),
                max_environments: Some(3),
                max_users: Some(3),
                max_api_keys_per_environment: 50,
            },
            Tier::Cloud => Quotas {
                monthly_credit_limit: Some(10_000),
                max_concurrent_queries: 10,
                max_rows_per_query: 100_000,
                storage_limit_gb: Some(10),
                max_environments: Some(5),
                max_users: Some(10),
                max_api_keys_per_environment: 50,
            },
            Tier::Growth => Quotas {
                monthly_credit_limit: Some(100_000),
                max_concurrent_queries: 25,
                max_rows_per_query: 1_000_000,
                storage_limit_gb: Some(100),
                max_environments: Some(25),
                max_users: Some(50),
                max_api_keys_per_environment: 50,
            },
            Tier::Enterprise => Quotas {
                monthly_credit_limit: None,
                max_concurrent_queries: 100,
                max_rows_per_query: 1_000_000,
                storage_limit_gb: None,
                max_environments: None,
                max_users: None,
                max_api_keys_per_environment: 50,
            },
        }
    }

    /// The monthly limit as credits (`None`: unlimited).
    pub fn credit_limit(&self) -> Option<Credits> {
        self.monthly_credit_limit.map(Credits::whole)
    }

    fn set(&mut self, field: Field, limit: Limit) {
        let n = match limit {
            Limit::Count(n) => Some(n),
            Limit::Unlimited => None,
        };
        let small = |n: Option<u64>| n.map(|n| n as u32);
        match field {
            Field::MonthlyCreditLimit => self.monthly_credit_limit = n,
            Field::MaxConcurrentQueries => self.max_concurrent_queries = n.unwrap_or(0) as u32,
            Field::MaxRowsPerQuery => self.max_rows_per_query = n.unwrap_or(0),
            Field::StorageLimitGb => self.storage_limit_gb = small(n),
            Field::MaxEnvironments => self.max_environments = small(n),
            Field::MaxUsers => self.max_users = small(n),
            Field::MaxApiKeysPerEnvironment => {
                self.max_api_keys_per_environment = n.unwrap_or(0) as u32
            }
        }
    }
}

/// One quota, by the name the API and the configuration use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    MonthlyCreditLimit,
    MaxConcurrentQueries,
    MaxRowsPerQuery,
    StorageLimitGb,
    MaxEnvironments,
    MaxUsers,
    MaxApiKeysPerEnvironment,
}

impl Field {
    pub const ALL: [Field; 7] = [
        Field::MonthlyCreditLimit,
        Field::MaxConcurrentQueries,
        Field::MaxRowsPerQuery,
        Field::StorageLimitGb,
        Field::MaxEnvironments,
        Field::MaxUsers,
        Field::MaxApiKeysPerEnvironment,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Field::MonthlyCreditLimit => "monthly_credit_limit",
            Field::MaxConcurrentQueries => "max_concurrent_queries",
            Field::MaxRowsPerQuery => "max_rows_per_query",
            Field::StorageLimitGb => "storage_limit_gb",
            Field::MaxEnvironments => "max_environments",
            Field::MaxUsers => "max_users",
            Field::MaxApiKeysPerEnvironment => "max_api_keys_per_environment",
        }
    }

    pub fn parse(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The values a quota may take: `(least, most, may be unlimited)`.
    fn range(self) -> (u64, u64, bool) {
        match self {
            // Zero credits stops every production statement: a way to freeze spending.
            Field::MonthlyCreditLimit => (0, 1_000_000_000_000, true),
            Field::MaxConcurrentQueries => (1, 10_000, false),
            Field::MaxRowsPerQuery => (1, 1_000_000_000, false),
            // Zero stops every write that adds data: a way to freeze growth.
            Field::StorageLimitGb => (0, 1_000_000, true),
            Field::MaxEnvironments => (1, 100_000, true),
            Field::MaxUsers => (1, 1_000_000, true),
            Field::MaxApiKeysPerEnvironment => (1, 100_000, false),
        }
    }

    /// A value for this quota: a whole number in its range, or `unlimited` where allowed.
    pub fn limit(self, value: &Value) -> Result<Limit> {
        let (least, most, unlimited) = self.range();
        let field = format!("quotas.{}", self.name());
        match value {
            Value::String(s) if s == "unlimited" && unlimited => Ok(Limit::Unlimited),
            Value::Number(n) => match n.as_u64() {
                Some(n) if (least..=most).contains(&n) => Ok(Limit::Count(n)),
                _ => Err(Error::validation(
                    &field,
                    "range",
                    format!("{field} must be a whole number from {least} to {most}"),
                )),
            },
            _ => Err(Error::validation(
                &field,
                "type",
                if unlimited {
                    format!("{field} must be a whole number or \"unlimited\"")
                } else {
                    format!("{field} must be a whole number (it cannot be unlimited)")
                },
            )),
        }
    }
}

/// A quota's value as set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Count(u64),
    Unlimited,
}

impl Limit {
    fn to_json(self) -> Value {
        match self {
            Limit::Count(n) => Value::from(n),
            Limit::Unlimited => Value::from("unlimited"),
        }
    }
}

/// An organization's own quotas, where they differ from its tier's: stored as a JSON object
/// of the fields set (`{"max_users": 10, "monthly_credit_limit": "unlimited"}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides(BTreeMap<Field, Limit>);

impl Overrides {
    /// Reads what [`Overrides::to_json`] wrote; a field no longer known is ignored.
    pub fn from_json(value: &Value) -> Overrides {
        let Some(object) = value.as_object() else {
            return Overrides::default();
        };
        Overrides(
            object
                .iter()
                .filter_map(|(name, v)| {
                    let field = Field::parse(name)?;
                    Some((field, field.limit(v).ok()?))
                })
                .collect(),
        )
    }

    pub fn to_json(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(f, l)| (f.name().to_string(), l.to_json()))
                .collect(),
        )
    }

    /// The organization's quotas: the tier's, with these on top.
    pub fn apply(&self, mut quotas: Quotas) -> Quotas {
        for (field, limit) in &self.0 {
            quotas.set(*field, *limit);
        }
        quotas
    }

    pub fn patch(&mut self, patch: &QuotaPatch) {
        for (field, change) in &patch.0 {
            match change {
                Some(limit) => self.0.insert(*field, *limit),
                None => self.0.remove(field),
            };
        }
    }
}

/// A change to an organization's quotas, as `PATCH …/billing/quotas` takes it: the fields of
/// `quotas`, each a whole number, `"unlimited"` where the quota allows it, or `null` to go back
/// to the tier's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaPatch(Vec<(Field, Option<Limit>)>);

impl QuotaPatch {
    /// Accepts `{"quotas": {…}}` or the fields at the top level; an unknown field, a value out
    /// of range or an empty change is a 400 naming the field.
    pub fn parse(body: &Value) -> Result<QuotaPatch> {
        let fields = match body.get("quotas") {
            Some(q) => q,
            None => body,
        };
        let Some(object) = fields.as_object() else {
            return Err(Error::validation(
                "quotas",
                "type",
                "quotas must be an object of quota names and values",
            ));
        };
        if object.is_empty() {
            return Err(Error::validation(
                "quotas",
                "required",
                "name at least one quota to change",
            ));
        }
        let mut changes = Vec::new();
        for (name, value) in object {
            let field = Field::parse(name).ok_or_else(|| {
                let known: Vec<&str> = Field::ALL.iter().map(|f| f.name()).collect();
                Error::validation(
                    &format!("quotas.{name}"),
                    "known",
                    format!("{name} is not a quota; quotas are {}", known.join(", ")),
                )
            })?;
            let change = match value {
                Value::Null => None,
                v => Some(field.limit(v)?),
            };
            changes.push((field, change));
        }
        Ok(QuotaPatch(changes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn overrides_sit_on_the_tier_and_null_restores_it() {
        let tier = Quotas::tier_default(Tier::Free);
        let mut overrides = Overrides::default();
        overrides.patch(
            &QuotaPatch::parse(
                &json!({"quotas": {"max_users": 10, "monthly_credit_limit": "unlimited"}}),
            )
            .unwrap(),
        );
        let q = overrides.apply(tier);
        assert_eq!(q.max_users, Some(10));
        assert_eq!(q.monthly_credit_limit, None);
        assert_eq!(q.max_rows_per_query, tier.max_rows_per_query);
        let stored = overrides.to_json();
        assert_eq!(
            stored,
            json!({"max_users": 10, "monthly_credit_limit": "unlimited"})
        );
        assert_eq!(Overrides::from_json(&stored), overrides);
        overrides.patch(&QuotaPatch::parse(&json!({"max_users": null})).unwrap());
        assert_eq!(overrides.apply(tier).max_users, tier.max_users);
    }

    #[test]
    fn bad_changes_name_the_field_and_rule() {
        let rule = |body: Value| {
            let e = QuotaPatch::parse(&body).unwrap_err();
            (
                e.details["field"].as_str().unwrap().to_string(),
                e.details["rule"].as_str().unwrap().to_string(),
            )
        };
        assert_eq!(
            rule(json!({"quotas": {"max_rows_per_query": 0}})),
            ("quotas.max_rows_per_query".into(), "range".into())
        );
        assert_eq!(
            rule(json!({"quotas": {"max_rows_per_query": "unlimited"}})),
            ("quotas.max_rows_per_query".into(), "type".into())
        );
        assert_eq!(
            rule(json!({"quotas": {"max_users": 2.5}})),
            ("quotas.max_users".into(), "range".into())
        );
        assert_eq!(
            rule(json!({"quotas": {"max_widgets": 1}})),
            ("quotas.max_widgets".into(), "known".into())
        );
        assert_eq!(
            rule(json!({"quotas": {}})),
            ("quotas".into(), "required".into())
        );
        assert_eq!(
            rule(json!({"quotas": [1]})),
            ("quotas".into(), "type".into())
        );
        assert!(QuotaPatch::parse(&json!({"monthly_credit_limit": 0})).is_ok());
    }

    #[test]
    fn every_tier_has_every_quota() {
        for tier in Tier::ALL {
            let q = Quotas::tier_default(tier);
            assert!(q.max_concurrent_queries >= 1 && q.max_rows_per_query >= 1);
        }
        assert_eq!(Quotas::tier_default(Tier::Enterprise).credit_limit(), None);
        assert_eq!(
            Quotas::tier_default(Tier::Free).credit_limit(),
            Some(Credits::whole(1_000))
        );
    }
}

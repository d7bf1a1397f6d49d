//! Comparing two environments: each setting with both values, and named objects (policies,
//! secrets by value) as equal, different or missing on one side — never showing a secret's
//! value. Shared by the environment diff, promotion planning and secrets.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::environment::EnvSettings;
use crate::id::EnvId;
use crate::policy::PolicySpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiffStatus {
    Equal,
    Different,
    /// Present in this environment, absent in the other.
    MissingThere,
    /// Present in the other environment, absent in this one.
    MissingHere,
}

/// One setting compared.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SettingDiff {
    pub name: String,
    pub status: DiffStatus,
    #[schema(value_type = Object)]
    pub value: Value,
    #[schema(value_type = Object)]
    pub against_value: Value,
}

/// An object compared by name; values are never shown (secrets), only whether they match.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NamedDiff {
    pub name: String,
    pub status: DiffStatus,
}

/// `GET /v1/environments/{env_id}/diff?against=…`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EnvironmentDiff {
    pub env_id: EnvId,
    pub against_env_id: EnvId,
    /// True when nothing below differs.
    pub identical: bool,
    pub settings: Vec<SettingDiff>,
    pub policies: Vec<NamedDiff>,
    /// Keys compared by whether their values are equal; values are never shown.
    pub secrets: Vec<NamedDiff>,
    /// Agents' capability grants, by agent id.
    pub capabilities: Vec<NamedDiff>,
    /// This environment's `required_keys` it does not hold.
    pub missing_keys: Vec<String>,
    /// The other environment's `required_keys` it does not hold.
    pub against_missing_keys: Vec<String>,
}

/// Compares two environments' settings (every setting listed, equal ones too).
pub fn diff_settings(this: &EnvSettings, against: &EnvSettings) -> Vec<SettingDiff> {
    this.entries()
        .into_iter()
        .zip(against.entries())
        .map(|((name, value), (_, against_value))| SettingDiff {
            name: name.into(),
            status: if value == against_value {
                DiffStatus::Equal
            } else {
                DiffStatus::Different
            },
            value,
            against_value,
        })
        .collect()
}

/// Policies of two environments compared by name (content, never ids or versions).
pub fn diff_policies(this: &[&PolicySpec], against: &[&PolicySpec]) -> Vec<NamedDiff> {
    let mut names: BTreeSet<&str> = this.iter().map(|p| p.name.as_str()).collect();
    names.extend(against.iter().map(|p| p.name.as_str()));
    names
        .into_iter()
        .map(|name| {
            let here = this.iter().find(|p| p.name == name);
            let there = against.iter().find(|p| p.name == name);
            let status = match (here, there) {
                (Some(a), Some(b)) if a == b => DiffStatus::Equal,
                (Some(_), Some(_)) => DiffStatus::Different,
                (Some(_), None) => DiffStatus::MissingThere,
                _ => DiffStatus::MissingHere,
            };
            NamedDiff {
                name: name.to_string(),
                status,
            }
        })
        .collect()
}

/// Compares two environments' capability grants by agent id.
pub fn diff_capabilities(
    this: &std::collections::BTreeMap<String, crate::agent::CapabilitySpec>,
    against: &std::collections::BTreeMap<String, crate::agent::CapabilitySpec>,
) -> Vec<NamedDiff> {
    let names: BTreeSet<&String> = this.keys().chain(against.keys()).collect();
    names
        .into_iter()
        .map(|name| NamedDiff {
            name: name.clone(),
            status: match (this.get(name), against.get(name)) {
                (Some(a), Some(b)) if a == b => DiffStatus::Equal,
                (Some(_), Some(_)) => DiffStatus::Different,
                (Some(_), None) => DiffStatus::MissingThere,
                _ => DiffStatus::MissingHere,
            },
        })
        .collect()
}

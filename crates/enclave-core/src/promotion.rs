//! Moving configuration between environments: what promotion, clone and diff may include,
//! and the shapes of their answers. Settings are planned here; policies and secrets plug in
//! through the same [`Change`] list when those resources exist.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::environment::EnvSettings;
use crate::error::{Error, Result};

/// What a promotion may carry (spec: `include ⊆ policies, masking_rules, rls_filters,
/// abac_policies, secrets, settings`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PromoteItem {
    Policies,
    MaskingRules,
    RlsFilters,
    AbacPolicies,
    Secrets,
    Settings,
}

impl PromoteItem {
    pub const ALL: [PromoteItem; 6] = [
        PromoteItem::Policies,
        PromoteItem::MaskingRules,
        PromoteItem::RlsFilters,
        PromoteItem::AbacPolicies,
        PromoteItem::Secrets,
        PromoteItem::Settings,
    ];
}

/// What a clone may copy.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CloneItem {
    Settings,
    Policies,
    Secrets,
}

impl CloneItem {
    pub const ALL: [CloneItem; 3] = [CloneItem::Settings, CloneItem::Policies, CloneItem::Secrets];
}

/// An `include` list: absent means everything; empty or repeated entries are refused so a
/// typo cannot silently promote nothing.
pub fn include<T: Ord + Copy>(requested: Option<Vec<T>>, all: &[T]) -> Result<BTreeSet<T>> {
    let Some(list) = requested else {
        return Ok(all.iter().copied().collect());
    };
    if list.is_empty() {
        return Err(Error::validation(
            "include",
            "non_empty",
            "include must name at least one item (omit it to include everything)",
        ));
    }
    let set: BTreeSet<T> = list.iter().copied().collect();
    if set.len() != list.len() {
        return Err(Error::validation(
            "include",
            "unique",
            "include must not repeat an item",
        ));
    }
    Ok(set)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    Created,
    Updated,
}

/// One object a promotion creates or updates in the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Change {
    /// `setting`, `policy`, `masking_rule`, `rls_filter`, `abac_policy`, `secret`.
    pub kind: String,
    pub name: String,
    pub action: ChangeAction,
}

/// The counts of a promotion (spec/environments.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PromotionCounts {
    pub policies_promoted: u32,
    pub policies_created: u32,
    pub policies_updated: u32,
    pub masking_rules_promoted: u32,
    pub rls_filters_promoted: u32,
    pub abac_policies_promoted: u32,
    pub secrets_promoted: u32,
    /// How many settings the target receives new values for.
    pub settings_changed: u32,
}

impl PromotionCounts {
    pub fn of(changes: &[Change]) -> Self {
        let mut c = PromotionCounts::default();
        for ch in changes {
            match ch.kind.as_str() {
                "setting" => c.settings_changed += 1,
                "secret" => c.secrets_promoted += 1,
                "masking_rule" => c.masking_rules_promoted += 1,
                "rls_filter" => c.rls_filters_promoted += 1,
                "abac_policy" => c.abac_policies_promoted += 1,
                _ => {}
            }
            if matches!(
                ch.kind.as_str(),
                "policy" | "masking_rule" | "rls_filter" | "abac_policy"
            ) {
                c.policies_promoted += 1;
                match ch.action {
                    ChangeAction::Created => c.policies_created += 1,
                    ChangeAction::Updated => c.policies_updated += 1,
                }
            }
        }
        c
    }
}

/// The settings a promotion would write into `target`, and the change list that says so.
/// `None` when the target already has the source's values.
pub fn plan_settings(
    source: &EnvSettings,
    target: &EnvSettings,
) -> Option<(EnvSettings, Vec<Change>)> {
    let names = source.differing(target);
    if names.is_empty() {
        return None;
    }
    let changes = names
        .into_iter()
        .map(|name| Change {
            kind: "setting".into(),
            name: name.into(),
            action: ChangeAction::Updated,
        })
        .collect();
    Some((source.clone(), changes))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PromotionStatus {
    Completed,
    DryRun,
}

/// A promotion's answer, and the record kept of real runs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Promotion {
    /// `prm_…`; dry runs get one too but are not recorded.
    pub promotion_id: String,
    pub source_env: String,
    pub target_env: String,
    pub status: PromotionStatus,
    pub dry_run: bool,
    pub include: Vec<PromoteItem>,
    pub changes: PromotionCounts,
    pub details: Vec<Change>,
    /// The user who promoted.
    pub promoted_by: String,
    pub promoted_at: DateTime<Utc>,
}

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
    pub env_id: String,
    pub against_env_id: String,
    /// True when nothing below differs.
    pub identical: bool,
    pub settings: Vec<SettingDiff>,
    pub policies: Vec<NamedDiff>,
    pub secrets: Vec<NamedDiff>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::SettingsPatch;

    #[test]
    fn include_lists() {
        assert_eq!(include(None, &PromoteItem::ALL).unwrap().len(), 6);
        let one = include(Some(vec![PromoteItem::Settings]), &PromoteItem::ALL).unwrap();
        assert!(one.contains(&PromoteItem::Settings) && one.len() == 1);
        assert_eq!(
            include::<PromoteItem>(Some(vec![]), &PromoteItem::ALL)
                .unwrap_err()
                .details["rule"],
            "non_empty"
        );
        assert_eq!(
            include(
                Some(vec![CloneItem::Settings, CloneItem::Settings]),
                &CloneItem::ALL
            )
            .unwrap_err()
            .details["rule"],
            "unique"
        );
    }

    #[test]
    fn settings_plan_and_diff() {
        let a = EnvSettings::default();
        assert!(plan_settings(&a, &a).is_none());
        let b = a
            .apply(&SettingsPatch {
                query_timeout_ms: Some(1_000),
                ..Default::default()
            })
            .unwrap();
        let (written, changes) = plan_settings(&b, &a).unwrap();
        assert_eq!(written, b);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].name, "query_timeout_ms");
        let counts = PromotionCounts::of(&changes);
        assert_eq!(counts.settings_changed, 1);
        assert_eq!(counts.policies_promoted, 0);
        let diff = diff_settings(&a, &b);
        assert_eq!(diff.len(), 3);
        assert_eq!(diff[0].status, DiffStatus::Different);
        assert_eq!(diff[1].status, DiffStatus::Equal);
    }

    #[test]
    fn counts_of_policy_changes() {
        let ch = |kind: &str, action| Change {
            kind: kind.into(),
            name: "n".into(),
            action,
        };
        let c = PromotionCounts::of(&[
            ch("masking_rule", ChangeAction::Created),
            ch("rls_filter", ChangeAction::Updated),
            ch("secret", ChangeAction::Created),
        ]);
        assert_eq!(
            (c.policies_promoted, c.policies_created, c.policies_updated),
            (2, 1, 1)
        );
        assert_eq!(
            (
                c.masking_rules_promoted,
                c.rls_filters_promoted,
                c.secrets_promoted
            ),
            (1, 1, 1)
        );
    }
}

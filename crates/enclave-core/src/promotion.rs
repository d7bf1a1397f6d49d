//! Moving configuration between environments: what promotion, clone and diff may include,
//! and the shapes of their answers. Settings are planned here; policies and secrets plug in
//! through the same [`Change`] list when those resources exist.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::agent::CapabilitySpec;
use crate::environment::EnvSettings;
use crate::error::{Error, Result};
use crate::id::EnvId;
use crate::policy::{PolicySpec, PolicyType};

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
    /// Agents' capability grants, by agent id.
    Capabilities,
}

impl PromoteItem {
    pub const ALL: [PromoteItem; 7] = [
        PromoteItem::Policies,
        PromoteItem::MaskingRules,
        PromoteItem::RlsFilters,
        PromoteItem::AbacPolicies,
        PromoteItem::Secrets,
        PromoteItem::Settings,
        PromoteItem::Capabilities,
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
    /// Agents' capability grants.
    Capabilities,
    /// Every table (with its rows) and view: only when named, never by default.
    Data,
}

impl CloneItem {
    /// What a clone copies when `include` is absent: everything but the data.
    pub const DEFAULT: [CloneItem; 4] = [
        CloneItem::Settings,
        CloneItem::Policies,
        CloneItem::Secrets,
        CloneItem::Capabilities,
    ];
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
    /// `setting`, `policy`, `masking_rule`, `rls_filter`, `abac_policy`, `secret`,
    /// `capability` (named by its agent id).
    pub kind: String,
    pub name: String,
    pub action: ChangeAction,
}

/// The counts of a promotion (docs/environments.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PromotionCounts {
    pub policies_promoted: u32,
    pub policies_created: u32,
    pub policies_updated: u32,
    pub masking_rules_promoted: u32,
    pub rls_filters_promoted: u32,
    pub abac_policies_promoted: u32,
    pub secrets_promoted: u32,
    /// Agents whose capability grant the target receives (new or changed).
    pub capabilities_promoted: u32,
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
                "capability" => c.capabilities_promoted += 1,
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
/// `None` when the target already has the source's values. The engine is not promoted: it
/// says where the target's data is, and a promotion never moves data.
pub fn plan_settings(
    source: &EnvSettings,
    target: &EnvSettings,
) -> Option<(EnvSettings, Vec<Change>)> {
    let source = &source.keeping_engine_of(target);
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

/// The capability grants a promotion writes into the target: each source grant (by agent
/// id) the target lacks or holds with other content, with the change list that says so.
/// Grants only in the target are kept.
pub fn plan_capabilities(
    source: &BTreeMap<String, CapabilitySpec>,
    target: &BTreeMap<String, CapabilitySpec>,
) -> (Vec<(String, CapabilitySpec)>, Vec<Change>) {
    let mut writes = Vec::new();
    let mut changes = Vec::new();
    for (agent, spec) in source {
        let action = match target.get(agent) {
            None => ChangeAction::Created,
            Some(t) if t != spec => ChangeAction::Updated,
            Some(_) => continue,
        };
        writes.push((agent.clone(), spec.clone()));
        changes.push(Change {
            kind: "capability".into(),
            name: agent.clone(),
            action,
        });
    }
    (writes, changes)
}

/// The policy types an `include` set carries: `policies` means all of them.
pub fn policy_types(include: &BTreeSet<PromoteItem>) -> Vec<PolicyType> {
    let all = include.contains(&PromoteItem::Policies);
    [
        (PromoteItem::MaskingRules, PolicyType::ColumnMasking),
        (PromoteItem::RlsFilters, PolicyType::RowLevelSecurity),
        (PromoteItem::AbacPolicies, PolicyType::Abac),
    ]
    .into_iter()
    .filter(|(item, _)| all || include.contains(item))
    .map(|(_, t)| t)
    .collect()
}

/// A policy of the target as the plan sees it.
#[derive(Debug, Clone, Copy)]
pub struct TargetPolicy<'a> {
    pub policy_id: &'a str,
    pub version: i64,
    pub spec: &'a PolicySpec,
}

/// What promoting policies writes into the target.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyPlan {
    pub changes: Vec<Change>,
    pub creates: Vec<PolicySpec>,
    /// `(target policy id, its version as planned, new content)`.
    pub updates: Vec<(String, i64, PolicySpec)>,
}

/// Source policies of the included types, matched by name: missing in the target →
/// created; different → updated (content, type included); equal → untouched. Policies only
/// in the target are kept.
pub fn plan_policies(
    source: &[&PolicySpec],
    target: &[TargetPolicy],
    types: &[PolicyType],
) -> PolicyPlan {
    let mut plan = PolicyPlan::default();
    let mut sources: Vec<&PolicySpec> = source
        .iter()
        .copied()
        .filter(|p| types.contains(&p.policy_type()))
        .collect();
    sources.sort_by(|a, b| a.name.cmp(&b.name));
    for spec in sources {
        let kind = spec.policy_type().promotion_kind().to_string();
        match target.iter().find(|t| t.spec.name == spec.name) {
            None => {
                plan.changes.push(Change {
                    kind,
                    name: spec.name.clone(),
                    action: ChangeAction::Created,
                });
                plan.creates.push(spec.clone());
            }
            Some(t) if t.spec != spec => {
                plan.changes.push(Change {
                    kind,
                    name: spec.name.clone(),
                    action: ChangeAction::Updated,
                });
                plan.updates
                    .push((t.policy_id.to_string(), t.version, spec.clone()));
            }
            Some(_) => {}
        }
    }
    plan
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
    pub source_env: EnvId,
    pub target_env: EnvId,
    pub status: PromotionStatus,
    pub dry_run: bool,
    pub include: Vec<PromoteItem>,
    pub changes: PromotionCounts,
    pub details: Vec<Change>,
    /// The user who promoted.
    pub promoted_by: String,
    pub promoted_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_grants_plan_and_diff_by_agent() {
        let spec = |actions: serde_json::Value| -> crate::agent::CapabilitySpec {
            serde_json::from_value(serde_json::json!({ "allowed_actions": actions })).unwrap()
        };
        let source: BTreeMap<String, _> = [
            ("bot".to_string(), spec(serde_json::json!(["query"]))),
            ("etl".to_string(), spec(serde_json::json!(["write"]))),
            ("same".to_string(), spec(serde_json::json!(["ddl"]))),
        ]
        .into();
        let target: BTreeMap<String, _> = [
            ("etl".to_string(), spec(serde_json::json!(["query"]))),
            ("same".to_string(), spec(serde_json::json!(["ddl"]))),
            ("mine".to_string(), spec(serde_json::json!(["query"]))),
        ]
        .into();
        let (writes, changes) = plan_capabilities(&source, &target);
        assert_eq!(
            writes.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
            ["bot", "etl"]
        );
        assert_eq!(changes[0].action, ChangeAction::Created);
        assert_eq!(changes[1].action, ChangeAction::Updated);
        assert_eq!(PromotionCounts::of(&changes).capabilities_promoted, 2);
        let diff = crate::diff::diff_capabilities(&source, &target);
        let status: Vec<_> = diff.iter().map(|d| (d.name.as_str(), d.status)).collect();
        use crate::diff::DiffStatus::*;
        assert_eq!(
            status,
            [
                ("bot", MissingThere),
                ("etl", Different),
                ("mine", MissingHere),
                ("same", Equal)
            ]
        );
    }
    use crate::diff::{diff_policies, diff_settings, DiffStatus};
    use crate::environment::SettingsPatch;

    #[test]
    fn include_lists() {
        assert_eq!(include(None, &PromoteItem::ALL).unwrap().len(), 7);
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
                &CloneItem::DEFAULT
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
        // The engine stays the target's.
        let elsewhere = b
            .apply(&SettingsPatch {
                engine: Some(crate::environment::EngineKind::Postgres),
                ..Default::default()
            })
            .unwrap();
        let (written, changes) = plan_settings(&elsewhere, &a).unwrap();
        assert_eq!((written, changes.len()), (b.clone(), 1));
        assert!(plan_settings(&elsewhere, &b).is_none());
        let diff = diff_settings(&a, &b);
        assert_eq!(diff.len(), 6);
        assert_eq!(diff[0].status, DiffStatus::Different);
        assert_eq!(diff[1].status, DiffStatus::Equal);
    }

    fn policy(name: &str, ty: PolicyType, description: &str) -> PolicySpec {
        use crate::policy::{abac, PolicyBody};
        let body = match ty {
            PolicyType::ColumnMasking => PolicyBody::ColumnMasking { rules: vec![] },
            PolicyType::RowLevelSecurity => PolicyBody::RowLevelSecurity { rules: vec![] },
            PolicyType::Abac => PolicyBody::Abac(
                abac::definition(
                    abac::Effect::Deny,
                    vec![abac::AbacAction::All],
                    vec!["*".into()],
                    None,
                    None,
                )
                .unwrap(),
            ),
        };
        PolicySpec {
            name: name.into(),
            description: description.into(),
            enabled: true,
            mode: Default::default(),
            body,
        }
    }

    #[test]
    fn policy_plans_match_by_name() {
        use PolicyType::*;
        let src = [
            policy("a", ColumnMasking, "new"),
            policy("b", RowLevelSecurity, "changed"),
            policy("c", Abac, "same"),
            policy("d", Abac, "not included"),
        ];
        let tgt = [
            policy("b", RowLevelSecurity, "old"),
            policy("c", Abac, "same"),
            policy("only-here", ColumnMasking, ""),
        ];
        let target: Vec<TargetPolicy> = tgt
            .iter()
            .enumerate()
            .map(|(i, spec)| TargetPolicy {
                policy_id: ["p1", "p2", "p3"][i],
                version: 3,
                spec,
            })
            .collect();
        let refs: Vec<&PolicySpec> = src.iter().collect();
        let include: BTreeSet<PromoteItem> = [PromoteItem::Policies].into();
        let all = policy_types(&include);
        assert_eq!(all.len(), 3);
        let plan = plan_policies(&refs[..3], &target, &all);
        assert_eq!(plan.creates.len(), 1);
        assert_eq!(plan.updates, vec![("p1".to_string(), 3, src[1].clone())]);
        let kinds: Vec<(&str, &str, ChangeAction)> = plan
            .changes
            .iter()
            .map(|c| (c.kind.as_str(), c.name.as_str(), c.action))
            .collect();
        assert_eq!(
            kinds,
            [
                ("masking_rule", "a", ChangeAction::Created),
                ("rls_filter", "b", ChangeAction::Updated)
            ]
        );
        let only_abac = policy_types(&[PromoteItem::AbacPolicies].into());
        let plan = plan_policies(&refs, &target, &only_abac);
        assert_eq!(
            plan.creates,
            vec![src[3].clone()],
            "c is equal; a and b are not ABAC"
        );
        let diff = diff_policies(&refs[..3], &tgt.iter().collect::<Vec<_>>());
        let got: Vec<(&str, DiffStatus)> =
            diff.iter().map(|d| (d.name.as_str(), d.status)).collect();
        assert_eq!(
            got,
            [
                ("a", DiffStatus::MissingThere),
                ("b", DiffStatus::Different),
                ("c", DiffStatus::Equal),
                ("only-here", DiffStatus::MissingHere),
            ]
        );
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

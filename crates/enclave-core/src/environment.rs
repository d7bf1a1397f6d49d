//! Environments (docs/environments.md): the field rules, the lifecycle, settings, the parent
//! tree and the write guard. Pure: the store supplies what a rule needs to look at.

use crate::id::{EnvId, OrgId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::error::{Error, Result};

/// Deepest allowed parent chain, counting the environment itself.
pub const MAX_DEPTH: usize = 8;
pub const MAX_NAME_CHARS: usize = 64;
pub const MAX_DESCRIPTION_CHARS: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EnvType {
    Dev,
    Staging,
    Prod,
    Custom,
}

impl EnvType {
    pub const ALL: [EnvType; 4] = [
        EnvType::Dev,
        EnvType::Staging,
        EnvType::Prod,
        EnvType::Custom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EnvType::Dev => "dev",
            EnvType::Staging => "staging",
            EnvType::Prod => "prod",
            EnvType::Custom => "custom",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        EnvType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The type a slug suggests: `dev`/`development`, `stg`/`staging`, `prod`/`production`.
    pub fn infer(slug: &str) -> Self {
        match slug {
            "dev" | "development" => EnvType::Dev,
            "stg" | "staging" => EnvType::Staging,
            "prod" | "production" => EnvType::Prod,
            _ => EnvType::Custom,
        }
    }

    /// Green for development, amber for staging, red for production, slate otherwise.
    pub fn default_color(self) -> &'static str {
        match self {
            EnvType::Dev => "#22c55e",
            EnvType::Staging => "#f59e0b",
            EnvType::Prod => "#ef4444",
            EnvType::Custom => "#64748b",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EnvStatus {
    Provisioning,
    Active,
    Suspended,
    Decommissioning,
}

/// The lifecycle's moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The environment's data store is ready.
    Activate,
    Suspend,
    Resume,
    /// Deletion has begun.
    Decommission,
}

impl Transition {
    fn name(self) -> &'static str {
        match self {
            Transition::Activate => "activate",
            Transition::Suspend => "suspend",
            Transition::Resume => "resume",
            Transition::Decommission => "decommission",
        }
    }
}

impl EnvStatus {
    pub const ALL: [EnvStatus; 4] = [
        EnvStatus::Provisioning,
        EnvStatus::Active,
        EnvStatus::Suspended,
        EnvStatus::Decommissioning,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EnvStatus::Provisioning => "provisioning",
            EnvStatus::Active => "active",
            EnvStatus::Suspended => "suspended",
            EnvStatus::Decommissioning => "decommissioning",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        EnvStatus::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// `provisioning → active`, `active ⇄ suspended`, anything but `decommissioning` →
    /// `decommissioning`; every other move is 409.
    pub fn apply(self, t: Transition) -> Result<EnvStatus> {
        use EnvStatus::*;
        let next = match (self, t) {
            (Provisioning, Transition::Activate) => Active,
            (Active, Transition::Suspend) => Suspended,
            (Suspended, Transition::Resume) => Active,
            (Provisioning | Active | Suspended, Transition::Decommission) => Decommissioning,
            _ => {
                return Err(Error::conflict(
                    "illegal_transition",
                    format!(
                        "cannot {} an environment that is {}",
                        t.name(),
                        self.as_str()
                    ),
                )
                .with_details(json!({
                    "rule": "illegal_transition",
                    "status": self.as_str(),
                    "transition": t.name(),
                })))
            }
        };
        Ok(next)
    }
}

/// Per-environment settings with the spec's defaults and ranges. Stored as JSON; fields added
/// later read as their defaults from older rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct EnvSettings {
    /// 100–3 600 000, default 30 000.
    pub query_timeout_ms: i64,
    /// 1–10 000, default 100.
    pub max_concurrent_queries: i64,
    /// Default true.
    pub cache_enabled: bool,
    /// Where the environment's data lives: the embedded engine (default) or a PostgreSQL
    /// database.
    pub engine: EngineKind,
    /// With `engine: postgres`, the key of the environment's secret that holds the connection
    /// string (`postgres://…`).
    pub engine_secret: Option<String>,
    /// Default false. When true, a statement from an agent without a capability grant in the
    /// environment reads and writes nothing (docs/provisioning.md).
    pub agents_require_capabilities: bool,
}

/// The engines an environment's data can live in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    #[default]
    Duckdb,
    Postgres,
}

impl EngineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Duckdb => "duckdb",
            EngineKind::Postgres => "postgres",
        }
    }
}

impl Default for EnvSettings {
    fn default() -> Self {
        EnvSettings {
            query_timeout_ms: 30_000,
            max_concurrent_queries: 100,
            cache_enabled: true,
            engine: EngineKind::Duckdb,
            engine_secret: None,
            agents_require_capabilities: false,
        }
    }
}

/// A partial change of settings, as requests send it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    pub query_timeout_ms: Option<i64>,
    pub max_concurrent_queries: Option<i64>,
    pub cache_enabled: Option<bool>,
    pub engine: Option<EngineKind>,
    pub engine_secret: Option<String>,
    pub agents_require_capabilities: Option<bool>,
}

impl EnvSettings {
    /// `self` with `patch` applied, every range checked.
    pub fn apply(&self, patch: &SettingsPatch) -> Result<EnvSettings> {
        let range = |name: &str, value: i64, lo: i64, hi: i64| {
            if (lo..=hi).contains(&value) {
                Ok(value)
            } else {
                Err(Error::validation(
                    &format!("settings.{name}"),
                    "range",
                    format!("settings.{name} must be between {lo} and {hi}"),
                ))
            }
        };
        Ok(EnvSettings {
            query_timeout_ms: match patch.query_timeout_ms {
                Some(v) => range("query_timeout_ms", v, 100, 3_600_000)?,
                None => self.query_timeout_ms,
            },
            max_concurrent_queries: match patch.max_concurrent_queries {
                Some(v) => range("max_concurrent_queries", v, 1, 10_000)?,
                None => self.max_concurrent_queries,
            },
            cache_enabled: patch.cache_enabled.unwrap_or(self.cache_enabled),
            engine: patch.engine.unwrap_or(self.engine),
            engine_secret: match &patch.engine_secret {
                Some(key) => {
                    crate::secret::validate_key("settings.engine_secret", key)?;
                    Some(key.clone())
                }
                None => self.engine_secret.clone(),
            },
            agents_require_capabilities: patch
                .agents_require_capabilities
                .unwrap_or(self.agents_require_capabilities),
        })
    }

    /// Where these settings keep the environment's data.
    pub fn placement(&self) -> Placement {
        match (self.engine, &self.engine_secret) {
            (EngineKind::Duckdb, _) => Placement::Embedded,
            (EngineKind::Postgres, None) => Placement::ManagedPostgres,
            (EngineKind::Postgres, Some(_)) => Placement::OwnPostgres,
        }
    }

    /// These settings with `other`'s engine: what a promotion writes, as the data stays where
    /// it is (a promotion moves configuration, never data).
    pub fn keeping_engine_of(&self, other: &EnvSettings) -> EnvSettings {
        EnvSettings {
            engine: other.engine,
            engine_secret: other.engine_secret.clone(),
            ..self.clone()
        }
    }

    /// Each setting by name, in a fixed order (diff and promotion compare these).
    pub fn entries(&self) -> Vec<(&'static str, Value)> {
        vec![
            ("query_timeout_ms", json!(self.query_timeout_ms)),
            ("max_concurrent_queries", json!(self.max_concurrent_queries)),
            ("cache_enabled", json!(self.cache_enabled)),
            ("engine", json!(self.engine)),
            ("engine_secret", json!(self.engine_secret)),
            (
                "agents_require_capabilities",
                json!(self.agents_require_capabilities),
            ),
        ]
    }

    /// The names of the settings whose values differ between `self` and `other`.
    pub fn differing(&self, other: &EnvSettings) -> Vec<&'static str> {
        self.entries()
            .into_iter()
            .zip(other.entries())
            .filter(|((_, a), (_, b))| a != b)
            .map(|((name, _), _)| name)
            .collect()
    }
}

/// Where an environment's data lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A DuckDB file in its home node's data directory.
    Embedded,
    /// A database the server provisions on its managed PostgreSQL engine
    /// (`engine: postgres` without `engine_secret`).
    ManagedPostgres,
    /// A database of the user's own, named by the connection string in `engine_secret`.
    OwnPostgres,
}

/// Whether settings may place an environment's data as `next` does: the managed engine
/// needs the server to have one (`managed_available`), and data reaches or leaves it only
/// by the move that copies it (`POST /v1/environments/{id}/engine`), never by a change of
/// settings that would leave the data behind. `current` is `None` for a new environment.
pub fn check_placement(
    current: Option<&EnvSettings>,
    next: &EnvSettings,
    managed_available: bool,
) -> Result<()> {
    let to = next.placement();
    if to == Placement::ManagedPostgres && !managed_available {
        return Err(Error::validation(
            "settings.engine_secret",
            "required",
            "settings.engine_secret (the key of the secret holding the connection string) is required with engine postgres: this server has no managed PostgreSQL engine (--engine-postgres-url)",
        ));
    }
    if let Some(from) = current.map(EnvSettings::placement) {
        if from != to && (from == Placement::ManagedPostgres || to == Placement::ManagedPostgres) {
            return Err(Error::conflict(
                "move_data",
                "an environment's data reaches or leaves the managed PostgreSQL engine only with its tables: POST /v1/environments/{env_id}/engine moves them",
            )
            .with_details(json!({"field": "settings.engine", "rule": "move_data"})));
        }
    }
    Ok(())
}

fn slug_ok(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=64).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

/// An environment slug: `^[a-z0-9][a-z0-9_-]{0,63}$` after lower-casing (slugs are
/// case-insensitive, so `Prod` is `prod`).
pub fn slug(field: &str, value: &str) -> Result<String> {
    let lowered = value.to_ascii_lowercase();
    if slug_ok(&lowered) {
        Ok(lowered)
    } else {
        Err(Error::validation(
            field,
            "pattern",
            format!("{field} must match ^[a-z0-9][a-z0-9_-]{{0,63}}$"),
        ))
    }
}

/// The slug a name gives: lower-cased, whitespace runs → `-`, characters a slug cannot hold
/// dropped, leading `-`/`_` trimmed, cut to 64. Nothing valid left → 400 on `slug`.
pub fn derive_slug(name: &str) -> Result<String> {
    let mut out = String::new();
    for c in name.trim().chars().flat_map(char::to_lowercase) {
        if c.is_whitespace() {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' {
            out.push(c);
        }
    }
    let trimmed: String = out
        .trim_start_matches(['-', '_'])
        .chars()
        .take(64)
        .collect();
    let trimmed = trimmed.trim_end_matches('-').to_string();
    if slug_ok(&trimmed) {
        Ok(trimmed)
    } else {
        Err(Error::validation(
            "slug",
            "derivable",
            "no valid slug can be derived from name; give a slug matching ^[a-z0-9][a-z0-9_-]{0,63}$",
        ))
    }
}

/// `#RRGGBB`, stored lower-case.
pub fn color(field: &str, value: &str) -> Result<String> {
    let ok = value.len() == 7
        && value.starts_with('#')
        && value[1..].bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(Error::validation(
            field,
            "pattern",
            format!("{field} must be a colour #RRGGBB"),
        ))
    }
}

/// At most 1 024 characters; line breaks and tabs allowed, other control characters not.
pub fn description(field: &str, value: &str) -> Result<String> {
    if value.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(Error::validation(
            field,
            "max_length",
            format!("{field} must be at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(Error::validation(
            field,
            "no_control_characters",
            format!("{field} must not contain control characters other than line breaks and tabs"),
        ));
    }
    Ok(value.to_string())
}

/// Whether `parent` may become the parent of `env` (`None`: a new environment).
///
/// `chain` is the parent's ancestry starting with the parent itself and ending at a root, as
/// the store read it (empty when the parent is not an environment of this organization);
/// `subtree_height` is the height of the tree rooted at `env` (1 for a leaf or a new one).
pub fn check_parent(env: Option<&str>, chain: &[String], subtree_height: usize) -> Result<()> {
    if chain.is_empty() {
        return Err(Error::validation(
            "parent_env_id",
            "same_organization",
            "parent_env_id must name an environment of this organization",
        ));
    }
    if let Some(env) = env {
        if chain.iter().any(|id| id == env) {
            return Err(Error::validation(
                "parent_env_id",
                "no_cycles",
                "an environment cannot be its own ancestor",
            ));
        }
    }
    if chain.len() + subtree_height > MAX_DEPTH {
        return Err(Error::validation(
            "parent_env_id",
            "max_depth",
            format!("environments nest at most {MAX_DEPTH} deep"),
        ));
    }
    Ok(())
}

/// A reorder must name every environment of the organization exactly once.
pub fn check_order(current: &[EnvId], order: &[EnvId]) -> Result<()> {
    let bad = |msg: String| Err(Error::validation("order", "permutation", msg));
    let mut seen = std::collections::HashSet::with_capacity(order.len());
    for id in order {
        if !seen.insert(id.as_str()) {
            return bad(format!("order names {id} more than once"));
        }
    }
    let existing: std::collections::HashSet<&str> = current.iter().map(EnvId::as_str).collect();
    if let Some(unknown) = order.iter().find(|id| !existing.contains(id.as_str())) {
        return bad(format!(
            "order names {unknown}, which is not an environment of this organization"
        ));
    }
    if order.len() != current.len() {
        return bad(format!(
            "order must list all {} environments of the organization; it lists {}",
            current.len(),
            order.len()
        ));
    }
    Ok(())
}

/// The refusal of a write to a locked environment.
pub fn locked_error() -> Error {
    Error::conflict(
        "environment_locked",
        "the environment is locked; unlock it before changing it or anything in it",
    )
    .with_details(json!({ "rule": "environment_locked", "code": "environment_locked" }))
}

/// The guard of every write to an environment or anything in it. `unlocking_only` is true
/// when the write changes nothing but `locked` (the one write a locked environment accepts).
pub fn check_writable(locked: bool, status: EnvStatus, unlocking_only: bool) -> Result<()> {
    if status == EnvStatus::Decommissioning {
        return Err(Error::conflict(
            "decommissioning",
            "the environment is being deleted",
        ));
    }
    if locked && !unlocking_only {
        return Err(locked_error());
    }
    Ok(())
}

/// How a SQL client reaches this environment through the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Connection {
    pub host: String,
    pub port: u16,
    /// The environment's slug.
    pub database: String,
}

/// An environment as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Environment {
    pub env_id: EnvId,
    pub org_id: OrgId,
    pub name: String,
    pub slug: String,
    #[serde(rename = "type")]
    pub env_type: EnvType,
    /// Display order, dense `0..n-1` within the organization.
    pub index: i64,
    pub color: String,
    pub parent_env_id: Option<EnvId>,
    pub description: String,
    pub status: EnvStatus,
    pub locked: bool,
    pub settings: EnvSettings,
    /// Secret keys the environment must hold.
    pub required_keys: Vec<String>,
    /// The required keys it does not hold yet.
    pub missing_keys: Vec<String>,
    pub connection: Connection,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Increments on every change; the `ETag`.
    pub version: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(e: Error) -> String {
        e.details["rule"].as_str().unwrap_or_default().to_string()
    }

    #[test]
    fn slugs_and_types() {
        assert_eq!(slug("slug", "Prod").unwrap(), "prod");
        assert_eq!(slug("slug", "a").unwrap(), "a");
        assert_eq!(slug("slug", "pr-42_x").unwrap(), "pr-42_x");
        for bad in ["", "-a", "_a", "a b", "é", &"a".repeat(65)] {
            assert_eq!(rule(slug("slug", bad).unwrap_err()), "pattern", "{bad:?}");
        }
        assert_eq!(derive_slug("  Preview PR  42 ").unwrap(), "preview-pr-42");
        assert_eq!(derive_slug("Staging (EU)").unwrap(), "staging-eu");
        assert_eq!(derive_slug("--x--").unwrap(), "x");
        assert_eq!(derive_slug(&"a".repeat(80)).unwrap().len(), 64);
        assert_eq!(rule(derive_slug("日本").unwrap_err()), "derivable");
        assert_eq!(rule(derive_slug("!!!").unwrap_err()), "derivable");
        assert_eq!(EnvType::infer("development"), EnvType::Dev);
        assert_eq!(EnvType::infer("stg"), EnvType::Staging);
        assert_eq!(EnvType::infer("production"), EnvType::Prod);
        assert_eq!(EnvType::infer("prod-eu"), EnvType::Custom);
    }

    #[test]
    fn colors_and_descriptions() {
        assert_eq!(color("color", "#AABBCC").unwrap(), "#aabbcc");
        for bad in ["AABBCC", "#abc", "#gggggg", "#aabbccd"] {
            assert!(color("color", bad).is_err(), "{bad}");
        }
        assert!(description("description", "line\nbreak\tok").is_ok());
        assert_eq!(
            rule(description("description", "bell\u{7}").unwrap_err()),
            "no_control_characters"
        );
        assert_eq!(
            rule(description("description", &"x".repeat(1025)).unwrap_err()),
            "max_length"
        );
    }

    #[test]
    fn lifecycle() {
        use EnvStatus::*;
        assert_eq!(Provisioning.apply(Transition::Activate).unwrap(), Active);
        assert_eq!(Active.apply(Transition::Suspend).unwrap(), Suspended);
        assert_eq!(Suspended.apply(Transition::Resume).unwrap(), Active);
        for s in [Provisioning, Active, Suspended] {
            assert_eq!(s.apply(Transition::Decommission).unwrap(), Decommissioning);
        }
        for (s, t) in [
            (Active, Transition::Resume),
            (Suspended, Transition::Suspend),
            (Provisioning, Transition::Suspend),
            (Active, Transition::Activate),
            (Decommissioning, Transition::Resume),
            (Decommissioning, Transition::Decommission),
        ] {
            let e = s.apply(t).unwrap_err();
            assert_eq!(
                (e.http_status(), rule(e)),
                (409, "illegal_transition".into())
            );
        }
    }

    #[test]
    fn settings_ranges() {
        let d = EnvSettings::default();
        assert_eq!(
            (
                d.query_timeout_ms,
                d.max_concurrent_queries,
                d.cache_enabled
            ),
            (30_000, 100, true)
        );
        let ok = d
            .apply(&SettingsPatch {
                query_timeout_ms: Some(100),
                max_concurrent_queries: Some(10_000),
                cache_enabled: Some(false),
                engine: Some(EngineKind::Postgres),
                engine_secret: Some("DATABASE_URL".into()),
                agents_require_capabilities: Some(true),
            })
            .unwrap();
        assert_eq!(d.differing(&ok).len(), 6);
        assert!(d.differing(&d).is_empty());
        for (patch, field) in [
            (
                SettingsPatch {
                    query_timeout_ms: Some(99),
                    ..Default::default()
                },
                "settings.query_timeout_ms",
            ),
            (
                SettingsPatch {
                    query_timeout_ms: Some(3_600_001),
                    ..Default::default()
                },
                "settings.query_timeout_ms",
            ),
            (
                SettingsPatch {
                    max_concurrent_queries: Some(0),
                    ..Default::default()
                },
                "settings.max_concurrent_queries",
            ),
            (
                SettingsPatch {
                    engine_secret: Some("1 bad".into()),
                    ..Default::default()
                },
                "settings.engine_secret",
            ),
        ] {
            assert_eq!(d.apply(&patch).unwrap_err().details["field"], field);
        }
        // Older rows without a field read as the default.
        let old: EnvSettings = serde_json::from_value(json!({"query_timeout_ms": 500})).unwrap();
        assert_eq!(old.max_concurrent_queries, 100);
    }

    #[test]
    fn placement_moves_only_with_the_data() {
        let embedded = EnvSettings::default();
        let managed = embedded
            .apply(&SettingsPatch {
                engine: Some(EngineKind::Postgres),
                ..Default::default()
            })
            .unwrap();
        let own = embedded
            .apply(&SettingsPatch {
                engine: Some(EngineKind::Postgres),
                engine_secret: Some("DATABASE_URL".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(managed.placement(), Placement::ManagedPostgres);
        assert_eq!(own.placement(), Placement::OwnPostgres);
        assert!(check_placement(None, &managed, true).is_ok());
        let e = check_placement(None, &managed, false).unwrap_err();
        assert_eq!(e.details["field"], "settings.engine_secret");
        assert!(check_placement(Some(&embedded), &own, false).is_ok());
        for (from, to) in [
            (&embedded, &managed),
            (&managed, &embedded),
            (&managed, &own),
        ] {
            let e = check_placement(Some(from), to, true).unwrap_err();
            assert_eq!((e.http_status(), rule(e)), (409, "move_data".into()));
        }
        assert!(check_placement(Some(&managed), &managed, true).is_ok());
        // A promotion carries everything but the engine.
        let promoted = own.keeping_engine_of(&managed);
        assert_eq!(promoted.placement(), Placement::ManagedPostgres);
    }

    #[test]
    fn parent_tree() {
        let chain = |n: usize| (0..n).map(|i| format!("env_{i}")).collect::<Vec<_>>();
        assert!(check_parent(None, &chain(7), 1).is_ok());
        assert_eq!(
            rule(check_parent(None, &chain(8), 1).unwrap_err()),
            "max_depth"
        );
        assert_eq!(
            rule(check_parent(Some("env_x"), &chain(5), 4).unwrap_err()),
            "max_depth"
        );
        assert!(check_parent(Some("env_x"), &chain(4), 4).is_ok());
        assert_eq!(
            rule(check_parent(Some("env_2"), &chain(4), 1).unwrap_err()),
            "no_cycles"
        );
        assert_eq!(
            rule(check_parent(None, &[], 1).unwrap_err()),
            "same_organization"
        );
    }

    #[test]
    fn orders() {
        let ids = |v: &[&str]| v.iter().map(|s| EnvId::from(*s)).collect::<Vec<_>>();
        let cur = ids(&["a", "b", "c"]);
        assert!(check_order(&cur, &ids(&["c", "a", "b"])).is_ok());
        for bad in [
            &["a", "b"][..],
            &["a", "b", "b"],
            &["a", "b", "x"],
            &["a", "b", "c", "d"],
        ] {
            assert_eq!(
                rule(check_order(&cur, &ids(bad)).unwrap_err()),
                "permutation"
            );
        }
    }

    #[test]
    fn write_guard() {
        assert!(check_writable(false, EnvStatus::Active, false).is_ok());
        assert!(check_writable(true, EnvStatus::Suspended, true).is_ok());
        assert_eq!(
            rule(check_writable(true, EnvStatus::Active, false).unwrap_err()),
            "environment_locked"
        );
        assert_eq!(
            rule(check_writable(false, EnvStatus::Decommissioning, true).unwrap_err()),
            "decommissioning"
        );
    }
}

//! Shadow environments (docs/provisioning.md): a sample of an environment's read statements is
//! replayed, after the caller has its answer, against another environment of the organization —
//! its data, under its policies, for the same principal — and the two outcomes are compared by
//! row count and an order-insensitive hash of the rows (never the rows themselves). Pure: the
//! gateway replays, the store keeps the configuration and the report.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::error::{Error, Result};
use crate::id::EnvId;

/// The mismatches a report keeps per environment (the latest).
pub const KEPT_MISMATCHES: i64 = 50;

/// Which statements are replayed; reads only in this release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShadowKind {
    Read,
}

/// `POST /v1/environments/{env_id}/shadow`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShadowSpec {
    /// Another environment of the same organization, where statements are replayed.
    pub target_env_id: EnvId,
    /// The share of eligible statements replayed, 0–1.
    pub sample_rate: f64,
    /// Default `["read"]`; nothing else is replayed in this release.
    #[serde(default = "reads")]
    pub statement_kinds: Vec<ShadowKind>,
}

fn reads() -> Vec<ShadowKind> {
    vec![ShadowKind::Read]
}

impl ShadowSpec {
    /// 400 naming the field: a sample rate outside 0–1, no kinds, a repeated kind.
    pub fn check(&self, env_id: &EnvId) -> Result<()> {
        if !(self.sample_rate.is_finite() && (0.0..=1.0).contains(&self.sample_rate)) {
            return Err(Error::validation(
                "sample_rate",
                "range",
                "sample_rate must be between 0 and 1",
            ));
        }
        if self.statement_kinds.is_empty() {
            return Err(Error::validation(
                "statement_kinds",
                "non_empty",
                "statement_kinds must name at least one kind (read)",
            ));
        }
        if self.statement_kinds.len() > 1 {
            return Err(Error::validation(
                "statement_kinds",
                "unique",
                "statement_kinds must not repeat a kind",
            ));
        }
        if &self.target_env_id == env_id {
            return Err(Error::validation(
                "target_env_id",
                "different_environment",
                "target_env_id must be another environment than the one shadowed",
            ));
        }
        Ok(())
    }
}

/// One side of a comparison: the rows' count and hash, or the error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SideOutcome {
    pub row_count: Option<i64>,
    /// Hex SHA-256-based multiset hash of the rows: equal for the same rows in any order.
    pub rows_hash: Option<String>,
    pub error_code: Option<String>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

impl SideOutcome {
    pub fn rows(row_count: i64, rows_hash: String, duration_ms: i64) -> SideOutcome {
        SideOutcome {
            row_count: Some(row_count),
            rows_hash: Some(rows_hash),
            error_code: None,
            error: None,
            duration_ms,
        }
    }

    pub fn failed(error_code: &str, error: &str, duration_ms: i64) -> SideOutcome {
        SideOutcome {
            row_count: None,
            rows_hash: None,
            error_code: Some(error_code.to_string()),
            error: Some(error.chars().take(500).collect()),
            duration_ms,
        }
    }
}

/// How a replay compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Match,
    Mismatch,
    /// The replay failed (the primary succeeded: only answered reads are replayed).
    Error,
}

impl Verdict {
    pub fn of(primary: &SideOutcome, shadow: &SideOutcome) -> Verdict {
        if shadow.error_code.is_some() {
            Verdict::Error
        } else if shadow.row_count == primary.row_count && shadow.rows_hash == primary.rows_hash {
            Verdict::Match
        } else {
            Verdict::Mismatch
        }
    }
}

/// An order-insensitive hash of rows: each row's SHA-256 (of its canonical JSON) added as a
/// 256-bit number, so the same rows in any order — duplicates counted — hash alike.
#[derive(Debug, Clone, Default)]
pub struct RowsHash {
    sum: [u64; 4],
    rows: i64,
}

impl RowsHash {
    pub fn add(&mut self, row: &Value) {
        let digest = Sha256::digest(crate::audit::canonical_json(row).as_bytes());
        let mut carry = 0u128;
        for (i, limb) in self.sum.iter_mut().enumerate() {
            let chunk = u64::from_le_bytes(digest[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
            let total = *limb as u128 + chunk as u128 + carry;
            *limb = total as u64;
            carry = total >> 64;
        }
        self.rows += 1;
    }

    pub fn rows(&self) -> i64 {
        self.rows
    }

    pub fn hex(&self) -> String {
        self.sum
            .iter()
            .rev()
            .map(|limb| format!("{limb:016x}"))
            .collect()
    }
}

/// `GET /v1/environments/{env_id}/shadow`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Shadow {
    pub env_id: EnvId,
    #[serde(flatten)]
    pub spec: ShadowSpec,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// A kept mismatch (or failed replay): both outcomes, never the rows.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ShadowMismatch {
    pub verdict: Verdict,
    /// The statement with its literals replaced, as the query audit keeps it.
    pub sql_redacted: String,
    pub primary: SideOutcome,
    pub shadow: SideOutcome,
    pub at: DateTime<Utc>,
}

/// `GET /v1/environments/{env_id}/shadow/report`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ShadowReport {
    pub env_id: EnvId,
    /// The environment replayed into (`null` once shadowing stopped).
    pub target_env_id: Option<EnvId>,
    pub active: bool,
    /// Since when these counts run (the last start).
    pub since: Option<DateTime<Utc>>,
    pub matches: i64,
    pub mismatches: i64,
    pub errors: i64,
    /// Sampled statements not replayed because the replay queue was full (or their answer too
    /// large to compare): the caller is never made to wait.
    pub dropped: i64,
    /// Mean time of the compared statements on each side, in milliseconds.
    pub primary_mean_ms: Option<f64>,
    pub shadow_mean_ms: Option<f64>,
    /// The latest mismatches and failed replays, newest first.
    pub latest: Vec<ShadowMismatch>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn row_hashes_ignore_order_but_not_content() {
        let hash = |rows: &[Value]| {
            let mut h = RowsHash::default();
            rows.iter().for_each(|r| h.add(r));
            (h.rows(), h.hex())
        };
        let a = [json!([1, "ada"]), json!([2, "bo"]), json!([2, "bo"])];
        let b = [json!([2, "bo"]), json!([1, "ada"]), json!([2, "bo"])];
        assert_eq!(hash(&a), hash(&b));
        assert_ne!(hash(&a).1, hash(&a[..2]).1, "duplicates count");
        assert_ne!(
            hash(&a).1,
            hash(&[json!([1, "ada"]), json!([2, "bo"]), json!([3, "bo"])]).1
        );
        assert_eq!(hash(&[]).1, "0".repeat(64));
    }

    #[test]
    fn verdicts_and_specs() {
        let ok = SideOutcome::rows(2, "ab".into(), 3);
        let same_slower = SideOutcome::rows(2, "ab".into(), 30);
        let other = SideOutcome::rows(2, "cd".into(), 3);
        let failed = SideOutcome::failed("42501", "refused", 1);
        assert_eq!(Verdict::of(&ok, &same_slower), Verdict::Match);
        assert_eq!(Verdict::of(&ok, &other), Verdict::Mismatch);
        assert_eq!(Verdict::of(&ok, &failed), Verdict::Error);
        let env: EnvId = "env_a".into();
        let spec = |v: Value| serde_json::from_value::<ShadowSpec>(v).unwrap();
        assert!(spec(json!({"target_env_id": "env_b", "sample_rate": 0.5}))
            .check(&env)
            .is_ok());
        let rule = |v: Value| spec(v).check(&env).unwrap_err().details["rule"].clone();
        assert_eq!(
            rule(json!({"target_env_id": "env_b", "sample_rate": 1.5})),
            "range"
        );
        assert_eq!(
            rule(json!({"target_env_id": "env_a", "sample_rate": 1})),
            "different_environment"
        );
        assert_eq!(
            rule(json!({"target_env_id": "env_b", "sample_rate": 1, "statement_kinds": []})),
            "non_empty"
        );
        assert!(serde_json::from_value::<ShadowSpec>(
            json!({"target_env_id": "env_b", "sample_rate": 1, "statement_kinds": ["write"]})
        )
        .is_err());
    }
}

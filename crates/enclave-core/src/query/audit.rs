//! One entry of an environment's query audit trail (stage 12 of the pipeline, docs/gateway.md): every
//! statement the gateway handled, allowed or refused, hash-chained like the IAM trail.

use crate::id::EnvId;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::audit::{entry_hash, Actor};
use crate::billing::Credits;

/// Who ran a statement: the actor, and the role the statement ran with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QueryPrincipal {
    #[serde(flatten)]
    pub actor: Actor,
    pub role: String,
    /// The just-in-time grant (`jit_…`) the role came from; absent when it is the actor's own
    /// (and in entries written before grants existed, whose hashes stay as they were).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
}

/// The agent a statement came from, as the client named it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentIdentity {
    pub id: Option<String>,
    pub framework: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueryAuditEntry {
    /// `qry_…`: the `query_id` the client was given.
    pub query_id: String,
    pub env_id: EnvId,
    /// Position in the environment's chain, from 1.
    pub seq: i64,
    pub principal: QueryPrincipal,
    pub agent: AgentIdentity,
    /// `wire` or `http`.
    pub door: String,
    pub source_ip: Option<String>,
    /// The statement with every literal replaced by `?`; for statements that did not parse,
    /// `null` (their text is never kept).
    pub sql_redacted: Option<String>,
    /// `read`, `write`, `ddl`, `session`; `null` when the statement did not parse.
    pub statement_kind: Option<String>,
    pub tables: Vec<String>,
    pub columns_masked: Vec<String>,
    pub row_filters_applied: Vec<String>,
    #[schema(value_type = Vec<Object>)]
    pub policy_verdicts: Vec<Value>,
    pub rows_returned: i64,
    pub duration_ms: i64,
    /// Credits the statement was expected to cost before it ran (stage 5).
    #[schema(value_type = f64)]
    pub credits_estimated: Credits,
    /// Credits it cost (stage 11): 0 when refused, failed, a session statement or a cache hit.
    #[schema(value_type = f64)]
    pub credits_consumed: Credits,
    pub cache_hit: bool,
    /// `ok`, `error` (the engine failed it), `refused` (a pipeline stage did), `timeout`,
    /// `cancelled`.
    pub outcome: String,
    /// The SQLSTATE of a failed statement.
    pub error_code: Option<String>,
    /// RFC 3339 UTC with milliseconds.
    pub created_at: String,
    pub prev_hash: String,
    pub entry_hash: String,
}

impl QueryAuditEntry {
    /// Seals the entry onto a chain whose head is `prev_hash`, at position `seq`.
    pub fn seal(self, seq: i64, prev_hash: &str) -> QueryAuditEntry {
        self.sealed(seq, prev_hash).0
    }

    /// [`Self::seal`], with the sealed entry's JSON (what the trail stores), both from one
    /// conversion of the entry.
    pub fn sealed(mut self, seq: i64, prev_hash: &str) -> (QueryAuditEntry, String) {
        self.seq = seq;
        self.prev_hash = prev_hash.to_string();
        self.entry_hash = String::new();
        let mut value = self.to_value();
        self.entry_hash = entry_hash(&value);
        if let Value::Object(map) = &mut value {
            map.insert("entry_hash".into(), Value::String(self.entry_hash.clone()));
        }
        (self, value.to_string())
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{verify, GENESIS_HASH};

    fn entry(id: &str) -> QueryAuditEntry {
        QueryAuditEntry {
            query_id: id.into(),
            env_id: "env_1".into(),
            seq: 0,
            principal: QueryPrincipal {
                actor: Actor::api_key("key_1"),
                role: "analyst".into(),
                grant: None,
            },
            agent: AgentIdentity::default(),
            door: "wire".into(),
            source_ip: None,
            sql_redacted: Some("SELECT ?".into()),
            statement_kind: Some("read".into()),
            tables: vec![],
            columns_masked: vec![],
            row_filters_applied: vec![],
            policy_verdicts: vec![],
            rows_returned: 1,
            duration_ms: 0,
            credits_estimated: Credits::ZERO,
            credits_consumed: Credits::ZERO,
            cache_hit: false,
            outcome: "ok".into(),
            error_code: None,
            created_at: "2026-01-01T00:00:00.000Z".into(),
            prev_hash: String::new(),
            entry_hash: String::new(),
        }
    }

    #[test]
    fn entries_chain_and_verify() {
        let a = entry("qry_a").seal(1, GENESIS_HASH);
        let b = entry("qry_b").seal(2, &a.entry_hash);
        let values = [a.to_value(), b.to_value()];
        assert!(verify(values.iter()).chain_valid);
        let mut edited = b.to_value();
        edited["rows_returned"] = 2.into();
        let r = verify([values[0].clone(), edited].iter());
        assert_eq!(r.first_invalid_entry.unwrap().reason, "hash_mismatch");
    }

    #[test]
    fn the_stored_json_is_the_sealed_entry() {
        let (a, json) = entry("qry_a").sealed(1, GENESIS_HASH);
        let stored: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(stored, a.to_value());
        assert_eq!(a, entry("qry_a").seal(1, GENESIS_HASH));
        assert!(verify([stored].iter()).chain_valid);
    }
}

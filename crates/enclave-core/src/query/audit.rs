//! One entry of an environment's query audit trail (stage 12 of the pipeline, docs/gateway.md): every
//! statement the gateway handled, allowed or refused, hash-chained like the IAM trail.

use crate::id::EnvId;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::audit::{chain_hash, write_canonical, write_scalar, Actor};
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
    /// `wire`, `http` or `mcp`.
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

    /// [`Self::seal`], with the sealed entry's JSON (what the trail stores). The canonical
    /// JSON is written straight from the fields, in the sorted order of their keys, rather
    /// than through a `serde_json::Value`: this runs once for every statement the gateway
    /// handles. The bytes are those of the canonical form of [`Self::to_value`], which is
    /// what a verifier recomputes (the tests compare the two).
    pub fn sealed(mut self, seq: i64, prev_hash: &str) -> (QueryAuditEntry, String) {
        self.seq = seq;
        self.prev_hash = prev_hash.to_string();
        let mut json = Vec::with_capacity(1024);
        let hash_at = self.write_canonical_without_hash(&mut json);
        self.entry_hash = chain_hash(prev_hash, &json);
        let mut field = Vec::with_capacity(self.entry_hash.len() + 16);
        field.extend_from_slice(b",\"entry_hash\":");
        write_scalar(&self.entry_hash, &mut field);
        json.splice(hash_at..hash_at, field);
        // Only serde_json wrote into the buffer, and it writes UTF-8.
        let json = String::from_utf8(json).unwrap_or_default();
        (self, json)
    }

    /// Writes the entry's canonical JSON without `entry_hash`, and returns the offset where
    /// `,"entry_hash":…` belongs (its key sorts between `duration_ms` and `env_id`).
    fn write_canonical_without_hash(&self, out: &mut Vec<u8>) -> usize {
        fn key(out: &mut Vec<u8>, name: &str) {
            out.push(b',');
            write_scalar(name, out);
            out.push(b':');
        }
        fn field<T: Serialize + ?Sized>(out: &mut Vec<u8>, name: &str, value: &T) {
            key(out, name);
            write_scalar(value, out);
        }
        out.extend_from_slice(b"{\"agent\":{\"framework\":");
        write_scalar(&self.agent.framework, out);
        out.extend_from_slice(b",\"id\":");
        write_scalar(&self.agent.id, out);
        out.push(b'}');
        field(out, "cache_hit", &self.cache_hit);
        field(out, "columns_masked", &self.columns_masked);
        field(out, "created_at", &self.created_at);
        field(out, "credits_consumed", &self.credits_consumed);
        field(out, "credits_estimated", &self.credits_estimated);
        field(out, "door", &self.door);
        field(out, "duration_ms", &self.duration_ms);
        let hash_at = out.len();
        field(out, "env_id", &self.env_id);
        field(out, "error_code", &self.error_code);
        field(out, "outcome", &self.outcome);
        key(out, "policy_verdicts");
        out.push(b'[');
        for (i, verdict) in self.policy_verdicts.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_canonical(verdict, None, out);
        }
        out.push(b']');
        field(out, "prev_hash", &self.prev_hash);
        // The principal's actor is flattened into it: `grant` (when set), `id`, `role`, `type`.
        key(out, "principal");
        out.push(b'{');
        if let Some(grant) = &self.principal.grant {
            write_scalar("grant", out);
            out.push(b':');
            write_scalar(grant, out);
            out.push(b',');
        }
        write_scalar("id", out);
        out.push(b':');
        write_scalar(&self.principal.actor.id, out);
        field(out, "role", &self.principal.role);
        field(out, "type", &self.principal.actor.kind);
        out.push(b'}');
        field(out, "query_id", &self.query_id);
        field(out, "row_filters_applied", &self.row_filters_applied);
        field(out, "rows_returned", &self.rows_returned);
        field(out, "seq", &self.seq);
        field(out, "source_ip", &self.source_ip);
        field(out, "sql_redacted", &self.sql_redacted);
        field(out, "statement_kind", &self.statement_kind);
        field(out, "tables", &self.tables);
        out.push(b'}');
        hash_at
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

    /// The sealed entry as the writer built it before it wrote the JSON itself: through a
    /// `serde_json::Value`, hashed from its canonical form.
    fn sealed_through_a_value(mut e: QueryAuditEntry, seq: i64, prev: &str) -> (String, String) {
        e.seq = seq;
        e.prev_hash = prev.to_string();
        e.entry_hash = String::new();
        let mut value = e.to_value();
        let hash = crate::audit::entry_hash(&value);
        value["entry_hash"] = Value::String(hash.clone());
        (hash, crate::audit::canonical_json(&value))
    }

    #[test]
    fn the_written_json_is_the_canonical_form_of_the_entry() {
        let mut full = entry("qry_\u{e9}\"\\\n");
        full.principal.grant = Some("jit_1".into());
        full.principal.actor = Actor::user("usr_1");
        full.agent = AgentIdentity {
            id: Some("agt_1".into()),
            framework: Some("langchain/0.3 \u{1F600}".into()),
        };
        full.source_ip = Some("10.0.0.1".into());
        full.sql_redacted = None;
        full.statement_kind = None;
        full.tables = vec!["main.t".into(), "b".into()];
        full.columns_masked = vec!["t.ssn".into()];
        full.row_filters_applied = vec!["eu_only".into()];
        full.policy_verdicts = vec![
            serde_json::json!({"z": 1, "a": {"y": [1, 2.5, null], "b": "x"}}),
            serde_json::json!("allow"),
        ];
        full.rows_returned = -1;
        full.duration_ms = 12_345;
        full.credits_estimated = Credits::from_f64(0.125);
        full.credits_consumed = Credits::from_f64(3.0);
        full.cache_hit = true;
        full.outcome = "refused".into();
        full.error_code = Some("42501".into());
        for e in [entry("qry_a"), full] {
            let (sealed, json) = e.clone().sealed(7, GENESIS_HASH);
            let (hash, expected) = sealed_through_a_value(e, 7, GENESIS_HASH);
            assert_eq!(sealed.entry_hash, hash);
            assert_eq!(json, expected);
            let stored: Value = serde_json::from_str(&json).unwrap();
            assert_eq!(stored, sealed.to_value());
            assert!(verify([stored].iter()).chain_valid);
        }
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

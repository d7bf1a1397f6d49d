//! The IAM audit trail (docs/audit.md): who did what, to which resource, with the
//! state before and after; entries chained per organization by SHA-256 so that any edit,
//! insertion or deletion in the stored trail is detected by [`verify`]. Pure: the store
//! appends, the API lists and exports, `enclave audit verify` re-checks an export offline —
//! all with the functions here, so the three can never disagree on what an entry hashes to.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// `prev_hash` of a chain's first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Field names whose values never enter an audit entry or an event, whatever object they are
/// found in: the last line of defence behind the allow-listed audit views of each resource.
const REDACTED_FIELDS: &[&str] = &[
    "password",
    "password_hash",
    "secret",
    "secret_hash",
    "signing_secret",
    "previous_secret",
    "refresh_token",
    "refresh_hash",
    "token",
    "invite_token",
    "key",
    "plaintext",
    "value",
];
pub const REDACTED: &str = "[redacted]";

/// Who made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorType {
    User,
    ApiKey,
    /// Enclave itself: key expiry, webhook auto-disable.
    System,
}

impl ActorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorType::User => "user",
            ActorType::ApiKey => "api_key",
            ActorType::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<ActorType> {
        match s {
            "user" => Some(ActorType::User),
            "api_key" => Some(ActorType::ApiKey),
            "system" => Some(ActorType::System),
            _ => None,
        }
    }
}

/// Who did something, as the audit trails record it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Actor {
    #[serde(rename = "type")]
    pub kind: ActorType,
    /// `usr_…`, `key_…`, or `system`.
    pub id: String,
}

impl Actor {
    pub fn user(id: impl Into<String>) -> Actor {
        Actor {
            kind: ActorType::User,
            id: id.into(),
        }
    }
    pub fn api_key(id: impl Into<String>) -> Actor {
        Actor {
            kind: ActorType::ApiKey,
            id: id.into(),
        }
    }
    pub fn system() -> Actor {
        Actor {
            kind: ActorType::System,
            id: "system".into(),
        }
    }
}

/// One entry of an organization's IAM audit trail, exactly as listed, exported and hashed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// `aud_…`.
    pub id: String,
    pub org_id: String,
    /// Position in the organization's chain, from 1.
    pub seq: i64,
    pub actor_type: ActorType,
    pub actor_id: String,
    /// `resource.verb`, e.g. `environment.created`, `key.revoked`.
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub env_id: Option<String>,
    /// The resource before the change (`null` for creations); secrets redacted.
    #[schema(value_type = Option<Object>)]
    pub before: Value,
    /// The resource after the change (`null` for deletions); secrets redacted.
    #[schema(value_type = Option<Object>)]
    pub after: Value,
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
    /// The just-in-time grant (`jit_…`) whose role the actor acted with; absent when the
    /// actor acted with their own role (and in every entry written before grants existed,
    /// whose hashes therefore stay as they were).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via_grant: Option<String>,
    /// RFC 3339 UTC with milliseconds.
    pub created_at: String,
    /// Hash of the previous entry (`0` × 64 for the first).
    pub prev_hash: String,
    /// `SHA-256(prev_hash ‖ canonical JSON of this entry without entry_hash)`, hex.
    pub entry_hash: String,
}

/// The timestamp form used in entries (stable, so stored milliseconds always format alike).
pub fn timestamp(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Canonical JSON: object keys sorted (by UTF-8 bytes), no insignificant whitespace.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::with_capacity(512);
    write_canonical(value, None, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Writes `value` canonically, leaving out the top-level key `skip` when it is an object.
/// Keys and scalars are written by serde_json itself, so escapes and number forms are its own.
pub(crate) fn write_canonical(value: &Value, skip: Option<&str>, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().filter(|k| Some(k.as_str()) != skip).collect();
            keys.sort_unstable();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(key, out);
                out.push(b':');
                write_canonical(&map[key], None, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, None, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

pub(crate) fn write_scalar<T: serde::Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Writing a string, number, bool or null into memory cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// The hash an entry must carry, given its content (`entry_hash` itself is ignored).
pub fn entry_hash(entry: &Value) -> String {
    let prev = entry
        .get("prev_hash")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut content = Vec::with_capacity(1024);
    write_canonical(entry, Some("entry_hash"), &mut content);
    chain_hash(prev, &content)
}

/// `SHA-256(prev_hash ‖ content)`, hex: the hash of an entry whose canonical JSON without
/// `entry_hash` is `content`.
pub(crate) fn chain_hash(prev_hash: &str, content: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(content);
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

impl AuditEntry {
    /// Seals a new entry onto a chain whose head is `prev_hash`.
    pub fn seal(mut self, prev_hash: &str) -> AuditEntry {
        self.prev_hash = prev_hash.to_string();
        self.entry_hash = String::new();
        self.entry_hash = entry_hash(&self.to_value());
        self
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Removes secret material from a before/after document, recursively.
pub fn redact(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    if REDACTED_FIELDS.contains(&k.as_str()) && !v.is_null() {
                        (k, Value::String(REDACTED.into()))
                    } else {
                        (k, redact(v))
                    }
                })
                .collect::<Map<_, _>>(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        other => other,
    }
}

/// Why an entry failed verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct InvalidEntry {
    /// 1-based position in the verified sequence.
    pub position: u64,
    pub entry_id: Option<String>,
    /// `hash_mismatch` (content edited), `broken_link` (an entry missing, inserted or
    /// reordered), `malformed` (not an entry).
    pub reason: String,
}

/// The result of walking a chain from its first entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Verification {
    pub entry_count: u64,
    pub chain_valid: bool,
    pub first_entry_hash: Option<String>,
    pub last_entry_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_invalid_entry: Option<InvalidEntry>,
}

/// Walks entries in chain order; stops at the first bad one. Feed it pages as they come, so a
/// trail of any length is checked in constant memory.
#[derive(Debug)]
pub struct Verifier {
    expected_prev: String,
    result: Verification,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            expected_prev: GENESIS_HASH.to_string(),
            result: Verification {
                entry_count: 0,
                chain_valid: true,
                first_entry_hash: None,
                last_entry_hash: None,
                first_invalid_entry: None,
            },
        }
    }
}

impl Verifier {
    /// Checks the next entry; returns `false` once the chain is broken (later entries are
    /// then not looked at).
    pub fn push(&mut self, entry: &Value) -> bool {
        if !self.result.chain_valid {
            return false;
        }
        self.result.entry_count += 1;
        let position = self.result.entry_count;
        // IAM entries are named by `id`, query-audit entries by `query_id`.
        let id = entry
            .get("id")
            .or_else(|| entry.get("query_id"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let fail = |reason: &str| InvalidEntry {
            position,
            entry_id: id.clone(),
            reason: reason.into(),
        };
        let (Some(prev), Some(stored)) = (
            entry.get("prev_hash").and_then(Value::as_str),
            entry.get("entry_hash").and_then(Value::as_str),
        ) else {
            return self.invalid(fail("malformed"));
        };
        if entry_hash(entry) != stored {
            return self.invalid(fail("hash_mismatch"));
        }
        if prev != self.expected_prev {
            return self.invalid(fail("broken_link"));
        }
        if self.result.first_entry_hash.is_none() {
            self.result.first_entry_hash = Some(stored.to_string());
        }
        self.result.last_entry_hash = Some(stored.to_string());
        self.expected_prev = stored.to_string();
        true
    }

    fn invalid(&mut self, invalid: InvalidEntry) -> bool {
        self.result.chain_valid = false;
        self.result.first_invalid_entry = Some(invalid);
        false
    }

    pub fn finish(self) -> Verification {
        self.result
    }
}

/// Verifies a complete chain held in memory.
pub fn verify<'a>(entries: impl IntoIterator<Item = &'a Value>) -> Verification {
    let mut verifier = Verifier::default();
    for entry in entries {
        if !verifier.push(entry) {
            break;
        }
    }
    verifier.finish()
}

/// The webhook event an audited action announces, if any (the list in docs/webhooks.md).
/// A later feature makes its changes announce themselves by naming its action here
/// (secrets instead queue one `secret.changed` per request for all the keys it touched).
pub fn event_type(action: &str) -> Option<&'static str> {
    Some(match action {
        "environment.created" => "environment.created",
        "environment.updated"
        | "environment.engine_moved"
        | "environment.suspended"
        | "environment.resumed"
        | "environment.reordered" => "environment.updated",
        "environment.deleted" => "environment.deleted",
        "environment.promoted" => "environment.promoted",
        "key.created" => "key.created",
        "key.rotated" => "key.rotated",
        "key.expiring" => "key.expiring",
        "key.revoked" => "key.revoked",
        "user.invited" => "user.invited",
        "user.removed" => "user.removed",
        "user.role_changed" => "user.role_changed",
        "policy.created" => "policy.created",
        "policy.updated" => "policy.updated",
        "policy.deleted" => "policy.deleted",
        "billing.warning" => "billing.warning",
        "jit.requested" => "jit.requested",
        "jit.approved" => "jit.approved",
        "jit.denied" => "jit.denied",
        "jit.revoked" => "jit.revoked",
        "jit.expired" => "jit.expired",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(seq: i64, action: &str) -> AuditEntry {
        AuditEntry {
            id: format!("aud_{seq}"),
            org_id: "org_1".into(),
            seq,
            actor_type: ActorType::User,
            actor_id: "usr_1".into(),
            action: action.into(),
            resource_type: "environment".into(),
            resource_id: "env_1".into(),
            env_id: Some("env_1".into()),
            before: Value::Null,
            after: json!({"name": "ünïcode", "b": 1, "a": [true, null]}),
            request_id: Some("req".into()),
            source_ip: None,
            via_grant: None,
            created_at: timestamp(1_700_000_000_123),
            prev_hash: String::new(),
            entry_hash: String::new(),
        }
    }

    fn chain(n: i64) -> Vec<Value> {
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|i| {
                let e = entry(i, "environment.updated").seal(&prev);
                prev = e.entry_hash.clone();
                e.to_value()
            })
            .collect()
    }

    #[test]
    fn canonical_json_sorts_keys_without_whitespace() {
        let v = json!({"b": {"z": 1, "a": "x y"}, "a": [2, 1], "é": "\n"});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":[2,1],"b":{"a":"x y","z":1},"é":"\n"}"#
        );
    }

    #[test]
    fn the_hash_is_sha256_of_prev_and_canonical_content() {
        let e = entry(1, "x.y").seal(GENESIS_HASH);
        let mut content = e.to_value();
        content.as_object_mut().unwrap().remove("entry_hash");
        let expected = Sha256::digest(format!("{GENESIS_HASH}{}", canonical_json(&content)));
        assert_eq!(e.entry_hash, hex(&expected));
        assert_eq!(timestamp(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn an_intact_chain_verifies() {
        let entries = chain(5);
        let v = verify(&entries);
        assert!(v.chain_valid);
        assert_eq!(v.entry_count, 5);
        assert_eq!(
            v.first_entry_hash.as_deref(),
            entries[0]["entry_hash"].as_str()
        );
        assert_eq!(
            v.last_entry_hash.as_deref(),
            entries[4]["entry_hash"].as_str()
        );
        assert!(verify(&[]).chain_valid);
    }

    #[test]
    fn an_edited_entry_is_named() {
        let mut entries = chain(5);
        entries[2]["action"] = json!("environment.deleted");
        let v = verify(&entries);
        assert!(!v.chain_valid);
        let bad = v.first_invalid_entry.unwrap();
        assert_eq!((bad.position, bad.reason.as_str()), (3, "hash_mismatch"));
        assert_eq!(bad.entry_id.as_deref(), Some("aud_3"));
    }

    #[test]
    fn a_removed_or_reordered_entry_breaks_the_link() {
        let mut entries = chain(5);
        entries.remove(1);
        let bad = verify(&entries).first_invalid_entry.unwrap();
        assert_eq!((bad.position, bad.reason.as_str()), (2, "broken_link"));
        let mut entries = chain(3);
        entries.swap(0, 1);
        assert_eq!(verify(&entries).first_invalid_entry.unwrap().position, 1);
    }

    #[test]
    fn a_rehashed_edit_still_breaks_the_next_link() {
        let mut entries = chain(4);
        entries[1]["after"] = json!({"forged": true});
        let rehashed = entry_hash(&entries[1]);
        entries[1]["entry_hash"] = json!(rehashed);
        let bad = verify(&entries).first_invalid_entry.unwrap();
        assert_eq!((bad.position, bad.reason.as_str()), (3, "broken_link"));
    }

    #[test]
    fn junk_is_malformed() {
        let bad = verify(&[json!({"id": "x"})]).first_invalid_entry.unwrap();
        assert_eq!(bad.reason, "malformed");
    }

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let v = redact(
            json!({"name": "a", "secret_hash": "h", "nested": [{"signing_secret": "s", "ok": 1}], "token": null}),
        );
        assert_eq!(
            v,
            json!({"name": "a", "secret_hash": REDACTED, "nested": [{"signing_secret": REDACTED, "ok": 1}], "token": null})
        );
    }

    #[test]
    fn actions_map_to_the_events_of_the_spec() {
        assert_eq!(
            event_type("environment.suspended"),
            Some("environment.updated")
        );
        assert_eq!(event_type("key.revoked"), Some("key.revoked"));
        assert_eq!(event_type("organization.updated"), None);
        // Secret changes announce one `secret.changed` per request (all its keys), queued by
        // the store beside the per-secret entries, which announce nothing themselves.
        assert_eq!(event_type("secret.deleted"), None);
    }
}

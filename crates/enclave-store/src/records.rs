//! Rows as stored, and the inputs of store operations.

use std::collections::BTreeMap;

use enclave_core::api_key::{KeyStatus, Scope};
use enclave_core::environment::{EnvSettings, EnvStatus, EnvType, SettingsPatch};
use enclave_core::id::{EnvId, KeyId, NodeId, OrgId, UserId};
use enclave_core::model::{MemberStatus, OrgStatus, Tier};
use enclave_core::pagination::PageRequest;
use enclave_core::policy::PolicySpec;
use enclave_core::policy::PolicyType;
use enclave_core::promotion::Promotion;
pub use enclave_core::secret::crypto::WrappedKey;
use enclave_core::stored::UnknownValue;
use enclave_core::webhook::{DeliveryStatus, WebhookStatus};
use enclave_core::Role;

use crate::stored::Stored;
use serde_json::Value;
use sqlx::types::Json;

/// A keyset page request: rows whose key sorts after `after`, at most `limit + 1` of them (the
/// extra one tells that more exist).
pub type PageQuery = PageRequest;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRecord {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub password_hash: Option<String>,
    /// When the user turned a TOTP second factor on; `None` while they have none.
    pub mfa_enabled_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub password_hash: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrgRecord {
    pub id: OrgId,
    pub name: String,
    pub slug: String,
    pub billing_email: String,
    pub cloud_region: Option<String>,
    #[sqlx(try_from = "Stored<Tier>")]
    pub tier: Tier,
    #[sqlx(try_from = "Stored<OrgStatus>")]
    pub status: OrgStatus,
    pub settings: Json<Value>,
    /// The quotas its owner set over the tier's (`enclave_core::billing::quotas::Overrides`).
    pub quota_overrides: Json<Value>,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
}

#[derive(Debug, Clone)]
pub struct NewOrg {
    pub id: OrgId,
    pub name: String,
    pub slug: String,
    pub billing_email: String,
    pub cloud_region: Option<String>,
    pub tier: Tier,
    pub settings: Value,
}

#[derive(Debug, Clone, Default)]
pub struct OrgPatch {
    pub name: Option<String>,
    pub billing_email: Option<String>,
    pub settings: Option<Value>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MemberRecord {
    pub org_id: OrgId,
    pub user_id: UserId,
    pub email: String,
    pub name: String,
    #[sqlx(try_from = "Stored<Role>")]
    pub role: Role,
    #[sqlx(try_from = "Stored<MemberStatus>")]
    pub status: MemberStatus,
    pub attributes: Json<BTreeMap<String, String>>,
    pub invite_token: Option<String>,
    pub invite_expires_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
    pub mfa_enabled_at: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct MemberFilter {
    pub role: Option<Role>,
    pub status: Option<MemberStatus>,
}

#[derive(Debug, Clone)]
pub struct NewInvite {
    pub org_id: OrgId,
    /// Used when the e-mail belongs to no user yet.
    pub new_user_id: UserId,
    pub email: String,
    pub name: Option<String>,
    pub role: Role,
    /// The invitation token's SHA-256 (hex): the token itself is never stored.
    pub token: String,
    pub expires_at: i64,
}

#[derive(Debug, Clone, Default)]
pub struct MemberPatch {
    pub name: Option<String>,
    pub status: Option<MemberStatus>,
    pub attributes: Option<BTreeMap<String, String>>,
    pub role: Option<Role>,
}

/// Role and status in one organization, and that organization's tier and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthMembership {
    pub role: Role,
    pub status: MemberStatus,
    pub tier: Tier,
    pub org_status: OrgStatus,
    /// The member's attributes (ABAC conditions and `{placeholder}`s of row filters).
    pub attributes: BTreeMap<String, String>,
    /// The organization requires a second factor of every member (`settings.mfa_required`).
    pub mfa_required: bool,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRecord {
    pub id: String,
    pub user_id: UserId,
    pub org_id: Option<OrgId>,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    /// When the session's user gave a second factor (at sign-in, or by enrolling one in it).
    pub mfa_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: String,
    pub user_id: UserId,
    pub org_id: Option<OrgId>,
    pub expires_at: i64,
    pub refresh_hash: String,
    pub refresh_expires_at: i64,
    /// The sign-in gave a second factor.
    pub mfa: bool,
}

/// What signing in with a second factor needs to know of an account.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MfaState {
    pub user_id: UserId,
    /// The active TOTP secret, sealed with the master key.
    pub mfa_secret: Option<String>,
    /// An enrolment begun and not confirmed yet, sealed with the master key.
    pub mfa_pending_secret: Option<String>,
    pub mfa_enabled_at: Option<i64>,
    /// The last 30-second step a code was accepted for.
    pub mfa_last_step: i64,
    pub recovery_codes_left: i64,
}

/// A password reset an owner or admin started: only the token's hash is stored.
#[derive(Debug, Clone)]
pub struct NewPasswordReset {
    pub token_hash: String,
    pub user_id: UserId,
    pub org_id: OrgId,
    pub created_by: String,
    pub expires_at: i64,
}

/// A password reset as listed (never the token).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PasswordResetRecord {
    pub user_id: UserId,
    pub org_id: OrgId,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone)]
pub struct RefreshRotation {
    pub old_hash: String,
    pub new_hash: String,
    /// The successor's expiry is `min(this, session expiry)`.
    pub new_expires_at: i64,
    /// Switch the session to this organization (the caller checked the membership).
    pub org_id: Option<OrgId>,
    pub now: i64,
}

#[derive(Debug, Clone)]
pub enum RotateOutcome {
    Rotated {
        session: SessionRecord,
        refresh_expires_at: i64,
    },
    /// The token had been used before: the session is now revoked.
    Reused,
    /// Unknown, expired, or its session ended.
    Invalid,
}

#[derive(Debug, Clone)]
pub struct IdempotencyBegin {
    pub principal: String,
    pub key: String,
    pub route: String,
    pub body_hash: String,
    pub now: i64,
    /// Records created before this are expired and may be replaced.
    pub expired_before: i64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone)]
pub enum IdempotencyState {
    /// The caller owns the key now and must complete or abandon it.
    Started,
    /// Another request with this key is still running.
    InProgress,
    /// Same key, different route or body.
    Mismatch,
    Completed(StoredResponse),
}

/// An environment row. `position` is the API's `index`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EnvRecord {
    pub id: EnvId,
    pub org_id: OrgId,
    pub name: String,
    pub slug: String,
    #[sqlx(try_from = "Stored<EnvType>")]
    pub env_type: EnvType,
    pub position: i64,
    pub color: String,
    pub parent_env_id: Option<EnvId>,
    pub description: String,
    #[sqlx(try_from = "Stored<EnvStatus>")]
    pub status: EnvStatus,
    pub locked: bool,
    pub settings: Json<EnvSettings>,
    /// Secret keys the environment must hold.
    pub required_keys: Json<Vec<String>>,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
    /// The node whose data directory holds the embedded engine's database file (set when a
    /// node first provisions or serves it).
    pub home_node: Option<NodeId>,
}

#[derive(Debug, Clone)]
pub struct NewEnvironment {
    pub id: EnvId,
    pub org_id: OrgId,
    pub name: String,
    pub slug: String,
    pub env_type: EnvType,
    pub color: String,
    pub parent_env_id: Option<EnvId>,
    pub description: String,
    pub settings: EnvSettings,
    /// Policies created with it (a clone's copies), in the same transaction.
    pub policies: Vec<PolicySpec>,
    /// Capability grants created with it (a clone's copies), by agent id.
    pub capabilities: Vec<(String, enclave_core::agent::CapabilitySpec)>,
    pub required_keys: Vec<String>,
    /// Secrets created with it (a clone's copies, sealed under the new environment's data
    /// key), in the same transaction.
    pub secrets: Option<EnvSecrets>,
}

/// A new environment's data key and the secrets sealed under it.
#[derive(Debug, Clone)]
pub struct EnvSecrets {
    pub data_key: WrappedKey,
    pub secrets: Vec<NewSecret>,
}

/// A partial update; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EnvPatch {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub env_type: Option<EnvType>,
    pub color: Option<String>,
    pub description: Option<String>,
    /// `Some(None)` clears the parent.
    pub parent_env_id: Option<Option<EnvId>>,
    pub settings: Option<SettingsPatch>,
    /// Validated and sorted.
    pub required_keys: Option<Vec<String>>,
    pub locked: Option<bool>,
    pub index: Option<i64>,
}

impl EnvPatch {
    /// True when the patch touches `locked` and nothing else — the one write a locked
    /// environment accepts.
    pub fn only_locked(&self) -> bool {
        self.locked.is_some()
            && self.name.is_none()
            && self.slug.is_none()
            && self.env_type.is_none()
            && self.color.is_none()
            && self.description.is_none()
            && self.parent_env_id.is_none()
            && self.settings.is_none()
            && self.required_keys.is_none()
            && self.index.is_none()
    }
}

#[derive(Debug, Clone, Default)]
pub struct EnvFilter {
    pub status: Option<EnvStatus>,
    pub env_type: Option<EnvType>,
    pub parent_env_id: Option<EnvId>,
    /// Name or slug contains this (case-insensitive).
    pub q: Option<String>,
}

impl EnvFilter {
    pub fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.env_type.is_none()
            && self.parent_env_id.is_none()
            && self.q.is_none()
    }
}

/// A keyset page of environments in display order: rows after `(index, env_id)`.
#[derive(Debug, Clone)]
pub struct EnvPageQuery {
    pub limit: u32,
    pub after: Option<(i64, EnvId)>,
}

#[derive(Debug, Clone)]
pub struct EnvPage {
    /// Up to `limit + 1` rows (the extra one tells that more exist).
    pub rows: Vec<EnvRecord>,
    pub total: i64,
    pub order_version: i64,
}

/// What deleting an environment would remove from the store (its tables are the engine's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvContents {
    pub api_keys: i64,
    pub secrets: i64,
    pub policies: i64,
}

/// A promotion's writes, applied in one transaction if the target is still at
/// `expected_target_version` (else 412, and the caller plans again).
#[derive(Debug, Clone)]
pub struct PromotionApply {
    pub org_id: OrgId,
    pub target_env_id: EnvId,
    pub expected_target_version: i64,
    pub settings: Option<EnvSettings>,
    /// Policies created or updated in the target.
    pub policies: Vec<PolicyWrite>,
    /// Secrets created or updated in the target (sealed under its data key).
    pub secrets: Vec<SecretWrite>,
    /// Capability grants written into the target, by agent id.
    pub capabilities: Vec<(String, enclave_core::agent::CapabilitySpec)>,
    pub record: Promotion,
}

/// Standard policies and ABAC ones live side by side (one namespace of names) but are
/// listed apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    Standard,
    Abac,
}

impl PolicyKind {
    pub fn of(spec: &PolicySpec) -> PolicyKind {
        if spec.policy_type().is_standard() {
            PolicyKind::Standard
        } else {
            PolicyKind::Abac
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Standard => "standard",
            PolicyKind::Abac => "abac",
        }
    }
}

impl TryFrom<String> for PolicyKind {
    type Error = UnknownValue;
    fn try_from(value: String) -> Result<Self, UnknownValue> {
        match value.as_str() {
            "standard" => Ok(PolicyKind::Standard),
            "abac" => Ok(PolicyKind::Abac),
            _ => Err(UnknownValue {
                kind: "policy kind",
                value,
            }),
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PolicyRecord {
    pub id: String,
    pub org_id: OrgId,
    pub env_id: EnvId,
    pub name: String,
    #[sqlx(try_from = "Stored<PolicyKind>")]
    pub kind: PolicyKind,
    #[sqlx(try_from = "Stored<PolicyType>")]
    pub policy_type: PolicyType,
    pub spec: Json<PolicySpec>,
    pub version: i64,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PolicyVersionRecord {
    pub policy_id: String,
    pub version: i64,
    pub spec: Json<PolicySpec>,
    pub created_by: String,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewPolicy {
    pub id: String,
    pub org_id: OrgId,
    pub env_id: EnvId,
    pub spec: PolicySpec,
    pub created_by: String,
}

/// One policy a promotion writes into its target.
#[derive(Debug, Clone)]
pub enum PolicyWrite {
    Create(NewPolicy),
    /// Only if the target's policy is still at `expected_version` (else 412: plan again).
    Update {
        policy_id: String,
        expected_version: i64,
        spec: PolicySpec,
    },
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyRecord {
    pub id: KeyId,
    pub env_id: EnvId,
    pub org_id: OrgId,
    pub name: String,
    pub prefix: String,
    pub secret_hash: String,
    #[sqlx(try_from = "Stored<Role>")]
    pub role: Role,
    pub attributes: Json<BTreeMap<String, String>>,
    pub scopes: Json<Vec<Scope>>,
    pub ip_allowlist: Json<Vec<String>>,
    #[sqlx(try_from = "Stored<KeyStatus>")]
    pub status: KeyStatus,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub grace_expires_at: Option<i64>,
    pub rotated_to: Option<String>,
    pub created_at: i64,
    pub created_by: String,
    pub updated_at: i64,
    pub version: i64,
}

impl ApiKeyRecord {
    /// The status now, counting expiries housekeeping has not written yet.
    pub fn status_at(&self, now_ms: i64) -> KeyStatus {
        self.status
            .at(now_ms, self.expires_at, self.grace_expires_at)
    }
}

#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: KeyId,
    pub env_id: EnvId,
    pub name: String,
    pub prefix: String,
    pub secret_hash: String,
    pub role: Role,
    pub attributes: BTreeMap<String, String>,
    pub scopes: Vec<Scope>,
    pub ip_allowlist: Vec<String>,
    pub expires_at: Option<i64>,
    pub created_by: String,
}

#[derive(Debug, Clone, Default)]
pub struct ApiKeyPatch {
    pub name: Option<String>,
    pub role: Option<Role>,
    pub attributes: Option<BTreeMap<String, String>>,
    pub scopes: Option<Vec<Scope>>,
    pub ip_allowlist: Option<Vec<String>>,
}

/// Everything authenticating a key needs, in one read: the key, its environment's status and
/// its organization's status and tier.
#[derive(Debug, Clone)]
pub struct KeyAuthRecord {
    pub key: ApiKeyRecord,
    pub env_status: EnvStatus,
    pub org_status: OrgStatus,
    pub tier: Tier,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WebhookRecord {
    pub id: String,
    pub org_id: OrgId,
    pub url: String,
    pub description: String,
    pub events: Json<Vec<String>>,
    #[sqlx(try_from = "Stored<WebhookStatus>")]
    pub status: WebhookStatus,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<i64>,
    pub consecutive_failures: i64,
    pub disabled_reason: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
}

impl WebhookRecord {
    /// The secrets that sign a delivery sent at `now_ms`: the current one, and the previous
    /// one during its 24 hours after a rotation.
    pub fn signing_secrets(&self, now_ms: i64) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let (Some(old), Some(until)) = (&self.previous_secret, self.previous_secret_expires_at) {
            if now_ms < until {
                secrets.push(old);
            }
        }
        secrets
    }
}

#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub id: String,
    pub org_id: OrgId,
    pub url: String,
    pub description: String,
    pub events: Vec<String>,
    pub secret: String,
    pub created_by: String,
}

#[derive(Debug, Clone, Default)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub description: Option<String>,
    pub events: Option<Vec<String>>,
    pub status: Option<enclave_core::webhook::WebhookStatus>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRecord {
    pub id: String,
    pub webhook_id: String,
    pub org_id: OrgId,
    pub event_id: String,
    pub event_type: String,
    pub payload: String,
    #[sqlx(try_from = "Stored<DeliveryStatus>")]
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub lease_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRecord {
    pub id: String,
    pub delivery_id: String,
    pub webhook_id: String,
    pub attempt: i64,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub created_at: i64,
}

/// A due delivery a worker has leased, with where and how to send it.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub delivery: DeliveryRecord,
    pub url: String,
    /// Current secret first; the previous one while it still signs.
    pub secrets: Vec<String>,
}

/// How one attempt went, and what happens next.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    pub delivery_id: String,
    pub webhook_id: String,
    pub attempt: i64,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub success: bool,
    /// When to try again after a failure; `None`: give up (`failed`).
    pub retry_at: Option<i64>,
    /// Consecutive failed attempts after which the endpoint is disabled.
    pub disable_after: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub env_id: Option<String>,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
}

impl AuditFilter {
    pub fn is_empty(&self) -> bool {
        *self == AuditFilter::default()
    }
}

/// An IAM audit row as stored; [`AuditRow::entry`] gives the entry as hashed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub id: String,
    pub org_id: String,
    pub seq: i64,
    pub actor_type: String,
    pub actor_id: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub env_id: Option<String>,
    pub before_json: String,
    pub after_json: String,
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
    pub via_grant: Option<String>,
    pub created_at: i64,
    pub prev_hash: String,
    pub entry_hash: String,
}

impl AuditRow {
    /// The entry exactly as stored. A value that does not parse (tampering) is kept as a
    /// string, which verification then rejects.
    pub fn entry(self) -> enclave_core::audit::AuditEntry {
        use enclave_core::audit::{timestamp, ActorType, AuditEntry};
        let json = |s: String| serde_json::from_str(&s).unwrap_or(Value::String(s));
        AuditEntry {
            id: self.id,
            org_id: self.org_id,
            seq: self.seq,
            actor_type: ActorType::parse(&self.actor_type).unwrap_or(ActorType::System),
            actor_id: self.actor_id,
            action: self.action,
            resource_type: self.resource_type,
            resource_id: self.resource_id,
            env_id: self.env_id,
            before: json(self.before_json),
            after: json(self.after_json),
            request_id: self.request_id,
            source_ip: self.source_ip,
            via_grant: self.via_grant,
            created_at: timestamp(self.created_at),
            prev_hash: self.prev_hash,
            entry_hash: self.entry_hash,
        }
    }
}

/// A secret's current version. `ciphertext` is the value sealed under the environment's data
/// key for this secret id and version; the store never sees a value.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SecretRecord {
    pub id: String,
    pub org_id: OrgId,
    pub env_id: EnvId,
    #[sqlx(rename = "key_name")]
    pub key: String,
    pub ciphertext: Vec<u8>,
    pub comment: String,
    pub tags: Json<Vec<String>>,
    pub version: i64,
    pub created_by: String,
    pub created_at: i64,
    pub updated_by: String,
    pub updated_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SecretVersionRecord {
    pub secret_id: String,
    pub version: i64,
    pub ciphertext: Vec<u8>,
    pub comment: String,
    pub tags: Json<Vec<String>>,
    pub created_by: String,
    pub created_at: i64,
}

/// A secret to create at version 1 (`ciphertext` sealed for `id` and version 1).
#[derive(Debug, Clone)]
pub struct NewSecret {
    pub id: String,
    pub org_id: OrgId,
    pub env_id: EnvId,
    pub key: String,
    pub ciphertext: Vec<u8>,
    pub comment: String,
    pub tags: Vec<String>,
}

/// One write of a [`crate::Store::write_secrets`] transaction.
#[derive(Debug, Clone)]
pub enum SecretWrite {
    /// 409 `key_taken` when the key exists.
    Create(NewSecret),
    /// Saves version `expected_version + 1` (`ciphertext` sealed for it) only if the secret
    /// is still at `expected_version` (else 412: read and seal again).
    Update {
        secret_id: String,
        key: String,
        expected_version: i64,
        ciphertext: Vec<u8>,
        comment: String,
        tags: Vec<String>,
    },
}

/// A just-in-time access request, and — once approved — the grant it became.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JitRecord {
    pub id: enclave_core::id::JitId,
    pub env_id: EnvId,
    pub org_id: OrgId,
    pub requester_id: UserId,
    /// The requester's organization role when they asked (`current_role` in the API;
    /// the column is named otherwise because PostgreSQL reserves that word).
    #[sqlx(rename = "member_role", try_from = "Stored<Role>")]
    pub current_role: Role,
    #[sqlx(try_from = "Stored<Role>")]
    pub requested_role: Role,
    pub reason: String,
    pub duration_minutes: i64,
    /// As stored; [`JitRecord::status_at`] counts deadlines housekeeping has not written yet.
    #[sqlx(try_from = "Stored<enclave_core::jit::JitStatus>")]
    pub status: enclave_core::jit::JitStatus,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub decision_comment: Option<String>,
    /// When the grant ends (set at approval: `decided_at + duration_minutes`).
    pub expires_at: Option<i64>,
    /// Who ended the grant early (`revoked`), and when.
    pub ended_by: Option<String>,
    pub ended_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
}

impl JitRecord {
    pub fn status_at(&self, now_ms: i64) -> enclave_core::jit::JitStatus {
        self.status.at(now_ms, self.created_at, self.expires_at)
    }

    /// When an unanswered request stops waiting.
    pub fn answer_by(&self) -> i64 {
        self.created_at + enclave_core::jit::PENDING_TTL_MS
    }
}

#[derive(Debug, Clone)]
pub struct NewJitRequest {
    pub env_id: EnvId,
    pub requester_id: UserId,
    pub current_role: Role,
    pub requested_role: Role,
    pub reason: String,
    pub duration_minutes: i64,
}

/// An agent as the registry knows it in one environment.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AgentRecord {
    pub env_id: EnvId,
    pub agent_id: String,
    pub framework: Option<String>,
    pub first_seen_at: i64,
    pub last_seen_at: i64,
    pub query_count: i64,
    pub credits_milli: i64,
    /// The UTC day (epoch milliseconds of its start) `credits_day_milli` counts.
    pub day: i64,
    pub credits_day_milli: i64,
}

impl AgentRecord {
    /// Credits used on the UTC day starting at `day`.
    pub fn credits_on(&self, day: i64) -> enclave_core::billing::Credits {
        let milli = if self.day == day {
            self.credits_day_milli
        } else {
            0
        };
        enclave_core::billing::Credits::from_milli(milli.max(0) as u64)
    }
}

/// An agent's capability grant in an environment.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CapabilityRecord {
    /// `cap_…`: what refusals name.
    pub id: String,
    pub org_id: OrgId,
    pub env_id: EnvId,
    pub agent_id: String,
    pub spec: Json<enclave_core::agent::CapabilitySpec>,
    pub version: i64,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl CapabilityRecord {
    pub fn grant(&self) -> enclave_core::agent::Grant {
        enclave_core::agent::Grant {
            grant_id: self.id.clone(),
            agent_id: self.agent_id.clone(),
            spec: self.spec.0.clone(),
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CapabilityVersionRecord {
    pub grant_id: String,
    pub version: i64,
    pub spec: Json<enclave_core::agent::CapabilitySpec>,
    pub created_by: String,
    pub created_at: i64,
}

/// An environment's shadowing configuration.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ShadowRecord {
    pub env_id: EnvId,
    pub org_id: OrgId,
    pub target_env_id: EnvId,
    pub spec: Json<enclave_core::shadow::ShadowSpec>,
    pub created_by: String,
    pub created_at: i64,
}

/// The running counts of an environment's shadowing since its last start.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ShadowStatsRecord {
    pub env_id: EnvId,
    pub target_env_id: Option<EnvId>,
    pub since: i64,
    pub matches: i64,
    pub mismatches: i64,
    pub errors: i64,
    pub dropped: i64,
    pub primary_ms_total: i64,
    pub shadow_ms_total: i64,
}

/// One replay's comparison, as the gateway reports it to the store.
#[derive(Debug, Clone)]
pub struct ShadowResult {
    pub env_id: EnvId,
    pub verdict: enclave_core::shadow::Verdict,
    /// Both outcomes and the statement, kept when it did not match.
    pub detail: enclave_core::shadow::ShadowMismatch,
}

/// A node as it registers itself.
#[derive(Debug, Clone)]
pub struct NewNode {
    pub id: NodeId,
    /// For people: the host's name, or what the operator set.
    pub name: String,
    /// Where its control plane answers, as other nodes and clients reach it.
    pub api_url: String,
    /// Where its gateway (Postgres wire) answers, `host:port`.
    pub gateway_addr: String,
}

/// A node serving the store, with its last heartbeat.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NodeRecord {
    pub id: NodeId,
    pub name: String,
    pub api_url: String,
    pub gateway_addr: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
    pub stopped_at: Option<i64>,
}

impl NodeRecord {
    /// Whether the node is alive at `now` (its heartbeat fresh, not stopped).
    pub fn alive(&self, now: i64) -> bool {
        self.stopped_at.is_none() && self.heartbeat_at > now - crate::nodes::NODE_GONE_AFTER_MS
    }
}

//! What every change writes besides itself, in its own transaction: an entry on the
//! organization's IAM audit chain and, when the change announces a webhook event, one outbox
//! row per subscribed endpoint.
//!
//! A store method that changes something ends with `journal(&mut tx, origin, change).await`.
//! A later feature joins by doing the same with its own action name (and, for an event, by
//! naming the action in `enclave_core::audit::event_type`).

use enclave_core::audit::{self, Actor, AuditEntry};
use enclave_core::clock::now_ms;
use enclave_core::id::{new_id, Kind};
use enclave_core::{Error, Result};
use serde_json::{json, Value};

use crate::db::{self, Tx};
use crate::db_error::internal;
use crate::records::*;

/// Who asked for a change and from where: the audit entry's actor, request id and source IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub actor: Actor,
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
    /// The just-in-time grant (`jit_…`) whose role the actor acts with, if any.
    pub via_grant: Option<String>,
}

impl Origin {
    pub fn new(actor: Actor) -> Origin {
        Origin {
            actor,
            request_id: None,
            source_ip: None,
            via_grant: None,
        }
    }

    /// The same origin, acting with the role of grant `grant` (when there is one).
    pub fn via(mut self, grant: Option<&str>) -> Origin {
        self.via_grant = grant.map(str::to_string);
        self
    }

    /// Enclave acting on its own (expiry, auto-disable).
    pub fn system() -> Origin {
        Origin::new(Actor::system())
    }
}

/// One audited change.
#[derive(Debug, Clone)]
pub struct Change {
    pub org_id: String,
    pub action: String,
    pub resource_type: &'static str,
    pub resource_id: String,
    pub env_id: Option<String>,
    pub before: Value,
    pub after: Value,
}

impl Change {
    pub fn new(
        org_id: &str,
        action: &str,
        resource_type: &'static str,
        resource_id: &str,
    ) -> Change {
        Change {
            org_id: org_id.to_string(),
            action: action.to_string(),
            resource_type,
            resource_id: resource_id.to_string(),
            env_id: None,
            before: Value::Null,
            after: Value::Null,
        }
    }

    /// A change to `resource` from `before` to `after` (either may be absent).
    pub fn of<R: Audited>(action: &str, before: Option<&R>, after: Option<&R>) -> Change {
        let subject = after.or(before).expect("a change has a before or an after");
        let mut change = Change::new(
            subject.org_id(),
            action,
            R::RESOURCE_TYPE,
            subject.resource_id(),
        );
        change.env_id = subject.env_id().map(str::to_string);
        change.before = before.map_or(Value::Null, Audited::audit);
        change.after = after.map_or(Value::Null, Audited::audit);
        change
    }

    pub fn env(mut self, env_id: &str) -> Change {
        self.env_id = Some(env_id.to_string());
        self
    }

    pub fn before(mut self, value: Value) -> Change {
        self.before = value;
        self
    }

    pub fn after(mut self, value: Value) -> Change {
        self.after = value;
        self
    }

    /// The entry to seal onto the chain (`seq`, hashes filled by the append).
    pub(crate) fn entry(&self, origin: &Origin, seq: i64, now_ms: i64) -> AuditEntry {
        AuditEntry {
            id: new_id(Kind::Audit),
            org_id: self.org_id.clone(),
            seq,
            actor_type: origin.actor.kind,
            actor_id: origin.actor.id.clone(),
            action: self.action.clone(),
            resource_type: self.resource_type.to_string(),
            resource_id: self.resource_id.clone(),
            env_id: self.env_id.clone(),
            before: audit::redact(self.before.clone()),
            after: audit::redact(self.after.clone()),
            request_id: origin.request_id.clone(),
            source_ip: origin.source_ip.clone(),
            via_grant: origin.via_grant.clone(),
            created_at: audit::timestamp(now_ms),
            prev_hash: String::new(),
            entry_hash: String::new(),
        }
    }

    /// The webhook event this change announces, if any, and its `data`.
    pub(crate) fn event(&self, entry: &AuditEntry) -> Option<(&'static str, Value)> {
        let kind = audit::event_type(&self.action)?;
        let data = if entry.after.is_null() {
            entry.before.clone()
        } else {
            entry.after.clone()
        };
        Some((kind, data))
    }
}

/// The webhook payload `{id, type, created_at, org_id, env_id?, data}`; returns its id too.
pub(crate) fn event_payload(
    event_type: &str,
    org_id: &str,
    env_id: Option<&str>,
    data: Value,
    now_ms: i64,
) -> (String, String) {
    let id = new_id(Kind::Event);
    let mut body = json!({
        "id": id,
        "type": event_type,
        "created_at": audit::timestamp(now_ms),
        "org_id": org_id,
        "data": data,
    });
    if let Some(env_id) = env_id {
        body["env_id"] = json!(env_id);
    }
    (id, body.to_string())
}

/// A resource as its audit entries and events show it: an allow-list of its fields, so a
/// field added later (a hash, a token) stays out until someone decides it belongs.
pub trait Audited {
    const RESOURCE_TYPE: &'static str;
    fn org_id(&self) -> &str;
    fn resource_id(&self) -> &str;
    fn env_id(&self) -> Option<&str> {
        None
    }
    fn audit(&self) -> Value;
}

fn ts(ms: i64) -> Value {
    json!(audit::timestamp(ms))
}

fn opt_ts(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, ts)
}

impl Audited for OrgRecord {
    const RESOURCE_TYPE: &'static str = "organization";
    fn org_id(&self) -> &str {
        &self.id
    }
    fn resource_id(&self) -> &str {
        &self.id
    }
    fn audit(&self) -> Value {
        json!({
            "id": self.id, "name": self.name, "slug": self.slug,
            "billing_email": self.billing_email, "cloud_region": self.cloud_region,
            "tier": self.tier, "status": self.status, "settings": self.settings.0,
            "quota_overrides": self.quota_overrides.0, "version": self.version,
        })
    }
}

impl Audited for MemberRecord {
    const RESOURCE_TYPE: &'static str = "user";
    fn org_id(&self) -> &str {
        &self.org_id
    }
    fn resource_id(&self) -> &str {
        &self.user_id
    }
    fn audit(&self) -> Value {
        json!({
            "user_id": self.user_id, "email": self.email, "name": self.name,
            "role": self.role, "status": self.status, "attributes": self.attributes.0,
            "invite_expires_at": opt_ts(self.invite_expires_at), "version": self.version,
        })
    }
}

impl Audited for EnvRecord {
    const RESOURCE_TYPE: &'static str = "environment";
    fn org_id(&self) -> &str {
        &self.org_id
    }
    fn resource_id(&self) -> &str {
        &self.id
    }
    fn env_id(&self) -> Option<&str> {
        Some(&self.id)
    }
    fn audit(&self) -> Value {
        json!({
            "env_id": self.id, "name": self.name, "slug": self.slug, "type": self.env_type,
            "index": self.position, "color": self.color, "parent_env_id": self.parent_env_id,
            "description": self.description, "status": self.status, "locked": self.locked,
            "settings": self.settings.0, "required_keys": self.required_keys.0,
            "version": self.version,
        })
    }
}

impl Audited for ApiKeyRecord {
    const RESOURCE_TYPE: &'static str = "api_key";
    fn org_id(&self) -> &str {
        &self.org_id
    }
    fn resource_id(&self) -> &str {
        &self.id
    }
    fn env_id(&self) -> Option<&str> {
        Some(&self.env_id)
    }
    fn audit(&self) -> Value {
        json!({
            "key_id": self.id, "env_id": self.env_id, "name": self.name, "prefix": self.prefix,
            "role": self.role, "scopes": self.scopes.0, "attributes": self.attributes.0,
            "ip_allowlist": self.ip_allowlist.0, "status": self.status,
            "expires_at": opt_ts(self.expires_at), "grace_expires_at": opt_ts(self.grace_expires_at),
            "rotated_to": self.rotated_to, "created_by": self.created_by, "version": self.version,
        })
    }
}

impl Audited for WebhookRecord {
    const RESOURCE_TYPE: &'static str = "webhook";
    fn org_id(&self) -> &str {
        &self.org_id
    }
    fn resource_id(&self) -> &str {
        &self.id
    }
    fn audit(&self) -> Value {
        json!({
            "webhook_id": self.id, "url": self.url, "description": self.description,
            "events": self.events.0, "status": self.status,
            "disabled_reason": self.disabled_reason, "version": self.version,
        })
    }
}

impl Audited for SecretRecord {
    const RESOURCE_TYPE: &'static str = "secret";
    fn org_id(&self) -> &str {
        &self.org_id
    }
    fn resource_id(&self) -> &str {
        &self.id
    }
    fn env_id(&self) -> Option<&str> {
        Some(&self.env_id)
    }
    /// Names and metadata only: the value (not even its ciphertext) never enters the chain.
    /// `key_name`, since `key` is a field the redaction treats as secret material.
    fn audit(&self) -> Value {
        json!({
            "secret_id": self.id, "env_id": self.env_id, "key_name": self.key,
            "comment": self.comment, "tags": self.tags.0, "version": self.version,
        })
    }
}

impl Audited for PolicyRecord {
    const RESOURCE_TYPE: &'static str = "policy";
    fn org_id(&self) -> &str {
        &self.org_id
    }
    fn resource_id(&self) -> &str {
        &self.id
    }
    fn env_id(&self) -> Option<&str> {
        Some(&self.env_id)
    }
    fn audit(&self) -> Value {
        let mut view = serde_json::to_value(&self.spec.0).unwrap_or_default();
        view["policy_id"] = json!(self.id);
        view["env_id"] = json!(self.env_id);
        view["version"] = json!(self.version);
        view
    }
}

/// Appends `change` to its organization's chain and queues its event, in `tx`:
/// [`journal_batch`] with one change.
pub(crate) async fn journal(tx: &mut Tx, origin: &Origin, change: Change) -> Result<()> {
    journal_batch(tx, origin, vec![change]).await
}

/// Appends `changes` (of one organization) to its chain and queues their events. The chain
/// head is an upsert that moves it by `n` and returns the previous head, locking the row until
/// commit, so concurrent appends to one chain take turns (PostgreSQL row lock; SQLite has a
/// single writer) and the chain never forks. The entries are sealed in order in memory and
/// inserted 100 per statement, so a bulk write (an import of 10 000 secrets) stays a few
/// statements per 100 changes (larger batches are slower on SQLite: binding cost there grows
/// with a statement's parameters; see bench/README.md).
pub(crate) async fn journal_batch(
    tx: &mut Tx,
    origin: &Origin,
    changes: Vec<Change>,
) -> Result<()> {
    let Some(org_id) = changes.first().map(|c| c.org_id.clone()) else {
        return Ok(());
    };
    if changes.iter().any(|c| c.org_id != org_id) {
        return Err(Error::internal());
    }
    let n = changes.len() as i64;
    let now = now_ms();
    let (last, mut head): (i64, String) = db::query_as(
        "INSERT INTO audit_chains (chain_id, seq, head_hash) VALUES ($1, $3, $2) \
         ON CONFLICT (chain_id) DO UPDATE SET seq = audit_chains.seq + $3 \
         RETURNING seq, head_hash",
    )
    .bind(&org_id)
    .bind(audit::GENESIS_HASH)
    .bind(n)
    .fetch_one(&mut *tx)
    .await
    .map_err(internal)?;
    let first = last - n + 1;
    let entries: Vec<AuditEntry> = changes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let e = c.entry(origin, first + i as i64, now).seal(&head);
            head = e.entry_hash.clone();
            e
        })
        .collect();
    for chunk in entries.chunks(100) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                let b = i * 17;
                let cols: Vec<String> = (1..=17).map(|c| format!("${}", b + c)).collect();
                format!("({})", cols.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO iam_audit (id, org_id, seq, actor_type, actor_id, action, \
             resource_type, resource_id, env_id, before_json, after_json, request_id, \
             source_ip, via_grant, created_at, prev_hash, entry_hash) VALUES {}",
            rows.join(", ")
        );
        let mut q = db::query(&sql);
        for e in chunk {
            q = q
                .bind(&e.id)
                .bind(&e.org_id)
                .bind(e.seq)
                .bind(e.actor_type.as_str())
                .bind(&e.actor_id)
                .bind(&e.action)
                .bind(&e.resource_type)
                .bind(&e.resource_id)
                .bind(&e.env_id)
                .bind(e.before.to_string())
                .bind(e.after.to_string())
                .bind(&e.request_id)
                .bind(&e.source_ip)
                .bind(&e.via_grant)
                .bind(now)
                .bind(&e.prev_hash)
                .bind(&e.entry_hash);
        }
        q.execute(&mut *tx).await.map_err(internal)?;
    }
    db::query("UPDATE audit_chains SET head_hash = $2 WHERE chain_id = $1")
        .bind(&org_id)
        .bind(&head)
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
    for (change, entry) in changes.iter().zip(&entries) {
        if let Some((event_type, data)) = change.event(entry) {
            announce(
                tx,
                &change.org_id,
                change.env_id.as_deref(),
                event_type,
                data,
            )
            .await?;
        }
    }
    Ok(())
}

/// Queues webhook event `event_type` with `data` for every active endpoint of `org_id`
/// subscribed to it, in `tx`. Changes announce through [`journal`]; a store method that sums
/// up several changes in one event (secrets) calls this itself.
pub(crate) async fn announce(
    tx: &mut Tx,
    org_id: &str,
    env_id: Option<&str>,
    event_type: &str,
    data: Value,
) -> Result<()> {
    let now = now_ms();
    let (event_id, payload) = event_payload(event_type, org_id, env_id, data, now);
    let hooks: Vec<String> = db::query_scalar(
        "SELECT DISTINCT w.id FROM webhooks w \
         JOIN webhook_subscriptions s ON s.webhook_id = w.id \
         WHERE w.org_id = $1 AND w.status = 'active' AND s.event_type IN ($2, '*')",
    )
    .bind(org_id)
    .bind(event_type)
    .fetch_all(&mut *tx)
    .await
    .map_err(internal)?;
    for webhook_id in hooks {
        enqueue_delivery(
            tx,
            &webhook_id,
            org_id,
            &event_id,
            event_type,
            &payload,
            now,
        )
        .await?;
    }
    Ok(())
}

/// Queues one delivery, due now; returns its id.
pub(crate) async fn enqueue_delivery(
    tx: &mut Tx,
    webhook_id: &str,
    org_id: &str,
    event_id: &str,
    event_type: &str,
    payload: &str,
    now: i64,
) -> Result<String> {
    let id = new_id(Kind::Delivery);
    db::query(
        "INSERT INTO webhook_deliveries (id, webhook_id, org_id, event_id, event_type, \
         payload, status, attempts, next_attempt_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7, $7)",
    )
    .bind(&id)
    .bind(webhook_id)
    .bind(org_id)
    .bind(event_id)
    .bind(event_type)
    .bind(payload)
    .bind(now)
    .execute(tx)
    .await
    .map(|_| id)
    .map_err(internal)
}

//! Enclave's persistence: one [`Store`] interface with a SQLite implementation (the embedded
//! default) and a PostgreSQL one (several stateless nodes on one database).
//!
//! Both run the same SQL text through one executor (`db.rs`); the few real differences — how
//! a write transaction starts, how other nodes hear about changes, row locks — are in
//! `store.rs`.

mod accounts;
mod api_keys;
mod audit;
mod db;
mod db_error;
mod environments;
mod invalidation;
mod journal;
mod policies;
mod postgres;
mod query_audit;
mod records;
mod secrets;
mod sql;
mod sqlite;
mod store;
pub mod testing;
mod time;
mod webhooks;

use std::sync::Arc;

pub use accounts::AccountStore;
pub use api_keys::ApiKeyStore;
pub use audit::AuditStore;
pub use environments::EnvironmentStore;
pub use invalidation::{Bus, Invalidation};
pub use journal::{Audited, Change, Origin};
pub use policies::PolicyStore;
pub use query_audit::{QueryAuditFilter, QueryAuditStore};
pub use records::*;
pub use secrets::{Rewrap, SecretStore};
pub use store::SqlStore;
pub use time::{from_ms, now_ms, to_ms};
pub use webhooks::{Reseal, WebhookStore};

use enclave_core::Result;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Everything the control plane persists. Every method is one transaction; every method that
/// changes something takes the change's [`Origin`] and writes its audit entry (and webhook
/// outbox rows) in that same transaction. Methods that change identity state publish the matching [`Invalidation`] after commit (and, on
/// PostgreSQL, to every other node through `NOTIFY`).
/// How a token is stored instead of itself: `token → hash`.
pub type HashToken = dyn Fn(&str) -> String + Send + Sync;

#[async_trait::async_trait]
pub trait Store:
    EnvironmentStore
    + AccountStore
    + ApiKeyStore
    + AuditStore
    + WebhookStore
    + PolicyStore
    + SecretStore
    + QueryAuditStore
    + Send
    + Sync
    + 'static
{
    fn backend(&self) -> Backend;
    /// The invalidation bus of this node: caches subscribe to it.
    fn bus(&self) -> &Bus;
    /// Storage reachable (for `/ready`).
    async fn ping(&self) -> Result<()>;
    /// Publishes invalidations of state kept outside the store (an engine's catalog) to this
    /// node's caches and every other node's.
    async fn announce(&self, events: Vec<Invalidation>) -> Result<()>;

    // Users
    async fn count_users(&self) -> Result<i64>;
    async fn create_user(&self, user: NewUser) -> Result<UserRecord>;
    async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>>;
    async fn user_by_id(&self, user_id: &str) -> Result<Option<UserRecord>>;
    /// First start: creates the user, the organization (with `environments`, in order) and
    /// the owner membership only when no user exists yet. Returns `None` when a user already
    /// existed.
    async fn bootstrap(
        &self,
        user: NewUser,
        org: NewOrg,
        environments: Vec<NewEnvironment>,
    ) -> Result<Option<OrgRecord>>;

    // Organizations
    /// Creates the organization with `owner_id` as its owner and `environments` (in order),
    /// atomically.
    async fn create_org(
        &self,
        org: NewOrg,
        owner_id: &str,
        owner_name: &str,
        environments: Vec<NewEnvironment>,
        origin: &Origin,
    ) -> Result<OrgRecord>;
    async fn org(&self, org_id: &str) -> Result<Option<OrgRecord>>;
    /// Organizations where `user_id` has an active or suspended (not merely invited) membership.
    async fn orgs_of_user(&self, user_id: &str, page: &PageQuery) -> Result<(Vec<OrgRecord>, i64)>;
    async fn update_org(
        &self,
        org_id: &str,
        expected_version: Option<i64>,
        patch: OrgPatch,
        origin: &Origin,
    ) -> Result<OrgRecord>;
    async fn delete_org(
        &self,
        org_id: &str,
        expected_version: Option<i64>,
        origin: &Origin,
    ) -> Result<()>;
    /// `from` (the owner) becomes admin and `to` (an active member) owner, in one transaction.
    async fn transfer_ownership(
        &self,
        org_id: &str,
        from: &str,
        to: &str,
        origin: &Origin,
    ) -> Result<OrgRecord>;

    // Memberships
    async fn member(&self, org_id: &str, user_id: &str) -> Result<Option<MemberRecord>>;
    async fn members(
        &self,
        org_id: &str,
        filter: &MemberFilter,
        page: &PageQuery,
    ) -> Result<(Vec<MemberRecord>, i64)>;
    /// Creates the user when the e-mail is new, then an `invited` membership.
    async fn invite(&self, invite: NewInvite, origin: &Origin) -> Result<MemberRecord>;
    /// The invited membership whose token hashes to `token_hash`.
    async fn member_by_invite(
        &self,
        token_hash: &str,
    ) -> Result<Option<(MemberRecord, UserRecord)>>;
    /// Replaces every invitation token an older release stored in clear (`inv_…`) by its
    /// `hash`; returns how many.
    async fn hash_invite_tokens(&self, hash: &HashToken) -> Result<u64>;
    /// Activates an invited membership; sets the user's password when given.
    async fn accept_invite(
        &self,
        org_id: &str,
        user_id: &str,
        password_hash: Option<String>,
        name: Option<String>,
        origin: &Origin,
    ) -> Result<MemberRecord>;
    async fn update_member(
        &self,
        org_id: &str,
        user_id: &str,
        expected_version: i64,
        patch: MemberPatch,
        origin: &Origin,
    ) -> Result<MemberRecord>;
    async fn remove_member(
        &self,
        org_id: &str,
        user_id: &str,
        expected_version: i64,
        origin: &Origin,
    ) -> Result<()>;
    /// What authorization needs on every request: role, status and organization tier.
    async fn auth_membership(&self, user_id: &str, org_id: &str) -> Result<Option<AuthMembership>>;

    // Sessions
    /// `origin: None` when the request's own audit entry covers the sign-in (accepting an
    /// invitation); else `session.created` is audited in the session's organization.
    async fn create_session(
        &self,
        session: NewSession,
        origin: Option<&Origin>,
    ) -> Result<SessionRecord>;
    async fn session(&self, session_id: &str) -> Result<Option<SessionRecord>>;
    /// Uses a refresh token once: marks it used and stores its successor. A token used before
    /// revokes its whole session (reuse detection).
    async fn rotate_refresh(
        &self,
        rotation: RefreshRotation,
        origin: &Origin,
    ) -> Result<RotateOutcome>;
    async fn revoke_session(&self, session_id: &str, origin: &Origin) -> Result<()>;
    /// The user whose session a refresh token belongs to.
    async fn refresh_token_owner(&self, token_hash: &str) -> Result<Option<String>>;

    // Idempotency
    async fn idempotency_begin(&self, begin: IdempotencyBegin) -> Result<IdempotencyState>;
    async fn idempotency_complete(
        &self,
        principal: &str,
        key: &str,
        response: StoredResponse,
    ) -> Result<()>;
    async fn idempotency_abandon(&self, principal: &str, key: &str) -> Result<()>;
    /// Deletes records older than `before_ms`; returns how many.
    async fn idempotency_purge(&self, before_ms: i64) -> Result<u64>;
}

/// Opens the store named by `url` (`sqlite://…` or `postgres://…`), applies migrations and,
/// on PostgreSQL, starts listening for other nodes' invalidations.
pub async fn connect(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    if is_postgres(url) {
        Ok(Arc::new(SqlStore::postgres(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqlStore::sqlite(url).await?))
    } else {
        anyhow::bail!(
            "unsupported database URL (expected sqlite:// or postgres://): {}",
            redact_url(url)
        )
    }
}

/// Applies migrations and returns, leaving nothing running (`enclave migrate`).
pub async fn migrate(url: &str) -> anyhow::Result<()> {
    if is_postgres(url) {
        postgres::migrate(url).await
    } else {
        // SQLite starts no background work: opening it migrates it.
        connect(url).await.map(|_| ())
    }
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// A URL safe to print: the password, if any, replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            super::redact_url("sqlite://./data/x.db"),
            "sqlite://./data/x.db"
        );
    }
}

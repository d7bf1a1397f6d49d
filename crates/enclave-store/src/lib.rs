//! Enclave's persistence: one [`Store`] on SQLite (the embedded default) or PostgreSQL
//! (several stateless nodes on one database).
//!
//! Both run the same SQL text through one executor (`db.rs`); the few real differences — how
//! a write transaction starts, how other nodes hear about changes, row locks — are in
//! `store.rs`.

mod accounts;
mod agents;
mod api_keys;
mod audit;
mod billing;
mod db;
mod db_error;
mod environments;
mod idempotency;
mod invalidation;
mod jit;
mod journal;
mod limits;
mod members;
mod nodes;
mod organizations;
mod policies;
mod postgres;
mod promotions;
mod query_audit;
mod records;
mod secrets;
mod sessions;
mod shadow;
mod sqlite;
mod store;
mod stored;
pub mod testing;
mod users;
mod webhooks;

use std::sync::Arc;

pub use billing::{PeriodUsage, UsageCharge, WARNING_THRESHOLDS};
pub use invalidation::{Bus, Invalidation};
pub use jit::JitFilter;
pub use journal::{Audited, Change, Origin};
pub use limits::Taken;
pub use nodes::NODE_GONE_AFTER_MS;
pub use query_audit::QueryAuditFilter;
pub use records::*;
pub use secrets::Rewrap;
pub use store::Store;
pub use webhooks::Reseal;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How a token is stored instead of itself: `token → hash`.
pub type HashToken = dyn Fn(&str) -> String + Send + Sync;

/// Opens the store named by `url` (`sqlite://…` or `postgres://…`), applies migrations and,
/// on PostgreSQL, starts listening for other nodes' invalidations.
pub async fn connect(url: &str) -> anyhow::Result<Arc<Store>> {
    if is_postgres(url) {
        Ok(Arc::new(Store::postgres(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(Store::sqlite(url).await?))
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

//! Reading the IAM audit trail. Entries are only ever appended (by `journal!`, inside the
//! transaction of the change they record); nothing here or anywhere in the store updates or
//! deletes one.

use enclave_core::audit::AuditEntry;
use enclave_core::Result;

use crate::records::*;

pub(crate) const AUDIT_COLUMNS: &str = "id, org_id, seq, actor_type, actor_id, action, \
     resource_type, resource_id, env_id, before_json, after_json, request_id, source_ip, \
     created_at, prev_hash, entry_hash";

#[async_trait::async_trait]
pub trait AuditStore: Send + Sync {
    /// Newest first; `page.after` is the `seq` of the last entry of the previous page.
    async fn audit_entries(
        &self,
        org_id: &str,
        filter: &AuditFilter,
        page: &PageQuery,
    ) -> Result<(Vec<AuditEntry>, i64)>;
    async fn audit_entry(&self, org_id: &str, entry_id: &str) -> Result<Option<AuditEntry>>;
    /// In chain order: entries with `seq > after_seq`, at most `limit` (for verify/export).
    async fn audit_chain(
        &self,
        org_id: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditEntry>>;
    /// The chain's head as the appends left it: `(entry count, last entry_hash)`; `None`
    /// before the first entry. Verification compares it with the entries it walked, so
    /// removing the newest entries is detected too.
    async fn audit_head(&self, org_id: &str) -> Result<Option<(i64, String)>>;
}

macro_rules! impl_audit_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::AuditStore for $store {
            async fn audit_entries(&self, org_id: &str, filter: &AuditFilter, page: &PageQuery) -> enclave_core::Result<(Vec<enclave_core::audit::AuditEntry>, i64)> {
                const WHERE: &str = "org_id = $1 AND ($2 IS NULL OR actor_id = $2) \
                     AND ($3 IS NULL OR action = $3) AND ($4 IS NULL OR resource_type = $4) \
                     AND ($5 IS NULL OR resource_id = $5) AND ($6 IS NULL OR env_id = $6) \
                     AND ($7 IS NULL OR created_at >= $7) AND ($8 IS NULL OR created_at < $8)";
                let after: Option<i64> = match page.after.as_deref() {
                    Some(c) => Some(c.parse().map_err(|_| enclave_core::Error::validation("cursor", "valid", "the cursor is not one this list issued"))?),
                    None => None,
                };
                macro_rules! bind_filter {
                    ($q:expr) => {
                        $q.bind(org_id)
                            .bind(filter.actor_id.as_deref())
                            .bind(filter.action.as_deref())
                            .bind(filter.resource_type.as_deref())
                            .bind(filter.resource_id.as_deref())
                            .bind(filter.env_id.as_deref())
                            .bind(filter.start_ms)
                            .bind(filter.end_ms)
                    };
                }
                let rows: Vec<AuditRow> = bind_filter!(db::query_as(&format!(
                    "SELECT {AUDIT_COLUMNS} FROM iam_audit WHERE {WHERE} \
                     AND ($9 IS NULL OR seq < $9) ORDER BY seq DESC LIMIT $10"
                )))
                .bind(after)
                .bind(page.limit as i64 + 1)
                .fetch_all(self.reader())
                .await
                .map_err(internal)?;
                let total: i64 = if filter.is_empty() {
                    db::query_scalar("SELECT COALESCE((SELECT seq FROM audit_chains WHERE chain_id = $1), 0)")
                        .bind(org_id)
                        .fetch_one(self.reader())
                        .await
                        .map_err(internal)?
                } else {
                    bind_filter!(db::query_scalar(&format!("SELECT COUNT(*) FROM iam_audit WHERE {WHERE}")))
                        .fetch_one(self.reader())
                        .await
                        .map_err(internal)?
                };
                Ok((rows.into_iter().map(AuditRow::entry).collect(), total))
            }

            async fn audit_entry(&self, org_id: &str, entry_id: &str) -> enclave_core::Result<Option<enclave_core::audit::AuditEntry>> {
                let row: Option<AuditRow> = db::query_as(&format!(
                    "SELECT {AUDIT_COLUMNS} FROM iam_audit WHERE org_id = $1 AND id = $2"
                ))
                .bind(org_id)
                .bind(entry_id)
                .fetch_optional(self.reader())
                .await
                .map_err(internal)?;
                Ok(row.map(AuditRow::entry))
            }

            async fn audit_chain(&self, org_id: &str, after_seq: i64, limit: i64) -> enclave_core::Result<Vec<enclave_core::audit::AuditEntry>> {
                let rows: Vec<AuditRow> = db::query_as(&format!(
                    "SELECT {AUDIT_COLUMNS} FROM iam_audit WHERE org_id = $1 AND seq > $2 \
                     ORDER BY seq LIMIT $3"
                ))
                .bind(org_id)
                .bind(after_seq)
                .bind(limit)
                .fetch_all(self.reader())
                .await
                .map_err(internal)?;
                Ok(rows.into_iter().map(AuditRow::entry).collect())
            }

            async fn audit_head(&self, org_id: &str) -> enclave_core::Result<Option<(i64, String)>> {
                db::query_as("SELECT seq, head_hash FROM audit_chains WHERE chain_id = $1")
                    .bind(org_id)
                    .fetch_optional(self.reader())
                    .await
                    .map_err(internal)
            }
        }
    };
}

pub(crate) use impl_audit_store;

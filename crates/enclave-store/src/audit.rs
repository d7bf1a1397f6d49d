//! Reading the IAM audit trail. Entries are only ever appended (by `journal`, inside the
//! transaction of the change they record); nothing here or anywhere in the store updates or
//! deletes one.

use crate::db::{self, Arg};
use crate::db_error::internal;
use crate::records::*;
use crate::store::Store;
use enclave_core::id::{EnvId, OrgId};

pub(crate) const AUDIT_COLUMNS: &str = "id, org_id, seq, actor_type, actor_id, action, \
     resource_type, resource_id, env_id, before_json, after_json, request_id, source_ip, via_grant, \
     created_at, prev_hash, entry_hash";

impl Store {
    /// Newest first; `page.after` is the `seq` of the last entry of the previous page.
    pub async fn audit_entries(
        &self,
        org_id: &OrgId,
        filter: &AuditFilter,
        page: &PageQuery,
    ) -> enclave_core::Result<(Vec<enclave_core::audit::AuditEntry>, i64)> {
        const WHERE: &str = "org_id = $1 AND ($2 IS NULL OR actor_id = $2) \
             AND ($3 IS NULL OR action = $3) AND ($4 IS NULL OR resource_type = $4) \
             AND ($5 IS NULL OR resource_id = $5) AND ($6 IS NULL OR env_id = $6) \
             AND ($7 IS NULL OR created_at >= $7) AND ($8 IS NULL OR created_at < $8)";
        let after = page.after_number()?;
        let filter_args: [Arg; 8] = [
            org_id.into(),
            filter.actor_id.as_deref().into(),
            filter.action.as_deref().into(),
            filter.resource_type.as_deref().into(),
            filter.resource_id.as_deref().into(),
            filter.env_id.as_deref().into(),
            filter.start_ms.into(),
            filter.end_ms.into(),
        ];
        let rows: Vec<AuditRow> = db::query_as(format!(
            "SELECT {AUDIT_COLUMNS} FROM iam_audit WHERE {WHERE} \
             AND ($9 IS NULL OR seq < $9) ORDER BY seq DESC LIMIT $10"
        ))
        .bind_all(&filter_args)
        .bind(after)
        .bind(page.limit as i64 + 1)
        .fetch_all(self.reader())
        .await
        .map_err(internal)?;
        let total: i64 = if filter.is_empty() {
            db::query_scalar(
                "SELECT COALESCE((SELECT seq FROM audit_chains WHERE chain_id = $1), 0)",
            )
            .bind(org_id)
            .fetch_one(self.reader())
            .await
            .map_err(internal)?
        } else {
            db::query_scalar(format!("SELECT COUNT(*) FROM iam_audit WHERE {WHERE}"))
                .bind_all(&filter_args)
                .fetch_one(self.reader())
                .await
                .map_err(internal)?
        };
        Ok((rows.into_iter().map(AuditRow::entry).collect(), total))
    }

    pub async fn audit_entry(
        &self,
        org_id: &OrgId,
        entry_id: &str,
    ) -> enclave_core::Result<Option<enclave_core::audit::AuditEntry>> {
        let row: Option<AuditRow> = db::query_as(format!(
            "SELECT {AUDIT_COLUMNS} FROM iam_audit WHERE org_id = $1 AND id = $2"
        ))
        .bind(org_id)
        .bind(entry_id)
        .fetch_optional(self.reader())
        .await
        .map_err(internal)?;
        Ok(row.map(AuditRow::entry))
    }

    /// In chain order: entries with `seq > after_seq`, at most `limit` (for verify/export).
    pub async fn audit_chain(
        &self,
        org_id: &OrgId,
        after_seq: i64,
        limit: i64,
    ) -> enclave_core::Result<Vec<enclave_core::audit::AuditEntry>> {
        let rows: Vec<AuditRow> = db::query_as(format!(
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

    /// The organization's IAM chain head as the appends left it: `(entry count, last
    /// entry_hash)`; `None` before the first entry. Verification compares it with the entries
    /// it walked, so removing the newest entries is detected too.
    pub async fn audit_head(&self, org_id: &OrgId) -> enclave_core::Result<Option<(i64, String)>> {
        self.chain_head(org_id).await
    }

    /// The environment's query audit chain head, as [`Store::audit_head`] for an organization.
    pub async fn query_audit_head(
        &self,
        env_id: &EnvId,
    ) -> enclave_core::Result<Option<(i64, String)>> {
        self.chain_head(env_id).await
    }

    /// Both chains keep their heads in one table, keyed by the organization's or the
    /// environment's id.
    async fn chain_head(&self, chain_id: &str) -> enclave_core::Result<Option<(i64, String)>> {
        db::query_as("SELECT seq, head_hash FROM audit_chains WHERE chain_id = $1")
            .bind(chain_id)
            .fetch_optional(self.reader())
            .await
            .map_err(internal)
    }
}

//! The query audit trail: entries are appended in batches by the gateway's audit writer and
//! sealed here, inside the transaction that stores them, onto each environment's chain (the
//! head in `audit_chains`, locked by the upsert, so concurrent writers never fork it).
//! Nothing updates or deletes an entry; they go with their environment.

use enclave_core::clock::now_ms;
use enclave_core::id::EnvId;
use enclave_core::query::audit::QueryAuditEntry;

use crate::records::PageQuery;
use enclave_core::Result;

use crate::db::{self, Arg};
use crate::db_error::internal;
use crate::store::Store;

/// Filters of the query-audit list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryAuditFilter {
    pub principal_id: Option<String>,
    pub outcome: Option<String>,
    pub statement_kind: Option<String>,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
}

/// A stored entry: its JSON with the chain fields the database holds.
pub(crate) fn entry_from_row(json: &str) -> Result<QueryAuditEntry> {
    serde_json::from_str(json).map_err(|_| enclave_core::Error::internal())
}

impl Store {
    /// Seals and stores `entries` (any mix of environments) in one transaction, each
    /// environment's in the order given. Entries of environments that no longer exist are
    /// dropped. Returns the sealed entries.
    pub async fn append_query_audit(
        &self,
        entries: Vec<enclave_core::query::audit::QueryAuditEntry>,
    ) -> enclave_core::Result<Vec<enclave_core::query::audit::QueryAuditEntry>> {
        Ok(self.record_statements(entries, &[]).await?.0)
    }

    /// Stores a batch of statements: their audit entries (as [`Store::append_query_audit`]),
    /// their usage in the ledger and their agents in the registry, in one transaction. Charges of environments that no
    /// longer exist are dropped with their entries. Returns the sealed entries and each
    /// charged organization's counted credits in the period, as stored.
    pub async fn record_statements(
        &self,
        entries: Vec<enclave_core::query::audit::QueryAuditEntry>,
        charges: &[crate::UsageCharge],
    ) -> enclave_core::Result<(
        Vec<enclave_core::query::audit::QueryAuditEntry>,
        Vec<crate::PeriodUsage>,
    )> {
        use std::collections::BTreeMap;
        if entries.is_empty() && charges.is_empty() {
            return Ok((vec![], vec![]));
        }
        let mut gone = std::collections::BTreeSet::new();
        let mut seen: std::collections::BTreeSet<EnvId> =
            entries.iter().map(|e| e.env_id.clone()).collect();
        let mut by_env: BTreeMap<EnvId, Vec<enclave_core::query::audit::QueryAuditEntry>> =
            BTreeMap::new();
        for e in entries {
            by_env.entry(e.env_id.clone()).or_default().push(e);
        }
        let mut tx = self.begin_write().await?;
        let mut sealed = Vec::new();
        for (env_id, batch) in by_env {
            let exists: Option<String> =
                db::query_scalar("SELECT id FROM environments WHERE id = $1")
                    .bind(&env_id)
                    .fetch_optional(&mut tx)
                    .await
                    .map_err(internal)?;
            if exists.is_none() {
                gone.insert(env_id);
                continue;
            }
            let n = batch.len() as i64;
            let (last, mut head): (i64, String) = db::query_as(
                "INSERT INTO audit_chains (chain_id, seq, head_hash) VALUES ($1, $3, $2) \
                 ON CONFLICT (chain_id) DO UPDATE SET seq = audit_chains.seq + $3 \
                 RETURNING seq, head_hash",
            )
            .bind(&env_id)
            .bind(enclave_core::audit::GENESIS_HASH)
            .bind(n)
            .fetch_one(&mut tx)
            .await
            .map_err(internal)?;
            let first = last - n + 1;
            let (batch, json): (Vec<_>, Vec<_>) = batch
                .into_iter()
                .enumerate()
                .map(|(i, e)| {
                    let (e, json) = e.sealed(first + i as i64, &head);
                    head = e.entry_hash.clone();
                    (e, json)
                })
                .unzip();
            for (chunk, json) in batch.chunks(100).zip(json.chunks(100)) {
                let rows: Vec<String> = (0..chunk.len())
                    .map(|i| {
                        let b = i * 10;
                        let cols: Vec<String> = (1..=10).map(|c| format!("${}", b + c)).collect();
                        format!("({})", cols.join(", "))
                    })
                    .collect();
                let sql = format!(
                    "INSERT INTO query_audit (query_id, env_id, seq, principal_id, statement_kind, \
                     outcome, created_at, entry_json, prev_hash, entry_hash) VALUES {}",
                    rows.join(", ")
                );
                let mut q = db::query(&sql);
                for (e, json) in chunk.iter().zip(json) {
                    q = q
                        .bind(&e.query_id)
                        .bind(&e.env_id)
                        .bind(e.seq)
                        .bind(&e.principal.actor.id)
                        .bind(&e.statement_kind)
                        .bind(&e.outcome)
                        .bind(now_ms())
                        .bind(json)
                        .bind(&e.prev_hash)
                        .bind(&e.entry_hash);
                }
                q.execute(&mut tx).await.map_err(internal)?;
            }
            db::query("UPDATE audit_chains SET head_hash = $2 WHERE chain_id = $1")
                .bind(&env_id)
                .bind(&head)
                .execute(&mut tx)
                .await
                .map_err(internal)?;
            sealed.extend(batch);
        }
        let mut kept = Vec::with_capacity(charges.len());
        for c in charges {
            if !seen.contains(&c.env_id) {
                // A charge without an entry in this batch: its environment is checked here.
                let exists: Option<String> =
                    db::query_scalar("SELECT id FROM environments WHERE id = $1")
                        .bind(&c.env_id)
                        .fetch_optional(&mut tx)
                        .await
                        .map_err(internal)?;
                if exists.is_none() {
                    gone.insert(c.env_id.clone());
                }
                seen.insert(c.env_id.clone());
            }
            if !gone.contains(&c.env_id) {
                kept.push(c.clone());
            }
        }
        let charges = kept;
        let usage = crate::billing::charge(&mut tx, &charges).await?;
        crate::agents::record_agents(&mut tx, &sealed).await?;
        tx.commit().await.map_err(internal)?;
        Ok((sealed, usage))
    }

    /// Newest first; `page.after` is the `seq` of the last entry of the previous page.
    pub async fn query_audit_entries(
        &self,
        env_id: &EnvId,
        filter: &crate::QueryAuditFilter,
        page: &PageQuery,
    ) -> enclave_core::Result<(Vec<enclave_core::query::audit::QueryAuditEntry>, i64)> {
        const WHERE: &str = "env_id = $1 AND ($2 IS NULL OR principal_id = $2) \
             AND ($3 IS NULL OR outcome = $3) AND ($4 IS NULL OR statement_kind = $4) \
             AND ($5 IS NULL OR created_at >= $5) AND ($6 IS NULL OR created_at < $6)";
        let after = page.after_number()?;
        let filter_args: [Arg; 6] = [
            env_id.into(),
            filter.principal_id.as_deref().into(),
            filter.outcome.as_deref().into(),
            filter.statement_kind.as_deref().into(),
            filter.start_ms.into(),
            filter.end_ms.into(),
        ];
        let rows: Vec<(String,)> = db::query_as(format!(
            "SELECT entry_json FROM query_audit WHERE {WHERE} \
             AND ($7 IS NULL OR seq < $7) ORDER BY seq DESC LIMIT $8"
        ))
        .bind_all(&filter_args)
        .bind(after)
        .bind(page.limit as i64 + 1)
        .fetch_all(self.reader())
        .await
        .map_err(internal)?;
        let total: i64 = if *filter == crate::QueryAuditFilter::default() {
            db::query_scalar(
                "SELECT COALESCE((SELECT seq FROM audit_chains WHERE chain_id = $1), 0)",
            )
            .bind(env_id)
            .fetch_one(self.reader())
            .await
            .map_err(internal)?
        } else {
            db::query_scalar(format!("SELECT COUNT(*) FROM query_audit WHERE {WHERE}"))
                .bind_all(&filter_args)
                .fetch_one(self.reader())
                .await
                .map_err(internal)?
        };
        let entries = rows
            .iter()
            .map(|(json,)| crate::query_audit::entry_from_row(json))
            .collect::<enclave_core::Result<Vec<_>>>()?;
        Ok((entries, total))
    }

    pub async fn query_audit_entry(
        &self,
        env_id: &EnvId,
        query_id: &str,
    ) -> enclave_core::Result<Option<enclave_core::query::audit::QueryAuditEntry>> {
        let row: Option<(String,)> =
            db::query_as("SELECT entry_json FROM query_audit WHERE env_id = $1 AND query_id = $2")
                .bind(env_id)
                .bind(query_id)
                .fetch_optional(self.reader())
                .await
                .map_err(internal)?;
        row.map(|(json,)| crate::query_audit::entry_from_row(&json))
            .transpose()
    }

    /// In chain order: entries with `seq > after_seq`, at most `limit`.
    pub async fn query_audit_chain(
        &self,
        env_id: &EnvId,
        after_seq: i64,
        limit: i64,
    ) -> enclave_core::Result<Vec<enclave_core::query::audit::QueryAuditEntry>> {
        let rows: Vec<(String,)> = db::query_as(
            "SELECT entry_json FROM query_audit WHERE env_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(env_id)
        .bind(after_seq)
        .bind(limit)
        .fetch_all(self.reader())
        .await
        .map_err(internal)?;
        rows.iter()
            .map(|(json,)| crate::query_audit::entry_from_row(json))
            .collect()
    }
}

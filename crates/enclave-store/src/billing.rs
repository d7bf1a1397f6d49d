//! Billing: an organization's quota overrides, the usage ledger the gateway meters into (in
//! the transaction of each query-audit batch, see `query_audit.rs`), the warnings sent once
//! per period, and the sums the usage report is made of.

use std::collections::BTreeMap;

use enclave_core::billing::period::{month_name, month_of};
use enclave_core::billing::quotas::Overrides;
use enclave_core::billing::usage::{usage_percent, UsageKind, UsageRow};
use enclave_core::billing::{Credits, QuotaPatch};
use enclave_core::clock::now_ms;
use enclave_core::id::{EnvId, OrgId};
use enclave_core::Result;
use serde_json::json;

use crate::db::{self, On, Tx};
use crate::db_error::internal;
use crate::journal::{journal, Change, Origin};
use crate::organizations::{missing_or_stale, select_org_for_update};
use crate::records::OrgRecord;
use crate::store::Store;
use crate::Invalidation;

/// One metered statement, as the gateway hands it over with its audit entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageCharge {
    pub org_id: OrgId,
    pub env_id: EnvId,
    pub at_ms: i64,
    pub kind: UsageKind,
    /// A production statement: it counts against the monthly credits.
    pub counted: bool,
    pub credits: Credits,
    /// The organization's monthly limit when the statement ran (`None`: unlimited): what the
    /// 80 % and 100 % warnings are measured against.
    pub limit: Option<Credits>,
}

/// An organization's counted credits in a billing period, as stored after a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodUsage {
    pub org_id: OrgId,
    /// The period's first millisecond.
    pub period_start: i64,
    pub used: Credits,
}

/// The percentages of the monthly credits at which `billing.warning` goes out.
pub const WARNING_THRESHOLDS: [u64; 2] = [80, 100];

impl Store {
    /// Changes the organization's quotas (its owner, or the server's operator): `patch` over
    /// the overrides it has, in one transaction with its audit entry. Every node's view of
    /// the organization is dropped.
    pub async fn set_org_quotas(
        &self,
        org_id: &OrgId,
        patch: &QuotaPatch,
        expected_version: Option<i64>,
        origin: &Origin,
    ) -> Result<OrgRecord> {
        let mut tx = self.begin_write().await?;
        let Some(before) = select_org_for_update(&mut tx, org_id).await? else {
            return Err(enclave_core::Error::not_found("organization"));
        };
        let mut overrides = Overrides::from_json(&before.quota_overrides.0);
        overrides.patch(patch);
        let rec: Option<OrgRecord> = db::query_as(format!(
            "UPDATE organizations SET quota_overrides = $2, updated_at = $3, version = version + 1 \
             WHERE id = $1 AND ($4 IS NULL OR version = $4) RETURNING {}",
            crate::organizations::ORG_COLUMNS
        ))
        .bind(org_id)
        .bind(sqlx::types::Json(overrides.to_json()))
        .bind(now_ms())
        .bind(expected_version)
        .fetch_optional(&mut tx)
        .await
        .map_err(internal)?;
        let Some(rec) = rec else {
            return Err(missing_or_stale(
                &mut tx,
                "SELECT COUNT(*) FROM organizations WHERE id = $1",
                &[org_id],
                "organization",
            )
            .await);
        };
        journal(
            &mut tx,
            origin,
            Change::new(
                org_id,
                "organization.quotas_updated",
                "organization",
                org_id,
            )
            .before(before.quota_overrides.0.clone())
            .after(rec.quota_overrides.0.clone()),
        )
        .await?;
        self.commit(
            tx,
            vec![Invalidation::Org {
                org_id: org_id.clone(),
            }],
        )
        .await?;
        Ok(rec)
    }

    /// An organization's counted credits in the period `[start_ms, end_ms)`.
    pub async fn counted_credits(
        &self,
        org_id: &OrgId,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Credits> {
        counted_on(self.reader(), org_id, start_ms, end_ms).await
    }

    /// Records what an environment's data takes on its engine, as just measured.
    pub async fn record_storage(&self, org_id: &OrgId, env_id: &EnvId, bytes: u64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        db::query(
            "INSERT INTO environment_storage (env_id, org_id, bytes, measured_at) \
             SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM environments WHERE id = $1) \
             ON CONFLICT (env_id) DO UPDATE SET bytes = excluded.bytes, measured_at = excluded.measured_at",
        )
        .bind(env_id)
        .bind(org_id)
        .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
        .bind(now_ms())
        .execute(&mut tx)
        .await
        .map_err(internal)?;
        self.commit(tx, vec![]).await
    }

    /// What the organization's environments take, as last measured.
    pub async fn org_storage_bytes(&self, org_id: &OrgId) -> Result<u64> {
        let bytes: i64 = db::query_scalar(
            "SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM environment_storage WHERE org_id = $1",
        )
        .bind(org_id)
        .fetch_one(self.reader())
        .await
        .map_err(internal)?;
        Ok(bytes.max(0) as u64)
    }

    /// The ledger in `[start_ms, end_ms)`, summed per environment (with its name while it
    /// exists), statement kind, production or not, and time bucket: buckets of `bucket_ms`
    /// starting `offset_ms` after the epoch (an hour, a day, a week from a Monday).
    pub async fn usage_rows(
        &self,
        org_id: &OrgId,
        (start_ms, end_ms): (i64, i64),
        (bucket_ms, offset_ms): (i64, i64),
    ) -> Result<Vec<UsageRow>> {
        let rows: Vec<LedgerRow> = db::query_as(
            "SELECT u.env_id, e.name, u.statement_kind, u.counted, \
             ((u.hour - $4) / $5) * $5 + $4 AS bucket, CAST(SUM(u.queries) AS BIGINT), CAST(SUM(u.credits_milli) AS BIGINT) \
             FROM usage_ledger u LEFT JOIN environments e ON e.id = u.env_id \
             WHERE u.org_id = $1 AND u.hour >= $2 AND u.hour < $3 \
             GROUP BY u.env_id, e.name, u.statement_kind, u.counted, bucket \
             ORDER BY bucket, u.env_id",
        )
        .bind(org_id)
        .bind(start_ms)
        .bind(end_ms)
        .bind(offset_ms)
        .bind(bucket_ms)
        .fetch_all(self.reader())
        .await
        .map_err(internal)?;
        Ok(rows
            .into_iter()
            .map(
                |(env_id, env_name, kind, counted, bucket, queries, milli)| UsageRow {
                    env_id: EnvId::from(env_id),
                    env_name,
                    kind: UsageKind::parse(&kind).unwrap_or(UsageKind::Other),
                    counted,
                    bucket_ms: bucket,
                    queries: queries.max(0) as u64,
                    credits: Credits::from_milli(milli.max(0) as u64),
                },
            )
            .collect())
    }
}

/// An organization's counted credits in `[start_ms, end_ms)`, read on `on`: the reader, or
/// the transaction that has just charged them.
async fn counted_on<'e>(
    on: impl Into<On<'e>>,
    org_id: &OrgId,
    start_ms: i64,
    end_ms: i64,
) -> Result<Credits> {
    let milli: i64 = db::query_scalar(
        "SELECT CAST(COALESCE(SUM(credits_milli), 0) AS BIGINT) FROM usage_ledger \
         WHERE org_id = $1 AND counted = $2 AND hour >= $3 AND hour < $4",
    )
    .bind(org_id)
    .bind(true)
    .bind(start_ms)
    .bind(end_ms)
    .fetch_one(on)
    .await
    .map_err(internal)?;
    Ok(Credits::from_milli(milli.max(0) as u64))
}

/// A row of [`Store::usage_rows`]' query: environment id and name, statement kind, counted,
/// bucket start, queries, thousandths of a credit.
type LedgerRow = (String, Option<String>, String, bool, i64, i64, i64);

/// Adds a batch's charges to the ledger (one upsert per environment, hour, kind), sends the
/// warnings the batch crossed, and returns each charged organization's counted credits for
/// the periods charged. Runs in the transaction that stores the batch's audit entries.
pub(crate) async fn charge(tx: &mut Tx, charges: &[UsageCharge]) -> Result<Vec<PeriodUsage>> {
    if charges.is_empty() {
        return Ok(vec![]);
    }
    type Key<'a> = (&'a OrgId, &'a EnvId, i64, UsageKind, bool);
    let mut sums: BTreeMap<Key, (i64, i64)> = BTreeMap::new();
    // (org, period start) → (period end, the limit last seen).
    let mut periods: BTreeMap<(&OrgId, i64), (i64, Option<Credits>)> = BTreeMap::new();
    for c in charges {
        let hour = enclave_core::billing::period::hour_of(c.at_ms);
        let sum = sums
            .entry((&c.org_id, &c.env_id, hour, c.kind, c.counted))
            .or_default();
        sum.0 += 1;
        sum.1 += c.credits.milli() as i64;
        if c.counted {
            let (start, end) = month_of(c.at_ms);
            periods.insert((&c.org_id, start), (end, c.limit));
        }
    }
    let sums: Vec<_> = sums.into_iter().collect();
    for chunk in sums.chunks(100) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                let b = i * 7;
                let cols: Vec<String> = (1..=7).map(|c| format!("${}", b + c)).collect();
                format!("({})", cols.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO usage_ledger (org_id, env_id, hour, statement_kind, counted, queries, \
             credits_milli) VALUES {} \
             ON CONFLICT (org_id, hour, env_id, statement_kind, counted) DO UPDATE SET \
             queries = usage_ledger.queries + excluded.queries, \
             credits_milli = usage_ledger.credits_milli + excluded.credits_milli",
            rows.join(", ")
        );
        let mut q = db::query(&sql);
        for ((org, env, hour, kind, counted), (queries, milli)) in chunk {
            q = q
                .bind(*org)
                .bind(*env)
                .bind(*hour)
                .bind(kind.as_str())
                .bind(*counted)
                .bind(*queries)
                .bind(*milli);
        }
        q.execute(&mut *tx).await.map_err(internal)?;
    }
    let mut totals = Vec::new();
    for ((org_id, start), (end, limit)) in periods {
        let used = counted_on(&mut *tx, org_id, start, end).await?;
        if let Some(limit) = limit {
            warn_crossed(tx, org_id, start, used, limit).await?;
        }
        totals.push(PeriodUsage {
            org_id: org_id.clone(),
            period_start: start,
            used,
        });
    }
    Ok(totals)
}

/// Sends `billing.warning` for each threshold `used` reached in the period, unless some node
/// already did (the first insert of the period's row wins).
async fn warn_crossed(
    tx: &mut Tx,
    org_id: &OrgId,
    period_start: i64,
    used: Credits,
    limit: Credits,
) -> Result<()> {
    let period = month_name(period_start);
    for threshold in WARNING_THRESHOLDS {
        let reached = used > Credits::ZERO
            && u128::from(used.milli()) * 100 >= u128::from(limit.milli()) * u128::from(threshold);
        if !reached {
            continue;
        }
        let inserted = db::query(
            "INSERT INTO billing_warnings (org_id, period, threshold, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(org_id)
        .bind(&period)
        .bind(threshold as i64)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(internal)?
        .rows_affected();
        if inserted == 0 {
            continue;
        }
        let data = json!({
            "threshold_percent": threshold,
            "period": period,
            "credits_used": used,
            "monthly_credit_limit": limit,
            "usage_percent": usage_percent(used, limit),
        });
        journal(
            tx,
            &Origin::system(),
            Change::new(org_id, "billing.warning", "organization", org_id).after(data),
        )
        .await?;
    }
    Ok(())
}

//! Stages 6 (quota) and 11 (meter) as this node keeps them: each organization's quotas and
//! its counted credits in the current billing period.
//!
//! A statement's check reads memory only. What the period has used is the ledger's total as
//! last stored or read, plus what this node metered since and has not yet stored. The query
//! audit writer stores usage in batches and hands back the new totals (which include every
//! node's usage); an organization's total older than [`REFRESH`] is read again in the
//! background, so usage metered by other nodes reaches this one within about that long.
//! Statements running at the same moment are each checked against the same remaining credits,
//! so the limit may be passed by what those statements cost — never by more.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use enclave_core::billing::period::month_of;
use enclave_core::billing::quotas::Overrides;
use enclave_core::billing::{Credits, Quotas};
use enclave_core::clock::now_ms;
use enclave_core::id::OrgId;
use enclave_core::model::Tier;
use enclave_core::query::with_sqlstate;
use enclave_core::{Error, ErrorCode, Result};
use enclave_store::{Invalidation, PeriodUsage, Store, UsageCharge};

/// How long an organization's stored total is trusted before it is read again.
const REFRESH: Duration = Duration::from_secs(2);

/// The tier defaults the server was configured with.
pub type TierQuotas = HashMap<Tier, Quotas>;

pub struct Meter {
    store: Arc<Store>,
    tiers: TierQuotas,
    orgs: RwLock<HashMap<OrgId, Arc<OrgMeter>>>,
    me: Weak<Meter>,
}

/// One organization as this node meters it.
struct OrgMeter {
    /// `None` once the organization changed: read again before the next use.
    quotas: RwLock<Option<Quotas>>,
    usage: Mutex<Usage>,
}

#[derive(Debug)]
struct Usage {
    /// The period `[start, end)` the figures are for.
    period: (i64, i64),
    /// Counted credits of the period in the ledger, as last seen.
    stored: Credits,
    /// Counted credits this node metered and has not stored yet.
    pending: Credits,
    /// What the organization's environments take, as last measured (any node's measures).
    storage_bytes: u64,
    read_at: Instant,
    refreshing: bool,
}

impl Usage {
    fn used(&self) -> Credits {
        self.stored + self.pending
    }
}

impl Meter {
    pub fn start(store: Arc<Store>, tiers: TierQuotas) -> Arc<Meter> {
        let meter = Arc::new_cyclic(|me| Meter {
            store: store.clone(),
            tiers,
            orgs: RwLock::default(),
            me: me.clone(),
        });
        let weak = Arc::downgrade(&meter);
        store.bus().on_publish(move |event| {
            let Some(meter) = weak.upgrade() else { return };
            match event {
                // The organization's quotas (or tier) changed: read them again, keeping what
                // was metered.
                Invalidation::Org { org_id } => {
                    if let Some(org) = meter.orgs.read().unwrap().get(org_id) {
                        *org.quotas.write().unwrap() = None;
                    }
                }
                Invalidation::All => {
                    for org in meter.orgs.read().unwrap().values() {
                        *org.quotas.write().unwrap() = None;
                    }
                }
                _ => {}
            }
        });
        meter
    }

    /// The organization's quotas: its tier's as configured, with its owner's changes.
    pub async fn quotas(&self, org_id: &OrgId) -> Result<Quotas> {
        Ok(self.org(org_id).await?.1)
    }

    /// The organization's meter and its current quotas, read from the store the first time
    /// and after it changed.
    async fn org(&self, org_id: &OrgId) -> Result<(Arc<OrgMeter>, Quotas)> {
        let known = self.orgs.read().unwrap().get(org_id).cloned();
        if let Some(org) = &known {
            if let Some(quotas) = *org.quotas.read().unwrap() {
                return Ok((org.clone(), quotas));
            }
        }
        let record = self
            .store
            .org(org_id)
            .await?
            .ok_or_else(|| Error::not_found("organization"))?;
        let tier = self
            .tiers
            .get(&record.tier)
            .copied()
            .unwrap_or_else(|| Quotas::tier_default(record.tier));
        let quotas = Overrides::from_json(&record.quota_overrides.0).apply(tier);
        if let Some(org) = known {
            // What this node metered stays; only the quotas are new.
            *org.quotas.write().unwrap() = Some(quotas);
            return Ok((org, quotas));
        }
        let period = month_of(now_ms());
        let stored = self
            .store
            .counted_credits(org_id, period.0, period.1)
            .await?;
        let storage_bytes = self.store.org_storage_bytes(org_id).await?;
        let org = Arc::new(OrgMeter {
            quotas: RwLock::new(Some(quotas)),
            usage: Mutex::new(Usage {
                period,
                stored,
                pending: Credits::ZERO,
                storage_bytes,
                read_at: Instant::now(),
                refreshing: false,
            }),
        });
        let mut orgs = self.orgs.write().unwrap();
        // Another statement may have loaded it meanwhile, with usage metered since: keep that.
        let org = orgs.entry(org_id.clone()).or_insert(org).clone();
        Ok((org, quotas))
    }

    /// Stage 6: refuses a counted statement whose estimate exceeds the credits the period
    /// has left (429 `QUOTA_EXCEEDED`, SQLSTATE `53400`). Returns the monthly limit, for the
    /// warnings the metering may send.
    pub async fn check(&self, org_id: &OrgId, estimate: Credits) -> Result<Option<Credits>> {
        let (org, quotas) = self.org(org_id).await?;
        let Some(limit) = quotas.credit_limit() else {
            return Ok(None);
        };
        let used = self.current(org_id, &org, |usage| usage.used());
        let remaining = limit.saturating_sub(used);
        if estimate > remaining {
            return Err(over_limit(estimate, remaining, limit, used));
        }
        Ok(Some(limit))
    }

    /// Refuses a statement that adds data while the organization's environments take
    /// `storage_limit_gb` or more (429 `QUOTA_EXCEEDED`, SQLSTATE `53400`); deleting and
    /// dropping stay allowed, so that space can be freed.
    pub async fn check_storage(&self, org_id: &OrgId) -> Result<()> {
        let (org, quotas) = self.org(org_id).await?;
        let Some(limit_gb) = quotas.storage_limit_gb else {
            return Ok(());
        };
        let bytes = self.current(org_id, &org, |usage| usage.storage_bytes);
        let limit = u64::from(limit_gb) << 30;
        if bytes < limit {
            return Ok(());
        }
        Err(with_sqlstate(
            Error::new(
                ErrorCode::QuotaExceeded,
                format!(
                    "the organization's environments hold {:.2} GiB, its storage_limit_gb is \
                     {limit_gb}: delete data or ask its owner to raise the quota",
                    bytes as f64 / f64::from(1u32 << 30)
                ),
            )
            .with_details(serde_json::json!({
                "quota": "storage_limit_gb",
                "limit": limit_gb,
                "used_bytes": bytes,
                "setting": "tier_quotas (--tier-quotas)",
            })),
            "53400",
        ))
    }

    /// A figure of the organization's usage in the current period, read again from the
    /// store in the background when older than [`REFRESH`].
    fn current<T>(&self, org_id: &OrgId, org: &Arc<OrgMeter>, read: impl Fn(&Usage) -> T) -> T {
        let mut usage = org.usage.lock().unwrap();
        let now = now_ms();
        if now >= usage.period.1 {
            // A new period: nothing of it is used until the ledger says otherwise.
            *usage = Usage {
                period: month_of(now),
                stored: Credits::ZERO,
                pending: Credits::ZERO,
                storage_bytes: usage.storage_bytes,
                read_at: Instant::now() - REFRESH,
                refreshing: false,
            };
        }
        if usage.read_at.elapsed() >= REFRESH && !usage.refreshing {
            usage.refreshing = true;
            self.refresh(org_id.clone(), org.clone(), usage.period);
        }
        read(&usage)
    }

    /// Reads the organization's stored total again, off the statement's path.
    fn refresh(&self, org_id: OrgId, org: Arc<OrgMeter>, period: (i64, i64)) {
        let Some(me) = self.me.upgrade() else { return };
        tokio::spawn(async move {
            let read = async {
                let credits = me
                    .store
                    .counted_credits(&org_id, period.0, period.1)
                    .await?;
                let bytes = me.store.org_storage_bytes(&org_id).await?;
                Ok::<_, Error>((credits, bytes))
            }
            .await;
            let mut usage = org.usage.lock().unwrap();
            usage.refreshing = false;
            usage.read_at = Instant::now();
            match read {
                Ok((stored, bytes)) => {
                    // The total only grows within a period; an older read never lowers it.
                    if usage.period == period {
                        usage.stored = usage.stored.max(stored);
                    }
                    usage.storage_bytes = bytes;
                }
                Err(e) => tracing::warn!(org_id = %org_id, error = %e.message, "cannot read usage"),
            }
        });
    }

    /// A statement was metered (before its charge is stored).
    pub fn metered(&self, charge: &UsageCharge) {
        if !charge.counted || charge.credits == Credits::ZERO {
            return;
        }
        if let Some(org) = self.orgs.read().unwrap().get(&charge.org_id) {
            let mut usage = org.usage.lock().unwrap();
            if usage.period == month_of(charge.at_ms) {
                usage.pending += charge.credits;
            }
        }
    }

    /// A batch of charges is stored; `totals` are the ledger's totals after it.
    pub fn stored(&self, charges: &[UsageCharge], totals: &[PeriodUsage]) {
        let orgs = self.orgs.read().unwrap();
        for charge in charges.iter().filter(|c| c.counted) {
            if let Some(org) = orgs.get(&charge.org_id) {
                let mut usage = org.usage.lock().unwrap();
                if usage.period == month_of(charge.at_ms) {
                    usage.pending = usage.pending.saturating_sub(charge.credits);
                }
            }
        }
        for total in totals {
            if let Some(org) = orgs.get(&total.org_id) {
                let mut usage = org.usage.lock().unwrap();
                if usage.period.0 == total.period_start {
                    usage.stored = usage.stored.max(total.used);
                    usage.read_at = Instant::now();
                }
            }
        }
    }
}

/// 429 `QUOTA_EXCEEDED` / `53400`: the statement's estimate does not fit in what the period
/// has left.
fn over_limit(estimate: Credits, remaining: Credits, limit: Credits, used: Credits) -> Error {
    let setting = "tier_quotas (--tier-quotas)";
    with_sqlstate(
        Error::new(
            ErrorCode::QuotaExceeded,
            format!(
                "the organization's monthly credits would be exceeded: this statement is \
                 estimated at {estimate} credits and {remaining} of {limit} remain; its owner \
                 raises monthly_credit_limit with PATCH /v1/organizations/{{org_id}}/billing/quotas"
            ),
        )
        .with_details(serde_json::json!({
            "quota": "monthly_credit_limit",
            "limit": limit,
            "used": used,
            "remaining": remaining,
            "estimate": estimate,
            "setting": setting,
        })),
        "53400",
    )
}

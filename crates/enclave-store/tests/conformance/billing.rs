//! Billing in the store, on SQLite and PostgreSQL alike: quota overrides changed and audited,
//! usage metered into the ledger with the audit batch, warnings sent once per threshold and
//! period, the report's sums, and two nodes metering into one ledger without losing a credit.

use std::sync::Arc;

use enclave_core::billing::period::month_of;
use enclave_core::billing::usage::{GroupBy, UsageKind};
use enclave_core::billing::{Credits, QuotaPatch};
use enclave_core::clock::now_ms;
use enclave_core::id::{EnvId, OrgId};
use enclave_core::pagination::PageRequest;
use enclave_store::*;
use serde_json::json;

use super::environments::org_with;

conformance!(
    quota_overrides_are_kept_and_audited,
    usage_is_metered_and_warned_once,
    storage_is_summed_per_organization,
);

fn charge(org: &OrgId, env: &EnvId, kind: UsageKind, counted: bool, milli: u64) -> UsageCharge {
    UsageCharge {
        org_id: org.clone(),
        env_id: env.clone(),
        at_ms: now_ms(),
        kind,
        counted,
        credits: Credits::from_milli(milli),
        limit: Some(Credits::whole(10)),
    }
}

async fn env_id(store: &Store, org: &OrgId, slug: &str) -> EnvId {
    store
        .environment_by_slug(org, slug)
        .await
        .unwrap()
        .unwrap()
        .id
}

async fn actions(store: &Store, org: &OrgId, action: &str) -> Vec<enclave_core::audit::AuditEntry> {
    let filter = AuditFilter {
        action: Some(action.into()),
        ..AuditFilter::default()
    };
    let page = PageRequest::parse(Some(100), None).unwrap();
    store.audit_entries(org, &filter, &page).await.unwrap().0
}

async fn quota_overrides_are_kept_and_audited(store: Arc<Store>) {
    let org = org_with(&store, &["dev"]).await;
    let before = store.org(&org).await.unwrap().unwrap();
    assert_eq!(before.quota_overrides.0, json!({}));
    let patch = QuotaPatch::parse(
        &json!({"quotas": {"max_users": 12, "monthly_credit_limit": "unlimited"}}),
    )
    .unwrap();
    let rec = store
        .set_org_quotas(&org, &patch, Some(before.version), &Origin::system())
        .await
        .unwrap();
    assert_eq!(
        rec.quota_overrides.0,
        json!({"max_users": 12, "monthly_credit_limit": "unlimited"})
    );
    assert_eq!(rec.version, before.version + 1);
    let reset = QuotaPatch::parse(&json!({"max_users": null})).unwrap();
    let rec = store
        .set_org_quotas(&org, &reset, None, &Origin::system())
        .await
        .unwrap();
    assert_eq!(
        rec.quota_overrides.0,
        json!({"monthly_credit_limit": "unlimited"})
    );
    // A stale version changes nothing.
    let e = store
        .set_org_quotas(&org, &patch, Some(before.version), &Origin::system())
        .await
        .unwrap_err();
    assert_eq!(e.code.http_status(), 412);
    let audited = actions(&store, &org, "organization.quotas_updated").await;
    assert_eq!(audited.len(), 2);
    assert_eq!(
        audited[0].after,
        json!({"monthly_credit_limit": "unlimited"})
    );
    let missing = OrgId::generate();
    assert_eq!(
        store
            .set_org_quotas(&missing, &patch, None, &Origin::system())
            .await
            .unwrap_err()
            .code
            .http_status(),
        404
    );
}

async fn usage_is_metered_and_warned_once(store: Arc<Store>) {
    let org = org_with(&store, &["prod", "dev"]).await;
    let prod = env_id(&store, &org, "prod").await;
    let dev = env_id(&store, &org, "dev").await;
    let hook = store
        .create_webhook(
            NewWebhook {
                id: enclave_core::id::new_id(enclave_core::id::Kind::Webhook),
                org_id: org.clone(),
                url: "https://hooks.example.com/x".into(),
                description: String::new(),
                events: vec!["billing.warning".into()],
                secret: "whsec_c2VjcmV0".into(),
                created_by: "usr_x".into(),
            },
            &Origin::system(),
        )
        .await
        .unwrap();
    let record = |charges: Vec<UsageCharge>| {
        let store = store.clone();
        async move { store.record_statements(vec![], &charges).await.unwrap().1 }
    };
    // 7.5 credits in production, 20 in development (metered, not counted).
    let mut batch: Vec<UsageCharge> = (0..5)
        .map(|_| charge(&org, &prod, UsageKind::Select, true, 1_500))
        .collect();
    batch.push(charge(&org, &dev, UsageKind::Select, false, 20_000));
    batch.push(charge(&org, &dev, UsageKind::Other, false, 0));
    let totals = record(batch).await;
    assert_eq!(totals.len(), 1);
    assert_eq!(totals[0].used, Credits::from_milli(7_500));
    assert_eq!(totals[0].period_start, month_of(now_ms()).0);
    assert!(actions(&store, &org, "billing.warning").await.is_empty());
    // 8.0: the 80 % warning, once.
    record(vec![charge(&org, &prod, UsageKind::Insert, true, 500)]).await;
    record(vec![charge(&org, &prod, UsageKind::Insert, true, 500)]).await;
    let warnings = actions(&store, &org, "billing.warning").await;
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].after["threshold_percent"], 80);
    assert_eq!(warnings[0].after["credits_used"], 8.0);
    assert_eq!(warnings[0].after["monthly_credit_limit"], 10.0);
    // Past 100 %: the second warning; more usage sends no third.
    record(vec![charge(&org, &prod, UsageKind::Delete, true, 2_000)]).await;
    let totals = record(vec![charge(&org, &prod, UsageKind::Delete, true, 1_000)]).await;
    assert_eq!(totals[0].used, Credits::from_milli(11_500));
    let warnings = actions(&store, &org, "billing.warning").await;
    assert_eq!(warnings.len(), 2);
    assert_eq!(warnings[0].after["threshold_percent"], 100);
    let page = PageRequest::parse(Some(10), None).unwrap();
    let (deliveries, _, _) = store.deliveries(&org, &hook.id, &page).await.unwrap();
    assert_eq!(deliveries.len(), 2, "one webhook delivery per warning");

    let (start, end) = month_of(now_ms());
    assert_eq!(
        store.counted_credits(&org, start, end).await.unwrap(),
        Credits::from_milli(11_500)
    );
    let rows = store
        .usage_rows(&org, (start, end), GroupBy::Day.bucket())
        .await
        .unwrap();
    let credits_of = |env: &EnvId| -> u64 {
        rows.iter()
            .filter(|r| &r.env_id == env)
            .map(|r| r.credits.milli())
            .sum()
    };
    assert_eq!(credits_of(&prod), 11_500);
    assert_eq!(credits_of(&dev), 20_000);
    let queries: u64 = rows.iter().map(|r| r.queries).sum();
    assert_eq!(queries, 11);
    let day = rows[0].bucket_ms;
    assert_eq!(day % 86_400_000, 0, "days start at midnight UTC");
    assert!(rows.iter().all(|r| r.env_name.is_some()));
    // Outside the range: nothing.
    assert!(store
        .usage_rows(&org, (end, end + 1), GroupBy::Hour.bucket())
        .await
        .unwrap()
        .is_empty());

    // A deleted environment's usage stays, without its name; its entries' charges made after
    // it is gone are dropped with the entries.
    store
        .decommission_environment(&dev, None, &Origin::system())
        .await
        .unwrap();
    store.purge_environment(&dev).await.unwrap();
    record(vec![charge(&org, &dev, UsageKind::Select, false, 1_000)]).await;
    let rows = store
        .usage_rows(&org, (start, end), GroupBy::Week.bucket())
        .await
        .unwrap();
    let gone: Vec<_> = rows.iter().filter(|r| r.env_id == dev).collect();
    assert!(!gone.is_empty() && gone.iter().all(|r| r.env_name.is_none()));
    assert_eq!(gone.iter().map(|r| r.credits.milli()).sum::<u64>(), 20_000);
}

/// Two nodes on one database, each with its own store, metering at once.
async fn two_nodes_lose_no_credit(a: Arc<Store>, b: Arc<Store>) {
    let org = org_with(&a, &["prod"]).await;
    let prod = env_id(&a, &org, "prod").await;
    let writers: Vec<_> = (0..8)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (org, prod) = (org.clone(), prod.clone());
            tokio::spawn(async move {
                for _ in 0..10 {
                    let charges: Vec<UsageCharge> = (0..4)
                        .map(|_| {
                            let mut c = charge(&org, &prod, UsageKind::Select, true, 125);
                            c.limit = None;
                            c
                        })
                        .collect();
                    store.record_statements(vec![], &charges).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let (start, end) = month_of(now_ms());
    assert_eq!(
        b.counted_credits(&org, start, end).await.unwrap(),
        Credits::from_milli(8 * 10 * 4 * 125)
    );
    let rows = a
        .usage_rows(&org, (start, end), GroupBy::Hour.bucket())
        .await
        .unwrap();
    assert_eq!(rows.iter().map(|r| r.queries).sum::<u64>(), 320);
}

mod two_nodes_meter_into_one_ledger {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let db = enclave_store::testing::TempSqlite::create();
        let a = enclave_store::connect(&db.url).await.unwrap();
        let b = enclave_store::connect(&db.url).await.unwrap();
        super::two_nodes_lose_no_credit(a, b).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let Some(db) = enclave_store::testing::TempPostgres::create().await else {
            return;
        };
        let a = enclave_store::connect(&db.url).await.unwrap();
        let b = enclave_store::connect(&db.url).await.unwrap();
        super::two_nodes_lose_no_credit(a, b).await;
    }
}

async fn storage_is_summed_per_organization(store: Arc<Store>) {
    let org = org_with(&store, &["dev", "prod"]).await;
    let other = org_with(&store, &["dev"]).await;
    let (dev, prod) = (
        env_id(&store, &org, "dev").await,
        env_id(&store, &org, "prod").await,
    );
    assert_eq!(store.org_storage_bytes(&org).await.unwrap(), 0);
    store.record_storage(&org, &dev, 1_000).await.unwrap();
    store.record_storage(&org, &prod, 5_000).await.unwrap();
    // A new measure replaces the environment's last one.
    store.record_storage(&org, &dev, 3_000).await.unwrap();
    let elsewhere = env_id(&store, &other, "dev").await;
    store.record_storage(&other, &elsewhere, 7).await.unwrap();
    assert_eq!(store.org_storage_bytes(&org).await.unwrap(), 8_000);
    assert_eq!(store.org_storage_bytes(&other).await.unwrap(), 7);
    // A deleted environment takes nothing; a measure arriving after it is dropped.
    store.purge_environment(&dev).await.unwrap();
    assert_eq!(store.org_storage_bytes(&org).await.unwrap(), 5_000);
    store.record_storage(&org, &dev, 9_000).await.unwrap();
    assert_eq!(store.org_storage_bytes(&org).await.unwrap(), 5_000);
}

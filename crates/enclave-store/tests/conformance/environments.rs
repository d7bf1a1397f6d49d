//! The environment store, run against SQLite and PostgreSQL alike (the suite's `conformance!`): what the database itself
//! must guarantee (uniqueness, dense order, quota, atomic promotion) under concurrency.

use std::sync::Arc;

use enclave_core::environment::{EnvSettings, EnvType, Transition};
use enclave_core::id::{new_id, EnvId, Kind, OrgId, UserId};
use enclave_core::model::Tier;
use enclave_core::promotion::{Promotion, PromotionCounts, PromotionStatus};
use enclave_core::ErrorCode;
use enclave_store::*;

conformance!(
    racing_creates_keep_order_dense,
    quota_is_checked_under_the_lock,
    delete_closes_the_gap,
    promotion_is_all_or_nothing,
    organization_delete_takes_the_tree,
);

fn env(org: &OrgId, slug: &str) -> NewEnvironment {
    NewEnvironment {
        id: EnvId::generate(),
        org_id: org.into(),
        name: slug.into(),
        slug: slug.into(),
        env_type: EnvType::Custom,
        color: "#000000".into(),
        parent_env_id: None,
        description: String::new(),
        settings: EnvSettings::default(),
        policies: Vec::new(),
        capabilities: Vec::new(),
        required_keys: Vec::new(),
        secrets: None,
    }
}

pub(super) async fn org_with(store: &Arc<Store>, defaults: &[&str]) -> OrgId {
    let user = store
        .create_user(NewUser {
            id: UserId::generate(),
            email: format!("{}@example.com", UserId::generate()),
            name: "Owner".into(),
            password_hash: None,
        })
        .await
        .unwrap();
    let org_id = OrgId::generate();
    let envs = defaults.iter().map(|s| env(&org_id, s)).collect();
    let org = NewOrg {
        id: org_id.clone(),
        name: "Org".into(),
        slug: org_id.replace('_', "-"),
        billing_email: "b@example.com".into(),
        cloud_region: None,
        tier: Tier::Free,
        settings: serde_json::json!({}),
    };
    store
        .create_org(org, &user.id, "Owner", envs, &Origin::system())
        .await
        .unwrap();
    org_id
}

async fn positions(store: &Arc<Store>, org: &OrgId) -> (Vec<(i64, String)>, EnvPage) {
    let page = store
        .environments(
            org,
            &EnvFilter::default(),
            &EnvPageQuery {
                limit: 200,
                after: None,
            },
        )
        .await
        .unwrap();
    let rows = page
        .rows
        .iter()
        .map(|r| (r.position, r.slug.clone()))
        .collect();
    (rows, page)
}

async fn racing_creates_keep_order_dense(store: Arc<Store>) {
    let org = org_with(&store, &["dev", "prod"]).await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            let org = org.clone();
            // Half race for one slug (in different cases), half take their own.
            let slug = if i % 2 == 0 {
                "same".to_string()
            } else {
                format!("own-{i}")
            };
            tokio::spawn(async move {
                store
                    .create_environment(env(&org, &slug), None, &Origin::system())
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code, ErrorCode::Conflict),
        }
    }
    assert_eq!(ok, 11);
    let (rows, page) = positions(&store, &org).await;
    assert_eq!(rows.len(), 13);
    assert_eq!(page.total, 13);
    assert!(
        rows.iter().enumerate().all(|(i, (p, _))| *p == i as i64),
        "{rows:?}"
    );
    // Case-insensitive uniqueness is the database's.
    let e = store
        .create_environment(env(&org, "SAME"), None, &Origin::system())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict);
}

async fn quota_is_checked_under_the_lock(store: Arc<Store>) {
    let org = org_with(&store, &["dev"]).await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let org = org.clone();
            tokio::spawn(async move {
                store
                    .create_environment(env(&org, &format!("e{i}")), Some(4), &Origin::system())
                    .await
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => created += 1,
            Err(e) => assert_eq!(e.code, ErrorCode::QuotaExceeded),
        }
    }
    assert_eq!(created, 3);
    let (rows, page) = positions(&store, &org).await;
    assert_eq!((rows.len(), page.total), (4, 4));
}

async fn delete_closes_the_gap(store: Arc<Store>) {
    let org = org_with(&store, &["a", "b", "c", "d"]).await;
    let (_, before) = positions(&store, &org).await;
    let b = before.rows[1].clone();
    let rec = store
        .decommission_environment(&b.id, Some(b.version), &Origin::system())
        .await
        .unwrap();
    assert_eq!(rec.status.as_str(), "decommissioning");
    // Mid-delete it is unsettled (a restart would finish it), and refuses writes.
    assert!(store
        .unsettled_environments()
        .await
        .unwrap()
        .iter()
        .any(|e| e.id == b.id));
    let e = store
        .transition_environment(&b.id, None, Transition::Suspend, &Origin::system())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict);
    store.purge_environment(&b.id).await.unwrap();
    store.purge_environment(&b.id).await.unwrap(); // idempotent
    let (rows, after) = positions(&store, &org).await;
    assert_eq!(
        rows,
        [
            (0, "a".to_string()),
            (1, "c".to_string()),
            (2, "d".to_string())
        ]
    );
    assert_eq!(after.total, 3);
    assert!(after.order_version > before.order_version);
    // A stale reorder version is refused, and nothing moves.
    let order: Vec<EnvId> = after.rows.iter().rev().map(|r| r.id.clone()).collect();
    let e = store
        .reorder_environments(&org, before.order_version, &order, &Origin::system())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PreconditionFailed);
    let v = store
        .reorder_environments(&org, after.order_version, &order, &Origin::system())
        .await
        .unwrap();
    assert_eq!(v, after.order_version + 1);
    let (rows, _) = positions(&store, &org).await;
    assert_eq!(
        rows,
        [
            (0, "d".to_string()),
            (1, "c".to_string()),
            (2, "a".to_string())
        ]
    );
    // An organization without environments reorders to the empty order.
    let empty = org_with(&store, &[]).await;
    let (_, page) = positions(&store, &empty).await;
    let v = store
        .reorder_environments(&empty, page.order_version, &[], &Origin::system())
        .await
        .unwrap();
    assert_eq!(v, page.order_version + 1);
}

async fn promotion_is_all_or_nothing(store: Arc<Store>) {
    let org = org_with(&store, &["stg", "prod"]).await;
    let (_, page) = positions(&store, &org).await;
    let (stg, prod) = (&page.rows[0], &page.rows[1]);
    let record = |id: &str| Promotion {
        promotion_id: id.into(),
        source_env: stg.id.clone(),
        target_env: prod.id.clone(),
        status: PromotionStatus::Completed,
        dry_run: false,
        include: vec![],
        changes: PromotionCounts::default(),
        details: vec![],
        promoted_by: "usr_x".into(),
        promoted_at: chrono::Utc::now(),
    };
    let settings = EnvSettings {
        query_timeout_ms: 1234,
        ..EnvSettings::default()
    };
    // Planned against an older version of the target: refused, nothing written.
    let stale = store
        .apply_promotion(
            PromotionApply {
                org_id: org.clone(),
                target_env_id: prod.id.clone(),
                expected_target_version: prod.version - 1,
                settings: Some(settings.clone()),
                policies: Vec::new(),
                capabilities: Vec::new(),
                secrets: Vec::new(),
                record: record(&new_id(Kind::Promotion)),
            },
            &Origin::system(),
        )
        .await
        .unwrap_err();
    assert_eq!(stale.code, ErrorCode::PreconditionFailed);
    let page0 = enclave_core::pagination::PageRequest {
        limit: 10,
        after: None,
    };
    assert_eq!(store.promotions(&prod.id, &page0).await.unwrap().1, 0);
    assert_eq!(
        store
            .environment(&prod.id)
            .await
            .unwrap()
            .unwrap()
            .settings
            .0,
        EnvSettings::default()
    );

    let id = new_id(Kind::Promotion);
    store
        .apply_promotion(
            PromotionApply {
                org_id: org.clone(),
                target_env_id: prod.id.clone(),
                expected_target_version: prod.version,
                settings: Some(settings.clone()),
                policies: Vec::new(),
                capabilities: Vec::new(),
                secrets: Vec::new(),
                record: record(&id),
            },
            &Origin::system(),
        )
        .await
        .unwrap();
    let after = store.environment(&prod.id).await.unwrap().unwrap();
    assert_eq!(after.settings.0, settings);
    assert_eq!(after.version, prod.version + 1);
    let (listed, total) = store.promotions(&stg.id, &page0).await.unwrap();
    assert_eq!((listed[0].promotion_id.as_str(), total), (id.as_str(), 1));
}

async fn organization_delete_takes_the_tree(store: Arc<Store>) {
    let org = org_with(&store, &["root"]).await;
    let (_, page) = positions(&store, &org).await;
    let mut parent = page.rows[0].id.clone();
    let mut ids = vec![parent.clone()];
    for i in 0..5 {
        let mut e = env(&org, &format!("level-{i}"));
        e.parent_env_id = Some(parent.clone());
        parent = store
            .create_environment(e, None, &Origin::system())
            .await
            .unwrap()
            .id;
        ids.push(parent.clone());
    }
    store
        .delete_org(&org, None, &Origin::system())
        .await
        .unwrap();
    for id in ids {
        assert!(store.environment(&id).await.unwrap().is_none());
    }
}

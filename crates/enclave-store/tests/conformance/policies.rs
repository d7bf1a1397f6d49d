//! Policies in the store, on SQLite and PostgreSQL alike: names unique per environment by the
//! database, versions kept, concurrent saves never lost, promotion writes applied only to the
//! versions they were planned from, and everything removed with the environment.

use std::sync::Arc;

use enclave_core::id::{new_id, Kind, OrgId};
use enclave_core::pagination::PageRequest;
use enclave_core::policy::{MaskFunction, MaskingRule, PolicyBody, PolicyMode, PolicySpec};
use enclave_core::ErrorCode;
use enclave_store::*;

use super::environments::org_with;

conformance!(
    names_versions_and_cascade,
    concurrent_saves_take_turns,
    promotion_writes_check_versions,
);

fn spec(name: &str, function: MaskFunction) -> PolicySpec {
    PolicySpec {
        name: name.into(),
        description: String::new(),
        enabled: true,
        mode: PolicyMode::Enforce,
        body: PolicyBody::ColumnMasking {
            rules: vec![MaskingRule {
                table: "customers".into(),
                column: "email".into(),
                function,
                visible_chars: None,
                exempt_roles: vec![],
            }],
        },
    }
}

async fn env_of(store: &Arc<Store>, org: &OrgId, slug: &str) -> EnvRecord {
    store.environment_by_slug(org, slug).await.unwrap().unwrap()
}

fn new_policy(env: &EnvRecord, spec: PolicySpec) -> NewPolicy {
    NewPolicy {
        id: new_id(Kind::Policy),
        org_id: env.org_id.clone(),
        env_id: env.id.clone(),
        spec,
        created_by: "usr_test".into(),
    }
}

async fn names_versions_and_cascade(store: Arc<Store>) {
    let org = org_with(&store, &["dev", "prod"]).await;
    let (dev, prod) = (
        env_of(&store, &org, "dev").await,
        env_of(&store, &org, "prod").await,
    );
    let o = Origin::system();
    let p = store
        .create_policy(new_policy(&dev, spec("pii", MaskFunction::Full)), &o)
        .await
        .unwrap();
    let taken = store
        .create_policy(new_policy(&dev, spec("pii", MaskFunction::Null)), &o)
        .await
        .unwrap_err();
    assert_eq!(
        (taken.code, taken.details["rule"].as_str()),
        (ErrorCode::Conflict, Some("name_taken"))
    );
    store
        .create_policy(new_policy(&prod, spec("pii", MaskFunction::Null)), &o)
        .await
        .unwrap();

    let v2 = store
        .update_policy(&dev.id, &p.id, Some(1), spec("pii", MaskFunction::Hash), &o)
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    let same = store
        .update_policy(&dev.id, &p.id, None, spec("pii", MaskFunction::Hash), &o)
        .await
        .unwrap();
    assert_eq!(same.version, 2, "unchanged content is not a new version");
    let stale = store
        .update_policy(&dev.id, &p.id, Some(1), spec("pii", MaskFunction::Null), &o)
        .await
        .unwrap_err();
    assert_eq!(stale.code, ErrorCode::PreconditionFailed);
    let page = PageRequest {
        limit: 10,
        after: None,
    };
    let (versions, total) = store.policy_versions(&p.id, &page).await.unwrap();
    assert_eq!(total, 2);
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        [2, 1]
    );
    assert_eq!(versions[1].spec.0, spec("pii", MaskFunction::Full));
    assert_eq!(
        store.policy(&prod.id, &p.id).await.unwrap().map(|r| r.id),
        None,
        "scoped to its environment"
    );
    assert_eq!(
        store.environment_contents(&dev.id).await.unwrap().policies,
        1
    );

    // Deleting the environment removes its policies and their versions.
    store
        .decommission_environment(&dev.id, None, &o)
        .await
        .unwrap();
    store.purge_environment(&dev.id).await.unwrap();
    assert!(store.env_policies(&dev.id).await.unwrap().is_empty());
    assert_eq!(store.policy_versions(&p.id, &page).await.unwrap().1, 0);
    assert_eq!(store.env_policies(&prod.id).await.unwrap().len(), 1);
}

async fn concurrent_saves_take_turns(store: Arc<Store>) {
    let org = org_with(&store, &["dev"]).await;
    let dev = env_of(&store, &org, "dev").await;
    let p = store
        .create_policy(
            new_policy(&dev, spec("p", MaskFunction::Full)),
            &Origin::system(),
        )
        .await
        .unwrap();
    // Eight writers save different content without If-Match: every save lands as its own
    // version, none is lost or numbered twice.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let (env_id, id) = (dev.id.clone(), p.id.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = spec("p", MaskFunction::Full);
            s.description = format!("writer {i}");
            store
                .update_policy(&env_id, &id, None, s, &Origin::system())
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let (versions, total) = store
        .policy_versions(
            &p.id,
            &PageRequest {
                limit: 100,
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(total, 9);
    let numbers: Vec<i64> = versions.iter().map(|v| v.version).collect();
    assert_eq!(numbers, (1..=9).rev().collect::<Vec<i64>>());
    assert_eq!(
        store.policy(&dev.id, &p.id).await.unwrap().unwrap().version,
        9
    );
}

async fn promotion_writes_check_versions(store: Arc<Store>) {
    let org = org_with(&store, &["dev", "prod"]).await;
    let (dev, prod) = (
        env_of(&store, &org, "dev").await,
        env_of(&store, &org, "prod").await,
    );
    let o = Origin::system();
    let target = store
        .create_policy(new_policy(&prod, spec("pii", MaskFunction::Full)), &o)
        .await
        .unwrap();
    let record = |id: &str| enclave_core::promotion::Promotion {
        promotion_id: id.into(),
        source_env: dev.id.clone(),
        target_env: prod.id.clone(),
        status: enclave_core::promotion::PromotionStatus::Completed,
        dry_run: false,
        include: vec![],
        changes: Default::default(),
        details: vec![],
        promoted_by: "usr_test".into(),
        promoted_at: chrono::Utc::now(),
    };
    let apply = |expected_version: i64, extra: Option<PolicySpec>| PromotionApply {
        org_id: org.clone(),
        target_env_id: prod.id.clone(),
        expected_target_version: prod.version,
        settings: None,
        policies: [Some(PolicyWrite::Update {
            policy_id: target.id.clone(),
            expected_version,
            spec: spec("pii", MaskFunction::Null),
        })]
        .into_iter()
        .chain([extra.map(|s| PolicyWrite::Create(new_policy(&prod, s)))])
        .flatten()
        .collect(),
        secrets: Vec::new(),
        capabilities: Vec::new(),
        record: record(&new_id(Kind::Promotion)),
    };
    // Planned from version 0 (stale): refused, and the create beside it is not applied.
    let stale = store
        .apply_promotion(apply(0, Some(spec("new", MaskFunction::Hash))), &o)
        .await
        .unwrap_err();
    assert_eq!(stale.code, ErrorCode::PreconditionFailed);
    assert_eq!(
        store.env_policies(&prod.id).await.unwrap().len(),
        1,
        "all or nothing"
    );
    assert_eq!(
        store
            .promotions(
                &prod.id,
                &PageRequest {
                    limit: 10,
                    after: None
                }
            )
            .await
            .unwrap()
            .1,
        0
    );
    // A name that appeared in the target meanwhile: refused the same way.
    store
        .create_policy(new_policy(&prod, spec("late", MaskFunction::Full)), &o)
        .await
        .unwrap();
    let raced = store
        .apply_promotion(apply(1, Some(spec("late", MaskFunction::Hash))), &o)
        .await
        .unwrap_err();
    assert_eq!(raced.code, ErrorCode::PreconditionFailed);
    store
        .apply_promotion(apply(1, Some(spec("new", MaskFunction::Hash))), &o)
        .await
        .unwrap();
    let after = store.env_policies(&prod.id).await.unwrap();
    let names: Vec<(&str, i64)> = after.iter().map(|p| (p.name.as_str(), p.version)).collect();
    assert_eq!(names, [("late", 1), ("new", 1), ("pii", 2)]);
}

//! API keys in the store, on SQLite and PostgreSQL alike (the suite's `conformance!`).

use enclave_core::clock::now_ms;
use std::sync::Arc;

use enclave_core::api_key::{KeyStatus, Scope};
use enclave_core::id::{EnvId, KeyId};
use enclave_core::{ErrorCode, Role};
use enclave_store::*;

use super::environments::org_with;

conformance!(
    quota_holds_under_concurrent_creates,
    expiry_and_notices_over_time,
    rotation_and_revocation_rules,
);

fn key(env_id: &EnvId, expires_at: Option<i64>) -> NewApiKey {
    NewApiKey {
        id: KeyId::generate(),
        env_id: env_id.into(),
        name: "k".into(),
        prefix: "ek_test_0123".into(),
        secret_hash: "$argon2id$not-a-real-hash".into(),
        role: Role::ServiceAccount,
        attributes: Default::default(),
        scopes: vec![Scope::QueryRead],
        ip_allowlist: vec![],
        expires_at,
        created_by: "usr_x".into(),
    }
}

async fn first_env(store: &Arc<Store>) -> EnvId {
    let org = org_with(store, &["dev"]).await;
    let page = store
        .environments(
            &org,
            &EnvFilter::default(),
            &EnvPageQuery {
                limit: 1,
                after: None,
            },
        )
        .await
        .unwrap();
    page.rows[0].id.clone()
}

async fn quota_holds_under_concurrent_creates(store: Arc<Store>) {
    let env = first_env(&store).await;
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (store, env) = (store.clone(), env.clone());
            tokio::spawn(async move {
                store
                    .create_api_key(key(&env, None), 4, &Origin::system())
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code, ErrorCode::QuotaExceeded),
        }
    }
    assert_eq!(ok, 4);
    let e = store
        .create_api_key(
            key(&"env_01m7y1mvvm720aw1bq259a443y".into(), None),
            4,
            &Origin::system(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
}

async fn expiry_and_notices_over_time(store: Arc<Store>) {
    let env = first_env(&store).await;
    let now = now_ms();
    let soon = store
        .create_api_key(key(&env, Some(now + 3_600_000)), 50, &Origin::system())
        .await
        .unwrap();
    let later = store
        .create_api_key(
            key(&env, Some(now + 30 * 86_400_000)),
            50,
            &Origin::system(),
        )
        .await
        .unwrap();
    let never = store
        .create_api_key(key(&env, None), 50, &Origin::system())
        .await
        .unwrap();

    // `key.expiring` is noticed once per key, within the horizon only.
    let noticed = store
        .notice_expiring_api_keys(now + 7 * 86_400_000)
        .await
        .unwrap();
    assert_eq!(
        noticed.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
        [soon.id.as_str()]
    );
    assert!(store
        .notice_expiring_api_keys(now + 7 * 86_400_000)
        .await
        .unwrap()
        .is_empty());

    // Expiry is written when due, and publishes the keys' invalidations.
    let mut events = store.bus().subscribe();
    assert!(store.expire_api_keys(now).await.unwrap().is_empty());
    let expired = store.expire_api_keys(now + 3_600_000).await.unwrap();
    assert_eq!(expired, vec![soon.id.clone()]);
    assert_eq!(
        events.recv().await.unwrap(),
        Invalidation::ApiKey {
            key_id: soon.id.clone()
        }
    );
    let rec = store.api_key(&env, &soon.id).await.unwrap().unwrap();
    assert_eq!(rec.status.as_str(), "expired");
    assert_eq!(later.status_at(now), KeyStatus::Active);
    assert_eq!(later.status_at(now + 31 * 86_400_000), KeyStatus::Expired);
    assert_eq!(never.status_at(i64::MAX), KeyStatus::Active);

    // last_used_at only moves forward.
    store.touch_api_key(&never.id, now).await.unwrap();
    store.touch_api_key(&never.id, now - 10).await.unwrap();
    let rec = store.api_key(&env, &never.id).await.unwrap().unwrap();
    assert_eq!(rec.last_used_at, Some(now));
}

async fn rotation_and_revocation_rules(store: Arc<Store>) {
    let env = first_env(&store).await;
    let old = store
        .create_api_key(key(&env, None), 50, &Origin::system())
        .await
        .unwrap();
    let now = now_ms();
    let (o, n) = store
        .rotate_api_key(
            &env,
            &old.id,
            key(&env, None),
            now + 60_000,
            &Origin::system(),
        )
        .await
        .unwrap();
    assert_eq!(
        (o.status.as_str(), o.rotated_to.as_deref()),
        ("rotating", Some(n.id.as_str()))
    );
    assert_eq!(n.status.as_str(), "active");
    // Only an active key rotates; a rotating one expires when its grace ends.
    let e = store
        .rotate_api_key(&env, &old.id, key(&env, None), now, &Origin::system())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict);
    assert_eq!(
        store.expire_api_keys(now + 60_000).await.unwrap(),
        vec![old.id.clone()]
    );
    // Revoking: once; not through another environment.
    let other = first_env(&store).await;
    let e = store
        .revoke_api_key(&other, &n.id, &Origin::system())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    store
        .revoke_api_key(&env, &n.id, &Origin::system())
        .await
        .unwrap();
    let e = store
        .revoke_api_key(&env, &n.id, &Origin::system())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict);
    let (rows, total) = store
        .api_keys(
            &env,
            &enclave_core::pagination::PageRequest {
                limit: 10,
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(total, 2);
    assert_eq!(rows[0].id, n.id, "newest first");
    // Deleting the environment takes its keys.
    let rec = store
        .decommission_environment(&env, None, &Origin::system())
        .await
        .unwrap();
    store.purge_environment(&rec.id).await.unwrap();
    assert!(store.api_key(&env, &n.id).await.unwrap().is_none());
}

//! One conformance suite, run against SQLite and PostgreSQL alike.

use enclave_core::clock::now_ms;
use std::collections::BTreeMap;
use std::sync::Arc;

use enclave_core::id::{new_id, Kind, OrgId, UserId};
use enclave_core::model::{MemberStatus, Tier};
use enclave_core::pagination::PageRequest;
use enclave_core::{ErrorCode, Role};

use enclave_store::*;

/// Runs `$body(store)` once per backend as `$name::sqlite` and `$name::postgres`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = enclave_store::testing::TempSqlite::create();
                let store = enclave_store::connect(&db.url).await.unwrap();
                super::$name(store).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = enclave_store::testing::TempPostgres::create().await else { return };
                let store = enclave_store::connect(&db.url).await.unwrap();
                super::$name(store).await;
            }
        }
    )*};
}

#[path = "conformance/agents.rs"]
mod agents;
#[path = "conformance/api_keys.rs"]
mod api_keys;
#[path = "conformance/billing.rs"]
mod billing;
#[path = "conformance/environments.rs"]
mod environments;
#[path = "conformance/jit.rs"]
mod jit;
#[path = "conformance/nodes.rs"]
mod nodes;
#[path = "conformance/policies.rs"]
mod policies;
#[path = "conformance/query_audit.rs"]
mod query_audit;
#[path = "conformance/secrets.rs"]
mod secrets;
#[path = "conformance/webhooks.rs"]
mod webhooks;

conformance!(
    orgs_and_slugs,
    memberships_and_owner_rule,
    refresh_rotation_and_reuse,
    idempotency_states,
    concurrent_writes_never_fail,
    invalidations_are_published,
    bootstrap_only_once,
);

fn new_user(email: &str) -> NewUser {
    NewUser {
        id: UserId::generate(),
        email: email.into(),
        name: "Ada".into(),
        password_hash: Some("h".into()),
    }
}

fn new_org(slug: &str) -> NewOrg {
    NewOrg {
        id: OrgId::generate(),
        name: slug.to_uppercase(),
        slug: slug.into(),
        billing_email: "billing@example.com".into(),
        cloud_region: None,
        tier: Tier::Free,
        settings: serde_json::json!({}),
    }
}

/// A user and an organization they own.
async fn owner_with_org(store: &Arc<Store>, email: &str, slug: &str) -> (UserRecord, OrgRecord) {
    let user = store.create_user(new_user(email)).await.unwrap();
    let org = store
        .create_org(new_org(slug), &user.id, "Owner", vec![], &Origin::system())
        .await
        .unwrap();
    (user, org)
}

fn page(limit: u32, after: Option<String>) -> PageRequest {
    PageRequest { limit, after }
}

async fn orgs_and_slugs(store: Arc<Store>) {
    let u = store
        .create_user(new_user("ada@example.com"))
        .await
        .unwrap();
    let dup = store
        .create_user(new_user("ada@example.com"))
        .await
        .unwrap_err();
    assert_eq!(dup.code, ErrorCode::Conflict);

    let a = store
        .create_org(new_org("acme"), &u.id, "Ada", vec![], &Origin::system())
        .await
        .unwrap();
    assert_eq!(a.version, 1);
    let err = store
        .create_org(new_org("acme"), &u.id, "Ada", vec![], &Origin::system())
        .await
        .unwrap_err();
    assert_eq!(
        (err.code, err.details["rule"].as_str()),
        (ErrorCode::Conflict, Some("slug_taken"))
    );
    for i in 0..4 {
        store
            .create_org(
                new_org(&format!("org-{i}")),
                &u.id,
                "Ada",
                vec![],
                &Origin::system(),
            )
            .await
            .unwrap();
    }
    let (first, total) = store.orgs_of_user(&u.id, &page(3, None)).await.unwrap();
    assert_eq!((first.len(), total), (4, 5), "limit + 1 rows come back");
    let (rest, _) = store
        .orgs_of_user(&u.id, &page(3, Some(first[2].id.to_string())))
        .await
        .unwrap();
    assert_eq!(rest.len(), 2);
    assert!(rest.iter().all(|o| o.id > first[2].id));

    let patch = OrgPatch {
        name: Some("Acme Inc".into()),
        settings: Some(serde_json::json!({"k": 1})),
        ..Default::default()
    };
    let updated = store
        .update_org(&a.id, Some(1), patch.clone(), &Origin::system())
        .await
        .unwrap();
    assert_eq!(
        (
            updated.name.as_str(),
            updated.version,
            updated.settings.0["k"].as_i64()
        ),
        ("Acme Inc", 2, Some(1))
    );
    let stale = store
        .update_org(&a.id, Some(1), patch.clone(), &Origin::system())
        .await
        .unwrap_err();
    assert_eq!(stale.code, ErrorCode::PreconditionFailed);
    let missing = store
        .update_org(&"org_missing".into(), None, patch, &Origin::system())
        .await
        .unwrap_err();
    assert_eq!(missing.code, ErrorCode::NotFound);

    assert_eq!(
        store
            .delete_org(&a.id, Some(1), &Origin::system())
            .await
            .unwrap_err()
            .code,
        ErrorCode::PreconditionFailed
    );
    store
        .delete_org(&a.id, Some(2), &Origin::system())
        .await
        .unwrap();
    assert!(store.org(&a.id).await.unwrap().is_none());
    assert!(
        store.member(&a.id, &u.id).await.unwrap().is_none(),
        "memberships go with the org"
    );
}

async fn memberships_and_owner_rule(store: Arc<Store>) {
    let (owner, org) = owner_with_org(&store, "owner@example.com", "acme").await;
    let invite = |email: &str, role| NewInvite {
        org_id: org.id.clone(),
        new_user_id: UserId::generate(),
        email: email.into(),
        name: None,
        role,
        token: format!("tok-{email}"),
        expires_at: now_ms() + 1000,
    };
    let m = store
        .invite(
            invite("dev@example.com", Role::Developer),
            Some(2),
            &Origin::system(),
        )
        .await
        .unwrap();
    // The owner and one invitation: a quota of two members is used up.
    let over = store
        .invite(
            invite("third@example.com", Role::Analyst),
            Some(2),
            &Origin::system(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (over.code.http_status(), over.details["quota"].as_str()),
        (429, Some("max_users"))
    );
    assert_eq!(
        (m.status, m.role, m.name.as_str()),
        (MemberStatus::Invited, Role::Developer, "dev")
    );
    let again = store
        .invite(
            invite("dev@example.com", Role::Analyst),
            None,
            &Origin::system(),
        )
        .await
        .unwrap_err();
    assert_eq!(again.details["rule"], "already_member");

    let (found, user) = store
        .member_by_invite("tok-dev@example.com")
        .await
        .unwrap()
        .unwrap();
    assert!(user.password_hash.is_none());
    let active = store
        .accept_invite(
            &org.id,
            &found.user_id,
            Some("hash".into()),
            Some("Dev".into()),
            &Origin::system(),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            active.status,
            active.name.as_str(),
            active.invite_token.as_deref()
        ),
        (MemberStatus::Active, "Dev", None)
    );
    assert_eq!(
        store
            .accept_invite(&org.id, &found.user_id, None, None, &Origin::system())
            .await
            .unwrap_err()
            .code,
        ErrorCode::Conflict
    );
    assert!(store
        .member_by_invite("tok-dev@example.com")
        .await
        .unwrap()
        .is_none());

    let mut attrs = BTreeMap::new();
    attrs.insert("department".to_string(), "sales".to_string());
    let patch = MemberPatch {
        attributes: Some(attrs),
        status: Some(MemberStatus::Suspended),
        ..Default::default()
    };
    let changed = store
        .update_member(
            &org.id,
            &active.user_id,
            active.version,
            patch.clone(),
            &Origin::system(),
        )
        .await
        .unwrap();
    assert_eq!(changed.attributes.0["department"], "sales");
    assert_eq!(
        store
            .update_member(
                &org.id,
                &active.user_id,
                active.version,
                patch,
                &Origin::system()
            )
            .await
            .unwrap_err()
            .code,
        ErrorCode::PreconditionFailed
    );
    let auth = store
        .auth_membership(&active.user_id, &org.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (auth.role, auth.status, auth.tier),
        (Role::Developer, MemberStatus::Suspended, Tier::Free)
    );

    // The database itself refuses a second owner.
    let second_owner = MemberPatch {
        role: Some(Role::Owner),
        ..Default::default()
    };
    let err = store
        .update_member(
            &org.id,
            &changed.user_id,
            changed.version,
            second_owner,
            &Origin::system(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.details["rule"], "single_owner");

    // Transfer: only to an active member; atomically swaps the roles.
    let err = store
        .transfer_ownership(&org.id, &owner.id, &changed.user_id, &Origin::system())
        .await
        .unwrap_err();
    assert_eq!(err.details["rule"], "member_not_active");
    assert_eq!(
        store
            .member(&org.id, &owner.id)
            .await
            .unwrap()
            .unwrap()
            .role,
        Role::Owner,
        "rolled back"
    );
    let reactivated = store
        .update_member(
            &org.id,
            &changed.user_id,
            changed.version,
            MemberPatch {
                status: Some(MemberStatus::Active),
                ..Default::default()
            },
            &Origin::system(),
        )
        .await
        .unwrap();
    store
        .transfer_ownership(&org.id, &owner.id, &reactivated.user_id, &Origin::system())
        .await
        .unwrap();
    assert_eq!(
        store
            .member(&org.id, &owner.id)
            .await
            .unwrap()
            .unwrap()
            .role,
        Role::Admin
    );
    assert_eq!(
        store
            .member(&org.id, &reactivated.user_id)
            .await
            .unwrap()
            .unwrap()
            .role,
        Role::Owner
    );

    let filter = MemberFilter {
        role: Some(Role::Admin),
        status: None,
    };
    let (admins, total) = store
        .members(&org.id, &filter, &page(50, None))
        .await
        .unwrap();
    assert_eq!((admins.len(), total), (1, 1));
    let old_owner = &admins[0];
    store
        .remove_member(
            &org.id,
            &old_owner.user_id,
            old_owner.version,
            &Origin::system(),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .members(&org.id, &MemberFilter::default(), &page(50, None))
            .await
            .unwrap()
            .1,
        1
    );
}

async fn refresh_rotation_and_reuse(store: Arc<Store>) {
    let u = store
        .create_user(new_user("ada@example.com"))
        .await
        .unwrap();
    let sid = new_id(Kind::Session);
    let now = now_ms();
    store
        .create_session(
            NewSession {
                id: sid.clone(),
                user_id: u.id.clone(),
                org_id: None,
                expires_at: now + 60_000,
                refresh_hash: "r1".into(),
                refresh_expires_at: now + 120_000,
                mfa: false,
            },
            None,
        )
        .await
        .unwrap();
    let rotate = |old: &str, new: &str| RefreshRotation {
        old_hash: old.into(),
        new_hash: new.into(),
        new_expires_at: now + 120_000,
        org_id: None,
        now: now_ms(),
    };
    match store
        .rotate_refresh(rotate("r1", "r2"), &Origin::system())
        .await
        .unwrap()
    {
        RotateOutcome::Rotated {
            session,
            refresh_expires_at,
        } => {
            assert_eq!(session.id, sid);
            assert_eq!(
                refresh_expires_at,
                now + 60_000,
                "never outlives the session"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store
            .rotate_refresh(rotate("nope", "x"), &Origin::system())
            .await
            .unwrap(),
        RotateOutcome::Invalid
    ));
    assert!(matches!(
        store
            .rotate_refresh(rotate("r1", "r3"), &Origin::system())
            .await
            .unwrap(),
        RotateOutcome::Reused
    ));
    assert!(
        store
            .session(&sid)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some(),
        "reuse revokes the family"
    );
    assert!(matches!(
        store
            .rotate_refresh(rotate("r2", "r4"), &Origin::system())
            .await
            .unwrap(),
        RotateOutcome::Invalid
    ));
}

async fn idempotency_states(store: Arc<Store>) {
    let begin = |body: &str, now: i64| IdempotencyBegin {
        principal: "usr_1".into(),
        key: "k1".into(),
        route: "POST /v1/organizations".into(),
        body_hash: body.into(),
        now,
        expired_before: now - 86_400_000,
    };
    let now = now_ms();
    assert!(matches!(
        store.idempotency_begin(begin("b", now)).await.unwrap(),
        IdempotencyState::Started
    ));
    assert!(matches!(
        store.idempotency_begin(begin("b", now)).await.unwrap(),
        IdempotencyState::InProgress
    ));
    assert!(matches!(
        store.idempotency_begin(begin("other", now)).await.unwrap(),
        IdempotencyState::Mismatch
    ));
    let resp = StoredResponse {
        status: 201,
        headers: vec![("etag".into(), "\"1\"".into())],
        body: b"{}".to_vec(),
    };
    store
        .idempotency_complete("usr_1", "k1", resp)
        .await
        .unwrap();
    match store.idempotency_begin(begin("b", now)).await.unwrap() {
        IdempotencyState::Completed(r) => assert_eq!(
            (r.status, r.body.as_slice(), r.headers.len()),
            (201, &b"{}"[..], 1)
        ),
        other => panic!("{other:?}"),
    }
    // A day later the key is free again.
    assert!(matches!(
        store
            .idempotency_begin(begin("new", now + 86_400_001))
            .await
            .unwrap(),
        IdempotencyState::Started
    ));
    store.idempotency_abandon("usr_1", "k1").await.unwrap();
    assert!(matches!(
        store.idempotency_begin(begin("b", now)).await.unwrap(),
        IdempotencyState::Started
    ));
    assert_eq!(store.idempotency_purge(now + 1).await.unwrap(), 1);
}

async fn concurrent_writes_never_fail(store: Arc<Store>) {
    let owner = store
        .create_user(new_user("owner@example.com"))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let store = store.clone();
            let owner = owner.id.clone();
            tokio::spawn(async move {
                let org = store
                    .create_org(
                        new_org(&format!("org-{i}")),
                        &owner,
                        "O",
                        vec![],
                        &Origin::system(),
                    )
                    .await?;
                store
                    .update_org(
                        &org.id,
                        None,
                        OrgPatch {
                            name: Some(format!("n{i}")),
                            ..Default::default()
                        },
                        &Origin::system(),
                    )
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().expect("no write fails under concurrency");
    }
    assert_eq!(
        store
            .orgs_of_user(&owner.id, &page(200, None))
            .await
            .unwrap()
            .1,
        40
    );
}

/// Waits up to 5 s for `expected`, skipping other events (PostgreSQL's listener announces
/// `All` when it connects).
async fn expect_event(
    rx: &mut tokio::sync::broadcast::Receiver<Invalidation>,
    expected: Invalidation,
) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let got = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("invalidation")
            .unwrap();
        if got == expected {
            return;
        }
    }
}

async fn invalidations_are_published(store: Arc<Store>) {
    let mut rx = store.bus().subscribe();
    let (_, org) = owner_with_org(&store, "ada@example.com", "acme").await;
    let event = Invalidation::Org {
        org_id: org.id.clone(),
    };
    let patch = OrgPatch {
        name: Some("renamed".into()),
        ..Default::default()
    };
    store
        .update_org(&org.id, None, patch, &Origin::system())
        .await
        .unwrap();
    expect_event(&mut rx, event.clone()).await;
    store
        .delete_org(&org.id, None, &Origin::system())
        .await
        .unwrap();
    expect_event(&mut rx, event).await;
}

async fn bootstrap_only_once(store: Arc<Store>) {
    let first = store
        .bootstrap(new_user("root@example.com"), new_org("default"), vec![])
        .await
        .unwrap();
    assert!(first.is_some());
    assert!(store
        .bootstrap(new_user("other@example.com"), new_org("other"), vec![])
        .await
        .unwrap()
        .is_none());
    assert_eq!(store.count_users().await.unwrap(), 1);
}

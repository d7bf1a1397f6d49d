//! Just-in-time access requests in the store, on SQLite and PostgreSQL alike (the suite's
//! `conformance!`): every transition, the deadlines counted at the reader's clock, the
//! housekeeping that writes them, and what each change audits and invalidates.

use std::sync::Arc;

use enclave_core::audit::Actor;
use enclave_core::clock::now_ms;
use enclave_core::id::{EnvId, JitId, UserId};
use enclave_core::jit::{JitStatus, PENDING_TTL_MS};
use enclave_core::pagination::PageRequest;
use enclave_core::{ErrorCode, Role};
use enclave_store::*;

use super::environments::org_with;

conformance!(
    a_request_is_decided_once_and_revoked_while_live,
    deadlines_are_counted_before_housekeeping_writes_them,
    changes_are_audited_and_invalidate_the_grant,
);

const MINUTE: i64 = 60_000;

async fn env_of_new_org(store: &Arc<Store>) -> EnvId {
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

fn request(env_id: &EnvId, requester: &UserId, minutes: i64) -> NewJitRequest {
    NewJitRequest {
        env_id: env_id.clone(),
        requester_id: requester.clone(),
        current_role: Role::Analyst,
        requested_role: Role::Developer,
        reason: "fix the orders of 3 December".into(),
        duration_minutes: minutes,
    }
}

fn by(user: &UserId) -> Origin {
    Origin::new(Actor::user(user))
}

fn page() -> PageRequest {
    PageRequest::parse(Some(50), None).unwrap()
}

fn rule(e: &enclave_core::Error) -> &str {
    e.details["rule"].as_str().unwrap_or_default()
}

async fn a_request_is_decided_once_and_revoked_while_live(store: Arc<Store>) {
    let env = env_of_new_org(&store).await;
    let (analyst, admin) = (UserId::generate(), UserId::generate());
    let now = now_ms();
    let rec = store
        .create_jit_request(request(&env, &analyst, 60), now, &by(&analyst))
        .await
        .unwrap();
    assert_eq!(rec.status, JitStatus::Pending);
    assert_eq!(rec.expires_at, None);
    // One open request per member and environment.
    let e = store
        .create_jit_request(request(&env, &analyst, 30), now, &by(&analyst))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, rule(&e)),
        (ErrorCode::Conflict, "jit_already_open")
    );

    let approved = store
        .decide_jit_request(
            &env,
            &rec.id,
            true,
            Some("ok for today"),
            now + MINUTE,
            &by(&admin),
        )
        .await
        .unwrap();
    assert_eq!(approved.status, JitStatus::Approved);
    assert_eq!(approved.decided_by.as_deref(), Some(admin.as_str()));
    assert_eq!(approved.decision_comment.as_deref(), Some("ok for today"));
    // The clock starts at approval, not at the request.
    assert_eq!(approved.expires_at, Some(now + MINUTE + 60 * MINUTE));
    let grant = store
        .approved_jit_grant(&analyst, &env)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(grant.id, rec.id);

    // Decided once: a second approval or a denial is a conflict naming the status.
    for approve in [true, false] {
        let e = store
            .decide_jit_request(&env, &rec.id, approve, None, now + 2 * MINUTE, &by(&admin))
            .await
            .unwrap_err();
        assert_eq!((e.code, rule(&e)), (ErrorCode::Conflict, "jit_not_pending"));
        assert!(e.message.contains("approved"), "{}", e.message);
    }
    // A live grant is an open request too.
    let e = store
        .create_jit_request(request(&env, &analyst, 30), now + 2 * MINUTE, &by(&analyst))
        .await
        .unwrap_err();
    assert_eq!(rule(&e), "jit_already_open");

    let revoked = store
        .revoke_jit_grant(&env, &rec.id, now + 3 * MINUTE, &by(&analyst))
        .await
        .unwrap();
    assert_eq!(revoked.status, JitStatus::Revoked);
    assert_eq!(revoked.ended_by.as_deref(), Some(analyst.as_str()));
    assert!(store
        .approved_jit_grant(&analyst, &env)
        .await
        .unwrap()
        .is_none());
    let e = store
        .revoke_jit_grant(&env, &rec.id, now + 4 * MINUTE, &by(&admin))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, rule(&e)),
        (ErrorCode::Conflict, "jit_not_approved")
    );

    // A denied request is not a grant; the member may ask again afterwards.
    let second = store
        .create_jit_request(request(&env, &analyst, 15), now + 5 * MINUTE, &by(&analyst))
        .await
        .unwrap();
    let denied = store
        .decide_jit_request(&env, &second.id, false, None, now + 6 * MINUTE, &by(&admin))
        .await
        .unwrap();
    assert_eq!(
        (denied.status, denied.expires_at),
        (JitStatus::Denied, None)
    );
    let e = store
        .revoke_jit_grant(&env, &second.id, now + 7 * MINUTE, &by(&admin))
        .await
        .unwrap_err();
    assert_eq!(rule(&e), "jit_not_approved");

    // Unknown requests, and requests of another environment, are not found.
    let other = env_of_new_org(&store).await;
    for (env_id, id) in [(&env, JitId::generate()), (&other, rec.id.clone())] {
        let e = store
            .decide_jit_request(env_id, &id, true, None, now, &by(&admin))
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        assert!(store.jit_request(env_id, &id).await.unwrap().is_none());
    }

    // Lists: newest first, by status and requester, paginated by the id.
    let all = JitFilter::default();
    let (rows, total) = store
        .jit_requests(&env, &all, now + 8 * MINUTE, &page())
        .await
        .unwrap();
    assert_eq!(total, 2);
    assert_eq!(rows[0].id, second.id);
    let denied_only = JitFilter {
        status: Some(JitStatus::Denied),
        requester_id: Some(analyst.clone()),
    };
    let (rows, total) = store
        .jit_requests(&env, &denied_only, now + 8 * MINUTE, &page())
        .await
        .unwrap();
    assert_eq!((rows.len(), total), (1, 1));
    let someone_else = JitFilter {
        requester_id: Some(admin.clone()),
        ..Default::default()
    };
    let (rows, total) = store
        .jit_requests(&env, &someone_else, now, &page())
        .await
        .unwrap();
    assert_eq!((rows.len(), total), (0, 0));
    let first_page = PageRequest::parse(Some(1), None).unwrap();
    let (rows, _) = store
        .jit_requests(&env, &all, now, &first_page)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "one row and the one telling that more exist");
    let next = PageRequest {
        after: Some(rows[0].id.to_string()),
        ..first_page
    };
    let (rows, _) = store.jit_requests(&env, &all, now, &next).await.unwrap();
    assert_eq!(rows[0].id, rec.id);

    // Deleting the environment takes its requests with it.
    assert!(store.jit_request(&env, &rec.id).await.unwrap().is_some());
}

async fn deadlines_are_counted_before_housekeeping_writes_them(store: Arc<Store>) {
    let env = env_of_new_org(&store).await;
    let (early, late, admin) = (UserId::generate(), UserId::generate(), UserId::generate());
    let now = now_ms();
    let unanswered = store
        .create_jit_request(request(&env, &early, 60), now, &by(&early))
        .await
        .unwrap();
    let granted = store
        .create_jit_request(request(&env, &late, 15), now, &by(&late))
        .await
        .unwrap();
    store
        .decide_jit_request(&env, &granted.id, true, None, now, &by(&admin))
        .await
        .unwrap();
    let status = |f: JitStatus| JitFilter {
        status: Some(f),
        requester_id: None,
    };
    let count = |filter: JitFilter, at: i64| {
        let store = store.clone();
        let env = env.clone();
        async move {
            store
                .jit_requests(&env, &filter, at, &page())
                .await
                .unwrap()
                .1
        }
    };
    // Just before the grant's end, both stand; at it, the grant has expired.
    let end = now + 15 * MINUTE;
    assert_eq!(count(status(JitStatus::Approved), end - 1).await, 1);
    assert_eq!(count(status(JitStatus::Approved), end).await, 0);
    assert_eq!(count(status(JitStatus::Expired), end).await, 1);
    // An approval of a request unanswered for 24 hours comes too late.
    let day = now + PENDING_TTL_MS;
    assert_eq!(count(status(JitStatus::Pending), day - 1).await, 1);
    assert_eq!(count(status(JitStatus::Pending), day).await, 0);
    let e = store
        .decide_jit_request(&env, &unanswered.id, true, None, day, &by(&admin))
        .await
        .unwrap_err();
    assert_eq!(rule(&e), "jit_not_pending");
    assert!(e.message.contains("expired"), "{}", e.message);
    // A grant past its end cannot be revoked any more: it is over.
    let e = store
        .revoke_jit_grant(&env, &granted.id, end, &by(&admin))
        .await
        .unwrap_err();
    assert_eq!(rule(&e), "jit_not_approved");

    // Housekeeping writes what the readers already counted, once.
    assert!(store.expire_jit_requests(end - 1).await.unwrap().is_empty());
    let expired = store.expire_jit_requests(end).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].id, granted.id);
    assert!(store
        .approved_jit_grant(&late, &env)
        .await
        .unwrap()
        .is_none());
    let expired = store.expire_jit_requests(day).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].id, unanswered.id);
    assert!(store.expire_jit_requests(day).await.unwrap().is_empty());
    assert_eq!(count(status(JitStatus::Expired), now).await, 2);
}

async fn changes_are_audited_and_invalidate_the_grant(store: Arc<Store>) {
    let env = env_of_new_org(&store).await;
    let env_rec = store.environment(&env).await.unwrap().unwrap();
    let (analyst, admin) = (UserId::generate(), UserId::generate());
    let mut rx = store.bus().subscribe();
    let now = now_ms();
    let rec = store
        .create_jit_request(request(&env, &analyst, 20), now, &by(&analyst))
        .await
        .unwrap();
    store
        .decide_jit_request(&env, &rec.id, true, None, now, &by(&admin))
        .await
        .unwrap();
    let grant_changed = Invalidation::Jit {
        env_id: env.clone(),
        user_id: analyst.clone(),
    };
    super::expect_event(&mut rx, grant_changed.clone()).await;
    store
        .revoke_jit_grant(
            &env,
            &rec.id,
            now + MINUTE,
            &by(&admin).via(Some("jit_other")),
        )
        .await
        .unwrap();
    super::expect_event(&mut rx, grant_changed.clone()).await;
    let again = store
        .create_jit_request(request(&env, &analyst, 15), now + MINUTE, &by(&analyst))
        .await
        .unwrap();
    store
        .decide_jit_request(&env, &again.id, true, None, now + MINUTE, &by(&admin))
        .await
        .unwrap();
    store.expire_jit_requests(now + 17 * MINUTE).await.unwrap();
    super::expect_event(&mut rx, grant_changed).await;

    let filter = AuditFilter {
        resource_type: Some("jit_request".into()),
        ..Default::default()
    };
    let (entries, _) = store
        .audit_entries(&env_rec.org_id, &filter, &page())
        .await
        .unwrap();
    let actions: Vec<(&str, &str)> = entries
        .iter()
        .rev()
        .map(|e| (e.action.as_str(), e.actor_id.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("jit.requested", analyst.as_str()),
            ("jit.approved", admin.as_str()),
            ("jit.revoked", admin.as_str()),
            ("jit.requested", analyst.as_str()),
            ("jit.approved", admin.as_str()),
            ("jit.expired", "system"),
        ]
    );
    // The entry of a change made with a grant's role names the grant; the others do not.
    let revoked = &entries[3];
    assert_eq!(revoked.via_grant.as_deref(), Some("jit_other"));
    assert!(entries.iter().filter(|e| e.via_grant.is_some()).count() == 1);
    assert_eq!(revoked.after["status"], "revoked");
    assert_eq!(revoked.after["requested_role"], "developer");
    assert_eq!(revoked.after["reason"], "fix the orders of 3 December");
    // And the chain, with the grant in one entry, still verifies.
    let chain = store.audit_chain(&env_rec.org_id, 0, 1000).await.unwrap();
    let values: Vec<_> = chain
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect();
    assert!(enclave_core::audit::verify(values.iter()).chain_valid);
}

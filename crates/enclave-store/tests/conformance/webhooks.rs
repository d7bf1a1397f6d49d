//! The webhook outbox in the store, on SQLite and PostgreSQL alike: fan-out in the change's
//! transaction, leases that never hand one delivery to two workers, the retry bookkeeping
//! and auto-disable; and the audit chain's head.

use enclave_core::clock::now_ms;
use std::collections::HashSet;
use std::sync::Arc;

use enclave_core::id::{new_id, EnvId, KeyId, Kind, OrgId};
use enclave_core::webhook::WebhookStatus;
use enclave_store::*;

use super::environments::org_with;

conformance!(
    changes_fan_out_to_subscribed_active_webhooks,
    leases_never_overlap,
    attempts_retry_fail_and_disable,
    key_expiry_is_audited_and_announced,
    finished_deliveries_are_purged,
);

async fn hook(store: &Arc<Store>, org: &OrgId, events: &[&str]) -> WebhookRecord {
    store
        .create_webhook(
            NewWebhook {
                id: new_id(Kind::Webhook),
                org_id: org.into(),
                url: "https://hooks.example.com/x".into(),
                description: String::new(),
                events: events.iter().map(|e| e.to_string()).collect(),
                secret: "whsec_c2VjcmV0".into(),
                created_by: "usr_x".into(),
            },
            &Origin::system(),
        )
        .await
        .unwrap()
}

async fn first_env(store: &Arc<Store>, org: &OrgId) -> EnvRecord {
    let page = store
        .environments(
            org,
            &EnvFilter::default(),
            &EnvPageQuery {
                limit: 1,
                after: None,
            },
        )
        .await
        .unwrap();
    page.rows[0].clone()
}

async fn patch_env(store: &Arc<Store>, env: &EnvId) {
    let patch = EnvPatch {
        description: Some("changed".into()),
        ..Default::default()
    };
    store
        .update_environment(env, None, patch, &Origin::system())
        .await
        .unwrap();
}

async fn changes_fan_out_to_subscribed_active_webhooks(store: Arc<Store>) {
    let org = org_with(&store, &["dev"]).await;
    let env = first_env(&store, &org).await;
    let all = hook(&store, &org, &["*"]).await;
    let updates = hook(&store, &org, &["environment.updated"]).await;
    let keys = hook(&store, &org, &["key.created"]).await;
    let off = hook(&store, &org, &["*"]).await;
    store
        .update_webhook(
            &org,
            &off.id,
            None,
            WebhookPatch {
                status: Some(WebhookStatus::Disabled),
                ..Default::default()
            },
            &Origin::system(),
        )
        .await
        .unwrap();
    let head_before = store.audit_head(&org).await.unwrap().unwrap().0;
    patch_env(&store, &env.id).await;
    // One entry for the change, chained onto the head.
    let (seq, head) = store.audit_head(&org).await.unwrap().unwrap();
    assert_eq!(seq, head_before + 1);
    let entry = &store.audit_chain(&org, seq - 1, 10).await.unwrap()[0];
    assert_eq!(
        (entry.action.as_str(), entry.entry_hash.as_str()),
        ("environment.updated", head.as_str())
    );
    assert_eq!(entry.before["description"], "");
    assert_eq!(entry.after["description"], "changed");
    let page = PageQuery {
        limit: 50,
        after: None,
    };
    let queued = |id: String| {
        let (store, org, page) = (store.clone(), org.clone(), page.clone());
        async move { store.deliveries(&org, &id, &page).await.unwrap().0 }
    };
    let to_all = queued(all.id.clone()).await;
    assert_eq!(to_all.len(), 1);
    assert_eq!(to_all[0].event_type, "environment.updated");
    let payload: serde_json::Value = serde_json::from_str(&to_all[0].payload).unwrap();
    assert_eq!(payload["env_id"], env.id.as_str());
    assert_eq!(payload["data"]["description"], "changed");
    assert_eq!(payload["id"], to_all[0].event_id.as_str());
    assert_eq!(queued(updates.id.clone()).await.len(), 1);
    assert!(queued(keys.id.clone()).await.is_empty(), "not subscribed");
    assert!(queued(off.id.clone()).await.is_empty(), "disabled");
    // The same event (one id) to each endpoint.
    assert_eq!(
        queued(updates.id.clone()).await[0].event_id,
        to_all[0].event_id
    );
}

async fn leases_never_overlap(store: Arc<Store>) {
    let org = org_with(&store, &["dev"]).await;
    let env = first_env(&store, &org).await;
    hook(&store, &org, &["environment.updated"]).await;
    for _ in 0..20 {
        patch_env(&store, &env.id).await;
    }
    let now = now_ms();
    let claims: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.claim_deliveries(now, 60_000, 8).await.unwrap() })
        })
        .collect();
    let mut seen = HashSet::new();
    for c in claims {
        for d in c.await.unwrap() {
            assert!(
                seen.insert(d.delivery.id.clone()),
                "{} claimed twice",
                d.delivery.id
            );
            assert_eq!(d.url, "https://hooks.example.com/x");
            assert_eq!(d.secrets, vec!["whsec_c2VjcmV0".to_string()]);
        }
    }
    assert_eq!(seen.len(), 20);
    // Leased rows are not handed out again until the lease runs out.
    assert!(store
        .claim_deliveries(now + 1, 60_000, 8)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .claim_deliveries(now + 60_001, 60_000, 50)
            .await
            .unwrap()
            .len(),
        20
    );
}

async fn attempts_retry_fail_and_disable(store: Arc<Store>) {
    let org = org_with(&store, &["dev"]).await;
    let env = first_env(&store, &org).await;
    let h = hook(&store, &org, &["environment.updated"]).await;
    patch_env(&store, &env.id).await;
    let now = now_ms();
    let claimed = store.claim_deliveries(now, 60_000, 8).await.unwrap();
    let d = &claimed[0].delivery;
    let outcome = |attempt: i64, success: bool, retry_at: Option<i64>| AttemptOutcome {
        delivery_id: d.id.clone(),
        webhook_id: h.id.clone(),
        attempt,
        status_code: Some(if success { 200 } else { 500 }),
        latency_ms: 3,
        error: (!success).then(|| "HTTP 500".to_string()),
        success,
        retry_at,
        disable_after: 3,
    };
    // A failure schedules the retry; not due before its time.
    assert!(!store
        .record_attempt(outcome(1, false, Some(now + 5_000)))
        .await
        .unwrap());
    assert!(store
        .claim_deliveries(now + 1, 60_000, 8)
        .await
        .unwrap()
        .is_empty());
    let again = store
        .claim_deliveries(now + 5_000, 60_000, 8)
        .await
        .unwrap();
    assert_eq!(again[0].delivery.attempts, 1);
    // No retries left: failed, and never claimed again.
    assert!(!store.record_attempt(outcome(2, false, None)).await.unwrap());
    assert!(store
        .claim_deliveries(now + 999_999, 60_000, 8)
        .await
        .unwrap()
        .is_empty());
    let page = PageQuery {
        limit: 10,
        after: None,
    };
    let (rows, attempts, total) = store.deliveries(&org, &h.id, &page).await.unwrap();
    assert_eq!(
        (rows[0].status.as_str(), rows[0].attempts, total),
        ("failed", 2, 1)
    );
    assert_eq!(
        attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        [1, 2]
    );
    // The third failure in a row disables the endpoint, audited as the system's doing.
    assert!(store.record_attempt(outcome(3, false, None)).await.unwrap());
    let rec = store.webhook(&org, &h.id).await.unwrap().unwrap();
    assert_eq!(rec.status.as_str(), "disabled");
    let (seq, _) = store.audit_head(&org).await.unwrap().unwrap();
    let last = &store.audit_chain(&org, seq - 1, 1).await.unwrap()[0];
    assert_eq!(
        (last.action.as_str(), last.actor_id.as_str()),
        ("webhook.disabled", "system")
    );
    // A redelivery makes it due again, and re-enabling resets the failure run.
    store
        .redeliver(&org, &h.id, &d.id, &Origin::system())
        .await
        .unwrap();
    let rec = store
        .update_webhook(
            &org,
            &h.id,
            None,
            WebhookPatch {
                status: Some(WebhookStatus::Active),
                ..Default::default()
            },
            &Origin::system(),
        )
        .await
        .unwrap();
    assert_eq!((rec.consecutive_failures, rec.disabled_reason), (0, None));
    assert_eq!(
        store
            .claim_deliveries(now_ms(), 60_000, 8)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn key_expiry_is_audited_and_announced(store: Arc<Store>) {
    let org = org_with(&store, &["dev"]).await;
    let env = first_env(&store, &org).await;
    let h = hook(&store, &org, &["key.expiring"]).await;
    let now = now_ms();
    let key = store
        .create_api_key(
            NewApiKey {
                id: KeyId::generate(),
                env_id: env.id.clone(),
                name: "soon".into(),
                prefix: "ek_test_0123".into(),
                secret_hash: "$argon2id$not-a-real-hash".into(),
                role: enclave_core::Role::ServiceAccount,
                attributes: Default::default(),
                scopes: vec![],
                ip_allowlist: vec![],
                expires_at: Some(now + 3_600_000),
                created_by: "usr_x".into(),
            },
            50,
            &Origin::system(),
        )
        .await
        .unwrap();
    store
        .notice_expiring_api_keys(now + 86_400_000)
        .await
        .unwrap();
    let (seq, _) = store.audit_head(&org).await.unwrap().unwrap();
    let last = &store.audit_chain(&org, seq - 1, 1).await.unwrap()[0];
    assert_eq!(
        (last.action.as_str(), last.actor_id.as_str()),
        ("key.expiring", "system")
    );
    assert_eq!(last.resource_id, key.id);
    assert!(
        !last.after.to_string().contains("argon2"),
        "no hash in the entry"
    );
    let page = PageQuery {
        limit: 10,
        after: None,
    };
    let (queued, _, _) = store.deliveries(&org, &h.id, &page).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].event_type, "key.expiring");
    // Expiry itself is audited (no event of its own in the spec).
    store.expire_api_keys(now + 3_600_001).await.unwrap();
    let (seq, _) = store.audit_head(&org).await.unwrap().unwrap();
    let last = &store.audit_chain(&org, seq - 1, 1).await.unwrap()[0];
    assert_eq!(last.action, "key.expired");
    assert_eq!(
        store.deliveries(&org, &h.id, &page).await.unwrap().0.len(),
        1
    );
}

async fn finished_deliveries_are_purged(store: Arc<Store>) {
    let org = org_with(&store, &["dev"]).await;
    let env = first_env(&store, &org).await;
    let h = hook(&store, &org, &["environment.updated"]).await;
    patch_env(&store, &env.id).await;
    patch_env(&store, &env.id).await;
    let claimed = store.claim_deliveries(now_ms(), 60_000, 1).await.unwrap();
    let done = &claimed[0].delivery;
    store
        .record_attempt(AttemptOutcome {
            delivery_id: done.id.clone(),
            webhook_id: h.id.clone(),
            attempt: 1,
            status_code: Some(200),
            latency_ms: 1,
            error: None,
            success: true,
            retry_at: None,
            disable_after: 40,
        })
        .await
        .unwrap();
    // Nothing is old enough yet; later, only the finished one goes (its attempts with it).
    assert_eq!(store.purge_deliveries(now_ms() - 1_000).await.unwrap(), 0);
    assert_eq!(store.purge_deliveries(now_ms() + 1_000).await.unwrap(), 1);
    let page = PageQuery {
        limit: 10,
        after: None,
    };
    let (left, attempts, total) = store.deliveries(&org, &h.id, &page).await.unwrap();
    assert_eq!((left.len(), total), (1, 1));
    assert_eq!(left[0].status.as_str(), "pending");
    assert!(attempts.is_empty());
}

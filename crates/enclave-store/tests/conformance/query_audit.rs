//! The query audit in the store, on SQLite and PostgreSQL alike: entries sealed onto one
//! chain per environment, concurrent appends never fork it, pages newest first, filters, and
//! the chain gone with its environment.

use enclave_core::clock::now_ms;
use std::sync::Arc;

use enclave_core::audit::{verify, Actor, GENESIS_HASH};
use enclave_core::id::{new_id, EnvId, Kind, OrgId};
use enclave_core::pagination::PageRequest;
use enclave_core::query::audit::{AgentIdentity, QueryAuditEntry, QueryPrincipal};
use enclave_store::*;

use super::environments::org_with;

conformance!(query_audit_chains, concurrent_appends_never_fork);

pub(super) fn entry(env_id: &str, principal: &str, outcome: &str) -> QueryAuditEntry {
    QueryAuditEntry {
        query_id: new_id(Kind::Query),
        env_id: env_id.into(),
        seq: 0,
        principal: QueryPrincipal {
            actor: Actor::api_key(principal),
            role: "analyst".into(),
            grant: None,
        },
        agent: AgentIdentity::default(),
        door: "wire".into(),
        source_ip: Some("127.0.0.1".into()),
        sql_redacted: Some("SELECT ?".into()),
        statement_kind: Some("read".into()),
        tables: vec!["t".into()],
        columns_masked: vec![],
        row_filters_applied: vec![],
        policy_verdicts: vec![],
        rows_returned: 1,
        duration_ms: 2,
        credits_estimated: enclave_core::billing::Credits::ZERO,
        credits_consumed: enclave_core::billing::Credits::ZERO,
        cache_hit: false,
        outcome: outcome.into(),
        error_code: None,
        created_at: enclave_core::audit::timestamp(now_ms()),
        prev_hash: String::new(),
        entry_hash: String::new(),
    }
}

pub(super) async fn env_id(store: &Arc<Store>, org: &OrgId, slug: &str) -> EnvId {
    store
        .environment_by_slug(org, slug)
        .await
        .unwrap()
        .unwrap()
        .id
}

async fn chain(store: &Arc<Store>, env: &EnvId) -> Vec<serde_json::Value> {
    store
        .query_audit_chain(env, 0, 10_000)
        .await
        .unwrap()
        .iter()
        .map(QueryAuditEntry::to_value)
        .collect()
}

async fn query_audit_chains(store: Arc<Store>) {
    let org = org_with(&store, &["dev", "prod"]).await;
    let dev = env_id(&store, &org, "dev").await;
    let prod = env_id(&store, &org, "prod").await;
    let sealed = store
        .append_query_audit(vec![
            entry(&dev, "key_a", "ok"),
            entry(&prod, "key_a", "ok"),
            entry(&dev, "key_b", "refused"),
            entry("env_gone", "key_a", "ok"),
        ])
        .await
        .unwrap();
    // The entry of a missing environment is dropped; each chain starts at the genesis hash.
    assert_eq!(sealed.len(), 3);
    let dev_chain = chain(&store, &dev).await;
    assert_eq!(dev_chain.len(), 2);
    assert_eq!(dev_chain[0]["prev_hash"], GENESIS_HASH);
    assert_eq!(dev_chain[1]["seq"], 2);
    assert!(verify(dev_chain.iter()).chain_valid);
    assert_eq!(chain(&store, &prod).await[0]["seq"], 1);
    // The head is the last entry's hash.
    let head = store.query_audit_head(&dev).await.unwrap().unwrap();
    assert_eq!(head.0, 2);
    assert_eq!(head.1, dev_chain[1]["entry_hash"].as_str().unwrap());

    // Newest first, keyset pages, filters.
    store
        .append_query_audit((0..3).map(|_| entry(&dev, "key_c", "ok")).collect())
        .await
        .unwrap();
    let page = PageRequest::parse(Some(2), None).unwrap();
    let (first, total) = store
        .query_audit_entries(&dev, &QueryAuditFilter::default(), &page)
        .await
        .unwrap();
    assert_eq!(total, 5);
    assert_eq!(first[0].seq, 5);
    let next = PageRequest {
        limit: 2,
        after: Some(first[1].seq.to_string()),
    };
    let (second, _) = store
        .query_audit_entries(&dev, &QueryAuditFilter::default(), &next)
        .await
        .unwrap();
    assert_eq!(second[0].seq, 3);
    let refused = QueryAuditFilter {
        outcome: Some("refused".into()),
        ..Default::default()
    };
    let (only, n) = store
        .query_audit_entries(&dev, &refused, &page)
        .await
        .unwrap();
    assert_eq!((only.len(), n), (1, 1));
    assert_eq!(only[0].principal.actor.id, "key_b");
    let one = store
        .query_audit_entry(&dev, &only[0].query_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one, only[0]);
    // Another environment's id finds nothing.
    assert!(store
        .query_audit_entry(&prod, &only[0].query_id)
        .await
        .unwrap()
        .is_none());

    // Deleting the environment removes its chain.
    store.purge_environment(&dev).await.unwrap();
    assert!(chain(&store, &dev).await.is_empty());
    assert!(store.query_audit_head(&dev).await.unwrap().is_none());
}

async fn concurrent_appends_never_fork(store: Arc<Store>) {
    let org = org_with(&store, &["dev"]).await;
    let dev = env_id(&store, &org, "dev").await;
    let writers: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let dev = dev.clone();
            tokio::spawn(async move {
                for _ in 0..5 {
                    store
                        .append_query_audit(vec![
                            entry(&dev, &format!("key_{i}"), "ok"),
                            entry(&dev, &format!("key_{i}"), "ok"),
                        ])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let all = chain(&store, &dev).await;
    assert_eq!(all.len(), 80);
    let check = verify(all.iter());
    assert!(check.chain_valid, "{check:?}");
}

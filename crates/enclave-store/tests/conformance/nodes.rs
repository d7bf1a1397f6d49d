//! Nodes and home nodes in the store, on SQLite and PostgreSQL alike: a node registers and
//! beats, stops, and is gone once its heartbeat is stale; an environment's first claim wins
//! and every later one answers the home it has.

use std::sync::Arc;

use enclave_core::clock::now_ms;
use enclave_core::id::NodeId;
use enclave_store::*;

use super::environments::org_with;
use super::query_audit::env_id;

conformance!(nodes_beat_and_go, the_first_claim_is_the_home);

fn node(name: &str) -> NewNode {
    NewNode {
        id: NodeId::generate(),
        name: name.into(),
        api_url: format!("http://{name}:8080"),
        gateway_addr: format!("{name}:5439"),
    }
}

async fn nodes_beat_and_go(store: Arc<Store>) {
    let now = now_ms();
    let (a, b) = (node("a"), node("b"));
    store.register_node(&a, now).await.unwrap();
    store.register_node(&b, now).await.unwrap();
    assert_eq!(store.live_node_count(now).await.unwrap(), 2);

    store.node_stopped(&a.id, now + 1).await.unwrap();
    let stopped = store.node(&a.id).await.unwrap().unwrap();
    assert!(!stopped.alive(now + 1));
    assert_eq!(store.live_node_count(now + 1).await.unwrap(), 1);

    // B beats; past the window without one, it is gone too.
    store.node_heartbeat(&b.id, now + 10_000).await.unwrap();
    let later = now + 10_000 + NODE_GONE_AFTER_MS;
    assert!(store.node(&b.id).await.unwrap().unwrap().alive(later - 1));
    assert!(!store.node(&b.id).await.unwrap().unwrap().alive(later));

    // A restart registers again, with its new address, alive.
    let moved = NewNode {
        api_url: "http://a2:8080".into(),
        ..a.clone()
    };
    store.register_node(&moved, later).await.unwrap();
    let again = store.node(&a.id).await.unwrap().unwrap();
    assert_eq!(
        (again.api_url.as_str(), again.alive(later)),
        ("http://a2:8080", true)
    );
    let all = store.nodes().await.unwrap();
    assert_eq!(all.len(), 2);
}

async fn the_first_claim_is_the_home(store: Arc<Store>) {
    let org = org_with(&store, &["dev"]).await;
    let dev = env_id(&store, &org, "dev").await;
    let (a, b) = (NodeId::generate(), NodeId::generate());
    assert_eq!(
        store.environment(&dev).await.unwrap().unwrap().home_node,
        None
    );
    assert!(store.unclaimed_environments().await.unwrap().contains(&dev));

    let mut events = store.bus().subscribe();
    assert_eq!(
        store.claim_home_node(&dev, &a).await.unwrap(),
        Some(a.clone())
    );
    assert!(matches!(
        events.try_recv().unwrap(),
        Invalidation::Environment { env_id } if env_id == dev
    ));
    // The second claim changes nothing and answers the first.
    assert_eq!(
        store.claim_home_node(&dev, &b).await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        store.environment(&dev).await.unwrap().unwrap().home_node,
        Some(a)
    );
    assert!(!store.unclaimed_environments().await.unwrap().contains(&dev));
    let gone = enclave_core::id::EnvId::generate();
    assert_eq!(store.claim_home_node(&gone, &b).await.unwrap(), None);
}

conformance!(buckets_grant_what_they_hold, leases_share_the_limit);

async fn buckets_grant_what_they_hold(store: Arc<Store>) {
    let now = now_ms();
    // Burst 10, one token a second.
    let take = |want: u32, at: i64| {
        let store = store.clone();
        async move {
            store
                .take_rate_tokens("tier:free:usr_a", 10.0, 0.001, want, at)
                .await
                .unwrap()
        }
    };
    let first = take(4, now).await;
    assert_eq!(first.granted, 4);
    assert!((first.left - 6.0).abs() < 1e-9);
    assert_eq!(take(100, now).await.granted, 6);
    assert_eq!(take(1, now).await.granted, 0);
    // 2.5 s later: two whole tokens, half of one left over.
    let later = take(5, now + 2_500).await;
    assert_eq!(later.granted, 2);
    assert!((later.left - 0.5).abs() < 1e-9);
    // Never more than the burst, however long it rested.
    assert_eq!(take(100, now + 3_600_000).await.granted, 10);
    // Another key is another bucket.
    let other = store
        .take_rate_tokens("anonymous:127.0.0.1", 5.0, 0.001, 9, now)
        .await
        .unwrap();
    assert_eq!(other.granted, 5);
    assert_eq!(store.purge_rate_buckets(now + 3_600_001).await.unwrap(), 2);
}

async fn leases_share_the_limit(store: Arc<Store>) {
    let org = org_with(&store, &["dev"]).await;
    let dev = env_id(&store, &org, "dev").await;
    let (a, b) = (NodeId::generate(), NodeId::generate());
    let now = now_ms();
    let lease = |node: NodeId, slots: i64, at: i64| {
        let (store, dev) = (store.clone(), dev.clone());
        async move {
            store
                .lease_slots(&dev, &node, slots, 5, at, at + 10_000)
                .await
                .unwrap()
        }
    };
    assert_eq!(lease(a.clone(), 3, now).await, 3);
    // B gets what A leaves.
    assert_eq!(lease(b.clone(), 4, now).await, 2);
    // A shrinks; B may grow into it.
    assert_eq!(lease(a.clone(), 1, now).await, 1);
    assert_eq!(lease(b.clone(), 4, now).await, 4);
    // A's lease lapses (its node died): B may take it all.
    assert_eq!(lease(b.clone(), 5, now + 20_000).await, 5);
    store.release_leases(&b, now + 20_000).await.unwrap();
    assert_eq!(lease(a, 5, now + 20_000).await, 5);
}

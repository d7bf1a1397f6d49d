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

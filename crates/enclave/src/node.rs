//! This process as a node of the cluster: its id (kept in the data directory, so a restart
//! is the same node and stays home to its embedded environments), its registration in the
//! store, and the heartbeat that tells the other nodes it is alive.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use enclave_core::clock::now_ms;
use enclave_core::id::NodeId;
use enclave_store::{NewNode, Store};

/// How often a node says it is alive; the others call it gone after
/// [`enclave_store::NODE_GONE_AFTER_MS`] without a word.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

const NODE_ID_FILE: &str = "node-id";

/// How long an environment may stay `provisioning` before any node finishes it: the request
/// that created it has died with its node.
const ABANDONED_AFTER_MS: i64 = 60_000;

/// The node id kept in `data_dir`, created on the first start.
pub fn node_id(data_dir: &Path) -> anyhow::Result<NodeId> {
    let path = data_dir.join(NODE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => NodeId::parse(text.trim())
            .with_context(|| format!("{} does not hold a node id", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = NodeId::generate();
            std::fs::write(&path, format!("{id}\n"))
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Registers the node, then beats every [`HEARTBEAT_EVERY`]; each beat also settles what is
/// left to this node (deletions of the embedded environments it is home to).
pub async fn join(state: &enclave_api::AppState, node: NewNode) -> anyhow::Result<()> {
    state
        .store
        .register_node(&node, now_ms())
        .await
        .map_err(|e| anyhow::anyhow!("cannot register this node: {}", e.message))?;
    recount(state).await;
    // Another node starting or stopping: the shared limits are counted again at once.
    let mut events = state.store.bus().subscribe();
    let watcher = state.clone();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(enclave_store::Invalidation::Nodes | enclave_store::Invalidation::All)
                | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    recount(&watcher).await
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let state = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
        loop {
            tick.tick().await;
            if let Err(e) = state.store.node_heartbeat(&node.id, now_ms()).await {
                tracing::warn!(error = %e.message, "node heartbeat failed");
            }
            recount(&state).await;
            let settled = enclave_api::lifecycle::settle(
                state.store.as_ref(),
                state.gateway.engines(),
                Some(now_ms() - ABANDONED_AFTER_MS),
            )
            .await;
            if settled > 0 {
                tracing::info!(
                    environments = settled,
                    "environment lifecycle steps finished"
                );
            }
        }
    });
    Ok(())
}

/// Whether other live nodes serve the store: then rate limits and admission are shared
/// through it (a PostgreSQL store only; SQLite has one node).
async fn recount(state: &enclave_api::AppState) {
    if state.store.backend() != enclave_store::Backend::Postgres {
        return;
    }
    match state.store.live_node_count(now_ms()).await {
        Ok(live) => {
            state.rate_limits.set_clustered(live > 1);
            state.gateway.set_clustered(live > 1);
        }
        Err(e) => tracing::warn!(error = %e.message, "cannot count the live nodes"),
    }
}

/// Marks the node stopped (a clean shutdown): other nodes say so at once.
pub async fn leave(store: &Arc<Store>, node_id: &NodeId) {
    if let Err(e) = store.node_stopped(node_id, now_ms()).await {
        tracing::warn!(error = %e.message, "cannot mark this node stopped");
    }
}

//! Home nodes: an embedded environment's database file lives in one node's data directory, so
//! only that node answers for it. Another node refuses its statements with an error that
//! names the home node and the fix, never answering from a database file of its own.

use std::sync::Arc;

use enclave_core::clock::now_ms;
use enclave_core::id::{EnvId, NodeId};
use enclave_core::query::with_sqlstate;
use enclave_core::{Error, Result};
use enclave_store::{EnvRecord, NodeRecord, Store};
use serde_json::json;

/// This node, as the embedded engine's placement knows it.
pub struct Home {
    node: NodeId,
    store: Arc<Store>,
}

/// SQLSTATE of a statement sent to a node that does not hold the environment's data
/// (`cannot_connect_now`: the client may retry elsewhere).
pub const NOT_HERE: &str = "57P03";

impl Home {
    pub fn new(node: NodeId, store: Arc<Store>) -> Home {
        Home { node, store }
    }

    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// Whether this node is the environment's home, claiming it when it has none (the node
    /// that first provisions or serves an environment becomes its home).
    pub async fn check(&self, env: &EnvRecord) -> Result<()> {
        let home = match &env.home_node {
            Some(home) => home.clone(),
            None => self
                .store
                .claim_home_node(&env.id, &self.node)
                .await?
                .ok_or_else(|| Error::not_found("environment"))?,
        };
        if home == self.node {
            return Ok(());
        }
        Err(self.elsewhere(env, &home).await)
    }

    /// Whether `env`'s data may be removed from here: its home is this node, or none, or a
    /// node that is gone (its file went with it). `false` leaves the removal to the home node.
    pub async fn may_remove(&self, env: &EnvRecord) -> Result<bool> {
        match &env.home_node {
            None => Ok(true),
            Some(home) if *home == self.node => Ok(true),
            Some(home) => Ok(!self
                .store
                .node(home)
                .await?
                .is_some_and(|n| n.alive(now_ms()))),
        }
    }

    /// The refusal of a statement for `env`, whose data is on `home`.
    async fn elsewhere(&self, env: &EnvRecord, home: &NodeId) -> Error {
        let node = match self.store.node(home).await {
            Ok(node) => node,
            Err(e) => return e,
        };
        refusal(env, home, node.as_ref(), now_ms())
    }
}

/// What a client reads when `env`'s data is on another node: where that node answers, or
/// that it is gone, and the fix either way.
pub fn refusal(env: &EnvRecord, home: &NodeId, node: Option<&NodeRecord>, now: i64) -> Error {
    let fix = format!(
        "or move the environment's data to the shared PostgreSQL engine: POST /v1/environments/{}/engine",
        env.id
    );
    let (error, home_node) = match node {
        Some(n) if n.alive(now) => (
            Error::unavailable(format!(
                "environment {} keeps its embedded data on node {} ({}): connect to its gateway at {} or its API at {}, {fix}",
                env.slug, n.name, n.id, n.gateway_addr, n.api_url
            ))
            .with_status(421),
            json!({"id": n.id, "name": n.name, "api_url": n.api_url,
                   "gateway_addr": n.gateway_addr, "alive": true}),
        ),
        Some(n) => (
            Error::unavailable(format!(
                "environment {} keeps its embedded data on node {} ({}), which is gone (last heard from at {}): start that node again with its data directory, then query it there {fix}",
                env.slug,
                n.name,
                n.id,
                enclave_core::audit::timestamp(n.heartbeat_at)
            )),
            json!({"id": n.id, "name": n.name, "api_url": n.api_url,
                   "gateway_addr": n.gateway_addr, "alive": false}),
        ),
        None => (
            Error::unavailable(format!(
                "environment {} keeps its embedded data on node {home}, which is not registered: start that node with its data directory, {fix}",
                env.slug
            )),
            json!({"id": home, "alive": false}),
        ),
    };
    with_sqlstate(
        error.with_details(json!({"rule": "home_node", "home_node": home_node})),
        NOT_HERE,
    )
}

/// Claims the embedded environments whose database files this node holds and that no node
/// has claimed (they predate home nodes); returns how many.
pub async fn claim_held(home: &Home, holds: impl Fn(&EnvId) -> bool) -> Result<usize> {
    let mut claimed = 0;
    for env_id in home.store.unclaimed_environments().await? {
        if holds(&env_id)
            && home.store.claim_home_node(&env_id, &home.node).await? == Some(home.node.clone())
        {
            claimed += 1;
        }
    }
    Ok(claimed)
}

//! Cache invalidation: what changed in identity state, published after commit to this node's
//! caches and — on PostgreSQL — to every other node through `NOTIFY`.

use enclave_core::id::{EnvId, KeyId, OrgId, UserId};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};

use tokio::sync::broadcast;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Invalidation {
    Session {
        session_id: String,
    },
    Member {
        org_id: OrgId,
        user_id: UserId,
    },
    Org {
        org_id: OrgId,
    },
    /// The user's profile changed (name, password).
    User {
        user_id: UserId,
    },
    /// An environment changed (status, lock, settings, deletion).
    Environment {
        env_id: EnvId,
    },
    /// Several of an organization's environments changed at once (their order moved).
    OrgEnvironments {
        org_id: OrgId,
    },
    /// An API key changed (revoked, rotated, expired, scopes or allow-list changed).
    ApiKey {
        key_id: KeyId,
    },
    /// An environment's policies changed (the gateway compiles them again).
    Policies {
        env_id: EnvId,
    },
    /// An environment's tables or views changed (DDL through the gateway): the relations the
    /// policy rewrite knows are read again.
    Catalog {
        env_id: EnvId,
    },
    /// Rows of an environment's tables changed (a write or load through the gateway): cached
    /// results of the environment are stale.
    Data {
        env_id: EnvId,
    },
    /// A member's just-in-time grant in an environment began or ended (approved, revoked,
    /// expired): the role they act with there is read again.
    Jit {
        env_id: EnvId,
        user_id: UserId,
    },
    /// An environment's agent capability grants changed: the gateway reads them again.
    Capabilities {
        env_id: EnvId,
    },
    /// An environment's shadowing started or stopped: the gateway reads its configuration
    /// again.
    Shadow {
        env_id: EnvId,
    },
    /// A node started or stopped: limits shared by the nodes are counted again.
    Nodes,
    /// Everything: sent when a node may have missed notifications (listener reconnected).
    All,
}

/// The PostgreSQL channel other nodes listen on.
pub(crate) const CHANNEL: &str = "enclave_invalidate";

type Hook = Box<dyn Fn(&Invalidation) + Send + Sync>;

/// A node's invalidations. Hooks run synchronously in [`Bus::publish`], so a cache that
/// registers one is up to date before the write that changed something returns; the
/// broadcast channel serves consumers that may lag.
#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<Invalidation>,
    hooks: Arc<RwLock<Vec<Hook>>>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus {
            tx: broadcast::channel(1024).0,
            hooks: Arc::default(),
        }
    }
}

impl Bus {
    pub fn subscribe(&self) -> broadcast::Receiver<Invalidation> {
        self.tx.subscribe()
    }

    /// Runs `hook` on every invalidation from now on, before `publish` returns.
    pub fn on_publish(&self, hook: impl Fn(&Invalidation) + Send + Sync + 'static) {
        self.hooks.write().unwrap().push(Box::new(hook));
    }

    pub fn publish(&self, events: impl IntoIterator<Item = Invalidation>) {
        for e in events {
            for hook in self.hooks.read().unwrap().iter() {
                hook(&e);
            }
            // No subscriber is fine (e.g. `enclave migrate`).
            let _ = self.tx.send(e);
        }
    }
}

//! Cache invalidation: what changed in identity state, published after commit to this node's
//! caches and — on PostgreSQL — to every other node through `NOTIFY`.

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Invalidation {
    Session {
        session_id: String,
    },
    Member {
        org_id: String,
        user_id: String,
    },
    Org {
        org_id: String,
    },
    /// Everything: sent when a node may have missed notifications (listener reconnected).
    All,
}

/// The PostgreSQL channel other nodes listen on.
pub(crate) const CHANNEL: &str = "enclave_invalidate";

/// A node's broadcast of invalidations.
#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<Invalidation>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus {
            tx: broadcast::channel(1024).0,
        }
    }
}

impl Bus {
    pub fn subscribe(&self) -> broadcast::Receiver<Invalidation> {
        self.tx.subscribe()
    }

    pub fn publish(&self, events: impl IntoIterator<Item = Invalidation>) {
        for e in events {
            // No subscriber is fine (e.g. `enclave migrate`).
            let _ = self.tx.send(e);
        }
    }
}

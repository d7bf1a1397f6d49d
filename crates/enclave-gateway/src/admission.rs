//! Stage 1, admission: at most `settings.max_concurrent_queries` statements run at once per
//! environment; the rest wait in a bounded queue served by priority (then arrival). A full
//! queue refuses at once (53300). A waiter that gives up (timeout, client gone) leaves the
//! queue without holding a slot.
//!
//! When several nodes serve a PostgreSQL store, the limit is the cluster's: each node runs
//! only as many of an environment's statements as it holds slots leased in the store, and
//! the leases of all nodes never add up to more than the limit. A node grows its lease when
//! a statement finds it full (one round trip), and every [`LEASE_TICK`] gives back what it
//! has not needed since the last tick and retries for its waiters; a node that dies loses
//! its leases after [`LEASE_LIFE`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use enclave_core::clock::now_ms;
use enclave_core::id::{EnvId, NodeId};
use enclave_core::query::with_sqlstate;
use enclave_core::{Error, Result};
use enclave_store::Store;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Low,
    Normal,
    High,
    Critical,
}

impl Priority {
    pub fn parse(s: &str) -> Option<Priority> {
        match s.to_ascii_lowercase().as_str() {
            "low" => Some(Priority::Low),
            "normal" => Some(Priority::Normal),
            "high" => Some(Priority::High),
            "critical" => Some(Priority::Critical),
            _ => None,
        }
    }
}

struct Waiter {
    priority: Priority,
    order: Reverse<u64>,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        (self.priority, self.order) == (other.priority, other.order)
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.priority, self.order).cmp(&(other.priority, other.order))
    }
}

#[derive(Default)]
struct Lane {
    running: usize,
    waiting: BinaryHeap<Waiter>,
    arrivals: u64,
    /// The environment's limit, as the last statement saw it.
    limit: usize,
    /// Slots this node holds in the store (in a cluster).
    leased: usize,
    /// The most statements that ran at once since the last tick.
    peak: usize,
}

/// Every environment's lane on this node.
pub struct Admission {
    lanes: Mutex<HashMap<EnvId, Lane>>,
    queue_limit: usize,
    shared: Option<SharedSlots>,
}

/// The store leases slots from, while other nodes serve it too.
struct SharedSlots {
    store: Arc<Store>,
    node: NodeId,
    clustered: AtomicBool,
    ticking: AtomicBool,
}

/// How often a node gives back slots it did not need and retries for its waiters.
pub const LEASE_TICK: Duration = Duration::from_millis(100);
/// How long a lease holds without being renewed (a dead node's slots return after it).
pub const LEASE_LIFE: Duration = Duration::from_secs(10);

/// A running statement's slot; dropping it hands the slot to the best waiter.
pub struct Permit {
    admission: Arc<Admission>,
    env_id: EnvId,
}

impl Admission {
    /// Lanes of this node; with `shared` (a PostgreSQL store and this node's id), slots are
    /// leased from the store while other nodes serve it ([`Admission::set_clustered`]).
    pub fn new(queue_limit: usize, shared: Option<(Arc<Store>, NodeId)>) -> Arc<Admission> {
        Arc::new(Admission {
            lanes: Mutex::default(),
            queue_limit,
            shared: shared.map(|(store, node)| SharedSlots {
                store,
                node,
                clustered: AtomicBool::new(false),
                ticking: AtomicBool::new(false),
            }),
        })
    }

    /// Whether other live nodes serve the store: then the limit is shared through leases.
    pub fn set_clustered(self: &Arc<Self>, clustered: bool) {
        let Some(shared) = &self.shared else { return };
        shared.clustered.store(clustered, Ordering::SeqCst);
        if clustered && !shared.ticking.swap(true, Ordering::SeqCst) {
            tokio::spawn(tick(Arc::downgrade(self)));
        }
    }

    fn clustered(&self) -> Option<&SharedSlots> {
        self.shared
            .as_ref()
            .filter(|s| s.clustered.load(Ordering::Relaxed))
    }

    /// How many of `lane`'s statements may run now on this node.
    fn room(&self, lane: &Lane) -> usize {
        match self.clustered() {
            Some(_) => lane.leased.min(lane.limit),
            None => lane.limit,
        }
    }

    /// A slot in `env_id`'s lane, waiting for one if `limit` statements run.
    pub async fn admit(
        self: &Arc<Self>,
        env_id: &EnvId,
        limit: usize,
        priority: Priority,
    ) -> Result<Permit> {
        let limit = limit.max(1);
        if let Some(shared) = self.clustered() {
            // A full lease with room under the limit: ask the store for one more slot.
            let want = {
                let mut lanes = self.lanes.lock().unwrap();
                let lane = lanes.entry(env_id.clone()).or_default();
                lane.limit = limit;
                (lane.running >= lane.leased && lane.running < limit)
                    .then_some(lane.running + lane.waiting.len() + 1)
            };
            if let Some(want) = want {
                let now = now_ms();
                let leased = shared
                    .store
                    .lease_slots(
                        env_id,
                        &shared.node,
                        want.min(limit) as i64,
                        limit as i64,
                        now,
                        now + LEASE_LIFE.as_millis() as i64,
                    )
                    .await?;
                let mut lanes = self.lanes.lock().unwrap();
                let lane = lanes.entry(env_id.clone()).or_default();
                lane.leased = leased.max(0) as usize;
            }
        }
        let wait = {
            let mut lanes = self.lanes.lock().unwrap();
            let lane = lanes.entry(env_id.clone()).or_default();
            lane.limit = limit;
            if lane.running < self.room(lane) {
                lane.running += 1;
                lane.peak = lane.peak.max(lane.running);
                None
            } else if lane.waiting.len() >= self.queue_limit {
                return Err(with_sqlstate(
                    Error::unavailable(format!(
                        "the environment is running {} statements and {} are queued; retry later",
                        lane.running,
                        lane.waiting.len()
                    ))
                    .with_details(serde_json::json!({"rule": "admission_queue_full"})),
                    "53300",
                ));
            } else {
                let (tx, rx) = oneshot::channel();
                lane.arrivals += 1;
                let order = Reverse(lane.arrivals);
                lane.waiting.push(Waiter {
                    priority,
                    order,
                    wake: tx,
                });
                Some(rx)
            }
        };
        if let Some(rx) = wait {
            // The slot is handed over by the permit released before us.
            rx.await.map_err(|_| Error::internal())?;
        }
        Ok(Permit {
            admission: self.clone(),
            env_id: env_id.clone(),
        })
    }

    /// How many statements run and wait in `env_id`'s lane.
    pub fn load(&self, env_id: &EnvId) -> (usize, usize) {
        let lanes = self.lanes.lock().unwrap();
        lanes
            .get(env_id)
            .map(|l| (l.running, l.waiting.len()))
            .unwrap_or_default()
    }

    fn release(&self, env_id: &EnvId) {
        let mut lanes = self.lanes.lock().unwrap();
        let Some(lane) = lanes.get_mut(env_id) else {
            return;
        };
        while let Some(next) = lane.waiting.pop() {
            if next.wake.send(()).is_ok() {
                return; // the slot passes on; `running` is unchanged
            }
        }
        lane.running -= 1;
        if lane.running == 0 && lane.leased == 0 {
            lanes.remove(env_id);
        }
    }

    /// One tick of the shared slots: each lane's lease becomes what it needed since the last
    /// tick (renewed), and waiters run on slots gained.
    async fn lease_tick(&self, shared: &SharedSlots) {
        let wanted: Vec<(EnvId, usize, usize, usize)> = {
            let mut lanes = self.lanes.lock().unwrap();
            lanes
                .iter_mut()
                .map(|(id, lane)| {
                    let want = lane
                        .peak
                        .max(lane.running + lane.waiting.len())
                        .min(lane.limit);
                    lane.peak = lane.running;
                    (id.clone(), want, lane.limit, lane.leased)
                })
                .collect()
        };
        let now = now_ms();
        for (env_id, want, limit, leased) in wanted {
            // A lease is renewed at least once per a fifth of its life.
            if want == leased && want == 0 {
                continue;
            }
            let granted = match shared
                .store
                .lease_slots(
                    &env_id,
                    &shared.node,
                    want as i64,
                    limit as i64,
                    now,
                    now + LEASE_LIFE.as_millis() as i64,
                )
                .await
            {
                Ok(n) => n.max(0) as usize,
                Err(e) => {
                    tracing::warn!(env_id = %env_id, error = %e.message, "cannot renew an admission lease");
                    continue;
                }
            };
            let mut lanes = self.lanes.lock().unwrap();
            let Some(lane) = lanes.get_mut(&env_id) else {
                continue;
            };
            lane.leased = granted;
            while lane.running < lane.leased.min(lane.limit) {
                let Some(next) = lane.waiting.pop() else {
                    break;
                };
                if next.wake.send(()).is_ok() {
                    lane.running += 1;
                    lane.peak = lane.peak.max(lane.running);
                }
            }
            if lane.running == 0 && lane.leased == 0 && lane.waiting.is_empty() {
                lanes.remove(&env_id);
            }
        }
    }
}

/// The shared slots' clock, while the admission lives and the node is clustered.
async fn tick(admission: Weak<Admission>) {
    let mut interval = tokio::time::interval(LEASE_TICK);
    loop {
        interval.tick().await;
        let Some(admission) = admission.upgrade() else {
            return;
        };
        if let Some(shared) = admission.clustered() {
            admission.lease_tick(shared).await;
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.release(&self.env_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn slots_queue_by_priority_and_a_full_queue_refuses() {
        let admission = Admission::new(2, None);
        let first = admission
            .admit(&"env".into(), 1, Priority::Normal)
            .await
            .unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for (name, p) in [("low", Priority::Low), ("critical", Priority::Critical)] {
            let (a, o) = (admission.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let _permit = a.admit(&"env".into(), 1, p).await.unwrap();
                o.lock().unwrap().push(name);
            }));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(admission.load(&"env".into()), (1, 2));
        let e = admission
            .admit(&"env".into(), 1, Priority::High)
            .await
            .err()
            .unwrap();
        assert_eq!(enclave_core::query::sqlstate(&e), "53300");
        // Another environment has its own lane.
        drop(
            admission
                .admit(&"other".into(), 1, Priority::Low)
                .await
                .unwrap(),
        );
        drop(first);
        for w in waiters {
            w.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec!["critical", "low"]);
        assert_eq!(admission.load(&"env".into()), (0, 0));
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_leaves_no_slot_behind() {
        let admission = Admission::new(4, None);
        let first = admission
            .admit(&"env".into(), 1, Priority::Normal)
            .await
            .unwrap();
        let gave_up = tokio::time::timeout(
            Duration::from_millis(20),
            admission.admit(&"env".into(), 1, Priority::Normal),
        )
        .await;
        assert!(gave_up.is_err());
        drop(first);
        assert_eq!(admission.load(&"env".into()), (0, 0));
        let _again = admission
            .admit(&"env".into(), 1, Priority::Normal)
            .await
            .unwrap();
    }
}

//! Stage 1, admission: at most `settings.max_concurrent_queries` statements run at once per
//! environment; the rest wait in a bounded queue served by priority (then arrival). A full
//! queue refuses at once (53300). A waiter that gives up (timeout, client gone) leaves the
//! queue without holding a slot.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};

use enclave_core::id::EnvId;
use enclave_core::query::with_sqlstate;
use enclave_core::{Error, Result};
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
}

/// Every environment's lane on this node.
pub struct Admission {
    lanes: Mutex<HashMap<EnvId, Lane>>,
    queue_limit: usize,
}

/// A running statement's slot; dropping it hands the slot to the best waiter.
pub struct Permit {
    admission: Arc<Admission>,
    env_id: EnvId,
}

impl Admission {
    pub fn new(queue_limit: usize) -> Arc<Admission> {
        Arc::new(Admission {
            lanes: Mutex::default(),
            queue_limit,
        })
    }

    /// A slot in `env_id`'s lane, waiting for one if `limit` statements run.
    pub async fn admit(
        self: &Arc<Self>,
        env_id: &EnvId,
        limit: usize,
        priority: Priority,
    ) -> Result<Permit> {
        let wait = {
            let mut lanes = self.lanes.lock().unwrap();
            let lane = lanes.entry(env_id.clone()).or_default();
            if lane.running < limit.max(1) {
                lane.running += 1;
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
        if lane.running == 0 {
            lanes.remove(env_id);
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
        let admission = Admission::new(2);
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
        let admission = Admission::new(4);
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

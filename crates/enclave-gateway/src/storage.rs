//! The storage quota's measure: what each environment's data takes on its engine, measured
//! after writes through the gateway (at most every [`MIN_INTERVAL`] per environment, the last
//! write of a burst included) and kept in the store, where every node sums the same figures.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use enclave_core::id::EnvId;
use enclave_store::{EnvRecord, Store};

use crate::engine::Engines;

/// How often one environment is measured at most.
const MIN_INTERVAL: Duration = Duration::from_secs(5);

pub struct StorageMeter {
    store: Arc<Store>,
    engines: Engines,
    /// When each environment was last measured, and whether a measure is already scheduled.
    envs: Mutex<HashMap<EnvId, (Instant, bool)>>,
    me: Weak<StorageMeter>,
}

impl StorageMeter {
    pub fn new(store: Arc<Store>, engines: Engines) -> Arc<StorageMeter> {
        Arc::new_cyclic(|me| StorageMeter {
            store,
            engines,
            envs: Mutex::default(),
            me: me.clone(),
        })
    }

    /// The environment's data changed: measured in the background, now or once
    /// [`MIN_INTERVAL`] has passed since its last measure.
    pub fn changed(&self, env: &EnvRecord) {
        let delay = {
            let mut envs = self.envs.lock().unwrap();
            let now = Instant::now();
            match envs.get_mut(&env.id) {
                Some((_, true)) => return,
                Some((last, scheduled)) => {
                    *scheduled = true;
                    MIN_INTERVAL.saturating_sub(now.duration_since(*last))
                }
                None => {
                    envs.insert(env.id.clone(), (now, true));
                    Duration::ZERO
                }
            }
        };
        let Some(me) = self.me.upgrade() else { return };
        let env = env.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(entry) = me.envs.lock().unwrap().get_mut(&env.id) {
                *entry = (Instant::now(), false);
            }
            let measured = me.engines.stored_bytes(&env).await;
            let recorded = match measured {
                Ok(bytes) => me.store.record_storage(&env.org_id, &env.id, bytes).await,
                Err(e) => Err(e),
            };
            if let Err(e) = recorded {
                tracing::warn!(env_id = %env.id, error = %e.message, "cannot measure the environment's storage");
            }
        });
    }
}

//! Shadow environments (docs/provisioning.md): a sample of an environment's answered reads is
//! replayed against its shadow target after the caller has the answer. The answer's batches
//! are kept as they stream (shared, not copied; bounded), then handed to a bounded queue with
//! `try_send`: a full queue drops the replay and counts it, so the caller never waits for a
//! replay. One worker per node replays, hashes both sides and reports to the store in batches.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use duckdb::arrow::record_batch::RecordBatch;
use enclave_core::id::EnvId;
use enclave_core::query::audit::AgentIdentity;
use enclave_core::query::Analyzed;
use enclave_core::shadow::{RowsHash, ShadowMismatch, SideOutcome, Verdict};
use enclave_core::Result;
use enclave_store::{EnvRecord, Invalidation, ShadowRecord, ShadowResult, Store};
use tokio::sync::mpsc;

use crate::engine::Param;
use crate::identity::{Door, Identity};
use crate::pipeline::Gateway;
use crate::results::json_rows;

/// Replays waiting at most, per node, unless configured.
pub const DEFAULT_QUEUE: usize = 256;
/// The largest answer compared (bytes of its batches); a larger one is dropped, not copied.
const MAX_CAPTURE_BYTES: u64 = 16 << 20;
/// How often the worker reports to the store.
const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// A statement to replay, with its primary answer.
pub(crate) struct Job {
    env_id: EnvId,
    target_env_id: EnvId,
    pub(crate) identity: Identity,
    pub(crate) agent: AgentIdentity,
    pub(crate) door: Door,
    pub(crate) source_ip: Option<IpAddr>,
    pub(crate) statement: Analyzed,
    pub(crate) params: Vec<Param>,
    batches: Vec<RecordBatch>,
    primary_ms: i64,
}

pub struct Shadowing {
    store: Arc<Store>,
    configs: RwLock<HashMap<EnvId, Option<Arc<ShadowRecord>>>>,
    generation: AtomicU64,
    queue: mpsc::Sender<Job>,
    receiver: Mutex<Option<mpsc::Receiver<Job>>>,
    dropped: Mutex<BTreeMap<EnvId, i64>>,
}

impl Shadowing {
    pub fn new(store: Arc<Store>, queue: usize) -> Arc<Shadowing> {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let shadowing = Arc::new(Shadowing {
            store: store.clone(),
            configs: RwLock::default(),
            generation: AtomicU64::new(0),
            queue: tx,
            receiver: Mutex::new(Some(rx)),
            dropped: Mutex::default(),
        });
        let weak = Arc::downgrade(&shadowing);
        store.bus().on_publish(move |event| {
            let Some(s) = weak.upgrade() else { return };
            match event {
                Invalidation::Shadow { env_id } | Invalidation::Environment { env_id } => {
                    s.generation.fetch_add(1, Ordering::SeqCst);
                    s.configs.write().unwrap().remove(env_id);
                }
                Invalidation::All => {
                    s.generation.fetch_add(1, Ordering::SeqCst);
                    s.configs.write().unwrap().clear();
                }
                _ => {}
            }
        });
        shadowing
    }

    /// Starts the node's replay worker (once) for `gateway`.
    pub(crate) fn start(&self, gateway: Weak<Gateway>) {
        let Some(rx) = self.receiver.lock().unwrap().take() else {
            return;
        };
        tokio::spawn(work(gateway, rx));
    }

    async fn config(&self, env_id: &EnvId) -> Result<Option<Arc<ShadowRecord>>> {
        if let Some(c) = self.configs.read().unwrap().get(env_id) {
            return Ok(c.clone());
        }
        let read_at = self.generation.load(Ordering::SeqCst);
        let config = self.store.shadow(env_id).await?.map(Arc::new);
        if self.generation.load(Ordering::SeqCst) == read_at {
            self.configs
                .write()
                .unwrap()
                .insert(env_id.clone(), config.clone());
        }
        Ok(config)
    }

    /// Whether this read of `env` is replayed: the environment is shadowed and the draw falls
    /// within its sample rate. The target's id when it is.
    pub(crate) async fn sample(&self, env: &EnvRecord) -> Option<EnvId> {
        let config = match self.config(&env.id).await {
            Ok(c) => c?,
            Err(e) => {
                tracing::warn!(env_id = %env.id, error = %e.message, "cannot read the shadow configuration");
                return None;
            }
        };
        let rate = config.spec.0.sample_rate;
        (rate > 0.0 && rand::random::<f64>() < rate).then(|| config.target_env_id.clone())
    }

    /// A statement answered well: queued for replay, or dropped and counted when the queue is
    /// full.
    fn submit(&self, job: Job) {
        if let Err(e) = self.queue.try_send(job) {
            let job = match e {
                mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
            };
            self.count_dropped(&job.env_id);
        }
    }

    fn count_dropped(&self, env_id: &EnvId) {
        *self
            .dropped
            .lock()
            .unwrap()
            .entry(env_id.clone())
            .or_default() += 1;
    }
}

/// The answer of a sampled read, kept batch by batch as it streams to the caller.
pub(crate) struct ShadowCapture {
    shadowing: Arc<Shadowing>,
    job: Option<Job>,
    bytes: u64,
    started: Instant,
}

impl ShadowCapture {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        shadowing: Arc<Shadowing>,
        env_id: EnvId,
        target_env_id: EnvId,
        identity: Identity,
        agent: AgentIdentity,
        door: Door,
        source_ip: Option<IpAddr>,
        statement: Analyzed,
        params: Vec<Param>,
        started: Instant,
    ) -> ShadowCapture {
        ShadowCapture {
            shadowing,
            job: Some(Job {
                env_id,
                target_env_id,
                identity,
                agent,
                door,
                source_ip,
                statement,
                params,
                batches: Vec::new(),
                primary_ms: 0,
            }),
            bytes: 0,
            started,
        }
    }

    pub(crate) fn push(&mut self, batch: &RecordBatch) {
        let Some(job) = self.job.as_mut() else { return };
        self.bytes += batch.get_array_memory_size() as u64;
        if self.bytes > MAX_CAPTURE_BYTES {
            // Too large to compare: counted as not replayed.
            self.shadowing.count_dropped(&job.env_id);
            self.job = None;
            return;
        }
        job.batches.push(batch.clone());
    }

    /// The answer ended well: the replay is queued.
    pub(crate) fn finish(mut self) {
        if let Some(mut job) = self.job.take() {
            job.primary_ms = self.started.elapsed().as_millis() as i64;
            self.shadowing.submit(job);
        }
    }
}

/// Adds a batch's rows to `hash`.
fn hash_batch(hash: &mut RowsHash, batch: &RecordBatch) {
    for row in json_rows(batch) {
        hash.add(&row);
    }
}

/// The node's replay worker: replays each job, compares, and reports every `FLUSH_EVERY`.
async fn work(gateway: Weak<Gateway>, mut rx: mpsc::Receiver<Job>) {
    let mut results: Vec<ShadowResult> = Vec::new();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    loop {
        tokio::select! {
            job = rx.recv() => {
                let Some(job) = job else { return };
                let Some(gateway) = gateway.upgrade() else { return };
                results.push(compare(&gateway, job).await);
            }
            _ = tick.tick() => {
                let Some(gateway) = gateway.upgrade() else { return };
                let shadowing = gateway.shadowing();
                let dropped = std::mem::take(&mut *shadowing.dropped.lock().unwrap());
                if results.is_empty() && dropped.is_empty() {
                    continue;
                }
                let batch = std::mem::take(&mut results);
                if let Err(e) = shadowing.store.record_shadow(batch, &dropped).await {
                    tracing::warn!(error = %e.message, "cannot record shadow comparisons");
                }
            }
        }
    }
}

async fn compare(gateway: &Gateway, job: Job) -> ShadowResult {
    let mut primary_hash = RowsHash::default();
    for batch in &job.batches {
        hash_batch(&mut primary_hash, batch);
    }
    let primary = SideOutcome::rows(primary_hash.rows(), primary_hash.hex(), job.primary_ms);
    let shadow = gateway.replay(&job, &job.target_env_id).await;
    let verdict = Verdict::of(&primary, &shadow);
    ShadowResult {
        env_id: job.env_id.clone(),
        verdict,
        detail: ShadowMismatch {
            verdict,
            sql_redacted: job.statement.redacted.clone(),
            primary,
            shadow,
            at: enclave_core::clock::now(),
        },
    }
}

/// Hashes a replay's answer as it streams from the engine.
pub(crate) async fn hash_stream(
    batches: &mut mpsc::Receiver<Result<RecordBatch>>,
) -> Result<RowsHash> {
    let mut hash = RowsHash::default();
    while let Some(batch) = batches.recv().await {
        hash_batch(&mut hash, &batch?);
    }
    Ok(hash)
}

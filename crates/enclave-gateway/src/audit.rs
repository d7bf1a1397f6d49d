//! Stages 11 and 12: the query audit writer, which also meters. Statements hand their entries
//! (and their usage charges) over without waiting; one task seals and stores them in batches
//! (up to 200 entries, or whatever arrived within a few milliseconds), entries and usage in
//! one transaction, so a busy gateway writes a handful of transactions a second rather than
//! one per statement. Reads of the trail call [`AuditWriter::flush`] first, so a node always
//! shows its own statements; shutdown flushes too.

use std::sync::Arc;
use std::time::Duration;

use enclave_core::query::audit::QueryAuditEntry;
use enclave_store::{Store, UsageCharge};
use tokio::sync::{mpsc, oneshot};

use crate::meter::Meter;

enum Message {
    Entry(Box<QueryAuditEntry>, Option<Box<UsageCharge>>),
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::UnboundedSender<Message>,
    meter: Arc<Meter>,
}

const BATCH: usize = 200;
const LINGER: Duration = Duration::from_millis(5);

impl AuditWriter {
    pub fn start(store: Arc<Store>, meter: Arc<Meter>) -> AuditWriter {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(store, meter.clone(), rx));
        AuditWriter { tx, meter }
    }

    /// A statement's audit entry, with its usage when it ran (or was answered).
    pub fn record(&self, entry: QueryAuditEntry, charge: Option<UsageCharge>) {
        if let Some(charge) = &charge {
            self.meter.metered(charge);
        }
        let _ = self
            .tx
            .send(Message::Entry(Box::new(entry), charge.map(Box::new)));
    }

    /// Returns once every entry recorded before the call is stored.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Message::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

async fn run(store: Arc<Store>, meter: Arc<Meter>, mut rx: mpsc::UnboundedReceiver<Message>) {
    while let Some(first) = rx.recv().await {
        let mut batch = Vec::new();
        let mut charges = Vec::new();
        let mut waiting = Vec::new();
        let mut take = |m: Message, batch: &mut Vec<QueryAuditEntry>| match m {
            Message::Entry(e, charge) => {
                batch.push(*e);
                charges.extend(charge.map(|c| *c));
            }
            Message::Flush(done) => waiting.push(done),
        };
        take(first, &mut batch);
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(m)) => take(m, &mut batch),
                _ => break,
            }
        }
        store_batch(store.as_ref(), &meter, batch, charges).await;
        for done in waiting {
            let _ = done.send(());
        }
    }
}

/// Stores a batch, retrying a failed write a few times before logging the entries lost.
async fn store_batch(
    store: &Store,
    meter: &Meter,
    batch: Vec<QueryAuditEntry>,
    charges: Vec<UsageCharge>,
) {
    if batch.is_empty() {
        return;
    }
    for attempt in 0..5u32 {
        match store.record_statements(batch.clone(), &charges).await {
            Ok((_, totals)) => {
                meter.stored(&charges, &totals);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, entries = batch.len(), "query audit write failed");
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
            }
        }
    }
    for e in &batch {
        tracing::error!(query_id = %e.query_id, env_id = %e.env_id, "query audit entry lost");
    }
    // Their usage is lost with them: this node stops counting it as pending.
    meter.stored(&charges, &[]);
}

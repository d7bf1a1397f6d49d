//! Stage 12: the query audit writer. Statements hand their entries over without waiting;
//! one task seals and stores them in batches (up to 200 entries, or whatever arrived within
//! a few milliseconds), so a busy gateway writes a handful of transactions a second rather
//! than one per statement. Reads of the trail call [`AuditWriter::flush`] first, so a node
//! always shows its own statements; shutdown flushes too.

use std::sync::Arc;
use std::time::Duration;

use enclave_core::query::audit::QueryAuditEntry;
use enclave_store::Store;
use tokio::sync::{mpsc, oneshot};

enum Message {
    Entry(Box<QueryAuditEntry>),
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::UnboundedSender<Message>,
}

const BATCH: usize = 200;
const LINGER: Duration = Duration::from_millis(5);

impl AuditWriter {
    pub fn start(store: Arc<Store>) -> AuditWriter {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(store, rx));
        AuditWriter { tx }
    }

    pub fn record(&self, entry: QueryAuditEntry) {
        let _ = self.tx.send(Message::Entry(Box::new(entry)));
    }

    /// Returns once every entry recorded before the call is stored.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Message::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

async fn run(store: Arc<Store>, mut rx: mpsc::UnboundedReceiver<Message>) {
    while let Some(first) = rx.recv().await {
        let mut batch = Vec::new();
        let mut waiting = Vec::new();
        let mut take = |m: Message, batch: &mut Vec<QueryAuditEntry>| match m {
            Message::Entry(e) => batch.push(*e),
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
        store_batch(store.as_ref(), batch).await;
        for done in waiting {
            let _ = done.send(());
        }
    }
}

/// Stores a batch, retrying a failed write a few times before logging the entries lost.
async fn store_batch(store: &Store, batch: Vec<QueryAuditEntry>) {
    if batch.is_empty() {
        return;
    }
    for attempt in 0..5u32 {
        match store.append_query_audit(batch.clone()).await {
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, attempt, entries = batch.len(), "query audit write failed");
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
            }
        }
    }
    for e in &batch {
        tracing::error!(query_id = %e.query_id, env_id = %e.env_id, "query audit entry lost");
    }
}

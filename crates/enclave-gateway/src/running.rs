//! A statement once admitted: its ticket (slot and audit entry), the timer that interrupts it
//! at its deadline or at the client's cancel request, and its rows as they stream (stages 10,
//! 12 and 13 of the pipeline).

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use duckdb::arrow::datatypes::SchemaRef;
use duckdb::arrow::record_batch::RecordBatch;
use enclave_core::billing::Credits;
use enclave_core::query::audit::QueryAuditEntry;
use enclave_core::query::cost::row_blocks;
use enclave_core::query::{sqlstate, with_sqlstate};
use enclave_core::{Error, ErrorCode, Result};
use enclave_store::UsageCharge;
use tokio::sync::mpsc;

use crate::admission::Permit;
use crate::audit::AuditWriter;
use crate::engine::Interrupt;
use crate::peer::Peer;
use crate::result_cache::Capture;

pub(crate) fn outcome_of(e: &Error) -> &'static str {
    match (sqlstate(e), e.details.get("rule").and_then(|r| r.as_str())) {
        ("57014", Some("cancel_request")) => "cancelled",
        ("57014", _) => "timeout",
        ("08006", _) => "cancelled",
        _ => "error",
    }
}

pub(crate) fn cancel_error() -> Error {
    with_sqlstate(
        Error::new(
            ErrorCode::ValidationError,
            "canceling statement due to user request",
        )
        .with_details(serde_json::json!({"rule": "cancel_request"}))
        .with_status(408),
        "57014",
    )
}

/// The client hung up while its statement ran (nobody reads this error; the audit does).
pub(crate) fn disconnect_error() -> Error {
    with_sqlstate(
        Error::new(
            ErrorCode::ValidationError,
            "canceling statement: the client closed the connection",
        )
        .with_details(serde_json::json!({"rule": "client_disconnected"})),
        "08006",
    )
}

pub(crate) fn timeout_error(timeout: Duration) -> Error {
    with_sqlstate(
        Error::new(
            ErrorCode::ValidationError,
            format!(
                "canceling statement due to statement timeout ({} ms)",
                timeout.as_millis()
            ),
        )
        .with_details(serde_json::json!({"rule": "query_timeout_ms", "timeout_ms": timeout.as_millis() as u64}))
        .with_status(408),
        "57014",
    )
}

/// DuckDB answers writes with one `Count` row.
fn affected(batch: &RecordBatch) -> Option<u64> {
    use duckdb::arrow::array::AsArray;
    use duckdb::arrow::datatypes::Int64Type;
    let column = batch.column_by_name("Count")?;
    let counts = column.as_primitive_opt::<Int64Type>()?;
    Some(
        (0..counts.len())
            .map(|i| counts.value(i).max(0) as u64)
            .sum(),
    )
}

/// Interrupts the statement at its deadline (stage 10's timeout), when the client asks (a
/// wire cancel request) or when the client hangs up, unless it finished first.
pub(crate) struct Timer {
    /// 0: running; [`TIMED_OUT`] or [`CANCELLED`] once it interrupted the statement.
    fired: Arc<AtomicU8>,
    task: Option<tokio::task::JoinHandle<()>>,
}

const TIMED_OUT: u8 = 1;
const CANCELLED: u8 = 2;
const DISCONNECTED: u8 = 3;

impl Timer {
    pub(crate) fn start(
        interrupt: Arc<dyn Interrupt>,
        deadline: Instant,
        cancel: Option<futures::channel::oneshot::Receiver<()>>,
        peer: Option<Arc<Peer>>,
    ) -> Timer {
        let fired = Arc::new(AtomicU8::new(0));
        let flag = fired.clone();
        let task = tokio::spawn(async move {
            let cancelled = async {
                // A dropped sender (the session's next statement) is no request.
                let requested = match cancel {
                    Some(rx) => rx.await.is_ok(),
                    None => false,
                };
                if !requested {
                    std::future::pending::<()>().await;
                }
            };
            let hung_up = async {
                match &peer {
                    Some(peer) => peer.closed().await,
                    None => std::future::pending::<()>().await,
                }
            };
            let why = tokio::select! {
                _ = tokio::time::sleep_until(deadline.into()) => TIMED_OUT,
                _ = cancelled => CANCELLED,
                _ = hung_up => DISCONNECTED,
            };
            flag.store(why, Ordering::SeqCst);
            interrupt.interrupt();
        });
        Timer {
            fired,
            task: Some(task),
        }
    }

    /// A timer for an answer that runs nothing (a cached result): it never fires.
    pub(crate) fn idle() -> Timer {
        Timer {
            fired: Arc::default(),
            task: None,
        }
    }

    /// Why the statement was interrupted, as the error the client gets.
    pub(crate) fn reason(&self, timeout: Duration) -> Option<Error> {
        match self.fired.load(Ordering::SeqCst) {
            TIMED_OUT => Some(timeout_error(timeout)),
            CANCELLED => Some(cancel_error()),
            DISCONNECTED => Some(disconnect_error()),
            _ => None,
        }
    }

    /// An engine error caused by our interrupt is the timeout (or the cancel request).
    pub(crate) fn explain(&self, e: Error, timeout: Duration) -> Error {
        self.reason(timeout).unwrap_or(e)
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// What a statement is charged (stage 11), known but for its rows before it runs.
#[derive(Debug, Clone)]
pub(crate) struct Bill {
    /// The usage to record, its credits filled in when the statement is over.
    pub(crate) charge: UsageCharge,
    /// Everything but the rows term.
    pub(crate) base: Credits,
    pub(crate) free: bool,
    pub(crate) estimate: Credits,
}

impl Bill {
    /// What the statement costs having returned or changed `rows` rows.
    pub(crate) fn credits(&self, rows: i64) -> Credits {
        if self.free {
            return Credits::ZERO;
        }
        self.base + row_blocks(rows.max(0) as u64)
    }
}

/// The audit entry of a running statement, written when its rows are done.
pub(crate) struct Ticket {
    pub(crate) writer: AuditWriter,
    pub(crate) entry: Option<QueryAuditEntry>,
    pub(crate) started: Instant,
    pub(crate) rows: i64,
    /// The statement's concurrency slot (none for an answer from the result cache).
    pub(crate) _permit: Option<Permit>,
    pub(crate) bill: Option<Bill>,
    /// What the statement cost, once it is over.
    pub(crate) consumed: Credits,
}

impl Ticket {
    pub(crate) fn query_id(&self) -> String {
        self.entry
            .as_ref()
            .map(|e| e.query_id.clone())
            .unwrap_or_default()
    }

    pub(crate) fn set_policy(&mut self, audit: &crate::enforcement::PolicyAudit) {
        if let Some(entry) = self.entry.as_mut() {
            audit.fill(entry);
        }
    }

    /// Writes the audit entry and, for a statement that succeeded, its usage: refused,
    /// failed, timed-out and cancelled statements and cache hits cost nothing.
    pub(crate) fn close(&mut self, outcome: &str, error: Option<&Error>) {
        if let Some(mut entry) = self.entry.take() {
            entry.rows_returned = self.rows;
            entry.duration_ms = self.started.elapsed().as_millis() as i64;
            entry.outcome = outcome.to_string();
            entry.error_code = error.map(|e| sqlstate(e).to_string());
            let charge = self.bill.take().and_then(|bill| {
                entry.credits_estimated = bill.estimate;
                if outcome != "ok" {
                    return None;
                }
                let credits = match entry.cache_hit {
                    true => Credits::ZERO,
                    false => bill.credits(self.rows),
                };
                entry.credits_consumed = credits;
                self.consumed = credits;
                Some(UsageCharge {
                    credits,
                    at_ms: enclave_core::clock::now_ms(),
                    ..bill.charge
                })
            });
            self.writer.record(entry, charge);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // Rows left unread: the client went away or stopped reading.
        self.close("cancelled", None);
    }
}

/// A statement's rows, streaming. Its concurrency slot, timeout and audit entry last until
/// the rows are read to the end (or dropped).
pub struct Rows {
    pub query_id: String,
    pub schema: SchemaRef,
    /// The command tag's first word (`SELECT`, or the write of `… RETURNING`).
    pub tag: String,
    pub(crate) batches: mpsc::Receiver<Result<RecordBatch>>,
    pub(crate) truncated: Arc<AtomicBool>,
    pub(crate) timer: Timer,
    pub(crate) timeout: Duration,
    pub(crate) ticket: Ticket,
    pub(crate) done: bool,
    /// How errors of a statement under policies are reported.
    pub(crate) errors: crate::enforcement::ErrorPolicy,
    /// Where the rows are kept for the result cache as they pass, when they may be.
    pub(crate) capture: Option<Capture>,
    /// Where the rows are kept for a shadow replay, when the read was sampled.
    pub(crate) shadow: Option<crate::shadow::ShadowCapture>,
    /// The rows come from the result cache.
    pub(crate) cache_hit: bool,
}

impl Rows {
    /// The next batch; `None` at the end. An error ends the rows.
    pub async fn next(&mut self) -> Option<Result<RecordBatch>> {
        if self.done {
            return None;
        }
        match self.batches.recv().await {
            Some(Ok(batch)) => {
                self.ticket.rows += batch.num_rows() as i64;
                if let Some(capture) = self.capture.as_mut() {
                    capture.push(&batch);
                }
                if let Some(shadow) = self.shadow.as_mut() {
                    shadow.push(&batch);
                }
                Some(Ok(batch))
            }
            Some(Err(e)) => Some(Err(self.fail(e))),
            None => self.end().err().map(Err),
        }
    }

    fn fail(&mut self, e: Error) -> Error {
        self.done = true;
        self.capture = None;
        self.shadow = None;
        let e = self.errors.explain(self.timer.explain(e, self.timeout));
        self.ticket.close(outcome_of(&e), Some(&e));
        e
    }

    /// The engine is done: the statement succeeded unless our timeout interrupted it between
    /// batches (then the rows so far are not the result).
    fn end(&mut self) -> Result<()> {
        self.done = true;
        if let Some(e) = self.timer.reason(self.timeout) {
            self.capture = None;
            self.shadow = None;
            self.ticket.close(outcome_of(&e), Some(&e));
            return Err(e);
        }
        if let Some(capture) = self.capture.take() {
            capture.keep(self.schema.clone(), self.truncated());
        }
        // The caller has its answer; the replay comes after.
        self.ticket.close("ok", None);
        if let Some(shadow) = self.shadow.take() {
            shadow.finish();
        }
        Ok(())
    }

    /// Reads a rowless answer to its end: the affected-row count of a write.
    pub(crate) async fn drain(&mut self) -> Result<Option<u64>> {
        let mut count = None;
        while let Some(batch) = self.batches.recv().await {
            match batch {
                Ok(b) => {
                    if let Some(c) = affected(&b) {
                        count = Some(count.unwrap_or(0) + c);
                    }
                }
                Err(e) => return Err(self.fail(e)),
            }
        }
        self.ticket.rows = count.unwrap_or(0) as i64;
        self.end()?;
        Ok(count)
    }

    /// Rows read so far.
    pub fn row_count(&self) -> i64 {
        self.ticket.rows
    }

    /// Whether the row cap left rows out (known once the rows are read).
    pub fn truncated(&self) -> bool {
        self.truncated.load(Ordering::Relaxed)
    }

    /// Whether the rows come from the result cache (stage 9).
    pub fn cache_hit(&self) -> bool {
        self.cache_hit
    }

    /// What the statement cost: known once its rows are read to the end.
    pub fn credits_consumed(&self) -> Credits {
        self.ticket.consumed
    }

    /// Milliseconds since the statement was admitted.
    pub fn elapsed_ms(&self) -> u64 {
        self.ticket.started.elapsed().as_millis() as u64
    }
}

//! `COPY … FROM STDIN` on the wire: the statement is authorized before the client sends
//! anything, its data is spooled as it arrives, and at `CopyDone` the spool is loaded
//! through the pipeline ([`Gateway::load`]) as one statement.

use enclave_core::query::Analyzed;
use enclave_core::{Error, Result};

use crate::load::{self, CopyFormat, LoadRequest, Loaded, Mapping, Spool};
use crate::pipeline::Gateway;
use crate::session::Session;

/// A COPY whose data is arriving.
pub struct PendingCopy {
    statement: Analyzed,
    table: String,
    columns: Vec<String>,
    format: CopyFormat,
    /// `None` once spooling failed.
    spool: Option<Spool>,
    /// The first failure while spooling; reported at `CopyDone`, as PostgreSQL does once
    /// the client stops sending.
    failed: Option<Error>,
}

impl Gateway {
    /// Starts a `COPY … FROM STDIN`: refused (and audited) now if the caller may not write
    /// the table. Returns how many columns the data names (0: all of the table's).
    pub async fn begin_copy(&self, session: &mut Session, statement: &Analyzed) -> Result<usize> {
        let started = std::time::Instant::now();
        let prepared = async {
            let (table, columns, format) = load::copy_request(&statement.statement)?;
            self.check(session, statement, false).await?;
            let spool = Spool::open(
                self.config().spool_dir.clone(),
                enclave_core::id::new_id(enclave_core::id::Kind::Query),
                self.config().load_limit,
                Some(format.clone()),
            )
            .await?;
            Ok::<_, Error>((table, columns, format, spool))
        }
        .await;
        let (table, columns, format, spool) = prepared.inspect_err(|e| {
            self.refused(session, Some(statement), started, e);
        })?;
        let n = columns.len();
        session.copy_in = Some(PendingCopy {
            statement: statement.clone(),
            table,
            columns,
            format,
            spool: Some(spool),
            failed: None,
        });
        Ok(n)
    }

    /// A chunk of COPY data. Failures are kept for [`Gateway::finish_copy`].
    pub async fn copy_data<B: AsRef<[u8]> + Send + 'static>(&self, session: &mut Session, data: B) {
        let Some(copy) = &mut session.copy_in else {
            return;
        };
        if let Some(spool) = copy.spool.take() {
            match spool.append(data).await {
                Ok(spool) => copy.spool = Some(spool),
                Err(e) => copy.failed = Some(e),
            }
        }
    }

    /// The client's data is complete: loads it (or reports what failed while it arrived).
    pub async fn finish_copy(&self, session: &mut Session) -> Result<Loaded> {
        let Some(mut copy) = session.copy_in.take() else {
            return Err(Error::validation(
                "copy",
                "in_progress",
                "no COPY is in progress",
            ));
        };
        let spool = match (copy.failed.take(), copy.spool.take()) {
            (None, Some(spool)) => spool.complete().await,
            (Some(e), _) => Err(e),
            (None, None) => Err(Error::internal()),
        };
        let spool = spool.inspect_err(|e| {
            self.refused(session, Some(&copy.statement), std::time::Instant::now(), e);
        })?;
        let request = LoadRequest {
            table: copy.table.clone(),
            path: spool.path().to_path_buf(),
            format: Spool::format_for(&copy.format),
            mapping: Mapping::ByPosition(copy.columns.clone()),
            create: false,
        };
        // The spool lives until the load is done (dropping it removes the file).
        let result = self.load(session, &copy.statement, request).await;
        drop(spool);
        result.map(|(_, loaded)| loaded)
    }

    /// The client gave up on the COPY (`CopyFail`, or the connection ended).
    pub fn abort_copy(&self, session: &mut Session) {
        if let Some(copy) = session.copy_in.take() {
            let now = std::time::Instant::now();
            self.finish(session, Some(&copy.statement), now, 0, "cancelled", None);
        }
    }
}

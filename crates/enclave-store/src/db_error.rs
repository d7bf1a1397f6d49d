//! Turning database errors into API errors. Causes are logged here, never sent to clients.

use enclave_core::Error;

/// A unique-constraint violation becomes `on_unique`; anything else is internal (or 503 when
/// the database cannot be reached).
pub(crate) fn unique_or(on_unique: impl FnOnce() -> Error) -> impl FnOnce(sqlx::Error) -> Error {
    move |e| {
        if let sqlx::Error::Database(db) = &e {
            if db.is_unique_violation() {
                return on_unique();
            }
        }
        internal(e)
    }
}

/// `If-Match`: 412 when a version was given and the row's differs.
pub(crate) fn check_if_match(
    resource: &str,
    expected: Option<i64>,
    actual: i64,
) -> Result<(), Error> {
    match expected {
        Some(v) if v != actual => Err(Error::precondition_failed(format!(
            "the {resource} changed since it was read (stale If-Match)"
        ))),
        _ => Ok(()),
    }
}

pub(crate) fn internal(e: sqlx::Error) -> Error {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
            tracing::error!(error = %e, "database unavailable");
            Error::unavailable("storage is unavailable")
        }
        other => {
            tracing::error!(error = %other, "database error");
            Error::internal()
        }
    }
}

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

//! The embedded default: SQLite in WAL mode. One writer connection — every write transaction
//! starts with `BEGIN IMMEDIATE`, so it takes the write lock before its first statement and
//! waits its turn instead of failing with SQLITE_BUSY — and a small pool of readers that WAL
//! lets run beside it.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// The writer (one connection) and the readers.
pub(crate) struct SqlitePools {
    pub(crate) write: SqlitePool,
    pub(crate) read: SqlitePool,
}

/// Opens the database at `url` (creating it), migrated.
pub(crate) async fn connect(url: &str) -> anyhow::Result<SqlitePools> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
        // Deleted rows (a destroyed data key, its ciphertext) are overwritten with zeros,
        // not left in free pages of the file.
        .pragma("secure_delete", "on");
    let write = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options.clone())
        .await?;
    sqlx::migrate!("./migrations/sqlite").run(&write).await?;
    let read = SqlitePoolOptions::new()
        .max_connections(4)
        .min_connections(1)
        .connect_with(options)
        .await?;
    Ok(SqlitePools { write, read })
}

/// After a purge: copies the write-ahead log back into the database and truncates it, so the
/// deleted rows' old page images do not linger in the `-wal` file. Best effort (a busy reader
/// can keep some frames until the next checkpoint).
pub(crate) async fn erase_freed_pages(write: &SqlitePool) {
    if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(write)
        .await
    {
        tracing::warn!(error = %e, "checkpoint after an environment purge failed");
    }
}

//! The embedded default: SQLite in WAL mode. One writer connection — every write transaction
//! starts with `BEGIN IMMEDIATE`, so it takes the write lock before its first statement and
//! waits its turn instead of failing with SQLITE_BUSY — and a small pool of readers that WAL
//! lets run beside it.

use std::str::FromStr;
use std::time::Duration;

use enclave_core::environment::{check_writable, EnvStatus, Transition};
use enclave_core::model::{MemberStatus, OrgStatus, Tier};
use enclave_core::promotion::Promotion;
use enclave_core::{Error, Result};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use crate::accounts::*;
use crate::api_keys::*;
use crate::audit::*;
use crate::db_error::{internal, unique_or};
use crate::environments::*;
use crate::journal::*;
use crate::policies::*;
use crate::query_audit::*;
use crate::records::*;
use crate::secrets::*;
use crate::sql::*;
use crate::webhooks::*;
use crate::{now_ms, Bus, Invalidation};

pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
    bus: Bus,
}

impl SqliteStore {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
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
        Ok(SqliteStore {
            write,
            read,
            bus: Bus::default(),
        })
    }

    /// After a purge: copies the write-ahead log back into the database and truncates it,
    /// so the deleted rows' old page images do not linger in the `-wal` file. Best effort
    /// (a busy reader can keep some frames until the next checkpoint).
    async fn erase_freed_pages(&self) {
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.write)
            .await
        {
            tracing::warn!(error = %e, "checkpoint after an environment purge failed");
        }
    }

    fn reader(&self) -> &SqlitePool {
        &self.read
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        self.write
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(internal)
    }

    async fn commit(
        &self,
        tx: Transaction<'static, Sqlite>,
        events: Vec<Invalidation>,
    ) -> Result<()> {
        tx.commit().await.map_err(internal)?;
        self.bus.publish(events);
        Ok(())
    }
}

impl SqliteStore {
    /// Appended to a read that must hold its rows until commit.
    const FOR_UPDATE: &'static str = "";
}

impl_store!(SqliteStore, crate::Backend::Sqlite);
impl_environment_store!(SqliteStore);
impl_audit_store!(SqliteStore);
impl_webhook_store!(SqliteStore, "");
impl_api_key_store!(SqliteStore);
impl_account_store!(SqliteStore);
impl_policy_store!(SqliteStore);
impl_secret_store!(SqliteStore);
impl_query_audit_store!(SqliteStore);

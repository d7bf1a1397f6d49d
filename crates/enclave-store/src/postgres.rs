//! PostgreSQL: several stateless nodes share one database. Identity changes are announced
//! with `pg_notify` inside the writing transaction (delivered only if it commits), and every
//! node listens, so caches everywhere drop what changed within moments.

use std::time::Duration;

use enclave_core::environment::{check_writable, EnvStatus, Transition};
use enclave_core::model::{MemberStatus, OrgStatus, Tier};
use enclave_core::promotion::Promotion;
use enclave_core::{Error, Result};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};
use tokio::task::JoinHandle;

use crate::accounts::*;
use crate::api_keys::*;
use crate::audit::*;
use crate::db_error::{internal, unique_or};
use crate::environments::*;
use crate::invalidation::CHANNEL;
use crate::journal::*;
use crate::policies::*;
use crate::query_audit::*;
use crate::records::*;
use crate::secrets::*;
use crate::sql::*;
use crate::webhooks::*;
use crate::{now_ms, Bus, Invalidation};

pub struct PgStore {
    pool: PgPool,
    bus: Bus,
    node_id: String,
    listener: JoinHandle<()>,
}

/// What travels on the channel: the event and the node that caused it (which has already
/// applied it locally).
#[derive(Serialize, Deserialize)]
struct Notice {
    node: String,
    event: Invalidation,
}

impl PgStore {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let pool = Self::migrated_pool(url).await?;
        let bus = Bus::default();
        let node_id = format!(
            "node_{}",
            ulid::Ulid::new().to_string().to_ascii_lowercase()
        );
        let listener = tokio::spawn(listen(pool.clone(), bus.clone(), node_id.clone()));
        Ok(PgStore {
            pool,
            bus,
            node_id,
            listener,
        })
    }

    /// Applies migrations and closes the pool: no listener, nothing left running.
    pub async fn migrate(url: &str) -> anyhow::Result<()> {
        Self::migrated_pool(url).await?.close().await;
        Ok(())
    }

    async fn migrated_pool(url: &str) -> anyhow::Result<PgPool> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        // sqlx serialises concurrent migrators with an advisory lock.
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(pool)
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(internal)
    }

    async fn commit(
        &self,
        mut tx: Transaction<'static, Postgres>,
        events: Vec<Invalidation>,
    ) -> Result<()> {
        for event in &events {
            let notice = Notice {
                node: self.node_id.clone(),
                event: event.clone(),
            };
            let payload = serde_json::to_string(&notice).map_err(|_| Error::internal())?;
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(payload)
                .execute(&mut *tx)
                .await
                .map_err(internal)?;
        }
        tx.commit().await.map_err(internal)?;
        self.bus.publish(events);
        Ok(())
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Relays other nodes' notices to this node's bus. After a lost connection it publishes
/// [`Invalidation::All`], since notices sent meanwhile are gone.
async fn listen(pool: PgPool, bus: Bus, node_id: String) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "invalidation listener cannot connect; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "cannot LISTEN for invalidations; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        bus.publish([Invalidation::All]);
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => match serde_json::from_str::<Notice>(n.payload()) {
                    Ok(notice) if notice.node != node_id => bus.publish([notice.event]),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "ignoring malformed invalidation notice"),
                },
                // The connection dropped and was re-established: notices may have been missed.
                Ok(None) => bus.publish([Invalidation::All]),
                Err(e) => {
                    tracing::warn!(error = %e, "invalidation listener failed; reconnecting");
                    bus.publish([Invalidation::All]);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}

impl PgStore {
    /// SQLite rewrites its file after a purge; PostgreSQL's dead rows are VACUUM's to reclaim.
    async fn erase_freed_pages(&self) {}

    /// Appended to a read that must hold its rows until commit.
    const FOR_UPDATE: &'static str = " FOR UPDATE";
}

impl_store!(PgStore, crate::Backend::Postgres);
impl_environment_store!(PgStore);
impl_audit_store!(PgStore);
impl_webhook_store!(PgStore, "FOR UPDATE OF d SKIP LOCKED");
impl_api_key_store!(PgStore);
impl_account_store!(PgStore);
impl_policy_store!(PgStore);
impl_secret_store!(PgStore);
impl_query_audit_store!(PgStore);

//! PostgreSQL: several stateless nodes share one database. Identity changes are announced
//! with `pg_notify` inside the writing transaction (delivered only if it commits), and every
//! node listens, so caches everywhere drop what changed within moments.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnection, PgListener, PgPool, PgPoolOptions};
use tokio::task::JoinHandle;

use crate::invalidation::CHANNEL;
use crate::{Bus, Invalidation};

/// The pool, this node's name on the channel, and the task relaying other nodes' notices.
pub(crate) struct PgPools {
    pub(crate) pool: PgPool,
    node_id: String,
    listener: JoinHandle<()>,
}

impl Drop for PgPools {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// What travels on the channel: the event and the node that caused it (which has already
/// applied it locally).
#[derive(Serialize, Deserialize)]
struct Notice {
    node: String,
    event: Invalidation,
}

/// Opens a migrated pool and starts relaying other nodes' invalidations to `bus`.
pub(crate) async fn connect(url: &str, bus: Bus) -> anyhow::Result<PgPools> {
    let pool = migrated_pool(url).await?;
    let node_id = format!(
        "node_{}",
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    );
    let listener = tokio::spawn(listen(pool.clone(), bus, node_id.clone()));
    Ok(PgPools {
        pool,
        node_id,
        listener,
    })
}

/// Applies migrations and closes the pool: no listener, nothing left running.
pub(crate) async fn migrate(url: &str) -> anyhow::Result<()> {
    migrated_pool(url).await?.close().await;
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

/// Sends `events` to every other node, inside the transaction on `conn`: they are delivered
/// only if it commits.
pub(crate) async fn notify(
    pools: &PgPools,
    conn: &mut PgConnection,
    events: &[Invalidation],
) -> Result<(), sqlx::Error> {
    for event in events {
        let notice = Notice {
            node: pools.node_id.clone(),
            event: event.clone(),
        };
        let payload =
            serde_json::to_string(&notice).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
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

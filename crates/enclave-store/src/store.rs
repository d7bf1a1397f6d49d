//! The store: one implementation for both databases. This module holds the few places where
//! SQLite and PostgreSQL really differ — how a write transaction begins, how a commit tells
//! other nodes, row locks, erasing freed pages; every operation is written once on top of
//! them (`users.rs`, `environments.rs`, …) with the executor of `db.rs`.

use enclave_core::Result;

use crate::db::{self, On, Tx};
use crate::db_error::internal;
use crate::postgres::{self, PgPools};
use crate::sqlite::{self, SqlitePools};
use crate::{Backend, Bus, Invalidation};

/// Everything the control plane persists. Every method is one transaction; every method that
/// changes something takes the change's [`Origin`](crate::Origin) and writes its audit entry
/// (and webhook outbox rows) in that same transaction. Methods that change identity state
/// publish the matching [`Invalidation`] after commit (and, on PostgreSQL, to every other node
/// through `NOTIFY`). The operations live beside their SQL, one module per resource:
/// `users.rs`, `organizations.rs`, `members.rs`, `sessions.rs`, `idempotency.rs`,
/// `environments.rs`, `api_keys.rs`, `accounts.rs`, `policies.rs`, `secrets.rs`,
/// `webhooks.rs`, `audit.rs`, `query_audit.rs`.
pub struct Store {
    pools: Pools,
    bus: Bus,
}

enum Pools {
    Sqlite(SqlitePools),
    Postgres(PgPools),
}

impl Store {
    /// SQLite at `url` (created when missing), migrated.
    pub async fn sqlite(url: &str) -> anyhow::Result<Self> {
        Ok(Store {
            pools: Pools::Sqlite(sqlite::connect(url).await?),
            bus: Bus::default(),
        })
    }

    /// PostgreSQL at `url`, migrated, listening for other nodes' invalidations.
    pub async fn postgres(url: &str) -> anyhow::Result<Self> {
        let bus = Bus::default();
        Ok(Store {
            pools: Pools::Postgres(postgres::connect(url, bus.clone()).await?),
            bus,
        })
    }

    pub fn backend(&self) -> Backend {
        match self.pools {
            Pools::Sqlite(_) => Backend::Sqlite,
            Pools::Postgres(_) => Backend::Postgres,
        }
    }

    /// The invalidation bus of this node: caches subscribe to it.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Storage reachable (for `/ready`).
    pub async fn ping(&self) -> Result<()> {
        db::query("SELECT 1")
            .execute(self.reader())
            .await
            .map(|_| ())
            .map_err(internal)
    }

    /// Publishes invalidations of state kept outside the store (an engine's catalog) to this
    /// node's caches and every other node's.
    pub async fn announce(&self, events: Vec<Invalidation>) -> Result<()> {
        let tx = self.begin_write().await?;
        self.commit(tx, events).await
    }

    /// Where reads run: SQLite's reader pool (WAL lets it read beside the writer), or the pool.
    pub(crate) fn reader(&self) -> On<'_> {
        match &self.pools {
            Pools::Sqlite(p) => On::SqlitePool(&p.read),
            Pools::Postgres(p) => On::PgPool(&p.pool),
        }
    }

    /// A write transaction. On SQLite it takes the write lock before its first statement
    /// (`BEGIN IMMEDIATE`), so it waits its turn and never fails with SQLITE_BUSY halfway.
    pub(crate) async fn begin_write(&self) -> Result<Tx> {
        match &self.pools {
            Pools::Sqlite(p) => p
                .write
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map(Tx::Sqlite)
                .map_err(internal),
            Pools::Postgres(p) => p.pool.begin().await.map(Tx::Postgres).map_err(internal),
        }
    }

    /// Commits, then publishes `events` to this node's caches; on PostgreSQL they are first
    /// sent to the other nodes inside the transaction (`pg_notify`, delivered on commit).
    pub(crate) async fn commit(&self, mut tx: Tx, events: Vec<Invalidation>) -> Result<()> {
        if let (Pools::Postgres(pools), Tx::Postgres(conn)) = (&self.pools, &mut tx) {
            postgres::notify(pools, conn, &events)
                .await
                .map_err(internal)?;
        }
        tx.commit().await.map_err(internal)?;
        self.bus.publish(events);
        Ok(())
    }

    /// After a purge. SQLite rewrites its write-ahead log so deleted rows' old pages do not
    /// linger; PostgreSQL's dead rows are VACUUM's to reclaim.
    pub(crate) async fn erase_freed_pages(&self) {
        if let Pools::Sqlite(p) = &self.pools {
            sqlite::erase_freed_pages(&p.write).await;
        }
    }
}

/// Appended to a read inside `tx` that must hold its rows until commit: PostgreSQL locks them
/// (`FOR UPDATE`); SQLite's write transaction already excludes every other writer.
pub(crate) fn for_update(tx: &Tx) -> &'static str {
    match tx {
        Tx::Sqlite(_) => "",
        Tx::Postgres(_) => " FOR UPDATE",
    }
}

/// How a worker claims queued rows inside `tx`: PostgreSQL locks them and skips rows another
/// node holds (`FOR UPDATE OF d SKIP LOCKED`); SQLite has one writer, nothing to skip.
pub(crate) fn claim_skipping_locked(tx: &Tx) -> &'static str {
    match tx {
        Tx::Sqlite(_) => "",
        Tx::Postgres(_) => "FOR UPDATE OF d SKIP LOCKED",
    }
}

#[cfg(test)]
mod tests {
    use enclave_core::model::Tier;

    use super::*;
    use crate::records::{NewOrg, NewUser, OrgRecord};
    use crate::testing::{TempPostgres, TempSqlite};

    /// A value no variant names — written behind the store's back — is an error naming its
    /// column, never read as some default.
    async fn unknown_values_fail_naming_the_column(store: Store) {
        let user = NewUser {
            id: "usr_01m8ytypedrows00000000000".into(),
            email: "owner@example.com".into(),
            name: "Owner".into(),
            password_hash: None,
        };
        let org = NewOrg {
            id: "org_01m8ytypedrows00000000000".into(),
            name: "Typed".into(),
            slug: "typed".into(),
            billing_email: "owner@example.com".into(),
            cloud_region: None,
            tier: Tier::Growth,
            settings: serde_json::json!({}),
        };
        let org = store.bootstrap(user, org, vec![]).await.unwrap().unwrap();
        assert_eq!(
            store.org(&org.id).await.unwrap().unwrap().tier,
            Tier::Growth
        );

        let mut tx = store.begin_write().await.unwrap();
        db::query("UPDATE organizations SET tier = 'platinum' WHERE id = $1")
            .bind(&org.id)
            .execute(&mut tx)
            .await
            .unwrap();
        store.commit(tx, vec![]).await.unwrap();

        let err = db::query_as::<OrgRecord>(format!(
            "SELECT {} FROM organizations WHERE id = $1",
            crate::organizations::ORG_COLUMNS
        ))
        .bind(&org.id)
        .fetch_one(store.reader())
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("\"tier\""), "{err}");
        assert!(err.contains("unknown tier `platinum`"), "{err}");
        assert!(store.org(&org.id).await.is_err());
    }

    #[tokio::test]
    async fn unknown_enum_values_are_errors_on_sqlite() {
        let db = TempSqlite::create();
        unknown_values_fail_naming_the_column(Store::sqlite(&db.url).await.unwrap()).await;
    }

    #[tokio::test]
    async fn unknown_enum_values_are_errors_on_postgres() {
        let Some(db) = TempPostgres::create().await else {
            return;
        };
        unknown_values_fail_naming_the_column(Store::postgres(&db.url).await.unwrap()).await;
    }
}

//! Limits shared by the nodes of a cluster: rate-limit token buckets that nodes take small
//! slices from (so a request pays a round trip only when its node's slice is used up), and
//! leases of an environment's concurrent statements.

use enclave_core::id::{EnvId, NodeId};
use enclave_core::Result;

use crate::db;
use crate::db_error::internal;
use crate::store::{for_update, Store};

/// What a node took from a shared bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Taken {
    /// Requests granted (at most what was asked; 0: the bucket is empty).
    pub granted: u32,
    /// Tokens left in the bucket after the take.
    pub left: f64,
}

impl Store {
    /// Takes up to `want` tokens from the bucket `key` (created full), which holds at most
    /// `burst` and refills `per_ms` tokens a millisecond, at `now`.
    pub async fn take_rate_tokens(
        &self,
        key: &str,
        burst: f64,
        per_ms: f64,
        want: u32,
        now: i64,
    ) -> Result<Taken> {
        let mut tx = self.begin_write().await?;
        db::query(
            "INSERT INTO rate_buckets (key, tokens, refilled_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(burst)
        .bind(now)
        .execute(&mut tx)
        .await
        .map_err(internal)?;
        let (tokens, refilled_at): (f64, i64) = db::query_as(format!(
            "SELECT tokens, refilled_at FROM rate_buckets WHERE key = $1{}",
            for_update(&tx)
        ))
        .bind(key)
        .fetch_one(&mut tx)
        .await
        .map_err(internal)?;
        let available = (tokens + (now - refilled_at).max(0) as f64 * per_ms).min(burst);
        let granted = (available.floor().max(0.0) as u32).min(want);
        let left = available - granted as f64;
        db::query("UPDATE rate_buckets SET tokens = $2, refilled_at = $3 WHERE key = $1")
            .bind(key)
            .bind(left)
            .bind(now.max(refilled_at))
            .execute(&mut tx)
            .await
            .map_err(internal)?;
        self.commit(tx, vec![]).await?;
        Ok(Taken { granted, left })
    }

    /// Forgets buckets untouched since `before` (full again by then, they hold nothing).
    pub async fn purge_rate_buckets(&self, before: i64) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let done = db::query("DELETE FROM rate_buckets WHERE refilled_at < $1")
            .bind(before)
            .execute(&mut tx)
            .await
            .map_err(internal)?;
        self.commit(tx, vec![]).await?;
        Ok(done.rows_affected())
    }

    /// Sets this node's lease of `env_id`'s concurrent statements to `slots` (up to what
    /// `limit` leaves after the other nodes' live leases), valid until `expires_at`; answers
    /// the slots leased.
    pub async fn lease_slots(
        &self,
        env_id: &EnvId,
        node_id: &NodeId,
        slots: i64,
        limit: i64,
        now: i64,
        expires_at: i64,
    ) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        // The environment's row serialises the nodes leasing its slots.
        db::query(format!(
            "SELECT id FROM environments WHERE id = $1{}",
            for_update(&tx)
        ))
        .bind(env_id)
        .execute(&mut tx)
        .await
        .map_err(internal)?;
        let others: i64 = db::query_scalar(
            "SELECT CAST(COALESCE(SUM(slots), 0) AS BIGINT) FROM admission_leases \
             WHERE env_id = $1 AND node_id <> $2 AND expires_at > $3",
        )
        .bind(env_id)
        .bind(node_id)
        .bind(now)
        .fetch_one(&mut tx)
        .await
        .map_err(internal)?;
        let leased = slots.min(limit - others).max(0);
        db::query(
            "INSERT INTO admission_leases (env_id, node_id, slots, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (env_id, node_id) DO UPDATE SET slots = excluded.slots, expires_at = excluded.expires_at",
        )
        .bind(env_id)
        .bind(node_id)
        .bind(leased)
        .bind(expires_at)
        .execute(&mut tx)
        .await
        .map_err(internal)?;
        self.commit(tx, vec![]).await?;
        Ok(leased)
    }

    /// Drops this node's leases (it stops) and every lease expired before `now`.
    pub async fn release_leases(&self, node_id: &NodeId, now: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        db::query("DELETE FROM admission_leases WHERE node_id = $1 OR expires_at < $2")
            .bind(node_id)
            .bind(now)
            .execute(&mut tx)
            .await
            .map_err(internal)?;
        self.commit(tx, vec![]).await
    }
}

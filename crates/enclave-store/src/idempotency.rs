//! Idempotency records: a request with an `Idempotency-Key` is begun, completed with its
//! response, or abandoned; old records are purged.

use crate::db::{self};
use crate::db_error::internal;
use crate::records::*;
use crate::store::Store;

impl Store {
    pub async fn idempotency_begin(
        &self,
        b: IdempotencyBegin,
    ) -> enclave_core::Result<IdempotencyState> {
        let mut tx = self.begin_write().await?;
        let inserted = db::query(
            "INSERT INTO idempotency_keys (principal, key, route, body_hash, state, created_at) \
             VALUES ($1, $2, $3, $4, 'running', $5) ON CONFLICT (principal, key) DO NOTHING",
        )
        .bind(&b.principal)
        .bind(&b.key)
        .bind(&b.route)
        .bind(&b.body_hash)
        .bind(b.now)
        .execute(&mut tx)
        .await
        .map_err(internal)?
        .rows_affected();
        let replaced = if inserted == 1 {
            1
        } else {
            db::query(
                "UPDATE idempotency_keys SET route = $3, body_hash = $4, state = 'running', status = NULL, \
                 headers = NULL, body = NULL, created_at = $5 \
                 WHERE principal = $1 AND key = $2 AND created_at < $6",
            )
            .bind(&b.principal)
            .bind(&b.key)
            .bind(&b.route)
            .bind(&b.body_hash)
            .bind(b.now)
            .bind(b.expired_before)
            .execute(&mut tx)
            .await
            .map_err(internal)?
            .rows_affected()
        };
        if replaced == 1 {
            self.commit(tx, vec![]).await?;
            return Ok(IdempotencyState::Started);
        }
        type Row = (
            String,
            String,
            String,
            Option<i64>,
            Option<sqlx::types::Json<Vec<(String, String)>>>,
            Option<Vec<u8>>,
        );
        let (route, body_hash, state, status, headers, body): Row = db::query_as(
            "SELECT route, body_hash, state, status, headers, body FROM idempotency_keys \
             WHERE principal = $1 AND key = $2",
        )
        .bind(&b.principal)
        .bind(&b.key)
        .fetch_one(&mut tx)
        .await
        .map_err(internal)?;
        Ok(if route != b.route || body_hash != b.body_hash {
            IdempotencyState::Mismatch
        } else if state != "done" {
            IdempotencyState::InProgress
        } else {
            IdempotencyState::Completed(StoredResponse {
                status: status.unwrap_or(200) as u16,
                headers: headers.map(|h| h.0).unwrap_or_default(),
                body: body.unwrap_or_default(),
            })
        })
    }

    pub async fn idempotency_complete(
        &self,
        principal: &str,
        key: &str,
        response: StoredResponse,
    ) -> enclave_core::Result<()> {
        let mut tx = self.begin_write().await?;
        db::query(
            "UPDATE idempotency_keys SET state = 'done', status = $3, headers = $4, body = $5 \
             WHERE principal = $1 AND key = $2",
        )
        .bind(principal)
        .bind(key)
        .bind(response.status as i64)
        .bind(sqlx::types::Json(response.headers))
        .bind(response.body)
        .execute(&mut tx)
        .await
        .map_err(internal)?;
        self.commit(tx, vec![]).await
    }

    pub async fn idempotency_abandon(
        &self,
        principal: &str,
        key: &str,
    ) -> enclave_core::Result<()> {
        let mut tx = self.begin_write().await?;
        db::query(
            "DELETE FROM idempotency_keys WHERE principal = $1 AND key = $2 AND state = 'running'",
        )
        .bind(principal)
        .bind(key)
        .execute(&mut tx)
        .await
        .map_err(internal)?;
        self.commit(tx, vec![]).await
    }

    /// Deletes records older than `before_ms`; returns how many.
    pub async fn idempotency_purge(&self, before_ms: i64) -> enclave_core::Result<u64> {
        let mut tx = self.begin_write().await?;
        let n = db::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(before_ms)
            .execute(&mut tx)
            .await
            .map_err(internal)?
            .rows_affected();
        self.commit(tx, vec![]).await?;
        Ok(n)
    }
}

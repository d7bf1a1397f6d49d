//! Webhook endpoints and their outbox. Deliveries are queued by `journal` in the
//! transaction of the change; workers on any node claim due ones with a lease (PostgreSQL:
//! `FOR UPDATE SKIP LOCKED`, so two nodes never claim the same row), send, and record the
//! attempt.

use enclave_core::clock::now_ms;
use enclave_core::id::OrgId;
use enclave_core::webhook::WebhookStatus;
use enclave_core::{Error, Result};

use crate::db::{self, Tx};
use crate::db_error::{check_if_match, internal};
use crate::journal::*;
use crate::records::*;
use crate::store::for_update;
use crate::store::Store;

pub(crate) const WEBHOOK_COLUMNS: &str = "id, org_id, url, description, events, status, secret, \
     previous_secret, previous_secret_expires_at, consecutive_failures, disabled_reason, \
     created_by, created_at, updated_at, version";

pub(crate) const DELIVERY_COLUMNS: &str = "id, webhook_id, org_id, event_id, event_type, payload, \
     status, attempts, next_attempt_at, lease_until, created_at, updated_at";

/// Turns one stored webhook secret into what is stored instead: `(webhook_id, stored)`.
pub type Reseal<'a> = dyn Fn(&str, &str) -> Result<String> + Send + Sync + 'a;

impl Store {
    pub async fn create_webhook(
        &self,
        hook: NewWebhook,
        origin: &Origin,
    ) -> enclave_core::Result<WebhookRecord> {
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        let rec: WebhookRecord = db::query_as(format!(
            "INSERT INTO webhooks (id, org_id, url, description, events, status, secret, \
             consecutive_failures, created_by, created_at, updated_at, version) \
             VALUES ($1, $2, $3, $4, $5, 'active', $6, 0, $7, $8, $8, 1) RETURNING {WEBHOOK_COLUMNS}"
        ))
        .bind(&hook.id)
        .bind(&hook.org_id)
        .bind(&hook.url)
        .bind(&hook.description)
        .bind(sqlx::types::Json(&hook.events))
        .bind(&hook.secret)
        .bind(&hook.created_by)
        .bind(now)
        .fetch_one(&mut tx)
        .await
        .map_err(internal)?;
        subscribe(&mut tx, &rec.id, &hook.events).await?;
        journal(
            &mut tx,
            origin,
            Change::of("webhook.created", None, Some(&rec)),
        )
        .await?;
        self.commit(tx, vec![]).await?;
        Ok(rec)
    }

    pub async fn webhooks(
        &self,
        org_id: &OrgId,
        page: &PageQuery,
    ) -> enclave_core::Result<(Vec<WebhookRecord>, i64)> {
        let rows = db::query_as(format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE org_id = $1 \
             AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3"
        ))
        .bind(org_id)
        .bind(page.after.as_deref())
        .bind(page.limit as i64 + 1)
        .fetch_all(self.reader())
        .await
        .map_err(internal)?;
        let total = db::query_scalar("SELECT COUNT(*) FROM webhooks WHERE org_id = $1")
            .bind(org_id)
            .fetch_one(self.reader())
            .await
            .map_err(internal)?;
        Ok((rows, total))
    }

    pub async fn webhook(
        &self,
        org_id: &OrgId,
        webhook_id: &str,
    ) -> enclave_core::Result<Option<WebhookRecord>> {
        db::query_as(format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE org_id = $1 AND id = $2"
        ))
        .bind(org_id)
        .bind(webhook_id)
        .fetch_optional(self.reader())
        .await
        .map_err(internal)
    }

    /// Re-enabling (`status: active`) clears the failure run that disabled it.
    pub async fn update_webhook(
        &self,
        org_id: &OrgId,
        webhook_id: &str,
        expected_version: Option<i64>,
        patch: WebhookPatch,
        origin: &Origin,
    ) -> enclave_core::Result<WebhookRecord> {
        let mut tx = self.begin_write().await?;
        let before = select_webhook(&mut tx, org_id, webhook_id, expected_version).await?;
        let reenable = patch.status == Some(enclave_core::webhook::WebhookStatus::Active);
        let rec: WebhookRecord = db::query_as(format!(
            "UPDATE webhooks SET url = COALESCE($3, url), description = COALESCE($4, description), \
             events = COALESCE($5, events), status = COALESCE($6, status), \
             consecutive_failures = CASE WHEN $7 THEN 0 ELSE consecutive_failures END, \
             disabled_reason = CASE WHEN $6 IS NULL THEN disabled_reason \
               WHEN $7 THEN NULL ELSE 'disabled by a user' END, \
             updated_at = $8, version = version + 1 \
             WHERE org_id = $1 AND id = $2 RETURNING {WEBHOOK_COLUMNS}"
        ))
        .bind(org_id)
        .bind(webhook_id)
        .bind(patch.url)
        .bind(patch.description)
        .bind(patch.events.as_ref().map(sqlx::types::Json))
        .bind(patch.status.map(|s| s.as_str()))
        .bind(reenable)
        .bind(now_ms())
        .fetch_one(&mut tx)
        .await
        .map_err(internal)?;
        if let Some(events) = &patch.events {
            db::query("DELETE FROM webhook_subscriptions WHERE webhook_id = $1")
                .bind(webhook_id)
                .execute(&mut tx)
                .await
                .map_err(internal)?;
            subscribe(&mut tx, webhook_id, events).await?;
        }
        journal(
            &mut tx,
            origin,
            Change::of("webhook.updated", Some(&before), Some(&rec)),
        )
        .await?;
        self.commit(tx, vec![]).await?;
        Ok(rec)
    }

    pub async fn delete_webhook(
        &self,
        org_id: &OrgId,
        webhook_id: &str,
        expected_version: Option<i64>,
        origin: &Origin,
    ) -> enclave_core::Result<()> {
        let mut tx = self.begin_write().await?;
        let before = select_webhook(&mut tx, org_id, webhook_id, expected_version).await?;
        db::query("DELETE FROM webhooks WHERE id = $1")
            .bind(webhook_id)
            .execute(&mut tx)
            .await
            .map_err(internal)?;
        journal(
            &mut tx,
            origin,
            Change::of("webhook.deleted", Some(&before), None),
        )
        .await?;
        self.commit(tx, vec![]).await
    }

    /// The current secret becomes the previous one, signing until `old_until`.
    pub async fn rotate_webhook_secret(
        &self,
        org_id: &OrgId,
        webhook_id: &str,
        secret: String,
        old_until: i64,
        origin: &Origin,
    ) -> enclave_core::Result<WebhookRecord> {
        let mut tx = self.begin_write().await?;
        let before = select_webhook(&mut tx, org_id, webhook_id, None).await?;
        let rec: WebhookRecord = db::query_as(format!(
            "UPDATE webhooks SET previous_secret = secret, previous_secret_expires_at = $3, \
             secret = $4, updated_at = $5, version = version + 1 \
             WHERE org_id = $1 AND id = $2 RETURNING {WEBHOOK_COLUMNS}"
        ))
        .bind(org_id)
        .bind(webhook_id)
        .bind(old_until)
        .bind(&secret)
        .bind(now_ms())
        .fetch_one(&mut tx)
        .await
        .map_err(internal)?;
        // The secrets are never shown; `after` says until when the old one signs.
        let change = Change::of("webhook.secret_rotated", Some(&before), None);
        let change = change.after(serde_json::json!({
            "webhook_id": rec.id,
            "previous_secret_expires_at": enclave_core::audit::timestamp(old_until),
            "version": rec.version,
        }));
        journal(&mut tx, origin, change).await?;
        self.commit(tx, vec![]).await?;
        Ok(rec)
    }

    /// Queues a `webhook.test` event for this endpoint only, due now; returns the delivery.
    pub async fn queue_test_event(
        &self,
        org_id: &OrgId,
        webhook_id: &str,
        origin: &Origin,
    ) -> enclave_core::Result<DeliveryRecord> {
        let mut tx = self.begin_write().await?;
        let hook = select_webhook(&mut tx, org_id, webhook_id, None).await?;
        let now = now_ms();
        let event_id = enclave_core::id::new_id(enclave_core::id::Kind::Event);
        let payload = serde_json::json!({
            "id": event_id,
            "type": "webhook.test",
            "created_at": enclave_core::audit::timestamp(now),
            "org_id": org_id,
            "data": {"webhook_id": webhook_id, "message": "a test event sent on request"},
        })
        .to_string();
        let id = enqueue_delivery(
            &mut tx,
            webhook_id,
            org_id,
            &event_id,
            "webhook.test",
            &payload,
            now,
        )
        .await?;
        let change = Change::of("webhook.tested", Some(&hook), None)
            .after(serde_json::json!({"delivery_id": id, "event_id": event_id}));
        journal(&mut tx, origin, change).await?;
        let rec = select_delivery(&mut tx, webhook_id, &id).await?;
        self.commit(tx, vec![]).await?;
        Ok(rec)
    }

    /// Newest first, with every attempt of the deliveries on the page (one more query).
    pub async fn deliveries(
        &self,
        org_id: &OrgId,
        webhook_id: &str,
        page: &PageQuery,
    ) -> enclave_core::Result<(Vec<DeliveryRecord>, Vec<AttemptRecord>, i64)> {
        let rows: Vec<DeliveryRecord> = db::query_as(format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE org_id = $1 AND webhook_id = $2 \
             AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        ))
        .bind(org_id)
        .bind(webhook_id)
        .bind(page.after.as_deref())
        .bind(page.limit as i64 + 1)
        .fetch_all(self.reader())
        .await
        .map_err(internal)?;
        let total =
            db::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE webhook_id = $1")
                .bind(webhook_id)
                .fetch_one(self.reader())
                .await
                .map_err(internal)?;
        // The attempts of exactly the deliveries on this page, in one query.
        let (first, last) = match (
            rows.first(),
            rows.iter().take(page.limit as usize).next_back(),
        ) {
            (Some(f), Some(l)) => (f.id.clone(), l.id.clone()),
            _ => return Ok((rows, vec![], total)),
        };
        let attempts = db::query_as(
            "SELECT id, delivery_id, webhook_id, attempt, status_code, latency_ms, error, created_at \
             FROM webhook_attempts WHERE webhook_id = $1 AND delivery_id <= $2 AND delivery_id >= $3 \
             ORDER BY delivery_id DESC, attempt",
        )
        .bind(webhook_id)
        .bind(&first)
        .bind(&last)
        .fetch_all(self.reader())
        .await
        .map_err(internal)?;
        Ok((rows, attempts, total))
    }

    /// Sends a delivery once more, now, whatever its state.
    pub async fn redeliver(
        &self,
        org_id: &OrgId,
        webhook_id: &str,
        delivery_id: &str,
        origin: &Origin,
    ) -> enclave_core::Result<DeliveryRecord> {
        let mut tx = self.begin_write().await?;
        let hook = select_webhook(&mut tx, org_id, webhook_id, None).await?;
        let now = now_ms();
        let done = db::query(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $3, \
             lease_until = NULL, updated_at = $3 WHERE webhook_id = $1 AND id = $2",
        )
        .bind(webhook_id)
        .bind(delivery_id)
        .bind(now)
        .execute(&mut tx)
        .await
        .map_err(internal)?
        .rows_affected();
        if done == 0 {
            return Err(enclave_core::Error::not_found("delivery"));
        }
        let rec = select_delivery(&mut tx, webhook_id, delivery_id).await?;
        let change =
            Change::of("webhook.redelivered", Some(&hook), None).after(serde_json::json!({
                "delivery_id": rec.id, "event_id": rec.event_id, "event_type": rec.event_type,
            }));
        journal(&mut tx, origin, change).await?;
        self.commit(tx, vec![]).await?;
        Ok(rec)
    }

    /// Leases up to `limit` due deliveries of active endpoints until `now + lease_ms`.
    pub async fn claim_deliveries(
        &self,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> enclave_core::Result<Vec<ClaimedDelivery>> {
        // Idle workers poll often: a read answers "nothing due" without taking the
        // write lock (SQLite) or starting a write transaction (PostgreSQL).
        let due: Option<i32> = db::query_scalar(
            "SELECT 1 FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $1 \
             AND (lease_until IS NULL OR lease_until < $1) LIMIT 1",
        )
        .bind(now)
        .fetch_optional(self.reader())
        .await
        .map_err(internal)?;
        if due.is_none() {
            return Ok(vec![]);
        }
        let mut tx = self.begin_write().await?;
        // The lease test is repeated outside the subquery: on PostgreSQL a row another
        // node claimed meanwhile is re-checked after its lock is released, and skipped.
        let rows: Vec<DeliveryRecord> = db::query_as(format!(
            "UPDATE webhook_deliveries SET lease_until = $2, updated_at = $1 \
             WHERE (lease_until IS NULL OR lease_until < $1) AND status = 'pending' AND id IN ( \
               SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
               WHERE d.status = 'pending' AND d.next_attempt_at <= $1 \
               AND (d.lease_until IS NULL OR d.lease_until < $1) AND w.status = 'active' \
               ORDER BY d.next_attempt_at LIMIT $3 {}) \
             RETURNING {DELIVERY_COLUMNS}",
            crate::store::claim_skipping_locked(&tx)
        ))
        .bind(now)
        .bind(now + lease_ms)
        .bind(limit)
        .fetch_all(&mut tx)
        .await
        .map_err(internal)?;
        let mut claimed = Vec::with_capacity(rows.len());
        if !rows.is_empty() {
            let mut ids: Vec<&str> = rows.iter().map(|d| d.webhook_id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            let placeholders: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id IN ({})",
                placeholders.join(", ")
            );
            let mut q = db::query_as::<WebhookRecord>(&sql);
            for id in &ids {
                q = q.bind(*id);
            }
            let hooks = q.fetch_all(&mut tx).await.map_err(internal)?;
            for delivery in rows {
                if let Some(hook) = hooks.iter().find(|h| h.id == delivery.webhook_id) {
                    claimed.push(ClaimedDelivery {
                        url: hook.url.clone(),
                        secrets: hook
                            .signing_secrets(now)
                            .into_iter()
                            .map(str::to_string)
                            .collect(),
                        delivery,
                    });
                }
            }
        }
        self.commit(tx, vec![]).await?;
        Ok(claimed)
    }

    /// Records an attempt and schedules what follows; when the failure run reaches
    /// `disable_after`, disables the endpoint (audited as `webhook.disabled`). Returns whether
    /// it did.
    pub async fn record_attempt(&self, o: AttemptOutcome) -> enclave_core::Result<bool> {
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        db::query(
            "INSERT INTO webhook_attempts (id, delivery_id, webhook_id, attempt, status_code, \
             latency_ms, error, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(enclave_core::id::new_id(enclave_core::id::Kind::Attempt))
        .bind(&o.delivery_id)
        .bind(&o.webhook_id)
        .bind(o.attempt)
        .bind(o.status_code)
        .bind(o.latency_ms)
        .bind(&o.error)
        .bind(now)
        .execute(&mut tx)
        .await
        .map_err(internal)?;
        let status = match (o.success, o.retry_at) {
            (true, _) => "succeeded",
            (false, Some(_)) => "pending",
            (false, None) => "failed",
        };
        db::query(
            "UPDATE webhook_deliveries SET status = $2, attempts = $3, \
             next_attempt_at = COALESCE($4, next_attempt_at), lease_until = NULL, updated_at = $5 \
             WHERE id = $1",
        )
        .bind(&o.delivery_id)
        .bind(status)
        .bind(o.attempt)
        .bind(o.retry_at)
        .bind(now)
        .execute(&mut tx)
        .await
        .map_err(internal)?;
        let counted: Option<WebhookRecord> = db::query_as(format!(
            "UPDATE webhooks SET consecutive_failures = CASE WHEN $2 THEN 0 ELSE consecutive_failures + 1 END \
             WHERE id = $1 RETURNING {WEBHOOK_COLUMNS}"
        ))
        .bind(&o.webhook_id)
        .bind(o.success)
        .fetch_optional(&mut tx)
        .await
        .map_err(internal)?;
        let mut disabled = false;
        if let Some(before) = counted {
            if !o.success
                && before.status == WebhookStatus::Active
                && before.consecutive_failures >= i64::from(o.disable_after.max(1))
            {
                let reason = format!(
                    "{} consecutive failed delivery attempts",
                    before.consecutive_failures
                );
                let rec: WebhookRecord = db::query_as(format!(
                    "UPDATE webhooks SET status = 'disabled', disabled_reason = $2, updated_at = $3, \
                     version = version + 1 WHERE id = $1 RETURNING {WEBHOOK_COLUMNS}"
                ))
                .bind(&o.webhook_id)
                .bind(&reason)
                .bind(now)
                .fetch_one(&mut tx)
                .await
                .map_err(internal)?;
                journal(
                    &mut tx,
                    &Origin::system(),
                    Change::of("webhook.disabled", Some(&before), Some(&rec)),
                )
                .await?;
                disabled = true;
            }
        }
        self.commit(tx, vec![]).await?;
        Ok(disabled)
    }

    /// Passes every stored signing secret (current and previous) of every webhook through
    /// `reseal` — `(webhook_id, stored) → stored` — and writes back those it changed, in one
    /// transaction: how secrets an older release kept in clear get sealed. Returns how many
    /// webhooks changed.
    pub async fn reseal_webhook_secrets(
        &self,
        reseal: &crate::webhooks::Reseal<'_>,
    ) -> enclave_core::Result<u64> {
        let mut tx = self.begin_write().await?;
        let changed = reseal_webhooks(&mut tx, reseal).await?;
        self.commit(tx, vec![]).await?;
        Ok(changed)
    }

    /// Deletes finished (succeeded or failed) deliveries, with their attempts, last updated
    /// before `before_ms`; returns how many. Pending ones are kept whatever their age.
    pub async fn purge_deliveries(&self, before_ms: i64) -> enclave_core::Result<u64> {
        let mut tx = self.begin_write().await?;
        let n = db::query(
            "DELETE FROM webhook_deliveries WHERE status IN ('succeeded', 'failed') AND updated_at < $1",
        )
        .bind(before_ms)
        .execute(&mut tx)
        .await
        .map_err(internal)?
        .rows_affected();
        self.commit(tx, vec![]).await?;
        Ok(n)
    }
}

/// The webhook, locked until commit on PostgreSQL; 404 when absent, 412 when `expected` is
/// given and differs (`If-Match`).
pub(crate) async fn select_webhook(
    tx: &mut Tx,
    org_id: &OrgId,
    webhook_id: &str,
    expected: Option<i64>,
) -> Result<WebhookRecord> {
    let row: Option<WebhookRecord> = db::query_as(format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE org_id = $1 AND id = $2{}",
        for_update(tx)
    ))
    .bind(org_id)
    .bind(webhook_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(internal)?;
    let row = row.ok_or_else(|| Error::not_found("webhook"))?;
    check_if_match("webhook", expected, row.version)?;
    Ok(row)
}

/// Applies a [`Reseal`] to every webhook's stored secrets within `tx` (rows locked on
/// PostgreSQL); returns how many webhooks changed.
pub(crate) async fn reseal_webhooks(tx: &mut Tx, reseal: &Reseal<'_>) -> Result<u64> {
    let rows: Vec<(String, String, Option<String>)> = db::query_as(format!(
        "SELECT id, secret, previous_secret FROM webhooks ORDER BY id{}",
        for_update(tx)
    ))
    .fetch_all(&mut *tx)
    .await
    .map_err(internal)?;
    let mut changed = 0;
    for (id, secret, previous) in rows {
        let new_secret = reseal(&id, &secret)?;
        let new_previous = previous.as_deref().map(|p| reseal(&id, p)).transpose()?;
        if new_secret == secret && new_previous == previous {
            continue;
        }
        db::query("UPDATE webhooks SET secret = $2, previous_secret = $3 WHERE id = $1")
            .bind(&id)
            .bind(&new_secret)
            .bind(&new_previous)
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
        changed += 1;
    }
    Ok(changed)
}

async fn select_delivery(
    tx: &mut Tx,
    webhook_id: &str,
    delivery_id: &str,
) -> Result<DeliveryRecord> {
    db::query_as::<DeliveryRecord>(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1 AND id = $2"
    ))
    .bind(webhook_id)
    .bind(delivery_id)
    .fetch_one(tx)
    .await
    .map_err(internal)
}

async fn subscribe(tx: &mut Tx, webhook_id: &str, events: &[String]) -> Result<()> {
    for event in events {
        db::query("INSERT INTO webhook_subscriptions (webhook_id, event_type) VALUES ($1, $2)")
            .bind(webhook_id)
            .bind(event)
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
    }
    Ok(())
}

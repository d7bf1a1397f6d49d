//! The delivery worker: every node runs one. It leases due deliveries from the outbox (on
//! PostgreSQL, rows another node holds are skipped, so no attempt is sent twice), sends them
//! signed, and records each attempt with what follows: done, a retry after an exponential,
//! jittered delay, or — after the last attempt — failed. A run of failures disables the
//! endpoint.

use enclave_core::clock::now_ms;
use std::sync::Arc;
use std::time::{Duration, Instant};

use enclave_core::webhook::{self, enclave_signature, retry_delay, standard_signature};
use enclave_store::{AttemptOutcome, ClaimedDelivery, Store};
use futures::future::join_all;
use tokio::task::JoinHandle;

use crate::config::WebhookConfig;
use crate::secrets::keyring::Keyring;

/// A claimed delivery is this node's for this long: longer than one attempt can take (10 s),
/// short enough that a node dying mid-send delays the retry by only a minute.
const LEASE_MS: i64 = 60_000;
/// Deliveries sent concurrently per round.
const BATCH: i64 = 16;
/// How often an idle worker looks for due deliveries.
const POLL: Duration = Duration::from_millis(500);
/// Bytes of a failed response kept in the delivery log.
const ERROR_BODY_CHARS: usize = 200;

/// `keyring` opens the endpoints' signing secrets, which are stored sealed by the master key.
pub fn spawn(
    store: Arc<Store>,
    keyring: Arc<Keyring>,
    config: WebhookConfig,
) -> anyhow::Result<JoinHandle<()>> {
    let client = super::guard::client(config.allow_private)?;
    Ok(tokio::spawn(async move {
        loop {
            match store.claim_deliveries(now_ms(), LEASE_MS, BATCH).await {
                Ok(batch) if !batch.is_empty() => {
                    let sends = batch
                        .into_iter()
                        .map(|d| deliver(store.as_ref(), &keyring, &client, &config, d));
                    join_all(sends).await;
                    // More may be due: look again at once.
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e.message, "webhook outbox unavailable"),
            }
            tokio::time::sleep(POLL).await;
        }
    }))
}

/// One attempt at one delivery, recorded whatever happens.
async fn deliver(
    store: &Store,
    keyring: &Keyring,
    client: &reqwest::Client,
    config: &WebhookConfig,
    claimed: ClaimedDelivery,
) {
    let d = &claimed.delivery;
    let attempt = d.attempts + 1;
    let started = Instant::now();
    let result = send(keyring, client, config, &claimed, attempt).await;
    let latency_ms = started.elapsed().as_millis() as i64;
    let (success, status_code, error) = match result {
        Ok((status, _)) if (200..300).contains(&status) => (true, Some(status), None),
        Ok((status, body)) => (false, Some(status), Some(format!("HTTP {status}: {body}"))),
        Err(e) => (false, None, Some(e)),
    };
    let retry_at = (!success && attempt < i64::from(config.max_attempts)).then(|| {
        let delay = retry_delay(attempt as u32, config.retry_base);
        now_ms() + delay.as_millis() as i64
    });
    let outcome = AttemptOutcome {
        delivery_id: d.id.clone(),
        webhook_id: d.webhook_id.clone(),
        attempt,
        status_code: status_code.map(i64::from),
        latency_ms,
        error,
        success,
        retry_at,
        disable_after: config.disable_after,
    };
    match store.record_attempt(outcome).await {
        Ok(true) => tracing::warn!(
            webhook_id = %d.webhook_id,
            "webhook disabled after {} consecutive failed attempts",
            config.disable_after
        ),
        Ok(false) => {}
        // The lease runs out and the attempt is made again: at least once, never lost.
        Err(e) => {
            tracing::warn!(delivery_id = %d.id, error = %e.message, "could not record a webhook attempt")
        }
    }
}

/// Sends the delivery's exact payload with both signatures; the status and the start of the
/// body, or why nothing was answered.
async fn send(
    keyring: &Keyring,
    client: &reqwest::Client,
    config: &WebhookConfig,
    claimed: &ClaimedDelivery,
    attempt: i64,
) -> Result<(u16, String), String> {
    let d = &claimed.delivery;
    // Checked again at send time: an IP-literal target configured while private targets were
    // allowed is refused once they are not (host names are checked by the resolver).
    webhook::target("url", &claimed.url, config.allow_private).map_err(|e| e.message)?;
    let timestamp = enclave_core::clock::now().timestamp();
    let body = d.payload.as_bytes();
    let secrets = claimed
        .secrets
        .iter()
        .map(|s| keyring.open_text(&d.webhook_id, s))
        .collect::<enclave_core::Result<Vec<_>>>()
        .map_err(|e| format!("the signing secret cannot be opened: {}", e.message))?;
    let standard: Vec<String> = secrets
        .iter()
        .map(|s| standard_signature(s, &d.event_id, timestamp, body))
        .collect();
    let enclave: Vec<String> = secrets.iter().map(|s| enclave_signature(s, body)).collect();
    let resp = client
        .post(&claimed.url)
        .header("content-type", "application/json")
        .header("webhook-id", &d.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", standard.join(" "))
        .header("x-enclave-signature", enclave.join(","))
        .header("x-enclave-event-type", &d.event_type)
        .header("x-enclave-event-id", &d.event_id)
        .header("x-enclave-delivery-attempt", attempt.to_string())
        .body(d.payload.clone())
        .send()
        .await
        .map_err(describe)?;
    let status = resp.status().as_u16();
    let text = if (200..300).contains(&status) {
        String::new()
    } else {
        let full = resp.text().await.unwrap_or_default();
        full.chars().take(ERROR_BODY_CHARS).collect()
    };
    Ok((status, text))
}

/// The innermost cause of a transport error (e.g. the SSRF refusal), which says most.
fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("timed out after {} s", webhook::DELIVERY_TIMEOUT.as_secs());
    }
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg = s.to_string();
        source = s.source();
    }
    msg
}

//! `/v1/organizations/{org_id}/webhooks`: endpoints (CRUD; the signing secret shown once),
//! secret rotation, a test event, the delivery log and redelivery. Owner and admin only.

use axum::extract::State;
use enclave_core::clock::from_ms;

use crate::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use enclave_core::id::{is_id, new_id, Kind, OrgId};
use enclave_core::pagination::{Page, PageRequest};
use enclave_core::webhook::{self, DeliveryStatus, WebhookStatus};
use enclave_core::{Error, Permission, Result};
use enclave_store::{AttemptRecord, DeliveryRecord, NewWebhook, WebhookPatch, WebhookRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::access::require;
use crate::auth::{Origin, UserCaller};
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::{IfMatch, JsonBody, ListParams, QueryParams};
use crate::state::AppState;
use crate::views;
use crate::webhooks::guard::check_target;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// `https://…` (plain `http://` and private addresses only when the server allows them).
    pub url: String,
    pub description: Option<String>,
    /// Event names, or `"*"` for all.
    pub events: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    pub url: Option<String>,
    pub description: Option<String>,
    pub events: Option<Vec<String>>,
    /// `active` (re-enabling clears the failure run) or `disabled`.
    pub status: Option<WebhookStatus>,
}

#[derive(Serialize, ToSchema)]
pub struct Webhook {
    pub webhook_id: String,
    pub org_id: OrgId,
    pub url: String,
    pub description: String,
    pub events: Vec<String>,
    pub status: WebhookStatus,
    /// Why it is disabled (a user, or a run of failed deliveries).
    pub disabled_reason: Option<String>,
    pub consecutive_failures: i64,
    /// Until when the secret replaced by the last rotation still signs.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// A webhook with its signing secret: only in the answers to create and rotate-secret.
#[derive(Serialize, ToSchema)]
pub struct WebhookWithSecret {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// `whsec_…`: shown this once.
    pub signing_secret: String,
}

#[derive(Serialize, ToSchema)]
pub struct Attempt {
    pub attempt: i64,
    /// The receiver's HTTP status; absent when it answered nothing (refused, timed out).
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub attempted_at: DateTime<Utc>,
}

/// One event on its way to one endpoint, with every attempt so far.
#[derive(Serialize, ToSchema)]
pub struct Delivery {
    pub delivery_id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    /// `pending`, `succeeded` or `failed` (no attempts left).
    pub status: DeliveryStatus,
    pub attempt_count: i64,
    /// When a pending delivery is next tried.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub attempts: Vec<Attempt>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn view(r: WebhookRecord) -> Webhook {
    let now = enclave_core::clock::now_ms();
    Webhook {
        webhook_id: r.id,
        org_id: r.org_id,
        url: r.url,
        description: r.description,
        events: r.events.0,
        status: r.status,
        disabled_reason: r.disabled_reason,
        consecutive_failures: r.consecutive_failures,
        previous_secret_expires_at: r
            .previous_secret_expires_at
            .filter(|t| *t > now)
            .map(from_ms),
        created_by: r.created_by,
        created_at: from_ms(r.created_at),
        updated_at: from_ms(r.updated_at),
        version: r.version,
    }
}

fn delivery_view(d: DeliveryRecord, attempts: Vec<Attempt>) -> Delivery {
    Delivery {
        next_attempt_at: (d.status == DeliveryStatus::Pending).then(|| from_ms(d.next_attempt_at)),
        delivery_id: d.id,
        webhook_id: d.webhook_id,
        event_id: d.event_id,
        event_type: d.event_type,
        status: d.status,
        attempt_count: d.attempts,
        attempts,
        created_at: from_ms(d.created_at),
        updated_at: from_ms(d.updated_at),
    }
}

fn attempt_view(a: AttemptRecord) -> Attempt {
    Attempt {
        attempt: a.attempt,
        status_code: a.status_code,
        latency_ms: a.latency_ms,
        error: a.error,
        attempted_at: from_ms(a.created_at),
    }
}

fn not_found() -> Error {
    Error::not_found("webhook")
}

/// A response carrying the signing secret (only ever stored sealed): never stored by caches
/// on the way.
fn secret_response(status: StatusCode, rec: WebhookRecord, secret: &str) -> Response {
    let location = format!("/v1/organizations/{}/webhooks/{}", rec.org_id, rec.id);
    let version = rec.version;
    let body = WebhookWithSecret {
        signing_secret: secret.to_string(),
        webhook: view(rec),
    };
    let mut resp = if status == StatusCode::CREATED {
        views::created(version, location, body)
    } else {
        views::with_etag(version, body)
    };
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A path parameter that cannot be a webhook id is 404 without asking the database.
fn check_id(webhook_id: &str) -> Result<()> {
    if is_id(Kind::Webhook, webhook_id) {
        Ok(())
    } else {
        Err(not_found())
    }
}

async fn load(state: &AppState, org_id: &OrgId, webhook_id: &str) -> Result<WebhookRecord> {
    check_id(webhook_id)?;
    state
        .store
        .webhook(org_id, webhook_id)
        .await?
        .ok_or_else(not_found)
}

#[utoipa::path(get, path = "/v1/organizations/{org_id}/webhooks", tag = "webhooks", security(("bearer" = [])),
    params(("org_id" = String, Path), ListParams), responses(
    (status = 200, body = Page<Webhook>), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    who: UserCaller,
    Path(org_id): Path<String>,
    QueryParams(q): QueryParams<ListParams>,
) -> ApiResult<axum::Json<Page<Webhook>>> {
    let org_id = require(&state, &who, &org_id, Permission::ManageWebhooks)
        .await?
        .org_id;
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let (rows, total) = state.store.webhooks(&org_id, &page).await?;
    let rows = rows.into_iter().map(view).collect();
    Ok(axum::Json(Page::from_rows(
        rows,
        &page,
        total,
        |w: &Webhook| w.webhook_id.clone(),
    )))
}

#[utoipa::path(post, path = "/v1/organizations/{org_id}/webhooks", tag = "webhooks", security(("bearer" = [])),
    params(("org_id" = String, Path)), request_body = CreateWebhook, responses(
    (status = 201, description = "the webhook with its `signing_secret`, shown this once", body = WebhookWithSecret),
    (status = 400, description = "bad URL (https, public address), unknown event", body = ErrorEnvelope),
    (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    Path(org_id): Path<String>,
    JsonBody(req): JsonBody<CreateWebhook>,
) -> ApiResult<Response> {
    let org_id = require(&state, &who, &org_id, Permission::ManageWebhooks)
        .await?
        .org_id;
    let events = webhook::events("events", &req.events)?;
    let description =
        webhook::description("description", req.description.as_deref().unwrap_or(""))?;
    let target = check_target("url", &req.url, state.config.webhooks.allow_private).await?;
    let id = new_id(Kind::Webhook);
    let secret = webhook::generate_secret();
    let rec = state
        .store
        .create_webhook(
            NewWebhook {
                secret: state.keyring.seal_text(&id, &secret),
                id,
                org_id,
                url: target.url,
                description,
                events,
                created_by: who.user_id.to_string(),
            },
            &origin,
        )
        .await?;
    Ok(secret_response(StatusCode::CREATED, rec, &secret))
}

#[utoipa::path(get, path = "/v1/organizations/{org_id}/webhooks/{webhook_id}", tag = "webhooks", security(("bearer" = [])),
    params(("org_id" = String, Path), ("webhook_id" = String, Path)), responses(
    (status = 200, body = Webhook), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    who: UserCaller,
    Path((org_id, webhook_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let org_id = require(&state, &who, &org_id, Permission::ManageWebhooks)
        .await?
        .org_id;
    let rec = load(&state, &org_id, &webhook_id).await?;
    Ok(views::with_etag(rec.version, view(rec)))
}

#[utoipa::path(patch, path = "/v1/organizations/{org_id}/webhooks/{webhook_id}", tag = "webhooks", security(("bearer" = [])),
    params(("org_id" = String, Path), ("webhook_id" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = UpdateWebhook, responses(
    (status = 200, body = Webhook), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
    (status = 404, body = ErrorEnvelope), (status = 412, body = ErrorEnvelope)))]
pub async fn update(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    Path((org_id, webhook_id)): Path<(String, String)>,
    IfMatch(expected): IfMatch,
    JsonBody(req): JsonBody<UpdateWebhook>,
) -> ApiResult<Response> {
    let org_id = require(&state, &who, &org_id, Permission::ManageWebhooks)
        .await?
        .org_id;
    check_id(&webhook_id)?;
    let events = req
        .events
        .as_deref()
        .map(|e| webhook::events("events", e))
        .transpose()?;
    let description = req
        .description
        .as_deref()
        .map(|d| webhook::description("description", d))
        .transpose()?;
    let url = match &req.url {
        Some(u) => Some(
            check_target("url", u, state.config.webhooks.allow_private)
                .await?
                .url,
        ),
        None => None,
    };
    let patch = WebhookPatch {
        url,
        description,
        events,
        status: req.status,
    };
    let rec = state
        .store
        .update_webhook(&org_id, &webhook_id, expected, patch, &origin)
        .await?;
    Ok(views::with_etag(rec.version, view(rec)))
}

#[utoipa::path(delete, path = "/v1/organizations/{org_id}/webhooks/{webhook_id}", tag = "webhooks", security(("bearer" = [])),
    params(("org_id" = String, Path), ("webhook_id" = String, Path), ("If-Match" = Option<String>, Header)), responses(
    (status = 204, description = "deleted, with its pending deliveries"), (status = 403, body = ErrorEnvelope),
    (status = 404, body = ErrorEnvelope), (status = 412, body = ErrorEnvelope)))]
pub async fn delete(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    Path((org_id, webhook_id)): Path<(String, String)>,
    IfMatch(expected): IfMatch,
) -> ApiResult<StatusCode> {
    let org_id = require(&state, &who, &org_id, Permission::ManageWebhooks)
        .await?
        .org_id;
    check_id(&webhook_id)?;
    state
        .store
        .delete_webhook(&org_id, &webhook_id, expected, &origin)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/organizations/{org_id}/webhooks/{webhook_id}/rotate-secret", tag = "webhooks", security(("bearer" = [])),
    params(("org_id" = String, Path), ("webhook_id" = String, Path)), responses(
    (status = 200, description = "the new `signing_secret`, shown this once; the old one also signs for 24 h", body = WebhookWithSecret),
    (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    Path((org_id, webhook_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let org_id = require(&state, &who, &org_id, Permission::ManageWebhooks)
        .await?
        .org_id;
    check_id(&webhook_id)?;
    let old_until = enclave_core::clock::now_ms() + webhook::OLD_SECRET_HOURS * 3_600_000;
    let secret = webhook::generate_secret();
    let rec = state
        .store
        .rotate_webhook_secret(
            &org_id,
            &webhook_id,
            state.keyring.seal_text(&webhook_id, &secret),
            old_until,
            &origin,
        )
        .await?;
    Ok(secret_response(StatusCode::OK, rec, &secret))
}

#[utoipa::path(post, path = "/v1/organizations/{org_id}/webhooks/{webhook_id}/test", tag = "webhooks", security(("bearer" = [])),
    params(("org_id" = String, Path), ("webhook_id" = String, Path)), responses(
    (status = 202, description = "a `webhook.test` event queued for this endpoint, sent within a second", body = Delivery),
    (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    (status = 409, description = "the webhook is disabled", body = ErrorEnvelope)))]
pub async fn test(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    Path((org_id, webhook_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let org_id = require(&state, &who, &org_id, Permission::ManageWebhooks)
        .await?
        .org_id;
    let hook = load(&state, &org_id, &webhook_id).await?;
    if hook.status != WebhookStatus::Active {
        return Err(Error::conflict(
            "webhook_disabled",
            "the webhook is disabled; set status to active first",
        )
        .into());
    }
    let d = state
        .store
        .queue_test_event(&org_id, &webhook_id, &origin)
        .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(delivery_view(d, vec![]))).into_response())
}

#[utoipa::path(get, path = "/v1/organizations/{org_id}/webhooks/{webhook_id}/deliveries", tag = "webhooks", security(("bearer" = [])),
    params(("org_id" = String, Path), ("webhook_id" = String, Path), ListParams), responses(
    (status = 200, description = "newest first, each with its attempts", body = Page<Delivery>),
    (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn deliveries(
    State(state): State<AppState>,
    who: UserCaller,
    Path((org_id, webhook_id)): Path<(String, String)>,
    QueryParams(q): QueryParams<ListParams>,
) -> ApiResult<axum::Json<Page<Delivery>>> {
    let org_id = require(&state, &who, &org_id, Permission::ManageWebhooks)
        .await?
        .org_id;
    load(&state, &org_id, &webhook_id).await?;
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let (rows, attempts, total) = state.store.deliveries(&org_id, &webhook_id, &page).await?;
    // Attempts come sorted like the rows (newest delivery first): one pass pairs them up.
    let mut attempts = attempts.into_iter().peekable();
    let data = rows
        .into_iter()
        .map(|d| {
            let mut mine = Vec::new();
            while let Some(a) = attempts.next_if(|a| a.delivery_id >= d.id) {
                if a.delivery_id == d.id {
                    mine.push(attempt_view(a));
                }
            }
            delivery_view(d, mine)
        })
        .collect();
    Ok(axum::Json(Page::from_rows(
        data,
        &page,
        total,
        |d: &Delivery| d.delivery_id.clone(),
    )))
}

#[utoipa::path(post, path = "/v1/organizations/{org_id}/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", tag = "webhooks", security(("bearer" = [])),
    params(("org_id" = String, Path), ("webhook_id" = String, Path), ("delivery_id" = String, Path)), responses(
    (status = 202, description = "queued to be sent once more, now", body = Delivery),
    (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn redeliver(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    Path((org_id, webhook_id, delivery_id)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let org_id = require(&state, &who, &org_id, Permission::ManageWebhooks)
        .await?
        .org_id;
    if !is_id(Kind::Webhook, &webhook_id) || !is_id(Kind::Delivery, &delivery_id) {
        return Err(Error::not_found("delivery").into());
    }
    let d = state
        .store
        .redeliver(&org_id, &webhook_id, &delivery_id, &origin)
        .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(delivery_view(d, vec![]))).into_response())
}

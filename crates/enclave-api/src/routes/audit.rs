//! `/v1/organizations/{org_id}/audit/iam`: list with filters, get, verify the chain, export
//! it as NDJSON. Read-only by construction: no route changes or deletes an entry.

use axum::extract::State;

use crate::extract::Path;
use axum::response::Response;
use enclave_core::audit::AuditEntry;
use enclave_core::id::{is_id, Kind};
use enclave_core::pagination::{Page, PageRequest};
use enclave_core::{Error, Permission, Result};
use enclave_store::{AuditFilter, Store};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::IntoParams;

use crate::access::require;
use crate::audit_chain::{date_range, ndjson_chain, verify_chain, VerifyResponse, CHAIN_PAGE};
use crate::auth::UserCaller;
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::QueryParams;
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    /// `usr_…`, `key_…` or `system`.
    pub actor_id: Option<String>,
    /// e.g. `environment.created`.
    pub action: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub env_id: Option<String>,
    /// Inclusive; RFC 3339 or `YYYY-MM-DD`.
    pub start_date: Option<String>,
    /// Exclusive; RFC 3339 or `YYYY-MM-DD` (a date means the start of that day, UTC).
    pub end_date: Option<String>,
}

fn filter_of(q: &AuditParams) -> Result<AuditFilter> {
    let text = |field: &str, v: &Option<String>| -> Result<Option<String>> {
        match v {
            Some(s) if s.is_empty() || s.len() > 128 => Err(Error::validation(
                field,
                "length",
                format!("{field} must be 1–128 characters"),
            )),
            other => Ok(other.clone()),
        }
    };
    let (start_ms, end_ms) = date_range(q.start_date.as_deref(), q.end_date.as_deref())?;
    Ok(AuditFilter {
        actor_id: text("actor_id", &q.actor_id)?,
        action: text("action", &q.action)?,
        resource_type: text("resource_type", &q.resource_type)?,
        resource_id: text("resource_id", &q.resource_id)?,
        env_id: text("env_id", &q.env_id)?,
        start_ms,
        end_ms,
    })
}

#[utoipa::path(get, path = "/v1/organizations/{org_id}/audit/iam", tag = "audit", security(("bearer" = [])),
    params(("org_id" = String, Path), AuditParams), responses(
    (status = 200, description = "newest first", body = Page<AuditEntry>), (status = 400, body = ErrorEnvelope),
    (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    who: UserCaller,
    Path(org_id): Path<String>,
    QueryParams(q): QueryParams<AuditParams>,
) -> ApiResult<axum::Json<Page<AuditEntry>>> {
    let org_id = require(&state, &who, &org_id, Permission::ReadAudit)
        .await?
        .org_id;
    let filter = filter_of(&q)?;
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let (rows, total) = state.store.audit_entries(&org_id, &filter, &page).await?;
    Ok(axum::Json(Page::from_rows(rows, &page, total, |e| {
        e.seq.to_string()
    })))
}

#[utoipa::path(get, path = "/v1/organizations/{org_id}/audit/iam/{entry_id}", tag = "audit", security(("bearer" = [])),
    params(("org_id" = String, Path), ("entry_id" = String, Path)), responses(
    (status = 200, body = AuditEntry), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    who: UserCaller,
    Path((org_id, entry_id)): Path<(String, String)>,
) -> ApiResult<axum::Json<AuditEntry>> {
    let org_id = require(&state, &who, &org_id, Permission::ReadAudit)
        .await?
        .org_id;
    if !is_id(Kind::Audit, &entry_id) {
        return Err(Error::not_found("audit_entry").into());
    }
    let entry = state
        .store
        .audit_entry(&org_id, &entry_id)
        .await?
        .ok_or_else(|| Error::not_found("audit_entry"))?;
    Ok(axum::Json(entry))
}

#[utoipa::path(get, path = "/v1/organizations/{org_id}/audit/iam/verify", tag = "audit", security(("bearer" = [])),
    params(("org_id" = String, Path)), responses(
    (status = 200, description = "`chain_valid: false` names the first bad entry in `first_invalid_entry`", body = VerifyResponse),
    (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn verify(
    State(state): State<AppState>,
    who: UserCaller,
    Path(org_id): Path<String>,
) -> ApiResult<axum::Json<VerifyResponse>> {
    let org_id = require(&state, &who, &org_id, Permission::ReadAudit)
        .await?
        .org_id;
    let verification = verify_chain(state.store.as_ref(), &org_id).await?;
    Ok(axum::Json(VerifyResponse {
        verification,
        verified_at: enclave_core::clock::now(),
    }))
}

#[utoipa::path(get, path = "/v1/organizations/{org_id}/audit/iam/export", tag = "audit", security(("bearer" = [])),
    params(("org_id" = String, Path)), responses(
    (status = 200, description = "NDJSON, one entry per line, in chain order; `enclave audit verify FILE` re-checks it", content_type = "application/x-ndjson"),
    (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn export(
    State(state): State<AppState>,
    who: UserCaller,
    Path(org_id): Path<String>,
) -> ApiResult<Response> {
    let org_id = require(&state, &who, &org_id, Permission::ReadAudit)
        .await?
        .org_id;
    let store: Arc<Store> = state.store.clone();
    Ok(ndjson_chain(
        move |after| {
            let (store, org_id) = (store.clone(), org_id.clone());
            async move {
                let entries = store.audit_chain(&org_id, after, CHAIN_PAGE).await?;
                Ok(entries.iter().map(|e| (e.seq, e.to_value())).collect())
            }
        },
        "iam-audit.ndjson",
    ))
}

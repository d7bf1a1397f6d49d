//! `/v1/organizations/{org_id}/audit/iam`: list with filters, get, verify the chain, export
//! it as NDJSON. Read-only by construction: no route changes or deletes an entry.

use axum::body::{Body, Bytes};
use axum::extract::State;

use crate::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use enclave_core::audit::{AuditEntry, InvalidEntry, Verification, Verifier};
use enclave_core::id::{is_id, Kind};
use enclave_core::pagination::{Page, PageRequest};
use enclave_core::{Error, Permission, Result};
use enclave_store::{AuditFilter, Store};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

use crate::auth::access::require;
use crate::auth::Principal;
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::QueryParams;
use crate::state::AppState;

/// Entries read per query while verifying or exporting.
pub const CHAIN_PAGE: i64 = 1000;

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

fn date_ms(field: &str, raw: &str) -> Result<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc).timestamp_millis());
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
        .ok_or_else(|| {
            Error::validation(
                field,
                "date",
                format!("{field} must be an RFC 3339 timestamp or YYYY-MM-DD"),
            )
        })
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

/// `start_date` (inclusive) and `end_date` (exclusive) of a trail's list, in milliseconds;
/// the end must come after the start.
pub fn date_range(start: Option<&str>, end: Option<&str>) -> Result<(Option<i64>, Option<i64>)> {
    let start_ms = start.map(|d| date_ms("start_date", d)).transpose()?;
    let end_ms = end.map(|d| date_ms("end_date", d)).transpose()?;
    if let (Some(s), Some(e)) = (start_ms, end_ms) {
        if e <= s {
            return Err(Error::validation(
                "end_date",
                "after_start",
                "end_date must be after start_date",
            ));
        }
    }
    Ok((start_ms, end_ms))
}

#[utoipa::path(get, path = "/v1/organizations/{org_id}/audit/iam", tag = "audit", security(("bearer" = [])),
    params(("org_id" = String, Path), AuditParams), responses(
    (status = 200, description = "newest first", body = Page<AuditEntry>), (status = 400, body = ErrorEnvelope),
    (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    who: Principal,
    Path(org_id): Path<String>,
    QueryParams(q): QueryParams<AuditParams>,
) -> ApiResult<axum::Json<Page<AuditEntry>>> {
    require(&state, &who, &org_id, Permission::ReadAudit).await?;
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
    who: Principal,
    Path((org_id, entry_id)): Path<(String, String)>,
) -> ApiResult<axum::Json<AuditEntry>> {
    require(&state, &who, &org_id, Permission::ReadAudit).await?;
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

/// The result of verifying an organization's chain.
#[derive(Serialize, ToSchema)]
pub struct VerifyResponse {
    #[serde(flatten)]
    pub verification: Verification,
    pub verified_at: DateTime<Utc>,
}

/// Walks the whole chain in order, then compares its end with the head the appends left,
/// so a removed newest entry is caught as well as an edited or missing one.
pub async fn verify_chain(store: &Store, org_id: &str) -> Result<Verification> {
    verify_pages(store, org_id, |after| async move {
        let entries = store.audit_chain(org_id, after, CHAIN_PAGE).await?;
        Ok(entries.iter().map(|e| (e.seq, e.to_value())).collect())
    })
    .await
}

/// Verifies the chain `chain_id` (an organization's IAM trail or an environment's query
/// trail) from pages of `(seq, entry)` that `page(after_seq)` returns in chain order.
pub async fn verify_pages<F, Fut>(store: &Store, chain_id: &str, page: F) -> Result<Verification>
where
    F: Fn(i64) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<(i64, serde_json::Value)>>>,
{
    let mut verifier = Verifier::default();
    let mut after = 0;
    'pages: loop {
        let entries = page(after).await?;
        let Some(last) = entries.last() else { break };
        after = last.0;
        let full = entries.len() as i64 == CHAIN_PAGE;
        for (_, entry) in &entries {
            if !verifier.push(entry) {
                break 'pages;
            }
        }
        if !full {
            break;
        }
    }
    let mut result = verifier.finish();
    if result.chain_valid {
        let head = store.audit_head(chain_id).await?;
        let (count, hash) = head.unwrap_or((0, String::new()));
        let matches = count as u64 == result.entry_count
            && result.last_entry_hash.as_deref().unwrap_or_default() == hash;
        if !matches {
            result.chain_valid = false;
            result.first_invalid_entry = Some(InvalidEntry {
                position: result.entry_count + 1,
                entry_id: None,
                reason: "truncated".into(),
            });
        }
    }
    Ok(result)
}

#[utoipa::path(get, path = "/v1/organizations/{org_id}/audit/iam/verify", tag = "audit", security(("bearer" = [])),
    params(("org_id" = String, Path)), responses(
    (status = 200, description = "`chain_valid: false` names the first bad entry in `first_invalid_entry`", body = VerifyResponse),
    (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn verify(
    State(state): State<AppState>,
    who: Principal,
    Path(org_id): Path<String>,
) -> ApiResult<axum::Json<VerifyResponse>> {
    require(&state, &who, &org_id, Permission::ReadAudit).await?;
    let verification = verify_chain(state.store.as_ref(), &org_id).await?;
    Ok(axum::Json(VerifyResponse {
        verification,
        verified_at: Utc::now(),
    }))
}

#[utoipa::path(get, path = "/v1/organizations/{org_id}/audit/iam/export", tag = "audit", security(("bearer" = [])),
    params(("org_id" = String, Path)), responses(
    (status = 200, description = "NDJSON, one entry per line, in chain order; `enclave audit verify FILE` re-checks it", content_type = "application/x-ndjson"),
    (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn export(
    State(state): State<AppState>,
    who: Principal,
    Path(org_id): Path<String>,
) -> ApiResult<Response> {
    require(&state, &who, &org_id, Permission::ReadAudit).await?;
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

/// A chain streamed as NDJSON in chain order, a page at a time (memory stays flat whatever
/// the trail's length); `page(after_seq)` returns `(seq, entry)` pairs.
pub fn ndjson_chain<F, Fut>(page: F, filename: &'static str) -> Response
where
    F: Fn(i64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Vec<(i64, serde_json::Value)>>> + Send + 'static,
{
    let page = Arc::new(page);
    let pages = futures::stream::unfold(Some(0i64), move |after| {
        let page = page.clone();
        async move {
            let after = after?;
            match page(after).await {
                Ok(entries) if entries.is_empty() => None,
                Ok(entries) => {
                    let next = (entries.len() as i64 == CHAIN_PAGE)
                        .then(|| entries.last().map(|(seq, _)| *seq))
                        .flatten();
                    let mut buf = Vec::with_capacity(entries.len() * 512);
                    for (_, entry) in &entries {
                        serde_json::to_writer(&mut buf, entry).ok();
                        buf.push(b'\n');
                    }
                    Some((Ok::<_, std::io::Error>(Bytes::from(buf)), next))
                }
                Err(e) => Some((Err(std::io::Error::other(e.message)), None)),
            }
        }
    });
    let mut resp = Body::from_stream(pages).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

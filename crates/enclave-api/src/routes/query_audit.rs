//! `/v1/environments/{env_id}/audit/queries`: the environment's query audit — list with
//! filters, get one, verify the chain, export it as NDJSON. Before reading, this node's
//! pending entries are stored, so a client sees its own statements.

use std::sync::Arc;

use axum::extract::State;

use crate::extract::Path;
use axum::response::Response;
use enclave_core::id::{is_id, EnvId, Kind};
use enclave_core::pagination::{Page, PageRequest};
use enclave_core::query::audit::QueryAuditEntry;
use enclave_core::{Error, Permission, Result};
use enclave_store::{QueryAuditFilter, Store};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::access::env_access;
use crate::audit_chain::{
    date_range, ndjson_chain, verify_pages, Chain, VerifyResponse, CHAIN_PAGE,
};
use crate::auth::Caller;
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::QueryParams;
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QueryAuditParams {
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    /// `usr_…` or `key_…`.
    pub principal_id: Option<String>,
    /// `ok`, `error`, `refused`, `timeout`, `cancelled`.
    #[param(pattern = "^(ok|error|refused|timeout|cancelled)$")]
    pub outcome: Option<String>,
    /// `read`, `write`, `ddl`, `session`.
    #[param(pattern = "^(read|write|ddl|session)$")]
    pub statement_kind: Option<String>,
    /// Inclusive; RFC 3339 or `YYYY-MM-DD`.
    pub start_date: Option<String>,
    /// Exclusive; RFC 3339 or `YYYY-MM-DD`.
    pub end_date: Option<String>,
}

const OUTCOMES: [&str; 5] = ["ok", "error", "refused", "timeout", "cancelled"];
const KINDS: [&str; 4] = ["read", "write", "ddl", "session"];

fn filter_of(q: &QueryAuditParams) -> Result<QueryAuditFilter> {
    let one_of = |field: &str, v: &Option<String>, allowed: &[&str]| -> Result<Option<String>> {
        match v {
            Some(s) if !allowed.contains(&s.as_str()) => Err(Error::validation(
                field,
                "one_of",
                format!("{field} must be one of {}", allowed.join(", ")),
            )),
            other => Ok(other.clone()),
        }
    };
    if let Some(p) = &q.principal_id {
        if p.is_empty() || p.len() > 128 {
            return Err(Error::validation(
                "principal_id",
                "length",
                "principal_id must be 1–128 characters",
            ));
        }
    }
    let (start_ms, end_ms) = date_range(q.start_date.as_deref(), q.end_date.as_deref())?;
    Ok(QueryAuditFilter {
        principal_id: q.principal_id.clone(),
        outcome: one_of("outcome", &q.outcome, &OUTCOMES)?,
        statement_kind: one_of("statement_kind", &q.statement_kind, &KINDS)?,
        start_ms,
        end_ms,
    })
}

/// Access to an environment's query trail (owner, admin, auditor; keys with `audit:read`),
/// after this node's pending entries are stored.
/// The environment's id, once the caller may read its query audit (pending entries written).
async fn readable(state: &AppState, who: &Caller, env_id: &str) -> Result<EnvId> {
    let (env, _) = env_access(state, who, env_id, Permission::ReadAudit).await?;
    state.gateway.audit().flush().await;
    Ok(env.id)
}

#[utoipa::path(get, path = "/v1/environments/{env_id}/audit/queries", tag = "audit", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), QueryAuditParams), responses(
    (status = 200, description = "newest first", body = Page<QueryAuditEntry>), (status = 400, body = ErrorEnvelope),
    (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    who: Caller,
    Path(env_id): Path<String>,
    QueryParams(q): QueryParams<QueryAuditParams>,
) -> ApiResult<axum::Json<Page<QueryAuditEntry>>> {
    let env_id = readable(&state, &who, &env_id).await?;
    let filter = filter_of(&q)?;
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let (rows, total) = state
        .store
        .query_audit_entries(&env_id, &filter, &page)
        .await?;
    Ok(axum::Json(Page::from_rows(rows, &page, total, |e| {
        e.seq.to_string()
    })))
}

#[utoipa::path(get, path = "/v1/environments/{env_id}/audit/queries/{query_id}", tag = "audit", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ("query_id" = String, Path)), responses(
    (status = 200, body = QueryAuditEntry), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    who: Caller,
    Path((env_id, query_id)): Path<(String, String)>,
) -> ApiResult<axum::Json<QueryAuditEntry>> {
    let env_id = readable(&state, &who, &env_id).await?;
    if !is_id(Kind::Query, &query_id) {
        return Err(Error::not_found("query").into());
    }
    let entry = state
        .store
        .query_audit_entry(&env_id, &query_id)
        .await?
        .ok_or_else(|| Error::not_found("query"))?;
    Ok(axum::Json(entry))
}

#[utoipa::path(get, path = "/v1/environments/{env_id}/audit/queries/verify", tag = "audit", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path)), responses(
    (status = 200, description = "`chain_valid: false` names the first bad entry", body = VerifyResponse),
    (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn verify(
    State(state): State<AppState>,
    who: Caller,
    Path(env_id): Path<String>,
) -> ApiResult<axum::Json<VerifyResponse>> {
    let env_id = readable(&state, &who, &env_id).await?;
    let store = state.store.as_ref();
    let verification = verify_pages(store, Chain::Queries(&env_id), |after| {
        let env_id = env_id.clone();
        async move {
            let entries = store.query_audit_chain(&env_id, after, CHAIN_PAGE).await?;
            Ok(entries.iter().map(|e| (e.seq, e.to_value())).collect())
        }
    })
    .await?;
    Ok(axum::Json(VerifyResponse {
        verification,
        verified_at: enclave_core::clock::now(),
    }))
}

#[utoipa::path(get, path = "/v1/environments/{env_id}/audit/queries/export", tag = "audit", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path)), responses(
    (status = 200, description = "NDJSON, one entry per line, in chain order; `enclave audit verify FILE` re-checks it", content_type = "application/x-ndjson"),
    (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn export(
    State(state): State<AppState>,
    who: Caller,
    Path(env_id): Path<String>,
) -> ApiResult<Response> {
    let env_id = readable(&state, &who, &env_id).await?;
    let store: Arc<Store> = state.store.clone();
    Ok(ndjson_chain(
        move |after| {
            let (store, env_id) = (store.clone(), env_id.clone());
            async move {
                let entries = store.query_audit_chain(&env_id, after, CHAIN_PAGE).await?;
                Ok(entries.iter().map(|e| (e.seq, e.to_value())).collect())
            }
        },
        "query-audit.ndjson",
    ))
}

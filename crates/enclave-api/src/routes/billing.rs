//! `/v1/organizations/{org_id}/billing`: the organization's quotas (read by its members,
//! changed by its owner) and its credit usage (owner, admin, auditor; keys with
//! `billing:read`). Usage is read after this node's pending metering is stored, so a caller
//! sees its own statements.

use axum::extract::State;
use axum::response::Response;
use enclave_core::billing::period::month_of;
use enclave_core::billing::usage::{breakdown, Breakdown, CreditSummary, GroupBy};
use enclave_core::billing::{QuotaPatch, Quotas};
use enclave_core::clock::now_ms;
use enclave_core::id::OrgId;
use enclave_core::model::Tier;
use enclave_core::{Error, Permission, Result};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::access::org_reader;
use crate::audit_chain::date_range;
use crate::auth::{Caller, Origin, UserCaller};
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::{IfMatch, JsonBody, Path, QueryParams};
use crate::state::AppState;
use crate::views;

/// The longest usage report one request may ask for.
const MAX_REPORT_DAYS: i64 = 366;
const DAY_MS: i64 = 86_400_000;

#[derive(Serialize, ToSchema)]
pub struct QuotasResponse {
    #[schema(value_type = String)]
    pub org_id: OrgId,
    pub tier: Tier,
    /// What applies: the tier's quotas with the organization's own changes on top.
    pub quotas: Quotas,
    /// The organization's own changes (`PATCH`); a field absent here follows the tier.
    #[schema(value_type = Object)]
    pub overrides: serde_json::Value,
}

fn quotas_view(state: &AppState, org: enclave_store::OrgRecord) -> Response {
    let version = org.version;
    views::with_etag(
        version,
        QuotasResponse {
            quotas: state.config.quotas(&org),
            tier: org.tier,
            overrides: org.quota_overrides.0,
            org_id: org.id,
        },
    )
}

async fn org_record(state: &AppState, org_id: &OrgId) -> Result<enclave_store::OrgRecord> {
    state
        .store
        .org(org_id)
        .await?
        .ok_or_else(|| Error::not_found("organization"))
}

#[utoipa::path(get, path = "/v1/organizations/{org_id}/billing/quotas", tag = "billing", security(("bearer" = []), ("api_key" = [])),
    params(("org_id" = String, Path)), responses(
    (status = 200, body = QuotasResponse), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn quotas(
    State(state): State<AppState>,
    who: Caller,
    Path(org_id): Path<String>,
) -> ApiResult<Response> {
    let access = org_reader(&state, &who, &org_id, None, Permission::ReadBilling).await?;
    Ok(quotas_view(
        &state,
        org_record(&state, &access.org_id).await?,
    ))
}

#[utoipa::path(patch, path = "/v1/organizations/{org_id}/billing/quotas", tag = "billing", security(("bearer" = [])),
    params(("org_id" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body(content = Object, description = "the fields of `quotas` to change: a number, \"unlimited\" where the field allows it, or null for the tier's default"),
    responses((status = 200, body = QuotasResponse), (status = 400, body = ErrorEnvelope),
    (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 412, body = ErrorEnvelope)))]
pub async fn update_quotas(
    State(state): State<AppState>,
    who: UserCaller,
    origin: Origin,
    Path(org_id): Path<String>,
    IfMatch(expected): IfMatch,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> ApiResult<Response> {
    let org_id = crate::access::require(&state, &who, &org_id, Permission::ManageBilling)
        .await?
        .org_id;
    let patch = QuotaPatch::parse(&body)?;
    let org = state
        .store
        .set_org_quotas(&org_id, &patch, expected, &origin)
        .await?;
    Ok(quotas_view(&state, org))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// Inclusive; RFC 3339 or `YYYY-MM-DD`; the start of the current month when absent.
    pub start_date: Option<String>,
    /// Exclusive; RFC 3339 or `YYYY-MM-DD`; the start of the next month when absent.
    pub end_date: Option<String>,
    /// The buckets of `breakdown.by_period`: `hour`, `day` (the default) or `week`
    /// (ISO weeks, from Monday).
    #[param(pattern = "^(hour|day|week)$")]
    pub group_by: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct UsageResponse {
    #[schema(value_type = String)]
    pub org_id: OrgId,
    pub start_date: String,
    pub end_date: String,
    pub group_by: GroupBy,
    /// The current billing period (the calendar month in UTC) against the monthly limit:
    /// production statements only, whatever range was asked for.
    pub credits: CreditSummary,
    /// Every environment's statements in the range asked for, production or not.
    pub breakdown: Breakdown,
    /// What the organization's environments hold now, against `storage_limit_gb`.
    pub storage: StorageSummary,
}

#[derive(Serialize, ToSchema)]
pub struct StorageSummary {
    /// `null`: unlimited.
    pub limit_gb: Option<u32>,
    /// As last measured, after writes through the gateway.
    pub used_bytes: u64,
}

/// The report's range: the current month unless given, never longer than a year.
fn report_range(q: &UsageParams, now: i64) -> Result<(i64, i64)> {
    let (start, end) = date_range(q.start_date.as_deref(), q.end_date.as_deref())?;
    let (month_start, month_end) = month_of(now);
    let start = start.unwrap_or(month_start);
    let end = end.unwrap_or(month_end);
    if end <= start {
        return Err(Error::validation(
            "end_date",
            "after_start",
            "end_date must be after start_date",
        ));
    }
    if end - start > MAX_REPORT_DAYS * DAY_MS {
        return Err(Error::validation(
            "end_date",
            "max_range",
            format!("a usage report covers at most {MAX_REPORT_DAYS} days"),
        ));
    }
    Ok((start, end))
}

#[utoipa::path(get, path = "/v1/organizations/{org_id}/billing/usage", tag = "billing", security(("bearer" = []), ("api_key" = [])),
    params(("org_id" = String, Path), UsageParams), responses(
    (status = 200, body = UsageResponse), (status = 400, body = ErrorEnvelope),
    (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn usage(
    State(state): State<AppState>,
    who: Caller,
    Path(org_id): Path<String>,
    QueryParams(q): QueryParams<UsageParams>,
) -> ApiResult<axum::Json<UsageResponse>> {
    let access = org_reader(
        &state,
        &who,
        &org_id,
        Some(Permission::ReadBilling),
        Permission::ReadBilling,
    )
    .await?;
    let group_by = q
        .group_by
        .as_deref()
        .map(GroupBy::parse)
        .transpose()?
        .unwrap_or(GroupBy::Day);
    let now = now_ms();
    let range = report_range(&q, now)?;
    let org = org_record(&state, &access.org_id).await?;
    state.gateway.audit().flush().await;
    let period = month_of(now);
    let used = state
        .store
        .counted_credits(&org.id, period.0, period.1)
        .await?;
    let daily = state
        .store
        .usage_rows(&org.id, range, GroupBy::Day.bucket())
        .await?;
    let grouped = if group_by == GroupBy::Day {
        None
    } else {
        Some(
            state
                .store
                .usage_rows(&org.id, range, group_by.bucket())
                .await?,
        )
    };
    let quotas = state.config.quotas(&org);
    let storage = StorageSummary {
        limit_gb: quotas.storage_limit_gb,
        used_bytes: state.store.org_storage_bytes(&org.id).await?,
    };
    Ok(axum::Json(UsageResponse {
        storage,
        start_date: enclave_core::audit::timestamp(range.0),
        end_date: enclave_core::audit::timestamp(range.1),
        group_by,
        credits: CreditSummary::new(quotas.credit_limit(), used, period),
        breakdown: breakdown(&daily, grouped.as_deref().unwrap_or(&daily)),
        org_id: org.id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(start: Option<&str>, end: Option<&str>) -> UsageParams {
        UsageParams {
            start_date: start.map(str::to_string),
            end_date: end.map(str::to_string),
            group_by: None,
        }
    }

    const NOW: i64 = 1_796_342_400_000; // 2026-12-04T00:00:00Z

    #[test]
    fn a_report_defaults_to_the_current_month() {
        let (start, end) = report_range(&params(None, None), NOW).unwrap();
        assert_eq!(
            enclave_core::audit::timestamp(start),
            "2026-12-01T00:00:00.000Z"
        );
        assert_eq!(
            enclave_core::audit::timestamp(end),
            "2027-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn a_report_range_is_ordered_and_at_most_a_year() {
        // A start alone runs to the end of the current month, which must come after it.
        assert!(report_range(&params(Some("2026-12-05"), None), NOW).is_ok());
        let err = report_range(&params(Some("2027-01-05"), None), NOW).unwrap_err();
        assert_eq!(err.details["field"], "end_date");
        let err = report_range(&params(Some("2025-01-01"), Some("2026-12-01")), NOW).unwrap_err();
        assert_eq!(err.details["field"], "end_date");
        assert!(report_range(&params(Some("2025-12-01"), Some("2026-12-01")), NOW).is_ok());
        let err = report_range(&params(Some("yesterday"), None), NOW).unwrap_err();
        assert_eq!(err.details["field"], "start_date");
    }
}

//! Hash-chained trails read whole: verifying a chain against the head its appends left, and
//! streaming it as NDJSON. Shared by the IAM audit and the query audit routes.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use enclave_core::audit::{InvalidEntry, Verification, Verifier};
use enclave_core::id::{EnvId, OrgId};
use enclave_core::{Error, Result};
use enclave_store::Store;
use serde::Serialize;
use utoipa::ToSchema;

/// Entries read per query while verifying or exporting.
pub const CHAIN_PAGE: i64 = 1000;

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

/// The result of verifying an organization's chain.
#[derive(Serialize, ToSchema)]
pub struct VerifyResponse {
    #[serde(flatten)]
    pub verification: Verification,
    pub verified_at: DateTime<Utc>,
}

/// Walks the whole chain in order, then compares its end with the head the appends left,
/// so a removed newest entry is caught as well as an edited or missing one.
pub async fn verify_chain(store: &Store, org_id: &OrgId) -> Result<Verification> {
    verify_pages(store, Chain::Iam(org_id), |after| async move {
        let entries = store.audit_chain(org_id, after, CHAIN_PAGE).await?;
        Ok(entries.iter().map(|e| (e.seq, e.to_value())).collect())
    })
    .await
}

/// Which hash chain: an organization's IAM trail or an environment's query trail.
#[derive(Debug, Clone, Copy)]
pub enum Chain<'a> {
    Iam(&'a OrgId),
    Queries(&'a EnvId),
}

impl Chain<'_> {
    /// The head the appends left: `(entry count, last entry_hash)`.
    async fn head(self, store: &Store) -> Result<Option<(i64, String)>> {
        match self {
            Chain::Iam(org_id) => store.audit_head(org_id).await,
            Chain::Queries(env_id) => store.query_audit_head(env_id).await,
        }
    }
}

/// Verifies `chain` from pages of `(seq, entry)` that `page(after_seq)` returns in chain
/// order.
pub async fn verify_pages<F, Fut>(store: &Store, chain: Chain<'_>, page: F) -> Result<Verification>
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
        let head = chain.head(store).await?;
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

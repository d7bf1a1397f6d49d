//! The gateway's HTTP door: `POST /v1/query` (JSON) and `POST /v1/query/arrow` (an Arrow IPC
//! stream). Each statement goes through the same pipeline as the wire's; rows stream into
//! the response body as the engine produces them.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use enclave_core::{Error, Result};
use enclave_gateway::results::{json_rows, pg_type, type_name, IpcStream};
use enclave_gateway::{Outcome, RequestClock, Rows};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::auth::origin::RequestMeta;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::extract::JsonBody;
use crate::sql_session::{check_request, http_session, run_statements};
use crate::state::AppState;

/// `POST /v1/query` and `/v1/query/arrow`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// One statement, or several separated by `;` (each runs through the pipeline; the
    /// response is the last one's).
    pub sql: String,
    /// Values for `$1`, `$2`, …: strings, numbers, booleans or null.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub params: Vec<Value>,
    /// Lower than the environment's `settings.query_timeout_ms` to shorten it.
    pub timeout_ms: Option<i64>,
    /// Required with a user's token; implied by an API key.
    pub env_id: Option<String>,
}

/// A column of a result.
#[derive(Debug, Serialize, ToSchema)]
pub struct Column {
    pub name: String,
    /// The PostgreSQL type name (`int8`, `varchar`, `numeric`, `timestamptz`, …).
    #[serde(rename = "type")]
    pub data_type: String,
}

/// The JSON result (streamed; fields in this order).
#[derive(Debug, Serialize, ToSchema)]
pub struct QueryResult {
    pub query_id: String,
    pub columns: Vec<Column>,
    #[schema(value_type = Vec<Vec<Object>>)]
    pub rows: Vec<Vec<Value>>,
    /// Rows returned (for writes: rows changed).
    pub row_count: u64,
    /// The command tag of a statement without rows (`INSERT 0 3`, `CREATE TABLE`).
    pub command: Option<String>,
    /// Whether the row cap left rows out.
    pub truncated: bool,
    pub execution_time_ms: u64,
    /// What the statement cost (0 for an answer from the result cache).
    pub credits_consumed: f64,
    pub cache_hit: bool,
}

/// Runs every statement of the request; the last one's outcome is the answer.
async fn run(
    state: &AppState,
    who: &Caller,
    meta: RequestMeta,
    headers: &HeaderMap,
    body: QueryRequest,
    export: bool,
) -> Result<Outcome> {
    check_request(&body.sql, &body.params, body.timeout_ms)?;
    let clock = RequestClock::start(body.timeout_ms);
    let mut session = http_session(state, who, &meta, headers, body.env_id.as_deref()).await?;
    session.export = export;
    run_statements(state, &mut session, &body.sql, body.params, clock).await
}

fn columns_json(rows: &Rows) -> Vec<Column> {
    rows.schema
        .fields()
        .iter()
        .map(|f| Column {
            name: f.name().clone(),
            data_type: type_name(&pg_type(f.data_type())).to_string(),
        })
        .collect()
}

#[utoipa::path(post, path = "/v1/query", tag = "gateway", security(("bearer" = []), ("api_key" = [])),
    request_body = QueryRequest, responses(
    (status = 200, description = "the result, streamed", body = QueryResult),
    (status = 400, description = "invalid request or SQL (`details.sqlstate`, `details.position`)", body = ErrorEnvelope),
    (status = 403, description = "the role or key may not run this kind of statement (42501)", body = ErrorEnvelope),
    (status = 404, body = ErrorEnvelope),
    (status = 408, description = "cancelled at the timeout (57014)", body = ErrorEnvelope),
    (status = 503, description = "the environment's queue is full (53300)", body = ErrorEnvelope)))]
pub async fn query(
    State(state): State<AppState>,
    who: Caller,
    meta: RequestMeta,
    headers: HeaderMap,
    JsonBody(body): JsonBody<QueryRequest>,
) -> ApiResult<Response> {
    let outcome = run(&state, &who, meta, &headers, body, false).await?;
    let mut rows = match outcome {
        Outcome::Rows(rows) => rows,
        Outcome::Command {
            query_id,
            tag,
            rows,
            notice,
            credits,
        } => {
            let mut body = json!({
                "query_id": query_id, "columns": [], "rows": [], "row_count": rows.unwrap_or(0),
                "command": tag, "truncated": false, "execution_time_ms": 0,
                "credits_consumed": credits, "cache_hit": false,
            });
            if let Some(notice) = notice {
                body["notices"] = json!([notice]);
            }
            return Ok(axum::Json(body).into_response());
        }
        Outcome::Show {
            query_id,
            name,
            value,
        } => {
            return Ok(axum::Json(json!({
                "query_id": query_id, "columns": [{"name": name, "type": "text"}],
                "rows": [[value]], "row_count": 1, "command": "SHOW", "truncated": false,
                "execution_time_ms": 0, "credits_consumed": 0.0, "cache_hit": false,
            }))
            .into_response())
        }
    };
    // The first batch is read before answering, so that most failures (and every timeout
    // before the first row) still get their own status code.
    let first = match rows.next().await {
        Some(Err(e)) => return Err(ApiError(e)),
        other => other,
    };
    let head = format!(
        "{{\"query_id\":{},\"columns\":{},\"rows\":[",
        Value::String(rows.query_id.clone()),
        serde_json::to_string(&columns_json(&rows)).unwrap_or_else(|_| "[]".into())
    );
    let body = futures::stream::unfold(
        (Some(rows), first, true, Some(head)),
        |(rows, pending, first_row, head)| async move {
            if let Some(head) = head {
                return Some((
                    Ok::<_, std::io::Error>(Bytes::from(head)),
                    (rows, pending, first_row, None),
                ));
            }
            let mut rows = rows?;
            let batch = match pending {
                Some(b) => Some(b),
                None => rows.next().await,
            };
            match batch {
                Some(Ok(batch)) => {
                    let mut out = String::new();
                    let mut first_row = first_row;
                    for row in json_rows(&batch) {
                        if !first_row {
                            out.push(',');
                        }
                        first_row = false;
                        out.push_str(&row.to_string());
                    }
                    Some((Ok(Bytes::from(out)), (Some(rows), None, first_row, None)))
                }
                Some(Err(e)) => {
                    // Too late for a status code: the error closes the document instead.
                    let tail = format!(
                        "],\"error\":{}}}",
                        json!({"code": e.code.as_str(), "message": e.message, "details": e.details})
                    );
                    Some((Ok(Bytes::from(tail)), (None, None, false, None)))
                }
                None => {
                    let tail = format!(
                        "],\"row_count\":{},\"command\":null,\"truncated\":{},\"execution_time_ms\":{},\"credits_consumed\":{},\"cache_hit\":{}}}",
                        rows.row_count(),
                        rows.truncated(),
                        rows.elapsed_ms(),
                        Value::from(rows.credits_consumed().as_f64()),
                        rows.cache_hit()
                    );
                    Some((Ok(Bytes::from(tail)), (None, None, false, None)))
                }
            }
        },
    );
    let mut response = Body::from_stream(body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

#[utoipa::path(post, path = "/v1/query/arrow", tag = "gateway", security(("bearer" = []), ("api_key" = [])),
    request_body = QueryRequest, responses(
    (status = 200, description = "an Arrow IPC stream with `X-Query-Id`, `X-Cache-Hit`; `X-Row-Count`, `X-Credits-Consumed` and `X-Duration-Ms` when the whole result fit in the first read (a larger result streams, and its batches carry their row counts)", content_type = "application/vnd.apache.arrow.stream"),
    (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    (status = 408, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope)))]
pub async fn query_arrow(
    State(state): State<AppState>,
    who: Caller,
    meta: RequestMeta,
    headers: HeaderMap,
    JsonBody(body): JsonBody<QueryRequest>,
) -> ApiResult<Response> {
    let outcome = run(&state, &who, meta, &headers, body, true).await?;
    let mut rows = match outcome {
        Outcome::Rows(rows) => rows,
        Outcome::Command { .. } | Outcome::Show { .. } => {
            return Err(Error::validation(
                "sql",
                "returns_rows",
                "the Arrow endpoint answers statements that return rows; use /v1/query",
            )
            .into())
        }
    };
    let (mut ipc, header_bytes) = IpcStream::start(&rows.schema)?;
    // Read ahead up to a budget: a result that ends within it is answered with its exact
    // row count and duration in headers; a larger one streams.
    let mut chunks = vec![Bytes::from(header_bytes)];
    let mut buffered = 0usize;
    let mut finished = false;
    while buffered < READ_AHEAD_BYTES {
        match rows.next().await {
            Some(Ok(batch)) => {
                let bytes = ipc.batch(&batch)?;
                buffered += bytes.len();
                chunks.push(Bytes::from(bytes));
            }
            Some(Err(e)) => return Err(ApiError(e)),
            None => {
                finished = true;
                break;
            }
        }
    }
    let query_id = rows.query_id.clone();
    let mut response_headers = HeaderMap::new();
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.apache.arrow.stream"),
    );
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            response_headers.insert(name, v);
        }
    };
    set("x-query-id", query_id);
    set("x-cache-hit", rows.cache_hit().to_string());
    if finished {
        set("x-credits-consumed", rows.credits_consumed().to_string());
        set("x-row-count", rows.row_count().to_string());
        set("x-duration-ms", rows.elapsed_ms().to_string());
        set("x-truncated", rows.truncated().to_string());
        chunks.push(Bytes::from(ipc.finish()?));
        return Ok((
            StatusCode::OK,
            response_headers,
            Body::from_stream(futures::stream::iter(
                chunks.into_iter().map(Ok::<_, std::io::Error>),
            )),
        )
            .into_response());
    }
    let head = futures::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
    let tail = futures::stream::unfold(Some((rows, ipc)), |state| async move {
        let (mut rows, mut ipc) = state?;
        match rows.next().await {
            Some(Ok(batch)) => match ipc.batch(&batch) {
                Ok(bytes) => Some((Ok(Bytes::from(bytes)), Some((rows, ipc)))),
                Err(e) => Some((Err(std::io::Error::other(e.message)), None)),
            },
            // An error after the headers: the stream stops without its end marker, which
            // Arrow readers report as a truncated stream.
            Some(Err(e)) => Some((Err(std::io::Error::other(e.message)), None)),
            None => match ipc.finish() {
                Ok(bytes) => Some((Ok(Bytes::from(bytes)), None)),
                Err(e) => Some((Err(std::io::Error::other(e.message)), None)),
            },
        }
    });
    Ok((
        StatusCode::OK,
        response_headers,
        Body::from_stream(head.chain(tail)),
    )
        .into_response())
}

/// Arrow data read before the response starts.
const READ_AHEAD_BYTES: usize = 8 * 1024 * 1024;

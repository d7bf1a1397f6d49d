//! `/v1/environments/{env_id}/tables`: the environment's tables with their columns, and
//! bulk import of CSV or Parquet into one of them. Both go through the gateway's pipeline:
//! listing is a read statement, import a `COPY … FROM STDIN` (audited in the query trail).

use axum::body::Body;
use axum::extract::State;

use crate::extract::Path;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use enclave_core::pagination::{Page, PageRequest};
use enclave_core::query::with_sqlstate;
use enclave_core::{Error, Result};
use enclave_gateway::catalog::{TableFilter, TableInfo};
use enclave_gateway::load::{validate_table, CsvOptions, LoadFormat, LoadRequest, Mapping, Spool};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::origin::RequestMeta;
use crate::auth::Caller;
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::{discard_body, QueryParams};
use crate::sql_session::http_session;
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TablesParams {
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// A table and its columns.
#[derive(Serialize, ToSchema)]
pub struct Table {
    pub name: String,
    /// `table` or `view`.
    pub kind: String,
    pub columns: Vec<TableColumn>,
}

#[derive(Serialize, ToSchema)]
pub struct TableColumn {
    pub name: String,
    /// The engine's type name (`INTEGER`, `VARCHAR`, `DECIMAL(10,2)`, …).
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

fn view(t: TableInfo) -> Table {
    Table {
        name: t.name,
        kind: t.kind,
        columns: t
            .columns
            .into_iter()
            .map(|c| TableColumn {
                name: c.name,
                data_type: c.data_type,
                nullable: c.nullable,
            })
            .collect(),
    }
}

#[utoipa::path(get, path = "/v1/environments/{env_id}/tables", tag = "gateway",
    params(("env_id" = String, Path), TablesParams), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = inline(Page<Table>)),
    (status = 403, description = "the role or key may not run queries (42501)", body = ErrorEnvelope),
    (status = 404, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    who: Caller,
    meta: RequestMeta,
    headers: HeaderMap,
    Path(env_id): Path<String>,
    QueryParams(q): QueryParams<TablesParams>,
) -> ApiResult<axum::Json<Page<Table>>> {
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let mut session = http_session(&state, &who, &meta, &headers, Some(&env_id)).await?;
    let filter = TableFilter::Page {
        after: page.after.as_deref(),
        limit: page.limit + 1,
    };
    let (tables, total) = state.gateway.tables(&mut session, filter).await?;
    let tables = tables.into_iter().map(view).collect();
    Ok(axum::Json(Page::from_rows(tables, &page, total, |t| {
        t.name.clone()
    })))
}

#[utoipa::path(get, path = "/v1/environments/{env_id}/tables/{table}", tag = "gateway",
    params(("env_id" = String, Path), ("table" = String, Path)),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Table), (status = 404, body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    who: Caller,
    meta: RequestMeta,
    headers: HeaderMap,
    Path((env_id, table)): Path<(String, String)>,
) -> ApiResult<axum::Json<Table>> {
    validate_table(&table)?;
    let mut session = http_session(&state, &who, &meta, &headers, Some(&env_id)).await?;
    let (tables, _) = state
        .gateway
        .tables(&mut session, TableFilter::Named(&table))
        .await?;
    let table = tables
        .into_iter()
        .next()
        .ok_or_else(|| Error::not_found("table"))?;
    Ok(axum::Json(view(table)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportParams {
    /// `csv` or `parquet`; by default from the Content-Type (`text/csv`,
    /// `application/vnd.apache.parquet`).
    pub format: Option<String>,
    /// CSV: whether the first line names the columns (default true). Columns are matched
    /// by name; without a header, by position.
    pub header: Option<bool>,
    /// CSV: the field separator, one character (default `,`).
    pub delimiter: Option<String>,
    /// CSV: the unquoted text that stands for NULL (default: an empty field).
    pub null: Option<String>,
    /// Create the table from the file's columns when it does not exist (default true; needs
    /// what `CREATE TABLE` needs).
    pub create: Option<bool>,
}

/// What an import did.
#[derive(Serialize, ToSchema)]
pub struct ImportResult {
    /// The import's entry in the environment's query audit.
    pub query_id: String,
    pub table: String,
    pub rows_imported: u64,
    /// Whether the import created the table.
    pub created: bool,
}

fn format_of(q: &ImportParams, headers: &HeaderMap) -> Result<LoadFormat> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    let name = match (q.format.as_deref(), content_type.as_deref()) {
        (Some(f), _) => f.to_string(),
        (None, Some("text/csv")) => "csv".into(),
        (None, Some("application/vnd.apache.parquet" | "application/x-parquet")) => {
            "parquet".into()
        }
        _ => {
            return Err(Error::validation(
                "format",
                "required",
                "name the format: ?format=csv|parquet, or Content-Type text/csv or application/vnd.apache.parquet",
            )
            .with_status(415))
        }
    };
    match name.as_str() {
        "csv" => {
            let delimiter =
                match q.delimiter.as_deref() {
                    None => ',',
                    Some(d) => {
                        let mut chars = d.chars();
                        match (chars.next(), chars.next()) {
                            (Some(c), None) if !matches!(c, '\n' | '\r' | '"') => c,
                            _ => return Err(Error::validation(
                                "delimiter",
                                "one_char",
                                "delimiter must be one character other than a quote or line break",
                            )),
                        }
                    }
                };
            let null = q.null.clone().unwrap_or_default();
            if null.len() > 64 || null.contains(['\n', '\r', '"']) {
                return Err(Error::validation(
                    "null",
                    "format",
                    "null must be at most 64 characters, without quotes or line breaks",
                ));
            }
            Ok(LoadFormat::Csv(CsvOptions {
                header: q.header.unwrap_or(true),
                delimiter,
                null,
                ..CsvOptions::default()
            }))
        }
        "parquet" => {
            if q.header.is_some() || q.delimiter.is_some() || q.null.is_some() {
                return Err(Error::validation(
                    "format",
                    "csv_only",
                    "header, delimiter and null apply to CSV only",
                ));
            }
            Ok(LoadFormat::Parquet)
        }
        _ => Err(Error::validation(
            "format",
            "one_of",
            "format must be csv or parquet",
        )),
    }
}

#[utoipa::path(post, path = "/v1/environments/{env_id}/tables/{table}/import", tag = "gateway",
    params(("env_id" = String, Path), ("table" = String, Path), ImportParams),
    request_body(content = Vec<u8>, description = "the CSV or Parquet file", content_type = "text/csv"),
    security(("bearer" = []), ("api_key" = [])),
    responses(
    (status = 200, description = "rows appended to an existing table", body = ImportResult),
    (status = 201, description = "the table was created and loaded", body = ImportResult),
    (status = 400, description = "bad options or data (`details.sqlstate`: 22P04 bad file, 42703 unknown column, …)", body = ErrorEnvelope),
    (status = 403, description = "the role or key may not write (or create) tables (42501)", body = ErrorEnvelope),
    (status = 404, description = "no such environment, or no such table and `create=false` (42P01)", body = ErrorEnvelope),
    (status = 413, body = ErrorEnvelope),
    (status = 415, description = "the format is not named", body = ErrorEnvelope)))]
pub async fn import(
    State(state): State<AppState>,
    who: Caller,
    meta: RequestMeta,
    headers: HeaderMap,
    Path((env_id, table)): Path<(String, String)>,
    QueryParams(q): QueryParams<ImportParams>,
    body: Body,
) -> ApiResult<Response> {
    let prepared = async {
        validate_table(&table)?;
        let format = format_of(&q, &headers)?;
        let session = http_session(&state, &who, &meta, &headers, Some(&env_id)).await?;
        Ok::<_, Error>((format, session))
    }
    .await;
    let (format, mut session) = match prepared {
        Ok(p) => p,
        Err(e) => {
            discard_body(body).await;
            return Err(e.into());
        }
    };
    let gateway = state.gateway.clone();
    let label = match &format {
        LoadFormat::Csv(_) => "csv",
        LoadFormat::Parquet => "parquet",
    };
    let sql = format!("COPY \"{table}\" FROM STDIN (FORMAT {label})");
    let statement = gateway.parse(&session, &sql).await?.remove(0);
    let spool = spool_body(&state, body).await?;
    // An import with nothing in it is a mistake (a wrong path, an empty pipe), not a load of
    // no rows; `COPY … FROM STDIN` of no data stays `COPY 0`, as in PostgreSQL.
    if tokio::fs::metadata(spool.path())
        .await
        .map_or(true, |m| m.len() == 0)
    {
        return Err(with_sqlstate(
            Error::validation(
                "body",
                "required",
                "the body is empty: send the file to import",
            ),
            "22P04",
        )
        .into());
    }
    let mapping = match &format {
        LoadFormat::Csv(o) if !o.header => Mapping::ByPosition(vec![]),
        _ => Mapping::ByName,
    };
    let request = LoadRequest {
        table: table.clone(),
        path: spool.path().to_path_buf(),
        format,
        mapping,
        create: q.create.unwrap_or(true),
    };
    let (query_id, loaded) = gateway.load(&mut session, &statement, request).await?;
    drop(spool);
    let status = if loaded.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let result = ImportResult {
        query_id,
        table,
        rows_imported: loaded.rows,
        created: loaded.created,
    };
    Ok((status, axum::Json(result)).into_response())
}

/// The request body, written to a spool file as it arrives (never held whole).
async fn spool_body(state: &AppState, body: Body) -> Result<Spool> {
    let config = state.gateway.config();
    let name = enclave_core::id::new_id(enclave_core::id::Kind::Query);
    let mut spool = Spool::open(config.spool_dir.clone(), name, config.load_limit, None).await?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|_| Error::validation("body", "complete", "the request body ended early"))?;
        spool = spool.append(chunk).await?;
    }
    spool.complete().await
}

//! Request extractors that answer bad input with a precise 400 naming the field and the rule:
//! JSON bodies (unknown fields refused), query strings, `If-Match`.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use enclave_core::Error;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The largest request body accepted (bytes) by most routes; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Creating a batch of secrets and importing: up to 1 000 / 10 000 values of up to 64 KiB.
pub const SECRETS_BULK_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Changing one secret: a 64 KiB value, JSON-escaped.
pub const SECRET_BODY_BYTES: usize = 1024 * 1024;

/// A query: up to 1 MiB of SQL and its parameters, JSON-escaped.
pub const QUERY_BODY_BYTES: usize = 4 * 1024 * 1024;

/// An import's file (CSV or Parquet), spooled to disk as it arrives: 1 GiB.
pub const IMPORT_BODY_BYTES: usize = 1 << 30;

/// The body limit of a request, set by the request-context middleware from its route.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// How large a body `method` on `route` (the matched path) may send.
pub fn body_limit(method: &axum::http::Method, route: &str) -> usize {
    use axum::http::Method;
    match (method, route) {
        (&Method::POST, "/v1/environments/{env_id}/secrets")
        // Import is served by the `{key}` route.
        | (&Method::POST, "/v1/environments/{env_id}/secrets/{key}") => SECRETS_BULK_BODY_BYTES,
        (&Method::PATCH, "/v1/environments/{env_id}/secrets/{key}") => SECRET_BODY_BYTES,
        (&Method::POST, "/v1/query" | "/v1/query/arrow" | "/mcp") => QUERY_BODY_BYTES,
        (&Method::POST, "/v1/environments/{env_id}/tables/{table}/import") => IMPORT_BODY_BYTES,
        _ => MAX_BODY_BYTES,
    }
}

fn limit_of(extensions: &axum::http::Extensions) -> usize {
    extensions
        .get::<BodyLimit>()
        .map_or(MAX_BODY_BYTES, |l| l.0)
}

/// Reads a whole body, refusing one over `limit` bytes with 413.
pub async fn read_body(
    body: axum::body::Body,
    limit: usize,
) -> Result<axum::body::Bytes, ApiError> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
        let chunk = chunk.map_err(|_| too_large(limit))?;
        if buf.len() + chunk.len() > limit {
            discard_body(axum::body::Body::from_stream(stream)).await;
            return Err(too_large(limit).into());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.into())
}

/// The body of a request, within its route's limit.
pub async fn request_body(req: Request) -> Result<axum::body::Bytes, ApiError> {
    let limit = limit_of(req.extensions());
    read_body(req.into_body(), limit).await
}

/// Reads and drops what is left of a refused body (up to a bound, for a short while), so the
/// client gets the 413 instead of a connection reset while it is still sending.
pub async fn discard_body(body: axum::body::Body) {
    const DRAIN_LIMIT: usize = 8 * 1024 * 1024;
    let drain = async {
        let mut stream = body.into_data_stream();
        let mut seen = 0;
        while let Some(Ok(chunk)) = futures::StreamExt::next(&mut stream).await {
            seen += chunk.len();
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), drain).await;
}

pub fn too_large(limit: usize) -> Error {
    Error::validation(
        "body",
        "max_bytes",
        format!("request body must be at most {limit} bytes"),
    )
    .with_status(413)
}

/// A serde message without the offending value (`invalid type: string "…", expected u32` →
/// `expected u32`): request bodies carry secrets, and errors must not echo them.
fn without_value(msg: &str) -> &str {
    if msg.starts_with("invalid type:")
        || msg.starts_with("invalid value:")
        || msg.starts_with("invalid length")
    {
        if let Some(at) = msg.rfind(", expected ") {
            return &msg[at + 2..];
        }
    }
    msg
}

/// [`parse_json`] of a body that may be left out: none (or only whitespace) is `T`'s default.
pub fn parse_optional_json<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_json(bytes)
    }
}

/// Parses JSON text into `T`; request types use `#[serde(deny_unknown_fields)]`, so an
/// unknown field is a 400 that names it.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.to_string();
        let field_at = |name: &str| {
            if path == "." || path.is_empty() {
                name.to_string()
            } else {
                format!("{path}.{name}")
            }
        };
        if let Some(name) = between(&msg, "unknown field `", "`") {
            // The path already ends at the unknown field.
            let field = if path.ends_with(name) {
                path.clone()
            } else {
                field_at(name)
            };
            Error::validation(&field, "unknown_field", format!("unknown field `{field}`"))
        } else if let Some(name) = between(&msg, "missing field `", "`") {
            Error::validation(
                &field_at(name),
                "required",
                format!("`{}` is required", field_at(name)),
            )
        } else if inner.is_syntax() || inner.is_eof() {
            Error::validation(
                "body",
                "json",
                format!("request body is not valid JSON: {msg}"),
            )
        } else {
            let field = if path == "." {
                "body".to_string()
            } else {
                path
            };
            Error::validation(
                &field,
                "type",
                format!("`{field}`: {}", without_value(strip_position(&msg))),
            )
        }
    })
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let len = s[from..].find(end)?;
    Some(&s[from..from + len])
}

fn strip_position(msg: &str) -> &str {
    msg.split(" at line ").next().unwrap_or(msg)
}

/// Whether the request says its body is JSON (`Content-Type: application/json…`).
pub fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        })
}

/// A JSON body: `Content-Type: application/json`, within its route's [`body_limit`], no
/// unknown fields.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(Error::validation(
                "content-type",
                "json",
                "Content-Type must be application/json",
            )
            .into());
        }
        let bytes = request_body(req).await?;
        Ok(JsonBody(parse_json(&bytes)?))
    }
}

/// Query parameters; unknown parameters are refused like unknown body fields.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Ok(QueryParams(parse_query(
            parts.uri.query().unwrap_or_default(),
        )?))
    }
}

/// Parses a query string into `T`; an unknown parameter or a missing required one is a 400
/// naming it.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, Error> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.into_inner().to_string();
        if let Some(name) = between(&msg, "unknown field `", "`") {
            Error::validation(
                name,
                "unknown_parameter",
                format!("unknown query parameter `{name}`"),
            )
        } else if let Some(name) = between(&msg, "missing field `", "`") {
            Error::validation(
                name,
                "required",
                format!("query parameter `{name}` is required"),
            )
        } else {
            let field = if path == "." {
                "query".to_string()
            } else {
                path
            };
            Error::validation(&field, "type", format!("query parameter `{field}`: {msg}"))
        }
    })
}

/// Path parameters, as axum's `Path`, with a malformed one (a version that is no integer, a
/// segment that is not UTF-8) refused like any other bad input: 400 naming the parameter.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => {
                use axum::extract::path::ErrorKind;
                let field = match &rejection {
                    axum::extract::rejection::PathRejection::FailedToDeserializePathParams(e) => {
                        match e.kind() {
                            ErrorKind::ParseErrorAtKey { key, .. }
                            | ErrorKind::InvalidUtf8InPathParam { key } => key.clone(),
                            _ => "path".to_string(),
                        }
                    }
                    _ => "path".to_string(),
                };
                Err(Error::validation(
                    &field,
                    "type",
                    format!("path parameter `{field}` is not valid here"),
                )
                .into())
            }
        }
    }
}

/// `If-Match`: `None` when absent or `*`; the expected version otherwise. An ETag this API
/// never issued can match nothing, so it yields a version that fails the check (412).
pub struct IfMatch(pub Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(header::IF_MATCH) else {
            return Ok(IfMatch(None));
        };
        let value = value.to_str().unwrap_or_default().trim();
        if value == "*" {
            return Ok(IfMatch(None));
        }
        let version = value
            .trim_start_matches("W/")
            .trim_matches('"')
            .parse::<i64>()
            .unwrap_or(-1);
        Ok(IfMatch(Some(version)))
    }
}

/// The `ETag` of a resource at `version`.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        inner: Option<Inner>,
    }
    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
    }

    fn fail(json: &str) -> (String, String) {
        let e = parse_json::<Body>(json.as_bytes()).unwrap_err();
        (
            e.details["field"].as_str().unwrap().into(),
            e.details["rule"].as_str().unwrap().into(),
        )
    }

    #[test]
    fn json_errors_name_field_and_rule() {
        assert_eq!(
            fail(r#"{"name":"a","extra":1}"#),
            ("extra".into(), "unknown_field".into())
        );
        assert_eq!(
            fail(r#"{"name":"a","inner":{"n":1,"x":2}}"#),
            ("inner.x".into(), "unknown_field".into())
        );
        assert_eq!(fail(r#"{}"#), ("name".into(), "required".into()));
        assert_eq!(fail(r#"{"name":5}"#), ("name".into(), "type".into()));
        assert_eq!(
            fail(r#"{"name":"a","inner":{"n":-1}}"#),
            ("inner.n".into(), "type".into())
        );
        assert_eq!(fail(r#"{"name":"#), ("body".into(), "json".into()));
        assert_eq!(fail(r#"[1]"#).1, "type");
        let e = parse_json::<Body>(br#"{"name":"a","inner":{"n":"hunter2"}}"#).unwrap_err();
        assert!(!e.message.contains("hunter2"), "{}", e.message);
        assert!(e.message.contains("expected u32"), "{}", e.message);
    }
}

/// `?limit=&cursor=` of a keyset-paginated list.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `pagination.cursor` of the previous page.
    pub cursor: Option<String>,
}

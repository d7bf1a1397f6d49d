//! `/v1/environments/{env_id}/secrets`: list (values only with `reveal=true`), create (one or
//! a batch), get, patch, delete, versions and restore. Export and import are in
//! `transfer.rs`.
//!
//! Listing keys: every member (keys: `secrets:read`); reading values: owner, admin, developer
//! (keys: `secrets:read`); changing: owner, admin (keys: `secrets:write`). Values are sealed
//! and opened here with the environment's data key; the store sees ciphertext only.

pub mod transfer;

use axum::extract::{RawQuery, Request, State};

use crate::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use enclave_core::id::{new_id, EnvId, Kind};
use enclave_core::pagination::{Page, PageRequest};
use enclave_core::secret::{CreateSecrets, PatchSecret, Secret, SecretVersion};
use enclave_core::{Error, ErrorCode, Permission, Result};
use enclave_store::{EnvRecord, NewSecret, SecretRecord, SecretWrite};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::access::env_access;
use crate::auth::{Caller, Origin};
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::{IfMatch, JsonBody, QueryParams};
use crate::secrets::{self, may_read_values};
use crate::state::AppState;
use crate::views;

/// How many times a write planned from a read is planned again when another write landed in
/// between (only without `If-Match`, which asks for exactly the version read).
const ATTEMPTS: u32 = 5;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SecretListParams {
    /// Include values (needs permission to read secret values; 403 otherwise).
    pub reveal: Option<bool>,
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `pagination.cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A batch create's answer.
#[derive(Serialize, ToSchema)]
pub struct SecretBatch {
    pub data: Vec<Secret>,
}

fn location(rec: &SecretRecord) -> String {
    format!("/v1/environments/{}/secrets/{}", rec.env_id, rec.key)
}

async fn load(state: &AppState, env_id: &EnvId, key: &str) -> Result<SecretRecord> {
    state
        .store
        .secret(env_id, key)
        .await?
        .ok_or_else(|| Error::not_found("secret"))
}

fn metadata(rec: &SecretRecord) -> Response {
    views::with_etag(rec.version, secrets::view(rec, None))
}

#[utoipa::path(get, path = "/v1/environments/{env_id}/secrets", tag = "secrets", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), SecretListParams), responses(
    (status = 200, description = "by key; `value` only with `reveal=true`", body = Page<Secret>),
    (status = 403, description = "`reveal=true` without permission to read values", body = ErrorEnvelope),
    (status = 404, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<AppState>,
    who: Caller,
    Path(env_id): Path<String>,
    QueryParams(q): QueryParams<SecretListParams>,
) -> ApiResult<axum::Json<Page<Secret>>> {
    let reveal = q.reveal.unwrap_or(false);
    let permission = if reveal {
        Permission::ReadSecretValues
    } else {
        Permission::ReadSecrets
    };
    let (env, _) = env_access(&state, &who, &env_id, permission).await?;
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let (rows, total) = state.store.secrets(&env.id, &page).await?;
    let key = match (reveal, rows.is_empty()) {
        (true, false) => state.keyring.existing(&env.id).await?,
        _ => None,
    };
    let data = rows
        .iter()
        .map(|rec| {
            let value = match &key {
                Some(k) => Some(secrets::open(k, rec)?),
                None => None,
            };
            Ok(secrets::view(rec, value))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(axum::Json(Page::from_rows(data, &page, total, |s| {
        s.key.clone()
    })))
}

#[utoipa::path(post, path = "/v1/environments/{env_id}/secrets", tag = "secrets", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path)), request_body = CreateSecrets, responses(
    (status = 201, description = "one secret (`Location`, `ETag`), or `{data}` for a batch; values are not echoed", body = Secret),
    (status = 400, description = "names the field, e.g. `secrets[3].key`", body = ErrorEnvelope),
    (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    (status = 409, description = "a key exists (`key_taken`, nothing created), or the environment is locked", body = ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    who: Caller,
    origin: Origin,
    Path(env_id): Path<String>,
    JsonBody(req): JsonBody<CreateSecrets>,
) -> ApiResult<Response> {
    let (env, access) = env_access(&state, &who, &env_id, Permission::ManageSecrets).await?;
    let origin = origin.via(access.grant());
    let (items, batch) = req.validate()?;
    let key = state.keyring.for_writing(&env.id).await?;
    let writes = items
        .into_iter()
        .map(|item| {
            let id = new_id(Kind::Secret);
            SecretWrite::Create(NewSecret {
                ciphertext: key.seal(&id, 1, &item.content.value),
                id,
                org_id: env.org_id.clone(),
                env_id: env.id.clone(),
                key: item.key,
                comment: item.content.comment,
                tags: item.content.tags,
            })
        })
        .collect();
    let recs = state.store.write_secrets(&env.id, writes, &origin).await?;
    if batch {
        let data = recs.iter().map(|r| secrets::view(r, None)).collect();
        return Ok((StatusCode::CREATED, axum::Json(SecretBatch { data })).into_response());
    }
    let rec = recs.into_iter().next().ok_or_else(Error::internal)?;
    Ok(views::created(
        rec.version,
        location(&rec),
        secrets::view(&rec, None),
    ))
}

#[utoipa::path(get, path = "/v1/environments/{env_id}/secrets/{key}", tag = "secrets", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ("key" = String, Path)), responses(
    (status = 200, description = "with its value", body = Secret), (status = 403, body = ErrorEnvelope),
    (status = 404, body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<AppState>,
    who: Caller,
    Path((env_id, key)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    // `GET …/secrets/export?format=…` shares this route; a secret whose key is `export` is
    // read without a `format`.
    if key == "export" && query.as_deref().is_some_and(|q| !q.is_empty()) {
        return transfer::export(&state, &who, &env_id, query.as_deref().unwrap_or_default()).await;
    }
    if query.as_deref().is_some_and(|q| !q.is_empty()) {
        return Err(Error::validation(
            "query",
            "unknown_parameter",
            "this request takes no query parameters",
        )
        .into());
    }
    let (env, _) = env_access(&state, &who, &env_id, Permission::ReadSecretValues).await?;
    let rec = load(&state, &env.id, &key).await?;
    let data_key = state
        .keyring
        .existing(&env.id)
        .await?
        .ok_or_else(Error::internal)?;
    let value = secrets::open(&data_key, &rec)?;
    Ok(views::with_etag(
        rec.version,
        secrets::view(&rec, Some(value)),
    ))
}

/// The methods of one secret (`Allow` when another is tried).
pub const SECRET_METHODS: &str = "GET,HEAD,PATCH,DELETE";

/// `POST …/secrets/import` shares the `{key}` route; nothing else is posted to a key.
pub async fn post_to_key(
    state: State<AppState>,
    who: Caller,
    origin: Origin,
    Path((env_id, key)): Path<(String, String)>,
    query: RawQuery,
    req: Request,
) -> ApiResult<Response> {
    if key != "import" {
        let refused = Error::validation(
            "method",
            "not_allowed",
            "POST is not a method of a secret; use PATCH to change one",
        )
        .with_status(StatusCode::METHOD_NOT_ALLOWED.as_u16());
        let mut resp = crate::error::ApiError(refused).into_response();
        resp.headers_mut().insert(
            axum::http::header::ALLOW,
            axum::http::HeaderValue::from_static(SECRET_METHODS),
        );
        return Ok(resp);
    }
    transfer::import(state, who, origin, Path(env_id), query, req).await
}

#[utoipa::path(patch, path = "/v1/environments/{env_id}/secrets/{key}", tag = "secrets", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ("key" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = PatchSecret, responses(
    (status = 200, description = "the secret (without its value); a change saves a new version", body = Secret),
    (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    (status = 409, description = "environment locked", body = ErrorEnvelope), (status = 412, body = ErrorEnvelope)))]
pub async fn patch(
    State(state): State<AppState>,
    who: Caller,
    origin: Origin,
    Path((env_id, key)): Path<(String, String)>,
    IfMatch(expected): IfMatch,
    JsonBody(req): JsonBody<PatchSecret>,
) -> ApiResult<Response> {
    let (env, access) = env_access(&state, &who, &env_id, Permission::ManageSecrets).await?;
    let origin = origin.via(access.grant());
    let can_read = may_read_values(&who, &access);
    let rec = save(&state, &env, &key, expected, can_read, &origin, |current| {
        req.clone().apply(current)
    })
    .await?;
    Ok(metadata(&rec))
}

/// Reads the secret, computes its next content, and saves it as the next version — again
/// from a fresh read if another write landed in between (unless `expected` pins the
/// version). Content equal to the current one saves nothing, for callers who may read
/// values (for others, that answer would tell whether a guessed value is the stored one).
async fn save(
    state: &AppState,
    env: &EnvRecord,
    key: &str,
    expected: Option<i64>,
    can_read: bool,
    origin: &Origin,
    next: impl Fn(&enclave_core::secret::Content) -> Result<enclave_core::secret::Content>,
) -> Result<SecretRecord> {
    let data_key = state.keyring.for_writing(&env.id).await?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let rec = load(state, &env.id, key).await?;
        if expected.is_some_and(|v| v != rec.version) {
            return Err(Error::precondition_failed(
                "the secret changed since it was read (If-Match)",
            ));
        }
        let current = secrets::content(&data_key, &rec)?;
        let content = next(&current)?;
        if can_read && content == current {
            return Ok(rec);
        }
        let write = SecretWrite::Update {
            secret_id: rec.id.clone(),
            key: rec.key.clone(),
            expected_version: rec.version,
            ciphertext: data_key.seal(&rec.id, rec.version + 1, &content.value),
            comment: content.comment,
            tags: content.tags,
        };
        match state
            .store
            .write_secrets(&env.id, vec![write], origin)
            .await
        {
            Ok(mut recs) => return recs.pop().ok_or_else(Error::internal),
            Err(e)
                if e.code == ErrorCode::PreconditionFailed
                    && expected.is_none()
                    && attempt < ATTEMPTS =>
            {
                continue
            }
            Err(e) => return Err(e),
        }
    }
}

#[utoipa::path(delete, path = "/v1/environments/{env_id}/secrets/{key}", tag = "secrets", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ("key" = String, Path), ("If-Match" = Option<String>, Header)), responses(
    (status = 204, description = "deleted with every version"), (status = 403, body = ErrorEnvelope),
    (status = 404, body = ErrorEnvelope), (status = 409, description = "environment locked", body = ErrorEnvelope),
    (status = 412, body = ErrorEnvelope)))]
pub async fn delete(
    State(state): State<AppState>,
    who: Caller,
    origin: Origin,
    Path((env_id, key)): Path<(String, String)>,
    IfMatch(expected): IfMatch,
) -> ApiResult<StatusCode> {
    let (env, access) = env_access(&state, &who, &env_id, Permission::ManageSecrets).await?;
    let origin = origin.via(access.grant());
    state
        .store
        .delete_secret(&env.id, &key, expected, &origin)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/environments/{env_id}/secrets/{key}/versions", tag = "secrets", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ("key" = String, Path), crate::extract::ListParams), responses(
    (status = 200, description = "newest first, with values", body = Page<SecretVersion>),
    (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn versions(
    State(state): State<AppState>,
    who: Caller,
    Path((env_id, key)): Path<(String, String)>,
    QueryParams(q): QueryParams<crate::extract::ListParams>,
) -> ApiResult<axum::Json<Page<SecretVersion>>> {
    let (env, _) = env_access(&state, &who, &env_id, Permission::ReadSecretValues).await?;
    let rec = load(&state, &env.id, &key).await?;
    let page = PageRequest::parse(q.limit, q.cursor.as_deref())?;
    let (rows, total) = state.store.secret_versions(&rec.id, &page).await?;
    let data_key = state
        .keyring
        .existing(&env.id)
        .await?
        .ok_or_else(Error::internal)?;
    let data = rows
        .iter()
        .map(|v| secrets::version_view(&data_key, &env.id, rec.version, v))
        .collect::<Result<Vec<_>>>()?;
    Ok(axum::Json(Page::from_rows(data, &page, total, |v| {
        v.version.to_string()
    })))
}

#[utoipa::path(post, path = "/v1/environments/{env_id}/secrets/{key}/versions/{version}/restore", tag = "secrets", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ("key" = String, Path), ("version" = i64, Path), ("If-Match" = Option<String>, Header)), responses(
    (status = 200, description = "that version's value, comment and tags saved as the newest version", body = Secret),
    (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    (status = 409, description = "environment locked", body = ErrorEnvelope), (status = 412, body = ErrorEnvelope)))]
pub async fn restore(
    State(state): State<AppState>,
    who: Caller,
    origin: Origin,
    Path((env_id, key, version)): Path<(String, String, i64)>,
    IfMatch(expected): IfMatch,
) -> ApiResult<Response> {
    let (env, access) = env_access(&state, &who, &env_id, Permission::ManageSecrets).await?;
    let origin = origin.via(access.grant());
    let can_read = may_read_values(&who, &access);
    let rec = load(&state, &env.id, &key).await?;
    let old = state
        .store
        .secret_version(&rec.id, version)
        .await?
        .ok_or_else(|| Error::not_found("secret version"))?;
    let data_key = state.keyring.for_writing(&env.id).await?;
    let restored = secrets::version_view(&data_key, &env.id, rec.version, &old)?;
    let rec = save(&state, &env, &key, expected, can_read, &origin, |_| {
        Ok(enclave_core::secret::Content {
            value: restored.value.clone(),
            comment: restored.comment.clone(),
            tags: restored.tags.clone(),
        })
    })
    .await?;
    Ok(metadata(&rec))
}

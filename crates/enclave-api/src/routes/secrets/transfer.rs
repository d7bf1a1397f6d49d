//! `GET …/secrets/export?format=dotenv|json` and `POST …/secrets/import` (`.env` text or a
//! JSON object; `?dry_run=true`, `?overwrite=true`). Both share the `{key}` route with single
//! secrets (see `secrets.rs`), so their query strings are parsed here.

use std::collections::BTreeMap;

use axum::extract::{RawQuery, Request, State};

use crate::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use enclave_core::id::{new_id, Kind};
use enclave_core::secret::{self, dotenv, ImportOutcome};
use enclave_core::{Error, ErrorCode, Permission, Result};
use enclave_store::{NewSecret, SecretRecord, SecretWrite};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::access::env_access;
use crate::auth::{Caller, Origin};
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::{is_json, parse_query, request_body};
use crate::secrets::{self, may_read_values};
use crate::state::AppState;

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// `KEY=value` lines (quoted where needed), by key.
    Dotenv,
    /// One JSON object `{"KEY": "value"}`, by key.
    Json,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    pub format: ExportFormat,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportParams {
    /// Answer what the import would do; change nothing.
    pub dry_run: Option<bool>,
    /// Replace values of keys that exist with another value (default: skip them).
    pub overwrite: Option<bool>,
}

#[utoipa::path(get, path = "/v1/environments/{env_id}/secrets/export", tag = "secrets", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ExportParams), responses(
    (status = 200, description = "every secret: `.env` lines (`format=dotenv`), or a JSON object of KEY: value (`format=json`)",
        content((String = "text/plain"), (std::collections::BTreeMap<String, String> = "application/json"))),
    (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn export(
    state: &AppState,
    who: &Caller,
    env_id: &str,
    raw_query: &str,
) -> ApiResult<Response> {
    let params: ExportParams = parse_query(raw_query)?;
    let (env, _) = env_access(state, who, env_id, Permission::ReadSecretValues).await?;
    let values = secrets::env_values(&state.store, &state.keyring, &env.id).await?;
    let resp = match params.format {
        ExportFormat::Dotenv => {
            let text = dotenv::render(values.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let mut resp = text.into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            resp
        }
        ExportFormat::Json => axum::Json(values).into_response(),
    };
    Ok(resp)
}

#[utoipa::path(post, path = "/v1/environments/{env_id}/secrets/import", tag = "secrets", security(("bearer" = []), ("api_key" = [])),
    params(("env_id" = String, Path), ImportParams),
    request_body(content = String, description = "`.env` text (any content type but JSON), or `application/json`: an object of KEY: value", content_type = "text/plain"),
    responses(
    (status = 200, description = "keys created, updated, unchanged and skipped (values never shown)", body = ImportOutcome),
    (status = 400, description = "names the line (`.env`) or the key (JSON); nothing imported", body = ErrorEnvelope),
    (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
    (status = 409, description = "environment locked", body = ErrorEnvelope)))]
pub async fn import(
    State(state): State<AppState>,
    who: Caller,
    origin: Origin,
    Path(env_id): Path<String>,
    RawQuery(raw_query): RawQuery,
    req: Request,
) -> ApiResult<Response> {
    let params: ImportParams = parse_query(raw_query.as_deref().unwrap_or_default())?;
    let (env, access) = env_access(&state, &who, &env_id, Permission::ManageSecrets).await?;
    let origin = origin.via(access.grant());
    let can_read = may_read_values(&who, &access);
    let json = is_json(req.headers());
    let body = request_body(req).await?;
    if body.is_empty() {
        return Err(Error::validation(
            "body",
            "required",
            "the body is the `.env` text or JSON object to import",
        )
        .into());
    }
    let incoming = secret::parse_import(&body, json)?;
    let dry_run = params.dry_run.unwrap_or(false);
    let overwrite = params.overwrite.unwrap_or(false);
    let data_key = state.keyring.for_writing(&env.id).await?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current: BTreeMap<String, SecretRecord> = state
            .store
            .env_secrets(&env.id)
            .await?
            .into_iter()
            .map(|r| (r.key.clone(), r))
            .collect();
        // Whether a value is unchanged is only worked out for callers who may read values
        // (else the answer would confirm guesses): for others, every present key differs.
        let values: BTreeMap<String, String> = if can_read {
            current
                .iter()
                .map(|(k, r)| Ok((k.clone(), secrets::open(&data_key, r)?)))
                .collect::<Result<_>>()?
        } else {
            current
                .keys()
                .map(|k| (k.clone(), "\0".to_string()))
                .collect()
        };
        let mut outcome = secret::plan_import(&values, &incoming, overwrite);
        outcome.dry_run = dry_run;
        if dry_run {
            return Ok(axum::Json(outcome).into_response());
        }
        let incoming_values: BTreeMap<&str, &str> = incoming
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut writes = Vec::with_capacity(outcome.created.len() + outcome.updated.len());
        for key in &outcome.created {
            let id = new_id(Kind::Secret);
            writes.push(SecretWrite::Create(NewSecret {
                ciphertext: data_key.seal(&id, 1, incoming_values[key.as_str()]),
                id,
                org_id: env.org_id.clone(),
                env_id: env.id.clone(),
                key: key.clone(),
                comment: String::new(),
                tags: Vec::new(),
            }));
        }
        for key in &outcome.updated {
            let rec = &current[key];
            writes.push(SecretWrite::Update {
                secret_id: rec.id.clone(),
                key: key.clone(),
                expected_version: rec.version,
                ciphertext: data_key.seal(&rec.id, rec.version + 1, incoming_values[key.as_str()]),
                comment: rec.comment.clone(),
                tags: rec.tags.0.clone(),
            });
        }
        if writes.is_empty() {
            return Ok(axum::Json(outcome).into_response());
        }
        match state.store.write_secrets(&env.id, writes, &origin).await {
            Ok(_) => return Ok(axum::Json(outcome).into_response()),
            // Another write landed between the read and this one: plan again.
            Err(e)
                if (e.code == ErrorCode::PreconditionFailed
                    || e.details["rule"] == "key_taken")
                    && attempt < 5 =>
            {
                continue
            }
            Err(e) => return Err(e.into()),
        }
    }
}

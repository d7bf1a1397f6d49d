//! The OpenAPI document, generated from the handlers' and types' annotations and served at
//! `/openapi.json`. It is the contract tests and clients use.

use axum::response::IntoResponse;
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::routes::{
    account, agents, api_keys, audit, auth, billing, engine, environments, health, jit, members,
    organizations, policies, promotion, query, query_audit, secrets, shadow, tables, webhooks,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Enclave API", description = "Self-hosted isolated data environments: the control plane."),
    paths(
        health::health, health::ready, health::metrics,
        auth::signup, auth::login, auth::login_mfa, auth::refresh, auth::logout, auth::me,
        auth::accept_invite, auth::jwks,
        account::change_password, account::reset_password, account::status, account::begin_totp,
        account::confirm_totp, account::disable_totp, account::new_recovery_codes,
        organizations::create, organizations::list, organizations::get, organizations::update,
        organizations::delete, organizations::transfer_ownership,
        billing::quotas, billing::update_quotas, billing::usage,
        members::list, members::invite, members::get, members::update, members::remove, members::set_role,
        members::reset_password, members::reset_mfa,
        environments::list, environments::create, environments::get, environments::get_by_slug,
        environments::update, environments::replace, environments::delete, environments::reorder,
        environments::suspend, environments::resume, environments::permissions, engine::move_data,
        promotion::promote, promotion::promotions, promotion::clone, promotion::diff,
        api_keys::list, api_keys::create, api_keys::get, api_keys::update, api_keys::revoke,
        api_keys::rotate,
        jit::create, jit::list, jit::get, jit::approve, jit::deny, jit::revoke,
        agents::list, agents::get, agents::grant, agents::get_grant, agents::revoke,
        agents::versions,
        shadow::start, shadow::get, shadow::stop, shadow::report,
        audit::list, audit::get, audit::verify, audit::export,
        query::query, query::query_arrow, tables::list, tables::get, tables::import,
        query_audit::list, query_audit::get, query_audit::verify, query_audit::export,
        webhooks::list, webhooks::create, webhooks::get, webhooks::update, webhooks::delete,
        webhooks::rotate_secret, webhooks::test, webhooks::deliveries, webhooks::redeliver,
        policies::list, policies::create, policies::get, policies::update, policies::replace,
        policies::delete, policies::versions, policies::restore, policies::evaluate,
        policies::abac::list, policies::abac::create, policies::abac::get, policies::abac::update,
        policies::abac::replace, policies::abac::delete, policies::abac::versions, policies::abac::restore,
        secrets::list, secrets::create, secrets::get, secrets::patch, secrets::delete,
        secrets::versions, secrets::restore, secrets::transfer::export, secrets::transfer::import,
    ),
    components(schemas(enclave_core::ErrorCode, secrets::transfer::ExportFormat)),
    modifiers(&BearerAuth, &CommonResponses),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "an environment API key (also `Authorization: ApiKey <key>`)",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Answers every operation can give besides its own: 401 and 403 where credentials are
/// required (a role or key scope may not; an API key where a person is needed), 400 where a
/// body or parameters are read (malformed JSON, unknown fields, a bad parameter), 404 where the
/// path names something, 412 where `If-Match` is taken, 429 past the rate limit (all but the
/// probes).
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let limited = !crate::middleware::rate_limit::UNLIMITED_PATHS.contains(&path.as_str());
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                let params = operation.parameters.as_deref().unwrap_or_default();
                let in_path = params
                    .iter()
                    .any(|p| matches!(p.parameter_in, ParameterIn::Path));
                let conditional = params
                    .iter()
                    .any(|p| matches!(p.parameter_in, ParameterIn::Header) && p.name == "If-Match");
                let reads_input = operation.request_body.is_some()
                    || params
                        .iter()
                        .any(|p| !matches!(p.parameter_in, ParameterIn::Header));
                let answers = &mut operation.responses.responses;
                let mut add = |status: &str, description: &str| {
                    answers.entry(status.to_string()).or_insert_with(|| {
                        ResponseBuilder::new()
                            .description(description)
                            .content(
                                "application/json",
                                ContentBuilder::new()
                                    .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                                    .build(),
                            )
                            .build()
                            .into()
                    });
                };
                if secured {
                    add("401", "missing, invalid, expired or revoked credentials");
                    add(
                        "403",
                        "the caller's role or key scope may not do this (`details.rule`)",
                    );
                }
                if reads_input {
                    add(
                        "400",
                        "the body or a parameter is not valid (`details.field`, `details.rule`)",
                    );
                }
                if in_path {
                    add("404", "nothing the caller may see has this id");
                }
                if conditional {
                    add(
                        "412",
                        "`If-Match` names another version than the current one",
                    );
                }
                if limited {
                    add(
                        "429",
                        "rate limit exceeded, or too many failed sign-ins (`Retry-After`)",
                    );
                }
            }
        }
    }
}

pub async fn serve() -> impl IntoResponse {
    axum::Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 50);
        for r in found {
            let path = r
                .strip_prefix("#/")
                .unwrap_or_else(|| panic!("{r} is not local"));
            let target = path.split('/').fold(&doc, |v, part| &v[part]);
            assert!(!target.is_null(), "dangling $ref {r}");
        }
    }

    #[test]
    fn every_secured_operation_documents_401_and_429() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let mut checked = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let answers = &op["responses"];
                if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                    assert!(!answers["401"].is_null(), "{method} {path}: no 401");
                    checked += 1;
                }
                if !["/health", "/ready", "/metrics"].contains(&path.as_str()) {
                    assert!(!answers["429"].is_null(), "{method} {path}: no 429");
                }
                if !op["requestBody"].is_null() {
                    assert!(!answers["400"].is_null(), "{method} {path}: no 400");
                }
                let params = op["parameters"].as_array().cloned().unwrap_or_default();
                if params.iter().any(|p| p["in"] == "path") {
                    assert!(!answers["404"].is_null(), "{method} {path}: no 404");
                    assert!(!answers["400"].is_null(), "{method} {path}: no 400");
                }
                if params.iter().any(|p| p["name"] == "If-Match") {
                    assert!(!answers["412"].is_null(), "{method} {path}: no 412");
                }
            }
        }
        assert!(checked > 50, "{checked}");
    }

    #[test]
    fn schemas_say_what_answers_hold() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let schemas = &doc["components"]["schemas"];
        // A plain create answers without `api_key`.
        let with_key = &schemas["EnvironmentWithKey"];
        let required = with_key["required"].as_array().cloned().unwrap_or_default();
        assert!(!required.contains(&Value::from("api_key")), "{with_key}");
        // Creations have no `before`, deletions no `after`: both may be null.
        for field in ["before", "after"] {
            let s = schemas["AuditEntry"]["properties"][field].to_string();
            assert!(s.contains("null"), "{field}: {s}");
        }
    }
}

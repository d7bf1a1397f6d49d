//! The OpenAPI document, generated from the handlers' and types' annotations and served at
//! `/openapi.json`. It is the contract tests and clients use.

use axum::response::IntoResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{
    abac_policies, api_keys, audit, auth, environments, health, members, organizations, policies,
    promotion, query, query_audit, secret_transfer, secrets, tables, webhooks,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Enclave API", description = "Self-hosted isolated data environments: the control plane."),
    paths(
        health::health, health::ready, health::metrics,
        auth::signup, auth::login, auth::refresh, auth::logout, auth::me, auth::accept_invite, auth::jwks,
        organizations::create, organizations::list, organizations::get, organizations::update,
        organizations::delete, organizations::transfer_ownership,
        members::list, members::invite, members::get, members::update, members::remove, members::set_role,
        environments::list, environments::create, environments::get, environments::get_by_slug,
        environments::update, environments::replace, environments::delete, environments::reorder,
        environments::suspend, environments::resume,
        promotion::promote, promotion::promotions, promotion::clone, promotion::diff,
        api_keys::list, api_keys::create, api_keys::get, api_keys::update, api_keys::revoke,
        api_keys::rotate,
        audit::list, audit::get, audit::verify, audit::export,
        query::query, query::query_arrow, tables::list, tables::get, tables::import,
        query_audit::list, query_audit::get, query_audit::verify, query_audit::export,
        webhooks::list, webhooks::create, webhooks::get, webhooks::update, webhooks::delete,
        webhooks::rotate_secret, webhooks::test, webhooks::deliveries, webhooks::redeliver,
        policies::list, policies::create, policies::get, policies::update, policies::replace,
        policies::delete, policies::versions, policies::restore, policies::evaluate,
        abac_policies::list, abac_policies::create, abac_policies::get, abac_policies::update,
        abac_policies::replace, abac_policies::delete, abac_policies::versions, abac_policies::restore,
        secrets::list, secrets::create, secrets::get, secrets::patch, secrets::delete,
        secrets::versions, secrets::restore, secret_transfer::export, secret_transfer::import,
    ),
    components(schemas(enclave_core::ErrorCode)),
    modifiers(&BearerAuth),
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

pub async fn serve() -> impl IntoResponse {
    axum::Json(ApiDoc::openapi())
}

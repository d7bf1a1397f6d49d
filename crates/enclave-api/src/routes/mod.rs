//! One module per resource; this file puts them on their paths.

pub mod account;
pub mod agents;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod billing;
pub mod engine;
pub mod environments;
pub mod health;
pub mod jit;
pub mod members;
pub mod organizations;
pub mod policies;
pub mod promotion;
pub mod query;
pub mod query_audit;
pub mod secrets;
pub mod shadow;
pub mod tables;
pub mod webhooks;

use axum::extract::MatchedPath;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::Router;
use enclave_core::Error;

use crate::error::ApiError;
use crate::state::AppState;

const SECRET_ROUTE: &str = "/v1/environments/{env_id}/secrets/{key}";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(crate::openapi::serve))
        .route("/.well-known/jwks.json", get(auth::jwks))
        .route("/v1/auth/signup", post(auth::signup))
        .route("/v1/auth/login", post(auth::login))
        .route("/v1/auth/refresh", post(auth::refresh))
        .route("/v1/auth/logout", post(auth::logout))
        .route("/v1/auth/me", get(auth::me))
        .route("/v1/auth/accept-invite", post(auth::accept_invite))
        .route("/v1/auth/login/mfa", post(auth::login_mfa))
        .route("/v1/auth/password", post(account::change_password))
        .route("/v1/auth/reset-password", post(account::reset_password))
        .route("/v1/auth/mfa", get(account::status))
        .route("/v1/auth/mfa/totp", post(account::begin_totp))
        .route("/v1/auth/mfa/totp/confirm", post(account::confirm_totp))
        .route("/v1/auth/mfa/totp/disable", post(account::disable_totp))
        .route(
            "/v1/auth/mfa/recovery-codes",
            post(account::new_recovery_codes),
        )
        .route(
            "/v1/organizations",
            get(organizations::list).post(organizations::create),
        )
        .route(
            "/v1/organizations/{org_id}",
            get(organizations::get)
                .patch(organizations::update)
                .delete(organizations::delete),
        )
        .route(
            "/v1/organizations/{org_id}/transfer-ownership",
            post(organizations::transfer_ownership),
        )
        .route(
            "/v1/organizations/{org_id}/billing/quotas",
            get(billing::quotas).patch(billing::update_quotas),
        )
        .route(
            "/v1/organizations/{org_id}/billing/usage",
            get(billing::usage),
        )
        .route(
            "/v1/organizations/{org_id}/users",
            get(members::list).post(members::invite),
        )
        .route(
            "/v1/organizations/{org_id}/users/{user_id}",
            get(members::get)
                .patch(members::update)
                .delete(members::remove),
        )
        .route(
            "/v1/organizations/{org_id}/users/{user_id}/role",
            put(members::set_role),
        )
        .route(
            "/v1/organizations/{org_id}/users/{user_id}/password-reset",
            post(members::reset_password),
        )
        .route(
            "/v1/organizations/{org_id}/users/{user_id}/mfa",
            delete(members::reset_mfa),
        )
        .route(
            "/v1/organizations/{org_id}/environments",
            get(environments::list).post(environments::create),
        )
        .route(
            "/v1/organizations/{org_id}/environments/reorder",
            post(environments::reorder),
        )
        .route(
            "/v1/organizations/{org_id}/environments/{slug}",
            get(environments::get_by_slug),
        )
        .route(
            "/v1/environments/{env_id}",
            get(environments::get)
                .patch(environments::update)
                .put(environments::replace)
                .delete(environments::delete),
        )
        .route(
            "/v1/environments/{env_id}/api-keys",
            get(api_keys::list).post(api_keys::create),
        )
        .route(
            "/v1/environments/{env_id}/api-keys/{key_id}",
            get(api_keys::get)
                .patch(api_keys::update)
                .delete(api_keys::revoke),
        )
        .route(
            "/v1/environments/{env_id}/api-keys/{key_id}/rotate",
            post(api_keys::rotate),
        )
        .route(
            "/v1/environments/{env_id}/shadow",
            get(shadow::get).post(shadow::start).delete(shadow::stop),
        )
        .route(
            "/v1/environments/{env_id}/shadow/report",
            get(shadow::report),
        )
        .route("/v1/environments/{env_id}/agents", get(agents::list))
        .route(
            "/v1/environments/{env_id}/agents/{agent_id}",
            get(agents::get),
        )
        .route(
            "/v1/environments/{env_id}/agents/{agent_id}/capabilities",
            get(agents::get_grant)
                .post(agents::grant)
                .delete(agents::revoke),
        )
        .route(
            "/v1/environments/{env_id}/agents/{agent_id}/capabilities/versions",
            get(agents::versions),
        )
        .route(
            "/v1/environments/{env_id}/jit-access",
            get(jit::list).post(jit::create),
        )
        .route(
            "/v1/environments/{env_id}/jit-access/{request_id}",
            get(jit::get),
        )
        .route(
            "/v1/environments/{env_id}/jit-access/{request_id}/approve",
            post(jit::approve),
        )
        .route(
            "/v1/environments/{env_id}/jit-access/{request_id}/deny",
            post(jit::deny),
        )
        .route(
            "/v1/environments/{env_id}/jit-access/{request_id}/revoke",
            post(jit::revoke),
        )
        .route(
            "/v1/environments/{env_id}/permissions",
            get(environments::permissions),
        )
        .route(
            "/v1/environments/{env_id}/suspend",
            post(environments::suspend),
        )
        .route(
            "/v1/environments/{env_id}/resume",
            post(environments::resume),
        )
        .route("/v1/environments/{env_id}/engine", post(engine::move_data))
        .route(
            "/v1/environments/{env_id}/promote",
            post(promotion::promote),
        )
        .route(
            "/v1/environments/{env_id}/promotions",
            get(promotion::promotions),
        )
        .route("/v1/environments/{env_id}/clone", post(promotion::clone))
        .route("/v1/environments/{env_id}/diff", get(promotion::diff))
        .route(
            "/v1/environments/{env_id}/policies",
            get(policies::list).post(policies::create),
        )
        .route(
            "/v1/environments/{env_id}/policies/evaluate",
            post(policies::evaluate),
        )
        .route(
            "/v1/environments/{env_id}/policies/{policy_id}",
            get(policies::get)
                .patch(policies::update)
                .put(policies::replace)
                .delete(policies::delete),
        )
        .route(
            "/v1/environments/{env_id}/policies/{policy_id}/versions",
            get(policies::versions),
        )
        .route(
            "/v1/environments/{env_id}/policies/{policy_id}/versions/{version}/restore",
            post(policies::restore),
        )
        .route(
            "/v1/environments/{env_id}/secrets",
            get(secrets::list).post(secrets::create),
        )
        // `…/secrets/export` (GET) and `…/secrets/import` (POST) go through the `{key}` route
        // so that PATCH and DELETE still reach secrets named `export` and `import`.
        .route(
            SECRET_ROUTE,
            get(secrets::get)
                .post(secrets::post_to_key)
                .patch(secrets::patch)
                .delete(secrets::delete),
        )
        .route(
            "/v1/environments/{env_id}/secrets/{key}/versions",
            get(secrets::versions),
        )
        .route(
            "/v1/environments/{env_id}/secrets/{key}/versions/{version}/restore",
            post(secrets::restore),
        )
        .route(
            "/v1/environments/{env_id}/abac-policies",
            get(policies::abac::list).post(policies::abac::create),
        )
        .route(
            "/v1/environments/{env_id}/abac-policies/{policy_id}",
            get(policies::abac::get)
                .patch(policies::abac::update)
                .put(policies::abac::replace)
                .delete(policies::abac::delete),
        )
        .route(
            "/v1/environments/{env_id}/abac-policies/{policy_id}/versions",
            get(policies::abac::versions),
        )
        .route(
            "/v1/environments/{env_id}/abac-policies/{policy_id}/versions/{version}/restore",
            post(policies::abac::restore),
        )
        .route("/v1/query", post(query::query))
        .route("/v1/query/arrow", post(query::query_arrow))
        .route("/v1/environments/{env_id}/tables", get(tables::list))
        .route("/v1/environments/{env_id}/tables/{table}", get(tables::get))
        .route(
            "/v1/environments/{env_id}/tables/{table}/import",
            post(tables::import),
        )
        .route(
            "/v1/environments/{env_id}/audit/queries",
            get(query_audit::list),
        )
        .route(
            "/v1/environments/{env_id}/audit/queries/verify",
            get(query_audit::verify),
        )
        .route(
            "/v1/environments/{env_id}/audit/queries/export",
            get(query_audit::export),
        )
        .route(
            "/v1/environments/{env_id}/audit/queries/{query_id}",
            get(query_audit::get),
        )
        .route("/v1/organizations/{org_id}/audit/iam", get(audit::list))
        .route(
            "/v1/organizations/{org_id}/audit/iam/verify",
            get(audit::verify),
        )
        .route(
            "/v1/organizations/{org_id}/audit/iam/export",
            get(audit::export),
        )
        .route(
            "/v1/organizations/{org_id}/audit/iam/{entry_id}",
            get(audit::get),
        )
        .route(
            "/v1/organizations/{org_id}/webhooks",
            get(webhooks::list).post(webhooks::create),
        )
        .route(
            "/v1/organizations/{org_id}/webhooks/{webhook_id}",
            get(webhooks::get)
                .patch(webhooks::update)
                .delete(webhooks::delete),
        )
        .route(
            "/v1/organizations/{org_id}/webhooks/{webhook_id}/rotate-secret",
            post(webhooks::rotate_secret),
        )
        .route(
            "/v1/organizations/{org_id}/webhooks/{webhook_id}/test",
            post(webhooks::test),
        )
        .route(
            "/v1/organizations/{org_id}/webhooks/{webhook_id}/deliveries",
            get(webhooks::deliveries),
        )
        .route(
            "/v1/organizations/{org_id}/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
            post(webhooks::redeliver),
        )
        .fallback(|| async { ApiError(Error::not_found("route")) })
        .method_not_allowed_fallback(|path: Option<MatchedPath>| async move {
            let e = Error::validation("method", "not_allowed", "method not allowed on this path");
            let mut resp =
                ApiError(e.with_status(StatusCode::METHOD_NOT_ALLOWED.as_u16())).into_response();
            // The `{key}` route also carries `POST …/secrets/import`; a secret itself has no POST.
            if path.is_some_and(|p| p.as_str() == SECRET_ROUTE) {
                resp.headers_mut().insert(
                    axum::http::header::ALLOW,
                    axum::http::HeaderValue::from_static(secrets::SECRET_METHODS),
                );
            }
            resp
        })
}

//! The dashboard at `/`: pages for the people who run an organization, rendered on the
//! server. Each page is a client of the REST API — its handler calls the API's own router in
//! process with the signed-in person's token (`api.rs`) — so the dashboard holds no rule of
//! its own: what a page offers follows what the API answers (a person's permissions
//! included), and whatever the page shows, the API refuses what a role may not do.
//! Browser sessions and CSRF are in `session.rs` and `signed.rs`, the shared markup in
//! `layout.rs`, and each page in a module of its own.

mod access;
mod agents;
mod api;
mod audit;
mod console;
mod environments;
mod keys;
mod layout;
mod login;
mod members;
mod overview;
mod policies;
mod promote;
mod respond;
mod secrets;
mod session;
mod settings;
mod signed;
mod usage;
mod webhooks;

use axum::extract::{RawPathParams, Request};
use axum::http::{header, HeaderValue};
use axum::middleware::{from_fn, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use api::Api;
use enclave_core::id::EnvId;

const STYLESHEET: &str = include_str!("dashboard.css");
const ICON: &str = include_str!("favicon.svg");
const SCRIPT: &str = include_str!("dashboard.js");

/// Only the server's own origin: its one script, its styles, forms posted to it.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The dashboard's routes, each calling `api` (the whole REST API with its middleware).
pub fn routes(api: Router) -> Router {
    Router::new()
        .route("/", get(login::home))
        .route("/login", get(login::login_page).post(login::login))
        .route("/login/mfa", post(login::second_factor))
        .route("/logout", post(login::logout))
        .route(
            "/invite",
            get(login::invite_page).post(login::accept_invite),
        )
        .route("/audit", get(audit::iam))
        .route("/members", get(members::list).post(members::invite))
        .route("/members/{user_id}/{action}", post(members::action))
        .route("/webhooks", get(webhooks::list).post(webhooks::create))
        .route("/webhooks/{webhook_id}", get(webhooks::deliveries))
        .route("/webhooks/{webhook_id}/{action}", post(webhooks::action))
        .route(
            "/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
            post(webhooks::redeliver),
        )
        .route("/usage", get(usage::show))
        .route(
            "/environments",
            get(environments::list).post(environments::create),
        )
        .merge(environment_routes())
        .route("/assets/dashboard.js", get(script))
        .route("/assets/dashboard.css", get(stylesheet))
        .route("/assets/favicon.svg", get(icon))
        .layer(from_fn(security_headers))
        .with_state(Api::new(api))
}

/// The pages of one environment, at `/environments/{env_id}…`.
fn environment_routes() -> Router<Api> {
    let env = |p: &str| format!("/environments/{{env_id}}{p}");
    Router::new()
        .route(&env("/move/{way}"), post(environments::moved))
        .route(&env(""), get(overview::show).post(overview::edit))
        .route(&env("/status/{action}"), post(overview::lifecycle))
        .route(&env("/clone"), post(overview::clone))
        .route(
            &env("/delete"),
            get(overview::delete_preview).post(overview::delete),
        )
        .route(&env("/keys"), get(keys::show).post(keys::create))
        .route(&env("/keys/{key_id}/{action}"), post(keys::action))
        .route(&env("/secrets"), get(secrets::show).post(secrets::set))
        .route(&env("/secrets/delete"), post(secrets::delete))
        .route(&env("/secrets/import"), post(secrets::import))
        .route(&env("/secrets/export"), get(secrets::export))
        .route(
            &env("/policies"),
            get(policies::show).post(policies::create),
        )
        .route(&env("/policies/evaluate"), post(policies::evaluate))
        .route(
            &env("/policies/{policy_id}/versions"),
            get(policies::versions),
        )
        .route(&env("/policies/{policy_id}/edit"), post(policies::edit))
        .route(
            &env("/policies/{policy_id}/versions/{version}/restore"),
            post(policies::restore),
        )
        .route(
            &env("/policies/{policy_id}/{action}"),
            post(policies::action),
        )
        .route(&env("/promote"), get(promote::show).post(promote::promote))
        .route(&env("/console"), get(console::show).post(console::run))
        .route(&env("/queries"), get(audit::queries))
        .route(&env("/access"), get(access::show).post(access::request))
        .route(&env("/access/{request_id}/{action}"), post(access::decide))
        .route(&env("/agents"), get(agents::show))
        .route(
            &env("/agents/{agent_id}/capabilities/{action}"),
            post(agents::capabilities),
        )
        .route_layer(from_fn(known_env_id))
}

/// A path whose environment id is not one (`/environments/..%2Fv1`) is no page: nothing of it
/// reaches the API.
async fn known_env_id(params: RawPathParams, req: Request, next: Next) -> Response {
    let env_id = params.iter().find(|(name, _)| *name == "env_id");
    match env_id.is_some_and(|(_, id)| EnvId::parse(id).is_some()) {
        true => next.run(req).await,
        false => respond::not_found(),
    }
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    resp
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLESHEET,
    )
        .into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

async fn icon() -> Response {
    ([(header::CONTENT_TYPE, "image/svg+xml")], ICON).into_response()
}

//! Enclave's control plane: the REST API. One router module per resource under
//! [`routes`]; authentication, rate limits, idempotency and request context as middleware;
//! the OpenAPI document generated from the same types the handlers use.

pub mod access;
pub mod audit_chain;
pub mod auth;
pub mod billing;
pub mod config;
pub mod dashboard;
pub mod data_clone;
pub mod engine_move;
pub mod environments;
pub mod error;
pub mod extract;
pub mod key_issue;
pub mod lifecycle;
pub mod mcp;
pub mod middleware;
pub mod openapi;
pub mod proof;
pub mod rate_limits;
pub mod routes;
pub mod secrets;
pub mod sql_session;
pub mod state;
pub mod views;
pub mod webhooks;

pub use config::ApiConfig;
pub use error::ApiError;
pub use state::AppState;

use axum::Router;

/// The whole control-plane router with its middleware stack, ready to serve.
pub fn router(state: AppState) -> Router {
    let routes = routes::routes().merge(mcp::routes(state.clone()));
    let api = middleware::stack(routes, state);
    // The dashboard's pages call the API as it stands, middleware and all.
    api.clone().merge(dashboard::routes(api))
}

//! The middleware every request passes through, outermost first:
//! request context (id, log line, metrics, body-size guard) → authentication → rate limit →
//! idempotency → panic guard → the handler.

pub mod authenticate;
pub mod context;
pub mod idempotency;
pub mod metrics;
pub mod rate_limit;

use axum::middleware::from_fn_with_state;
use axum::Router;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;

use crate::state::AppState;

pub fn stack(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .layer(
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn(context::request_context))
                .layer(from_fn_with_state(
                    state.clone(),
                    authenticate::authenticate,
                ))
                .layer(from_fn_with_state(state.clone(), rate_limit::rate_limit))
                .layer(from_fn_with_state(state.clone(), idempotency::idempotency))
                .layer(CatchPanicLayer::custom(context::panic_response)),
        )
        .with_state(state)
}

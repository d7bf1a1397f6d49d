//! Probes: `/health` (the process is alive), `/ready` (storage answers), `/metrics`.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::json;

use crate::error::ApiResult;
use crate::state::AppState;

#[utoipa::path(get, path = "/health", tag = "system", responses((status = 200, description = "alive")))]
pub async fn health() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/ready", tag = "system", responses(
    (status = 200, description = "storage reachable"),
    (status = 503, description = "storage unreachable", body = crate::error::ErrorEnvelope)))]
pub async fn ready(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    state.store.ping().await?;
    let storage = match state.store.backend() {
        enclave_store::Backend::Sqlite => "sqlite",
        enclave_store::Backend::Postgres => "postgres",
    };
    Ok(axum::Json(json!({"status": "ready", "storage": storage})))
}

#[utoipa::path(get, path = "/metrics", tag = "system", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

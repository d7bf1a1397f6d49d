//! Resolves the caller from `Authorization` once per request and stores the [`Principal`] in
//! the request's extensions. Requests without credentials pass on as anonymous (handlers that
//! need a caller refuse them); credentials that do not check out are refused here with 401.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use enclave_core::Error;

use crate::auth::principal;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default().to_string());
    if req.headers().contains_key("x-api-key") {
        return ApiError(Error::unauthorized("invalid API key")).into_response();
    }
    let Some(auth) = auth else {
        return next.run(req).await;
    };
    let (scheme, credential) = auth.split_once(' ').unwrap_or((auth.as_str(), ""));
    let credential = credential.trim();
    let result = match scheme.to_ascii_lowercase().as_str() {
        "bearer" if !credential.is_empty() => principal::resolve(&state, credential).await,
        "apikey" => Err(Error::unauthorized("invalid API key")),
        _ => Err(Error::unauthorized(
            "unsupported Authorization header: use Bearer <token>",
        )),
    };
    match result {
        Ok(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(e) => ApiError(e).into_response(),
    }
}

//! Resolves the caller from `Authorization` (a JWT, or an API key) or `X-API-Key` once per
//! request and stores the [`Caller`] in the request's extensions. Requests without credentials pass on as anonymous (handlers that
//! need a caller refuse them); credentials that do not check out are refused here with 401.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use enclave_core::Error;

use crate::auth::{caller, Caller};
use crate::error::ApiError;
use crate::state::AppState;

pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let auth = header_text(&req, header::AUTHORIZATION.as_str());
    let x_api_key = header_text(&req, "x-api-key");
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let result = match (auth, x_api_key) {
        (None, None) => return next.run(req).await,
        (Some(_), Some(_)) => Err(Error::unauthorized(
            "send one credential: Authorization or X-API-Key, not both",
        )),
        (None, Some(key)) => key_caller(&state, &key, ip).await,
        (Some(auth), None) => {
            let (scheme, credential) = auth.split_once(' ').unwrap_or((auth.as_str(), ""));
            let credential = credential.trim();
            match scheme.to_ascii_lowercase().as_str() {
                "apikey" => key_caller(&state, credential, ip).await,
                // Bearer carries a JWT, or (for clients that only speak Bearer) an API key.
                "bearer" if credential.starts_with("ek_") => {
                    key_caller(&state, credential, ip).await
                }
                "bearer" if !credential.is_empty() => {
                    caller::resolve(&state.auth_cache, &state.tokens, credential)
                        .await
                        .map(Caller::User)
                }
                _ => Err(Error::unauthorized(
                    "unsupported Authorization header: use Bearer <token> or ApiKey <key>",
                )),
            }
        }
    };
    match result {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => ApiError(e).into_response(),
    }
}

async fn key_caller(
    state: &AppState,
    key: &str,
    ip: Option<std::net::IpAddr>,
) -> Result<Caller, Error> {
    state.key_auth.authenticate(key, ip).await.map(Caller::Key)
}

fn header_text(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .map(|v| v.to_str().unwrap_or_default().trim().to_string())
}

//! Where a change comes from, for its audit entry: the caller, the request id and the
//! client's address. Handlers that change something take [`Origin`] (or, before anyone is
//! signed in, [`RequestMeta`]) and hand it to the store method, which records it in the same
//! transaction as the change.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use enclave_core::audit::Actor;
pub use enclave_store::Origin;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::middleware::context::current_request_id;

/// The request's id and source address, known for every request.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
}

impl RequestMeta {
    /// The origin of a change `actor` makes with this request.
    pub fn by(&self, actor: Actor) -> Origin {
        Origin {
            actor,
            request_id: self.request_id.clone(),
            source_ip: self.source_ip.clone(),
            via_grant: None,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Ok(RequestMeta {
            request_id: current_request_id(),
            source_ip: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string()),
        })
    }
}

pub fn actor_of(caller: &Caller) -> Actor {
    match caller {
        Caller::User(p) => Actor::user(&p.user_id),
        Caller::Key(k) => Actor::api_key(&k.key_id),
    }
}

//! The authenticated caller, resolved once per request by the authentication middleware.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use enclave_core::id::{OrgId, UserId};
use enclave_core::model::Tier;
use enclave_core::{Error, ErrorCode, Role};

use crate::auth::access::standing;
use crate::auth::keys::KeyCaller;

use crate::auth::cache::AuthCache;
use crate::auth::tokens::{Claims, TokenKeys};
use crate::error::ApiError;

/// A signed-in user with a live session.
#[derive(Debug, Clone)]
pub struct UserCaller {
    pub user_id: UserId,
    pub session_id: String,
    /// The session was opened with a second factor (or one was enrolled in it).
    pub mfa: bool,
    /// The organization the token was issued for and the caller's role there, when they are
    /// still an active member of it.
    pub org: Option<(OrgId, Role, Tier)>,
}

/// Whoever is calling: a signed-in user or an environment API key. Handlers that act for a
/// user only take [`UserCaller`] (a key gets 403 there); those an API key may reach take
/// `Caller`.
#[derive(Debug, Clone)]
pub enum Caller {
    User(UserCaller),
    Key(KeyCaller),
}

impl Caller {
    /// The identity that rate limits, idempotency records and "created by" fields use.
    pub fn id(&self) -> &str {
        match self {
            Caller::User(p) => &p.user_id,
            Caller::Key(k) => &k.key_id,
        }
    }

    pub fn tier(&self) -> Tier {
        match self {
            Caller::User(p) => p.org.as_ref().map(|(_, _, t)| *t).unwrap_or(Tier::Free),
            Caller::Key(k) => k.tier,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            Error::unauthorized(
                "authentication required: Authorization: Bearer <token> or ApiKey <key>",
            )
            .into()
        })
    }
}

/// Checks a bearer token: a valid signature, a live session of the same user, and — when the
/// token names an organization — a membership there that is not suspended.
pub async fn resolve(
    cache: &AuthCache,
    keys: &TokenKeys,
    token: &str,
) -> Result<UserCaller, Error> {
    let bad = || Error::unauthorized("invalid or expired token");
    let claims: Claims = cache.verified_claims(keys, token).ok_or_else(bad)?;
    let session = cache.session(&claims.sid).await?.ok_or_else(bad)?;
    if session.user_id != claims.sub
        || session.revoked_at.is_some()
        || session.expires_at <= enclave_core::clock::now_ms()
    {
        return Err(Error::unauthorized("the session has ended; log in again"));
    }
    // A suspended membership ends the token; any other shortfall only unbinds it from the org.
    let org = match &claims.org_id {
        None => None,
        Some(org_id) => match standing(cache.membership(&claims.sub, org_id).await?) {
            Ok(m) => Some((org_id.clone(), m.role, m.tier)),
            Err(e) if e.code == ErrorCode::Unauthorized => return Err(e),
            Err(_) => None,
        },
    };
    Ok(UserCaller {
        user_id: claims.sub,
        session_id: claims.sid,
        mfa: session.mfa_at.is_some(),
        org,
    })
}

impl<S: Send + Sync> FromRequestParts<S> for UserCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        match parts.extensions.get::<Caller>() {
            Some(Caller::User(p)) => Ok(p.clone()),
            Some(Caller::Key(_)) => Err(Error::forbidden(
                "user_required",
                "API keys act only within their environment; this needs a signed-in user",
            )
            .into()),
            None => Err(Error::unauthorized(
                "authentication required: Authorization: Bearer <token>",
            )
            .into()),
        }
    }
}

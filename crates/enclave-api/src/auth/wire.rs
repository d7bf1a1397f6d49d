//! Who connects to the gateway: an environment API key (the password; the user name is free),
//! or a person as themselves — user name their e-mail, password a current access token,
//! `database` the environment's slug — who then acts with their organization role. Both are
//! re-checked in the caches before every statement, so logout, suspension, revocation and
//! expiry reach open sessions.

use std::net::IpAddr;
use std::sync::Arc;

use enclave_core::audit::Actor;
use enclave_core::clock::Clock;
use enclave_core::id::{EnvId, JitId, OrgId, UserId};
use enclave_core::{Error, Permission, Result};
use enclave_gateway::{Authenticator, Identity};
use enclave_store::Store;

use crate::auth::access::second_factor;
use crate::auth::cache::AuthCache;
use crate::auth::caller::resolve;
use crate::auth::keys::KeyAuth;
use crate::auth::tokens::TokenKeys;

pub struct WireAuth {
    pub keys: Arc<KeyAuth>,
    pub tokens: Arc<TokenKeys>,
    pub cache: Arc<AuthCache>,
    pub store: Arc<Store>,
    /// The clock just-in-time grants end by.
    pub clock: Clock,
}

#[async_trait::async_trait]
impl Authenticator for WireAuth {
    async fn api_key(&self, key: &str, ip: Option<IpAddr>) -> Result<Identity> {
        self.keys.api_key(key, ip).await
    }

    async fn user(&self, email: &str, token: &str, database: &str) -> Result<Identity> {
        let refused =
            || Error::unauthorized("the password must be a current access token of the user named");
        // An account password (or anything else that is no JWT) says what to use instead.
        if token.split('.').count() != 3 {
            return Err(Error::unauthorized(
                "a person signs in to the gateway with a current access token as the password \
                 (POST /v1/auth/login → token), not the account's password; an API key (ek_…) \
                 works with any user name",
            ));
        }
        let principal = resolve(&self.cache, &self.tokens, token).await?;
        let user = self
            .cache
            .user(&principal.user_id)
            .await?
            .ok_or_else(refused)?;
        if !user.email.eq_ignore_ascii_case(email.trim()) {
            return Err(refused());
        }
        let (org_id, role, _) = principal.org.ok_or_else(|| {
            Error::unauthorized("the access token is not signed in to an organization")
        })?;
        let env = self
            .store
            .environment_by_slug(&org_id, &database.to_ascii_lowercase())
            .await?
            .ok_or_else(|| Error::not_found("environment"))?;
        // Tokens are issued only after the second factor of an account that has one; an
        // organization requiring one refuses tokens of sessions opened without it.
        if let Some(m) = self.cache.membership(&principal.user_id, &org_id).await? {
            second_factor(&m, principal.mfa)?;
        }
        if !role.can(Permission::ReadEnvironments) {
            return Err(Error::forbidden(
                "permission:read_environments",
                format!("the {role} role may not use environments"),
            ));
        }
        let (role, grant) = crate::auth::jit::acting_role(
            &self.cache,
            &self.clock,
            &principal.user_id,
            &env.id,
            role,
        )
        .await?;
        person(
            &self.cache,
            &principal.user_id,
            &org_id,
            &env.id,
            role,
            grant,
        )
        .await
    }
}

/// A person acting in an environment as the pipeline sees them: the role they act with (and
/// the just-in-time grant it comes from, if any), e-mail and member attributes (from the
/// caches, so each statement's re-check stays cheap).
pub async fn person(
    cache: &AuthCache,
    user_id: &UserId,
    org_id: &OrgId,
    env_id: &EnvId,
    role: enclave_core::Role,
    grant: Option<JitId>,
) -> Result<Identity> {
    let email = cache.user(user_id).await?.map(|u| u.email);
    let attributes = cache
        .membership(user_id, org_id)
        .await?
        .map(|m| m.attributes)
        .unwrap_or_default();
    Ok(Identity {
        actor: Actor::user(user_id),
        org_id: org_id.clone(),
        env_id: env_id.clone(),
        role,
        scopes: None,
        attributes,
        email,
        grant,
    })
}

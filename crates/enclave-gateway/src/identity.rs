//! Who a statement runs for. The gateway does not authenticate by itself: the control
//! plane's key cache (revocation, expiry, IP allow-lists, suspension) does, behind
//! [`Authenticator`], for both doors.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use enclave_core::api_key::Scope;
use enclave_core::audit::Actor;
use enclave_core::id::{EnvId, JitId, OrgId};
use enclave_core::{Result, Role};

/// An authenticated caller bound to one environment.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The key (`key_…`) or the person (`usr_…`).
    pub actor: Actor,
    pub org_id: OrgId,
    pub env_id: EnvId,
    pub role: Role,
    /// A key's scopes; `None` for a member (their role alone decides).
    pub scopes: Option<BTreeSet<Scope>>,
    pub attributes: BTreeMap<String, String>,
    /// A person's e-mail (the `{email}` of row filters); `None` for a key.
    pub email: Option<String>,
    /// The just-in-time grant `role` comes from (a person acting above their own role).
    pub grant: Option<JitId>,
}

/// Checks credentials presented to the gateway.
#[async_trait::async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// An environment API key presented from `ip`: its identity, or 401 saying why (revoked,
    /// expired, suspended environment or organization, IP not allowed).
    async fn api_key(&self, key: &str, ip: Option<IpAddr>) -> Result<Identity>;
    /// A person signing in as themselves: their e-mail, a current access token, and the slug
    /// of an environment of the organization the token is signed in to.
    async fn user(&self, email: &str, token: &str, database: &str) -> Result<Identity>;
}

/// What a wire session authenticated with, presented again before each statement.
#[derive(Clone)]
pub enum Credential {
    Key(String),
    User {
        email: String,
        token: String,
        database: String,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key or the token.
        match self {
            Credential::Key(_) => f.write_str("Credential::Key"),
            Credential::User { email, .. } => write!(f, "Credential::User({email})"),
        }
    }
}

impl Credential {
    pub async fn authenticate(
        &self,
        auth: &dyn Authenticator,
        ip: Option<IpAddr>,
    ) -> Result<Identity> {
        match self {
            Credential::Key(key) => auth.api_key(key, ip).await,
            Credential::User {
                email,
                token,
                database,
            } => auth.user(email, token, database).await,
        }
    }
}

/// Which door a statement came through (kept in the query audit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    Wire,
    Http,
    /// The Model Context Protocol's tools (`/mcp`, `enclave mcp`).
    Mcp,
}

impl Door {
    pub fn as_str(self) -> &'static str {
        match self {
            Door::Wire => "wire",
            Door::Http => "http",
            Door::Mcp => "mcp",
        }
    }
}

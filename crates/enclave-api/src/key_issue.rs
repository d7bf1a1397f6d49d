//! Issuing API keys: a request validated against what the caller may hand on, the plaintext
//! generated (shown once), and the key created under the per-environment quota. Shared by the
//! API key routes and by creating an environment with its first key.

use std::collections::{BTreeMap, BTreeSet};

use enclave_core::api_key::{self, check_grant, expand_scopes, ApiKey, KeyParts, Scope};
use enclave_core::environment::EnvType;
use enclave_core::id::{EnvId, KeyId};
use enclave_core::{validate, Result, Role};
use enclave_store::NewApiKey;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::access::OrgAccess;
use crate::auth::{Caller, Origin};
use crate::state::AppState;
use crate::views;

#[derive(Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    pub name: String,
    /// Scope names (`query:read`, …) and bundles (`read_only`, `developer`, `admin`, `agent`).
    pub scopes: Vec<String>,
    /// Default `service_account`; never above the creator's role.
    pub role: Option<Role>,
    pub attributes: Option<BTreeMap<String, String>>,
    /// CIDRs (or single addresses); empty or absent: anywhere.
    pub ip_allowlist: Option<Vec<String>>,
    /// 1–3650; absent: no expiry.
    pub expires_in_days: Option<i64>,
}

/// What the caller may hand on: its role, and the scopes it holds.
pub fn grant_power(who: &Caller, access: &OrgAccess) -> (Role, BTreeSet<Scope>) {
    match who {
        Caller::User(_) => (access.role, Scope::of_role(access.role)),
        Caller::Key(k) => {
            let held = Scope::of_role(k.role);
            (k.role, k.scopes.intersection(&held).copied().collect())
        }
    }
}

/// A validated new key for `env` and its plaintext (to show once).
pub async fn prepare(
    state: &AppState,
    who: &Caller,
    access: &OrgAccess,
    env_id: &EnvId,
    env_type: EnvType,
    req: CreateApiKey,
) -> Result<(NewApiKey, String)> {
    let name = validate::display_name("name", &req.name, 64)?;
    let scopes = expand_scopes(&req.scopes)?;
    let role = req.role.unwrap_or(Role::ServiceAccount);
    let attributes = req.attributes.unwrap_or_default();
    validate::attributes("attributes", &attributes)?;
    let allowlist = api_key::allowlist("ip_allowlist", &req.ip_allowlist.unwrap_or_default())?;
    let expires_at = req
        .expires_in_days
        .map(api_key::expires_in_days)
        .transpose()?
        .map(|d| enclave_core::clock::now_ms() + d * 86_400_000);
    let (caller_role, caller_scopes) = grant_power(who, access);
    check_grant(caller_role, &caller_scopes, role, &scopes)?;
    let id = KeyId::generate();
    let parts = KeyParts::generate(&id, env_type == EnvType::Prod);
    let plaintext = parts.plaintext();
    let secret_hash = state.passwords.hash(parts.secret).await?;
    Ok((
        NewApiKey {
            prefix: api_key::prefix(&plaintext),
            id,
            env_id: env_id.clone(),
            name,
            secret_hash,
            role,
            attributes,
            scopes: scopes.into_iter().collect(),
            ip_allowlist: allowlist.iter().map(|n| n.to_string()).collect(),
            expires_at,
            created_by: who.id().to_string(),
        },
        plaintext,
    ))
}

/// Creates a prepared key under the organization's per-environment quota.
pub async fn create_prepared(
    state: &AppState,
    access: &OrgAccess,
    key: NewApiKey,
    plaintext: String,
    origin: &Origin,
) -> Result<ApiKey> {
    let max = crate::billing::org_quotas(state, &access.org_id)
        .await?
        .max_api_keys_per_environment;
    let rec = state.store.create_api_key(key, max, origin).await?;
    Ok(views::api_key(rec, Some(plaintext)))
}

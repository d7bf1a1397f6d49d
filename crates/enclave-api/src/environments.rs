//! Building environments: a new one from validated fields (create, clone, a new
//! organization's defaults), created under the organization's quota and provisioned, and
//! shown as the API shows them. Shared by the environment, organization and promotion routes
//! and by the first start.

use axum::response::Response;
use enclave_core::environment::{self, EngineKind, EnvSettings, EnvType, Environment};
use enclave_core::id::{EnvId, OrgId};
use enclave_core::{validate, Error, Result};
use enclave_store::NewEnvironment;

use crate::auth::Origin;
use crate::lifecycle;
use crate::state::AppState;
use crate::views;

/// The fields a new environment is made from, validated; shared by create, clone and new
/// organizations' defaults.
pub struct EnvFields {
    pub name: String,
    pub slug: Option<String>,
    pub env_type: Option<EnvType>,
    pub color: Option<String>,
    pub parent_env_id: Option<String>,
    pub description: Option<String>,
}

pub fn new_environment(
    org_id: &OrgId,
    f: EnvFields,
    settings: EnvSettings,
) -> Result<NewEnvironment> {
    let name = validate::display_name("name", &f.name, environment::MAX_NAME_CHARS)?;
    let slug = match &f.slug {
        Some(s) => environment::slug("slug", s)?,
        None => environment::derive_slug(&name)?,
    };
    let env_type = f.env_type.unwrap_or_else(|| EnvType::infer(&slug));
    let color = match &f.color {
        Some(c) => environment::color("color", c)?,
        None => env_type.default_color().to_string(),
    };
    let description =
        environment::description("description", f.description.as_deref().unwrap_or(""))?;
    let parent_env_id = match &f.parent_env_id {
        None => None,
        Some(p) => Some(EnvId::parse(p).ok_or_else(|| {
            Error::validation(
                "parent_env_id",
                "same_organization",
                "parent_env_id must name an environment of this organization",
            )
        })?),
    };
    Ok(NewEnvironment {
        id: EnvId::generate(),
        org_id: org_id.clone(),
        name,
        slug,
        env_type,
        color,
        parent_env_id,
        description,
        settings,
        policies: Vec::new(),
        capabilities: Vec::new(),
        required_keys: Vec::new(),
        secrets: None,
    })
}

/// The settings a new environment starts from: the defaults, its data on the server's
/// default engine.
pub fn initial_settings(default_engine: EngineKind) -> EnvSettings {
    EnvSettings {
        engine: default_engine,
        ..EnvSettings::default()
    }
}

/// Whether `next` may place an environment's data (`current`: its settings now, `None` for a
/// new one): the managed engine needs this server to have one, and data moves to or from it
/// only through the engine move.
pub fn check_placement(
    state: &AppState,
    current: Option<&EnvSettings>,
    next: &EnvSettings,
) -> Result<()> {
    environment::check_placement(current, next, state.gateway.engines().managed.is_some())
}

/// What a new organization starts with: development, staging and production.
pub fn default_environments(org_id: &OrgId, settings: &EnvSettings) -> Vec<NewEnvironment> {
    ["Development", "Staging", "Production"]
        .into_iter()
        .map(|name| {
            new_environment(
                org_id,
                EnvFields {
                    name: name.into(),
                    slug: None,
                    env_type: None,
                    color: None,
                    parent_env_id: None,
                    description: None,
                },
                settings.clone(),
            )
            .expect("the default environments are valid")
        })
        .collect()
}

/// Creates and provisions an environment under the organization's quota.
pub async fn create_and_provision(
    state: &AppState,
    env: NewEnvironment,
    origin: &Origin,
) -> Result<enclave_store::EnvRecord> {
    let limit = crate::billing::org_quotas(state, &env.org_id)
        .await?
        .max_environments;
    let rec = state.store.create_environment(env, limit, origin).await?;
    lifecycle::provision(state.store.as_ref(), state.gateway.engines(), &rec.id).await
}

/// 201 with `Location` and `ETag`.
pub async fn created(state: &AppState, rec: enclave_store::EnvRecord) -> Result<Response> {
    let location = format!("/v1/environments/{}", rec.id);
    let version = rec.version;
    let env = shown(state, vec![rec])
        .await?
        .pop()
        .ok_or_else(Error::internal)?;
    Ok(views::created(version, location, env))
}

/// Environments as the API shows them, each with the required keys it lacks (one query
/// for all of them, and none when nothing is required).
pub async fn shown(
    state: &AppState,
    recs: Vec<enclave_store::EnvRecord>,
) -> Result<Vec<Environment>> {
    let pairs: Vec<(EnvId, String)> = recs
        .iter()
        .flat_map(|r| r.required_keys.0.iter().map(|k| (r.id.clone(), k.clone())))
        .collect();
    let present: std::collections::BTreeSet<(EnvId, String)> = if pairs.is_empty() {
        Default::default()
    } else {
        state
            .store
            .existing_secret_keys(&pairs)
            .await?
            .into_iter()
            .collect()
    };
    Ok(recs
        .into_iter()
        .map(|r| {
            let mut env = views::environment(&state.config, r);
            env.missing_keys = env
                .required_keys
                .iter()
                .filter(|k| !present.contains(&(env.env_id.clone(), (*k).clone())))
                .cloned()
                .collect();
            env
        })
        .collect())
}

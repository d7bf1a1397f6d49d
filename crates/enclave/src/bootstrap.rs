//! First start: on a database without users, create one organization and its owner so a new
//! user can log in at once. Never again once any user exists (checked in the same
//! transaction that creates them, so two nodes starting together create one owner).

use enclave_api::auth::passwords::Passwords;
use enclave_core::id::{OrgId, UserId};
use enclave_core::model::Tier;
use enclave_core::validate;
use enclave_store::{NewOrg, NewUser, Store};
use rand::distributions::{Alphanumeric, DistString};

/// What to tell the person who started the server.
#[derive(Debug, Clone)]
pub struct BootstrapCredentials {
    pub email: String,
    /// `Some` when generated (it is shown this once); `None` when it came from configuration.
    pub generated_password: Option<String>,
    pub org_id: OrgId,
}

pub async fn run(
    store: &Store,
    email: &str,
    password: Option<String>,
    tier: Tier,
    default_engine: enclave_core::environment::EngineKind,
) -> anyhow::Result<Option<BootstrapCredentials>> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let email = validate::email("ENCLAVE_BOOTSTRAP_EMAIL", email)
        .map_err(|e| anyhow::anyhow!("ENCLAVE_BOOTSTRAP_EMAIL: {}", e.message))?;
    let (password, generated) = match password {
        Some(p) => {
            validate::password("ENCLAVE_BOOTSTRAP_PASSWORD", &p, Some(&email))
                .map_err(|e| anyhow::anyhow!("ENCLAVE_BOOTSTRAP_PASSWORD: {}", e.message))?;
            (p, false)
        }
        None => (Alphanumeric.sample_string(&mut rand::rngs::OsRng, 24), true),
    };
    let hash = Passwords::new().hash(password.clone()).await?;
    let user = NewUser {
        id: UserId::generate(),
        email: email.clone(),
        name: "Owner".into(),
        password_hash: Some(hash),
    };
    let org = NewOrg {
        id: OrgId::generate(),
        name: "Default".into(),
        slug: "default".into(),
        billing_email: email.clone(),
        cloud_region: None,
        tier,
        settings: serde_json::json!({}),
    };
    let environments = enclave_api::environments::default_environments(
        &org.id,
        &enclave_api::environments::initial_settings(default_engine),
    );
    let created = store.bootstrap(user, org, environments).await?;
    Ok(created.map(|org| BootstrapCredentials {
        email,
        generated_password: generated.then_some(password),
        org_id: org.id,
    }))
}

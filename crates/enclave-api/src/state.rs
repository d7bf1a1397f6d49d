//! Shared state of the control plane.

use std::sync::Arc;

use enclave_gateway::engine::home::Home;
use enclave_gateway::engine::managed_postgres::ManagedPostgres;
use enclave_gateway::engine::postgres::PgEngine;
use enclave_gateway::engine::{Engine, Engines};
use enclave_gateway::{Gateway, GatewayConfig};
use enclave_store::Store;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::cache::AuthCache;
use crate::auth::keys::KeyAuth;
use crate::auth::passwords::Passwords;
use crate::auth::throttle::Throttle;
use crate::auth::tokens::{self, TokenKeys};
use crate::auth::wire::WireAuth;
use crate::config::ApiConfig;
use crate::rate_limits::RateLimits;
use crate::secrets::{master, EngineSecrets, Keyring};

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: Arc<Store>,
    pub config: ApiConfig,
    pub tokens: Arc<TokenKeys>,
    pub passwords: Passwords,
    pub auth_cache: Arc<AuthCache>,
    pub key_auth: Arc<KeyAuth>,
    /// Failed sign-ins (passwords and API keys) slow down per source and account.
    pub throttle: Arc<Throttle>,
    pub rate_limits: Arc<RateLimits>,
    pub metrics: PrometheusHandle,
    pub keyring: Arc<Keyring>,
    /// The data plane: both doors run statements through it.
    pub gateway: Arc<Gateway>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Loads (or creates) the signing key and the master key — refusing a master key that
    /// is not this database's — and starts the caches' invalidation listeners.
    pub async fn new(
        store: Arc<Store>,
        engine: Arc<dyn Engine>,
        config: ApiConfig,
    ) -> anyhow::Result<Self> {
        let tokens = Arc::new(TokenKeys::load_or_create(
            &config.jwt_key_file,
            &config.issuer,
        )?);
        let master_key = master::load(&config.master_key, store.as_ref()).await?;
        let keyring = Keyring::new(store.clone(), config.master_key.clone(), master_key);
        // Webhook signing secrets an older release stored in clear are sealed before serving.
        let sealed = keyring.seal_stored_in_clear().await?;
        if sealed > 0 {
            tracing::info!(
                webhooks = sealed,
                "webhook signing secrets sealed with the master key"
            );
        }
        // Invitation tokens an older release stored in clear are replaced by their hashes.
        let hashed = store.hash_invite_tokens(&tokens::hash_token).await?;
        if hashed > 0 {
            tracing::info!(
                invitations = hashed,
                "invitation tokens replaced by their hashes"
            );
        }
        let auth_cache = AuthCache::start(store.clone());
        let passwords = Passwords::new();
        let throttle = Arc::new(Throttle::new());
        let key_auth = KeyAuth::start(store.clone(), passwords.clone(), throttle.clone());
        let shared_limits =
            (store.backend() == enclave_store::Backend::Postgres).then(|| store.clone());
        let rate_limits = Arc::new(RateLimits::new(&config, shared_limits));
        let managed = match &config.engine_postgres_url {
            Some(url) => Some(Arc::new(
                ManagedPostgres::new(url).map_err(|e| anyhow::anyhow!(e))?,
            )),
            None => None,
        };
        let engines = Engines {
            embedded: engine,
            postgres: Arc::new(PgEngine::new(
                Arc::new(EngineSecrets {
                    store: store.clone(),
                    keyring: keyring.clone(),
                }),
                managed.clone(),
            )),
            managed,
            default_engine: config.default_engine,
            home: Arc::new(Home::new(config.node_id.clone(), store.clone())),
        };
        let wire_auth = Arc::new(WireAuth {
            keys: key_auth.clone(),
            tokens: tokens.clone(),
            cache: auth_cache.clone(),
            store: store.clone(),
            clock: config.clock.clone(),
        });
        let gateway = Gateway::new(
            store.clone(),
            engines,
            wire_auth,
            Arc::new(EngineSecrets {
                store: store.clone(),
                keyring: keyring.clone(),
            }),
            GatewayConfig {
                row_limit: config.query_row_limit,
                sql_limits: config.sql_limits,
                queue_limit: config.query_queue_limit,
                spool_dir: config.spool_dir.clone(),
                load_limit: config.load_max_bytes,
                result_cache_bytes: config.result_cache_bytes,
                tier_quotas: config
                    .tier_limits
                    .iter()
                    .map(|(tier, limits)| (*tier, limits.quotas))
                    .collect(),
                shadow_queue: config.shadow_queue,
            },
        );
        Ok(AppState(Arc::new(Inner {
            store,
            tokens,
            passwords,
            auth_cache,
            key_auth,
            throttle,
            rate_limits,
            metrics: crate::middleware::metrics::handle(),
            keyring,
            gateway,
            config,
        })))
    }
}

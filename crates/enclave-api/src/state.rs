//! Shared state of the control plane.

use std::sync::Arc;

use enclave_store::Store;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::cache::AuthCache;
use crate::auth::keys::KeyAuth;
use crate::auth::passwords::Passwords;
use crate::auth::tokens::TokenKeys;
use crate::config::ApiConfig;
use crate::middleware::rate_limit::RateLimits;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: Arc<dyn Store>,
    pub config: ApiConfig,
    pub tokens: TokenKeys,
    pub passwords: Passwords,
    pub auth_cache: Arc<AuthCache>,
    pub key_auth: Arc<KeyAuth>,
    pub rate_limits: RateLimits,
    pub metrics: PrometheusHandle,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Loads (or creates) the signing key and starts the cache's invalidation listener.
    pub fn new(store: Arc<dyn Store>, config: ApiConfig) -> anyhow::Result<Self> {
        let tokens = TokenKeys::load_or_create(&config.jwt_key_file, &config.issuer)?;
        let auth_cache = AuthCache::start(store.clone());
        let passwords = Passwords::new();
        let key_auth = KeyAuth::start(store.clone(), passwords.clone());
        let rate_limits = RateLimits::new(&config);
        Ok(AppState(Arc::new(Inner {
            store,
            tokens,
            passwords,
            auth_cache,
            key_auth,
            rate_limits,
            metrics: crate::middleware::metrics::handle(),
            config,
        })))
    }
}

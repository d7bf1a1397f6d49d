//! What the control plane needs from the server's configuration.

use std::collections::HashMap;
use std::path::PathBuf;

use enclave_core::billing::quotas::Overrides;
use enclave_core::billing::Quotas;
use enclave_core::model::{Tier, TierLimits};

#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Where the JWT signing key lives (created on first start, 0600).
    pub jwt_key_file: PathBuf,
    /// The `iss` claim.
    pub issuer: String,
    /// Whether `POST /v1/auth/signup` is open to anyone.
    pub open_signup: bool,
    /// Tier of new organizations.
    pub default_tier: Tier,
    /// Per-tier limits, after configuration overrides.
    pub tier_limits: HashMap<Tier, TierLimits>,
    /// Rate limit for requests without credentials, per client IP: (per minute, burst).
    pub anonymous_rate_limit: (u32, u32),
    /// How SQL clients reach the gateway (an environment's `connection`).
    pub gateway_host: String,
    pub gateway_port: u16,
    pub webhooks: WebhookConfig,
    /// Where the master key that wraps secrets' data keys comes from.
    pub master_key: crate::secrets::MasterKeySource,
    /// Most rows one statement returns through the gateway (the rest are left out).
    pub query_row_limit: u64,
    /// What one request's SQL may hold (size, statements, nesting, select-list width).
    pub sql_limits: enclave_core::query::Limits,
    /// Statements that may wait per environment once `max_concurrent_queries` run.
    pub query_queue_limit: usize,
    /// Where bulk loads (imports, `COPY … FROM STDIN`) are spooled before the engine reads them.
    pub spool_dir: std::path::PathBuf,
    /// The largest bulk load, in bytes.
    pub load_max_bytes: u64,
    /// Bytes of read results each node keeps in its result cache (0: none).
    pub result_cache_bytes: u64,
    /// Shadow replays that may wait on this node.
    pub shadow_queue: usize,
    /// The clock of the deadlines the server decides on (just-in-time grants); only tests
    /// move it.
    pub clock: enclave_core::clock::Clock,
    /// This node's id (kept in its data directory).
    pub node_id: enclave_core::id::NodeId,
    /// The server the managed PostgreSQL engine provisions environments' databases on.
    pub engine_postgres_url: Option<String>,
    /// What a new environment's data goes to unless its settings say.
    pub default_engine: enclave_core::environment::EngineKind,
}

/// Rows a statement returns at most, unless configured.
pub const DEFAULT_QUERY_ROW_LIMIT: u64 = 1_000_000;
/// Statements that may queue per environment, unless configured.
pub const DEFAULT_QUERY_QUEUE_LIMIT: usize = 64;
/// The result cache's size per node, unless configured: 256 MiB.
pub const DEFAULT_RESULT_CACHE_BYTES: u64 = 256 << 20;
/// The largest import or `COPY` data: 1 GiB.
pub const LOAD_MAX_BYTES: u64 = 1 << 30;

/// Webhook delivery settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Plain `http://` and private/loopback targets allowed (development and tests only).
    pub allow_private: bool,
    /// The first retry delay; each later one is three times the previous (at most 6 h).
    pub retry_base: std::time::Duration,
    pub max_attempts: u32,
    /// Consecutive failed attempts after which an endpoint is disabled.
    pub disable_after: u32,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        use enclave_core::webhook as wh;
        WebhookConfig {
            allow_private: false,
            retry_base: wh::DEFAULT_RETRY_BASE,
            max_attempts: wh::DEFAULT_MAX_ATTEMPTS,
            disable_after: wh::DEFAULT_DISABLE_AFTER,
        }
    }
}

impl ApiConfig {
    pub fn limits(&self, tier: Tier) -> TierLimits {
        self.tier_limits
            .get(&tier)
            .copied()
            .unwrap_or_else(|| tier.default_limits())
    }

    /// An organization's quotas: its tier's as configured, with its owner's changes on top.
    pub fn quotas(&self, org: &enclave_store::OrgRecord) -> Quotas {
        Overrides::from_json(&org.quota_overrides.0).apply(self.limits(org.tier).quotas)
    }

    /// A configuration with the product's defaults, its key file in `data_dir`.
    pub fn with_defaults(data_dir: &std::path::Path) -> Self {
        ApiConfig {
            jwt_key_file: data_dir.join("jwt-signing-key.pk8"),
            issuer: "enclave".to_string(),
            open_signup: false,
            default_tier: Tier::Free,
            tier_limits: Tier::ALL
                .into_iter()
                .map(|t| (t, t.default_limits()))
                .collect(),
            anonymous_rate_limit: (300, 50),
            gateway_host: "127.0.0.1".to_string(),
            gateway_port: 5439,
            webhooks: WebhookConfig::default(),
            master_key: crate::secrets::MasterKeySource::File(data_dir.join("master.key")),
            query_row_limit: DEFAULT_QUERY_ROW_LIMIT,
            sql_limits: enclave_core::query::Limits::default(),
            query_queue_limit: DEFAULT_QUERY_QUEUE_LIMIT,
            spool_dir: data_dir.join("spool"),
            load_max_bytes: LOAD_MAX_BYTES,
            result_cache_bytes: DEFAULT_RESULT_CACHE_BYTES,
            shadow_queue: enclave_gateway::shadow::DEFAULT_QUEUE,
            clock: enclave_core::clock::Clock::default(),
            node_id: enclave_core::id::NodeId::generate(),
            engine_postgres_url: None,
            default_engine: enclave_core::environment::EngineKind::Duckdb,
        }
    }
}

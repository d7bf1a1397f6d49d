//! Server configuration: command-line flags, each with an environment variable, over an
//! optional TOML file (`--config`), over the defaults (the README's configuration table).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use enclave_core::billing::quotas::Overrides;
use enclave_core::billing::QuotaPatch;
use enclave_core::model::{Tier, TierLimits};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Flags of `enclave serve` (and `enclave migrate`, which uses the storage ones). The TOML
/// file given with `--config` has the same settings under the same names (all but `config`
/// itself); unknown keys are refused.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (flags and variables win over it).
    #[arg(long, env = "ENCLAVE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Where the embedded database, keys and engine files live.
    #[arg(long, env = "ENCLAVE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Control-plane HTTP address (port 0 picks a free port).
    #[arg(long, env = "ENCLAVE_HTTP_ADDR")]
    pub http_addr: Option<String>,
    /// Gateway (Postgres wire) address (port 0 picks a free port).
    #[arg(long, env = "ENCLAVE_GATEWAY_ADDR")]
    pub gateway_addr: Option<String>,
    /// Most rows one statement returns through the gateway (default 1 000 000).
    #[arg(long, env = "ENCLAVE_QUERY_ROW_LIMIT")]
    pub query_row_limit: Option<u64>,
    /// Mebibytes of read results each node keeps in its result cache (default 256; 0 turns
    /// the cache off on this node).
    #[arg(long, env = "ENCLAVE_RESULT_CACHE_MB")]
    pub result_cache_mb: Option<u64>,
    /// Shadow replays that may wait on this node (default 256); sampled reads past it are
    /// dropped and counted, never delayed.
    #[arg(long, env = "ENCLAVE_SHADOW_QUEUE")]
    pub shadow_queue: Option<usize>,
    /// Most bytes of SQL text in one request: a wire Query or Parse, an HTTP body's `sql`
    /// (default 1 048 576).
    #[arg(long, env = "ENCLAVE_QUERY_MAX_BYTES")]
    pub query_max_bytes: Option<usize>,
    /// Most statements in one request's SQL text (default 1 000).
    #[arg(long, env = "ENCLAVE_QUERY_MAX_STATEMENTS")]
    pub query_max_statements: Option<usize>,
    /// How deep a statement's expressions, subqueries and set operations may nest
    /// (default 1 000, as DuckDB's `max_expression_depth`).
    #[arg(long, env = "ENCLAVE_QUERY_MAX_DEPTH")]
    pub query_max_depth: Option<usize>,
    /// Most items in one select list (default 10 000).
    #[arg(long, env = "ENCLAVE_QUERY_MAX_SELECT_ITEMS")]
    pub query_max_select_items: Option<usize>,
    /// Wire connections open at once (default 500, fewer when the process may open too few
    /// files for that: a connection holds two descriptors and half stay for HTTP, the store
    /// and engine files). The next connection is refused with `53300`.
    #[arg(long, env = "ENCLAVE_GATEWAY_MAX_CONNECTIONS")]
    pub gateway_max_connections: Option<usize>,
    /// Wire connections still authenticating at once (default 256, at most half of
    /// `gateway_max_connections`).
    #[arg(long, env = "ENCLAVE_GATEWAY_MAX_STARTUPS")]
    pub gateway_max_startups: Option<usize>,
    /// Of those, from one source address (default 32).
    #[arg(long, env = "ENCLAVE_GATEWAY_MAX_STARTUPS_PER_SOURCE")]
    pub gateway_max_startups_per_source: Option<usize>,
    /// Milliseconds a wire connection has to authenticate (default 10 000).
    #[arg(long, env = "ENCLAVE_GATEWAY_STARTUP_TIMEOUT_MS")]
    pub gateway_startup_timeout_ms: Option<u64>,
    /// PEM certificate chain for TLS on the gateway (with `gateway_tls_key`).
    #[arg(long, env = "ENCLAVE_GATEWAY_TLS_CERT")]
    pub gateway_tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for TLS on the gateway.
    #[arg(long, env = "ENCLAVE_GATEWAY_TLS_KEY")]
    pub gateway_tls_key: Option<PathBuf>,
    /// Refuse plaintext connections to the gateway (needs the certificate and key).
    #[arg(long, env = "ENCLAVE_GATEWAY_TLS_REQUIRE")]
    pub gateway_tls_require: Option<bool>,
    /// `sqlite://…` or `postgres://…`; default: SQLite in the data directory.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// A PostgreSQL server (`postgres://…`, a role that may create databases and roles) on
    /// which Enclave provisions one database per environment: the managed engine. Every node
    /// of a cluster needs the same one.
    #[arg(long, env = "ENCLAVE_ENGINE_POSTGRES_URL", hide_env_values = true)]
    pub engine_postgres_url: Option<String>,
    /// Where a new environment's data goes unless its settings say: `duckdb` (embedded, on
    /// the node that creates it) or `postgres` (the managed engine). Default: `postgres` with
    /// a PostgreSQL store and a managed engine, else `duckdb`.
    #[arg(long, env = "ENCLAVE_DEFAULT_ENGINE")]
    pub default_engine: Option<String>,
    /// This node's name in the node registry and in errors that send clients to it
    /// (default: the host's name).
    #[arg(long, env = "ENCLAVE_NODE_NAME")]
    pub node_name: Option<String>,
    /// Host that SQL clients use to reach the gateway; default: the gateway address's host.
    #[arg(long, env = "ENCLAVE_PUBLIC_HOST")]
    pub public_host: Option<String>,
    /// `pretty` (default on a terminal) or `json`.
    #[arg(long, env = "ENCLAVE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Allow anyone to sign up (`POST /v1/auth/signup`).
    #[arg(long, env = "ENCLAVE_OPEN_SIGNUP")]
    pub open_signup: Option<bool>,
    /// Tier of new organizations (the bootstrap one too): free, cloud, growth, enterprise
    /// (default: enterprise, no SaaS limits on a self-hosted server).
    #[arg(long, env = "ENCLAVE_DEFAULT_TIER")]
    pub default_tier: Option<String>,
    /// Rate limits per tier, `TIER=PER_MINUTE/BURST`, comma-separated.
    #[arg(long, env = "ENCLAVE_RATE_LIMITS")]
    pub rate_limits: Option<String>,
    /// Environments per organization by tier, `TIER=COUNT|unlimited`, comma-separated
    /// (default free=3, cloud=5, growth=25, enterprise=unlimited).
    #[arg(long, env = "ENCLAVE_ENVIRONMENT_QUOTAS")]
    pub environment_quotas: Option<String>,
    /// Quotas per tier, `TIER.QUOTA=VALUE`, comma-separated, a value a whole number or
    /// `unlimited` (e.g. `free.monthly_credit_limit=500,growth.max_users=unlimited`); quotas:
    /// monthly_credit_limit, max_concurrent_queries, max_rows_per_query, storage_limit_gb,
    /// max_environments, max_users, max_api_keys_per_environment (docs/billing.md).
    #[arg(long, env = "ENCLAVE_TIER_QUOTAS")]
    pub tier_quotas: Option<String>,
    /// Rate limit of requests without credentials, per client IP: `PER_MINUTE/BURST`.
    #[arg(long, env = "ENCLAVE_ANONYMOUS_RATE_LIMIT")]
    pub anonymous_rate_limit: Option<String>,
    /// The JWT signing key (Ed25519, PKCS#8 DER); default: created in the data directory.
    #[arg(long, env = "ENCLAVE_JWT_KEY_FILE")]
    pub jwt_key_file: Option<PathBuf>,
    /// The master key that wraps every environment's data key (32 bytes, base64 or hex).
    /// Every node of a cluster needs the same one. Default: the key file.
    #[arg(long, env = "ENCLAVE_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
    /// Where the master key is kept when ENCLAVE_MASTER_KEY is not set (created with mode
    /// 0600 on first start); default `master.key` in the data directory.
    #[arg(long, env = "ENCLAVE_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// First-start owner e-mail; default admin@enclave.local.
    #[arg(long, env = "ENCLAVE_BOOTSTRAP_EMAIL")]
    pub bootstrap_email: Option<String>,
    /// First-start owner password; default: generated and printed once.
    #[arg(long, env = "ENCLAVE_BOOTSTRAP_PASSWORD", hide_env_values = true)]
    pub bootstrap_password: Option<String>,
    /// Allow webhook targets on plain http:// and private/loopback addresses (development
    /// and tests only; default false).
    #[arg(long, env = "ENCLAVE_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: Option<bool>,
    /// First webhook retry delay in milliseconds; each later one is 3× the previous, at most
    /// 6 h (default 30000).
    #[arg(long, env = "ENCLAVE_WEBHOOK_RETRY_BASE_MS")]
    pub webhook_retry_base_ms: Option<u64>,
    /// Attempts per webhook delivery (default 8).
    #[arg(long, env = "ENCLAVE_WEBHOOK_MAX_ATTEMPTS")]
    pub webhook_max_attempts: Option<u32>,
    /// Consecutive failed attempts after which a webhook is disabled (default 40).
    #[arg(long, env = "ENCLAVE_WEBHOOK_DISABLE_AFTER")]
    pub webhook_disable_after: Option<u32>,
}

/// Every setting resolved.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub http_addr: SocketAddr,
    pub gateway_addr: SocketAddr,
    pub database_url: String,
    pub public_host: String,
    pub log_format: Option<LogFormat>,
    pub open_signup: bool,
    pub default_tier: Tier,
    pub tier_limits: HashMap<Tier, TierLimits>,
    pub anonymous_rate_limit: (u32, u32),
    pub jwt_key_file: PathBuf,
    pub master_key: enclave_api::secrets::MasterKeySource,
    pub bootstrap_email: String,
    pub bootstrap_password: Option<String>,
    pub webhooks: enclave_api::config::WebhookConfig,
    pub query_row_limit: u64,
    pub result_cache_bytes: u64,
    pub shadow_queue: usize,
    pub sql_limits: enclave_core::query::Limits,
    /// The wire connection budget as configured; unset numbers follow the file descriptor
    /// limit the server finds at start ([`WireSettings::limits`]).
    pub wire: WireSettings,
    pub gateway_tls: Option<enclave_gateway::wire::TlsConfig>,
    /// The clock of the deadlines the server decides on (just-in-time grants): the system
    /// clock; a test moves it to reach a deadline without waiting.
    pub clock: enclave_core::clock::Clock,
    pub engine_postgres_url: Option<String>,
    pub default_engine: enclave_core::environment::EngineKind,
    pub node_name: String,
}

/// The wire connection budget as configured.
#[derive(Debug, Clone)]
pub struct WireSettings {
    pub max_connections: Option<usize>,
    pub max_startups: Option<usize>,
    pub max_startups_per_source: Option<usize>,
    pub startup_timeout: Duration,
}

/// Wire connections open at once unless configured.
const DEFAULT_MAX_CONNECTIONS: u64 = 500;

impl WireSettings {
    /// The budget for a process that may open `file_limit` descriptors: unset numbers leave
    /// half of them to HTTP connections, the stores' pools and the engines' files. A wire
    /// connection holds two: its socket, and the duplicate that watches for the client
    /// hanging up.
    pub fn limits(
        &self,
        file_limit: u64,
        sql: &enclave_core::query::Limits,
    ) -> enclave_gateway::wire::WireLimits {
        let defaults = enclave_gateway::wire::WireLimits::default();
        let max_connections = self.max_connections.unwrap_or_else(|| {
            (file_limit.saturating_sub(64) / 4).clamp(16, DEFAULT_MAX_CONNECTIONS) as usize
        });
        let max_unauthenticated = self
            .max_startups
            .unwrap_or(defaults.max_unauthenticated.min(max_connections / 2).max(1));
        enclave_gateway::wire::WireLimits {
            max_connections,
            max_unauthenticated,
            max_unauthenticated_per_source: self
                .max_startups_per_source
                .unwrap_or(defaults.max_unauthenticated_per_source),
            startup_timeout: self.startup_timeout,
            max_sql_bytes: sql.max_statement_bytes,
            max_data_bytes: defaults.max_data_bytes,
        }
    }
}

fn positive(name: &str, value: Option<usize>) -> anyhow::Result<Option<usize>> {
    match value {
        Some(0) => bail!("{name}: must be at least 1"),
        other => Ok(other),
    }
}

/// The SQL limits, each within a range that keeps the server safe (a depth beyond 10 000
/// would need more stack than is reasonable to map per statement).
fn sql_limits(
    bytes: Option<usize>,
    statements: Option<usize>,
    depth: Option<usize>,
    select_items: Option<usize>,
) -> anyhow::Result<enclave_core::query::Limits> {
    let mut limits = enclave_core::query::Limits::default();
    for (name, value, range, slot) in [
        (
            "query_max_bytes",
            bytes,
            1024..=(64 << 20),
            &mut limits.max_statement_bytes,
        ),
        (
            "query_max_statements",
            statements,
            1..=100_000,
            &mut limits.max_statements,
        ),
        ("query_max_depth", depth, 16..=10_000, &mut limits.max_depth),
        (
            "query_max_select_items",
            select_items,
            1..=1_000_000,
            &mut limits.max_select_items,
        ),
    ] {
        if let Some(v) = value {
            if !range.contains(&v) {
                bail!(
                    "{name}: {v} must be between {} and {}",
                    range.start(),
                    range.end()
                );
            }
            *slot = v;
        }
    }
    Ok(limits)
}

fn addr(name: &str, value: &str) -> anyhow::Result<SocketAddr> {
    value
        .parse()
        .with_context(|| format!("{name}: `{value}` is not an address like 127.0.0.1:8080"))
}

fn rate(name: &str, value: &str) -> anyhow::Result<(u32, u32)> {
    let (per_minute, burst) = value
        .split_once('/')
        .with_context(|| format!("{name}: `{value}` must be PER_MINUTE/BURST"))?;
    let per_minute: u32 = per_minute
        .trim()
        .parse()
        .with_context(|| format!("{name}: bad per-minute count in `{value}`"))?;
    let burst: u32 = burst
        .trim()
        .parse()
        .with_context(|| format!("{name}: bad burst in `{value}`"))?;
    if per_minute == 0 || burst == 0 {
        bail!("{name}: limits must be positive");
    }
    Ok((per_minute, burst))
}

/// One item of `tier_quotas`: `TIER.QUOTA=VALUE` as that tier's change.
fn tier_quota(item: &str) -> anyhow::Result<(Tier, QuotaPatch)> {
    let (name, value) = item
        .split_once('=')
        .with_context(|| format!("tier_quotas: `{item}` must be TIER.QUOTA=VALUE"))?;
    let (tier, quota) = name
        .trim()
        .split_once('.')
        .with_context(|| format!("tier_quotas: `{name}` must be TIER.QUOTA"))?;
    let tier = Tier::parse(tier).with_context(|| format!("tier_quotas: unknown tier `{tier}`"))?;
    let value =
        match value.trim() {
            "unlimited" => serde_json::Value::from("unlimited"),
            n => serde_json::Value::from(n.parse::<u64>().with_context(|| {
                format!("tier_quotas: `{n}` is not a whole number or `unlimited`")
            })?),
        };
    let patch = QuotaPatch::parse(&serde_json::json!({ quota: value }))
        .map_err(|e| anyhow::anyhow!("tier_quotas: {}", e.message))?;
    Ok((tier, patch))
}

impl ServeArgs {
    pub fn resolve(self) -> anyhow::Result<ServerConfig> {
        let file: ServeArgs = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("invalid configuration file {}", path.display()))?
            }
            None => ServeArgs::default(),
        };
        let data_dir = self
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./data"));
        let http_addr = addr(
            "http_addr",
            &self
                .http_addr
                .or(file.http_addr)
                .unwrap_or_else(|| "127.0.0.1:8080".into()),
        )?;
        let gateway_addr = addr(
            "gateway_addr",
            &self
                .gateway_addr
                .or(file.gateway_addr)
                .unwrap_or_else(|| "127.0.0.1:5439".into()),
        )?;
        let database_url = self
            .database_url
            .or(file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("enclave.db").display()));
        let public_host = self
            .public_host
            .or(file.public_host)
            .unwrap_or_else(|| gateway_addr.ip().to_string());
        // A self-hosted server's organizations are its operator's own: no SaaS tier limits
        // unless the operator sells tiers (`--default-tier free`, per-tier quotas).
        let default_tier = match self.default_tier.or(file.default_tier) {
            None => Tier::Enterprise,
            Some(t) => Tier::parse(&t).with_context(|| {
                format!("default_tier: `{t}` is not one of free, cloud, growth, enterprise")
            })?,
        };
        let mut tier_limits: HashMap<Tier, TierLimits> = Tier::ALL
            .into_iter()
            .map(|t| (t, t.default_limits()))
            .collect();
        if let Some(spec) = self.rate_limits.or(file.rate_limits) {
            for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let (tier, limit) = item.split_once('=').with_context(|| {
                    format!("rate_limits: `{item}` must be TIER=PER_MINUTE/BURST")
                })?;
                let tier = Tier::parse(tier.trim())
                    .with_context(|| format!("rate_limits: unknown tier `{tier}`"))?;
                let (per_minute, burst) = rate("rate_limits", limit)?;
                let l = tier_limits.get_mut(&tier).expect("every tier present");
                l.rate_limits.per_minute = per_minute;
                l.rate_limits.burst = burst;
            }
        }
        if let Some(spec) = self.environment_quotas.or(file.environment_quotas) {
            for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let (tier, count) = item.split_once('=').with_context(|| {
                    format!("environment_quotas: `{item}` must be TIER=COUNT or TIER=unlimited")
                })?;
                let tier = Tier::parse(tier.trim())
                    .with_context(|| format!("environment_quotas: unknown tier `{tier}`"))?;
                let max = match count.trim() {
                    "unlimited" => None,
                    n => Some(n.parse::<u32>().with_context(|| {
                        format!("environment_quotas: `{n}` is not a count or `unlimited`")
                    })?),
                };
                tier_limits
                    .get_mut(&tier)
                    .expect("every tier present")
                    .quotas
                    .max_environments = max;
            }
        }
        if let Some(spec) = self.tier_quotas.or(file.tier_quotas) {
            for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let (tier, quotas) = tier_quota(item)?;
                let l = tier_limits.get_mut(&tier).expect("every tier present");
                let mut overrides = Overrides::default();
                overrides.patch(&quotas);
                l.quotas = overrides.apply(l.quotas);
            }
        }
        let anonymous_rate_limit = match self.anonymous_rate_limit.or(file.anonymous_rate_limit) {
            Some(v) => rate("anonymous_rate_limit", &v)?,
            None => (300, 50),
        };
        let jwt_key_file = self
            .jwt_key_file
            .or(file.jwt_key_file)
            .unwrap_or_else(|| data_dir.join("jwt-signing-key.pk8"));
        let master_key = match self.master_key.or(file.master_key) {
            Some(key) => enclave_api::secrets::MasterKeySource::Configured(key),
            None => enclave_api::secrets::MasterKeySource::File(
                self.master_key_file
                    .or(file.master_key_file)
                    .unwrap_or_else(|| data_dir.join("master.key")),
            ),
        };
        let bootstrap_email = self
            .bootstrap_email
            .or(file.bootstrap_email)
            .unwrap_or_else(|| "admin@enclave.local".into());
        let engine_postgres_url = self.engine_postgres_url.or(file.engine_postgres_url);
        if let Some(url) = &engine_postgres_url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                bail!(
                    "engine_postgres_url: `{}` is not a postgres:// URL",
                    enclave_store::redact_url(url)
                );
            }
        }
        let postgres_store =
            database_url.starts_with("postgres://") || database_url.starts_with("postgresql://");
        let default_engine = match self.default_engine.or(file.default_engine).as_deref() {
            Some("duckdb") => enclave_core::environment::EngineKind::Duckdb,
            Some("postgres") if engine_postgres_url.is_some() => {
                enclave_core::environment::EngineKind::Postgres
            }
            Some("postgres") => {
                bail!("default_engine: postgres needs engine_postgres_url (the managed engine)")
            }
            Some(other) => bail!("default_engine: `{other}` is not one of duckdb, postgres"),
            None if postgres_store && engine_postgres_url.is_some() => {
                enclave_core::environment::EngineKind::Postgres
            }
            None => enclave_core::environment::EngineKind::Duckdb,
        };
        let node_name = match self.node_name.or(file.node_name) {
            Some(name) if name.trim().is_empty() || name.len() > 200 => {
                bail!("node_name: must be 1 to 200 characters")
            }
            Some(name) => name,
            None => host_name(),
        };
        let mut webhooks = enclave_api::config::WebhookConfig::default();
        if let Some(allow) = self.webhook_allow_private.or(file.webhook_allow_private) {
            webhooks.allow_private = allow;
        }
        if let Some(ms) = self.webhook_retry_base_ms.or(file.webhook_retry_base_ms) {
            if !(100..=3_600_000).contains(&ms) {
                bail!("webhook_retry_base_ms: {ms} must be between 100 and 3600000");
            }
            webhooks.retry_base = Duration::from_millis(ms);
        }
        if let Some(n) = self.webhook_max_attempts.or(file.webhook_max_attempts) {
            if !(1..=50).contains(&n) {
                bail!("webhook_max_attempts: {n} must be between 1 and 50");
            }
            webhooks.max_attempts = n;
        }
        if let Some(n) = self.webhook_disable_after.or(file.webhook_disable_after) {
            if n == 0 {
                bail!("webhook_disable_after: must be at least 1");
            }
            webhooks.disable_after = n;
        }
        Ok(ServerConfig {
            data_dir,
            http_addr,
            gateway_addr,
            database_url,
            public_host,
            log_format: self.log_format.or(file.log_format),
            open_signup: self.open_signup.or(file.open_signup).unwrap_or(false),
            default_tier,
            tier_limits,
            anonymous_rate_limit,
            jwt_key_file,
            master_key,
            bootstrap_email,
            bootstrap_password: self.bootstrap_password.or(file.bootstrap_password),
            webhooks,
            query_row_limit: match self.query_row_limit.or(file.query_row_limit) {
                Some(0) => anyhow::bail!("query_row_limit must be at least 1"),
                Some(n) => n,
                None => enclave_api::config::DEFAULT_QUERY_ROW_LIMIT,
            },
            result_cache_bytes: match self.result_cache_mb.or(file.result_cache_mb) {
                Some(mb) if mb > 1 << 20 => {
                    anyhow::bail!("result_cache_mb must be at most 1048576")
                }
                Some(mb) => mb << 20,
                None => enclave_api::config::DEFAULT_RESULT_CACHE_BYTES,
            },
            shadow_queue: match self.shadow_queue.or(file.shadow_queue) {
                Some(n) if !(1..=1_000_000).contains(&n) => {
                    anyhow::bail!("shadow_queue must be between 1 and 1000000")
                }
                Some(n) => n,
                None => enclave_gateway::shadow::DEFAULT_QUEUE,
            },
            sql_limits: sql_limits(
                self.query_max_bytes.or(file.query_max_bytes),
                self.query_max_statements.or(file.query_max_statements),
                self.query_max_depth.or(file.query_max_depth),
                self.query_max_select_items.or(file.query_max_select_items),
            )?,
            wire: WireSettings {
                max_connections: positive(
                    "gateway_max_connections",
                    self.gateway_max_connections
                        .or(file.gateway_max_connections),
                )?,
                max_startups: positive(
                    "gateway_max_startups",
                    self.gateway_max_startups.or(file.gateway_max_startups),
                )?,
                max_startups_per_source: positive(
                    "gateway_max_startups_per_source",
                    self.gateway_max_startups_per_source
                        .or(file.gateway_max_startups_per_source),
                )?,
                startup_timeout: match self
                    .gateway_startup_timeout_ms
                    .or(file.gateway_startup_timeout_ms)
                {
                    Some(ms) if !(100..=600_000).contains(&ms) => {
                        bail!("gateway_startup_timeout_ms: {ms} must be between 100 and 600000")
                    }
                    Some(ms) => Duration::from_millis(ms),
                    None => Duration::from_secs(10),
                },
            },
            gateway_tls: match (
                self.gateway_tls_cert.or(file.gateway_tls_cert),
                self.gateway_tls_key.or(file.gateway_tls_key),
                self.gateway_tls_require
                    .or(file.gateway_tls_require)
                    .unwrap_or(false),
            ) {
                (Some(cert), Some(key), require) => {
                    Some(enclave_gateway::wire::TlsConfig { cert, key, require })
                }
                (None, None, false) => None,
                (None, None, true) => {
                    bail!("gateway_tls_require needs gateway_tls_cert and gateway_tls_key")
                }
                _ => bail!("gateway_tls_cert and gateway_tls_key go together"),
            },
            clock: enclave_core::clock::Clock::default(),
            engine_postgres_url,
            default_engine,
            node_name,
        })
    }
}

/// The host's name, as the kernel knows it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "enclave".into())
}

impl ServerConfig {
    pub fn api_config(&self) -> enclave_api::ApiConfig {
        enclave_api::ApiConfig {
            jwt_key_file: self.jwt_key_file.clone(),
            issuer: "enclave".into(),
            open_signup: self.open_signup,
            default_tier: self.default_tier,
            tier_limits: self.tier_limits.clone(),
            anonymous_rate_limit: self.anonymous_rate_limit,
            gateway_host: self.public_host.clone(),
            gateway_port: self.gateway_addr.port(),
            webhooks: self.webhooks.clone(),
            master_key: self.master_key.clone(),
            query_row_limit: self.query_row_limit,
            sql_limits: self.sql_limits,
            query_queue_limit: enclave_api::config::DEFAULT_QUERY_QUEUE_LIMIT,
            spool_dir: self.data_dir.join("spool"),
            load_max_bytes: enclave_api::config::LOAD_MAX_BYTES,
            result_cache_bytes: self.result_cache_bytes,
            shadow_queue: self.shadow_queue,
            clock: self.clock.clone(),
            // The node's own id is read from its data directory when it starts.
            node_id: enclave_core::id::NodeId::generate(),
            engine_postgres_url: self.engine_postgres_url.clone(),
            default_engine: self.default_engine,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_limits_and_the_connection_budget() {
        let c = ServeArgs::default().resolve().unwrap();
        assert_eq!(c.sql_limits, enclave_core::query::Limits::default());
        // 1 024 files: 240 connections (two descriptors each, half the files), 120 signing in.
        let wire = c.wire.limits(1024, &c.sql_limits);
        assert_eq!((wire.max_connections, wire.max_unauthenticated), (240, 120));
        assert_eq!(wire.max_unauthenticated_per_source, 32);
        assert_eq!(wire.startup_timeout, Duration::from_secs(10));
        assert_eq!(c.wire.limits(u64::MAX, &c.sql_limits).max_connections, 500);
        let args = ServeArgs {
            query_max_depth: Some(200),
            query_max_statements: Some(10),
            gateway_max_connections: Some(50),
            gateway_startup_timeout_ms: Some(2000),
            ..Default::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!(
            (c.sql_limits.max_depth, c.sql_limits.max_statements),
            (200, 10)
        );
        let wire = c.wire.limits(1024, &c.sql_limits);
        assert_eq!((wire.max_connections, wire.max_unauthenticated), (50, 25));
        assert_eq!(wire.startup_timeout, Duration::from_secs(2));
        for bad in [
            ServeArgs {
                query_max_depth: Some(20_000),
                ..Default::default()
            },
            ServeArgs {
                query_max_bytes: Some(10),
                ..Default::default()
            },
            ServeArgs {
                gateway_max_startups: Some(0),
                ..Default::default()
            },
            ServeArgs {
                gateway_startup_timeout_ms: Some(5),
                ..Default::default()
            },
        ] {
            assert!(bad.clone().resolve().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn defaults_and_overrides() {
        let c = ServeArgs::default().resolve().unwrap();
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.gateway_addr.port(), 5439);
        assert_eq!(c.public_host, "127.0.0.1");
        assert!(c.database_url.starts_with("sqlite://./data"));
        assert_eq!(c.tier_limits[&Tier::Free].rate_limits.per_minute, 60);
        assert_eq!(
            c.default_tier,
            Tier::Enterprise,
            "self-hosted: no SaaS tier"
        );

        let args = ServeArgs {
            rate_limits: Some("free=5/2, enterprise=100000/5000".into()),
            anonymous_rate_limit: Some("10/1".into()),
            default_tier: Some("growth".into()),
            ..Default::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!(
            (
                c.tier_limits[&Tier::Free].rate_limits.per_minute,
                c.tier_limits[&Tier::Free].rate_limits.burst
            ),
            (5, 2)
        );
        assert_eq!(c.tier_limits[&Tier::Enterprise].rate_limits.burst, 5000);
        assert_eq!(c.tier_limits[&Tier::Free].quotas.max_environments, Some(3));
        let q = ServeArgs {
            environment_quotas: Some("free=10, growth=unlimited".into()),
            tier_quotas: Some(
                "free.monthly_credit_limit=500, growth.max_users=unlimited, free.max_rows_per_query=20"
                    .into(),
            ),
            ..ServeArgs::default()
        }
        .resolve()
        .unwrap();
        let quotas = |t: Tier| q.tier_limits[&t].quotas;
        assert_eq!(quotas(Tier::Free).max_environments, Some(10));
        assert_eq!(quotas(Tier::Growth).max_environments, None);
        assert_eq!(quotas(Tier::Cloud).max_environments, Some(5));
        assert_eq!(quotas(Tier::Free).monthly_credit_limit, Some(500));
        assert_eq!(quotas(Tier::Free).max_rows_per_query, 20);
        assert_eq!(quotas(Tier::Growth).max_users, None);
        assert_eq!(quotas(Tier::Cloud).max_users, Some(10));
        assert_eq!(
            (c.anonymous_rate_limit, c.default_tier),
            ((10, 1), Tier::Growth)
        );
    }

    #[test]
    fn bad_values_name_the_setting() {
        let bad = |args: ServeArgs| args.resolve().unwrap_err().to_string();
        assert!(bad(ServeArgs {
            http_addr: Some("nope".into()),
            ..Default::default()
        })
        .contains("http_addr"));
        assert!(bad(ServeArgs {
            rate_limits: Some("gold=1/1".into()),
            ..Default::default()
        })
        .contains("unknown tier"));
        assert!(bad(ServeArgs {
            default_tier: Some("gold".into()),
            ..Default::default()
        })
        .contains("default_tier"));
        assert!(bad(ServeArgs {
            environment_quotas: Some("free=lots".into()),
            ..Default::default()
        })
        .contains("environment_quotas"));
        for (spec, says) in [
            ("free.max_widgets=3", "max_widgets is not a quota"),
            ("gold.max_users=3", "unknown tier"),
            ("free.max_rows_per_query=unlimited", "cannot be unlimited"),
            ("free.max_users=0", "from 1 to"),
            ("free.max_users", "TIER.QUOTA=VALUE"),
            ("free=3", "TIER.QUOTA"),
        ] {
            let e = bad(ServeArgs {
                tier_quotas: Some(spec.into()),
                ..Default::default()
            });
            assert!(e.contains("tier_quotas") && e.contains(says), "{spec}: {e}");
        }
    }

    #[test]
    fn file_is_read_and_flags_win() {
        let dir = std::env::temp_dir().join(format!("enclave-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("enclave.toml");
        std::fs::write(
            &path,
            "http_addr = \"127.0.0.1:9000\"\nopen_signup = true\n",
        )
        .unwrap();
        let c = ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!((c.http_addr.port(), c.open_signup), (9000, true));
        let c = ServeArgs {
            config: Some(path.clone()),
            http_addr: Some("127.0.0.1:9001".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(c.http_addr.port(), 9001);
        std::fs::write(&path, "nonsense = 1\n").unwrap();
        assert!(ServeArgs {
            config: Some(path),
            ..Default::default()
        }
        .resolve()
        .is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}

//! `enclave serve`: open storage, bootstrap, bind, serve until SIGTERM, drain, exit.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::bootstrap::{self, BootstrapCredentials};
use crate::config::ServerConfig;

/// Prints a line for the person who started the server. Never fails: a closed or broken
/// stdout must not take the server down with it.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// How long in-flight requests get to finish after SIGTERM.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A server started in this process.
pub struct Running {
    pub http_addr: SocketAddr,
    pub gateway_addr: SocketAddr,
    pub bootstrap: Option<BootstrapCredentials>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish, and returns.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match tokio::time::timeout(DRAIN_TIMEOUT, &mut self.task).await {
            Ok(joined) => Ok(joined??),
            Err(_) => {
                tracing::warn!(
                    "in-flight requests did not finish within {DRAIN_TIMEOUT:?}; exiting"
                );
                self.task.abort();
                Ok(())
            }
        }
    }
}

/// Opens storage (applying migrations), bootstraps a first owner if needed, binds the HTTP
/// address and serves in the background.
pub async fn start(config: ServerConfig) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    let store = open_store(&config.database_url).await?;
    let node_id = crate::node::node_id(&config.data_dir)?;
    let bootstrap = bootstrap::run(
        store.as_ref(),
        &config.bootstrap_email,
        config.bootstrap_password.clone(),
        config.default_tier,
        config.default_engine,
    )
    .await?;
    let embedded: std::sync::Arc<dyn enclave_gateway::engine::Engine> = std::sync::Arc::new(
        enclave_gateway::engine::duckdb::DuckDbEngine::new(&config.data_dir)?,
    );
    let gateway_listener = TcpListener::bind(config.gateway_addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.gateway_addr))?;
    let gateway_addr = gateway_listener.local_addr()?;
    let mut api_config = config.api_config();
    api_config.gateway_port = gateway_addr.port();
    api_config.node_id = node_id.clone();
    let held = embedded.clone();
    let state = enclave_api::AppState::new(store, embedded, api_config).await?;
    // Environments from before home nodes whose files are here become this node's.
    let claimed =
        enclave_gateway::engine::home::claim_held(&state.gateway.engines().home, |env_id| {
            held.holds(env_id)
        })
        .await
        .map_err(|e| anyhow::anyhow!("cannot claim this node's environments: {}", e.message))?;
    if claimed > 0 {
        tracing::info!(environments = claimed, node_id = %node_id, "embedded environments claimed by this node");
    }
    // Environments a previous run left provisioning or decommissioning (and the first
    // start's defaults) are finished before the first request.
    let settled =
        enclave_api::lifecycle::settle(state.store.as_ref(), state.gateway.engines(), None).await;
    if settled > 0 {
        tracing::info!(
            environments = settled,
            "environment lifecycle steps finished"
        );
    }
    let tls = match &config.gateway_tls {
        Some(tls) => Some(enclave_gateway::wire::Tls::load(tls)?),
        None => None,
    };
    let file_limit = crate::limits::raise_file_limit();
    let wire_limits = config.wire.limits(file_limit, &config.sql_limits);
    tracing::info!(
        file_limit,
        max_connections = wire_limits.max_connections,
        max_unauthenticated = wire_limits.max_unauthenticated,
        "gateway connection budget"
    );
    let gateway = tokio::spawn(enclave_gateway::wire::serve(
        gateway_listener,
        state.gateway.clone(),
        tls,
        wire_limits,
    ));
    spawn_housekeeping(state.clone());
    enclave_api::webhooks::worker::spawn(
        state.store.clone(),
        state.keyring.clone(),
        config.webhooks.clone(),
    )?;
    let audit = state.gateway.audit().clone();
    let store = state.store.clone();
    let app = enclave_api::router(state.clone());

    let listener = TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.http_addr))?;
    let http_addr = listener.local_addr()?;
    crate::node::join(
        &state,
        enclave_store::NewNode {
            id: node_id.clone(),
            name: config.node_name.clone(),
            api_url: format!("http://{}:{}", config.public_host, http_addr.port()),
            gateway_addr: format!("{}:{}", config.public_host, gateway_addr.port()),
        },
    )
    .await?;
    // Responses stream in several writes (a query's head, rows, tail): without TCP_NODELAY,
    // Nagle's algorithm holds each later write until the client's delayed ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        let _ = tcp.set_nodelay(true);
    });
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = rx.await;
        })
        .await;
        // No new statements: close the wire door, then store every pending audit entry.
        gateway.abort();
        audit.flush().await;
        crate::node::leave(&store, &node_id).await;
        served
    });
    Ok(Running {
        http_addr,
        gateway_addr,
        bootstrap,
        shutdown: Some(tx),
        task,
    })
}

/// Opens (and migrates) the storage at `url`, saying which one when it cannot.
pub async fn open_store(url: &str) -> anyhow::Result<std::sync::Arc<enclave_store::Store>> {
    enclave_store::connect(url)
        .await
        .with_context(|| format!("cannot open storage at {}", enclave_store::redact_url(url)))
}

fn spawn_housekeeping(state: enclave_api::AppState) {
    enclave_api::rate_limits::spawn_housekeeping(state.rate_limits.clone());
    enclave_api::lifecycle::spawn_key_housekeeping(state.store.clone());
    enclave_api::lifecycle::spawn_jit_housekeeping(state.store.clone(), state.config.clock.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let cutoff =
                enclave_core::clock::now_ms() - enclave_api::middleware::idempotency::TTL_MS;
            match state.store.idempotency_purge(cutoff).await {
                Ok(n) if n > 0 => tracing::info!(purged = n, "expired idempotency records removed"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "idempotency purge failed"),
            }
            let cutoff = enclave_core::clock::now_ms() - DELIVERY_LOG_DAYS * 86_400_000;
            match state.store.purge_deliveries(cutoff).await {
                Ok(n) if n > 0 => tracing::info!(purged = n, "old webhook deliveries removed"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "webhook delivery purge failed"),
            }
        }
    });
}

/// How long finished webhook deliveries stay in the delivery log.
const DELIVERY_LOG_DAYS: i64 = 30;

/// Runs until SIGTERM or Ctrl-C, printing where to connect and, on first start, how to log in.
pub async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    let running = start(config.clone()).await?;
    let url = format!("http://{}", running.http_addr);
    say!("Enclave control plane listening on {url}");
    say!("  dashboard: {url}/");
    say!(
        "  storage: {}",
        enclave_store::redact_url(&config.database_url)
    );
    say!("  data directory: {}", config.data_dir.display());
    say!(
        "Enclave gateway (Postgres wire) listening on {}",
        running.gateway_addr
    );
    if let Some(b) = &running.bootstrap {
        print_bootstrap(&url, b);
    }
    shutdown_signal().await;
    tracing::info!("shutting down: draining in-flight requests");
    running.stop().await
}

fn print_bootstrap(url: &str, b: &BootstrapCredentials) {
    say!();
    say!(
        "First start: created organization {} and its owner.",
        b.org_id
    );
    say!("  e-mail:   {}", b.email);
    match &b.generated_password {
        Some(p) => say!("  password: {p}   (generated; shown only this once)"),
        None => say!("  password: the one given in ENCLAVE_BOOTSTRAP_PASSWORD"),
    }
    let password = b
        .generated_password
        .as_deref()
        .unwrap_or("$ENCLAVE_BOOTSTRAP_PASSWORD");
    say!("Log in:");
    say!(
        "  curl -s {url}/v1/auth/login -H 'content-type: application/json' -d '{{\"email\":\"{}\",\"password\":\"{password}\"}}'",
        b.email
    );
    say!();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

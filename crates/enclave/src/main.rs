//! `enclave`: one binary for both planes.

use std::io::IsTerminal;

use clap::{Parser, Subcommand};
use enclave::config::{LogFormat, ServeArgs};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "enclave",
    version,
    about = "Self-hosted isolated data environments"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (and, as it arrives, the gateway).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate(ServeArgs),
    /// Sign in as a person; later commands use the stored session (renewed on its own).
    Login(enclave::cli::signin::LoginCommand),
    /// End the stored session, here and on the server.
    Logout(enclave::cli::signin::LogoutCommand),
    /// Who the client commands act as, and which credential each kind of command uses.
    Whoami(enclave::cli::signin::WhoamiCommand),
    /// Manage environments on a running server (ENCLAVE_URL, ENCLAVE_TOKEN).
    Env(enclave::cli::env::EnvCommand),
    /// Manage an environment's API keys on a running server (ENCLAVE_URL, ENCLAVE_TOKEN).
    Keys(enclave::cli::keys::KeysCommand),
    /// Manage an environment's policies on a running server (ENCLAVE_URL, ENCLAVE_TOKEN).
    Policies(enclave::cli::policies::PoliciesCommand),
    /// Manage an environment's secrets on a running server (ENCLAVE_URL, ENCLAVE_TOKEN or
    /// ENCLAVE_API_KEY).
    Secrets(enclave::cli::secrets::SecretsCommand),
    /// Run a command with an environment's secrets as environment variables:
    /// `enclave run --env prod -- ./server`.
    Run(enclave::cli::secrets::RunCommand),
    /// Run SQL in an environment through the gateway's HTTP door:
    /// `enclave query --env dev "SELECT 1"` (ENCLAVE_URL, ENCLAVE_TOKEN or ENCLAVE_API_KEY).
    Query(enclave::cli::data::QueryCommand),
    /// Serve MCP on standard input and output for an agent host that launches a process,
    /// relaying to the server's `/mcp` (ENCLAVE_URL, ENCLAVE_API_KEY or ENCLAVE_TOKEN).
    Mcp(enclave::cli::mcp::McpCommand),
    /// An environment's tables: list, show one, import a CSV or Parquet file.
    Tables(enclave::cli::data::TablesCommand),
    /// Export the IAM audit trail, or verify an export offline (`enclave audit verify FILE`).
    Audit(enclave::cli::audit::AuditCommand),
    /// The organization's credit usage this month (or `--start-date`/`--end-date`), per
    /// environment and per day (ENCLAVE_URL, ENCLAVE_TOKEN or a key with `billing:read`).
    Usage(enclave::cli::billing::UsageCommand),
    /// The organization's quotas: `enclave quotas get`, `enclave quotas set max_users=25`
    /// (its owner).
    Quotas(enclave::cli::billing::QuotasCommand),
    /// Just-in-time access: ask for a higher role in one environment for a while, and
    /// approve, deny or end such grants: `enclave jit request --env prod --role developer
    /// --minutes 60 --reason "fix the orders"`.
    Jit(enclave::cli::jit::JitCommand),
    /// The agents seen in an environment and their capability grants: `enclave agents list`,
    /// `enclave agents grant support-bot --env prod --actions query --tables orders,customers`,
    /// `enclave agents revoke support-bot`.
    Agents(enclave::cli::agents::AgentsCommand),
    /// Replay a sample of an environment's reads in another one and compare:
    /// `enclave shadow start --env production --target staging --rate 0.1`, `enclave shadow
    /// report --env production`, `enclave shadow stop --env production`.
    Shadow(enclave::cli::shadow::ShadowCommand),
    /// Administration on the server's own storage (stop the servers or expect them to
    /// reload): `enclave admin rotate-master-key`.
    Admin(enclave::admin::AdminCommand),
}

fn init_logging(format: Option<LogFormat>) {
    let filter =
        EnvFilter::try_from_env("ENCLAVE_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let format = format.unwrap_or(if std::io::stderr().is_terminal() {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().with_current_span(false).init(),
        LogFormat::Pretty => builder.init(),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let (serve, args) = match cli.command {
        Command::Login(cmd) => return client_result(enclave::cli::signin::login(cmd).await),
        Command::Logout(cmd) => return client_result(enclave::cli::signin::logout(cmd).await),
        Command::Whoami(cmd) => return client_result(enclave::cli::signin::whoami(cmd).await),
        Command::Env(cmd) => return client_result(enclave::cli::env::run(cmd).await),
        Command::Keys(cmd) => return client_result(enclave::cli::keys::run(cmd).await),
        Command::Policies(cmd) => return client_result(enclave::cli::policies::run(cmd).await),
        Command::Audit(cmd) => return client_result(enclave::cli::audit::run(cmd).await),
        Command::Secrets(cmd) => return client_result(enclave::cli::secrets::run(cmd).await),
        Command::Run(cmd) => return client_result(enclave::cli::secrets::run_command(cmd).await),
        Command::Query(cmd) => return client_result(enclave::cli::data::query(cmd).await),
        Command::Tables(cmd) => return client_result(enclave::cli::data::tables(cmd).await),
        Command::Mcp(cmd) => return client_result(enclave::cli::mcp::run(cmd).await),
        Command::Usage(cmd) => return client_result(enclave::cli::billing::usage(cmd).await),
        Command::Quotas(cmd) => return client_result(enclave::cli::billing::quotas(cmd).await),
        Command::Jit(cmd) => return client_result(enclave::cli::jit::run(cmd).await),
        Command::Agents(cmd) => return client_result(enclave::cli::agents::run(cmd).await),
        Command::Shadow(cmd) => return client_result(enclave::cli::shadow::run(cmd).await),
        Command::Admin(cmd) => return client_result(enclave::admin::run(cmd).await),
        Command::Serve(args) => (true, args),
        Command::Migrate(args) => (false, args),
    };
    let config = match args.resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("enclave: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    log_panics();
    client_result(if serve {
        enclave::server::serve(config).await
    } else {
        let url = config.database_url.clone();
        std::fs::create_dir_all(&config.data_dir).ok();
        enclave_store::migrate(&url)
            .await
            .map(|_| println!("migrations applied to {}", enclave_store::redact_url(&url)))
    })
}

/// A panic (which ends only the task it happens in: one connection, one request) is logged
/// as one error line of the server's log, not the default multi-line report on stderr.
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(panic = %message, %location, "a task panicked");
    }));
}

/// A command's outcome: errors (the API's, for client commands) on one line, exit code 1.
fn client_result(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("enclave: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

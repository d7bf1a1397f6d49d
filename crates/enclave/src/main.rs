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
    let (Command::Serve(args) | Command::Migrate(args)) = &cli.command;
    let config = match args.clone().resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("enclave: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    let result = match cli.command {
        Command::Serve(_) => enclave::server::serve(config).await,
        Command::Migrate(_) => {
            let url = config.database_url.clone();
            std::fs::create_dir_all(&config.data_dir).ok();
            enclave_store::migrate(&url)
                .await
                .map(|_| println!("migrations applied to {}", enclave_store::redact_url(&url)))
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("enclave: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

//! `enclave admin …`: operations on the server's own storage, run where the server runs
//! (same data directory, database and master key settings as `enclave serve`).

use anyhow::Context;
use clap::{Args, Subcommand};
use enclave_api::secrets::{master, MasterKeySource};
use enclave_core::secret::crypto::MasterKey;

use crate::config::ServeArgs;

#[derive(Args, Debug)]
pub struct AdminCommand {
    #[command(subcommand)]
    pub action: AdminAction,
}

#[derive(Subcommand, Debug)]
pub enum AdminAction {
    /// Re-wrap every environment's data key under a new master key, in one transaction;
    /// secret values are not touched. With a key file, the new key replaces it (running
    /// servers on this machine pick it up); with ENCLAVE_MASTER_KEY, the new key is
    /// ENCLAVE_NEW_MASTER_KEY or one generated into a file, and every node must be restarted
    /// with it.
    RotateMasterKey(RotateArgs),
}

#[derive(Args, Debug)]
pub struct RotateArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// The new master key (32 bytes, base64 or hex); default: a new random one.
    #[arg(long, env = "ENCLAVE_NEW_MASTER_KEY", hide_env_values = true)]
    pub new_master_key: Option<String>,
}

pub async fn run(cmd: AdminCommand) -> anyhow::Result<()> {
    match cmd.action {
        AdminAction::RotateMasterKey(args) => rotate(args).await,
    }
}

async fn rotate(args: RotateArgs) -> anyhow::Result<()> {
    let config = args.serve.resolve()?;
    let new_key = args
        .new_master_key
        .as_deref()
        .map(MasterKey::parse)
        .transpose()
        .context("ENCLAVE_NEW_MASTER_KEY is not a valid master key")?;
    let given = new_key.is_some();
    let store = crate::server::open_store(&config.database_url).await?;
    let done = master::rotate(
        &config.master_key,
        &config.data_dir,
        new_key,
        store.as_ref(),
    )
    .await?;
    println!(
        "rotated the master key {} → {}: {} data key(s) re-wrapped, no value touched",
        done.from, done.to, done.data_keys
    );
    match (&config.master_key, &done.new_key_file) {
        (MasterKeySource::File(path), _) => {
            println!("the key file {} now holds the new key", path.display());
        }
        (MasterKeySource::Configured(_), Some(file)) => println!(
            "the new key is in {}: set ENCLAVE_MASTER_KEY to its content on every node, restart \
             them, then delete the file",
            file.display()
        ),
        (MasterKeySource::Configured(_), None) if given => println!(
            "set ENCLAVE_MASTER_KEY to the value of ENCLAVE_NEW_MASTER_KEY on every node and restart them"
        ),
        (MasterKeySource::Configured(_), None) => {}
    }
    Ok(())
}

//! `enclave audit …`: export an organization's IAM audit trail, and verify an export offline
//! — with no server, by recomputing every entry's hash and link.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use enclave_core::audit::{Verification, Verifier};

use super::client::{segment, Client, Connection, Scope};
use super::output;

#[derive(Args, Debug)]
pub struct AuditCommand {
    #[command(flatten)]
    pub conn: Connection,
    #[command(subcommand)]
    pub action: AuditAction,
}

#[derive(Subcommand, Debug)]
pub enum AuditAction {
    /// Download the organization's IAM audit trail as NDJSON, in chain order.
    Export {
        /// Write here instead of standard output.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Check an NDJSON export offline (no server needed): every hash and every link from the
    /// first entry. Exit code 1 names the first invalid entry. `-` reads standard input.
    Verify { file: PathBuf },
}

pub async fn run(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd.action {
        AuditAction::Verify { file } => {
            let result = verify_file(&file)?;
            report(&result, cmd.conn.json)
        }
        AuditAction::Export { out } => {
            let client = Client::connect(&cmd.conn, Scope::Organization).await?;
            let org = client.org().await?;
            let path = format!("/v1/organizations/{}/audit/iam/export", segment(&org)?);
            match out {
                Some(file) => {
                    let mut f = std::fs::File::create(&file)
                        .with_context(|| format!("cannot create {}", file.display()))?;
                    let n = client.download(&path, &mut f).await?;
                    eprintln!("wrote {n} bytes to {}", file.display());
                }
                None => {
                    let mut stdout = std::io::stdout();
                    client.download(&path, &mut stdout).await?;
                }
            }
            Ok(())
        }
    }
}

/// Verifies an export line by line, in constant memory.
pub fn verify_file(file: &PathBuf) -> anyhow::Result<Verification> {
    let reader: Box<dyn BufRead> = if file.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let f =
            std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
        Box::new(BufReader::new(f))
    };
    let mut verifier = Verifier::default();
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("cannot read line {}", n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        // A line that is not JSON at all is judged like any other bad entry.
        let entry = serde_json::from_str(&line).unwrap_or(serde_json::Value::Null);
        if !verifier.push(&entry) {
            break;
        }
    }
    Ok(verifier.finish())
}

fn report(v: &Verification, json: bool) -> anyhow::Result<()> {
    if json {
        output::json(&serde_json::to_value(v)?);
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(out, "entries checked: {}", v.entry_count).ok();
        if let Some(h) = &v.first_entry_hash {
            writeln!(out, "first entry hash: {h}").ok();
        }
        if let Some(h) = &v.last_entry_hash {
            writeln!(out, "last valid hash:  {h}").ok();
        }
        writeln!(out, "chain valid: {}", v.chain_valid).ok();
    }
    match &v.first_invalid_entry {
        None => Ok(()),
        Some(bad) => bail!(
            "entry {} ({}) is invalid: {}",
            bad.position,
            bad.entry_id.as_deref().unwrap_or("no id"),
            bad.reason
        ),
    }
}

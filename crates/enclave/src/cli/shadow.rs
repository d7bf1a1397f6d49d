//! `enclave shadow …`: replaying a sample of an environment's reads against another
//! environment, and the report of how they compared (`/v1/environments/{env_id}/shadow`).

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use super::client::{Client, Connection, Scope};
use super::env::env_flag;
use super::output;

#[derive(Args, Debug)]
pub struct ShadowCommand {
    #[command(flatten)]
    pub conn: Connection,
    /// The environment whose reads are replayed (id or slug).
    #[arg(long, global = true)]
    pub env: Option<String>,
    #[command(subcommand)]
    pub action: ShadowAction,
}

#[derive(Subcommand, Debug)]
pub enum ShadowAction {
    /// Start (or restart, counts reset) replaying a sample of the environment's reads in
    /// another environment: `enclave shadow start --env production --target staging --rate 0.1`.
    Start {
        /// The environment replayed into (id or slug).
        #[arg(long)]
        target: String,
        /// The share of reads replayed, 0–1.
        #[arg(long)]
        rate: f64,
    },
    /// Stop replaying (the report stays until the next start).
    Stop,
    /// Matches, mismatches, errors, dropped replays, latencies and the latest mismatches.
    Report,
}

fn show_report(r: &Value) {
    let mean = |v: &Value| match v.as_f64() {
        Some(ms) => format!("{ms:.1} ms"),
        None => "-".into(),
    };
    output::line(&format!(
        "{} into {} since {}: {} matches, {} mismatches, {} errors, {} dropped; mean {} here, {} there",
        if r["active"] == true { "shadowing" } else { "stopped" },
        output::cell(&r["target_env_id"]),
        output::cell(&r["since"]),
        output::cell(&r["matches"]),
        output::cell(&r["mismatches"]),
        output::cell(&r["errors"]),
        output::cell(&r["dropped"]),
        mean(&r["primary_mean_ms"]),
        mean(&r["shadow_mean_ms"]),
    ));
    let rows: Vec<Vec<String>> = r["latest"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|m| {
                    let side = |s: &Value| match s["error_code"].as_str() {
                        Some(code) => format!("error {code}"),
                        None => format!("{} rows", output::cell(&s["row_count"])),
                    };
                    vec![
                        output::cell(&m["verdict"]),
                        side(&m["primary"]),
                        side(&m["shadow"]),
                        output::cell(&m["sql_redacted"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    if !rows.is_empty() {
        output::line("");
        output::table(&["VERDICT", "HERE", "THERE", "STATEMENT"], &rows);
    }
}

pub async fn run(cmd: ShadowCommand) -> anyhow::Result<()> {
    let client = Client::connect(&cmd.conn, Scope::Environment).await?;
    let json = cmd.conn.json;
    let env_id = env_flag(&client, cmd.env.as_deref()).await?;
    let base = format!("/v1/environments/{env_id}/shadow");
    match cmd.action {
        ShadowAction::Start { target, rate } => {
            let target_env_id = env_flag(&client, Some(&target)).await?;
            let body = json!({"target_env_id": target_env_id, "sample_rate": rate});
            let started = client.call(Method::POST, &base, Some(body)).await?;
            if json {
                output::json(&started);
            } else {
                output::line(&format!(
                    "shadowing {env_id} into {target_env_id}: {}% of reads",
                    rate * 100.0
                ));
            }
        }
        ShadowAction::Stop => {
            client.call(Method::DELETE, &base, None).await?;
            if json {
                output::json(&json!({ "env_id": env_id, "stopped": true }));
            } else {
                output::line(&format!("stopped shadowing {env_id}"));
            }
        }
        ShadowAction::Report => {
            let report = client.get(&format!("{base}/report")).await?;
            if json {
                output::json(&report);
            } else {
                show_report(&report);
            }
        }
    }
    Ok(())
}

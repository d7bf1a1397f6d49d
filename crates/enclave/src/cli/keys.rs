//! `enclave keys …`: an environment's API keys over the REST API. The plaintext of a new or
//! rotated key is printed once, as the API returns it once.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use super::client::{segment, Client, Connection, Scope};
use super::env::{env_flag, show};
use super::output;

#[derive(Args, Debug)]
pub struct KeysCommand {
    #[command(flatten)]
    pub conn: Connection,
    /// The environment (id or slug).
    #[arg(long, global = true)]
    pub env: Option<String>,
    #[command(subcommand)]
    pub action: KeysAction,
}

#[derive(Subcommand, Debug)]
pub enum KeysAction {
    /// List the environment's keys (metadata only).
    List,
    /// Create a key; its plaintext is shown this once.
    Create {
        name: String,
        /// Scopes and bundles, comma-separated (e.g. `read_only,secrets:read`).
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Default service_account.
        #[arg(long)]
        role: Option<String>,
        /// CIDRs allowed to use it, comma-separated (default: anywhere).
        #[arg(long, value_delimiter = ',')]
        ip_allowlist: Option<Vec<String>>,
        #[arg(long)]
        expires_in_days: Option<i64>,
    },
    /// Replace a key; the old one keeps working for the grace period.
    Rotate {
        key_id: String,
        /// 0–720 hours, default 24.
        #[arg(long)]
        grace_period_hours: Option<i64>,
    },
    /// Revoke a key, everywhere, at once.
    Revoke { key_id: String },
}

fn key_table(keys: &[Value]) {
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            let scopes = k["scopes"]
                .as_array()
                .map(|a| a.iter().map(output::cell).collect::<Vec<_>>().join(","))
                .unwrap_or_default();
            vec![
                output::cell(&k["key_id"]),
                output::cell(&k["name"]),
                output::cell(&k["prefix"]),
                output::cell(&k["status"]),
                output::cell(&k["role"]),
                scopes,
                output::cell(&k["last_used_at"]),
                output::cell(&k["expires_at"]),
            ]
        })
        .collect();
    output::table(
        &[
            "KEY_ID",
            "NAME",
            "PREFIX",
            "STATUS",
            "ROLE",
            "SCOPES",
            "LAST_USED",
            "EXPIRES",
        ],
        &rows,
    );
}

/// A new key: the metadata, then the plaintext with a reminder that it is shown once.
fn show_new(json: bool, k: &Value) {
    if json {
        output::json(k);
    } else {
        key_table(std::slice::from_ref(k));
        output::line("");
        output::line(&format!("key (shown once): {}", output::cell(&k["key"])));
    }
}

pub async fn run(cmd: KeysCommand) -> anyhow::Result<()> {
    let client = Client::connect(&cmd.conn, Scope::Environment).await?;
    let json = cmd.conn.json;
    let env_id = env_flag(&client, cmd.env.as_deref()).await?;
    let base = format!("/v1/environments/{env_id}/api-keys");
    match cmd.action {
        KeysAction::List => {
            let (keys, _) = client.all_pages(&format!("{base}?limit=200")).await?;
            if json {
                output::json(&json!({ "data": keys }));
            } else {
                key_table(&keys);
            }
        }
        KeysAction::Create {
            name,
            scopes,
            role,
            ip_allowlist,
            expires_in_days,
        } => {
            let mut body = json!({"name": name, "scopes": scopes});
            if let Some(r) = role {
                body["role"] = json!(r);
            }
            if let Some(l) = ip_allowlist {
                body["ip_allowlist"] = json!(l);
            }
            if let Some(d) = expires_in_days {
                body["expires_in_days"] = json!(d);
            }
            show_new(json, &client.call(Method::POST, &base, Some(body)).await?);
        }
        KeysAction::Rotate {
            key_id,
            grace_period_hours,
        } => {
            let mut body = json!({});
            if let Some(h) = grace_period_hours {
                body["grace_period_hours"] = json!(h);
            }
            let path = format!("{base}/{}/rotate", segment(&key_id)?);
            show_new(json, &client.call(Method::POST, &path, Some(body)).await?);
        }
        KeysAction::Revoke { key_id } => {
            let path = format!("{base}/{}", segment(&key_id)?);
            client.call(Method::DELETE, &path, None).await?;
            let revoked = client.get(&path).await?;
            if json {
                show(true, &revoked);
            } else {
                output::line(&format!("revoked {key_id}"));
            }
        }
    }
    Ok(())
}

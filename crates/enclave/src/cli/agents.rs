//! `enclave agents …`: the agents seen in an environment and their capability grants over
//! the REST API (`/v1/environments/{env_id}/agents`).

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use super::client::{segment, Client, Connection, Scope};
use super::env::env_flag;
use super::output;

#[derive(Args, Debug)]
pub struct AgentsCommand {
    #[command(flatten)]
    pub conn: Connection,
    /// The environment (id or slug).
    #[arg(long, global = true)]
    pub env: Option<String>,
    #[command(subcommand)]
    pub action: AgentsAction,
}

#[derive(Subcommand, Debug)]
pub enum AgentsAction {
    /// The agents seen in the environment's statements, with their grants.
    List,
    /// Give an agent a capability grant (or replace its grant): it narrows what the agent's
    /// key or person may do, never widens it.
    Grant {
        agent_id: String,
        /// What it may do: `query`, `write`, `ddl`, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        actions: Vec<String>,
        /// The only tables it may touch, comma-separated (default: any).
        #[arg(long, value_delimiter = ',')]
        tables: Option<Vec<String>>,
        /// Tables it may never touch, also through views, comma-separated.
        #[arg(long, value_delimiter = ',')]
        deny_tables: Option<Vec<String>>,
        #[arg(long)]
        max_rows_per_query: Option<u64>,
        #[arg(long)]
        max_queries_per_minute: Option<u32>,
        #[arg(long)]
        max_credits_per_day: Option<f64>,
        /// RFC 3339; after it the grant no longer applies.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// Remove an agent's grant.
    Revoke { agent_id: String },
}

fn table(agents: &[Value]) {
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            let grant = &a["capabilities"];
            let actions = grant["allowed_actions"]
                .as_array()
                .map(|x| x.iter().map(output::cell).collect::<Vec<_>>().join(","))
                .unwrap_or_else(|| "-".into());
            vec![
                output::cell(&a["agent_id"]),
                output::cell(&a["framework"]),
                output::cell(&a["query_count"]),
                output::cell(&a["credits_used"]),
                output::cell(&a["last_seen_at"]),
                output::cell(&grant["grant_id"]),
                actions,
            ]
        })
        .collect();
    output::table(
        &[
            "AGENT",
            "FRAMEWORK",
            "QUERIES",
            "CREDITS",
            "LAST_SEEN",
            "GRANT",
            "ACTIONS",
        ],
        &rows,
    );
}

pub async fn run(cmd: AgentsCommand) -> anyhow::Result<()> {
    let client = Client::connect(&cmd.conn, Scope::Environment).await?;
    let json = cmd.conn.json;
    let env_id = env_flag(&client, cmd.env.as_deref()).await?;
    let base = format!("/v1/environments/{env_id}/agents");
    match cmd.action {
        AgentsAction::List => {
            let (agents, _) = client.all_pages(&format!("{base}?limit=200")).await?;
            if json {
                output::json(&json!({ "data": agents }));
            } else {
                table(&agents);
            }
        }
        AgentsAction::Grant {
            agent_id,
            actions,
            tables,
            deny_tables,
            max_rows_per_query,
            max_queries_per_minute,
            max_credits_per_day,
            expires_at,
        } => {
            let mut body = json!({ "allowed_actions": actions });
            let optional = [
                ("allowed_tables", tables.map(|t| json!(t))),
                ("denied_tables", deny_tables.map(|t| json!(t))),
                ("max_rows_per_query", max_rows_per_query.map(|n| json!(n))),
                (
                    "max_queries_per_minute",
                    max_queries_per_minute.map(|n| json!(n)),
                ),
                ("max_credits_per_day", max_credits_per_day.map(|n| json!(n))),
                ("expires_at", expires_at.map(|t| json!(t))),
            ];
            for (field, value) in optional {
                if let Some(v) = value {
                    body[field] = v;
                }
            }
            let path = format!("{base}/{}/capabilities", segment(&agent_id)?);
            let grant = client.call(Method::POST, &path, Some(body)).await?;
            if json {
                output::json(&grant);
            } else {
                let list = |v: &Value| match v.as_array() {
                    Some(items) if !items.is_empty() => {
                        items.iter().map(output::cell).collect::<Vec<_>>().join(",")
                    }
                    _ => "-".to_string(),
                };
                output::line(&format!(
                    "{} version {} for {}: actions {}; tables {}; denied {}",
                    output::cell(&grant["grant_id"]),
                    output::cell(&grant["version"]),
                    output::cell(&grant["agent_id"]),
                    list(&grant["allowed_actions"]),
                    list(&grant["allowed_tables"]),
                    list(&grant["denied_tables"]),
                ));
            }
        }
        AgentsAction::Revoke { agent_id } => {
            let path = format!("{base}/{}/capabilities", segment(&agent_id)?);
            client.call(Method::DELETE, &path, None).await?;
            if json {
                output::json(&json!({ "agent_id": agent_id, "revoked": true }));
            } else {
                output::line(&format!("revoked the grant of {agent_id}"));
            }
        }
    }
    Ok(())
}

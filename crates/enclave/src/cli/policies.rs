//! `enclave policies …`: an environment's policies over the REST API. A policy is named by
//! its id or its name; standard and ABAC policies are listed together and each command
//! finds the right path (`/policies` or `/abac-policies`) itself.

use std::io::Read;

use anyhow::Context;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use super::client::{segment, Client, Connection, Scope};
use super::env::{env_flag, show};
use super::output;

#[derive(Args, Debug)]
pub struct PoliciesCommand {
    #[command(flatten)]
    pub conn: Connection,
    /// The environment (id or slug).
    #[arg(long, global = true)]
    pub env: Option<String>,
    #[command(subcommand)]
    pub action: PoliciesAction,
}

#[derive(Subcommand, Debug)]
pub enum PoliciesAction {
    /// List the environment's policies (standard and ABAC).
    List,
    /// Show one policy.
    Get {
        policy: String,
    },
    /// Create a policy from a JSON file (`-`: standard input). A body with `effect` is an
    /// ABAC policy; otherwise its `type` is column_masking or row_level_security.
    Create {
        #[arg(long)]
        file: String,
    },
    /// Change a policy: the fields of a JSON file (`-`: standard input).
    Update {
        policy: String,
        #[arg(long)]
        file: String,
    },
    Enable {
        policy: String,
    },
    Disable {
        policy: String,
    },
    Delete {
        policy: String,
    },
    /// Every saved version, newest first.
    Versions {
        policy: String,
    },
    /// Save an earlier version's content as the newest version.
    Restore {
        policy: String,
        version: i64,
    },
    /// What the gateway would do for a principal, an action and tables.
    Evaluate {
        /// query, write, ddl, delete, export.
        #[arg(long, default_value = "query")]
        action: String,
        /// Tables the statement touches, comma-separated.
        #[arg(long, value_delimiter = ',')]
        tables: Vec<String>,
        /// Evaluate as this role (default: yourself).
        #[arg(long)]
        role: Option<String>,
        /// Attributes of that principal: `name=value`, repeatable.
        #[arg(long = "attr", requires = "role")]
        attributes: Vec<String>,
        /// The client address, for `request.ip` conditions.
        #[arg(long)]
        ip: Option<String>,
    },
}

fn read_body(file: &str) -> anyhow::Result<Value> {
    let text = if file == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))?
    };
    serde_json::from_str(&text).with_context(|| format!("{file} is not JSON"))
}

fn kind_path(policy: &Value) -> &'static str {
    if policy["type"] == "abac" {
        "abac-policies"
    } else {
        "policies"
    }
}

async fn all(client: &Client, env_id: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for kind in ["policies", "abac-policies"] {
        let path = format!("/v1/environments/{env_id}/{kind}?limit=200");
        out.extend(client.all_pages(&path).await?.0);
    }
    Ok(out)
}

/// The path of the policy named `policy` (id or name).
async fn find(client: &Client, env_id: &str, policy: &str) -> anyhow::Result<String> {
    let found = all(client, env_id)
        .await?
        .into_iter()
        .find(|p| p["policy_id"] == policy || p["name"] == policy)
        .ok_or_else(|| anyhow::anyhow!("no policy `{policy}` in this environment"))?;
    let id = found["policy_id"].as_str().unwrap_or_default();
    Ok(format!(
        "/v1/environments/{env_id}/{}/{}",
        kind_path(&found),
        segment(id)?
    ))
}

fn policy_table(policies: &[Value]) {
    let rows: Vec<Vec<String>> = policies
        .iter()
        .map(|p| {
            let detail = match p["rules"].as_array() {
                Some(rules) => format!("{} rule(s)", rules.len()),
                None => format!(
                    "{} {} on {}",
                    output::cell(&p["effect"]),
                    p["actions"]
                        .as_array()
                        .map(|a| a.iter().map(output::cell).collect::<Vec<_>>().join(","))
                        .unwrap_or_default(),
                    p["resources"]
                        .as_array()
                        .map(|a| a.iter().map(output::cell).collect::<Vec<_>>().join(","))
                        .unwrap_or_default()
                ),
            };
            vec![
                output::cell(&p["policy_id"]),
                output::cell(&p["name"]),
                output::cell(&p["type"]),
                output::cell(&p["mode"]),
                output::cell(&p["enabled"]),
                output::cell(&p["version"]),
                detail,
            ]
        })
        .collect();
    output::table(
        &[
            "POLICY_ID",
            "NAME",
            "TYPE",
            "MODE",
            "ENABLED",
            "VERSION",
            "WHAT",
        ],
        &rows,
    );
}

pub async fn run(cmd: PoliciesCommand) -> anyhow::Result<()> {
    let client = Client::connect(&cmd.conn, Scope::Environment).await?;
    let json = cmd.conn.json;
    let env_id = env_flag(&client, cmd.env.as_deref()).await?;
    match cmd.action {
        PoliciesAction::List => {
            let policies = all(&client, &env_id).await?;
            if json {
                output::json(&json!({ "data": policies }));
            } else {
                policy_table(&policies);
            }
        }
        PoliciesAction::Get { policy } => {
            let path = find(&client, &env_id, &policy).await?;
            show(json, &client.get(&path).await?);
        }
        PoliciesAction::Create { file } => {
            let body = read_body(&file)?;
            let kind = if body.get("effect").is_some() {
                "abac-policies"
            } else {
                "policies"
            };
            let path = format!("/v1/environments/{env_id}/{kind}");
            show(json, &client.call(Method::POST, &path, Some(body)).await?);
        }
        PoliciesAction::Update { policy, file } => {
            let body = read_body(&file)?;
            let path = find(&client, &env_id, &policy).await?;
            show(json, &client.call(Method::PATCH, &path, Some(body)).await?);
        }
        PoliciesAction::Enable { policy } => {
            set_enabled(&client, json, &env_id, &policy, true).await?
        }
        PoliciesAction::Disable { policy } => {
            set_enabled(&client, json, &env_id, &policy, false).await?
        }
        PoliciesAction::Delete { policy } => {
            let path = find(&client, &env_id, &policy).await?;
            client.call(Method::DELETE, &path, None).await?;
            output::line(&format!("deleted {policy}"));
        }
        PoliciesAction::Versions { policy } => {
            let path = find(&client, &env_id, &policy).await?;
            let page = client.get(&format!("{path}/versions?limit=200")).await?;
            if json {
                output::json(&page);
            } else {
                let rows: Vec<Vec<String>> = page["data"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|v| {
                        vec![
                            output::cell(&v["version"]),
                            output::cell(&v["created_at"]),
                            output::cell(&v["created_by"]),
                            output::cell(&v["mode"]),
                            output::cell(&v["enabled"]),
                        ]
                    })
                    .collect();
                output::table(&["VERSION", "SAVED", "BY", "MODE", "ENABLED"], &rows);
            }
        }
        PoliciesAction::Restore { policy, version } => {
            let path = find(&client, &env_id, &policy).await?;
            let restore = format!("{path}/versions/{version}/restore");
            show(json, &client.call(Method::POST, &restore, None).await?);
        }
        PoliciesAction::Evaluate {
            action,
            tables,
            role,
            attributes,
            ip,
        } => {
            let mut body = json!({"action": action, "resource": {"tables": tables}});
            if let Some(role) = role {
                let mut attrs = serde_json::Map::new();
                for a in attributes {
                    let (k, v) = a
                        .split_once('=')
                        .ok_or_else(|| anyhow::anyhow!("--attr takes name=value, not `{a}`"))?;
                    attrs.insert(k.to_string(), json!(v));
                }
                body["principal"] = json!({"role": role, "attributes": attrs});
            }
            if let Some(ip) = ip {
                body["context"] = json!({ "ip": ip });
            }
            let path = format!("/v1/environments/{env_id}/policies/evaluate");
            let e = client.call(Method::POST, &path, Some(body)).await?;
            if json {
                output::json(&e);
            } else {
                print_evaluation(&e);
            }
        }
    }
    Ok(())
}

fn print_evaluation(e: &Value) {
    output::line(&format!(
        "decision: {} ({})",
        output::cell(&e["decision"]),
        output::cell(&e["message"])
    ));
    let masks: Vec<Vec<String>> = e["masks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            vec![
                format!(
                    "{}.{}",
                    output::cell(&m["table"]),
                    output::cell(&m["column"])
                ),
                output::cell(&m["function"]),
                output::cell(&m["visible_chars"]),
                output::cell(&m["policy_name"]),
            ]
        })
        .collect();
    if !masks.is_empty() {
        output::line("");
        output::table(&["COLUMN", "MASK", "VISIBLE", "POLICY"], &masks);
    }
    let filters: Vec<Vec<String>> = e["row_filters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            vec![
                output::cell(&f["table"]),
                output::cell(&f["predicate"]),
                f["parameters"]
                    .as_array()
                    .map(|p| p.iter().map(output::cell).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    if !filters.is_empty() {
        output::line("");
        output::table(&["TABLE", "ROW FILTER", "PARAMETERS"], &filters);
    }
}

async fn set_enabled(
    client: &Client,
    json: bool,
    env_id: &str,
    policy: &str,
    enabled: bool,
) -> anyhow::Result<()> {
    let path = find(client, env_id, policy).await?;
    let body = json!({ "enabled": enabled });
    show(json, &client.call(Method::PATCH, &path, Some(body)).await?);
    Ok(())
}

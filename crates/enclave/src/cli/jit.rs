//! `enclave jit …`: just-in-time access requests of an environment over the REST API
//! (`/v1/environments/{env_id}/jit-access`) — ask for a higher role for a while, list the
//! requests, approve, deny or end a grant.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use super::client::{segment, Client, Connection, Scope};
use super::env::env_flag;
use super::output;

#[derive(Args, Debug)]
pub struct JitCommand {
    #[command(flatten)]
    pub conn: Connection,
    /// The environment (id or slug).
    #[arg(long, global = true)]
    pub env: Option<String>,
    #[command(subcommand)]
    pub action: JitAction,
}

#[derive(Subcommand, Debug)]
pub enum JitAction {
    /// Ask for a role above your own in the environment for a while (an owner or admin
    /// approves): `enclave jit request --env prod --role developer --minutes 60 --reason "…"`.
    Request {
        /// `admin`, `developer`, `analyst` or `auditor`, above your own role.
        #[arg(long)]
        role: String,
        /// 15–1440: how long the grant lasts once approved.
        #[arg(long)]
        minutes: i64,
        /// Why you need it (the deciders read it).
        #[arg(long)]
        reason: String,
    },
    /// The environment's requests (everyone's for owners, admins and auditors; your own
    /// otherwise).
    List {
        /// `pending`, `approved`, `denied`, `expired` or `revoked`.
        #[arg(long)]
        status: Option<String>,
    },
    /// Approve a request (owners and admins; never your own): the grant starts now.
    Approve {
        request_id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Deny a request (owners and admins; never your own).
    Deny {
        request_id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// End a live grant early (owners, admins, or its requester).
    Revoke { request_id: String },
}

fn table(requests: &[Value]) {
    let rows: Vec<Vec<String>> = requests
        .iter()
        .map(|r| {
            [
                "request_id",
                "status",
                "requester_id",
                "current_role",
                "requested_role",
                "duration_minutes",
                "expires_at",
                "reason",
            ]
            .iter()
            .map(|k| output::cell(&r[*k]))
            .collect()
        })
        .collect();
    output::table(
        &[
            "REQUEST_ID",
            "STATUS",
            "REQUESTER",
            "ROLE",
            "REQUESTED",
            "MINUTES",
            "EXPIRES",
            "REASON",
        ],
        &rows,
    );
}

fn show(json: bool, request: &Value) {
    if json {
        output::json(request);
    } else {
        table(std::slice::from_ref(request));
    }
}

fn decision(comment: Option<String>) -> Value {
    match comment {
        Some(c) => json!({ "comment": c }),
        None => json!({}),
    }
}

pub async fn run(cmd: JitCommand) -> anyhow::Result<()> {
    let client = Client::connect(&cmd.conn, Scope::Environment).await?;
    let json = cmd.conn.json;
    let env_id = env_flag(&client, cmd.env.as_deref()).await?;
    let base = format!("/v1/environments/{env_id}/jit-access");
    let verb = |id: &str, verb: &str| -> anyhow::Result<String> {
        Ok(format!("{base}/{}/{verb}", segment(id)?))
    };
    match cmd.action {
        JitAction::Request {
            role,
            minutes,
            reason,
        } => {
            let body =
                json!({"requested_role": role, "duration_minutes": minutes, "reason": reason});
            show(json, &client.call(Method::POST, &base, Some(body)).await?);
        }
        JitAction::List { status } => {
            let filter = match status {
                Some(s) => format!("&status={}", segment(&s)?),
                None => String::new(),
            };
            let (requests, _) = client
                .all_pages(&format!("{base}?limit=200{filter}"))
                .await?;
            if json {
                output::json(&json!({ "data": requests }));
            } else {
                table(&requests);
            }
        }
        JitAction::Approve {
            request_id,
            comment,
        } => {
            let path = verb(&request_id, "approve")?;
            show(
                json,
                &client
                    .call(Method::POST, &path, Some(decision(comment)))
                    .await?,
            );
        }
        JitAction::Deny {
            request_id,
            comment,
        } => {
            let path = verb(&request_id, "deny")?;
            show(
                json,
                &client
                    .call(Method::POST, &path, Some(decision(comment)))
                    .await?,
            );
        }
        JitAction::Revoke { request_id } => {
            let path = verb(&request_id, "revoke")?;
            show(
                json,
                &client.call(Method::POST, &path, Some(json!({}))).await?,
            );
        }
    }
    Ok(())
}

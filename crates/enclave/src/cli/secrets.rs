//! `enclave secrets …` and `enclave run`: an environment's secrets over the REST API.
//!
//! Values given on the command line end up in shell history and `ps`; `set KEY` (no `=`)
//! reads the value from standard input instead.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::client::{Client, Connection, Scope};
use super::env::{env_flag, show};
use super::output;

#[derive(Args, Debug)]
pub struct SecretsCommand {
    #[command(flatten)]
    pub conn: Connection,
    /// The environment (id or slug; with an API key, its own).
    #[arg(long, global = true)]
    pub env: Option<String>,
    #[command(subcommand)]
    pub action: SecretsAction,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Dotenv,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum SecretsAction {
    /// List the keys (values too with --reveal).
    List {
        #[arg(long)]
        reveal: bool,
    },
    /// Print one value (the whole secret with --json).
    Get {
        key: String,
    },
    /// Create or update secrets: `KEY=value` …, or a bare `KEY` whose value is read from
    /// standard input. Several keys are written all or nothing.
    Set {
        #[arg(required = true)]
        assignments: Vec<String>,
        /// A comment (with one key only).
        #[arg(long)]
        comment: Option<String>,
        /// Tags, repeatable (with one key only).
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    Delete {
        key: String,
    },
    /// Import a `.env` or JSON file (`-`: standard input; JSON when it starts with `{`).
    Import {
        file: String,
        /// Replace the values of keys that exist (default: keep them).
        #[arg(long)]
        overwrite: bool,
        /// Show what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print every secret as `.env` lines or a JSON object.
    Export {
        #[arg(long, value_enum, default_value = "dotenv")]
        format: Format,
    },
    /// Every saved version of a key, newest first (with values).
    Versions {
        key: String,
    },
    /// Save an earlier version as the newest one.
    Restore {
        key: String,
        version: i64,
    },
}

/// A secret key as a path segment: its own characters only (`[A-Za-z0-9_.-]`).
fn key_segment(key: &str) -> anyhow::Result<&str> {
    let ok = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(key)
    } else {
        bail!("`{key}` is not a secret key (letters, digits, `_`, `.`, `-`)")
    }
}

fn read_stdin() -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("cannot read standard input")?;
    Ok(s)
}

/// `KEY=value` pairs; a bare `KEY` takes standard input (one trailing newline dropped).
fn assignments(items: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let bare = items.iter().filter(|a| !a.contains('=')).count();
    if bare > 1 {
        bail!("only one KEY may take its value from standard input");
    }
    items
        .iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => {
                let mut v = read_stdin()?;
                if v.ends_with('\n') {
                    v.pop();
                    if v.ends_with('\r') {
                        v.pop();
                    }
                }
                Ok((a.clone(), v))
            }
        })
        .collect()
}

fn secrets_table(rows: &[Value], reveal: bool) {
    let mut headers = vec!["KEY", "VERSION", "UPDATED_AT", "TAGS", "COMMENT"];
    if reveal {
        headers.insert(1, "VALUE");
    }
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|s| {
            let tags = s["tags"]
                .as_array()
                .map(|t| t.iter().map(output::cell).collect::<Vec<_>>().join(","))
                .unwrap_or_default();
            let mut row = vec![
                output::cell(&s["key"]),
                output::cell(&s["version"]),
                output::cell(&s["updated_at"]),
                tags,
                output::cell(&s["comment"]).replace('\n', " "),
            ];
            if reveal {
                row.insert(1, output::cell(&s["value"]).replace('\n', "\\n"));
            }
            row
        })
        .collect();
    output::table(&headers, &rows);
}

pub async fn run(cmd: SecretsCommand) -> anyhow::Result<()> {
    let client = Client::connect(&cmd.conn, Scope::Environment).await?;
    let json = cmd.conn.json;
    let env_id = env_flag(&client, cmd.env.as_deref()).await?;
    let base = format!("/v1/environments/{env_id}/secrets");
    match cmd.action {
        SecretsAction::List { reveal } => {
            let (rows, _) = client
                .all_pages(&format!("{base}?limit=200&reveal={reveal}"))
                .await?;
            if json {
                output::json(&json!({ "data": rows }));
            } else {
                secrets_table(&rows, reveal);
            }
        }
        SecretsAction::Get { key } => {
            let secret = client
                .get(&format!("{base}/{}", key_segment(&key)?))
                .await?;
            if json {
                output::json(&secret);
            } else {
                output::line(secret["value"].as_str().unwrap_or_default());
            }
        }
        SecretsAction::Set {
            assignments: items,
            comment,
            tags,
        } => {
            let pairs = assignments(&items)?;
            for (k, _) in &pairs {
                key_segment(k)?;
            }
            if pairs.len() > 1 {
                if comment.is_some() || !tags.is_empty() {
                    bail!("--comment and --tag go with one key at a time");
                }
                let object: Map<String, Value> = pairs
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect();
                let body = serde_json::to_vec(&object)?;
                let outcome = client
                    .call_raw(
                        Method::POST,
                        &format!("{base}/import?overwrite=true"),
                        "application/json",
                        body,
                    )
                    .await?;
                print_outcome(json, &outcome);
                return Ok(());
            }
            let (key, value) = pairs.into_iter().next().context("nothing to set")?;
            let mut body = json!({ "value": value });
            if let Some(c) = comment {
                body["comment"] = json!(c);
            }
            if !tags.is_empty() {
                body["tags"] = json!(tags);
            }
            let path = format!("{base}/{key}");
            let saved = match client.call(Method::PATCH, &path, Some(body.clone())).await {
                Ok(v) => v,
                Err(e) if e.to_string().starts_with("404 ") => {
                    body["key"] = json!(key);
                    client.call(Method::POST, &base, Some(body)).await?
                }
                Err(e) => return Err(e),
            };
            show(json, &saved);
        }
        SecretsAction::Delete { key } => {
            client
                .call(
                    Method::DELETE,
                    &format!("{base}/{}", key_segment(&key)?),
                    None,
                )
                .await?;
            if !json {
                output::line(&format!("deleted {key}"));
            }
        }
        SecretsAction::Import {
            file,
            overwrite,
            dry_run,
        } => {
            let text = if file == "-" {
                read_stdin()?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {file}"))?
            };
            let content_type = if text.trim_start().starts_with('{') {
                "application/json"
            } else {
                "text/plain"
            };
            let path = format!("{base}/import?overwrite={overwrite}&dry_run={dry_run}");
            let outcome = client
                .call_raw(Method::POST, &path, content_type, text.into_bytes())
                .await?;
            print_outcome(json, &outcome);
        }
        SecretsAction::Export { format } => {
            let format = match format {
                Format::Dotenv => "dotenv",
                Format::Json => "json",
            };
            let mut out = std::io::stdout();
            client
                .download(&format!("{base}/export?format={format}"), &mut out)
                .await?;
        }
        SecretsAction::Versions { key } => {
            let (rows, _) = client
                .all_pages(&format!("{base}/{}/versions?limit=200", key_segment(&key)?))
                .await?;
            if json {
                output::json(&json!({ "data": rows }));
            } else {
                let rows: Vec<Vec<String>> = rows
                    .iter()
                    .map(|v| {
                        ["version", "current", "created_at", "created_by", "value"]
                            .iter()
                            .map(|k| output::cell(&v[*k]).replace('\n', "\\n"))
                            .collect()
                    })
                    .collect();
                output::table(
                    &["VERSION", "CURRENT", "CREATED_AT", "CREATED_BY", "VALUE"],
                    &rows,
                );
            }
        }
        SecretsAction::Restore { key, version } => {
            let path = format!("{base}/{}/versions/{version}/restore", key_segment(&key)?);
            show(json, &client.call(Method::POST, &path, None).await?);
        }
    }
    Ok(())
}

fn print_outcome(json: bool, outcome: &Value) {
    if json {
        output::json(outcome);
        return;
    }
    let verb = if outcome["dry_run"] == true {
        "would be "
    } else {
        ""
    };
    for what in ["created", "updated", "unchanged", "skipped"] {
        let keys: Vec<String> = outcome[what]
            .as_array()
            .map(|a| a.iter().map(output::cell).collect())
            .unwrap_or_default();
        if !keys.is_empty() {
            let state = if matches!(what, "unchanged" | "skipped") {
                what.to_string()
            } else {
                format!("{verb}{what}")
            };
            output::line(&format!("{state} ({}): {}", keys.len(), keys.join(", ")));
        }
    }
    if outcome["skipped"].as_array().is_some_and(|a| !a.is_empty()) {
        output::line("skipped keys exist with another value; --overwrite replaces them");
    }
}

/// `enclave run --env ENV -- COMMAND…`.
#[derive(Args, Debug)]
pub struct RunCommand {
    #[command(flatten)]
    pub conn: Connection,
    /// The environment (id or slug; with an API key, its own).
    #[arg(long)]
    pub env: Option<String>,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Runs the command with the environment's secrets as environment variables (over the
/// inherited ones). Enclave's own credentials are not passed on. On Unix the command
/// replaces this process, so its exit status and signals are its own.
pub async fn run_command(cmd: RunCommand) -> anyhow::Result<()> {
    let client = Client::connect(&cmd.conn, Scope::Environment).await?;
    let env_id = env_flag(&client, cmd.env.as_deref()).await?;
    let values: BTreeMap<String, String> = serde_json::from_value(
        client
            .get(&format!(
                "/v1/environments/{env_id}/secrets/export?format=json"
            ))
            .await?,
    )
    .context("the server's export is not a JSON object of strings")?;
    let (program, args) = cmd.command.split_first().context("no command given")?;
    let mut child = std::process::Command::new(program);
    child
        .args(args)
        .env_remove("ENCLAVE_TOKEN")
        .env_remove("ENCLAVE_API_KEY")
        .envs(&values);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let err = child.exec();
        bail!("cannot run {program}: {err}");
    }
    #[cfg(not(unix))]
    {
        let status = child
            .status()
            .with_context(|| format!("cannot run {program}"))?;
        std::process::exit(status.code().unwrap_or(1));
    }
}

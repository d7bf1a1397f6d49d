//! `enclave env …`: environments over the REST API. An environment is named by its id or
//! by its slug in the organization (`--org`, default the token's).

use anyhow::Context;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::client::{segment, Client, Connection, Scope};
use super::output;

#[derive(Args, Debug)]
pub struct EnvCommand {
    #[command(flatten)]
    pub conn: Connection,
    #[command(subcommand)]
    pub action: EnvAction,
}

#[derive(Subcommand, Debug)]
pub enum EnvAction {
    /// List the organization's environments in display order.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long = "type")]
        env_type: Option<String>,
        /// Children of this environment (id or slug).
        #[arg(long)]
        parent: Option<String>,
        /// Name or slug contains.
        #[arg(long)]
        query: Option<String>,
    },
    /// Create an environment.
    Create {
        name: String,
        #[command(flatten)]
        fields: Fields,
    },
    /// Show one environment.
    Get {
        env: String,
    },
    /// Change an environment (only the fields given).
    Update {
        env: String,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        fields: Fields,
        /// Detach from its parent.
        #[arg(long, conflicts_with = "parent")]
        no_parent: bool,
        /// Refuse every other write until unlocked.
        #[arg(long, conflicts_with = "unlock")]
        lock: bool,
        #[arg(long)]
        unlock: bool,
        /// Move to this display position.
        #[arg(long)]
        index: Option<i64>,
    },
    /// Delete an environment and everything in it.
    Delete {
        env: String,
        /// Show what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Set the complete display order.
    Reorder {
        /// Every environment of the organization, in the new order.
        #[arg(required = true)]
        envs: Vec<String>,
    },
    /// Create a new environment from an existing one.
    Clone {
        env: String,
        name: String,
        #[arg(long)]
        slug: Option<String>,
        /// What to copy: settings, policies, secrets, capabilities (the default), and data
        /// (tables with their rows, and views: only when named). API keys never.
        #[arg(long, value_delimiter = ',')]
        include: Option<Vec<String>>,
    },
    /// Copy configuration (policies, settings) from one environment into another, matched
    /// by name. Never data, never API keys.
    Promote {
        /// The source.
        env: String,
        /// The target.
        target: String,
        /// What to carry: policies, masking_rules, rls_filters, abac_policies, secrets,
        /// settings (default all).
        #[arg(long, value_delimiter = ',')]
        include: Option<Vec<String>>,
        /// Show what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Promotions from or into an environment, newest first.
    Promotions {
        env: String,
    },
    /// What differs between two environments.
    Diff {
        env: String,
        against: String,
    },
    /// Move an environment's data from the embedded engine to the managed PostgreSQL engine
    /// (every table, row counts checked), then switch the environment to it. Run it against
    /// the environment's home node.
    MoveData {
        env: String,
        /// Where the data goes: `postgres` (the managed engine).
        #[arg(long, default_value = "postgres")]
        engine: String,
        /// Show what would move; move nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Refuse queries and API keys, keep everything.
    Suspend {
        env: String,
    },
    Resume {
        env: String,
    },
}

/// Fields shared by create and update.
#[derive(Args, Debug, Default)]
pub struct Fields {
    #[arg(long)]
    slug: Option<String>,
    /// dev, staging, prod, custom.
    #[arg(long = "type")]
    env_type: Option<String>,
    /// `#RRGGBB`.
    #[arg(long)]
    color: Option<String>,
    /// Parent environment (id or slug).
    #[arg(long)]
    parent: Option<String>,
    #[arg(long)]
    description: Option<String>,
    #[arg(long)]
    query_timeout_ms: Option<i64>,
    #[arg(long)]
    max_concurrent_queries: Option<i64>,
    #[arg(long)]
    cache_enabled: Option<bool>,
    /// Where the data lives: `duckdb` (embedded) or `postgres`.
    #[arg(long)]
    engine: Option<String>,
    /// With `--engine postgres`: the key of the secret holding the connection string.
    #[arg(long)]
    engine_secret: Option<String>,
}

impl Fields {
    async fn into_body(self, client: &Client, org: &str) -> anyhow::Result<Map<String, Value>> {
        let mut body = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                body.insert(k.to_string(), v);
            }
        };
        put("slug", self.slug.map(Value::from));
        put("type", self.env_type.map(Value::from));
        put("color", self.color.map(Value::from));
        put("description", self.description.map(Value::from));
        let mut settings = Map::new();
        if let Some(v) = self.query_timeout_ms {
            settings.insert("query_timeout_ms".into(), json!(v));
        }
        if let Some(v) = self.max_concurrent_queries {
            settings.insert("max_concurrent_queries".into(), json!(v));
        }
        if let Some(v) = self.cache_enabled {
            settings.insert("cache_enabled".into(), json!(v));
        }
        if let Some(v) = self.engine {
            settings.insert("engine".into(), json!(v));
        }
        if let Some(v) = self.engine_secret {
            settings.insert("engine_secret".into(), json!(v));
        }
        if !settings.is_empty() {
            body.insert("settings".into(), Value::Object(settings));
        }
        if let Some(p) = self.parent {
            body.insert(
                "parent_env_id".into(),
                json!(resolve(client, org, &p).await?),
            );
        }
        Ok(body)
    }
}

/// An environment id, from an id or a slug of `org`.
pub(crate) async fn resolve(client: &Client, org: &str, env: &str) -> anyhow::Result<String> {
    if env.starts_with("env_") {
        return Ok(segment(env)?.to_string());
    }
    let e = client
        .get(&format!(
            "/v1/organizations/{}/environments/{}",
            segment(org)?,
            segment(env)?
        ))
        .await
        .with_context(|| format!("environment `{env}`"))?;
    e["env_id"]
        .as_str()
        .map(str::to_string)
        .context("the server answered without an env_id")
}

/// Every environment of `org` in display order (following the pages), and the order version.
async fn all(client: &Client, org: &str, query: &str) -> anyhow::Result<(Vec<Value>, Value)> {
    let path = format!(
        "/v1/organizations/{}/environments?limit=200{query}",
        segment(org)?
    );
    let (rows, last) = client.all_pages(&path).await?;
    Ok((rows, last["order_version"].clone()))
}

/// The environment of a `--env` flag (id or slug), required; a slug is resolved in the
/// token's organization.
pub(crate) async fn env_flag(client: &Client, env: Option<&str>) -> anyhow::Result<String> {
    if client.is_api_key() {
        // A key acts in its own environment: that is the default, and the only choice.
        let me = client.get("/v1/auth/me").await?;
        let own = me["key"]["env_id"]
            .as_str()
            .context("the server did not say which environment this API key belongs to")?
            .to_string();
        return match env {
            Some(e) if e.starts_with("env_") && e != own => {
                anyhow::bail!("this API key belongs to environment {own}, not {e}")
            }
            _ => Ok(own),
        };
    }
    let env =
        env.ok_or_else(|| anyhow::anyhow!("--env is required (an environment id or slug)"))?;
    if env.starts_with("env_") {
        return Ok(segment(env)?.to_string());
    }
    resolve(client, &client.org().await?, env).await
}

fn env_table(envs: &[Value]) {
    let rows: Vec<Vec<String>> = envs
        .iter()
        .map(|e| {
            [
                "index", "slug", "name", "type", "status", "locked", "env_id",
            ]
            .iter()
            .map(|k| output::cell(&e[*k]))
            .collect()
        })
        .collect();
    output::table(
        &[
            "INDEX", "SLUG", "NAME", "TYPE", "STATUS", "LOCKED", "ENV_ID",
        ],
        &rows,
    );
}

pub(crate) fn show(json: bool, v: &Value) {
    if json {
        output::json(v)
    } else {
        output::record(v)
    }
}

fn query_param(name: &str, value: &str) -> String {
    let encoded: String = value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("&{name}={encoded}")
}

pub async fn run(cmd: EnvCommand) -> anyhow::Result<()> {
    let client = Client::connect(&cmd.conn, Scope::Organization).await?;
    let json = cmd.conn.json;
    let org = client.org().await?;
    match cmd.action {
        EnvAction::List {
            status,
            env_type,
            parent,
            query,
        } => {
            let mut q = String::new();
            if let Some(s) = status {
                q += &query_param("status", &s);
            }
            if let Some(t) = env_type {
                q += &query_param("type", &t);
            }
            if let Some(p) = parent {
                q += &query_param("parent_env_id", &resolve(&client, &org, &p).await?);
            }
            if let Some(text) = query {
                q += &query_param("q", &text);
            }
            let (envs, order_version) = all(&client, &org, &q).await?;
            if json {
                output::json(&json!({"data": envs, "order_version": order_version}));
            } else {
                env_table(&envs);
            }
        }
        EnvAction::Create { name, fields } => {
            let mut body = fields.into_body(&client, &org).await?;
            body.insert("name".into(), json!(name));
            let path = format!("/v1/organizations/{}/environments", segment(&org)?);
            let e = client
                .call(Method::POST, &path, Some(Value::Object(body)))
                .await?;
            show(json, &e);
        }
        EnvAction::Get { env } => {
            let id = resolve(&client, &org, &env).await?;
            show(json, &client.get(&format!("/v1/environments/{id}")).await?);
        }
        EnvAction::Update {
            env,
            name,
            fields,
            no_parent,
            lock,
            unlock,
            index,
        } => {
            let id = resolve(&client, &org, &env).await?;
            let mut body = fields.into_body(&client, &org).await?;
            if let Some(n) = name {
                body.insert("name".into(), json!(n));
            }
            if no_parent {
                body.insert("parent_env_id".into(), Value::Null);
            }
            if lock || unlock {
                body.insert("locked".into(), json!(lock));
            }
            if let Some(i) = index {
                body.insert("index".into(), json!(i));
            }
            anyhow::ensure!(
                !body.is_empty(),
                "nothing to change: give at least one field"
            );
            let e = client
                .call(
                    Method::PATCH,
                    &format!("/v1/environments/{id}"),
                    Some(Value::Object(body)),
                )
                .await?;
            show(json, &e);
        }
        EnvAction::Delete { env, dry_run } => {
            let id = resolve(&client, &org, &env).await?;
            if dry_run {
                let preview = client
                    .call(
                        Method::DELETE,
                        &format!("/v1/environments/{id}?dry_run=true"),
                        None,
                    )
                    .await?;
                show(json, &preview);
            } else {
                client
                    .call(Method::DELETE, &format!("/v1/environments/{id}"), None)
                    .await?;
                if json {
                    output::json(&json!({"deleted": id}));
                } else {
                    output::line(&format!("deleted {id}"));
                }
            }
        }
        EnvAction::Reorder { envs } => {
            let (_, order_version) = all(&client, &org, "").await?;
            let mut order = Vec::with_capacity(envs.len());
            for e in &envs {
                order.push(resolve(&client, &org, e).await?);
            }
            let path = format!("/v1/organizations/{}/environments/reorder", segment(&org)?);
            let body = json!({"order": order, "expected_version": order_version});
            let r = client.call(Method::POST, &path, Some(body)).await?;
            if json {
                output::json(&r);
            } else {
                let (envs, _) = all(&client, &org, "").await?;
                env_table(&envs);
            }
        }
        EnvAction::Clone {
            env,
            name,
            slug,
            include,
        } => {
            let id = resolve(&client, &org, &env).await?;
            let mut body = json!({"name": name});
            if let Some(s) = slug {
                body["slug"] = json!(s);
            }
            if let Some(i) = include {
                body["include"] = json!(i);
            }
            let e = client
                .call(
                    Method::POST,
                    &format!("/v1/environments/{id}/clone"),
                    Some(body),
                )
                .await?;
            show(json, &e);
        }
        EnvAction::Promote {
            env,
            target,
            include,
            dry_run,
        } => {
            let id = resolve(&client, &org, &env).await?;
            let target_id = resolve(&client, &org, &target).await?;
            let mut body = json!({"target_env_id": target_id, "dry_run": dry_run});
            if let Some(i) = include {
                body["include"] = json!(i);
            }
            let p = client
                .call(
                    Method::POST,
                    &format!("/v1/environments/{id}/promote"),
                    Some(body),
                )
                .await?;
            if json {
                output::json(&p);
            } else {
                print_promotion(&p);
            }
        }
        EnvAction::MoveData {
            env,
            engine,
            dry_run,
        } => {
            let id = resolve(&client, &org, &env).await?;
            let moved = client
                .call(
                    Method::POST,
                    &format!("/v1/environments/{id}/engine"),
                    Some(json!({"engine": engine, "dry_run": dry_run})),
                )
                .await?;
            if json {
                output::json(&moved);
            } else {
                print_move(&moved);
            }
        }
        EnvAction::Promotions { env } => {
            let id = resolve(&client, &org, &env).await?;
            let page = client
                .get(&format!("/v1/environments/{id}/promotions?limit=200"))
                .await?;
            if json {
                output::json(&page);
            } else {
                let rows: Vec<Vec<String>> = page["data"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        vec![
                            output::cell(&p["promotion_id"]),
                            output::cell(&p["promoted_at"]),
                            output::cell(&p["source_env"]),
                            output::cell(&p["target_env"]),
                            output::cell(&p["details"].as_array().map_or(0, Vec::len).into()),
                        ]
                    })
                    .collect();
                output::table(&["PROMOTION_ID", "AT", "FROM", "TO", "CHANGES"], &rows);
            }
        }
        EnvAction::Diff { env, against } => {
            let id = resolve(&client, &org, &env).await?;
            let other = resolve(&client, &org, &against).await?;
            let d = client
                .get(&format!("/v1/environments/{id}/diff?against={other}"))
                .await?;
            if json {
                output::json(&d);
            } else {
                let mut rows: Vec<Vec<String>> = d["settings"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| {
                        vec![
                            "setting".into(),
                            output::cell(&s["name"]),
                            output::cell(&s["status"]),
                            output::cell(&s["value"]),
                            output::cell(&s["against_value"]),
                        ]
                    })
                    .collect();
                for kind in ["policies", "secrets"] {
                    for item in d[kind].as_array().into_iter().flatten() {
                        rows.push(vec![
                            kind.trim_end_matches('s').replace("ie", "y"),
                            output::cell(&item["name"]),
                            output::cell(&item["status"]),
                            String::new(),
                            String::new(),
                        ]);
                    }
                }
                output::table(&["KIND", "NAME", "STATUS", &env, &against], &rows);
                output::line(if d["identical"] == json!(true) {
                    "identical"
                } else {
                    "different"
                });
            }
        }
        EnvAction::Suspend { env } => {
            let id = resolve(&client, &org, &env).await?;
            let path = format!("/v1/environments/{id}/suspend");
            show(json, &client.call(Method::POST, &path, None).await?);
        }
        EnvAction::Resume { env } => {
            let id = resolve(&client, &org, &env).await?;
            let path = format!("/v1/environments/{id}/resume");
            show(json, &client.call(Method::POST, &path, None).await?);
        }
    }
    Ok(())
}

fn print_move(m: &Value) {
    let rows: Vec<Vec<String>> = m["tables"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            vec![
                format!(
                    "{}.{}",
                    output::cell(&t["schema"]),
                    output::cell(&t["name"])
                ),
                output::cell(&t["rows"]),
                t["columns"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        format!(
                            "{} {}",
                            output::cell(&c["name"]),
                            output::cell(&c["to_type"])
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    output::table(&["TABLE", "ROWS", "COLUMNS (POSTGRESQL)"], &rows);
    let views = m["views"].as_array().map_or(0, Vec::len);
    let verb = if m["dry_run"] == json!(true) {
        "would move"
    } else {
        "moved"
    };
    output::line(&format!(
        "{verb} {} rows in {} tables and {views} views to {}",
        output::cell(&m["rows"]),
        rows.len(),
        output::cell(&m["database"])
    ));
}

fn print_promotion(p: &Value) {
    let rows: Vec<Vec<String>> = p["details"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            vec![
                output::cell(&d["kind"]),
                output::cell(&d["name"]),
                output::cell(&d["action"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        output::line("nothing to promote: the target already matches");
    } else {
        output::table(&["KIND", "NAME", "ACTION"], &rows);
    }
    output::line(&format!(
        "{} ({})",
        if p["dry_run"] == json!(true) {
            "dry run: nothing changed"
        } else {
            "promoted"
        },
        output::cell(&p["promotion_id"])
    ));
}

//! `enclave query` and `enclave tables …`: an environment's data through the gateway's HTTP
//! door (`POST /v1/query`, `/v1/environments/{env_id}/tables…`).

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{json, Value};

use super::client::{segment, Client, Connection, Scope};
use super::env::env_flag;
use super::output;

#[derive(Args, Debug)]
pub struct QueryCommand {
    #[command(flatten)]
    pub conn: Connection,
    /// The environment (id or slug; with an API key, its own).
    #[arg(long)]
    pub env: Option<String>,
    /// The SQL: one statement, or several separated by `;` (the last one's result is
    /// printed). `-` reads it from standard input.
    pub sql: String,
    /// A value for `$1`, `$2`, … in order (repeatable; given as text).
    #[arg(long = "param")]
    pub params: Vec<String>,
    /// Shorter than the environment's `query_timeout_ms`.
    #[arg(long)]
    pub timeout_ms: Option<i64>,
}

pub async fn query(cmd: QueryCommand) -> anyhow::Result<()> {
    let client = Client::connect(&cmd.conn, Scope::Environment).await?;
    let env_id = env_flag(&client, cmd.env.as_deref()).await?;
    let sql = if cmd.sql == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
    } else {
        cmd.sql
    };
    let mut body = json!({ "sql": sql, "env_id": env_id, "params": cmd.params });
    if let Some(t) = cmd.timeout_ms {
        body["timeout_ms"] = json!(t);
    }
    let result = client.call(Method::POST, "/v1/query", Some(body)).await?;
    if cmd.conn.json {
        output::json(&result);
        return Ok(());
    }
    print_result(&result);
    Ok(())
}

/// Rows as a table and a psql-like footer; a statement without rows prints its command tag.
fn print_result(result: &Value) {
    let columns: Vec<&str> = result["columns"]
        .as_array()
        .map(|c| c.iter().map(|c| c["name"].as_str().unwrap_or("")).collect())
        .unwrap_or_default();
    if columns.is_empty() {
        output::line(result["command"].as_str().unwrap_or("OK"));
        return;
    }
    let rows: Vec<Vec<String>> = result["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    r.as_array()
                        .map(|cells| cells.iter().map(output::cell).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    output::table(&columns, &rows);
    let n = rows.len();
    let mut footer = format!("({n} row{})", if n == 1 { "" } else { "s" });
    if result["truncated"] == true {
        footer.push_str(", truncated at the row limit");
    }
    output::line(&footer);
}

#[derive(Args, Debug)]
pub struct TablesCommand {
    #[command(flatten)]
    pub conn: Connection,
    /// The environment (id or slug; with an API key, its own).
    #[arg(long, global = true)]
    pub env: Option<String>,
    #[command(subcommand)]
    pub action: Option<TablesAction>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FileFormat {
    Csv,
    Parquet,
}

#[derive(Subcommand, Debug)]
pub enum TablesAction {
    /// The environment's tables and views (the default).
    List,
    /// One table's columns.
    Show { table: String },
    /// Load a CSV or Parquet file into a table, creating it from the file's columns if it
    /// does not exist (unless --no-create).
    Import {
        table: String,
        file: String,
        /// Default: from the file's extension (`.parquet`, else CSV).
        #[arg(long, value_enum)]
        format: Option<FileFormat>,
        /// CSV: the first line is data, not column names (columns then match by position).
        #[arg(long)]
        no_header: bool,
        /// CSV: the field separator.
        #[arg(long)]
        delimiter: Option<char>,
        /// Fail instead of creating a missing table.
        #[arg(long)]
        no_create: bool,
    },
}

pub async fn tables(cmd: TablesCommand) -> anyhow::Result<()> {
    let client = Client::connect(&cmd.conn, Scope::Environment).await?;
    let json = cmd.conn.json;
    let env_id = env_flag(&client, cmd.env.as_deref()).await?;
    let base = format!("/v1/environments/{env_id}/tables");
    match cmd.action.unwrap_or(TablesAction::List) {
        TablesAction::List => {
            let (tables, _) = client.all_pages(&format!("{base}?limit=200")).await?;
            if json {
                output::json(&json!({ "data": tables }));
                return Ok(());
            }
            let rows: Vec<Vec<String>> = tables
                .iter()
                .map(|t| {
                    let n = t["columns"].as_array().map_or(0, Vec::len);
                    vec![
                        output::cell(&t["name"]),
                        output::cell(&t["kind"]),
                        n.to_string(),
                    ]
                })
                .collect();
            output::table(&["NAME", "KIND", "COLUMNS"], &rows);
        }
        TablesAction::Show { table } => {
            let t = client.get(&format!("{base}/{}", segment(&table)?)).await?;
            if json {
                output::json(&t);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = t["columns"]
                .as_array()
                .map(|cols| {
                    cols.iter()
                        .map(|c| {
                            let nullable = if c["nullable"] == true { "yes" } else { "no" };
                            vec![
                                output::cell(&c["name"]),
                                output::cell(&c["type"]),
                                nullable.into(),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            output::table(&["COLUMN", "TYPE", "NULLABLE"], &rows);
        }
        TablesAction::Import {
            table,
            file,
            format,
            no_header,
            delimiter,
            no_create,
        } => {
            let format = format.unwrap_or(if file.ends_with(".parquet") {
                FileFormat::Parquet
            } else {
                FileFormat::Csv
            });
            let (name, content_type) = match format {
                FileFormat::Csv => ("csv", "text/csv"),
                FileFormat::Parquet => ("parquet", "application/vnd.apache.parquet"),
            };
            let mut path = format!(
                "{base}/{}/import?format={name}&create={}",
                segment(&table)?,
                !no_create
            );
            if matches!(format, FileFormat::Parquet) && (no_header || delimiter.is_some()) {
                bail!("--no-header and --delimiter apply to CSV files");
            }
            if no_header {
                path.push_str("&header=false");
            }
            if let Some(d) = delimiter {
                let mut buf = [0; 4];
                let d = d.encode_utf8(&mut buf);
                path.push_str(&format!("&delimiter={}", urlencoding(d)));
            }
            let body = std::fs::read(&file).with_context(|| format!("cannot read {file}"))?;
            let outcome = client
                .call_raw(Method::POST, &path, content_type, body)
                .await?;
            if json {
                output::json(&outcome);
            } else {
                let verb = if outcome["created"] == true {
                    "created and loaded"
                } else {
                    "loaded"
                };
                output::line(&format!(
                    "{verb} {}: {} rows",
                    output::cell(&outcome["table"]),
                    output::cell(&outcome["rows_imported"])
                ));
            }
        }
    }
    Ok(())
}

/// Percent-encodes a query-string value.
fn urlencoding(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

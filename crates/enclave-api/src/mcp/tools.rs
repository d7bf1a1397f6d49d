//! The MCP tools: `query`, `list_tables`, `describe_table` and `explain_access`, each a thin
//! adapter over the gateway (the statement pipeline, its table listing, its policy
//! evaluation). A failure the caller should read — bad arguments, a refused or failed
//! statement — is a tool error carrying the code, the SQLSTATE and the policy.

use std::sync::Arc;

use enclave_core::pagination::{encode_cursor, PageRequest};
use enclave_core::policy::evaluate::{Decision, Evaluation};
use enclave_core::query::sqlstate;
use enclave_core::{Error, Result};
use enclave_gateway::catalog::{TableFilter, TableInfo};
use enclave_gateway::enforcement::violation;
use enclave_gateway::load::validate_table;
use enclave_gateway::results::{json_rows, pg_type, type_name};
use enclave_gateway::{Outcome, RequestClock, Session};
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool, ToolAnnotations};
use rmcp::ErrorData as McpError;
use serde::Deserialize;
use serde_json::{json, Value};

use super::call::Call;
use crate::extract::parse_json;
use crate::sql_session::{check_request, run_statements};
use crate::state::AppState;

/// Rows a `query` returns unless it asks for more (at most the environment's row cap).
pub(super) const DEFAULT_MAX_ROWS: u64 = 100;
/// The most tables one `list_tables` call returns.
const TABLES_PER_CALL: u32 = 200;
/// Characters of a value shown in the text table (the structured rows are whole).
const TEXT_CELL_CHARS: usize = 200;

fn schema(properties: Value, required: &[&str], environment: bool) -> Arc<JsonObject> {
    let mut properties = properties;
    let mut required: Vec<&str> = required.to_vec();
    if environment {
        properties["environment"] = json!({
            "type": "string",
            "description": "The environment's id (env_…). Required with a person's token; an API key acts in its own environment."
        });
        required.push("environment");
    }
    let schema = json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    });
    match schema {
        Value::Object(map) => Arc::new(map),
        _ => unreachable!("built as an object"),
    }
}

fn tool(name: &'static str, description: &'static str, input: Arc<JsonObject>) -> Tool {
    Tool::new(name, description, input)
}

/// The tools, with `environment` a required argument when the caller is a person.
pub(super) fn definitions(names_environment: bool) -> Vec<Tool> {
    let env = names_environment;
    let mut query = tool(
        "query",
        "Run SQL against the environment's data and get the rows back. The dialect is \
         PostgreSQL's (Snowflake functions such as IFF, NVL and DATEADD are translated). Several \
         statements separated by `;` run in order; the last one's result is returned. Use `$1`, \
         `$2`, … with `params` for values. The environment's policies apply: masked columns come \
         back masked, row filters drop rows, and a refused statement is an error with SQLSTATE \
         42501 naming the policy. Results stop at `max_rows` (default 100) and `truncated` says \
         so; statements stop at `timeout_ms` (SQLSTATE 57014). Writes and DDL need a role or key \
         allowed to make them. Each call costs credits (`credits_consumed`) and is audited.",
        schema(
            json!({
                "sql": {"type": "string", "description": "One statement, or several separated by `;`."},
                "params": {"type": "array", "items": {"type": ["string", "number", "boolean", "null"]},
                    "description": "Values for $1, $2, …"},
                "timeout_ms": {"type": "integer", "minimum": 1, "maximum": 3600000,
                    "description": "Stop the statement after this many milliseconds (at most the environment's timeout)."},
                "max_rows": {"type": "integer", "minimum": 1, "maximum": 1000000,
                    "description": "Return at most this many rows (default 100; at most the environment's row cap)."}
            }),
            &["sql"],
            env,
        ),
    );
    query.annotations = Some(
        ToolAnnotations::new()
            .read_only(false)
            .destructive(true)
            .open_world(false),
    );
    let read_only = || Some(ToolAnnotations::new().read_only(true).open_world(false));
    let mut list_tables = tool(
        "list_tables",
        "List the tables and views you may read in the environment, with their columns and \
         types. Columns a masking policy hides from you are marked with the mask (`full`, \
         `partial`, `hash`, `null`); `row_filtered` says a row filter limits what you see. \
         Tables a policy denies you are left out. Up to 200 tables per call: pass \
         `next_cursor` back as `cursor` for more.",
        schema(
            json!({"cursor": {"type": "string", "description": "`next_cursor` of the previous call."}}),
            &[],
            env,
        ),
    );
    list_tables.annotations = read_only();
    let mut describe_table = tool(
        "describe_table",
        "Describe one table or view: its columns with types and nullability, which columns are \
         masked for you and how, and the row filters that apply to you (their predicates). \
         An error if the table does not exist or a policy denies you reading it.",
        schema(
            json!({"table": {"type": "string", "description": "The table's name."}}),
            &["table"],
            env,
        ),
    );
    describe_table.annotations = read_only();
    let mut explain_access = tool(
        "explain_access",
        "Explain which policies apply to you when reading a table (or every table, without \
         `table`): whether reading is allowed or which policy denies it, the column masks, the \
         row filters with their predicates, the attribute-based (ABAC) policies that matched, \
         and what shadow-mode policies would change. Nothing is run.",
        schema(
            json!({"table": {"type": "string", "description": "The table's name; all tables when omitted."}}),
            &[],
            env,
        ),
    );
    explain_access.annotations = read_only();
    vec![query, list_tables, describe_table, explain_access]
}

/// Runs one tool. An unknown tool is a protocol error; anything that goes wrong inside a
/// known one is the tool's error result.
pub(super) async fn call(
    state: &AppState,
    call: &Call,
    name: &str,
    arguments: JsonObject,
) -> std::result::Result<CallToolResult, McpError> {
    let result = match name {
        "query" => query(state, call, arguments).await,
        "list_tables" => list_tables(state, call, arguments).await,
        "describe_table" => describe_table(state, call, arguments).await,
        "explain_access" => explain_access(state, call, arguments).await,
        other => {
            return Err(McpError::invalid_params(
                format!("unknown tool `{other}`: the tools are query, list_tables, describe_table and explain_access"),
                None,
            ))
        }
    };
    Ok(result.unwrap_or_else(|e| failure(&e)))
}

fn arguments<T: serde::de::DeserializeOwned>(arguments: JsonObject) -> Result<T> {
    let bytes = serde_json::to_vec(&Value::Object(arguments)).map_err(|_| Error::internal())?;
    parse_json(&bytes)
}

/// A tool error: the message a model reads first, then the same in structured form.
fn failure(e: &Error) -> CallToolResult {
    let state = sqlstate(e).to_string();
    let policy = e.details.get("policy_name").and_then(Value::as_str);
    let mut text = format!("ERROR {state}: {}", e.message);
    if let Some(policy) = policy {
        text.push_str(&format!(" (policy: {policy})"));
    }
    if let Some(field) = e.details.get("field").and_then(Value::as_str) {
        let rule = e.details.get("rule").and_then(Value::as_str).unwrap_or("");
        text.push_str(&format!(" (field `{field}`, rule `{rule}`)"));
    }
    let mut result = CallToolResult::structured_error(json!({
        "code": e.code.as_str(),
        "message": e.message,
        "sqlstate": state,
        "policy_name": policy,
        "policy_id": e.details.get("policy_id"),
        "details": e.details,
    }));
    result.content = vec![ContentBlock::text(text)];
    result
}

fn success(structured: Value, text: String) -> CallToolResult {
    let mut result = CallToolResult::structured(structured);
    result.content = vec![ContentBlock::text(text)];
    result
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryArgs {
    sql: String,
    #[serde(default)]
    params: Vec<Value>,
    timeout_ms: Option<i64>,
    max_rows: Option<i64>,
    environment: Option<String>,
}

impl QueryArgs {
    fn validate(&self) -> Result<()> {
        check_request(&self.sql, &self.params, self.timeout_ms)?;
        match self.max_rows {
            Some(m) if !(1..=1_000_000).contains(&m) => Err(Error::validation(
                "max_rows",
                "range",
                "max_rows must be between 1 and 1000000",
            )),
            _ => Ok(()),
        }
    }
}

async fn query(state: &AppState, call: &Call, arguments: JsonObject) -> Result<CallToolResult> {
    let args: QueryArgs = self::arguments(arguments)?;
    args.validate()?;
    let clock = RequestClock::start(args.timeout_ms);
    let mut session = call.session(state, args.environment.as_deref()).await?;
    session.max_rows = Some(args.max_rows.map_or(DEFAULT_MAX_ROWS, |m| m as u64));
    let outcome = run_statements(state, &mut session, &args.sql, args.params, clock).await?;
    let mut rows = match outcome {
        Outcome::Rows(rows) => rows,
        Outcome::Command {
            query_id,
            tag,
            rows,
            notice,
            credits,
        } => {
            let credits = credits.as_f64();
            let changed = rows.unwrap_or(0);
            let mut text = format!("{tag} ({changed} rows; {credits} credits)");
            let mut structured = json!({"query_id": query_id, "command": tag, "columns": [],
                "rows": [], "row_count": changed, "truncated": false, "credits_consumed": credits});
            // PostgreSQL's warning with a statement that otherwise succeeded, as /v1/query's.
            if let Some(notice) = notice {
                text.push_str(&format!(
                    "\nWARNING {}: {}",
                    notice.sqlstate, notice.message
                ));
                structured["notices"] = json!([notice]);
            }
            return Ok(success(structured, text));
        }
        Outcome::Show {
            query_id,
            name,
            value,
        } => {
            return Ok(success(
                json!({"query_id": query_id, "command": "SHOW",
                    "columns": [{"name": name, "type": "text"}], "rows": [[value]],
                    "row_count": 1, "truncated": false, "credits_consumed": 0.0}),
                format!("{name} = {value}"),
            ));
        }
    };
    let columns: Vec<(String, String)> = rows
        .schema
        .fields()
        .iter()
        .map(|f| {
            (
                f.name().clone(),
                type_name(&pg_type(f.data_type())).to_string(),
            )
        })
        .collect();
    let mut values: Vec<Value> = Vec::new();
    while let Some(batch) = rows.next().await {
        values.extend(json_rows(&batch?));
    }
    let (row_count, truncated) = (rows.row_count(), rows.truncated());
    let credits = rows.credits_consumed().as_f64();
    let mut text = text_table(&columns, &values);
    text.push_str(&format!(
        "({row_count} row{}{}; {credits} credits)",
        if row_count == 1 { "" } else { "s" },
        if truncated {
            "; truncated: raise max_rows or narrow the query"
        } else {
            ""
        }
    ));
    let columns: Vec<Value> = columns
        .into_iter()
        .map(|(name, data_type)| json!({"name": name, "type": data_type}))
        .collect();
    Ok(success(
        json!({"query_id": rows.query_id.clone(), "command": rows.tag.clone(), "columns": columns, "rows": values,
            "row_count": row_count, "truncated": truncated, "credits_consumed": credits,
            "execution_time_ms": rows.elapsed_ms(), "cache_hit": rows.cache_hit()}),
        text,
    ))
}

fn cell(v: &Value) -> String {
    let text = match v {
        Value::Null => "NULL".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut out: String = text
        .chars()
        .take(TEXT_CELL_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .replace('|', "\\|");
    if text.chars().count() > TEXT_CELL_CHARS {
        out.push('…');
    }
    out
}

/// The rows as a compact aligned table, as psql prints them.
fn text_table(columns: &[(String, String)], rows: &[Value]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.as_array()
                .map(|r| r.iter().map(cell).collect())
                .unwrap_or_default()
        })
        .collect();
    let mut widths: Vec<usize> = columns.iter().map(|(n, _)| n.chars().count()).collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |values: &mut dyn Iterator<Item = &str>| -> String {
        let padded: Vec<String> = values
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        padded.join(" | ").trim_end().to_string() + "\n"
    };
    let mut out = line(&mut columns.iter().map(|(n, _)| n.as_str()));
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&(rule.join("-+-") + "\n"));
    for row in &cells {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    cursor: Option<String>,
    environment: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableArgs {
    table: String,
    environment: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainArgs {
    table: Option<String>,
    environment: Option<String>,
}

/// A table the caller may read, as they see it: its columns, each with the mask it gets, and
/// the row filters on it.
pub(super) struct Visible {
    pub(super) info: TableInfo,
    evaluation: Evaluation,
}

impl Visible {
    fn owns(&self, table: &str) -> bool {
        let name = table.rsplit('.').next().unwrap_or(table);
        name.eq_ignore_ascii_case(&self.info.name)
    }

    pub(super) fn json(&self) -> Value {
        let columns: Vec<Value> = self
            .info
            .columns
            .iter()
            .map(|c| {
                let mask = self.evaluation.masks.iter().find(|m| {
                    self.owns(&m.table) && m.column.eq_ignore_ascii_case(&c.name)
                });
                json!({"name": c.name, "type": c.data_type, "nullable": c.nullable,
                    "mask": mask.map(|m| json!({"function": m.function, "visible_chars": m.visible_chars,
                        "policy_name": m.policy_name}))})
            })
            .collect();
        let filters: Vec<Value> = self
            .evaluation
            .row_filters
            .iter()
            .filter(|f| self.owns(&f.table))
            .map(|f| {
                let policies: Vec<&str> =
                    f.sources.iter().map(|s| s.policy_name.as_str()).collect();
                json!({"predicate": f.predicate, "parameters": f.parameters, "policies": policies})
            })
            .collect();
        json!({"name": self.info.name, "kind": self.info.kind, "columns": columns,
            "row_filtered": !filters.is_empty(), "row_filters": filters})
    }

    fn text(&self) -> String {
        let json = self.json();
        let columns: Vec<String> = json["columns"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let mut s = format!(
                    "{} {}",
                    c["name"].as_str().unwrap_or_default(),
                    c["type"].as_str().unwrap_or_default()
                );
                if let Some(f) = c["mask"]["function"].as_str() {
                    s.push_str(&format!(" [masked: {f}]"));
                }
                s
            })
            .collect();
        let mut out = format!(
            "{} ({}): {}",
            self.info.name,
            self.info.kind,
            columns.join(", ")
        );
        for f in json["row_filters"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "\n  rows filtered: {}{}",
                f["predicate"].as_str().unwrap_or_default(),
                parameters(&f["parameters"])
            ));
        }
        out
    }
}

/// The table as the caller may see it, `None` when a policy denies reading it.
async fn visible(state: &AppState, session: &Session, info: TableInfo) -> Result<Option<Visible>> {
    let evaluation = state
        .gateway
        .explain_access(session, std::slice::from_ref(&info.name))
        .await?;
    Ok((evaluation.decision == Decision::Allow).then_some(Visible { info, evaluation }))
}

/// A page of the tables the caller may read, and the cursor of the next page.
pub(super) async fn visible_tables(
    state: &AppState,
    session: &mut Session,
    cursor: Option<&str>,
) -> Result<(Vec<Visible>, Option<String>)> {
    let after = PageRequest::parse(Some(TABLES_PER_CALL.into()), cursor)?.after;
    let (tables, _) = state
        .gateway
        .tables(
            session,
            TableFilter::Page {
                after: after.as_deref(),
                limit: TABLES_PER_CALL + 1,
            },
        )
        .await?;
    let more = tables.len() > TABLES_PER_CALL as usize;
    let mut page: Vec<TableInfo> = tables;
    page.truncate(TABLES_PER_CALL as usize);
    let next = match more {
        true => page.last().map(|t| encode_cursor(&t.name)),
        false => None,
    };
    let mut visible_tables = Vec::with_capacity(page.len());
    for info in page {
        if let Some(v) = visible(state, session, info).await? {
            visible_tables.push(v);
        }
    }
    Ok((visible_tables, next))
}

/// The one table of that name the caller may read: not found, or the policy's refusal.
pub(super) async fn visible_table(
    state: &AppState,
    session: &mut Session,
    table: &str,
) -> Result<Visible> {
    validate_table(table)?;
    let (tables, _) = state
        .gateway
        .tables(session, TableFilter::Named(table))
        .await?;
    let info = tables
        .into_iter()
        .next()
        .ok_or_else(|| Error::not_found("table"))?;
    let evaluation = state
        .gateway
        .explain_access(session, std::slice::from_ref(&info.name))
        .await?;
    if evaluation.decision == Decision::Deny {
        return Err(violation(&evaluation));
    }
    Ok(Visible { info, evaluation })
}

async fn list_tables(
    state: &AppState,
    call: &Call,
    arguments: JsonObject,
) -> Result<CallToolResult> {
    let args: ListArgs = self::arguments(arguments)?;
    let mut session = call.session(state, args.environment.as_deref()).await?;
    let (tables, next) = visible_tables(state, &mut session, args.cursor.as_deref()).await?;
    let mut text: Vec<String> = tables.iter().map(Visible::text).collect();
    if tables.is_empty() {
        text.push("(no tables you may read)".into());
    }
    if next.is_some() {
        text.push("(more tables: call again with `cursor` set to next_cursor)".into());
    }
    let tables: Vec<Value> = tables.iter().map(Visible::json).collect();
    Ok(success(
        json!({"tables": tables, "next_cursor": next}),
        text.join("\n"),
    ))
}

async fn describe_table(
    state: &AppState,
    call: &Call,
    arguments: JsonObject,
) -> Result<CallToolResult> {
    let args: TableArgs = self::arguments(arguments)?;
    let mut session = call.session(state, args.environment.as_deref()).await?;
    let table = visible_table(state, &mut session, &args.table).await?;
    Ok(success(table.json(), table.text()))
}

async fn explain_access(
    state: &AppState,
    call: &Call,
    arguments: JsonObject,
) -> Result<CallToolResult> {
    let args: ExplainArgs = self::arguments(arguments)?;
    let mut session = call.session(state, args.environment.as_deref()).await?;
    let tables: Vec<String> = match &args.table {
        Some(table) => {
            validate_table(table)?;
            vec![table.clone()]
        }
        None => {
            let (tables, _) = state
                .gateway
                .tables(
                    &mut session,
                    TableFilter::Page {
                        after: None,
                        limit: TABLES_PER_CALL,
                    },
                )
                .await?;
            tables.into_iter().map(|t| t.name).collect()
        }
    };
    let evaluation = state.gateway.explain_access(&session, &tables).await?;
    let text = explanation(&evaluation);
    let value = serde_json::to_value(&evaluation).map_err(|_| Error::internal())?;
    Ok(success(
        json!({"tables": tables, "evaluation": value}),
        text,
    ))
}

/// An evaluation in a few lines a model can act on.
fn explanation(e: &Evaluation) -> String {
    let mut lines = vec![match e.decision {
        Decision::Allow => "Reading is allowed.".to_string(),
        Decision::Deny => format!(
            "Reading is denied: {}{}",
            e.message,
            e.denied_by
                .as_ref()
                .map(|p| format!(" (policy: {})", p.name))
                .unwrap_or_default()
        ),
    }];
    for m in &e.masks {
        lines.push(format!(
            "Column {}.{} is masked ({}) by policy {}.",
            m.table,
            m.column,
            word(&m.function),
            m.policy_name
        ));
    }
    for f in &e.row_filters {
        let policies: Vec<&str> = f.sources.iter().map(|s| s.policy_name.as_str()).collect();
        lines.push(format!(
            "Rows of {} are filtered: {}{} (policy: {}).",
            f.table,
            f.predicate,
            parameters(&json!(f.parameters)),
            policies.join(", ")
        ));
    }
    for p in e.matched.iter().filter(|p| p.effect.is_some()) {
        lines.push(format!(
            "ABAC policy {} matched ({}, {}) on {}.",
            p.name,
            word(&p.effect),
            word(&p.mode),
            p.tables.join(", ")
        ));
    }
    if let Some(p) = &e.shadow.would_deny {
        lines.push(format!("A shadow-mode policy would deny this: {}.", p.name));
    }
    lines.join("\n")
}

/// A filter's bound values, as ` with $1 = 'eu', $2 = …` (nothing when it has none).
fn parameters(values: &Value) -> String {
    let bound: Vec<String> = values
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, v)| match v.as_str() {
            Some(text) => format!("${} = '{}'", i + 1, text.replace('\'', "''")),
            None => format!("${} = {v}", i + 1),
        })
        .collect();
    match bound.is_empty() {
        true => String::new(),
        false => format!(" with {}", bound.join(", ")),
    }
}

/// An enum as its API spelling (`partial`, `deny`, `shadow`).
fn word<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

//! The SQL console: a statement run through `POST /v1/query` as the signed-in person, with
//! the environment's policies applied as for any client; the result with its column types,
//! row count, duration and credits, or the error with its SQLSTATE and policy.

use axum::extract::Path;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use maud::{html, Markup};
use serde_json::{json, Value};

use super::api::Answer;
use super::layout::{self, csrf, text, Tab, Viewer};
use super::signed::{Posted, Signed};

pub(super) async fn show(signed: Signed, Path(env_id): Path<String>) -> Response {
    render(signed, &env_id, "", None).await
}

pub(super) async fn run(Path(env_id): Path<String>, posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let sql = form.first("sql").to_string();
    let body = json!({"sql": sql, "env_id": env_id});
    let answer = signed.send(Method::POST, "/v1/query", Some(&body)).await;
    render(signed, &env_id, &sql, Some(answer)).await
}

async fn render(signed: Signed, env_id: &str, sql: &str, outcome: Option<Answer>) -> Response {
    let (signed, env) = match signed.environment(env_id).await {
        Ok(x) => x,
        Err(refused) => return refused,
    };
    let tables = signed
        .get(&format!("/v1/environments/{env_id}/tables"))
        .await;
    let markup = console(&signed.viewer(), &env, sql, outcome.as_ref(), &tables.body);
    signed.respond(page_of(markup))
}

fn page_of(markup: Markup) -> Response {
    super::respond::page(StatusCode::OK, markup)
}

/// A cell as text: NULL marked, strings as they are, anything else as JSON.
fn cell(v: &Value) -> Markup {
    match v {
        Value::Null => html! { span.muted { "NULL" } },
        Value::String(s) => html! { (s) },
        other => html! { (other.to_string()) },
    }
}

fn console(
    viewer: &Viewer,
    env: &Value,
    sql: &str,
    outcome: Option<&Answer>,
    tables: &Value,
) -> Markup {
    let env_id = text(env, "env_id");
    let names: Vec<&str> = tables["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    layout::environment(
        viewer,
        env,
        Tab::Console,
        html! {
            form.console method="post" action={ "/environments/" (env_id) "/console" } {
                (csrf(viewer))
                label for="sql" { "SQL (Ctrl+Enter runs it)" }
                textarea #sql name="sql" rows="6" spellcheck="false" required data-run-on-ctrl-enter { (sql) }
                button type="submit" { "Run" }
            }
            @if !names.is_empty() {
                p.muted { "Tables: " @for (i, n) in names.iter().enumerate() { @if i > 0 { ", " } code { (n) } } }
            }
            @if let Some(outcome) = outcome { (result(outcome)) }
        },
    )
}

fn result(answer: &Answer) -> Markup {
    let r = &answer.body;
    if !answer.ok() {
        let e = &r["error"];
        let details = &e["details"];
        return html! {
            div.error role="alert" #query-error {
                "ERROR"
                @if let Some(state) = details["sqlstate"].as_str() { " " code { (state) } }
                ": " (e["message"].as_str().unwrap_or("the query failed"))
                @if let Some(policy) = details["policy_name"].as_str() { " (policy: " strong { (policy) } ")" }
                @if let (Some(f), Some(rule)) = (details["field"].as_str(), details["rule"].as_str()) { " (" (f) ": " (rule) ")" }
            }
        };
    }
    let columns = r["columns"].as_array().cloned().unwrap_or_default();
    html! {
        p #query-summary role="status" {
            @if let Some(command) = r["command"].as_str() { (command) " · " }
            (r["row_count"]) " rows · " (r["execution_time_ms"]) " ms · " (r["credits_consumed"]) " credits"
            @if r["cache_hit"] == true { " · from the cache" }
            @if r["truncated"] == true { " · truncated at the row cap" }
            " · " span.muted { "query " (text(r, "query_id")) }
        }
        @if !columns.is_empty() {
            div.scroll {
                table #results {
                    thead { tr { @for c in &columns { th { (text(c, "name")) " " br; span.type { (text(c, "type")) } } } } }
                    tbody {
                        @for row in r["rows"].as_array().into_iter().flatten() {
                            tr { @for v in row.as_array().into_iter().flatten() { td { (cell(v)) } } }
                        }
                    }
                }
            }
        }
    }
}

//! The agents seen in one environment: each with its framework, activity, credits and the
//! capability grant that narrows it (set, changed or removed here).

use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use super::layout::{self, alert, csrf, joined, notice, text, Tab, Viewer};
use super::respond::{not_found, page, see_other};
use super::signed::{encoded, Form, Posted, Signed};

#[derive(Deserialize)]
pub(super) struct Done {
    done: Option<String>,
    cursor: Option<String>,
}

/// An agent id as clients send it: what reaches a path is percent-encoded anyway; this keeps
/// it to the API's own rule of printable names.
fn id_ok(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.chars().all(|c| !c.is_control())
}

pub(super) async fn show(
    signed: Signed,
    Path(env_id): Path<String>,
    Query(q): Query<Done>,
) -> Response {
    let done = match q.done.as_deref() {
        Some("granted") => Some("Capabilities saved."),
        Some("revoked") => Some("Capabilities removed: the agent is as its key or person allows."),
        _ => None,
    };
    render(signed, &env_id, q.cursor.as_deref(), None, done).await
}

async fn render(
    signed: Signed,
    env_id: &str,
    cursor: Option<&str>,
    error: Option<String>,
    done: Option<&str>,
) -> Response {
    let (signed, env) = match signed.environment(env_id).await {
        Ok(x) => x,
        Err(refused) => return refused,
    };
    let path = format!("/v1/environments/{env_id}/agents?limit=50");
    let agents = signed.listing(&path, cursor).await;
    let manage = signed.env_may(env_id).await.may("manage_policies");
    let markup = agents_page(
        &signed.viewer(),
        &env,
        agents,
        manage,
        error.as_deref(),
        done,
    );
    signed.respond(page(StatusCode::OK, markup))
}

fn list_of(form: &Form, name: &str) -> Vec<String> {
    form.first(name)
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// Set (or replace) an agent's grant, or remove it.
pub(super) async fn capabilities(
    Path((env_id, agent_id, action)): Path<(String, String, String)>,
    posted: Posted,
) -> Response {
    let Posted { signed, form } = posted;
    if !id_ok(&agent_id) {
        return not_found();
    }
    let path = format!(
        "/v1/environments/{env_id}/agents/{}/capabilities",
        encoded(&agent_id)
    );
    let (answer, done) = match action.as_str() {
        "grant" => {
            let mut body = json!({
                "allowed_actions": form.all("allowed_actions"),
                "allowed_tables": list_of(&form, "allowed_tables"),
                "denied_tables": list_of(&form, "denied_tables"),
            });
            for field in ["max_rows_per_query", "max_queries_per_minute"] {
                if let Some(n) = form.number(field) {
                    body[field] = n;
                }
            }
            if let Some(v) = form.given("max_credits_per_day") {
                body["max_credits_per_day"] = v
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .unwrap_or_else(|| Value::from(v));
            }
            (
                signed.send(Method::POST, &path, Some(&body)).await,
                "granted",
            )
        }
        "revoke" => (signed.send(Method::DELETE, &path, None).await, "revoked"),
        _ => return not_found(),
    };
    match answer.ok() {
        true => signed.respond(see_other(
            &format!("/environments/{env_id}/agents?done={done}"),
            &[],
        )),
        false => render(signed, &env_id, None, Some(answer.error()), None).await,
    }
}

fn agents_page(
    viewer: &Viewer,
    env: &Value,
    agents: Result<Value, String>,
    manage: bool,
    error: Option<&str>,
    done: Option<&str>,
) -> Markup {
    let env_id = text(env, "env_id");
    layout::environment(
        viewer,
        env,
        Tab::Agents,
        html! {
            (alert(error))
            (notice(done))
            h2 { "Agents" }
            @match &agents {
                Err(refused) => p.muted { (refused) },
                Ok(list) => {
                    @let rows = list["data"].as_array().cloned().unwrap_or_default();
                    @if rows.is_empty() { p.muted { "No agent has sent a statement here yet (agents name themselves with X-Agent-Id, or through MCP)." } }
                    @for a in &rows {
                        @let id = text(a, "agent_id");
                        @let cap = &a["capabilities"];
                        section.agent {
                            h3 { code { (id) } " " span.muted { (a["framework"].as_str().unwrap_or("")) } }
                            p.muted { (a["query_count"]) " statements, " (a["credits_used"]) " credits; last seen " (text(a, "last_seen_at")) }
                            @if cap.is_null() { p { "No capability grant: it may do what its key or person may." } }
                            @else {
                                p { "May " (joined(&cap["allowed_actions"]))
                                    @if !joined(&cap["allowed_tables"]).is_empty() { " on " (joined(&cap["allowed_tables"])) }
                                    @if !joined(&cap["denied_tables"]).is_empty() { ", never " (joined(&cap["denied_tables"])) }
                                    @if let Some(n) = cap["max_rows_per_query"].as_u64() { "; ≤ " (n) " rows a statement" }
                                    @if let Some(n) = cap["max_queries_per_minute"].as_u64() { "; ≤ " (n) " statements a minute" }
                                    @if let Some(n) = cap["max_credits_per_day"].as_f64() { "; ≤ " (n) " credits a day" }
                                    " (version " (cap["version"]) ")" }
                            }
                            @if manage {
                                @let action = format!("/environments/{env_id}/agents/{}/capabilities", encoded(id));
                                details {
                                    summary { "Set capabilities" }
                                    form method="post" action={ (action) "/grant" } {
                                        (csrf(viewer))
                                        fieldset {
                                            legend { "Actions" }
                                            @for act in ["query", "write", "ddl"] {
                                                label.check { input type="checkbox" name="allowed_actions" value=(act)
                                                    checked[cap["allowed_actions"].as_array().is_some_and(|a| a.iter().any(|x| x == act))]; " " (act) }
                                            }
                                        }
                                        label for={ "allowed-" (id) } { "Only these tables (comma-separated; empty: any)" }
                                        input id={ "allowed-" (id) } type="text" name="allowed_tables" value=(joined(&cap["allowed_tables"]));
                                        label for={ "denied-" (id) } { "Never these tables" }
                                        input id={ "denied-" (id) } type="text" name="denied_tables" value=(joined(&cap["denied_tables"]));
                                        label for={ "rows-" (id) } { "Rows a statement, at most" }
                                        input id={ "rows-" (id) } type="number" name="max_rows_per_query" min="1" value=[cap["max_rows_per_query"].as_u64()];
                                        label for={ "rate-" (id) } { "Statements a minute, at most" }
                                        input id={ "rate-" (id) } type="number" name="max_queries_per_minute" min="1" value=[cap["max_queries_per_minute"].as_u64()];
                                        label for={ "credits-" (id) } { "Credits a day, at most" }
                                        input id={ "credits-" (id) } type="number" step="any" name="max_credits_per_day" min="0" value=[cap["max_credits_per_day"].as_f64()];
                                        button type="submit" { "Save capabilities" }
                                    }
                                }
                                @if !cap.is_null() {
                                    form.inline method="post" action={ (action) "/revoke" } {
                                        (csrf(viewer))
                                        button.danger type="submit" aria-label={ "Remove the capabilities of " (id) } { "Remove grant" }
                                    }
                                }
                            }
                        }
                    }
                    @if let Some(cursor) = list["pagination"]["cursor"].as_str() {
                        nav.pages { a href={ "/environments/" (env_id) "/agents?cursor=" (encoded(cursor)) } { "Next page" } }
                    }
                }
            }
        },
    )
}

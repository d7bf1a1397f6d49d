//! Promotion: configuration copied from this environment to another, previewed first (the
//! API's dry run: every change named) and confirmed, and the promotions made from here.

use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use super::layout::{self, alert, csrf, joined, notice, text, Tab, Viewer};
use super::respond::{page, see_other};
use super::signed::{Posted, Signed};

const ITEMS: [(&str, &str); 7] = [
    ("policies", "policies"),
    ("masking_rules", "masking rules"),
    ("rls_filters", "row filters"),
    ("abac_policies", "ABAC policies"),
    ("secrets", "secrets"),
    ("settings", "settings"),
    ("capabilities", "agents' capabilities"),
];

#[derive(Deserialize)]
pub(super) struct Done {
    done: Option<String>,
}

/// What one rendering shows besides the form and the history.
#[derive(Default)]
struct View {
    error: Option<String>,
    done: Option<&'static str>,
    /// A dry run's answer, with the target and items it was asked for.
    preview: Option<(Value, String, Vec<String>)>,
}

pub(super) async fn show(
    signed: Signed,
    Path(env_id): Path<String>,
    Query(q): Query<Done>,
) -> Response {
    let done = (q.done.as_deref() == Some("promoted")).then_some("Promoted.");
    let view = View {
        done,
        ..View::default()
    };
    render(signed, &env_id, view).await
}

async fn render(signed: Signed, env_id: &str, view: View) -> Response {
    let (signed, env) = match signed.environment(env_id).await {
        Ok(x) => x,
        Err(refused) => return refused,
    };
    let manage = signed.env_may(env_id).await.may("manage_environments");
    let path = format!(
        "/v1/organizations/{}/environments?limit=200",
        signed.org_id()
    );
    let envs = signed.get(&path).await.body["data"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let history = signed
        .get(&format!("/v1/environments/{env_id}/promotions?limit=50"))
        .await;
    let history = history.into_result();
    let markup = promote_page(&signed.viewer(), &env, &envs, manage, history, &view);
    signed.respond(page(StatusCode::OK, markup))
}

/// `mode=preview`: the dry run, shown with a button that promotes the same; `mode=promote`:
/// the real run.
pub(super) async fn promote(Path(env_id): Path<String>, posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let target = form.first("target_env_id").to_string();
    let include: Vec<String> = form.all("include").iter().map(|s| s.to_string()).collect();
    let dry_run = form.first("mode") != "promote";
    let body = json!({"target_env_id": target, "include": include, "dry_run": dry_run});
    let path = format!("/v1/environments/{env_id}/promote");
    let answer = signed.send(Method::POST, &path, Some(&body)).await;
    let view = match (answer.ok(), dry_run) {
        (false, _) => View {
            error: Some(answer.error()),
            ..View::default()
        },
        (true, true) => View {
            preview: Some((answer.body, target, include)),
            ..View::default()
        },
        (true, false) => {
            let to = format!("/environments/{env_id}/promote?done=promoted");
            return signed.respond(see_other(&to, &[]));
        }
    };
    render(signed, &env_id, view).await
}

fn name_of<'a>(envs: &'a [Value], env_id: &'a str) -> &'a str {
    envs.iter()
        .find(|e| text(e, "env_id") == env_id)
        .map(|e| text(e, "name"))
        .unwrap_or(env_id)
}

fn changes(details: &Value) -> Markup {
    let rows = details.as_array().cloned().unwrap_or_default();
    html! {
        @if rows.is_empty() { p { "Nothing differs: the target already has this configuration." } }
        @else {
            table.changes {
                thead { tr { th { "Kind" } th { "Name" } th { "Change" } } }
                tbody { @for c in &rows { tr { td { (text(c, "kind")) } td { code { (text(c, "name")) } } td { (text(c, "action")) } } } }
            }
        }
    }
}

fn promote_page(
    viewer: &Viewer,
    env: &Value,
    envs: &[Value],
    manage: bool,
    history: Result<Value, String>,
    view: &View,
) -> Markup {
    let env_id = text(env, "env_id");
    let action = format!("/environments/{env_id}/promote");
    layout::environment(
        viewer,
        env,
        Tab::Promote,
        html! {
            (alert(view.error.as_deref()))
            (notice(view.done))
            @if let Some((preview, target, include)) = &view.preview {
                section.preview #promotion-preview aria-labelledby="preview-title" {
                    h2 #preview-title { "Dry run: promoting to " (name_of(envs, target)) " would change" }
                    (changes(&preview["details"]))
                    form.inline method="post" action=(action) {
                        (csrf(viewer))
                        input type="hidden" name="target_env_id" value=(target);
                        @for item in include { input type="hidden" name="include" value=(item); }
                        button type="submit" name="mode" value="promote" { "Promote now" }
                    }
                    " " a href=(action) { "Cancel" }
                }
            }
            @if manage {
                h2 { "Promote configuration from " (text(env, "name")) }
                p.muted { "Never data, never API keys. Objects are matched by name; those only in the target are kept." }
                form.wide method="post" action=(action) {
                    (csrf(viewer))
                    label for="target" { "To" }
                    select #target name="target_env_id" required {
                        @for e in envs.iter().filter(|e| text(e, "env_id") != env_id) {
                            option value=(text(e, "env_id")) selected[text(e, "parent_env_id") == env_id] { (text(e, "name")) }
                        }
                    }
                    fieldset {
                        legend { "What" }
                        @for (item, label) in ITEMS {
                            label.check { input type="checkbox" name="include" value=(item) checked; " " (label) }
                        }
                    }
                    button type="submit" name="mode" value="preview" { "Preview (dry run)" }
                }
            }
            h2 { "Promotions" }
            @match history {
                Err(refused) => p.muted { (refused) },
                Ok(history) => {
                    table #promotions {
                        thead { tr { th { "When" } th { "From" } th { "To" } th { "What" } th { "Changes" } th { "By" } } }
                        tbody {
                            @for p in history["data"].as_array().into_iter().flatten() {
                                tr {
                                    td { (text(p, "promoted_at")) }
                                    td { (name_of(envs, text(p, "source_env"))) }
                                    td { (name_of(envs, text(p, "target_env"))) }
                                    td { (joined(&p["include"])) }
                                    td { @for c in p["details"].as_array().into_iter().flatten() { div { (text(c, "action")) " " (text(c, "kind")) " " code { (text(c, "name")) } } } }
                                    td.muted { (text(p, "promoted_by")) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

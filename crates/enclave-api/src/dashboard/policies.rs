//! An environment's policies: column masks, row filters and ABAC policies (create, switch on
//! and off, delete, every saved version with restore) and the explainer that says what the
//! gateway would do for a role, an action and tables.

use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::api::Answer;
use super::layout::{self, alert, csrf, joined, notice, roles, text, Tab, Viewer};
use super::respond::{not_found, page, see_other};
use super::signed::{server_id, Form, Posted, Signed};

const ACTIONS: [&str; 5] = ["query", "write", "ddl", "delete", "export"];

/// Standard policies (`…/policies`) or ABAC policies (`…/abac-policies`).
fn family_path(env_id: &str, abac: bool) -> String {
    match abac {
        true => format!("/v1/environments/{env_id}/abac-policies"),
        false => format!("/v1/environments/{env_id}/policies"),
    }
}

#[derive(Deserialize)]
pub(super) struct Done {
    done: Option<String>,
}

fn done_message(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "created" => "Policy created.",
        "enable" => "Policy switched on.",
        "disable" => "Policy switched off.",
        "delete" => "Policy deleted.",
        "restored" => "Version restored (saved as a new version).",
        _ => return None,
    })
}

/// What one rendering shows besides the lists.
#[derive(Default)]
struct View {
    error: Option<String>,
    done: Option<&'static str>,
    evaluation: Option<Value>,
}

pub(super) async fn show(
    signed: Signed,
    Path(env_id): Path<String>,
    Query(q): Query<Done>,
) -> Response {
    let view = View {
        done: done_message(q.done.as_deref()),
        ..View::default()
    };
    render(signed, &env_id, view).await
}

async fn render(signed: Signed, env_id: &str, view: View) -> Response {
    let (signed, env) = match signed.environment(env_id).await {
        Ok(x) => x,
        Err(refused) => return refused,
    };
    let manage = signed.env_may(env_id).await.may("manage_policies");
    let standard = signed
        .get(&format!("{}?limit=200", family_path(env_id, false)))
        .await;
    let abac = signed
        .get(&format!("{}?limit=200", family_path(env_id, true)))
        .await;
    let lists = match (standard.ok(), abac.ok()) {
        (true, true) => Ok((standard.body, abac.body)),
        (false, _) => Err(standard.error()),
        (_, false) => Err(abac.error()),
    };
    let markup = policies_page(&signed.viewer(), &env, manage, lists, &view);
    signed.respond(page(StatusCode::OK, markup))
}

async fn after(signed: Signed, env_id: &str, answer: Answer, done: &str) -> Response {
    match answer.ok() {
        true => {
            let to = format!("/environments/{env_id}/policies?done={done}");
            signed.respond(see_other(&to, &[]))
        }
        false => {
            let view = View {
                error: Some(answer.error()),
                ..View::default()
            };
            render(signed, env_id, view).await
        }
    }
}

/// The exempt roles of a form, as the API takes them.
fn exempt(form: &Form) -> Value {
    json!(form.all("exempt_roles"))
}

/// The API's body for a new policy of the form's `kind`.
fn new_policy(form: &Form) -> Result<(bool, Value), String> {
    let mut body = json!({"name": form.first("name"), "mode": form.first("mode")});
    if let Some(d) = form.given("description") {
        body["description"] = Value::from(d);
    }
    match form.first("kind") {
        "mask" => {
            let mut rule = json!({"table": form.first("table"), "column": form.first("column"),
                "function": form.first("function"), "exempt_roles": exempt(form)});
            if let Some(n) = form.number("visible_chars") {
                rule["visible_chars"] = n;
            }
            body["type"] = Value::from("column_masking");
            body["rules"] = json!([rule]);
            Ok((false, body))
        }
        "filter" => {
            body["type"] = Value::from("row_level_security");
            body["rules"] = json!([{"table": form.first("table"), "filter": form.first("filter"),
                "exempt_roles": exempt(form)}]);
            Ok((false, body))
        }
        "abac" => {
            body["effect"] = Value::from(form.first("effect"));
            body["actions"] = json!(form.all("actions"));
            body["resources"] = json!(form
                .first("resources")
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .collect::<Vec<_>>());
            if let Some(p) = form.number("priority") {
                body["priority"] = p;
            }
            if let Some(c) = form.given("conditions") {
                let conditions: Map<String, Value> = serde_json::from_str(c).map_err(|e| {
                    format!("The conditions are not a JSON object (conditions: json): {e}")
                })?;
                body["conditions"] = Value::Object(conditions);
            }
            Ok((true, body))
        }
        _ => Err("Choose a kind of policy (kind: one_of mask, filter, abac).".into()),
    }
}

pub(super) async fn create(Path(env_id): Path<String>, posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let (abac, body) = match new_policy(&form) {
        Ok(x) => x,
        Err(error) => {
            let view = View {
                error: Some(error),
                ..View::default()
            };
            return render(signed, &env_id, view).await;
        }
    };
    let answer = signed
        .send(Method::POST, &family_path(&env_id, abac), Some(&body))
        .await;
    after(signed, &env_id, answer, "created").await
}

/// The API path of a policy (`…/policies/{id}` or `…/abac-policies/{id}`, by the form's
/// `family`) followed by `rest`; `None` when the id is not one.
fn policy_path(env_id: &str, policy_id: &str, form: &Form, rest: &str) -> Option<String> {
    let abac = form.first("family") == "abac";
    server_id(policy_id).then(|| format!("{}/{policy_id}{rest}", family_path(env_id, abac)))
}

/// Switch a policy on or off, or delete it.
pub(super) async fn action(
    Path((env_id, policy_id, action)): Path<(String, String, String)>,
    posted: Posted,
) -> Response {
    let Posted { signed, form } = posted;
    let Some(path) = policy_path(&env_id, &policy_id, &form, "") else {
        return not_found();
    };
    let answer = match action.as_str() {
        "enable" | "disable" => {
            let body = json!({"enabled": action == "enable"});
            signed.send(Method::PATCH, &path, Some(&body)).await
        }
        "delete" => signed.send(Method::DELETE, &path, None).await,
        _ => return not_found(),
    };
    after(signed, &env_id, answer, &action).await
}

#[derive(Deserialize)]
pub(super) struct Family {
    family: Option<String>,
}

/// One policy: its content to edit, and every saved version, each restorable.
pub(super) async fn versions(
    signed: Signed,
    Path((env_id, policy_id)): Path<(String, String)>,
    Query(q): Query<Family>,
) -> Response {
    let abac = q.family.as_deref() == Some("abac");
    render_policy(signed, &env_id, &policy_id, abac, None, None).await
}

/// What of a policy its edit form changes, as `PATCH` takes it.
const EDITABLE: [&str; 8] = [
    "description",
    "mode",
    "rules",
    "effect",
    "actions",
    "resources",
    "conditions",
    "priority",
];

async fn render_policy(
    signed: Signed,
    env_id: &str,
    policy_id: &str,
    abac: bool,
    edited: Option<&str>,
    error: Option<String>,
) -> Response {
    if !server_id(policy_id) {
        return not_found();
    }
    let (signed, env) = match signed.environment(env_id).await {
        Ok(x) => x,
        Err(refused) => return refused,
    };
    let path = format!("{}/{policy_id}", family_path(env_id, abac));
    let current = signed.get(&path).await;
    if !current.ok() {
        return signed.refused(&current);
    }
    let versions = signed.get(&format!("{path}/versions?limit=200")).await;
    if !versions.ok() {
        return signed.refused(&versions);
    }
    let content = match edited {
        Some(text) => text.to_string(),
        None => {
            let editable: serde_json::Map<String, Value> = EDITABLE
                .iter()
                .filter_map(|k| Some((k.to_string(), current.body.get(*k)?.clone())))
                .collect();
            serde_json::to_string_pretty(&editable).unwrap_or_default()
        }
    };
    let manage = signed.env_may(env_id).await.may("manage_policies");
    let view = PolicyView {
        policy: &current.body,
        abac,
        manage,
        content: &content,
        error: error.as_deref(),
    };
    let markup = versions_page(&signed.viewer(), &env, &view, &versions.body);
    signed.respond(page(StatusCode::OK, markup))
}

/// A policy changed through its edit form (the JSON of its editable fields, sent as `PATCH`).
pub(super) async fn edit(
    Path((env_id, policy_id)): Path<(String, String)>,
    posted: Posted,
) -> Response {
    let Posted { signed, form } = posted;
    let abac = form.first("family") == "abac";
    let Some(path) = policy_path(&env_id, &policy_id, &form, "") else {
        return not_found();
    };
    let text = form.first("content");
    let body: Value = match serde_json::from_str::<Map<String, Value>>(text) {
        Ok(fields) => Value::Object(fields),
        Err(e) => {
            let error = format!("The policy is not a JSON object (content: json): {e}");
            return render_policy(signed, &env_id, &policy_id, abac, Some(text), Some(error)).await;
        }
    };
    let answer = signed.send(Method::PATCH, &path, Some(&body)).await;
    match answer.ok() {
        true => {
            let family = if abac { "abac" } else { "standard" };
            let to =
                format!("/environments/{env_id}/policies/{policy_id}/versions?family={family}");
            signed.respond(see_other(&to, &[]))
        }
        false => {
            let error = Some(answer.error());
            render_policy(signed, &env_id, &policy_id, abac, Some(text), error).await
        }
    }
}

pub(super) async fn restore(
    Path((env_id, policy_id, version)): Path<(String, String, i64)>,
    posted: Posted,
) -> Response {
    let Posted { signed, form } = posted;
    let rest = format!("/versions/{version}/restore");
    let Some(path) = policy_path(&env_id, &policy_id, &form, &rest) else {
        return not_found();
    };
    let answer = signed.send(Method::POST, &path, None).await;
    after(signed, &env_id, answer, "restored").await
}

/// What the gateway would do for a role, an action and tables (`…/policies/evaluate`).
pub(super) async fn evaluate(Path(env_id): Path<String>, posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let tables: Vec<&str> = form
        .first("tables")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    let mut body = json!({"action": form.first("action"), "resource": {"tables": tables}});
    // No role chosen: the person themselves, as the gateway sees them.
    if let Some(role) = form.given("role") {
        body["principal"] = json!({"role": role});
    }
    let path = format!("/v1/environments/{env_id}/policies/evaluate");
    let answer = signed.send(Method::POST, &path, Some(&body)).await;
    let view = match answer.ok() {
        true => View {
            evaluation: Some(answer.body),
            ..View::default()
        },
        false => View {
            error: Some(answer.error()),
            ..View::default()
        },
    };
    render(signed, &env_id, view).await
}

/// A rule in words: `customers.email → partial (4)`, `orders: region = {region}`.
fn rule_text(rule: &Value) -> String {
    let exempt = joined(&rule["exempt_roles"]);
    let exempt = match exempt.is_empty() {
        true => String::new(),
        false => format!(" (exempt: {exempt})"),
    };
    match rule["filter"].as_str() {
        Some(filter) => format!("{}: {filter}{exempt}", text(rule, "table")),
        None => {
            let visible = match rule["visible_chars"].as_u64() {
                Some(n) => format!(" ({n})"),
                None => String::new(),
            };
            format!(
                "{}.{} → {}{visible}{exempt}",
                text(rule, "table"),
                text(rule, "column"),
                text(rule, "function")
            )
        }
    }
}

fn policy_rows(
    viewer: &Viewer,
    env_id: &str,
    policies: &Value,
    abac: bool,
    manage: bool,
) -> Markup {
    let family = if abac { "abac" } else { "standard" };
    html! {
        @for p in policies["data"].as_array().into_iter().flatten() {
            @let id = text(p, "policy_id");
            @let name = text(p, "name");
            tr {
                td { (name) }
                td { (text(p, "type")) }
                td {
                    @if abac {
                        (text(p, "effect")) " " (joined(&p["actions"])) " on " (joined(&p["resources"]))
                        @if let Some(c) = p["conditions"].as_object().filter(|c| !c.is_empty()) { " when " code { (Value::Object(c.clone())) } }
                    } @else {
                        @for rule in p["rules"].as_array().into_iter().flatten() { div { (rule_text(rule)) } }
                    }
                }
                td { (text(p, "mode")) @if p["enabled"] == false { " (off)" } }
                td { a href={ "/environments/" (env_id) "/policies/" (id) "/versions?family=" (family) } aria-label={ "Edit " (name) " or restore a version" } { "v" (p["version"]) " · edit" } }
                @if manage {
                    td {
                        @let (act, label) = if p["enabled"] == true { ("disable", "Switch off") } else { ("enable", "Switch on") };
                        @for (act, label) in [(act, label), ("delete", "Delete")] {
                            form.inline method="post" action={ "/environments/" (env_id) "/policies/" (id) "/" (act) } {
                                (csrf(viewer))
                                input type="hidden" name="family" value=(family);
                                button.danger[act == "delete"] type="submit" aria-label={ (label) " " (name) } { (label) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn exempt_boxes(id: &str) -> Markup {
    html! {
        fieldset {
            legend { "Roles that see clear values (exempt)" }
            @for role in roles() {
                label.check { input type="checkbox" name="exempt_roles" value=(role) id={ (id) "-" (role) }; " " (role) }
            }
        }
    }
}

fn mode_select(id: &str) -> Markup {
    html! {
        label for=(id) { "Mode" }
        select id=(id) name="mode" {
            option value="enforce" { "enforce" }
            option value="shadow" { "shadow (recorded in the query audit, not enforced)" }
        }
    }
}

fn policies_page(
    viewer: &Viewer,
    env: &Value,
    manage: bool,
    lists: Result<(Value, Value), String>,
    view: &View,
) -> Markup {
    let env_id = text(env, "env_id");
    let base = format!("/environments/{env_id}/policies");
    layout::environment(
        viewer,
        env,
        Tab::Policies,
        html! {
            (alert(view.error.as_deref()))
            (notice(view.done))
            @match &lists {
                Err(refused) => p.muted { "Policies: " (refused) },
                Ok((standard, abac)) => {
                    h2 { "Policies" }
                    table #policies {
                        thead { tr { th { "Name" } th { "Type" } th { "Rules" } th { "Mode" } th { "Version" } @if manage { th { "Change" } } } }
                        tbody {
                            (policy_rows(viewer, env_id, standard, false, manage))
                            (policy_rows(viewer, env_id, abac, true, manage))
                        }
                    }
                }
            }
            h2 { "What would the gateway do?" }
            @if let Some(e) = &view.evaluation { (evaluation(e)) }
            form.wide method="post" action={ (base) "/evaluate" } {
                (csrf(viewer))
                label for="eval-role" { "As role" }
                select #eval-role name="role" {
                    option value="" { "me" }
                    @for role in roles() { option value=(role) { (role) } }
                }
                label for="eval-action" { "Action" }
                select #eval-action name="action" { @for a in ACTIONS { option value=(a) { (a) } } }
                label for="eval-tables" { "Tables (comma-separated)" }
                input #eval-tables type="text" name="tables";
                button type="submit" { "Explain" }
            }
            @if manage {
                h2 { "New column mask" }
                form.wide method="post" action=(base) {
                    (csrf(viewer))
                    input type="hidden" name="kind" value="mask";
                    label for="mask-name" { "Name" }
                    input #mask-name type="text" name="name" required;
                    label for="mask-table" { "Table" }
                    input #mask-table type="text" name="table" required;
                    label for="mask-column" { "Column" }
                    input #mask-column type="text" name="column" required;
                    label for="mask-function" { "Mask" }
                    select #mask-function name="function" {
                        option value="full" { "full (***)" }
                        option value="partial" { "partial (*** and the last characters)" }
                        option value="hash" { "hash (keyed SHA-256)" }
                        option value="null" { "null" }
                    }
                    label for="mask-visible" { "Visible characters (partial)" }
                    input #mask-visible type="number" name="visible_chars" min="1" max="64";
                    (exempt_boxes("mask-exempt"))
                    (mode_select("mask-mode"))
                    button type="submit" { "Create mask" }
                }
                h2 { "New row filter" }
                form.wide method="post" action=(base) {
                    (csrf(viewer))
                    input type="hidden" name="kind" value="filter";
                    label for="filter-name" { "Name" }
                    input #filter-name type="text" name="name" required;
                    label for="filter-table" { "Table" }
                    input #filter-table type="text" name="table" required;
                    label for="filter-expr" { "Filter (SQL; placeholders such as {email}, {role}, {department})" }
                    input #filter-expr type="text" name="filter" required;
                    (exempt_boxes("filter-exempt"))
                    (mode_select("filter-mode"))
                    button type="submit" { "Create row filter" }
                }
                h2 { "New ABAC policy" }
                form.wide method="post" action=(base) {
                    (csrf(viewer))
                    input type="hidden" name="kind" value="abac";
                    label for="abac-name" { "Name" }
                    input #abac-name type="text" name="name" required;
                    label for="abac-effect" { "Effect" }
                    select #abac-effect name="effect" { option value="deny" { "deny" } option value="allow" { "allow" } }
                    fieldset {
                        legend { "Actions" }
                        @for a in ACTIONS.iter().chain(["*"].iter()) {
                            label.check { input type="checkbox" name="actions" value=(a); " " (a) }
                        }
                    }
                    label for="abac-resources" { "Resources (comma-separated: *, table:*, table:NAME, schema:NAME)" }
                    input #abac-resources type="text" name="resources" required;
                    label for="abac-conditions" { "Conditions (JSON object; empty: always)" }
                    textarea #abac-conditions name="conditions" rows="3" placeholder=r#"{"principal.role": {"in": ["analyst"]}}"# {}
                    label for="abac-priority" { "Priority (−1000…1000)" }
                    input #abac-priority type="number" name="priority" value="0";
                    (mode_select("abac-mode"))
                    button type="submit" { "Create ABAC policy" }
                }
            }
        },
    )
}

fn evaluation(e: &Value) -> Markup {
    html! {
        section.preview #evaluation aria-live="polite" {
            p { strong { "Decision: " (text(e, "decision")) } " — " (text(e, "message")) }
            @if let Some(by) = e["denied_by"].as_object() { p { "Refused by " (by.get("name").and_then(|n| n.as_str()).unwrap_or_default()) } }
            @if let Some(m) = e["matched"].as_array().filter(|m| !m.is_empty()) {
                p { "Policies that apply: " (m.iter().map(|p| text(p, "name")).collect::<Vec<_>>().join(", ")) }
            }
            @for mask in e["masks"].as_array().into_iter().flatten() {
                div { "Mask " (text(mask, "table")) "." (text(mask, "column")) ": " (text(mask, "function")) " (" (text(mask, "policy_name")) ")" }
            }
            @for f in e["row_filters"].as_array().into_iter().flatten() {
                div { "Row filter on " (text(f, "table")) ": " code { (text(f, "predicate")) } }
            }
        }
    }
}

/// One policy as its page shows it.
struct PolicyView<'a> {
    policy: &'a Value,
    abac: bool,
    manage: bool,
    /// The edit form's text: the policy's editable fields, or what was just refused.
    content: &'a str,
    error: Option<&'a str>,
}

fn versions_page(viewer: &Viewer, env: &Value, view: &PolicyView, versions: &Value) -> Markup {
    let env_id = text(env, "env_id");
    let (abac, manage) = (view.abac, view.manage);
    let policy_id = text(view.policy, "policy_id");
    let family = if abac { "abac" } else { "standard" };
    let rows = versions["data"].as_array().cloned().unwrap_or_default();
    let name = text(view.policy, "name");
    layout::environment(
        viewer,
        env,
        Tab::Policies,
        html! {
            p { a href={ "/environments/" (env_id) "/policies" } { "← Policies" } }
            h2 { (name) " " span.muted { "(" (text(view.policy, "type")) ", version " (view.policy["version"]) ")" } }
            (alert(view.error))
            @if manage {
                form.wide method="post" action={ "/environments/" (env_id) "/policies/" (policy_id) "/edit" } {
                    (csrf(viewer))
                    input type="hidden" name="family" value=(family);
                    label for="policy-content" { "Policy (JSON: description, mode, "
                        @if abac { "effect, actions, resources, conditions, priority" } @else { "rules" } ")" }
                    textarea #policy-content name="content" rows="12" spellcheck="false" { (view.content) }
                    button type="submit" { "Save policy" }
                }
            }
            h2 { "Versions" }
            table {
                thead { tr { th { "Version" } th { "Saved" } th { "Content" } @if manage { th { "Restore" } } } }
                tbody {
                    @for v in &rows {
                        tr {
                            td { (v["version"]) }
                            td.muted { (text(v, "created_at")) " by " (text(v, "created_by")) }
                            td {
                                (text(v, "mode")) @if v["enabled"] == false { " (off)" } ": "
                                @if abac { (text(v, "effect")) " " (joined(&v["actions"])) " on " (joined(&v["resources"])) }
                                @else { @for rule in v["rules"].as_array().into_iter().flatten() { div { (rule_text(rule)) } } }
                            }
                            @if manage {
                                td {
                                    form.inline method="post" action={ "/environments/" (env_id) "/policies/" (policy_id) "/versions/" (v["version"]) "/restore" } {
                                        (csrf(viewer))
                                        input type="hidden" name="family" value=(family);
                                        button type="submit" aria-label={ "Restore version " (v["version"]) } { "Restore" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

//! An environment's overview: how to connect, its settings (edited in place), suspend and
//! resume, lock and unlock, clone, and delete after seeing what would go with it.

use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use super::layout::{self, alert, csrf, joined, notice, text, Tab, Viewer};
use super::respond::{not_found, page, see_other};
use super::settings;
use super::signed::{Posted, Signed};

#[derive(Deserialize)]
pub(super) struct Done {
    done: Option<String>,
}

/// What an action just did, by the code its redirect carries (never text from the URL).
fn done_message(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "created" => "The environment was created.",
        "saved" => "Saved.",
        "suspend" => "Suspended: queries and API keys are refused until it is resumed.",
        "resume" => "Resumed.",
        "lock" => "Locked: every change is refused until it is unlocked.",
        "unlock" => "Unlocked.",
        "cloned" => "This environment was cloned from another.",
        _ => return None,
    })
}

pub(super) async fn show(
    signed: Signed,
    Path(env_id): Path<String>,
    Query(q): Query<Done>,
) -> Response {
    render(signed, &env_id, None, done_message(q.done.as_deref())).await
}

async fn render(
    signed: Signed,
    env_id: &str,
    error: Option<String>,
    done: Option<&str>,
) -> Response {
    let (signed, env) = match signed.environment(env_id).await {
        Ok(x) => x,
        Err(refused) => return refused,
    };
    let may_manage = signed.env_may(env_id).await.may("manage_environments");
    let siblings = match may_manage {
        true => {
            let path = format!(
                "/v1/organizations/{}/environments?limit=200",
                signed.org_id()
            );
            let list = signed.get(&path).await;
            list.body["data"].as_array().cloned().unwrap_or_default()
        }
        false => vec![],
    };
    let markup = overview(
        &signed.viewer(),
        &env,
        may_manage.then_some(siblings.as_slice()),
        error.as_deref(),
        done,
    );
    signed.respond(page(StatusCode::OK, markup))
}

/// An API call for this environment, then back to its overview with `done`, or the overview
/// with the API's reason.
async fn act(
    signed: Signed,
    env_id: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
    done: &str,
) -> Response {
    let answer = signed.send(method, path, body.as_ref()).await;
    match answer.ok() {
        true => signed.respond(see_other(
            &format!("/environments/{env_id}?done={done}"),
            &[],
        )),
        false => render(signed, env_id, Some(answer.error()), None).await,
    }
}

pub(super) async fn edit(Path(env_id): Path<String>, posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let mut body = json!({
        "name": form.first("name"),
        "slug": form.first("slug"),
        "type": form.first("type"),
        "color": form.first("color"),
        "description": form.first("description"),
        "settings": settings::of_form(&form),
        "required_keys": settings::required_keys(&form),
    });
    // An empty parent removes it.
    body["parent_env_id"] = form
        .given("parent_env_id")
        .map(Value::from)
        .unwrap_or(Value::Null);
    let path = format!("/v1/environments/{env_id}");
    act(signed, &env_id, Method::PATCH, &path, Some(body), "saved").await
}

/// Suspend, resume, lock or unlock.
pub(super) async fn lifecycle(
    Path((env_id, action)): Path<(String, String)>,
    posted: Posted,
) -> Response {
    let signed = posted.signed;
    let base = format!("/v1/environments/{env_id}");
    let (method, path, body) = match action.as_str() {
        "suspend" | "resume" => (Method::POST, format!("{base}/{action}"), None),
        "lock" => (Method::PATCH, base, Some(json!({"locked": true}))),
        "unlock" => (Method::PATCH, base, Some(json!({"locked": false}))),
        _ => return not_found(),
    };
    act(signed, &env_id, method, &path, body, &action).await
}

pub(super) async fn clone(Path(env_id): Path<String>, posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let mut body = json!({"name": form.first("name"), "include": form.all("include")});
    if let Some(slug) = form.given("slug") {
        body["slug"] = Value::from(slug);
    }
    let path = format!("/v1/environments/{env_id}/clone");
    let made = signed.send(Method::POST, &path, Some(&body)).await;
    match made.body["env_id"].as_str() {
        Some(new_id) if made.ok() => {
            let to = format!("/environments/{new_id}?done=cloned");
            signed.respond(see_other(&to, &[]))
        }
        _ => render(signed, &env_id, Some(made.error()), None).await,
    }
}

/// What deleting would remove (the API's dry run), and the button that does it.
pub(super) async fn delete_preview(signed: Signed, Path(env_id): Path<String>) -> Response {
    let (signed, env) = match signed.environment(&env_id).await {
        Ok(x) => x,
        Err(refused) => return refused,
    };
    let path = format!("/v1/environments/{env_id}?dry_run=true");
    let preview = signed.send(Method::DELETE, &path, None).await;
    if !preview.ok() {
        return render(signed, &env_id, Some(preview.error()), None).await;
    }
    let markup = deletion(&signed.viewer(), &env, &preview.body, None);
    signed.respond(page(StatusCode::OK, markup))
}

pub(super) async fn delete(Path(env_id): Path<String>, posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let (signed, env) = match signed.environment(&env_id).await {
        Ok(x) => x,
        Err(refused) => return refused,
    };
    // The slug typed again: a delete is not one stray click away.
    if form.first("confirm").trim() != text(&env, "slug") {
        let path = format!("/v1/environments/{env_id}?dry_run=true");
        let preview = signed.send(Method::DELETE, &path, None).await;
        let error = "Type the environment's slug to confirm (confirm: must equal the slug).";
        let markup = deletion(&signed.viewer(), &env, &preview.body, Some(error));
        return signed.respond(page(StatusCode::OK, markup));
    }
    let path = format!("/v1/environments/{env_id}");
    let gone = signed.send(Method::DELETE, &path, None).await;
    match gone.ok() {
        true => signed.respond(see_other("/environments?done=deleted", &[])),
        false => render(signed, &env_id, Some(gone.error()), None).await,
    }
}

fn overview(
    viewer: &Viewer,
    env: &Value,
    manage: Option<&[Value]>,
    error: Option<&str>,
    done: Option<&str>,
) -> Markup {
    let env_id = text(env, "env_id");
    let connection = &env["connection"];
    let psql = format!(
        "psql \"host={} port={} dbname={} user={}\"",
        text(connection, "host"),
        connection["port"],
        text(connection, "database"),
        viewer.email
    );
    let action = |name: &str, label: &str| {
        html! {
            form.inline method="post" action={ "/environments/" (env_id) "/status/" (name) } {
                (csrf(viewer))
                button type="submit" { (label) }
            }
        }
    };
    let missing = joined(&env["missing_keys"]);
    layout::environment(
        viewer,
        env,
        Tab::Overview,
        html! {
            (alert(error))
            (notice(done))
            @if !text(env, "description").is_empty() { p { (text(env, "description")) } }
            @if !missing.is_empty() {
                p.error { "Required secrets missing: " (missing) }
            }
            h2 { "Connect" }
            p { "With " code { "psql" } " (the password: an API key of this environment, or your access token):" }
            pre { code #psql { (psql) } }
            dl {
                dt { "Query timeout" } dd { (env["settings"]["query_timeout_ms"]) " ms" }
                dt { "Concurrent queries" } dd { (env["settings"]["max_concurrent_queries"]) }
                dt { "Result cache" } dd { @if env["settings"]["cache_enabled"] == true { "on" } @else { "off" } }
            }
            @if let Some(siblings) = manage {
                h2 { "Status" }
                p {
                    @if text(env, "status") == "suspended" { (action("resume", "Resume")) }
                    @else { (action("suspend", "Suspend")) }
                    @if env["locked"] == true { (action("unlock", "Unlock")) }
                    @else { (action("lock", "Lock")) }
                }
                h2 { "Settings" }
                form.wide method="post" action={ "/environments/" (env_id) } {
                    (csrf(viewer))
                    label for="env-name" { "Name" }
                    input #env-name type="text" name="name" value=(text(env, "name")) required maxlength="64";
                    (settings::identity_fields(Some(env), siblings))
                    (settings::settings_fields(Some(env)))
                    button type="submit" { "Save settings" }
                }
                h2 { "Clone" }
                form.wide method="post" action={ "/environments/" (env_id) "/clone" } {
                    (csrf(viewer))
                    label for="clone-name" { "Name of the copy" }
                    input #clone-name type="text" name="name" required maxlength="64";
                    label for="clone-slug" { "Slug of the copy" }
                    input #clone-slug type="text" name="slug" placeholder="derived from the name";
                    fieldset {
                        legend { "Copy" }
                        @for (item, label, on) in [("settings", "settings", true), ("policies", "policies", true),
                            ("secrets", "secrets", true), ("capabilities", "agents' capabilities", true), ("data", "data (tables and rows)", false)] {
                            label.check { input type="checkbox" name="include" value=(item) checked[on]; " " (label) }
                        }
                    }
                    p.muted { "API keys are never copied." }
                    button type="submit" { "Clone environment" }
                }
                h2 { "Delete" }
                p { a href={ "/environments/" (env_id) "/delete" } { "Delete this environment…" } " (you see what goes with it first)" }
            }
        },
    )
}

fn deletion(viewer: &Viewer, env: &Value, preview: &Value, error: Option<&str>) -> Markup {
    let env_id = text(env, "env_id");
    let counts = &preview["would_delete"];
    let blocked = joined(&preview["blocked_by"]);
    layout::environment(
        viewer,
        env,
        Tab::Overview,
        html! {
            h2 { "Delete " (text(env, "name")) "?" }
            (alert(error))
            p { "Deleting removes, for good:" }
            ul #impact {
                li { (counts["api_keys"]) " API keys" }
                li { (counts["secrets"]) " secrets (their encryption key is erased)" }
                li { (counts["policies"]) " policies" }
                @if !counts["tables"].is_null() { li { (counts["tables"]) " tables with their data" } }
            }
            @if !blocked.is_empty() {
                p.error role="alert" { "It cannot be deleted now: " (blocked) "." }
            } @else {
                form.wide method="post" action={ "/environments/" (env_id) "/delete" } {
                    (csrf(viewer))
                    label for="confirm" { "Type " code { (text(env, "slug")) } " to confirm" }
                    input #confirm type="text" name="confirm" required autocomplete="off";
                    button.danger type="submit" { "Delete environment" }
                }
            }
            p { a href={ "/environments/" (env_id) } { "Keep it" } }
        },
    )
}

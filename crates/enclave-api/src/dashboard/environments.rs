//! The environments list: each with its colour, type, status and connection, in the
//! organization's order (moved up or down), and the form that creates one.

use axum::extract::Query;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use super::layout::{alert, csrf, layout, notice, text, Viewer};
use super::respond::{not_found, page, see_other};
use super::settings;
use super::signed::{encoded, Posted, Signed};

#[derive(Deserialize)]
pub(super) struct ListQuery {
    cursor: Option<String>,
    done: Option<String>,
}

pub(super) async fn list(signed: Signed, Query(q): Query<ListQuery>) -> Response {
    let done = match q.done.as_deref() {
        Some("deleted") => Some("The environment was deleted."),
        _ => None,
    };
    render(signed, q.cursor.as_deref(), None, done).await
}

async fn render(
    signed: Signed,
    cursor: Option<&str>,
    error: Option<String>,
    done: Option<&str>,
) -> Response {
    let mut path = format!(
        "/v1/organizations/{}/environments?limit=50",
        signed.org_id()
    );
    if let Some(cursor) = cursor {
        path.push_str(&format!("&cursor={}", encoded(cursor)));
    }
    let answer = signed.get(&path).await;
    if !answer.ok() {
        return signed.refused(&answer);
    }
    let may_manage = signed.org_may("manage_environments");
    let markup = environments(
        &signed.viewer(),
        &answer.body,
        may_manage,
        error.as_deref(),
        done,
    );
    signed.respond(page(StatusCode::OK, markup))
}

pub(super) async fn create(posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let mut body = json!({"name": form.first("name")});
    for field in ["slug", "type", "color", "description", "parent_env_id"] {
        if let Some(v) = form.given(field) {
            body[field] = Value::from(v);
        }
    }
    body["settings"] = settings::of_form(&form);
    let required = settings::required_keys(&form);
    if !required.is_empty() {
        body["required_keys"] = json!(required);
    }
    let path = format!("/v1/organizations/{}/environments", signed.org_id());
    let made = signed.send(Method::POST, &path, Some(&body)).await;
    match made.body["env_id"].as_str() {
        Some(env_id) if made.ok() => {
            let to = format!("/environments/{env_id}?done=created");
            signed.respond(see_other(&to, &[]))
        }
        _ => render(signed, None, Some(made.error()), None).await,
    }
}

/// Moves an environment one place up or down (`PATCH … {index}`; the API keeps the others
/// dense around it).
pub(super) async fn moved(
    axum::extract::Path((env_id, way)): axum::extract::Path<(String, String)>,
    posted: Posted,
) -> Response {
    let Posted { signed, form } = posted;
    let step = match way.as_str() {
        "up" => -1,
        "down" => 1,
        _ => return not_found(),
    };
    let Some(index) = form.given("index").and_then(|i| i.parse::<i64>().ok()) else {
        return render(
            signed,
            None,
            Some("The form lost its position.".into()),
            None,
        )
        .await;
    };
    let (signed, _) = match signed.environment(&env_id).await {
        Ok(x) => x,
        Err(refused) => return refused,
    };
    let body = json!({"index": (index + step).max(0)});
    let path = format!("/v1/environments/{env_id}");
    let done = signed.send(Method::PATCH, &path, Some(&body)).await;
    match done.ok() {
        true => signed.respond(see_other("/environments", &[])),
        false => render(signed, None, Some(done.error()), None).await,
    }
}

fn environments(
    viewer: &Viewer,
    page: &Value,
    may_manage: bool,
    error: Option<&str>,
    done: Option<&str>,
) -> Markup {
    let rows = page["data"].as_array().cloned().unwrap_or_default();
    let total = page["pagination"]["total"].as_i64().unwrap_or(0);
    let next = page["pagination"]["cursor"].as_str();
    layout(
        "Environments",
        Some(viewer),
        html! {
            h1 { "Environments" }
            (alert(error))
            (notice(done))
            table {
                thead { tr { th { "Name" } th { "Slug" } th { "Type" } th { "Status" } th { "Connection" }
                    @if may_manage { th { "Order" } } } }
                tbody {
                    @for env in &rows {
                        @let env_id = text(env, "env_id");
                        @let index = env["index"].as_i64().unwrap_or(0);
                        tr {
                            td {
                                svg width="14" height="14" aria-hidden="true" {
                                    circle cx="7" cy="7" r="6" fill=(text(env, "color")) {}
                                }
                                " " a href={ "/environments/" (env_id) } { (text(env, "name")) }
                            }
                            td { code { (text(env, "slug")) } }
                            td { (text(env, "type")) }
                            td {
                                (text(env, "status"))
                                @if env["locked"] == true { " (locked)" }
                            }
                            td.muted {
                                (text(&env["connection"], "host")) ":" (env["connection"]["port"]) "/"
                                (text(&env["connection"], "database"))
                            }
                            @if may_manage {
                                td {
                                    @if index > 0 {
                                        form.inline method="post" action={ "/environments/" (env_id) "/move/up" } {
                                            (csrf(viewer))
                                            input type="hidden" name="index" value=(index);
                                            button type="submit" aria-label={ "Move " (text(env, "name")) " up" } { "↑" }
                                        }
                                    }
                                    @if index + 1 < total {
                                        form.inline method="post" action={ "/environments/" (env_id) "/move/down" } {
                                            (csrf(viewer))
                                            input type="hidden" name="index" value=(index);
                                            button type="submit" aria-label={ "Move " (text(env, "name")) " down" } { "↓" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            p.muted { (total) " environments" }
            @if let Some(cursor) = next {
                nav.pages { a href={ "/environments?cursor=" (encoded(cursor)) } { "Next page" } }
            }
            @if may_manage {
                h2 { "New environment" }
                form.wide method="post" action="/environments" {
                    (csrf(viewer))
                    label for="env-name" { "Name" }
                    input #env-name type="text" name="name" required maxlength="64";
                    (settings::identity_fields(None, &rows))
                    (settings::settings_fields(None))
                    button type="submit" { "Create environment" }
                }
            }
        },
    )
}

//! An environment's secrets: keys with their values hidden until revealed, set, change and
//! delete one, import a `.env` file (previewed first) and export one.

use axum::extract::{Path, Query};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::Payload;
use super::layout::{self, alert, csrf, joined, notice, text, Tab, Viewer};
use super::respond::{page, see_other};
use super::signed::{encoded, Permissions, Posted, Signed};

#[derive(Deserialize)]
pub(super) struct ListQuery {
    reveal: Option<bool>,
    cursor: Option<String>,
    done: Option<String>,
}

fn done_message(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "saved" => "Secret saved.",
        "deleted" => "Secret deleted.",
        "imported" => "Imported.",
        _ => return None,
    })
}

pub(super) async fn show(
    signed: Signed,
    Path(env_id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    let view = View {
        reveal: q.reveal.unwrap_or(false),
        cursor: q.cursor,
        done: done_message(q.done.as_deref()),
        error: None,
        import: None,
    };
    render(signed, &env_id, view).await
}

/// What one rendering of the page shows besides the list.
struct View {
    reveal: bool,
    cursor: Option<String>,
    done: Option<&'static str>,
    error: Option<String>,
    /// An import's preview or outcome, with the text that was imported.
    import: Option<(Value, String)>,
}

impl View {
    fn error(error: String) -> View {
        View {
            reveal: false,
            cursor: None,
            done: None,
            error: Some(error),
            import: None,
        }
    }
}

async fn render(signed: Signed, env_id: &str, view: View) -> Response {
    let (signed, env) = match signed.environment(env_id).await {
        Ok(x) => x,
        Err(refused) => return refused,
    };
    let may = signed.env_may(env_id).await;
    let mut path = format!("/v1/environments/{env_id}/secrets?limit=100");
    if view.reveal {
        path.push_str("&reveal=true");
    }
    if let Some(c) = &view.cursor {
        path.push_str(&format!("&cursor={}", encoded(c)));
    }
    let list = signed.get(&path).await;
    let list = list.into_result();
    let markup = secrets_page(&signed.viewer(), &env, &may, list, &view);
    signed.respond(page(StatusCode::OK, markup))
}

/// Back to the list with `done`, or the list with the API's reason.
async fn after(signed: Signed, env_id: &str, answer: super::api::Answer, done: &str) -> Response {
    match answer.ok() {
        true => {
            let to = format!("/environments/{env_id}/secrets?done={done}");
            signed.respond(see_other(&to, &[]))
        }
        false => render(signed, env_id, View::error(answer.error())).await,
    }
}

/// A new secret, or a new value for one that exists.
pub(super) async fn set(Path(env_id): Path<String>, posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let key = form.first("key");
    let mut body = json!({"value": form.first("value")});
    if let Some(comment) = form.given("comment") {
        body["comment"] = Value::from(comment);
    }
    let answer = match form.first("existing") == "true" {
        true => {
            let path = format!("/v1/environments/{env_id}/secrets/{}", encoded(key));
            signed.send(Method::PATCH, &path, Some(&body)).await
        }
        false => {
            body["key"] = Value::from(key);
            let path = format!("/v1/environments/{env_id}/secrets");
            signed.send(Method::POST, &path, Some(&body)).await
        }
    };
    after(signed, &env_id, answer, "saved").await
}

pub(super) async fn delete(Path(env_id): Path<String>, posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let path = format!(
        "/v1/environments/{env_id}/secrets/{}",
        encoded(form.first("key"))
    );
    let answer = signed.send(Method::DELETE, &path, None).await;
    after(signed, &env_id, answer, "deleted").await
}

/// A `.env` text: previewed (the API's dry run) or imported.
pub(super) async fn import(Path(env_id): Path<String>, posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let text = form.first("dotenv").to_string();
    let dry_run = form.first("mode") != "import";
    let path = format!(
        "/v1/environments/{env_id}/secrets/import?dry_run={dry_run}&overwrite={}",
        form.checked("overwrite")
    );
    let answer = signed
        .raw(Method::POST, &path, Payload::Text(&text))
        .await
        .answer();
    if !answer.ok() {
        return render(signed, &env_id, View::error(answer.error())).await;
    }
    let view = View {
        reveal: false,
        cursor: None,
        done: (!dry_run).then_some("Imported."),
        error: None,
        import: Some((answer.body, text)),
    };
    render(signed, &env_id, view).await
}

/// Every secret as a `.env` file, downloaded.
pub(super) async fn export(signed: Signed, Path(env_id): Path<String>) -> Response {
    let (signed, env) = match signed.environment(&env_id).await {
        Ok(x) => x,
        Err(refused) => return refused,
    };
    let path = format!("/v1/environments/{env_id}/secrets/export?format=dotenv");
    let raw = signed.raw(Method::GET, &path, Payload::Empty).await;
    if !raw.status.is_success() {
        return render(signed, &env_id, View::error(raw.answer().error())).await;
    }
    let file = format!("attachment; filename=\"{}.env\"", text(&env, "slug"));
    let mut resp = (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        raw.bytes,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&file) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    signed.respond(resp)
}

fn secrets_page(
    viewer: &Viewer,
    env: &Value,
    may: &Permissions,
    list: Result<Value, String>,
    view: &View,
) -> Markup {
    let env_id = text(env, "env_id");
    let base = format!("/environments/{env_id}/secrets");
    let manage = may.may("manage_secrets");
    let read_values = may.may("read_secret_values");
    layout::environment(
        viewer,
        env,
        Tab::Secrets,
        html! {
            (alert(view.error.as_deref()))
            (notice(view.done))
            @if let Some((outcome, _)) = &view.import {
                section.preview aria-labelledby="import-title" {
                    h2 #import-title { @if outcome["dry_run"] == true { "Import preview (nothing changed yet)" } @else { "Import done" } }
                    dl {
                        dt { "New" } dd { (joined(&outcome["created"])) }
                        dt { "Changed" } dd { (joined(&outcome["updated"])) }
                        dt { "Unchanged" } dd { (joined(&outcome["unchanged"])) }
                        dt { "Skipped (exist; overwrite not chosen)" } dd { (joined(&outcome["skipped"])) }
                    }
                }
            }
            @match &list {
                Err(refused) => p.muted { "Secrets: " (refused) },
                Ok(list) => {
                    h2 { "Secrets" }
                    p {
                        @if read_values {
                            @if view.reveal { a href=(base) { "Hide values" } }
                            @else { a href={ (base) "?reveal=true" } { "Reveal values" } }
                            " · " a href={ (base) "/export" } download { "Export .env" }
                        }
                    }
                    table #secrets {
                        thead { tr { th { "Key" } th { "Value" } th { "Comment" } th { "Version" } th { "Updated" }
                            @if manage { th { "Change" } } } }
                        tbody {
                            @for s in list["data"].as_array().into_iter().flatten() {
                                @let key = text(s, "key");
                                tr {
                                    td { code { (key) } }
                                    td { @if let Some(v) = s["value"].as_str() { code.revealed { (v) } } @else { span.muted aria-label="hidden" { "••••••" } } }
                                    td { (text(s, "comment")) }
                                    td { (s["version"]) }
                                    td.muted { (text(s, "updated_at")) " by " (text(s, "updated_by")) }
                                    @if manage {
                                        td {
                                            form.inline method="post" action=(base) {
                                                (csrf(viewer))
                                                input type="hidden" name="key" value=(key);
                                                input type="hidden" name="existing" value="true";
                                                label.sr for={ "value-" (key) } { "New value of " (key) }
                                                input.short id={ "value-" (key) } type="password" name="value" required autocomplete="off";
                                                button type="submit" aria-label={ "Save " (key) } { "Save" }
                                            }
                                            form.inline method="post" action={ (base) "/delete" } {
                                                (csrf(viewer))
                                                input type="hidden" name="key" value=(key);
                                                button.danger type="submit" aria-label={ "Delete " (key) } { "Delete" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    p.muted { (list["pagination"]["total"]) " secrets" }
                    @if let Some(cursor) = list["pagination"]["cursor"].as_str() {
                        nav.pages { a href={ (base) "?cursor=" (encoded(cursor)) @if view.reveal { "&reveal=true" } } { "Next page" } }
                    }
                }
            }
            @if manage {
                h2 { "New secret" }
                form.wide method="post" action=(base) {
                    (csrf(viewer))
                    label for="secret-key" { "Key" }
                    input #secret-key type="text" name="key" required pattern="[A-Za-z_][A-Za-z0-9_.\\-]{0,255}";
                    label for="secret-value" { "Value" }
                    textarea #secret-value name="value" rows="2" required {}
                    label for="secret-comment" { "Comment" }
                    input #secret-comment type="text" name="comment";
                    button type="submit" { "Add secret" }
                }
                h2 { "Import a .env file" }
                form.wide method="post" action={ (base) "/import" } {
                    (csrf(viewer))
                    label for="dotenv" { ".env text (KEY=value lines)" }
                    textarea #dotenv name="dotenv" rows="5" required {
                        @if let Some((_, t)) = &view.import { (t) }
                    }
                    label.check { input type="checkbox" name="overwrite" value="true"; " Overwrite keys that exist" }
                    button type="submit" name="mode" value="preview" { "Preview import" }
                    " "
                    button type="submit" name="mode" value="import" { "Import" }
                }
            }
        },
    )
}

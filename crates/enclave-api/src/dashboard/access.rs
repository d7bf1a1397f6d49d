//! Just-in-time access in one environment: ask for a higher role for a while, and (owners and
//! admins) approve, deny or end what others asked for.

use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use super::layout::{self, alert, csrf, notice, text, Tab, Viewer};
use super::respond::{not_found, page, see_other};
use super::signed::{encoded, Posted, Signed};

#[derive(Deserialize)]
pub(super) struct Done {
    done: Option<String>,
    cursor: Option<String>,
}

fn done_message(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "requested" => "Asked: an owner or admin decides.",
        "approve" => "Approved: the grant runs from now.",
        "deny" => "Denied.",
        "revoke" => "The grant ended.",
        _ => return None,
    })
}

pub(super) async fn show(
    signed: Signed,
    Path(env_id): Path<String>,
    Query(q): Query<Done>,
) -> Response {
    let done = done_message(q.done.as_deref());
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
    let path = format!("/v1/environments/{env_id}/jit-access?limit=50");
    let requests = signed.listing(&path, cursor).await;
    // Owners and admins decide (the API also refuses the requester deciding their own).
    let decides = signed.org_may("manage_users");
    let markup = access_page(
        &signed.viewer(),
        &env,
        requests,
        decides,
        error.as_deref(),
        done,
    );
    signed.respond(page(StatusCode::OK, markup))
}

pub(super) async fn request(Path(env_id): Path<String>, posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let mut body = json!({"requested_role": form.first("requested_role"),
        "reason": form.first("reason")});
    body["duration_minutes"] = form.number("duration_minutes").unwrap_or(Value::Null);
    let path = format!("/v1/environments/{env_id}/jit-access");
    let made = signed.send(Method::POST, &path, Some(&body)).await;
    match made.ok() {
        true => signed.respond(see_other(
            &format!("/environments/{env_id}/access?done=requested"),
            &[],
        )),
        false => render(signed, &env_id, None, Some(made.error()), None).await,
    }
}

pub(super) async fn decide(
    Path((env_id, request_id, action)): Path<(String, String, String)>,
    posted: Posted,
) -> Response {
    let Posted { signed, form } = posted;
    if enclave_core::id::JitId::parse(&request_id).is_none()
        || !["approve", "deny", "revoke"].contains(&action.as_str())
    {
        return not_found();
    }
    let mut body = json!({});
    if let Some(c) = form.given("comment") {
        body["comment"] = Value::from(c);
    }
    let path = format!("/v1/environments/{env_id}/jit-access/{request_id}/{action}");
    let answer = signed.send(Method::POST, &path, Some(&body)).await;
    match answer.ok() {
        true => signed.respond(see_other(
            &format!("/environments/{env_id}/access?done={action}"),
            &[],
        )),
        false => render(signed, &env_id, None, Some(answer.error()), None).await,
    }
}

fn access_page(
    viewer: &Viewer,
    env: &Value,
    requests: Result<Value, String>,
    decides: bool,
    error: Option<&str>,
    done: Option<&str>,
) -> Markup {
    let env_id = text(env, "env_id");
    layout::environment(
        viewer,
        env,
        Tab::Access,
        html! {
            (alert(error))
            (notice(done))
            h2 { "Access requests" }
            @match &requests {
                Err(refused) => p.muted { (refused) },
                Ok(list) => {
                    div.scroll { table #requests {
                        thead { tr { th { "Who" } th { "Role" } th { "For" } th { "Why" } th { "Status" } @if decides { th { "Decide" } } } }
                        tbody {
                            @for r in list["data"].as_array().into_iter().flatten() {
                                @let id = text(r, "request_id");
                                @let status = text(r, "status");
                                tr {
                                    td { (text(r, "requester_id")) }
                                    td { (text(r, "current_role")) " → " strong { (text(r, "requested_role")) } }
                                    td { (r["duration_minutes"]) " min" }
                                    td { (text(r, "reason")) }
                                    td {
                                        (status)
                                        @if let Some(until) = r["expires_at"].as_str() { br; span.muted { "until " (until) } }
                                        @if let Some(c) = r["comment"].as_str() { br; span.muted { "“" (c) "”" } }
                                    }
                                    @if decides {
                                        td {
                                            @let actions: &[(&str, &str)] = match status { "pending" => &[("approve", "Approve"), ("deny", "Deny")], "approved" => &[("revoke", "End now")], _ => &[] };
                                            @for (act, label) in actions {
                                                form.inline method="post" action={ "/environments/" (env_id) "/access/" (id) "/" (act) } {
                                                    (csrf(viewer))
                                                    label.sr for={ "comment-" (act) "-" (id) } { "Comment" }
                                                    input.short id={ "comment-" (act) "-" (id) } type="text" name="comment" placeholder="comment";
                                                    button.danger[*act != "approve"] type="submit" aria-label={ (label) " " (text(r, "requested_role")) " for " (text(r, "requester_id")) } { (label) }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    } }
                    @if let Some(cursor) = list["pagination"]["cursor"].as_str() {
                        nav.pages { a href={ "/environments/" (env_id) "/access?cursor=" (encoded(cursor)) } { "Next page" } }
                    }
                }
            }
            h2 { "Ask for more access here" }
            form.wide method="post" action={ "/environments/" (env_id) "/access" } {
                (csrf(viewer))
                label for="jit-role" { "Role" }
                select #jit-role name="requested_role" {
                    @for role in ["admin", "developer", "analyst", "auditor", "service_account"] { option value=(role) { (role) } }
                }
                label for="jit-minutes" { "For how long (minutes, 15–1440)" }
                input #jit-minutes type="number" name="duration_minutes" value="60" min="15" max="1440" required;
                label for="jit-reason" { "Why" }
                textarea #jit-reason name="reason" rows="2" required maxlength="1000" {}
                button type="submit" { "Ask" }
            }
        },
    )
}

//! The organization's members and invitations: each person's role, status, second factor and
//! attributes (which row filters use); invite someone (the invitation's link shown once),
//! change a role, suspend or reactivate, remove.

use axum::extract::{Path, Query};
use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::api::Answer;
use super::layout::{alert, csrf, layout, notice, roles, text, Viewer};
use super::respond::{not_found, page, see_other};
use super::session;
use super::signed::{encoded, Posted, Signed};

#[derive(Deserialize)]
pub(super) struct ListQuery {
    cursor: Option<String>,
    done: Option<String>,
}

fn done_message(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "role" => "Role changed.",
        "suspended" => "Suspended: their sessions and keys stop working at once.",
        "active" => "Active again.",
        "removed" => "Removed from the organization.",
        "attributes" => "Attributes saved.",
        _ => return None,
    })
}

/// A user id as the API makes them (`usr_…`): nothing else reaches a path.
fn id_ok(id: &str) -> bool {
    enclave_core::id::UserId::parse(id).is_some()
}

pub(super) async fn list(signed: Signed, Query(q): Query<ListQuery>) -> Response {
    let link = session::cookie(&signed.headers, session::FLASH);
    let forget = link
        .is_some()
        .then(|| session::flash("/members", "", Some(0), signed.https()));
    let done = done_message(q.done.as_deref());
    let mut resp = render(signed, q.cursor.as_deref(), None, done, link).await;
    if let Some(forget) = forget {
        resp.headers_mut().append(header::SET_COOKIE, forget);
    }
    resp
}

async fn render(
    signed: Signed,
    cursor: Option<&str>,
    error: Option<String>,
    done: Option<&str>,
    invitation: Option<String>,
) -> Response {
    let path = format!("/v1/organizations/{}/users?limit=50", signed.org_id());
    let members = signed.listing(&path, cursor).await;
    let manage = signed.org_may("manage_users");
    let markup = members_page(
        &signed.viewer(),
        members,
        manage,
        error.as_deref(),
        done,
        invitation.as_deref(),
    );
    signed.respond(page(StatusCode::OK, markup))
}

async fn after(signed: Signed, answer: Answer, done: &str) -> Response {
    match answer.ok() {
        true => signed.respond(see_other(&format!("/members?done={done}"), &[])),
        false => render(signed, None, Some(answer.error()), None, None).await,
    }
}

/// The link an invitee opens: the token rides in the fragment, which browsers never send.
fn invitation_link(signed: &Signed, token: &str) -> String {
    let host = signed
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = if signed.https() { "https" } else { "http" };
    format!("{scheme}://{host}/invite#{token}")
}

pub(super) async fn invite(posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let mut body = json!({"email": form.first("email"), "role": form.first("role")});
    if let Some(name) = form.given("name") {
        body["name"] = Value::from(name);
    }
    let path = format!("/v1/organizations/{}/users", signed.org_id());
    let made = signed.send(Method::POST, &path, Some(&body)).await;
    match made.body["invitation"]["token"].as_str() {
        Some(token) if made.ok() => {
            let link = invitation_link(&signed, token);
            let flash = session::flash("/members", &link, Some(60), signed.https());
            signed.respond(see_other("/members", &[flash]))
        }
        _ => render(signed, None, Some(made.error()), None, None).await,
    }
}

/// Change a member's role, suspend or reactivate them, set their attributes, or remove them.
pub(super) async fn action(
    Path((user_id, action)): Path<(String, String)>,
    posted: Posted,
) -> Response {
    let Posted { signed, form } = posted;
    if !id_ok(&user_id) {
        return not_found();
    }
    let path = format!("/v1/organizations/{}/users/{user_id}", signed.org_id());
    let (answer, done) = match action.as_str() {
        "role" => {
            let body = json!({"role": form.first("role")});
            let role = format!("{path}/role");
            (signed.send(Method::PUT, &role, Some(&body)).await, "role")
        }
        "suspend" | "activate" => {
            let status = if action == "suspend" {
                "suspended"
            } else {
                "active"
            };
            let body = json!({"status": status});
            let answer = signed.send(Method::PATCH, &path, Some(&body)).await;
            (answer, status)
        }
        "attributes" => {
            let mut attributes = Map::new();
            for line in form.first("attributes").lines() {
                if let Some((k, v)) = line.split_once('=') {
                    attributes.insert(k.trim().to_string(), Value::from(v.trim()));
                }
            }
            let body = json!({"attributes": attributes});
            let answer = signed.send(Method::PATCH, &path, Some(&body)).await;
            (answer, "attributes")
        }
        "remove" => (signed.send(Method::DELETE, &path, None).await, "removed"),
        _ => return not_found(),
    };
    after(signed, answer, done).await
}

fn members_page(
    viewer: &Viewer,
    members: Result<Value, String>,
    manage: bool,
    error: Option<&str>,
    done: Option<&str>,
    invitation: Option<&str>,
) -> Markup {
    layout(
        "Members",
        Some(viewer),
        html! {
            h1 { "Members" }
            (alert(error))
            (notice(done))
            @if let Some(link) = invitation {
                section.secret aria-labelledby="invite-title" {
                    h2 #invite-title { "Invitation — send this link now: it is not shown again" }
                    label for="invite-link" { "Invitation link (valid 7 days)" }
                    input #invite-link type="text" readonly value=(link);
                    button type="button" data-copy="invite-link" { "Copy" }
                }
            }
            @match &members {
                Err(refused) => p.muted { (refused) },
                Ok(list) => {
                    div.scroll { table #members {
                        thead { tr { th { "E-mail" } th { "Name" } th { "Role" } th { "Status" } th { "MFA" } th { "Attributes" } @if manage { th { "Change" } } } }
                        tbody {
                            @for m in list["data"].as_array().into_iter().flatten() {
                                (member_row(viewer, m, manage))
                            }
                        }
                    } }
                    p.muted { (list["pagination"]["total"]) " members and invitations" }
                    @if let Some(cursor) = list["pagination"]["cursor"].as_str() {
                        nav.pages { a href={ "/members?cursor=" (encoded(cursor)) } { "Next page" } }
                    }
                }
            }
            @if manage {
                h2 { "Invite someone" }
                form.wide method="post" action="/members" {
                    (csrf(viewer))
                    label for="invite-email" { "E-mail" }
                    input #invite-email type="email" name="email" required;
                    label for="invite-name" { "Name" }
                    input #invite-name type="text" name="name";
                    label for="invite-role" { "Role" }
                    select #invite-role name="role" {
                        @for role in roles().skip(1) { option value=(role) selected[role == "analyst"] { (role) } }
                    }
                    button type="submit" { "Invite" }
                }
            }
        },
    )
}

fn member_row(viewer: &Viewer, m: &Value, manage: bool) -> Markup {
    let id = text(m, "user_id");
    let email = text(m, "email");
    let attributes: String = m["attributes"]
        .as_object()
        .map(|a| {
            a.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    let form_to = |action: &str| format!("/members/{id}/{action}");
    html! {
        tr {
            td { (email) }
            td { (text(m, "name")) }
            td { (text(m, "role")) }
            td {
                (text(m, "status"))
                @if let Some(exp) = m["invitation"]["expires_at"].as_str() { br; span.muted { "invitation until " (exp) } }
            }
            td { @if m["mfa_enabled"] == true { "on" } @else { "off" } }
            td { code { (attributes) } }
            @if manage {
                td {
                    form.inline method="post" action=(form_to("role")) {
                        (csrf(viewer))
                        label.sr for={ "role-" (id) } { "Role of " (email) }
                        select id={ "role-" (id) } name="role" {
                            @for role in roles() { option value=(role) selected[text(m, "role") == role] { (role) } }
                        }
                        button type="submit" aria-label={ "Set the role of " (email) } { "Set role" }
                    }
                    @let (act, label) = if text(m, "status") == "suspended" { ("activate", "Reactivate") } else { ("suspend", "Suspend") };
                    @if text(m, "status") != "invited" {
                        form.inline method="post" action=(form_to(act)) {
                            (csrf(viewer))
                            button type="submit" aria-label={ (label) " " (email) } { (label) }
                        }
                    }
                    form.inline method="post" action=(form_to("remove")) {
                        (csrf(viewer))
                        button.danger type="submit" aria-label={ "Remove " (email) } { "Remove" }
                    }
                    details {
                        summary { "Attributes" }
                        form method="post" action=(form_to("attributes")) {
                            (csrf(viewer))
                            label for={ "attributes-" (id) } { "Attributes of " (email) " (key=value lines)" }
                            textarea id={ "attributes-" (id) } name="attributes" rows="3" { (attributes) }
                            button type="submit" { "Save attributes" }
                        }
                    }
                }
            }
        }
    }
}

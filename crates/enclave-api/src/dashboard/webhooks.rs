//! The organization's webhooks: each endpoint with its events and state; add one (its signing
//! secret shown once), send a test event, rotate the secret, switch off and on, delete; and an
//! endpoint's delivery log with every attempt, each delivery redeliverable.

use axum::extract::{Path, Query};
use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::Answer;
use super::layout::{alert, csrf, joined, layout, notice, text, Viewer};
use super::respond::{not_found, page, see_other};
use super::session;
use super::signed::{encoded, server_id, Posted, Signed};

#[derive(Deserialize)]
pub(super) struct Done {
    done: Option<String>,
    cursor: Option<String>,
}

fn done_message(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "test" => "A test event is on its way; its delivery shows in the endpoint's log.",
        "disable" => "Switched off: no events are sent to it.",
        "enable" => "Switched on.",
        "delete" => "Webhook deleted.",
        "redeliver" => "Queued for delivery again.",
        _ => return None,
    })
}

fn base(signed: &Signed) -> String {
    format!("/v1/organizations/{}/webhooks", signed.org_id())
}

pub(super) async fn list(signed: Signed, Query(q): Query<Done>) -> Response {
    let secret = session::cookie(&signed.headers, session::FLASH);
    let forget = secret
        .is_some()
        .then(|| session::flash("/webhooks", "", Some(0), signed.https()));
    let mut resp = render(signed, None, done_message(q.done.as_deref()), secret).await;
    if let Some(forget) = forget {
        resp.headers_mut().append(header::SET_COOKIE, forget);
    }
    resp
}

async fn render(
    signed: Signed,
    error: Option<String>,
    done: Option<&str>,
    secret: Option<String>,
) -> Response {
    let answer = signed.get(&format!("{}?limit=200", base(&signed))).await;
    let hooks = answer.into_result();
    let manage = signed.org_may("manage_webhooks");
    let markup = webhooks_page(
        &signed.viewer(),
        hooks,
        manage,
        error.as_deref(),
        done,
        secret.as_deref(),
    );
    signed.respond(page(StatusCode::OK, markup))
}

/// After a change that made a signing secret: back to the list, which shows it once.
fn show_secret(signed: Signed, answer: &Answer) -> Response {
    let secret = answer.body["signing_secret"].as_str().unwrap_or_default();
    let flash = session::flash("/webhooks", secret, Some(60), signed.https());
    signed.respond(see_other("/webhooks", &[flash]))
}

pub(super) async fn create(posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let mut body = json!({"url": form.first("url"), "events": form.all("events")});
    if let Some(d) = form.given("description") {
        body["description"] = Value::from(d);
    }
    let made = signed.send(Method::POST, &base(&signed), Some(&body)).await;
    match made.ok() {
        true => show_secret(signed, &made),
        false => render(signed, Some(made.error()), None, None).await,
    }
}

pub(super) async fn action(
    Path((webhook_id, action)): Path<(String, String)>,
    posted: Posted,
) -> Response {
    let signed = posted.signed;
    if !server_id(&webhook_id) {
        return not_found();
    }
    let path = format!("{}/{webhook_id}", base(&signed));
    let answer = match action.as_str() {
        "test" => {
            let test = format!("{path}/test");
            signed.send(Method::POST, &test, Some(&json!({}))).await
        }
        "rotate" => {
            let rotate = format!("{path}/rotate-secret");
            let answer = signed.send(Method::POST, &rotate, Some(&json!({}))).await;
            if answer.ok() {
                return show_secret(signed, &answer);
            }
            answer
        }
        "enable" | "disable" => {
            let status = if action == "enable" {
                "active"
            } else {
                "disabled"
            };
            let body = json!({"status": status});
            signed.send(Method::PATCH, &path, Some(&body)).await
        }
        "delete" => signed.send(Method::DELETE, &path, None).await,
        _ => return not_found(),
    };
    match answer.ok() {
        true => signed.respond(see_other(&format!("/webhooks?done={action}"), &[])),
        false => render(signed, Some(answer.error()), None, None).await,
    }
}

/// One endpoint's delivery log.
pub(super) async fn deliveries(
    signed: Signed,
    Path(webhook_id): Path<String>,
    Query(q): Query<Done>,
) -> Response {
    if !server_id(&webhook_id) {
        return not_found();
    }
    let path = format!("{}/{webhook_id}", base(&signed));
    let hook = signed.get(&path).await;
    if !hook.ok() {
        return signed.refused(&hook);
    }
    let mut list = format!("{path}/deliveries?limit=50");
    if let Some(c) = &q.cursor {
        list.push_str(&format!("&cursor={}", encoded(c)));
    }
    let log = signed.get(&list).await;
    if !log.ok() {
        return signed.refused(&log);
    }
    let done = done_message(q.done.as_deref());
    let markup = deliveries_page(&signed.viewer(), &hook.body, &log.body, done);
    signed.respond(page(StatusCode::OK, markup))
}

pub(super) async fn redeliver(
    Path((webhook_id, delivery_id)): Path<(String, String)>,
    posted: Posted,
) -> Response {
    let signed = posted.signed;
    if !server_id(&webhook_id) || !server_id(&delivery_id) {
        return not_found();
    }
    let path = format!(
        "{}/{webhook_id}/deliveries/{delivery_id}/redeliver",
        base(&signed)
    );
    let answer = signed.send(Method::POST, &path, Some(&json!({}))).await;
    match answer.ok() {
        true => signed.respond(see_other(
            &format!("/webhooks/{webhook_id}?done=redeliver"),
            &[],
        )),
        false => signed.refused(&answer),
    }
}

fn webhooks_page(
    viewer: &Viewer,
    hooks: Result<Value, String>,
    manage: bool,
    error: Option<&str>,
    done: Option<&str>,
    secret: Option<&str>,
) -> Markup {
    layout(
        "Webhooks",
        Some(viewer),
        html! {
            h1 { "Webhooks" }
            (alert(error))
            (notice(done))
            @if let Some(s) = secret {
                section.secret aria-labelledby="secret-title" {
                    h2 #secret-title { "Signing secret — copy it now: it is not shown again" }
                    label for="signing-secret" { "Signing secret" }
                    input #signing-secret type="text" readonly value=(s);
                    button type="button" data-copy="signing-secret" { "Copy" }
                }
            }
            @match &hooks {
                Err(refused) => p.muted { (refused) },
                Ok(list) => {
                    div.scroll { table #webhooks {
                        thead { tr { th { "Endpoint" } th { "Events" } th { "Status" } @if manage { th { "Change" } } } }
                        tbody {
                            @for h in list["data"].as_array().into_iter().flatten() {
                                @let id = text(h, "webhook_id");
                                @let url = text(h, "url");
                                tr {
                                    td { a href={ "/webhooks/" (id) } { (url) } br; span.muted { (text(h, "description")) } }
                                    td { (joined(&h["events"])) }
                                    td {
                                        (text(h, "status"))
                                        @if let Some(r) = h["disabled_reason"].as_str() { " (" (r) ")" }
                                        @if h["consecutive_failures"].as_i64().unwrap_or(0) > 0 { br; span.muted { (h["consecutive_failures"]) " failures in a row" } }
                                    }
                                    @if manage { td {
                                        @let toggle = if text(h, "status") == "active" { ("disable", "Switch off") } else { ("enable", "Switch on") };
                                        @for (act, label) in [("test", "Send test"), ("rotate", "Rotate secret"), toggle, ("delete", "Delete")] {
                                            form.inline method="post" action={ "/webhooks/" (id) "/" (act) } {
                                                (csrf(viewer))
                                                button.danger[act == "delete"] type="submit" aria-label={ (label) " " (url) } { (label) }
                                            }
                                        }
                                    } }
                                }
                            }
                        }
                    } }
                }
            }
            @if manage {
            h2 { "New webhook" }
            form.wide method="post" action="/webhooks" {
                (csrf(viewer))
                label for="hook-url" { "URL (https://…)" }
                input #hook-url type="url" name="url" required;
                label for="hook-description" { "Description" }
                input #hook-description type="text" name="description";
                fieldset {
                    legend { "Events" }
                    label.check { input type="checkbox" name="events" value="*"; " every event (*)" }
                    @for e in enclave_core::webhook::EVENT_TYPES { label.check { input type="checkbox" name="events" value=(e); " " (e) } }
                }
                button type="submit" { "Add webhook" }
            }
            }
        },
    )
}

fn deliveries_page(viewer: &Viewer, hook: &Value, log: &Value, done: Option<&str>) -> Markup {
    let id = text(hook, "webhook_id");
    layout(
        "Deliveries",
        Some(viewer),
        html! {
            p { a href="/webhooks" { "← Webhooks" } }
            h1 { "Deliveries to " (text(hook, "url")) }
            (notice(done))
            div.scroll { table #deliveries {
                thead { tr { th { "Event" } th { "Status" } th { "Attempts" } th { "Created" } th { "Again" } } }
                tbody {
                    @for d in log["data"].as_array().into_iter().flatten() {
                        tr {
                            td { code { (text(d, "event_type")) } br; span.muted { (text(d, "event_id")) } }
                            td {
                                (text(d, "status"))
                                @if let Some(next) = d["next_attempt_at"].as_str() { br; span.muted { "next try " (next) } }
                            }
                            td {
                                @for a in d["attempts"].as_array().into_iter().flatten() {
                                    div {
                                        "#" (a["attempt"]) ": "
                                        @if let Some(code) = a["status_code"].as_i64() { "HTTP " (code) } @else { (text(a, "error")) }
                                        " in " (a["latency_ms"]) " ms"
                                    }
                                }
                            }
                            td.muted { (text(d, "created_at")) }
                            td {
                                form.inline method="post" action={ "/webhooks/" (id) "/deliveries/" (text(d, "delivery_id")) "/redeliver" } {
                                    (csrf(viewer))
                                    button type="submit" aria-label={ "Redeliver " (text(d, "event_type")) } { "Redeliver" }
                                }
                            }
                        }
                    }
                }
            } }
            @if let Some(cursor) = log["pagination"]["cursor"].as_str() {
                nav.pages { a href={ "/webhooks/" (id) "?cursor=" (encoded(cursor)) } { "Next page" } }
            }
        },
    )
}

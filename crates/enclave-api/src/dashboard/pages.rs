//! The dashboard's pages, rendered on the server (maud): no script, one stylesheet of its own,
//! every input labelled and every control a plain link, button or form field.

use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

/// Who is signed in, for the page's header.
pub(super) struct Viewer {
    pub(super) email: String,
    /// Their role in the organization they are signed in to.
    pub(super) role: String,
    pub(super) csrf: String,
}

fn layout(title: &str, viewer: Option<&Viewer>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Enclave" }
                link rel="stylesheet" href="/assets/dashboard.css";
                link rel="icon" href="/assets/favicon.svg" type="image/svg+xml";
            }
            body {
                header {
                    span.brand { "Enclave" }
                    @if let Some(v) = viewer {
                        nav { a href="/environments" { "Environments" } }
                        span { (v.email) " · " (v.role) }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(v.csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

pub(super) fn login(csrf: &str, email: &str, error: Option<&str>) -> Markup {
    layout(
        "Log in",
        None,
        html! {
            form.card method="post" action="/login" {
                h1 { "Log in" }
                @if let Some(e) = error { p.error role="alert" { (e) } }
                input type="hidden" name="csrf" value=(csrf);
                label for="email" { "E-mail" }
                input #email type="email" name="email" value=(email) autocomplete="username" required autofocus;
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                button type="submit" { "Log in" }
            }
        },
    )
}

pub(super) fn second_factor(csrf: &str, mfa_token: &str, error: Option<&str>) -> Markup {
    layout(
        "Second factor",
        None,
        html! {
            form.card method="post" action="/login/mfa" {
                h1 { "Second factor" }
                @if let Some(e) = error { p.error role="alert" { (e) } }
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="mfa_token" value=(mfa_token);
                label for="code" { "Code from your authenticator app, or a recovery code" }
                input #code type="text" name="code" inputmode="numeric" autocomplete="one-time-code" required autofocus;
                button type="submit" { "Verify" }
            }
        },
    )
}

fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or_default()
}

pub(super) fn environments(viewer: &Viewer, page: &Value, error: Option<&str>) -> Markup {
    let rows = page["data"].as_array().cloned().unwrap_or_default();
    let next = page["pagination"]["cursor"].as_str();
    layout(
        "Environments",
        Some(viewer),
        html! {
            h1 { "Environments" }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            table {
                thead { tr { th { "Name" } th { "Slug" } th { "Type" } th { "Status" } th { "Connection" } } }
                tbody {
                    @for env in &rows {
                        tr {
                            td {
                                svg width="14" height="14" aria-hidden="true" {
                                    circle cx="7" cy="7" r="6" fill=(text(env, "color")) {}
                                }
                                " " (text(env, "name"))
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
                        }
                    }
                }
            }
            p.muted { (page["pagination"]["total"]) " environments" }
            @if let Some(cursor) = next {
                nav.pages { a href={ "/environments?cursor=" (cursor) } { "Next page" } }
            }
        },
    )
}

pub(super) fn refused(message: &str) -> Markup {
    layout(
        "Refused",
        None,
        html! {
            h1 { "Refused" }
            p.error role="alert" { (message) }
            p { a href="/login" { "Back to the log-in page" } }
        },
    )
}

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
                script src="/assets/dashboard.js" defer {}
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
                                " " a href={ "/environments/" (text(env, "env_id")) } { (text(env, "name")) }
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

/// A key's secret, shown once after it was made.
pub(super) struct NewSecret {
    pub(super) key: String,
    pub(super) what: &'static str,
}

/// One environment: its connection details and its API keys.
pub(super) fn environment(
    viewer: &Viewer,
    env: &Value,
    keys: Option<&Value>,
    secret: Option<&NewSecret>,
    error: Option<&str>,
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
    let rows = keys
        .and_then(|k| k["data"].as_array().cloned())
        .unwrap_or_default();
    layout(
        text(env, "name"),
        Some(viewer),
        html! {
            p { a href="/environments" { "← Environments" } }
            h1 { (text(env, "name")) " " span.muted { "(" (text(env, "slug")) ", " (text(env, "type")) ", " (text(env, "status")) ")" } }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            @if let Some(s) = secret {
                section.secret aria-labelledby="secret-title" {
                    h2 #secret-title { (s.what) " — copy it now: it is not shown again" }
                    label for="new-key" { "API key" }
                    input #new-key type="text" readonly value=(s.key);
                    button type="button" data-copy="new-key" { "Copy" }
                }
            }
            h2 { "Connect" }
            p { "With " code { "psql" } " (the password: an API key of this environment, or your access token):" }
            pre { code { (psql) } }
            @if keys.is_some() {
            h2 { "API keys" }
            table {
                thead { tr { th { "Name" } th { "Prefix" } th { "Role" } th { "Scopes" } th { "Status" } th { "Expires" } th { "Actions" } } }
                tbody {
                    @for key in &rows {
                        @let key_id = text(key, "key_id");
                        tr {
                            td { (text(key, "name")) }
                            td { code { (text(key, "prefix")) "…" } }
                            td { (text(key, "role")) }
                            td { (key["scopes"].as_array().map(|s| s.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
                            td { (text(key, "status")) }
                            td { (key["expires_at"].as_str().unwrap_or("never")) }
                            td {
                                @if text(key, "status") != "revoked" {
                                    form.inline method="post" action={ "/environments/" (env_id) "/keys/" (key_id) "/rotate" } {
                                        input type="hidden" name="csrf" value=(viewer.csrf);
                                        button type="submit" aria-label={ "Rotate " (text(key, "name")) } { "Rotate" }
                                    }
                                    form.inline method="post" action={ "/environments/" (env_id) "/keys/" (key_id) "/revoke" } {
                                        input type="hidden" name="csrf" value=(viewer.csrf);
                                        button.danger type="submit" aria-label={ "Revoke " (text(key, "name")) } { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "New API key" }
            form.wide method="post" action={ "/environments/" (env_id) "/keys" } {
                input type="hidden" name="csrf" value=(viewer.csrf);
                label for="key-name" { "Name" }
                input #key-name type="text" name="name" required;
                label for="key-role" { "Role" }
                select #key-role name="role" {
                    @for role in ["analyst", "developer", "auditor", "service_account", "admin"] {
                        option value=(role) { (role) }
                    }
                }
                fieldset {
                    legend { "Scopes" }
                    @for scope in SCOPES {
                        label.check {
                            input type="checkbox" name="scopes" value=(scope);
                            " " (scope)
                        }
                    }
                }
                label for="key-expiry" { "Expires after (days; empty: never)" }
                input #key-expiry type="number" name="expires_in_days" min="1";
                button type="submit" { "Create key" }
            }
            }
        },
    )
}

/// The scope bundles, then every scope, as `POST …/api-keys` takes them.
const SCOPES: [&str; 21] = [
    "read_only",
    "developer",
    "admin",
    "agent",
    "query:read",
    "query:write",
    "tables:list",
    "tables:describe",
    "tables:create",
    "tables:alter",
    "schemas:read",
    "secrets:read",
    "secrets:write",
    "policies:read",
    "policies:manage",
    "keys:manage",
    "audit:read",
    "environments:read",
    "environments:manage",
    "webhooks:manage",
    "billing:read",
];

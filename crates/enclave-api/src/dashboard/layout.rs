//! The markup every page shares (maud): the page frame with its header, an environment's
//! tabs, the refusal page and small pieces (a form's CSRF field, an alert). No script is
//! needed for any of it; every input is labelled and every control a plain link, button or
//! form field.

use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

/// Who is signed in, for the page's header and its forms.
pub(super) struct Viewer {
    pub(super) email: String,
    /// Their role in the organization they are signed in to.
    pub(super) role: String,
    pub(super) csrf: String,
    /// The organization's pages the API lets them use, as (path, label).
    pub(super) pages: Vec<(&'static str, &'static str)>,
}

/// The organization's pages, each with the permission (as `/v1/auth/me` names it) it needs.
pub(super) const ORG_PAGES: [(&str, &str, &str); 5] = [
    ("/environments", "Environments", "read_environments"),
    ("/audit", "Audit", "read_audit"),
    ("/members", "Members", "manage_users"),
    ("/webhooks", "Webhooks", "manage_webhooks"),
    ("/usage", "Usage", "read_billing"),
];

pub(super) fn layout(title: &str, viewer: Option<&Viewer>, body: Markup) -> Markup {
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
                        nav aria-label="Organization" {
                            @for (path, label) in &v.pages { a href=(path) { (label) } }
                        }
                        span { (v.email) " · " (v.role) }
                        form method="post" action="/logout" {
                            (csrf(v))
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The hidden field every form carries.
pub(super) fn csrf(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(viewer.csrf); }
}

/// An error the API named, announced to screen readers.
pub(super) fn alert(error: Option<&str>) -> Markup {
    html! { @if let Some(e) = error { p.error role="alert" { (e) } } }
}

/// A confirmation of what was just done.
pub(super) fn notice(message: Option<&str>) -> Markup {
    html! { @if let Some(m) = message { p.notice role="status" { (m) } } }
}

pub(super) fn refused(message: &str) -> Markup {
    layout(
        "Refused",
        None,
        html! {
            h1 { "Refused" }
            p.error role="alert" { (message) }
            p { a href="/environments" { "Back to the environments" } }
        },
    )
}

pub(super) fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or_default()
}

/// A list of strings as one comma-separated text.
pub(super) fn joined(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// Every role, by the name the API takes.
pub(super) fn roles() -> impl Iterator<Item = &'static str> {
    enclave_core::Role::ALL.into_iter().map(|r| r.as_str())
}

/// One environment's tabs.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Tab {
    Overview,
    Keys,
    Secrets,
    Policies,
    Promote,
    Console,
    QueryAudit,
    Access,
    Agents,
}

const TABS: [(Tab, &str, &str); 9] = [
    (Tab::Overview, "", "Overview"),
    (Tab::Keys, "/keys", "API keys"),
    (Tab::Secrets, "/secrets", "Secrets"),
    (Tab::Policies, "/policies", "Policies"),
    (Tab::Promote, "/promote", "Promote"),
    (Tab::Console, "/console", "SQL console"),
    (Tab::QueryAudit, "/queries", "Query audit"),
    (Tab::Access, "/access", "Access requests"),
    (Tab::Agents, "/agents", "Agents"),
];

/// A page of one environment: its name, its tabs, then `body`.
pub(super) fn environment(viewer: &Viewer, env: &Value, tab: Tab, body: Markup) -> Markup {
    let env_id = text(env, "env_id");
    let title = TABS.iter().find(|t| t.0 == tab).map(|t| t.2).unwrap_or("");
    layout(
        &format!("{title} · {}", text(env, "name")),
        Some(viewer),
        html! {
            p { a href="/environments" { "← Environments" } }
            h1 {
                svg width="14" height="14" aria-hidden="true" { circle cx="7" cy="7" r="6" fill=(text(env, "color")) {} }
                " " (text(env, "name")) " "
                span.muted { "(" (text(env, "slug")) ", " (text(env, "type")) ", " (text(env, "status"))
                    @if env["locked"] == true { ", locked" } ")" }
            }
            nav.tabs aria-label="Environment" {
                @for (t, path, label) in TABS {
                    @if t == tab {
                        a href={ "/environments/" (env_id) (path) } aria-current="page" { (label) }
                    } @else {
                        a href={ "/environments/" (env_id) (path) } { (label) }
                    }
                }
            }
            (body)
        },
    )
}

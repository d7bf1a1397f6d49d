//! The audit trails: the organization's IAM trail and an environment's query audit, each
//! with the API's filters, its cursors, and "verify chain" with the API's verdict.

use std::collections::BTreeMap;

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use serde_json::Value;

use super::layout::{self, alert, joined, layout, text, Tab};
use super::respond::page;
use super::signed::{encoded, Signed};

/// The IAM trail's filters, as `GET …/audit/iam` takes them.
const IAM_FILTERS: [(&str, &str); 6] = [
    ("actor_id", "Actor (usr_…, key_… or system)"),
    ("action", "Action (e.g. environment.created)"),
    ("resource_type", "Resource type"),
    ("env_id", "Environment id"),
    ("start_date", "From (YYYY-MM-DD)"),
    ("end_date", "Until, exclusive (YYYY-MM-DD)"),
];

/// The query audit's filters, as `GET …/audit/queries` takes them.
const QUERY_FILTERS: [(&str, &str); 5] = [
    ("principal_id", "Who (usr_… or key_…)"),
    (
        "outcome",
        "Outcome (ok, error, refused, timeout, cancelled)",
    ),
    ("statement_kind", "Statement (read, write, ddl, session)"),
    ("start_date", "From (YYYY-MM-DD)"),
    ("end_date", "Until, exclusive (YYYY-MM-DD)"),
];

/// The filters given (non-empty, known ones only) as a query string, without `?`.
fn filter_query(q: &BTreeMap<String, String>, known: &[(&str, &str)]) -> String {
    known
        .iter()
        .filter_map(|(name, _)| {
            let v = q.get(*name)?.trim();
            (!v.is_empty()).then(|| format!("{name}={}", encoded(v)))
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The path of one page of a trail: its filters, then the cursor.
fn listing(base: &str, filters: &str, q: &BTreeMap<String, String>) -> String {
    let mut path = format!("{base}?limit=50");
    if !filters.is_empty() {
        path.push('&');
        path.push_str(filters);
    }
    if let Some(c) = q.get("cursor").filter(|c| !c.is_empty()) {
        path.push_str(&format!("&cursor={}", encoded(c)));
    }
    path
}

/// One trail as a page: its entries (or the API's refusal) and, when asked, the chain's
/// verdict.
struct Trail {
    entries: Result<Value, String>,
    verdict: Option<Result<Value, String>>,
    filters: String,
}

async fn trail(
    signed: &Signed,
    base: &str,
    known: &[(&str, &str)],
    q: &BTreeMap<String, String>,
) -> Trail {
    let filters = filter_query(q, known);
    let answer = signed.get(&listing(base, &filters, q)).await;
    let entries = answer.into_result();
    let verdict = match q.get("verify").map(String::as_str) {
        Some("true") => {
            let v = signed.get(&format!("{base}/verify")).await;
            Some(match v.ok() {
                true => Ok(v.body),
                false => Err(v.error()),
            })
        }
        _ => None,
    };
    Trail {
        entries,
        verdict,
        filters,
    }
}

pub(super) async fn iam(signed: Signed, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let base = format!("/v1/organizations/{}/audit/iam", signed.org_id());
    let t = trail(&signed, &base, &IAM_FILTERS, &q).await;
    let markup = layout(
        "Audit",
        Some(&signed.viewer()),
        html! {
            h1 { "Audit trail" }
            (trail_page("/audit", &IAM_FILTERS, &q, &t, iam_rows))
        },
    );
    signed.respond(page(StatusCode::OK, markup))
}

pub(super) async fn queries(
    signed: Signed,
    Path(env_id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let (signed, env) = match signed.environment(&env_id).await {
        Ok(x) => x,
        Err(refused) => return refused,
    };
    let base = format!("/v1/environments/{env_id}/audit/queries");
    let t = trail(&signed, &base, &QUERY_FILTERS, &q).await;
    let here = format!("/environments/{env_id}/queries");
    let markup = layout::environment(
        &signed.viewer(),
        &env,
        Tab::QueryAudit,
        trail_page(&here, &QUERY_FILTERS, &q, &t, query_rows),
    );
    signed.respond(page(StatusCode::OK, markup))
}

fn trail_page(
    here: &str,
    known: &[(&str, &str)],
    q: &BTreeMap<String, String>,
    t: &Trail,
    rows: fn(&Value) -> Markup,
) -> Markup {
    let with_filters = |extra: &str| match (t.filters.is_empty(), extra.is_empty()) {
        (true, _) => format!("{here}?{extra}"),
        (false, true) => format!("{here}?{}", t.filters),
        (false, false) => format!("{here}?{}&{extra}", t.filters),
    };
    html! {
        form.filters method="get" action=(here) {
            @for (name, label) in known {
                div {
                    label for={ "f-" (name) } { (label) }
                    input id={ "f-" (name) } type="text" name=(name) value=(q.get(*name).map(String::as_str).unwrap_or_default());
                }
            }
            button type="submit" { "Filter" }
        }
        p {
            a href=(with_filters("verify=true")) { "Verify chain" }
        }
        @if let Some(verdict) = &t.verdict {
            @match verdict {
                Err(e) => p.error role="alert" { (e) },
                Ok(v) => {
                    @if v["chain_valid"] == true {
                        p.notice role="status" #verdict { "Chain intact: " (v["entry_count"]) " entries verified, from the first to the last hash." }
                    } @else {
                        p.error role="alert" #verdict {
                            "Chain broken at entry " (v["first_invalid_entry"]["position"]) " ("
                            (text(&v["first_invalid_entry"], "entry_id")) "): " (text(&v["first_invalid_entry"], "reason"))
                        }
                    }
                }
            }
        }
        @match &t.entries {
            Err(e) => (alert(Some(e.as_str()))),
            Ok(page) => {
                div.scroll { (rows(page)) }
                p.muted { (page["pagination"]["total"]) " entries" }
                @if let Some(cursor) = page["pagination"]["cursor"].as_str() {
                    nav.pages { a href=(with_filters(&format!("cursor={}", encoded(cursor)))) { "Next page" } }
                }
            }
        }
    }
}

fn iam_rows(page: &Value) -> Markup {
    html! {
        table #audit {
            thead { tr { th { "#" } th { "When" } th { "Who" } th { "Action" } th { "Resource" } th { "Environment" } } }
            tbody {
                @for e in page["data"].as_array().into_iter().flatten() {
                    tr {
                        td { (e["seq"]) }
                        td { (text(e, "created_at")) }
                        td { (text(e, "actor_id")) @if let Some(g) = e["via_grant"].as_str() { " via " (g) } }
                        td { code { (text(e, "action")) } }
                        td { (text(e, "resource_type")) " " span.muted { (text(e, "resource_id")) } }
                        td.muted { (text(e, "env_id")) }
                    }
                }
            }
        }
    }
}

fn query_rows(page: &Value) -> Markup {
    html! {
        table #audit {
            thead { tr { th { "#" } th { "When" } th { "Who" } th { "Door" } th { "SQL (redacted)" } th { "Outcome" } th { "Rows" } th { "Masked" } th { "Credits" } } }
            tbody {
                @for e in page["data"].as_array().into_iter().flatten() {
                    tr {
                        td { (e["seq"]) }
                        td { (text(e, "created_at")) }
                        td { (text(&e["principal"], "id")) " (" (text(&e["principal"], "role")) ")" }
                        td { (text(e, "door")) }
                        td { code { (text(e, "sql_redacted")) } }
                        td { (text(e, "outcome")) @if let Some(c) = e["error_code"].as_str() { " " code { (c) } } }
                        td { (e["rows_returned"]) }
                        td { (joined(&e["columns_masked"])) }
                        td { (e["credits_consumed"]) }
                    }
                }
            }
        }
    }
}

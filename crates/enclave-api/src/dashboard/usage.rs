//! The organization's usage: credits this month against the limit, a chart of credits per
//! day (an SVG drawn on the server), and each environment's share.

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{Duration, NaiveDate};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use super::layout::{alert, layout, text, Viewer};
use super::respond::page;
use super::signed::{encoded, Signed};

#[derive(Deserialize)]
pub(super) struct Range {
    start_date: Option<String>,
    end_date: Option<String>,
}

pub(super) async fn show(signed: Signed, Query(q): Query<Range>) -> Response {
    let mut path = format!(
        "/v1/organizations/{}/billing/usage?group_by=day",
        signed.org_id()
    );
    for (name, v) in [("start_date", &q.start_date), ("end_date", &q.end_date)] {
        if let Some(v) = v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            path.push_str(&format!("&{name}={}", encoded(v)));
        }
    }
    let answer = signed.get(&path).await;
    let usage = answer.into_result();
    let markup = usage_page(&signed.viewer(), usage, &q);
    signed.respond(page(StatusCode::OK, markup))
}

/// Every day of the report's range with its credits (0 for a day without statements).
fn days(usage: &Value) -> Vec<(NaiveDate, f64)> {
    let day =
        |field: &str| NaiveDate::parse_from_str(text(usage, field).get(..10)?, "%Y-%m-%d").ok();
    let (Some(start), Some(end)) = (day("start_date"), day("end_date")) else {
        return vec![];
    };
    let buckets = usage["breakdown"]["by_day"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut out = vec![];
    let mut d = start;
    // A year at most, as the API allows.
    while d < end && out.len() < 366 {
        let date = d.format("%Y-%m-%d").to_string();
        let credits = buckets
            .iter()
            .find(|b| text(b, "date") == date)
            .and_then(|b| b["credits_used"].as_f64())
            .unwrap_or(0.0);
        out.push((d, credits));
        d += Duration::days(1);
    }
    out
}

/// Credits per day as bars, each with its date and value as a tooltip and an accessible name.
fn chart(days: &[(NaiveDate, f64)]) -> Markup {
    let max = days.iter().map(|d| d.1).fold(0.0_f64, f64::max);
    let (w, h, gap) = (16.0, 160.0, 4.0);
    let width = days.len() as f64 * (w + gap);
    html! {
        figure #credits-chart {
            svg role="img" aria-label="Credits per day" width=(width) height=(h + 20.0) viewBox={ "0 0 " (width) " " (h + 20.0) } {
                @for (i, (day, credits)) in days.iter().enumerate() {
                    @let bar = if max > 0.0 { credits / max * h } else { 0.0 };
                    @let x = i as f64 * (w + gap);
                    rect x=(x) y=(h - bar) width=(w) height=(bar.max(1.0)) fill="#2563eb" {
                        title { (day.format("%Y-%m-%d")) ": " (credits) " credits" }
                    }
                    @if i % 7 == 0 {
                        text x=(x) y=(h + 15.0) font-size="10" fill="#6b7280" { (day.format("%d")) }
                    }
                }
            }
            figcaption.muted { "Credits per day (UTC); the tallest bar is " (max) " credits." }
        }
    }
}

fn usage_page(viewer: &Viewer, usage: Result<Value, String>, q: &Range) -> Markup {
    layout(
        "Usage",
        Some(viewer),
        html! {
            h1 { "Usage" }
            form.filters method="get" action="/usage" {
                div { label for="u-start" { "From (YYYY-MM-DD)" } input #u-start type="text" name="start_date" value=(q.start_date.as_deref().unwrap_or_default()); }
                div { label for="u-end" { "Until, exclusive (YYYY-MM-DD)" } input #u-end type="text" name="end_date" value=(q.end_date.as_deref().unwrap_or_default()); }
                button type="submit" { "Show" }
            }
            @match &usage {
                Err(e) => (alert(Some(e.as_str()))),
                Ok(u) => {
                    @let c = &u["credits"];
                    p #credits-summary {
                        "This month (production statements): " strong { (c["used"]) } " credits"
                        @if let Some(limit) = c["limit"].as_f64() { " of " (limit) " (" (c["usage_percent"]) " %)" } @else { ", no limit" }
                    }
                    h2 { "Credits per day, " (text(u, "start_date").get(..10).unwrap_or_default()) " to " (text(u, "end_date").get(..10).unwrap_or_default()) }
                    (chart(&days(u)))
                    p { (u["breakdown"]["queries"]["total"]) " statements, " (u["breakdown"]["credits_used"]) " credits in all environments." }
                    table #usage-by-environment {
                        thead { tr { th { "Environment" } th { "Credits" } th { "Statements" } th { "Against the limit" } } }
                        tbody {
                            @for e in u["breakdown"]["by_environment"].as_array().into_iter().flatten() {
                                tr {
                                    td { (e["name"].as_str().unwrap_or("(deleted)")) }
                                    td { (e["credits_used"]) }
                                    td { (e["query_count"]) }
                                    td { @if e["counts_against_quota"] == true { "yes" } @else { "no" } }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

//! `enclave usage` and `enclave quotas …`: the organization's credits and quotas over the
//! REST API (`/v1/organizations/{org_id}/billing/…`).

use anyhow::Context;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value};

use super::client::{segment, Client, Connection, Scope};
use super::output;

#[derive(Args, Debug)]
pub struct UsageCommand {
    #[command(flatten)]
    pub conn: Connection,
    /// Inclusive, `YYYY-MM-DD` or RFC 3339 (default: the start of this month, UTC).
    #[arg(long)]
    pub start_date: Option<String>,
    /// Exclusive (default: the start of next month).
    #[arg(long)]
    pub end_date: Option<String>,
    /// The rows of the table: `day` (default), `hour` or `week`.
    #[arg(long)]
    pub group_by: Option<String>,
}

#[derive(Args, Debug)]
pub struct QuotasCommand {
    #[command(flatten)]
    pub conn: Connection,
    #[command(subcommand)]
    pub action: QuotasAction,
}

#[derive(Subcommand, Debug)]
pub enum QuotasAction {
    /// The quotas that apply to the organization.
    Get,
    /// Change quotas (the organization's owner): `FIELD=VALUE …`, where VALUE is a number,
    /// `unlimited` (where the field allows it) or `default` (the tier's).
    Set {
        #[arg(required = true, value_name = "FIELD=VALUE")]
        changes: Vec<String>,
    },
}

/// `FIELD=VALUE` pairs as the body of the `PATCH`.
fn quota_changes(changes: &[String]) -> anyhow::Result<Value> {
    let mut body = Map::new();
    for change in changes {
        let (field, value) = change
            .split_once('=')
            .with_context(|| format!("`{change}`: expected FIELD=VALUE"))?;
        let value = match value.trim() {
            "default" => Value::Null,
            "unlimited" => Value::from("unlimited"),
            n => Value::from(
                n.parse::<u64>()
                    .with_context(|| format!("`{change}`: {n} is not a whole number"))?,
            ),
        };
        body.insert(field.trim().to_string(), value);
    }
    Ok(Value::Object(body))
}

fn query_string(cmd: &UsageCommand) -> String {
    let pairs = [
        ("start_date", &cmd.start_date),
        ("end_date", &cmd.end_date),
        ("group_by", &cmd.group_by),
    ];
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
        .collect();
    match parts.is_empty() {
        true => String::new(),
        false => format!("?{}", parts.join("&")),
    }
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn usage(cmd: UsageCommand) -> anyhow::Result<()> {
    let client = Client::connect(&cmd.conn, Scope::Organization).await?;
    let org = client.org().await?;
    let report = client
        .get(&format!(
            "/v1/organizations/{}/billing/usage{}",
            segment(&org)?,
            query_string(&cmd)
        ))
        .await?;
    if cmd.conn.json {
        output::json(&report);
        return Ok(());
    }
    let credits = &report["credits"];
    let limit = match credits["limit"].is_null() {
        true => "unlimited".to_string(),
        false => output::cell(&credits["limit"]),
    };
    output::line(&format!(
        "period {} – {}: {} of {} credits used ({}%), {} remaining",
        output::cell(&credits["period_start"]),
        output::cell(&credits["period_end"]),
        output::cell(&credits["used"]),
        limit,
        match credits["usage_percent"].is_null() {
            true => "-".to_string(),
            false => output::cell(&credits["usage_percent"]),
        },
        match credits["remaining"].is_null() {
            true => "unlimited".to_string(),
            false => output::cell(&credits["remaining"]),
        },
    ));
    let breakdown = &report["breakdown"];
    let rows = |list: &Value, keys: &[&str]| -> Vec<Vec<String>> {
        list.as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| keys.iter().map(|k| output::cell(&i[*k])).collect())
                    .collect()
            })
            .unwrap_or_default()
    };
    output::line("");
    output::table(
        &["ENVIRONMENT", "ENV_ID", "QUERIES", "CREDITS", "COUNTED"],
        &rows(
            &breakdown["by_environment"],
            &[
                "name",
                "env_id",
                "query_count",
                "credits_used",
                "counts_against_quota",
            ],
        ),
    );
    output::line("");
    output::table(
        &["FROM", "QUERIES", "CREDITS", "COUNTED CREDITS"],
        &rows(
            &breakdown["by_period"],
            &["start", "query_count", "credits_used", "credits_counted"],
        ),
    );
    let q = &breakdown["queries"];
    output::line("");
    output::line(&format!(
        "statements: {} (select {}, insert {}, update {}, delete {}, ddl {}, other {})",
        output::cell(&q["total"]),
        output::cell(&q["select"]),
        output::cell(&q["insert"]),
        output::cell(&q["update"]),
        output::cell(&q["delete"]),
        output::cell(&q["ddl"]),
        output::cell(&q["other"]),
    ));
    Ok(())
}

pub async fn quotas(cmd: QuotasCommand) -> anyhow::Result<()> {
    let client = Client::connect(&cmd.conn, Scope::Organization).await?;
    let org = client.org().await?;
    let path = format!("/v1/organizations/{}/billing/quotas", segment(&org)?);
    let answer = match cmd.action {
        QuotasAction::Get => client.get(&path).await?,
        QuotasAction::Set { changes } => {
            let body = quota_changes(&changes)?;
            client.call(Method::PATCH, &path, Some(body)).await?
        }
    };
    if cmd.conn.json {
        output::json(&answer);
        return Ok(());
    }
    output::line(&format!(
        "organization {} ({} tier)",
        output::cell(&answer["org_id"]),
        output::cell(&answer["tier"])
    ));
    let overrides = &answer["overrides"];
    let rows: Vec<Vec<String>> = answer["quotas"]
        .as_object()
        .map(|q| {
            q.iter()
                .map(|(field, value)| {
                    vec![
                        field.clone(),
                        match value.is_null() {
                            true => "unlimited".to_string(),
                            false => output::cell(value),
                        },
                        match overrides.get(field).is_some() {
                            true => "organization".to_string(),
                            false => "tier".to_string(),
                        },
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    output::table(&["QUOTA", "VALUE", "SET BY"], &rows);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_changes_become_the_patch_body() {
        let body = quota_changes(&[
            "max_users=25".into(),
            "monthly_credit_limit=unlimited".into(),
            "max_environments=default".into(),
        ])
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({"max_users": 25, "monthly_credit_limit": "unlimited", "max_environments": null})
        );
        assert!(quota_changes(&["max_users".into()]).is_err());
        assert!(quota_changes(&["max_users=-3".into()]).is_err());
    }

    #[test]
    fn the_report_range_goes_in_the_query_string() {
        let cmd = UsageCommand {
            conn: Connection {
                url: String::new(),
                token: None,
                api_key: None,
                org: None,
                json: false,
            },
            start_date: Some("2026-12-01T00:00:00+01:00".into()),
            end_date: None,
            group_by: Some("week".into()),
        };
        assert_eq!(
            query_string(&cmd),
            "?start_date=2026-12-01T00:00:00%2B01:00&group_by=week"
        );
    }
}

//! The usage report (`GET …/billing/usage`): the ledger's sums, folded into the credits of
//! the period and the breakdowns by statement kind, environment and time.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::billing::Credits;
use crate::clock::from_ms;
use crate::error::{Error, Result};
use crate::id::EnvId;
use crate::query::{Analyzed, Kind};

/// What kind of statement a ledger row counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UsageKind {
    Select,
    Insert,
    Update,
    Delete,
    Ddl,
    /// Session statements, transaction control.
    Other,
}

impl UsageKind {
    pub const ALL: [UsageKind; 6] = [
        UsageKind::Select,
        UsageKind::Insert,
        UsageKind::Update,
        UsageKind::Delete,
        UsageKind::Ddl,
        UsageKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UsageKind::Select => "select",
            UsageKind::Insert => "insert",
            UsageKind::Update => "update",
            UsageKind::Delete => "delete",
            UsageKind::Ddl => "ddl",
            UsageKind::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<UsageKind> {
        UsageKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The kind of an analyzed statement: reads (and `EXPLAIN`) are selects, `COPY` inserts,
    /// `MERGE` updates, `TRUNCATE` deletes.
    pub fn of(statement: &Analyzed) -> UsageKind {
        use sqlparser::ast::Statement as S;
        match statement.kind {
            Kind::Read => UsageKind::Select,
            Kind::Ddl => UsageKind::Ddl,
            Kind::Session => UsageKind::Other,
            Kind::Write => match &statement.statement {
                S::Insert(_) | S::Copy { .. } => UsageKind::Insert,
                S::Update(_) | S::Merge(_) => UsageKind::Update,
                S::Delete(_) | S::Truncate(_) => UsageKind::Delete,
                _ => UsageKind::Other,
            },
        }
    }
}

/// One sum of the ledger: an environment's statements of one kind in one time bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub env_id: EnvId,
    /// `None` once the environment is deleted (its usage stays).
    pub env_name: Option<String>,
    pub kind: UsageKind,
    pub counted: bool,
    pub bucket_ms: i64,
    pub queries: u64,
    pub credits: Credits,
}

/// The time buckets of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Hour,
    Day,
    Week,
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// 1970-01-05, the first Monday after the epoch: weeks start on Mondays (ISO).
const FIRST_MONDAY_MS: i64 = 4 * DAY_MS;

impl GroupBy {
    pub fn parse(s: &str) -> Result<GroupBy> {
        match s {
            "hour" => Ok(GroupBy::Hour),
            "day" => Ok(GroupBy::Day),
            "week" => Ok(GroupBy::Week),
            _ => Err(Error::validation(
                "group_by",
                "one_of",
                "group_by must be hour, day or week",
            )),
        }
    }

    /// `(bucket length, offset from the epoch)` in milliseconds.
    pub fn bucket(self) -> (i64, i64) {
        match self {
            GroupBy::Hour => (HOUR_MS, 0),
            GroupBy::Day => (DAY_MS, 0),
            GroupBy::Week => (7 * DAY_MS, FIRST_MONDAY_MS),
        }
    }
}

/// `used` as a percentage of `limit`, to two decimals (a zero limit is used up at once).
pub fn usage_percent(used: Credits, limit: Credits) -> f64 {
    if limit == Credits::ZERO {
        return if used == Credits::ZERO { 0.0 } else { 100.0 };
    }
    (used.milli() as f64 * 10_000.0 / limit.milli() as f64).round() / 100.0
}

/// The organization's credits in the current period, against its monthly limit.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreditSummary {
    /// The monthly limit; `null`: unlimited.
    #[schema(value_type = Option<f64>)]
    pub limit: Option<Credits>,
    /// Credits production statements used in the period.
    #[schema(value_type = f64)]
    pub used: Credits,
    #[schema(value_type = Option<f64>)]
    pub remaining: Option<Credits>,
    pub usage_percent: Option<f64>,
    pub period_start: String,
    pub period_end: String,
}

impl CreditSummary {
    pub fn new(limit: Option<Credits>, used: Credits, (start, end): (i64, i64)) -> Self {
        CreditSummary {
            limit,
            used,
            remaining: limit.map(|l| l.saturating_sub(used)),
            usage_percent: limit.map(|l| usage_percent(used, l)),
            period_start: crate::audit::timestamp(start),
            period_end: crate::audit::timestamp(end),
        }
    }
}

/// Statements by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct QueryCounts {
    pub total: u64,
    pub select: u64,
    pub insert: u64,
    pub update: u64,
    pub delete: u64,
    pub ddl: u64,
    /// Session statements and transaction control (free).
    pub other: u64,
}

impl QueryCounts {
    fn add(&mut self, kind: UsageKind, n: u64) {
        self.total += n;
        *match kind {
            UsageKind::Select => &mut self.select,
            UsageKind::Insert => &mut self.insert,
            UsageKind::Update => &mut self.update,
            UsageKind::Delete => &mut self.delete,
            UsageKind::Ddl => &mut self.ddl,
            UsageKind::Other => &mut self.other,
        } += n;
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EnvironmentUsage {
    pub env_id: EnvId,
    /// `null` once the environment is deleted.
    pub name: Option<String>,
    #[schema(value_type = f64)]
    pub credits_used: Credits,
    pub query_count: u64,
    /// Production: its credits count against the monthly limit (the others are only
    /// metered).
    pub counts_against_quota: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BucketUsage {
    /// The bucket's first moment, RFC 3339.
    pub start: String,
    /// Its day, `2026-12-04`.
    pub date: String,
    #[schema(value_type = f64)]
    pub credits_used: Credits,
    /// Of which production statements', against the monthly limit.
    #[schema(value_type = f64)]
    pub credits_counted: Credits,
    pub query_count: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Breakdown {
    pub queries: QueryCounts,
    /// Every environment's credits in the range, production or not.
    #[schema(value_type = f64)]
    pub credits_used: Credits,
    pub by_environment: Vec<EnvironmentUsage>,
    /// Per day.
    pub by_day: Vec<BucketUsage>,
    /// Per `group_by` bucket (the same as `by_day` for `group_by=day`).
    pub by_period: Vec<BucketUsage>,
}

/// The breakdown of the ledger's sums: `daily` summed per day, `grouped` per `group_by`.
pub fn breakdown(daily: &[UsageRow], grouped: &[UsageRow]) -> Breakdown {
    let mut queries = QueryCounts::default();
    let mut credits_used = Credits::ZERO;
    let mut envs: BTreeMap<&EnvId, EnvironmentUsage> = BTreeMap::new();
    for row in daily {
        queries.add(row.kind, row.queries);
        credits_used += row.credits;
        let env = envs.entry(&row.env_id).or_insert_with(|| EnvironmentUsage {
            env_id: row.env_id.clone(),
            name: row.env_name.clone(),
            credits_used: Credits::ZERO,
            query_count: 0,
            counts_against_quota: false,
        });
        env.credits_used += row.credits;
        env.query_count += row.queries;
        env.counts_against_quota |= row.counted;
    }
    let mut by_environment: Vec<EnvironmentUsage> = envs.into_values().collect();
    by_environment.sort_by(|a, b| {
        b.credits_used
            .cmp(&a.credits_used)
            .then_with(|| a.env_id.cmp(&b.env_id))
    });
    Breakdown {
        queries,
        credits_used,
        by_environment,
        by_day: buckets(daily),
        by_period: buckets(grouped),
    }
}

fn buckets(rows: &[UsageRow]) -> Vec<BucketUsage> {
    let mut sums: BTreeMap<i64, (Credits, Credits, u64)> = BTreeMap::new();
    for row in rows {
        let sum = sums.entry(row.bucket_ms).or_default();
        sum.0 += row.credits;
        if row.counted {
            sum.1 += row.credits;
        }
        sum.2 += row.queries;
    }
    sums.into_iter()
        .map(|(start, (used, counted, queries))| BucketUsage {
            start: crate::audit::timestamp(start),
            date: from_ms(start).format("%Y-%m-%d").to_string(),
            credits_used: used,
            credits_counted: counted,
            query_count: queries,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(env: &str, kind: UsageKind, counted: bool, bucket: i64, q: u64, milli: u64) -> UsageRow {
        UsageRow {
            env_id: env.into(),
            env_name: Some(env.trim_start_matches("env_").into()),
            kind,
            counted,
            bucket_ms: bucket,
            queries: q,
            credits: Credits::from_milli(milli),
        }
    }

    #[test]
    fn the_breakdown_sums_kinds_environments_and_days() {
        let rows = vec![
            row("env_prod", UsageKind::Select, true, 0, 3, 4_500),
            row("env_prod", UsageKind::Insert, true, DAY_MS, 1, 1_000),
            row("env_dev", UsageKind::Select, false, DAY_MS, 2, 8_000),
            row("env_dev", UsageKind::Other, false, DAY_MS, 5, 0),
        ];
        let b = breakdown(&rows, &rows);
        assert_eq!(
            b.queries,
            QueryCounts {
                total: 11,
                select: 5,
                insert: 1,
                other: 5,
                ..QueryCounts::default()
            }
        );
        assert_eq!(b.credits_used, Credits::from_milli(13_500));
        assert_eq!(b.by_environment[0].env_id.as_ref() as &str, "env_dev");
        assert!(!b.by_environment[0].counts_against_quota);
        assert_eq!(b.by_environment[1].credits_used, Credits::from_milli(5_500));
        assert!(b.by_environment[1].counts_against_quota);
        assert_eq!(b.by_day.len(), 2);
        assert_eq!(b.by_day[1].date, "1970-01-02");
        assert_eq!(b.by_day[1].credits_used, Credits::from_milli(9_000));
        assert_eq!(b.by_day[1].credits_counted, Credits::from_milli(1_000));
    }

    #[test]
    fn weeks_start_on_mondays_and_percentages_round() {
        let (len, offset) = GroupBy::Week.bucket();
        // 2026-11-30 was a Monday.
        let monday = chrono::DateTime::parse_from_rfc3339("2026-11-30T00:00:00Z")
            .unwrap()
            .timestamp_millis();
        assert_eq!((monday - offset) % len, 0);
        assert!(GroupBy::parse("month").is_err());
        assert_eq!(usage_percent(Credits::whole(1), Credits::whole(3)), 33.33);
        assert_eq!(usage_percent(Credits::whole(5), Credits::ZERO), 100.0);
        let s = CreditSummary::new(Some(Credits::whole(10)), Credits::whole(12), (0, DAY_MS));
        assert_eq!(s.remaining, Some(Credits::ZERO));
        assert_eq!(s.usage_percent, Some(120.0));
    }
}

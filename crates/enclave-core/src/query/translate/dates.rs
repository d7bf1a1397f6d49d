//! Dates and times: Snowflake's date parts, `DATEADD`/`DATEDIFF`/`DATE_TRUNC` and friends,
//! and its format strings in each engine's spelling.

use sqlparser::ast::{Expr, Value};

use super::template::expr;
use super::types::Ty;
use super::{string_literal, unsupported};
use crate::error::Result;
use crate::query::Dialect;

/// A date or time part, as Snowflake names it (with its abbreviations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    Year,
    Quarter,
    Month,
    Week,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
    Microsecond,
    Nanosecond,
}

impl Part {
    pub(super) fn parse(name: &str) -> Option<Part> {
        Some(match name.to_ascii_lowercase().as_str() {
            "year" | "years" | "y" | "yy" | "yyy" | "yyyy" | "yr" | "yrs" => Part::Year,
            "quarter" | "quarters" | "q" | "qtr" | "qtrs" => Part::Quarter,
            "month" | "months" | "mm" | "mon" | "mons" => Part::Month,
            "week" | "weeks" | "w" | "wk" | "weekofyear" | "woy" | "wy" => Part::Week,
            "day" | "days" | "d" | "dd" | "dayofmonth" => Part::Day,
            "hour" | "hours" | "h" | "hh" | "hr" | "hrs" => Part::Hour,
            "minute" | "minutes" | "m" | "mi" | "min" | "mins" => Part::Minute,
            "second" | "seconds" | "s" | "sec" | "secs" => Part::Second,
            "millisecond" | "milliseconds" | "ms" | "msec" => Part::Millisecond,
            "microsecond" | "microseconds" | "us" | "usec" => Part::Microsecond,
            "nanosecond" | "nanoseconds" | "ns" | "nsec" | "nanosec" | "nsecond" => {
                Part::Nanosecond
            }
            _ => return None,
        })
    }

    /// The part's name as both engines' `date_trunc` and intervals spell it.
    pub(super) fn name(self) -> &'static str {
        match self {
            Part::Year => "year",
            Part::Quarter => "quarter",
            Part::Month => "month",
            Part::Week => "week",
            Part::Day => "day",
            Part::Hour => "hour",
            Part::Minute => "minute",
            Part::Second => "second",
            Part::Millisecond => "millisecond",
            Part::Microsecond => "microsecond",
            Part::Nanosecond => "nanosecond",
        }
    }

    /// A day or longer: adding it to a date gives a date.
    fn keeps_dates(self) -> bool {
        matches!(
            self,
            Part::Year | Part::Quarter | Part::Month | Part::Week | Part::Day
        )
    }

    /// One of this part, as an interval literal both engines read.
    fn unit_interval(self) -> Result<&'static str> {
        Ok(match self {
            Part::Year => "INTERVAL '1 year'",
            Part::Quarter => "INTERVAL '3 months'",
            Part::Month => "INTERVAL '1 month'",
            Part::Week => "INTERVAL '7 days'",
            Part::Day => "INTERVAL '1 day'",
            Part::Hour => "INTERVAL '1 hour'",
            Part::Minute => "INTERVAL '1 minute'",
            Part::Second => "INTERVAL '1 second'",
            Part::Millisecond => "INTERVAL '1 millisecond'",
            Part::Microsecond => "INTERVAL '1 microsecond'",
            Part::Nanosecond => return Err(unsupported("nanosecond date parts")),
        })
    }
}

/// A date part argument: an unquoted word (`year`) or a string (`'year'`).
pub(super) fn part_of(e: &Expr, function: &str) -> Result<Part> {
    let name = match e {
        Expr::Identifier(i) => Some(i.value.clone()),
        other => string_literal(other),
    };
    name.as_deref().and_then(Part::parse).ok_or_else(|| {
        unsupported(format!(
            "{function} with the date part {e} (name a part such as day, month or year)"
        ))
    })
}

/// `DATEADD(part, n, x)`: a date stays a date for parts of a day or more, as in Snowflake
/// (when the statement shows `x` is a date).
pub(super) fn date_add(target: Dialect, part: Part, n: Expr, x: Expr, x_ty: Ty) -> Result<Expr> {
    let sum = expr(
        target,
        &format!("_1 + _0 * {}", part.unit_interval()?),
        &[n, x],
    );
    Ok(if x_ty == Ty::Date && part.keeps_dates() {
        expr(target, "CAST(_0 AS DATE)", &[sum])
    } else {
        sum
    })
}

/// `DATEDIFF(part, start, end)`: the number of part boundaries crossed, as Snowflake counts
/// (`DATEDIFF(year, '2023-12-31', '2024-01-01')` is 1), written the same on both engines.
pub(super) fn date_diff(target: Dialect, part: Part, start: Expr, end: Expr) -> Result<Expr> {
    let int_div = match target {
        Dialect::DuckDb => "//",
        Dialect::Postgres => "/",
    };
    let template = match part {
        Part::Year => "CAST(extract(year FROM _1) - extract(year FROM _0) AS BIGINT)".to_string(),
        Part::Quarter => "CAST((extract(year FROM _1) - extract(year FROM _0)) * 4 \
             + extract(quarter FROM _1) - extract(quarter FROM _0) AS BIGINT)"
            .to_string(),
        Part::Month => "CAST((extract(year FROM _1) - extract(year FROM _0)) * 12 \
             + extract(month FROM _1) - extract(month FROM _0) AS BIGINT)"
            .to_string(),
        Part::Week => format!(
            "CAST((CAST(date_trunc('week', _1) AS DATE) - CAST(date_trunc('week', _0) AS DATE)) {int_div} 7 AS BIGINT)"
        ),
        Part::Day => "CAST(CAST(_1 AS DATE) - CAST(_0 AS DATE) AS BIGINT)".to_string(),
        Part::Hour | Part::Minute | Part::Second | Part::Millisecond | Part::Microsecond => {
            let (unit, per_second) = match part {
                Part::Hour => ("hour", "/ 3600"),
                Part::Minute => ("minute", "/ 60"),
                Part::Second => ("second", ""),
                Part::Millisecond => ("millisecond", "* 1000"),
                _ => ("microsecond", "* 1000000"),
            };
            let epoch = |slot: &str| match target {
                Dialect::DuckDb => {
                    format!("epoch(date_trunc('{unit}', CAST({slot} AS TIMESTAMP)))")
                }
                Dialect::Postgres => {
                    format!("extract(epoch FROM date_trunc('{unit}', CAST({slot} AS TIMESTAMP)))")
                }
            };
            format!(
                "CAST(round(({} - {}) {per_second}) AS BIGINT)",
                epoch("_1"),
                epoch("_0")
            )
        }
        Part::Nanosecond => return Err(unsupported("DATEDIFF in nanoseconds")),
    };
    Ok(expr(target, &template, &[start, end]))
}

/// `DATE_TRUNC(part, x)`: the engines' own, with a date kept a date.
pub(super) fn date_trunc(target: Dialect, part: Part, x: Expr, x_ty: Ty) -> Expr {
    let truncated = expr(target, &format!("date_trunc('{}', _0)", part.name()), &[x]);
    // Both engines answer a timestamp for a date (DuckDB since 2.0).
    if x_ty == Ty::Date {
        expr(target, "CAST(_0 AS DATE)", &[truncated])
    } else {
        truncated
    }
}

/// `LAST_DAY(x [, part])`: the last day of the month (or year, quarter, week) as a date.
pub(super) fn last_day(target: Dialect, part: Part, x: Expr) -> Result<Expr> {
    let span = match part {
        Part::Year => "INTERVAL '1 year'",
        Part::Quarter => "INTERVAL '3 months'",
        Part::Month => "INTERVAL '1 month'",
        Part::Week => "INTERVAL '7 days'",
        _ => return Err(unsupported(format!("LAST_DAY by {}", part.name()))),
    };
    Ok(expr(
        target,
        &format!(
            "CAST(date_trunc('{}', _0) + {span} - INTERVAL '1 day' AS DATE)",
            part.name()
        ),
        &[x],
    ))
}

/// Day-of-week numbers Snowflake's names start with (`su`, `mo`, …), Sunday = 0.
fn weekday(name: &str) -> Option<i64> {
    let prefix = name.trim().get(..2)?.to_ascii_lowercase();
    ["su", "mo", "tu", "we", "th", "fr", "sa"]
        .iter()
        .position(|d| *d == prefix)
        .map(|p| p as i64)
}

/// `NEXT_DAY(x, 'Monday')` / `PREVIOUS_DAY`: the first such day strictly after (before) `x`.
pub(super) fn next_day(target: Dialect, x: Expr, day: &Expr, forward: bool) -> Result<Expr> {
    let name = string_literal(day).ok_or_else(|| {
        unsupported("NEXT_DAY / PREVIOUS_DAY with a computed day name (write the name)")
    })?;
    let wanted = weekday(&name).ok_or_else(|| unsupported(format!("the day name '{name}'")))?;
    let dow = match target {
        Dialect::DuckDb => "dayofweek(_0)",
        Dialect::Postgres => "CAST(extract(dow FROM _0) AS INTEGER)",
    };
    let template = if forward {
        format!("CAST(_0 AS DATE) + CAST((({wanted} - {dow} + 6) % 7) + 1 AS INTEGER)")
    } else {
        format!("CAST(_0 AS DATE) - CAST((({dow} - {wanted} + 6) % 7) + 1 AS INTEGER)")
    };
    Ok(expr(target, &template, &[x]))
}

/// A Snowflake date/time format as `strftime`/`strptime` (DuckDB) or `to_char`/`to_date`
/// (PostgreSQL) read it.
pub(super) fn format(snowflake: &str, target: Dialect) -> Result<String> {
    const TOKENS: &[(&str, &str, &str)] = &[
        // (Snowflake, DuckDB, PostgreSQL), longest first.
        ("YYYY", "%Y", "YYYY"),
        ("MMMM", "%B", "FMMonth"),
        ("HH24", "%H", "HH24"),
        ("HH12", "%I", "HH12"),
        ("FF9", "%n", "US"),
        ("FF6", "%f", "US"),
        ("FF3", "%g", "MS"),
        ("TZH:TZM", "%z", "TZH:TZM"),
        ("MON", "%b", "Mon"),
        ("YY", "%y", "YY"),
        ("MM", "%m", "MM"),
        ("DD", "%d", "DD"),
        ("DY", "%a", "Dy"),
        ("HH", "%I", "HH12"),
        ("MI", "%M", "MI"),
        ("SS", "%S", "SS"),
        ("FF", "%f", "US"),
        ("AM", "%p", "AM"),
        ("PM", "%p", "AM"),
    ];
    let mut out = String::new();
    let mut rest = snowflake;
    'outer: while let Some(c) = rest.chars().next() {
        if c == '"' {
            // Quoted text is literal.
            let end = rest[1..]
                .find('"')
                .ok_or_else(|| unsupported(format!("the format '{snowflake}'")))?;
            let text = &rest[1..=end];
            match target {
                Dialect::DuckDb => out.push_str(&text.replace('%', "%%")),
                Dialect::Postgres => {
                    out.push('"');
                    out.push_str(text);
                    out.push('"');
                }
            }
            rest = &rest[end + 2..];
            continue;
        }
        let upper = rest.to_ascii_uppercase();
        for (token, duck, pg) in TOKENS {
            if upper.starts_with(token) {
                out.push_str(match target {
                    Dialect::DuckDb => duck,
                    Dialect::Postgres => pg,
                });
                rest = &rest[token.len()..];
                continue 'outer;
            }
        }
        if c.is_ascii_alphabetic() {
            return Err(unsupported(format!(
                "the format element at '{rest}' in '{snowflake}'"
            )));
        }
        match (target, c) {
            (Dialect::DuckDb, '%') => out.push_str("%%"),
            _ => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    Ok(out)
}

/// The format argument as text, converted for `target`.
pub(super) fn format_arg(e: &Expr, target: Dialect, function: &str) -> Result<Expr> {
    let text = string_literal(e)
        .ok_or_else(|| unsupported(format!("{function} with a computed format (write it)")))?;
    Ok(Expr::value(Value::SingleQuotedString(format(
        &text, target,
    )?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_convert_for_each_engine() {
        assert_eq!(format("DD/MM/YYYY", Dialect::DuckDb).unwrap(), "%d/%m/%Y");
        assert_eq!(
            format("DD/MM/YYYY", Dialect::Postgres).unwrap(),
            "DD/MM/YYYY"
        );
        assert_eq!(
            format("YYYY-MM-DD HH24:MI:SS.FF3", Dialect::DuckDb).unwrap(),
            "%Y-%m-%d %H:%M:%S.%g"
        );
        assert_eq!(format("\"Q\"YYYY", Dialect::DuckDb).unwrap(), "Q%Y");
        assert_eq!(format("100%", Dialect::DuckDb).unwrap(), "100%%");
        assert!(format("YYYY-WW", Dialect::DuckDb).is_err());
    }

    #[test]
    fn parts_accept_snowflake_abbreviations() {
        assert_eq!(Part::parse("YY"), Some(Part::Year));
        assert_eq!(Part::parse("mins"), Some(Part::Minute));
        assert_eq!(Part::parse("dayofmonth"), Some(Part::Day));
        assert_eq!(Part::parse("fortnight"), None);
        assert_eq!(weekday("Monday"), Some(1));
        assert_eq!(weekday("sa"), Some(6));
        assert_eq!(weekday("x"), None);
    }
}

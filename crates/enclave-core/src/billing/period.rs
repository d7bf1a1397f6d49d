//! Billing periods are calendar months in UTC; usage is kept per hour.

use chrono::{Datelike, TimeZone, Utc};

use crate::clock::from_ms;

const HOUR_MS: i64 = 3_600_000;

/// The start of the hour that holds `ms` (epoch milliseconds).
pub fn hour_of(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// The calendar month (UTC) that holds `ms`: its first millisecond and the first of the next.
pub fn month_of(ms: i64) -> (i64, i64) {
    let t = from_ms(ms);
    let start = Utc
        .with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let (y, m) = if t.month() == 12 {
        (t.year() + 1, 1)
    } else {
        (t.year(), t.month() + 1)
    };
    let end = Utc
        .with_ymd_and_hms(y, m, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    (start.timestamp_millis(), end.timestamp_millis())
}

/// The period's name, `2026-12`: what a warning sent once per period is keyed by.
pub fn month_name(ms: i64) -> String {
    from_ms(ms).format("%Y-%m").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn months_are_calendar_months_in_utc() {
        let (start, end) = month_of(ms("2026-12-31T23:59:59.999Z"));
        assert_eq!(start, ms("2026-12-01T00:00:00Z"));
        assert_eq!(end, ms("2027-01-01T00:00:00Z"));
        assert_eq!(
            month_of(end).0,
            end,
            "the next month starts at its first millisecond"
        );
        assert_eq!(
            month_of(ms("2028-02-29T12:00:00Z")).1,
            ms("2028-03-01T00:00:00Z")
        );
        assert_eq!(month_name(ms("2026-12-04T05:00:00Z")), "2026-12");
    }

    #[test]
    fn hours_start_on_the_hour() {
        assert_eq!(
            hour_of(ms("2026-12-04T05:59:59.999Z")),
            ms("2026-12-04T05:00:00Z")
        );
        assert_eq!(
            hour_of(ms("2026-12-04T06:00:00Z")),
            ms("2026-12-04T06:00:00Z")
        );
    }
}

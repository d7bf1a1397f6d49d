//! The one clock. Every timestamp Enclave stores is Unix epoch milliseconds (`now_ms`); the API
//! shows them as RFC 3339 (`from_ms`); TOTP steps and token expiries count seconds
//! (`unix_seconds`). Code reads the time through here, never through `SystemTime` or
//! `Utc::now` directly, so there is one notion of "now".

use chrono::{DateTime, TimeZone, Utc};

/// Now.
pub fn now() -> DateTime<Utc> {
    Utc::now()
}

/// Now, in Unix epoch milliseconds (what the store keeps).
pub fn now_ms() -> i64 {
    now().timestamp_millis()
}

/// Now, in whole seconds since the Unix epoch.
pub fn unix_seconds() -> u64 {
    u64::try_from(now().timestamp()).unwrap_or(0)
}

pub fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// A stored timestamp as a time (the epoch for a value out of range).
pub fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_round_trip() {
        let t = from_ms(1_764_000_000_123);
        assert_eq!(to_ms(t), 1_764_000_000_123);
        assert_eq!(t.to_rfc3339(), "2025-11-24T16:00:00.123+00:00");
        assert!(now_ms() > 1_764_000_000_000);
        assert_eq!(unix_seconds() as i64, now_ms() / 1000);
    }
}

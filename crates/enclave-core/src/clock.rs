//! The one clock. Every timestamp Enclave stores is Unix epoch milliseconds (`now_ms`); the API
//! shows them as RFC 3339 (`from_ms`); TOTP steps and token expiries count seconds
//! (`unix_seconds`). Code reads the time through here, never through `SystemTime` or
//! `Utc::now` directly, so there is one notion of "now".

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

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

/// The server's clock for deadlines it decides on by itself (a just-in-time grant's end, an
/// unanswered request's expiry): the one clock above, moved by an offset that only a test
/// sets, so that a deadline hours away can be reached in a test without waiting for it.
/// Clones share the offset.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// Now, in Unix epoch milliseconds, on this clock.
    pub fn now_ms(&self) -> i64 {
        now_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Moves this clock (and every clone of it) `ms` milliseconds forward.
    pub fn advance(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
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

    #[test]
    fn a_clock_moves_with_its_clones() {
        let clock = Clock::default();
        let other = clock.clone();
        let before = now_ms();
        other.advance(3_600_000);
        let moved = clock.now_ms();
        assert!(moved >= before + 3_600_000 && moved < now_ms() + 3_600_000 + 1_000);
    }
}

//! Failed sign-ins slow down. Each source address and each account (an e-mail, an API key
//! id) has a few free failures; past them, every further failure doubles the time before the
//! next attempt is even checked — no Argon2id is spent on it — up to a cap. A success clears
//! the account's count (not the source's); a quiet period forgets both.
//!
//! The caps differ on purpose: a source guessing keeps getting slower (up to 5 minutes), while
//! an account's wait stays short (up to 30 s), so an attacker cannot lock its owner out. A
//! second factor is stricter (5 free failures, up to 15 minutes): whoever guesses codes
//! already holds the password, and a 6-digit code has only a million values.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use enclave_core::{Error, ErrorCode};
use serde_json::json;

/// Failures allowed before any wait.
const FREE_FAILURES: u32 = 10;
const FREE_SECOND_FACTOR_FAILURES: u32 = 5;
/// The first wait; each further failure doubles it.
const FIRST_WAIT: Duration = Duration::from_secs(1);
const SOURCE_CAP: Duration = Duration::from_secs(300);
const ACCOUNT_CAP: Duration = Duration::from_secs(30);
const SECOND_FACTOR_CAP: Duration = Duration::from_secs(900);
/// A subject with no failure for this long starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Subjects remembered at most (oldest forgotten first when full).
const MAX_SUBJECTS: usize = 100_000;

/// Who failed: where from, and as whom.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    Source(IpAddr),
    Account(String),
    /// A user's second factor (by user id).
    SecondFactor(String),
}

impl Subject {
    fn cap(&self) -> Duration {
        match self {
            Subject::Source(_) => SOURCE_CAP,
            Subject::Account(_) => ACCOUNT_CAP,
            Subject::SecondFactor(_) => SECOND_FACTOR_CAP,
        }
    }

    fn free_failures(&self) -> u32 {
        match self {
            Subject::SecondFactor(_) => FREE_SECOND_FACTOR_FAILURES,
            _ => FREE_FAILURES,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    /// No attempt is checked before this.
    until: Instant,
}

#[derive(Default)]
pub struct Throttle {
    subjects: Mutex<HashMap<Subject, Failures>>,
}

impl Throttle {
    pub fn new() -> Throttle {
        Throttle::default()
    }

    /// Refused (429, with the seconds to wait) while any of `subjects` must still wait.
    pub fn check(&self, subjects: &[Subject]) -> Result<(), Error> {
        let now = Instant::now();
        let map = self.subjects.lock().unwrap();
        let wait = subjects
            .iter()
            .filter_map(|s| map.get(s))
            .filter(|f| now.duration_since(f.last) < FORGET_AFTER)
            .map(|f| f.until.saturating_duration_since(now))
            .max()
            .unwrap_or_default();
        if wait.is_zero() {
            return Ok(());
        }
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        Err(Error::new(
            ErrorCode::RateLimited,
            format!("too many failed attempts; retry in {secs} s"),
        )
        .with_details(json!({"rule": "failed_sign_ins", "retry_after_seconds": secs})))
    }

    /// Counts a failed attempt against each of `subjects`.
    pub fn failed(&self, subjects: &[Subject]) {
        let now = Instant::now();
        let mut map = self.subjects.lock().unwrap();
        if map.len() >= MAX_SUBJECTS {
            map.retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
            if map.len() >= MAX_SUBJECTS {
                map.clear();
            }
        }
        for s in subjects {
            let f = map.entry(s.clone()).or_insert(Failures {
                count: 0,
                last: now,
                until: now,
            });
            if now.duration_since(f.last) >= FORGET_AFTER {
                f.count = 0;
            }
            f.count += 1;
            f.last = now;
            f.until = now + wait_after(f.count, s.free_failures(), s.cap());
        }
    }

    /// A successful sign-in as `account` clears its failures.
    pub fn succeeded(&self, account: &Subject) {
        self.subjects.lock().unwrap().remove(account);
    }
}

/// The wait after the `count`th failure in a row.
fn wait_after(count: u32, free: u32, cap: Duration) -> Duration {
    if count <= free {
        return Duration::ZERO;
    }
    let doublings = (count - free - 1).min(20);
    FIRST_WAIT.saturating_mul(1 << doublings).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_past_the_free_failures_up_to_the_cap() {
        let source = Duration::from_secs(300);
        let free = FREE_FAILURES;
        assert_eq!(wait_after(10, free, source), Duration::ZERO);
        assert_eq!(wait_after(11, free, source), Duration::from_secs(1));
        assert_eq!(wait_after(12, free, source), Duration::from_secs(2));
        assert_eq!(wait_after(15, free, source), Duration::from_secs(16));
        assert_eq!(wait_after(40, free, source), source);
        assert_eq!(wait_after(40, free, ACCOUNT_CAP), ACCOUNT_CAP);
        let code = Subject::SecondFactor("usr_1".into());
        assert_eq!(
            wait_after(5, code.free_failures(), code.cap()),
            Duration::ZERO
        );
        assert_eq!(
            wait_after(6, code.free_failures(), code.cap()),
            Duration::from_secs(1)
        );
        assert_eq!(
            wait_after(30, code.free_failures(), code.cap()),
            SECOND_FACTOR_CAP
        );
    }

    #[test]
    fn failures_throttle_their_subjects_and_success_clears_the_account() {
        let t = Throttle::new();
        let ip = Subject::Source("10.1.2.3".parse().unwrap());
        let other_ip = Subject::Source("10.9.9.9".parse().unwrap());
        let ada = Subject::Account("ada@example.com".into());
        for _ in 0..FREE_FAILURES {
            t.check(&[ip.clone(), ada.clone()]).unwrap();
            t.failed(&[ip.clone(), ada.clone()]);
        }
        t.check(&[ip.clone(), ada.clone()]).unwrap();
        t.failed(&[ip.clone(), ada.clone()]);
        let e = t.check(std::slice::from_ref(&ip)).unwrap_err();
        assert_eq!(e.code, ErrorCode::RateLimited);
        assert_eq!(e.details["retry_after_seconds"], 1);
        // The account is held from another address too; another account from there is not.
        assert!(t.check(&[other_ip.clone(), ada.clone()]).is_err());
        let bob = Subject::Account("bob@example.com".into());
        assert!(t.check(&[other_ip.clone(), bob]).is_ok());
        t.succeeded(&ada);
        assert!(t.check(&[other_ip, ada]).is_ok());
        assert!(t.check(&[ip]).is_err(), "the source keeps its count");
    }
}

//! Credits, kept exactly: a whole number of thousandths of a credit, so that sums over
//! millions of statements never drift the way floating point would. They read and write as
//! a JSON number (`2.5`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign};

/// An amount of credits, in thousandths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Credits(u64);

impl Credits {
    pub const ZERO: Credits = Credits(0);

    pub const fn from_milli(milli: u64) -> Credits {
        Credits(milli)
    }

    pub const fn whole(credits: u64) -> Credits {
        Credits(credits.saturating_mul(1000))
    }

    pub const fn milli(self) -> u64 {
        self.0
    }

    /// As a JSON number: exact for every amount below 2^53 thousandths.
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    /// The nearest thousandth of a number read from JSON (negative and non-finite: zero).
    pub fn from_f64(value: f64) -> Credits {
        if value.is_finite() && value > 0.0 {
            Credits((value * 1000.0).round() as u64)
        } else {
            Credits::ZERO
        }
    }

    pub fn saturating_sub(self, other: Credits) -> Credits {
        Credits(self.0.saturating_sub(other.0))
    }
}

impl Add for Credits {
    type Output = Credits;
    fn add(self, other: Credits) -> Credits {
        Credits(self.0.saturating_add(other.0))
    }
}

impl AddAssign for Credits {
    fn add_assign(&mut self, other: Credits) {
        *self = *self + other;
    }
}

impl Sum for Credits {
    fn sum<I: Iterator<Item = Credits>>(iter: I) -> Credits {
        iter.fold(Credits::ZERO, Add::add)
    }
}

impl fmt::Display for Credits {
    /// `2.5`, `1`, `0.125`: no trailing zeros.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, fraction) = (self.0 / 1000, self.0 % 1000);
        if fraction == 0 {
            return write!(f, "{whole}");
        }
        let digits = format!("{fraction:03}");
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

impl Serialize for Credits {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_f64())
    }
}

impl<'de> Deserialize<'de> for Credits {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Credits, D::Error> {
        f64::deserialize(d).map(Credits::from_f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_stay_exact_where_floats_drift() {
        let tenth = Credits::from_milli(100);
        let total: Credits = std::iter::repeat_n(tenth, 1_000_000).sum();
        assert_eq!(total, Credits::whole(100_000));
        let float: f64 = std::iter::repeat_n(0.1f64, 1_000_000).sum();
        assert_ne!(float, 100_000.0, "the drift this type exists to avoid");
    }

    #[test]
    fn reads_and_writes_as_a_json_number() {
        let c = Credits::from_milli(2_500);
        assert_eq!(serde_json::to_string(&c).unwrap(), "2.5");
        assert_eq!(serde_json::from_str::<Credits>("2.5").unwrap(), c);
        assert_eq!(
            serde_json::from_str::<Credits>("0.0").unwrap(),
            Credits::ZERO
        );
        assert_eq!(
            serde_json::from_str::<Credits>("-3").unwrap(),
            Credits::ZERO
        );
        assert_eq!(c.to_string(), "2.5");
        assert_eq!(Credits::whole(3).to_string(), "3");
        assert_eq!(Credits::from_milli(125).to_string(), "0.125");
        assert_eq!(Credits::from_milli(10_050).to_string(), "10.05");
    }
}

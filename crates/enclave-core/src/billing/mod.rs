//! Billing (docs/billing.md): credits kept exactly ([`credits`]), the organization's quotas
//! and their tier defaults ([`quotas`]), and the calendar months usage is counted in
//! ([`period`]). What a statement costs is SQL analysis: [`crate::query::cost`].

pub mod credits;
pub mod period;
pub mod quotas;
pub mod usage;

pub use credits::Credits;
pub use quotas::{QuotaPatch, Quotas};

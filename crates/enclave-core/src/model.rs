//! The identity resources as the API shows them (docs/identity.md).

use crate::id::{OrgId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

use crate::billing::Quotas;
use crate::role::Role;

/// An organization's billing tier; it sets rate limits and quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Free,
    Cloud,
    Growth,
    Enterprise,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::Free, Tier::Cloud, Tier::Growth, Tier::Enterprise];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Cloud => "cloud",
            Tier::Growth => "growth",
            Tier::Enterprise => "enterprise",
        }
    }

    pub fn parse(s: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Each tier's default limits, before configuration overrides (`--rate-limits`,
    /// `--tier-quotas`: the README's configuration table).
    pub fn default_limits(self) -> TierLimits {
        let (per_minute, burst) = match self {
            Tier::Free => (60, 10),
            Tier::Cloud => (300, 50),
            Tier::Growth => (1_000, 100),
            Tier::Enterprise => (10_000, 500),
        };
        TierLimits {
            rate_limits: RateLimits { per_minute, burst },
            quotas: Quotas::tier_default(self),
        }
    }
}

/// What a tier allows: its request rate and its quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TierLimits {
    pub rate_limits: RateLimits,
    pub quotas: Quotas,
}

/// Requests per minute a caller may make, and the burst above that rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RateLimits {
    pub per_minute: u32,
    pub burst: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrgStatus {
    Active,
    Suspended,
}

impl OrgStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrgStatus::Active => "active",
            OrgStatus::Suspended => "suspended",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(OrgStatus::Active),
            "suspended" => Some(OrgStatus::Suspended),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Organization {
    pub org_id: OrgId,
    pub name: String,
    pub slug: String,
    pub billing_email: String,
    pub cloud_region: Option<String>,
    pub tier: Tier,
    pub status: OrgStatus,
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    /// Its quotas: the tier's, with what its owner changed (`…/billing/quotas`).
    pub quotas: Quotas,
    pub rate_limits: RateLimits,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Increments on every change; the `ETag`.
    pub version: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    Active,
    Invited,
    Suspended,
}

impl MemberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Active => "active",
            MemberStatus::Invited => "invited",
            MemberStatus::Suspended => "suspended",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(MemberStatus::Active),
            "invited" => Some(MemberStatus::Invited),
            "suspended" => Some(MemberStatus::Suspended),
            _ => None,
        }
    }
}

/// A user as they see themselves (`/v1/auth/me`, login).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct User {
    pub user_id: UserId,
    pub email: String,
    pub name: String,
    /// A second factor (TOTP) is turned on: signing in asks for a code.
    pub mfa_enabled: bool,
    pub created_at: DateTime<Utc>,
}

/// A pending invitation, shown to owners and admins until it is accepted.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Invitation {
    /// Only in the answer to the invitation: the server keeps just its hash.
    pub token: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// A user's membership in one organization.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Member {
    pub user_id: UserId,
    pub org_id: OrgId,
    pub email: String,
    /// The member's name in this organization (admins may change it; it never changes the
    /// user's name in other organizations).
    pub name: String,
    pub role: Role,
    pub status: MemberStatus,
    pub attributes: BTreeMap<String, String>,
    /// The member has a second factor (TOTP) turned on.
    pub mfa_enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invitation: Option<Invitation>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

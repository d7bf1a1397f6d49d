//! Enum columns as they are stored: each decodes from its text, and text that names no
//! variant is an error naming the kind and the value — never a silent default. The store
//! decodes its rows through these (`#[sqlx(try_from = "String")]`), so a row with an unknown
//! value fails to load, naming its column.

use std::fmt;

use crate::api_key::KeyStatus;
use crate::audit::ActorType;
use crate::environment::{EnvStatus, EnvType};
use crate::model::{MemberStatus, OrgStatus, Tier};
use crate::policy::PolicyType;
use crate::role::Role;
use crate::webhook::{DeliveryStatus, WebhookStatus};

/// A stored value that names no variant of its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
}

impl fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} `{}`", self.kind, self.value)
    }
}

impl std::error::Error for UnknownValue {}

fn known<T>(kind: &'static str, value: String, parsed: Option<T>) -> Result<T, UnknownValue> {
    parsed.ok_or(UnknownValue { kind, value })
}

impl TryFrom<String> for Tier {
    type Error = UnknownValue;
    fn try_from(value: String) -> Result<Self, UnknownValue> {
        let parsed = Tier::parse(&value);
        known("tier", value, parsed)
    }
}

impl TryFrom<String> for OrgStatus {
    type Error = UnknownValue;
    fn try_from(value: String) -> Result<Self, UnknownValue> {
        let parsed = OrgStatus::parse(&value);
        known("organization status", value, parsed)
    }
}

impl TryFrom<String> for MemberStatus {
    type Error = UnknownValue;
    fn try_from(value: String) -> Result<Self, UnknownValue> {
        let parsed = MemberStatus::parse(&value);
        known("member status", value, parsed)
    }
}

impl TryFrom<String> for Role {
    type Error = UnknownValue;
    fn try_from(value: String) -> Result<Self, UnknownValue> {
        let parsed = value.parse().ok();
        known("role", value, parsed)
    }
}

impl TryFrom<String> for EnvType {
    type Error = UnknownValue;
    fn try_from(value: String) -> Result<Self, UnknownValue> {
        let parsed = EnvType::parse(&value);
        known("environment type", value, parsed)
    }
}

impl TryFrom<String> for EnvStatus {
    type Error = UnknownValue;
    fn try_from(value: String) -> Result<Self, UnknownValue> {
        let parsed = EnvStatus::parse(&value);
        known("environment status", value, parsed)
    }
}

impl TryFrom<String> for KeyStatus {
    type Error = UnknownValue;
    fn try_from(value: String) -> Result<Self, UnknownValue> {
        let parsed = KeyStatus::parse(&value);
        known("API key status", value, parsed)
    }
}

impl TryFrom<String> for PolicyType {
    type Error = UnknownValue;
    fn try_from(value: String) -> Result<Self, UnknownValue> {
        let parsed = PolicyType::parse(&value);
        known("policy type", value, parsed)
    }
}

impl TryFrom<String> for WebhookStatus {
    type Error = UnknownValue;
    fn try_from(value: String) -> Result<Self, UnknownValue> {
        let parsed = WebhookStatus::parse(&value);
        known("webhook status", value, parsed)
    }
}

impl TryFrom<String> for DeliveryStatus {
    type Error = UnknownValue;
    fn try_from(value: String) -> Result<Self, UnknownValue> {
        let parsed = DeliveryStatus::parse(&value);
        known("delivery status", value, parsed)
    }
}

impl TryFrom<String> for ActorType {
    type Error = UnknownValue;
    fn try_from(value: String) -> Result<Self, UnknownValue> {
        let parsed = ActorType::parse(&value);
        known("actor type", value, parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_decode_and_unknown_ones_are_named() {
        assert_eq!(Tier::try_from("growth".to_string()), Ok(Tier::Growth));
        assert_eq!(Role::try_from("admin".to_string()), Ok(Role::Admin));
        assert_eq!(
            EnvStatus::try_from("decommissioning".to_string()),
            Ok(EnvStatus::Decommissioning)
        );
        let err = EnvStatus::try_from("paused".to_string()).unwrap_err();
        assert_eq!(err.to_string(), "unknown environment status `paused`");
        let err = WebhookStatus::try_from("Active".to_string()).unwrap_err();
        assert_eq!(err.kind, "webhook status");
    }
}

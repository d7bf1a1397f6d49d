//! Prefixed, time-sortable identifiers: `org_01j9…` — a type prefix and a lowercase ULID.
//!
//! ULIDs sort by creation time, so keyset pagination over ids returns resources in creation
//! order, and ids are never reused (48 bits of milliseconds + 80 random bits).

use ulid::Ulid;

/// The id prefixes (docs/api-conventions.md); each resource type has exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Organization,
    User,
    Session,
    Environment,
    ApiKey,
    Policy,
    Secret,
    Webhook,
    Jit,
    Query,
    Audit,
    Promotion,
    Delivery,
    Event,
    Attempt,
}

impl Kind {
    pub const fn prefix(self) -> &'static str {
        match self {
            Kind::Organization => "org",
            Kind::User => "usr",
            Kind::Session => "ses",
            Kind::Environment => "env",
            Kind::ApiKey => "key",
            Kind::Policy => "pol",
            Kind::Secret => "sec",
            Kind::Webhook => "wh",
            Kind::Jit => "jit",
            Kind::Query => "qry",
            Kind::Audit => "aud",
            Kind::Promotion => "prm",
            Kind::Delivery => "dlv",
            Kind::Event => "evt",
            Kind::Attempt => "att",
        }
    }
}

/// A fresh id of the given kind.
pub fn new_id(kind: Kind) -> String {
    format!(
        "{}_{}",
        kind.prefix(),
        Ulid::new().to_string().to_ascii_lowercase()
    )
}

/// Whether `s` is shaped like an id of `kind`. Used to answer 404 for junk path parameters
/// without asking the database.
pub fn is_id(kind: Kind, s: &str) -> bool {
    let Some(rest) = s
        .strip_prefix(kind.prefix())
        .and_then(|r| r.strip_prefix('_'))
    else {
        return false;
    };
    rest.len() == 26
        && Ulid::from_string(&rest.to_ascii_uppercase()).is_ok()
        && rest
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_lowercase_and_sortable() {
        let a = new_id(Kind::Organization);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id(Kind::Organization);
        assert!(a.starts_with("org_") && a.len() == 30);
        assert_eq!(a, a.to_ascii_lowercase());
        assert!(a < b, "later ids sort after earlier ones");
        assert!(is_id(Kind::Organization, &a));
        assert!(!is_id(Kind::User, &a));
        assert!(!is_id(Kind::Organization, "org_nope"));
        assert!(!is_id(Kind::Organization, &a.to_ascii_uppercase()));
    }
}

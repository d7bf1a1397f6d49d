//! Environment API keys (docs/api-keys.md): the key format, scopes and their bundles, what a
//! key may do, the caps on what its creator may grant, and its lifecycle over time. Pure.

use std::collections::BTreeSet;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{Error, Result};
use crate::id::{EnvId, KeyId};
use crate::role::{Permission, Role};

/// Random bytes in a key's secret (256 bits; the spec asks for ≥ 192).
const SECRET_BYTES: usize = 32;
const ULID_CHARS: usize = 26;
/// Characters of a key shown in lists so people can recognise it.
pub const PREFIX_CHARS: usize = 12;
pub const DEFAULT_GRACE_HOURS: i64 = 24;
pub const MAX_GRACE_HOURS: i64 = 720;
pub const MAX_EXPIRES_IN_DAYS: i64 = 3650;
/// `key.expiring` fires this long before `expires_at`.
pub const EXPIRING_NOTICE_DAYS: i64 = 7;

/// A key as handed to its holder once: `ek_live_<key ulid>_<64 hex>` (`ek_test_` outside
/// production). The key id inside makes lookup O(1); the secret is what Argon2id guards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyParts {
    pub live: bool,
    /// `key_<ulid>`.
    pub key_id: KeyId,
    pub secret: String,
}

impl KeyParts {
    /// A fresh key for the key id `key_<ulid>`.
    pub fn generate(key_id: &KeyId, live: bool) -> KeyParts {
        let mut bytes = [0u8; SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let secret = bytes.iter().map(|b| format!("{b:02x}")).collect();
        KeyParts {
            live,
            key_id: key_id.clone(),
            secret,
        }
    }

    pub fn plaintext(&self) -> String {
        let ulid = self.key_id.trim_start_matches("key_");
        let kind = if self.live { "live" } else { "test" };
        format!("ek_{kind}_{ulid}_{}", self.secret)
    }

    /// Splits a presented key; `None` for anything that cannot be a key (refused without
    /// touching the database or Argon2id).
    pub fn parse(key: &str) -> Option<KeyParts> {
        let (live, rest) = if let Some(r) = key.strip_prefix("ek_live_") {
            (true, r)
        } else {
            (false, key.strip_prefix("ek_test_")?)
        };
        if rest.len() != ULID_CHARS + 1 + SECRET_BYTES * 2 || !rest.is_ascii() {
            return None;
        }
        let (ulid, secret) = rest.split_at(ULID_CHARS);
        let secret = secret.strip_prefix('_')?;
        let hex_ok = secret
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let key_id = KeyId::parse(&format!("key_{ulid}")).filter(|_| hex_ok)?;
        Some(KeyParts {
            live,
            key_id,
            secret: secret.to_string(),
        })
    }
}

/// The first characters of a key, shown in lists.
pub fn prefix(plaintext: &str) -> String {
    plaintext.chars().take(PREFIX_CHARS).collect()
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
pub enum Scope {
    #[serde(rename = "query:read")]
    QueryRead,
    #[serde(rename = "query:write")]
    QueryWrite,
    #[serde(rename = "tables:list")]
    TablesList,
    #[serde(rename = "tables:describe")]
    TablesDescribe,
    #[serde(rename = "tables:create")]
    TablesCreate,
    #[serde(rename = "tables:alter")]
    TablesAlter,
    #[serde(rename = "schemas:read")]
    SchemasRead,
    #[serde(rename = "secrets:read")]
    SecretsRead,
    #[serde(rename = "secrets:write")]
    SecretsWrite,
    #[serde(rename = "policies:read")]
    PoliciesRead,
    #[serde(rename = "policies:manage")]
    PoliciesManage,
    #[serde(rename = "keys:manage")]
    KeysManage,
    #[serde(rename = "audit:read")]
    AuditRead,
    #[serde(rename = "environments:read")]
    EnvironmentsRead,
    #[serde(rename = "environments:manage")]
    EnvironmentsManage,
    #[serde(rename = "webhooks:manage")]
    WebhooksManage,
    #[serde(rename = "billing:read")]
    BillingRead,
}

impl Scope {
    pub const ALL: [Scope; 17] = [
        Scope::QueryRead,
        Scope::QueryWrite,
        Scope::TablesList,
        Scope::TablesDescribe,
        Scope::TablesCreate,
        Scope::TablesAlter,
        Scope::SchemasRead,
        Scope::SecretsRead,
        Scope::SecretsWrite,
        Scope::PoliciesRead,
        Scope::PoliciesManage,
        Scope::KeysManage,
        Scope::AuditRead,
        Scope::EnvironmentsRead,
        Scope::EnvironmentsManage,
        Scope::WebhooksManage,
        Scope::BillingRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::QueryRead => "query:read",
            Scope::QueryWrite => "query:write",
            Scope::TablesList => "tables:list",
            Scope::TablesDescribe => "tables:describe",
            Scope::TablesCreate => "tables:create",
            Scope::TablesAlter => "tables:alter",
            Scope::SchemasRead => "schemas:read",
            Scope::SecretsRead => "secrets:read",
            Scope::SecretsWrite => "secrets:write",
            Scope::PoliciesRead => "policies:read",
            Scope::PoliciesManage => "policies:manage",
            Scope::KeysManage => "keys:manage",
            Scope::AuditRead => "audit:read",
            Scope::EnvironmentsRead => "environments:read",
            Scope::EnvironmentsManage => "environments:manage",
            Scope::WebhooksManage => "webhooks:manage",
            Scope::BillingRead => "billing:read",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// The permission of the matrix a scope exercises: a key needs both (its role may, and
    /// its scopes allow).
    pub fn permission(self) -> Permission {
        use Scope::*;
        match self {
            QueryRead => Permission::ExecuteQueries,
            QueryWrite | TablesCreate | TablesAlter => Permission::WriteData,
            TablesList | TablesDescribe | SchemasRead | EnvironmentsRead => {
                Permission::ReadEnvironments
            }
            BillingRead => Permission::ReadBilling,
            PoliciesRead => Permission::ReadPolicies,
            SecretsRead => Permission::ReadSecretValues,
            SecretsWrite => Permission::ManageSecrets,
            PoliciesManage => Permission::ManagePolicies,
            KeysManage => Permission::ManageApiKeys,
            AuditRead => Permission::ReadAudit,
            EnvironmentsManage => Permission::ManageEnvironments,
            WebhooksManage => Permission::ManageWebhooks,
        }
    }

    /// The scope a control-plane permission needs from a key; `None`: keys never have it
    /// (managing users, billing, the organization itself).
    pub fn for_permission(p: Permission) -> Option<Scope> {
        use Permission::*;
        Some(match p {
            ReadEnvironments => Scope::EnvironmentsRead,
            ReadPolicies => Scope::PoliciesRead,
            ReadSecrets => Scope::SecretsRead,
            ExecuteQueries => Scope::QueryRead,
            WriteData => Scope::QueryWrite,
            ManageEnvironments => Scope::EnvironmentsManage,
            ManagePolicies => Scope::PoliciesManage,
            ReadSecretValues => Scope::SecretsRead,
            ManageSecrets => Scope::SecretsWrite,
            ManageApiKeys => Scope::KeysManage,
            ManageWebhooks => Scope::WebhooksManage,
            ReadAudit => Scope::AuditRead,
            ReadBilling => Scope::BillingRead,
            ManageUsers | ManageBilling | DeleteOrganization | ManageOrganization => return None,
        })
    }

    /// The scopes a role could exercise at all.
    pub fn of_role(role: Role) -> BTreeSet<Scope> {
        Scope::ALL
            .into_iter()
            .filter(|s| role.can(s.permission()))
            .collect()
    }
}

/// The bundles of the spec, expanded on create.
pub fn bundle(name: &str) -> Option<Vec<Scope>> {
    use Scope::*;
    let read_only = vec![
        QueryRead,
        TablesList,
        TablesDescribe,
        SchemasRead,
        PoliciesRead,
        EnvironmentsRead,
    ];
    Some(match name {
        "read_only" => read_only,
        "developer" => {
            let mut s = read_only;
            s.extend([QueryWrite, TablesCreate, TablesAlter, SecretsRead]);
            s
        }
        "admin" => Scope::ALL.to_vec(),
        "agent" => vec![QueryRead, TablesList, TablesDescribe, SchemasRead],
        _ => return None,
    })
}

/// Scope names and bundles as requested → the set they mean. Unknown names are 400 naming
/// the entry; an empty list is 400 (a key that can do nothing is a mistake).
pub fn expand_scopes(requested: &[String]) -> Result<BTreeSet<Scope>> {
    if requested.is_empty() {
        return Err(Error::validation(
            "scopes",
            "non_empty",
            "scopes must name at least one scope or bundle",
        ));
    }
    let mut out = BTreeSet::new();
    for (i, name) in requested.iter().enumerate() {
        if let Some(s) = Scope::parse(name) {
            out.insert(s);
        } else if let Some(b) = bundle(name) {
            out.extend(b);
        } else {
            return Err(Error::validation(
                &format!("scopes[{i}]"),
                "unknown_scope",
                format!(
                    "unknown scope `{name}`: use one of {} or a bundle (read_only, developer, admin, agent)",
                    Scope::ALL.map(|s| s.as_str()).join(", ")
                ),
            ));
        }
    }
    Ok(out)
}

/// What a caller may grant: a role its own role covers, and scopes it holds itself.
pub fn check_grant(
    caller_role: Role,
    caller_scopes: &BTreeSet<Scope>,
    role: Role,
    scopes: &BTreeSet<Scope>,
) -> Result<()> {
    if !caller_role.covers(role) {
        return Err(Error::forbidden(
            "role_above_caller",
            format!("a {caller_role} cannot create or give a key the {role} role"),
        ));
    }
    let beyond: Vec<&str> = scopes
        .difference(caller_scopes)
        .map(|s| s.as_str())
        .collect();
    if !beyond.is_empty() {
        return Err(Error::forbidden(
            "scope_not_held",
            format!("cannot grant scopes you do not hold: {}", beyond.join(", ")),
        ));
    }
    Ok(())
}

/// Whether a key may use `permission`: its role allows it and one of its scopes grants it.
pub fn key_can(role: Role, scopes: &BTreeSet<Scope>, permission: Permission) -> bool {
    role.can(permission) && Scope::for_permission(permission).is_some_and(|s| scopes.contains(&s))
}

/// `ip_allowlist` entries: CIDRs or single addresses (stored as /32 or /128), at most 64.
pub fn allowlist(field: &str, entries: &[String]) -> Result<Vec<IpNet>> {
    if entries.len() > 64 {
        return Err(Error::validation(
            field,
            "max_items",
            format!("{field} may hold at most 64 entries"),
        ));
    }
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let e = e.trim();
            e.parse::<IpNet>()
                .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| {
                    Error::validation(
                        &format!("{field}[{i}]"),
                        "cidr",
                        format!("`{e}` is not a CIDR such as 10.0.0.0/8 or 2001:db8::/32"),
                    )
                })
        })
        .collect()
}

/// Whether `ip` may use a key with this allow-list (empty: anywhere).
pub fn ip_allowed(list: &[IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    list.is_empty() || list.iter().any(|n| n.contains(&ip))
}

pub fn expires_in_days(days: i64) -> Result<i64> {
    if (1..=MAX_EXPIRES_IN_DAYS).contains(&days) {
        Ok(days)
    } else {
        Err(Error::validation(
            "expires_in_days",
            "range",
            format!("expires_in_days must be between 1 and {MAX_EXPIRES_IN_DAYS}"),
        ))
    }
}

pub fn grace_period_hours(hours: i64) -> Result<i64> {
    if (0..=MAX_GRACE_HOURS).contains(&hours) {
        Ok(hours)
    } else {
        Err(Error::validation(
            "grace_period_hours",
            "range",
            format!("grace_period_hours must be between 0 and {MAX_GRACE_HOURS}"),
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    Active,
    Rotating,
    Revoked,
    Expired,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Rotating => "rotating",
            KeyStatus::Revoked => "revoked",
            KeyStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            KeyStatus::Active,
            KeyStatus::Rotating,
            KeyStatus::Revoked,
            KeyStatus::Expired,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    /// The status at `now_ms`: an active key past `expires_at`, or a rotating one past its
    /// grace, is expired whether or not housekeeping has written it yet.
    pub fn at(self, now_ms: i64, expires_at: Option<i64>, grace_expires_at: Option<i64>) -> Self {
        let past = |t: Option<i64>| t.is_some_and(|t| t <= now_ms);
        match self {
            KeyStatus::Active if past(expires_at) => KeyStatus::Expired,
            KeyStatus::Rotating if past(grace_expires_at) || past(expires_at) => KeyStatus::Expired,
            s => s,
        }
    }

    /// Whether a key in this status authenticates.
    pub fn usable(self) -> bool {
        matches!(self, KeyStatus::Active | KeyStatus::Rotating)
    }
}

/// A key's metadata as the API shows it (never its secret, except `key` once).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiKey {
    pub key_id: KeyId,
    pub env_id: EnvId,
    pub name: String,
    /// The key's first characters, to recognise it.
    pub prefix: String,
    pub role: Role,
    pub attributes: std::collections::BTreeMap<String, String>,
    pub scopes: Vec<Scope>,
    pub ip_allowlist: Vec<String>,
    pub status: KeyStatus,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub grace_expires_at: Option<DateTime<Utc>>,
    /// After a rotation: the key that replaced this one.
    pub rotated_to: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The user (or key) that created it.
    pub created_by: String,
    /// The plaintext key: only in the answer to create and rotate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_format_round_trips_and_junk_is_refused() {
        let id = KeyId::generate();
        let k = KeyParts::generate(&id, true);
        let text = k.plaintext();
        assert!(text.starts_with("ek_live_"));
        assert_eq!(text.len(), 8 + 26 + 1 + 64);
        assert_eq!(KeyParts::parse(&text), Some(k.clone()));
        let test = KeyParts::generate(&id, false).plaintext();
        assert!(test.starts_with("ek_test_"));
        assert_ne!(KeyParts::generate(&id, true).secret, k.secret);
        assert_eq!(prefix(&text).len(), 12);
        for junk in [
            "",
            "ek_live_",
            "nope",
            &text[..text.len() - 1],
            &format!("{text}0"),
            &text.replace("ek_live_", "ek_prod_"),
            &text.to_uppercase(),
            &format!("{}_{}", &text[..34], "g".repeat(64)),
        ] {
            assert_eq!(KeyParts::parse(junk), None, "{junk}");
        }
    }

    #[test]
    fn scopes_bundles_and_caps() {
        let s = expand_scopes(&["read_only".into(), "secrets:read".into()]).unwrap();
        assert!(s.contains(&Scope::QueryRead) && s.contains(&Scope::SecretsRead));
        assert!(!s.contains(&Scope::QueryWrite));
        assert_eq!(expand_scopes(&["admin".into()]).unwrap().len(), 17);
        let e = expand_scopes(&["query:read".into(), "query:delete".into()]).unwrap_err();
        assert_eq!(e.details["field"], "scopes[1]");
        assert_eq!(e.details["rule"], "unknown_scope");
        assert_eq!(expand_scopes(&[]).unwrap_err().details["rule"], "non_empty");

        let admin_scopes = Scope::of_role(Role::Admin);
        let dev = expand_scopes(&["developer".into()]).unwrap();
        assert!(check_grant(Role::Admin, &admin_scopes, Role::ServiceAccount, &dev).is_ok());
        assert_eq!(
            check_grant(Role::Admin, &admin_scopes, Role::Owner, &dev)
                .unwrap_err()
                .details["rule"],
            "role_above_caller"
        );
        let few: BTreeSet<Scope> = [Scope::QueryRead].into();
        assert_eq!(
            check_grant(Role::Admin, &few, Role::ServiceAccount, &dev)
                .unwrap_err()
                .details["rule"],
            "scope_not_held"
        );
        // A key needs both: the role's permission and the scope.
        assert!(key_can(
            Role::ServiceAccount,
            &dev,
            Permission::ReadEnvironments
        ));
        assert!(!key_can(Role::ServiceAccount, &dev, Permission::WriteData));
        assert!(!key_can(Role::Admin, &few, Permission::ManageEnvironments));
        assert!(!key_can(
            Role::Owner,
            &Scope::ALL.into(),
            Permission::ManageUsers
        ));
    }

    #[test]
    fn allowlists() {
        let l = allowlist(
            "ip_allowlist",
            &[
                "10.0.0.0/8".into(),
                "192.168.1.7".into(),
                "2001:db8::/32".into(),
            ],
        )
        .unwrap();
        assert!(ip_allowed(&l, "10.1.2.3".parse().unwrap()));
        assert!(ip_allowed(&l, "192.168.1.7".parse().unwrap()));
        assert!(!ip_allowed(&l, "192.168.1.8".parse().unwrap()));
        assert!(ip_allowed(&l, "2001:db8::1".parse().unwrap()));
        assert!(ip_allowed(&l, "::ffff:10.9.9.9".parse().unwrap()));
        assert!(ip_allowed(&[], "8.8.8.8".parse().unwrap()));
        for bad in ["10.0.0.0/33", "example.com", "10.0.0", ""] {
            let e = allowlist("ip_allowlist", &[bad.into()]).unwrap_err();
            assert_eq!(e.details["field"], "ip_allowlist[0]", "{bad}");
        }
        assert_eq!(
            allowlist("ip_allowlist", &["10.1.2.3/8".into()]).unwrap()[0].to_string(),
            "10.0.0.0/8"
        );
    }

    #[test]
    fn lifecycle_over_time() {
        use KeyStatus::*;
        assert_eq!(Active.at(100, Some(100), None), Expired);
        assert_eq!(Active.at(99, Some(100), None), Active);
        assert_eq!(Active.at(1_000, None, None), Active);
        assert_eq!(Rotating.at(100, None, Some(50)), Expired);
        assert_eq!(Rotating.at(10, None, Some(50)), Rotating);
        assert_eq!(Revoked.at(10, Some(5), None), Revoked);
        assert!(Rotating.usable() && !Revoked.usable() && !Expired.usable());
        assert!(
            expires_in_days(-1).is_err()
                && expires_in_days(0).is_err()
                && expires_in_days(30).is_ok()
        );
        assert!(
            grace_period_hours(0).is_ok()
                && grace_period_hours(721).is_err()
                && grace_period_hours(-1).is_err()
        );
    }
}

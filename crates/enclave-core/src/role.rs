//! Roles and the permission matrix: which role may do what. Every authorization check in the
//! product goes through [`Role::can`]; the matrix exists only here.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Admin,
    Developer,
    Analyst,
    Auditor,
    ServiceAccount,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    ReadEnvironments,
    /// Reading an environment's policies (every member; keys need `policies:read`).
    ReadPolicies,
    /// Listing an environment's secret keys without values (every member; keys need
    /// `secrets:read`).
    ReadSecrets,
    ExecuteQueries,
    WriteData,
    ManageEnvironments,
    ManagePolicies,
    ReadSecretValues,
    ManageSecrets,
    ManageUsers,
    ManageApiKeys,
    ManageWebhooks,
    ReadAudit,
    /// Reading the organization's quotas and usage (`…/billing/usage`: owner, admin, auditor;
    /// keys need `billing:read`).
    ReadBilling,
    ManageBilling,
    DeleteOrganization,
    /// Changing an organization's name, billing e-mail and settings (the spec's
    /// `PATCH /v1/organizations/{id}`: owner, admin).
    ManageOrganization,
}

impl Permission {
    pub const ALL: [Permission; 17] = [
        Permission::ReadEnvironments,
        Permission::ReadPolicies,
        Permission::ReadSecrets,
        Permission::ExecuteQueries,
        Permission::WriteData,
        Permission::ManageEnvironments,
        Permission::ManagePolicies,
        Permission::ReadSecretValues,
        Permission::ManageSecrets,
        Permission::ManageUsers,
        Permission::ManageApiKeys,
        Permission::ManageWebhooks,
        Permission::ReadAudit,
        Permission::ReadBilling,
        Permission::ManageBilling,
        Permission::DeleteOrganization,
        Permission::ManageOrganization,
    ];

    /// The name used in error details (`{"rule": "permission:manage_users"}`).
    pub fn name(self) -> &'static str {
        match self {
            Permission::ReadEnvironments => "read_environments",
            Permission::ReadPolicies => "read_policies",
            Permission::ReadSecrets => "read_secrets",
            Permission::ExecuteQueries => "execute_queries",
            Permission::WriteData => "write_data",
            Permission::ManageEnvironments => "manage_environments",
            Permission::ManagePolicies => "manage_policies",
            Permission::ReadSecretValues => "read_secret_values",
            Permission::ManageSecrets => "manage_secrets",
            Permission::ManageUsers => "manage_users",
            Permission::ManageApiKeys => "manage_api_keys",
            Permission::ManageWebhooks => "manage_webhooks",
            Permission::ReadAudit => "read_audit",
            Permission::ReadBilling => "read_billing",
            Permission::ManageBilling => "manage_billing",
            Permission::DeleteOrganization => "delete_organization",
            Permission::ManageOrganization => "manage_organization",
        }
    }
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Owner,
        Role::Admin,
        Role::Developer,
        Role::Analyst,
        Role::Auditor,
        Role::ServiceAccount,
    ];

    /// The permission matrix.
    pub fn can(self, permission: Permission) -> bool {
        use Permission::*;
        use Role::*;
        match permission {
            ReadEnvironments | ReadPolicies | ReadSecrets => true,
            ExecuteQueries => !matches!(self, Auditor),
            WriteData | ReadSecretValues => matches!(self, Owner | Admin | Developer),
            ManageEnvironments | ManagePolicies | ManageSecrets | ManageUsers | ManageApiKeys
            | ManageWebhooks | ManageOrganization => matches!(self, Owner | Admin),
            ReadAudit | ReadBilling => matches!(self, Owner | Admin | Auditor),
            ManageBilling | DeleteOrganization => matches!(self, Owner),
        }
    }

    /// Rank for "never above its creator's role" comparisons: a role dominates another when
    /// it holds every permission the other holds.
    pub fn covers(self, other: Role) -> bool {
        Permission::ALL
            .iter()
            .all(|p| !other.can(*p) || self.can(*p))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::Analyst => "analyst",
            Role::Auditor => "auditor",
            Role::ServiceAccount => "service_account",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::*;

    /// The permission matrix, row by row, in its column order:
    /// owner, admin, developer, analyst, auditor, service_account.
    const MATRIX: [(Permission, [bool; 6]); 17] = [
        (ReadEnvironments, [true, true, true, true, true, true]),
        (ReadPolicies, [true, true, true, true, true, true]),
        (ReadSecrets, [true, true, true, true, true, true]),
        (ExecuteQueries, [true, true, true, true, false, true]),
        (WriteData, [true, true, true, false, false, false]),
        (ManageEnvironments, [true, true, false, false, false, false]),
        (ManagePolicies, [true, true, false, false, false, false]),
        (ReadSecretValues, [true, true, true, false, false, false]),
        (ManageSecrets, [true, true, false, false, false, false]),
        (ManageUsers, [true, true, false, false, false, false]),
        (ManageApiKeys, [true, true, false, false, false, false]),
        (ManageWebhooks, [true, true, false, false, false, false]),
        (ReadAudit, [true, true, false, false, true, false]),
        (ReadBilling, [true, true, false, false, true, false]),
        (ManageBilling, [true, false, false, false, false, false]),
        (
            DeleteOrganization,
            [true, false, false, false, false, false],
        ),
        (ManageOrganization, [true, true, false, false, false, false]),
    ];

    #[test]
    fn matrix_matches_the_spec() {
        for (perm, row) in MATRIX {
            for (role, expected) in Role::ALL.into_iter().zip(row) {
                assert_eq!(role.can(perm), expected, "{role} / {}", perm.name());
            }
        }
    }

    #[test]
    fn covers_orders_roles() {
        assert!(Role::Owner.covers(Role::Admin));
        assert!(Role::Admin.covers(Role::Developer));
        assert!(!Role::Admin.covers(Role::Owner));
        assert!(
            !Role::Developer.covers(Role::Auditor),
            "developers cannot read audit"
        );
        assert!(Role::Developer.covers(Role::Analyst));
        for r in Role::ALL {
            assert!(r.covers(r));
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
    }
}

//! Stage 4, authorize: whether the caller's role (and a key's scopes) allow a statement of
//! its kind. Refusals are `42501` naming the permission or scope missing.

use crate::api_key::Scope;
use crate::error::{Error, Result};
use crate::policy::evaluate::Principal;
use crate::query::analyze::{Analyzed, Kind};
use crate::query::sqlstate::with_sqlstate;
use crate::role::Permission;

/// The permission of the matrix a statement exercises; session statements need none (they
/// touch no data).
pub fn required_permission(statement: &Analyzed) -> Option<Permission> {
    match statement.kind {
        Kind::Read => Some(Permission::ExecuteQueries),
        Kind::Write | Kind::Ddl => Some(Permission::WriteData),
        Kind::Session => None,
    }
}

/// The scope a key needs for a statement.
pub fn required_scope(statement: &Analyzed) -> Option<Scope> {
    match statement.kind {
        Kind::Read => Some(Scope::QueryRead),
        Kind::Write => Some(Scope::QueryWrite),
        Kind::Ddl if statement.creates => Some(Scope::TablesCreate),
        Kind::Ddl => Some(Scope::TablesAlter),
        Kind::Session => None,
    }
}

/// Whether `who` may run `statement`: a member by their role, an API key by its role and its
/// scopes.
pub fn authorize(statement: &Analyzed, who: &Principal) -> Result<()> {
    let Some(permission) = required_permission(statement) else {
        return Ok(());
    };
    let kind = statement.kind.as_str();
    let role = who.role;
    if !role.can(permission) {
        return Err(with_sqlstate(
            Error::forbidden(
                &format!("permission:{}", permission.name()),
                format!("the {} role may not run {kind} statements", role.as_str()),
            ),
            "42501",
        ));
    }
    if let (Some(scopes), Some(scope)) = (&who.scopes, required_scope(statement)) {
        if !scopes.contains(&scope) {
            return Err(with_sqlstate(
                Error::forbidden(
                    &format!("scope:{}", scope.as_str()),
                    format!(
                        "this API key lacks the {} scope needed for {kind} statements",
                        scope.as_str()
                    ),
                ),
                "42501",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::query::{parse, sqlstate, Dialect};
    use crate::role::Role;

    fn check(sql: &str, who: &Principal) -> Result<()> {
        authorize(&parse(sql, Dialect::DuckDb).unwrap()[0], who)
    }

    fn member(role: Role) -> Principal {
        Principal {
            role,
            user_id: Some("usr_x".into()),
            email: None,
            key_id: None,
            attributes: Default::default(),
            scopes: None,
            agent_id: None,
            framework: None,
        }
    }

    fn api_key(role: Role, scopes: BTreeSet<Scope>) -> Principal {
        Principal {
            user_id: None,
            key_id: Some("key_x".into()),
            scopes: Some(scopes),
            ..member(role)
        }
    }

    #[test]
    fn roles_follow_the_matrix() {
        let analyst = &member(Role::Analyst);
        assert!(check("SELECT 1", analyst).is_ok());
        let e = check("INSERT INTO t VALUES (1)", analyst).unwrap_err();
        assert_eq!(sqlstate(&e), "42501");
        assert_eq!(e.details["rule"], "permission:write_data");
        let auditor = &member(Role::Auditor);
        assert!(check("SELECT 1", auditor).is_err());
        assert!(check("SET x = 1", auditor).is_ok());
        let dev = &member(Role::Developer);
        assert!(check("CREATE TABLE t (a INT)", dev).is_ok());
    }

    #[test]
    fn keys_need_the_scope_of_the_kind() {
        let read_only: BTreeSet<Scope> = [Scope::QueryRead].into();
        let key = &api_key(Role::Developer, read_only);
        assert!(check("SELECT 1", key).is_ok());
        let e = check("DELETE FROM t", key).unwrap_err();
        assert_eq!(e.details["rule"], "scope:query:write");
        assert_eq!(
            check("CREATE TABLE t (a INT)", key).unwrap_err().details["rule"],
            "scope:tables:create"
        );
        assert_eq!(
            check("DROP TABLE t", key).unwrap_err().details["rule"],
            "scope:tables:alter"
        );
        // Scopes never widen the role.
        let all: BTreeSet<Scope> = Scope::ALL.into();
        let service = &api_key(Role::ServiceAccount, all);
        assert_eq!(
            check("DELETE FROM t", service).unwrap_err().details["rule"],
            "permission:write_data"
        );
    }
}

//! Stage 4, authorize: whether the caller's role (and a key's scopes) allow a statement of
//! its kind. Refusals are `42501` naming the permission or scope missing.

use std::collections::BTreeSet;

use crate::api_key::Scope;
use crate::error::{Error, Result};
use crate::query::analyze::{Analyzed, Kind};
use crate::query::sqlstate::with_sqlstate;
use crate::role::{Permission, Role};

/// Who runs a statement, as authorization sees them.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    /// A member acting with their organization role.
    Member { role: Role },
    /// An API key: its role, narrowed by its scopes.
    Key {
        role: Role,
        scopes: &'a BTreeSet<Scope>,
    },
}

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

pub fn authorize(statement: &Analyzed, actor: Actor<'_>) -> Result<()> {
    let Some(permission) = required_permission(statement) else {
        return Ok(());
    };
    let kind = statement.kind.as_str();
    let role = match actor {
        Actor::Member { role } | Actor::Key { role, .. } => role,
    };
    if !role.can(permission) {
        return Err(with_sqlstate(
            Error::forbidden(
                &format!("permission:{}", permission.name()),
                format!("the {} role may not run {kind} statements", role.as_str()),
            ),
            "42501",
        ));
    }
    if let (Actor::Key { scopes, .. }, Some(scope)) = (actor, required_scope(statement)) {
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
    use super::*;
    use crate::query::{parse, sqlstate, Dialect};

    fn check(sql: &str, actor: Actor<'_>) -> Result<()> {
        authorize(&parse(sql, Dialect::DuckDb).unwrap()[0], actor)
    }

    #[test]
    fn roles_follow_the_matrix() {
        let analyst = Actor::Member {
            role: Role::Analyst,
        };
        assert!(check("SELECT 1", analyst).is_ok());
        let e = check("INSERT INTO t VALUES (1)", analyst).unwrap_err();
        assert_eq!(sqlstate(&e), "42501");
        assert_eq!(e.details["rule"], "permission:write_data");
        let auditor = Actor::Member {
            role: Role::Auditor,
        };
        assert!(check("SELECT 1", auditor).is_err());
        assert!(check("SET x = 1", auditor).is_ok());
        let dev = Actor::Member {
            role: Role::Developer,
        };
        assert!(check("CREATE TABLE t (a INT)", dev).is_ok());
    }

    #[test]
    fn keys_need_the_scope_of_the_kind() {
        let read_only: BTreeSet<Scope> = [Scope::QueryRead].into();
        let key = Actor::Key {
            role: Role::Developer,
            scopes: &read_only,
        };
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
        let service = Actor::Key {
            role: Role::ServiceAccount,
            scopes: &all,
        };
        assert_eq!(
            check("DELETE FROM t", service).unwrap_err().details["rule"],
            "permission:write_data"
        );
    }
}

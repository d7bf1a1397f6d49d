//! The managed PostgreSQL engine: on the server named by `--engine-postgres-url`, Enclave
//! provisions one database per environment, owned by a login role of its own that holds no
//! rights anywhere else (the database refuses every other role's connections), and drops both
//! when the environment is deleted.
//!
//! A role's password is derived from the administrative credentials every node is given and
//! the environment's id, so each node can connect without a password stored anywhere. Should
//! the administrative password change, the first refused connection sets the role's password
//! again from the new one.

use std::time::Duration;

use enclave_core::id::EnvId;
use enclave_core::query::with_sqlstate;
use enclave_core::{Error, Result};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::ConnectOptions;

use super::postgres::pg_error;

pub struct ManagedPostgres {
    admin: PgConnectOptions,
    /// The administrative connection: creating and dropping databases and roles.
    pool: PgPool,
    role_key: ring::hmac::Key,
}

/// SQLSTATEs a concurrent provisioning of the same environment answers with
/// (`duplicate_object`, `duplicate_database`): another node got there first.
const ALREADY_THERE: [&str; 2] = ["42710", "42P04"];

/// How often an administrative step that collided with another session's change of the shared
/// catalogs is tried again.
const CONCURRENT_RETRIES: u32 = 5;

impl ManagedPostgres {
    /// The engine at `url` (a role that may create databases and roles); nothing connects
    /// until the first environment needs it.
    pub fn new(url: &str) -> std::result::Result<ManagedPostgres, String> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err("engine_postgres_url: not a postgres:// URL".into());
        }
        let admin: PgConnectOptions = url
            .parse()
            .map_err(|_| "engine_postgres_url: not a PostgreSQL connection string".to_string())?;
        let admin = admin
            .application_name("enclave-admin")
            .disable_statement_logging();
        let credentials = format!("{}:{}", admin.get_username(), password_of(url));
        let pool = PgPoolOptions::new()
            .min_connections(0)
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .idle_timeout(Duration::from_secs(60))
            .connect_lazy_with(admin.clone());
        Ok(ManagedPostgres {
            admin,
            pool,
            role_key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, credentials.as_bytes()),
        })
    }

    /// The name of the environment's database and of its role.
    pub fn name(env_id: &EnvId) -> String {
        format!("enclave_{}", env_id.to_ascii_lowercase())
    }

    fn password(&self, env_id: &EnvId) -> String {
        let tag = ring::hmac::sign(&self.role_key, format!("engine-role:{env_id}").as_bytes());
        hex::encode(tag.as_ref())
    }

    /// How sessions connect to the environment's database: as its own role.
    pub fn options(&self, env_id: &EnvId) -> PgConnectOptions {
        let name = Self::name(env_id);
        self.admin
            .clone()
            .username(&name)
            .password(&self.password(env_id))
            .database(&name)
    }

    /// A connection of its own to the environment's database, as its role (a data move).
    pub async fn connect(&self, env_id: &EnvId) -> Result<sqlx::PgConnection> {
        self.options(env_id).connect().await.map_err(|e| {
            tracing::error!(error = %e, "cannot reach an environment's managed database");
            match e {
                sqlx::Error::Database(_) => pg_error(e),
                _ => with_sqlstate(
                    Error::unavailable(
                        "the environment's managed PostgreSQL database cannot be reached",
                    ),
                    "08006",
                ),
            }
        })
    }

    /// Creates the environment's role and database (each unless it exists: a provisioning
    /// that stopped halfway, or one another node finished, completes).
    pub async fn provision(&self, env_id: &EnvId) -> Result<()> {
        let name = ident(&Self::name(env_id));
        let role_exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(Self::name(env_id))
                .fetch_one(&self.pool)
                .await
                .map_err(admin_error)?;
        if !role_exists {
            // The password is hex: nothing in it needs quoting.
            self.run(&format!(
                "CREATE ROLE {name} LOGIN PASSWORD '{}' NOSUPERUSER NOCREATEDB NOCREATEROLE \
                 NOREPLICATION NOBYPASSRLS NOINHERIT",
                self.password(env_id)
            ))
            .await?;
        }
        // Owning a database takes membership of its owner role for an administrator that is
        // not a superuser.
        self.run(&format!("GRANT {name} TO CURRENT_USER")).await?;
        let db_exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(Self::name(env_id))
                .fetch_one(&self.pool)
                .await
                .map_err(admin_error)?;
        if !db_exists {
            self.run(&format!("CREATE DATABASE {name} OWNER {name}"))
                .await?;
        }
        self.run(&format!("REVOKE ALL ON DATABASE {name} FROM PUBLIC"))
            .await?;
        self.run(&format!(
            "GRANT CONNECT, TEMPORARY ON DATABASE {name} TO {name}"
        ))
        .await?;
        // The schema `public` comes from the template, owned by whoever owns the template's
        // (before PostgreSQL 15, or after an upgrade): the environment's role owns its own.
        let inside = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(self.admin.clone().database(&Self::name(env_id)))
            .await
            .map_err(admin_error)?;
        let owned = sqlx::raw_sql(&format!("ALTER SCHEMA public OWNER TO {name}"))
            .execute(&inside)
            .await;
        inside.close().await;
        owned.map(|_| ()).map_err(admin_error)
    }

    /// Drops the environment's database (ending every session on it, on any node) and role.
    pub async fn drop_database(&self, env_id: &EnvId) -> Result<()> {
        let name = ident(&Self::name(env_id));
        self.run(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await?;
        self.run(&format!("DROP ROLE IF EXISTS {name}")).await
    }

    /// Sets the role's password again from the administrative credentials (they changed).
    pub async fn reset_password(&self, env_id: &EnvId) -> Result<()> {
        self.run(&format!(
            "ALTER ROLE {} PASSWORD '{}'",
            ident(&Self::name(env_id)),
            self.password(env_id)
        ))
        .await
    }

    /// Whether the managed engine answers (for a clear error at start rather than at the
    /// first environment).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(admin_error)
    }

    async fn run(&self, sql: &str) -> Result<()> {
        let mut attempt = 0;
        loop {
            match sqlx::raw_sql(sql).execute(&self.pool).await {
                Ok(_) => return Ok(()),
                Err(sqlx::Error::Database(db))
                    if db
                        .code()
                        .is_some_and(|c| ALREADY_THERE.contains(&c.as_ref())) =>
                {
                    return Ok(())
                }
                // Roles, databases and memberships live in catalogs the whole server shares:
                // two sessions changing them at once (other environments' provisioning or
                // removal, on any node) can fail one with "tuple concurrently updated" or
                // "… deleted". The step is whole or not done at all, so it is tried again.
                Err(sqlx::Error::Database(db))
                    if attempt < CONCURRENT_RETRIES
                        && db.code().is_some_and(|c| c == "XX000")
                        && db.message().contains("concurrently") =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                }
                Err(e) => return Err(admin_error(e)),
            }
        }
    }
}

/// The password part of a `postgres://user:password@host/…` URL (empty without one).
fn password_of(url: &str) -> &str {
    let Some((_, rest)) = url.split_once("://") else {
        return "";
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    match authority.rsplit_once('@') {
        Some((userinfo, _)) => userinfo.split_once(':').map_or("", |(_, p)| p),
        None => "",
    }
}

/// A name as a quoted identifier (ours are `enclave_env_…`: letters, digits, underscores).
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn admin_error(e: sqlx::Error) -> Error {
    tracing::error!(error = %e, "the managed PostgreSQL engine refused an administrative step");
    match e {
        sqlx::Error::Database(_) => pg_error(e),
        _ => with_sqlstate(
            Error::unavailable("the managed PostgreSQL engine cannot be reached"),
            "08006",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_and_passwords() {
        let env: EnvId = "env_01JABCDEFGHJKMNPQRSTVWXYZ0".to_string().into();
        assert_eq!(
            ManagedPostgres::name(&env),
            "enclave_env_01jabcdefghjkmnpqrstvwxyz0"
        );
        let a = ManagedPostgres::new("postgres://admin:one@db:5432/postgres").unwrap();
        let b = ManagedPostgres::new("postgres://admin:one@other-name:5432/postgres").unwrap();
        let c = ManagedPostgres::new("postgres://admin:two@db:5432/postgres").unwrap();
        // The same credentials give the same password on every node, whatever host it uses.
        assert_eq!(a.password(&env), b.password(&env));
        assert_ne!(a.password(&env), c.password(&env));
        let options = a.options(&env);
        assert_eq!(options.get_username(), ManagedPostgres::name(&env));
        assert_eq!(
            options.get_database(),
            Some(ManagedPostgres::name(&env).as_str())
        );
        assert!(ManagedPostgres::new("mysql://nope").is_err());
        assert_eq!(password_of("postgres://u:p%40ss@h:1/db?x=y"), "p%40ss");
        assert_eq!(password_of("postgres://u@h/db"), "");
    }
}

//! Users: created on first start, by invitation or sign-up, found by e-mail or id.

use enclave_core::clock::now_ms;
use enclave_core::id::UserId;
use enclave_core::Error;

use crate::db::{self, Tx};
use crate::db_error::{internal, unique_or};
use crate::journal::*;
use crate::organizations::*;
use crate::records::*;
use crate::store::Store;

pub(crate) const USER_COLUMNS: &str =
    "id, email, name, password_hash, mfa_enabled_at, created_at, updated_at";

impl Store {
    pub async fn count_users(&self) -> enclave_core::Result<i64> {
        db::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(self.reader())
            .await
            .map_err(internal)
    }

    pub async fn create_user(&self, user: NewUser) -> enclave_core::Result<UserRecord> {
        let mut tx = self.begin_write().await?;
        let rec = insert_user(&mut tx, user).await.map_err(unique_or(|| {
            Error::conflict("email_taken", "a user with this e-mail already exists")
        }))?;
        self.commit(tx, vec![]).await?;
        Ok(rec)
    }

    pub async fn user_by_email(&self, email: &str) -> enclave_core::Result<Option<UserRecord>> {
        db::query_as(format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1"))
            .bind(email)
            .fetch_optional(self.reader())
            .await
            .map_err(internal)
    }

    pub async fn user_by_id(&self, user_id: &UserId) -> enclave_core::Result<Option<UserRecord>> {
        db::query_as(format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(user_id)
            .fetch_optional(self.reader())
            .await
            .map_err(internal)
    }

    /// First start: creates the user, the organization (with `environments`, in order) and
    /// the owner membership only when no user exists yet. Returns `None` when a user already
    /// existed.
    pub async fn bootstrap(
        &self,
        user: NewUser,
        org: NewOrg,
        environments: Vec<NewEnvironment>,
    ) -> enclave_core::Result<Option<OrgRecord>> {
        let mut tx = self.begin_write().await?;
        let users: i64 = db::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&mut tx)
            .await
            .map_err(internal)?;
        if users > 0 {
            return Ok(None);
        }
        let owner_name = user.name.clone();
        let owner_id = user.id.clone();
        let inserted = async {
            insert_user(&mut tx, user).await?;
            let rec = insert_org(&mut tx, org).await?;
            insert_owner(&mut tx, &rec.id, &owner_id, &owner_name, rec.created_at).await?;
            Ok::<_, sqlx::Error>(rec)
        }
        .await;
        match inserted {
            Ok(rec) => {
                let change = org_created(&rec, &environments);
                insert_default_envs(&mut tx, &rec.id, environments).await?;
                journal(&mut tx, &Origin::system(), change).await?;
                self.commit(tx, vec![]).await?;
                Ok(Some(rec))
            }
            // Another node bootstrapped at the same moment.
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Ok(None),
            Err(e) => Err(internal(e)),
        }
    }
}

pub(crate) async fn insert_user(
    tx: &mut Tx,
    u: NewUser,
) -> std::result::Result<UserRecord, sqlx::Error> {
    let now = now_ms();
    db::query_as::<UserRecord>(&format!(
        "INSERT INTO users (id, email, name, password_hash, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING {USER_COLUMNS}"
    ))
    .bind(u.id)
    .bind(u.email)
    .bind(u.name)
    .bind(u.password_hash)
    .bind(now)
    .fetch_one(tx)
    .await
}

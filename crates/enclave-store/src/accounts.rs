//! Account security: passwords changed and reset, the TOTP second factor and its recovery
//! codes.
//!
//! A user belongs to several organizations; a change to their account is recorded on the
//! audit chain of every organization where they are an active member, so each one's admins
//! see it.

use enclave_core::clock::now_ms;
use enclave_core::id::{OrgId, UserId};
use enclave_core::{Error, Result};

use crate::db::{self, Tx};
use crate::db_error::internal;
use crate::journal::*;
use crate::records::*;
use crate::store::Store;
use crate::Invalidation;

impl Store {
    /// The user's second-factor state, `None` for an unknown user.
    pub async fn mfa_state(&self, user_id: &UserId) -> enclave_core::Result<Option<MfaState>> {
        db::query_as(
            "SELECT u.id AS user_id, u.mfa_secret, u.mfa_pending_secret, u.mfa_enabled_at, \
             u.mfa_last_step, (SELECT COUNT(*) FROM recovery_codes r \
             WHERE r.user_id = u.id AND r.used_at IS NULL) AS recovery_codes_left \
             FROM users u WHERE u.id = $1",
        )
        .bind(user_id)
        .fetch_optional(self.reader())
        .await
        .map_err(internal)
    }

    /// Replaces the password hash and ends every session of the user but `keep_session`;
    /// voids outstanding resets. Returns how many sessions ended.
    pub async fn set_password(
        &self,
        user_id: &UserId,
        password_hash: String,
        keep_session: Option<&str>,
        origin: &Origin,
    ) -> enclave_core::Result<u64> {
        let mut tx = self.begin_write().await?;
        let ended = replace_password(&mut tx, user_id, password_hash, keep_session).await?;
        let after = serde_json::json!({"sessions_ended": ended.len()});
        journal_account(&mut tx, origin, user_id, "user.password_changed", after).await?;
        let n = ended.len() as u64;
        self.commit(tx, session_events(ended)).await?;
        Ok(n)
    }

    /// Stores a reset (replacing any earlier one of the user) and audits it in its
    /// organization.
    pub async fn create_password_reset(
        &self,
        r: NewPasswordReset,
        origin: &Origin,
    ) -> enclave_core::Result<()> {
        let mut tx = self.begin_write().await?;
        db::query("DELETE FROM password_resets WHERE user_id = $1")
            .bind(&r.user_id)
            .execute(&mut tx)
            .await
            .map_err(internal)?;
        db::query(
            "INSERT INTO password_resets (token_hash, user_id, org_id, created_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&r.token_hash)
        .bind(&r.user_id)
        .bind(&r.org_id)
        .bind(&r.created_by)
        .bind(now_ms())
        .bind(r.expires_at)
        .execute(&mut tx)
        .await
        .map_err(internal)?;
        let change = Change::new(&r.org_id, "user.password_reset_started", "user", &r.user_id)
            .after(serde_json::json!({"user_id": r.user_id, "expires_at": enclave_core::audit::timestamp(r.expires_at)}));
        journal(&mut tx, origin, change).await?;
        self.commit(tx, vec![]).await
    }

    /// Spends the reset whose token hashes to `token_hash` if it is unused and unexpired: sets
    /// the password and ends every session of the user. Returns the user, or `None`. The
    /// entry's actor is the user (`origin` gives the request id and address).
    pub async fn redeem_password_reset(
        &self,
        token_hash: &str,
        password_hash: String,
        origin: &Origin,
    ) -> enclave_core::Result<Option<UserId>> {
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        let spent: Option<(UserId, OrgId)> = db::query_as(
            "UPDATE password_resets SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL \
             AND expires_at > $2 RETURNING user_id, org_id",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&mut tx)
        .await
        .map_err(internal)?;
        let Some((user_id, _org_id)) = spent else {
            return Ok(None);
        };
        let ended = replace_password(&mut tx, &user_id, password_hash, None).await?;
        let origin = Origin {
            actor: enclave_core::audit::Actor::user(&user_id),
            ..origin.clone()
        };
        let after = serde_json::json!({"sessions_ended": ended.len()});
        journal_account(&mut tx, &origin, &user_id, "user.password_reset", after).await?;
        self.commit(tx, session_events(ended)).await?;
        Ok(Some(user_id))
    }

    /// Remembers `sealed_secret` as an enrolment to confirm (replacing an unconfirmed one).
    pub async fn begin_totp(
        &self,
        user_id: &UserId,
        sealed_secret: String,
    ) -> enclave_core::Result<()> {
        let mut tx = self.begin_write().await?;
        db::query("UPDATE users SET mfa_pending_secret = $2 WHERE id = $1")
            .bind(user_id)
            .bind(sealed_secret)
            .execute(&mut tx)
            .await
            .map_err(internal)?;
        self.commit(tx, vec![]).await
    }

    /// Turns the pending enrolment on (409 without one, or with a factor already on), with
    /// `step` as the last code used, `recovery_hashes` as the only recovery codes, and marks
    /// `session_id` as having given the second factor.
    pub async fn enable_totp(
        &self,
        user_id: &UserId,
        step: i64,
        recovery_hashes: Vec<String>,
        session_id: &str,
        origin: &Origin,
    ) -> enclave_core::Result<()> {
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        let done = db::query(
            "UPDATE users SET mfa_secret = mfa_pending_secret, mfa_pending_secret = NULL, \
             mfa_enabled_at = $2, mfa_last_step = $3, updated_at = $2 \
             WHERE id = $1 AND mfa_pending_secret IS NOT NULL AND mfa_secret IS NULL",
        )
        .bind(user_id)
        .bind(now)
        .bind(step)
        .execute(&mut tx)
        .await
        .map_err(internal)?
        .rows_affected();
        if done != 1 {
            return Err(Error::conflict(
                "mfa_not_pending",
                "no enrolment to confirm: begin one with POST /v1/auth/mfa/totp",
            ));
        }
        store_recovery_codes(&mut tx, user_id, recovery_hashes).await?;
        db::query("UPDATE sessions SET mfa_at = $2 WHERE id = $1 AND user_id = $3")
            .bind(session_id)
            .bind(now)
            .bind(user_id)
            .execute(&mut tx)
            .await
            .map_err(internal)?;
        journal_account(
            &mut tx,
            origin,
            user_id,
            "user.mfa_enabled",
            serde_json::json!({"method": "totp"}),
        )
        .await?;
        let events = vec![
            Invalidation::User {
                user_id: user_id.into(),
            },
            Invalidation::Session {
                session_id: session_id.into(),
            },
        ];
        self.commit(tx, events).await
    }

    /// Turns the second factor off and drops its recovery codes. `action` is
    /// `user.mfa_disabled` (by the user) or `user.mfa_reset` (by an owner or admin).
    pub async fn disable_totp(
        &self,
        user_id: &UserId,
        action: &str,
        origin: &Origin,
    ) -> enclave_core::Result<()> {
        let mut tx = self.begin_write().await?;
        let done = db::query(
            "UPDATE users SET mfa_secret = NULL, mfa_pending_secret = NULL, mfa_enabled_at = NULL, \
             updated_at = $2 WHERE id = $1 AND mfa_secret IS NOT NULL",
        )
        .bind(user_id)
        .bind(now_ms())
        .execute(&mut tx)
        .await
        .map_err(internal)?
        .rows_affected();
        if done != 1 {
            return Err(Error::conflict(
                "mfa_not_enabled",
                "this account has no second factor",
            ));
        }
        store_recovery_codes(&mut tx, user_id, Vec::<String>::new()).await?;
        journal_account(
            &mut tx,
            origin,
            user_id,
            action,
            serde_json::json!({"method": "totp"}),
        )
        .await?;
        self.commit(
            tx,
            vec![Invalidation::User {
                user_id: user_id.into(),
            }],
        )
        .await
    }

    /// Replaces the user's recovery codes.
    pub async fn replace_recovery_codes(
        &self,
        user_id: &UserId,
        recovery_hashes: Vec<String>,
        origin: &Origin,
    ) -> enclave_core::Result<()> {
        let mut tx = self.begin_write().await?;
        let n = recovery_hashes.len();
        store_recovery_codes(&mut tx, user_id, recovery_hashes).await?;
        journal_account(
            &mut tx,
            origin,
            user_id,
            "user.recovery_codes_replaced",
            serde_json::json!({"codes": n}),
        )
        .await?;
        self.commit(tx, vec![]).await
    }

    /// Accepts a code's 30-second `step` once: `false` when that step (or a later one) was
    /// already used, so an observed code cannot be replayed.
    pub async fn accept_totp_step(
        &self,
        user_id: &UserId,
        step: i64,
    ) -> enclave_core::Result<bool> {
        let mut tx = self.begin_write().await?;
        let done =
            db::query("UPDATE users SET mfa_last_step = $2 WHERE id = $1 AND mfa_last_step < $2")
                .bind(user_id)
                .bind(step)
                .execute(&mut tx)
                .await
                .map_err(internal)?
                .rows_affected();
        self.commit(tx, vec![]).await?;
        Ok(done == 1)
    }

    /// Spends an unused recovery code; `false` when there is none with that hash.
    pub async fn use_recovery_code(
        &self,
        user_id: &UserId,
        code_hash: &str,
        origin: &Origin,
    ) -> enclave_core::Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = db::query(
            "UPDATE recovery_codes SET used_at = $3 WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
        )
        .bind(user_id)
        .bind(code_hash)
        .bind(now_ms())
        .execute(&mut tx)
        .await
        .map_err(internal)?
        .rows_affected();
        if done != 1 {
            return Ok(false);
        }
        let left: i64 = db::query_scalar(
            "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
        )
        .bind(user_id)
        .fetch_one(&mut tx)
        .await
        .map_err(internal)?;
        journal_account(
            &mut tx,
            origin,
            user_id,
            "user.recovery_code_used",
            serde_json::json!({"codes_left": left}),
        )
        .await?;
        self.commit(tx, vec![]).await?;
        Ok(true)
    }

    /// How many organizations the user belongs to (any status).
    pub async fn membership_count(&self, user_id: &UserId) -> enclave_core::Result<i64> {
        db::query_scalar("SELECT COUNT(*) FROM memberships WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(self.reader())
            .await
            .map_err(internal)
    }

    /// The unused, unexpired reset whose token hashes to `token_hash`.
    pub async fn password_reset(
        &self,
        token_hash: &str,
    ) -> enclave_core::Result<Option<PasswordResetRecord>> {
        db::query_as(
            "SELECT user_id, org_id, created_by, created_at, expires_at FROM password_resets \
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now_ms())
        .fetch_optional(self.reader())
        .await
        .map_err(internal)
    }
}

/// Sets the user's password hash, ends their live sessions but `keep` and voids their
/// outstanding resets; returns the sessions ended.
pub(crate) async fn replace_password(
    tx: &mut Tx,
    user_id: &UserId,
    hash: String,
    keep: Option<&str>,
) -> Result<Vec<String>> {
    let now = now_ms();
    db::query(
        "UPDATE users SET password_hash = $2, password_changed_at = $3, updated_at = $3 WHERE id = $1",
    )
    .bind(user_id)
    .bind(hash)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(internal)?;
    let ended: Vec<String> = db::query_scalar(
        "UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL \
         AND ($3 IS NULL OR id <> $3) RETURNING id",
    )
    .bind(user_id)
    .bind(now)
    .bind(keep)
    .fetch_all(&mut *tx)
    .await
    .map_err(internal)?;
    db::query("DELETE FROM password_resets WHERE user_id = $1 AND used_at IS NULL")
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
    Ok(ended)
}

/// Replaces the user's recovery codes by `hashes`.
pub(crate) async fn store_recovery_codes(
    tx: &mut Tx,
    user_id: &UserId,
    hashes: Vec<String>,
) -> Result<()> {
    db::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
    for hash in hashes {
        db::query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)")
            .bind(user_id)
            .bind(hash)
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
    }
    Ok::<(), enclave_core::Error>(())
}

/// Records `action` on the user's account in every organization where they are an active
/// member.
pub(crate) async fn journal_account(
    tx: &mut Tx,
    origin: &Origin,
    user_id: &UserId,
    action: &str,
    after: serde_json::Value,
) -> Result<()> {
    let orgs: Vec<String> = db::query_scalar(
        "SELECT org_id FROM memberships WHERE user_id = $1 AND status = 'active' ORDER BY org_id",
    )
    .bind(user_id)
    .fetch_all(&mut *tx)
    .await
    .map_err(internal)?;
    for org_id in orgs {
        let mut entry = after.clone();
        entry["user_id"] = serde_json::json!(user_id);
        let change = Change::new(&org_id, action, "user", user_id).after(entry);
        journal(&mut *tx, origin, change).await?;
    }
    Ok::<(), enclave_core::Error>(())
}

/// Applies a [`crate::Reseal`] to every user's TOTP secrets (active and pending) within the
/// transaction `tx`: a master key rotation moves them with the data keys. Returns how many
/// users changed.
pub(crate) async fn reseal_totp_secrets(
    tx: &mut Tx,
    reseal: &crate::webhooks::Reseal<'_>,
) -> Result<u64> {
    let rows: Vec<(String, Option<String>, Option<String>)> = db::query_as(format!(
        "SELECT id, mfa_secret, mfa_pending_secret FROM users \
         WHERE mfa_secret IS NOT NULL OR mfa_pending_secret IS NOT NULL ORDER BY id{}",
        crate::store::for_update(tx)
    ))
    .fetch_all(&mut *tx)
    .await
    .map_err(internal)?;
    let mut changed = 0u64;
    for (id, secret, pending) in rows {
        let secret = secret.as_deref().map(|s| reseal(&id, s)).transpose()?;
        let pending = pending.as_deref().map(|s| reseal(&id, s)).transpose()?;
        db::query("UPDATE users SET mfa_secret = $2, mfa_pending_secret = $3 WHERE id = $1")
            .bind(&id)
            .bind(secret)
            .bind(pending)
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
        changed += 1;
    }
    Ok(changed)
}

/// One invalidation per ended session.
pub(crate) fn session_events(sessions: Vec<String>) -> Vec<crate::Invalidation> {
    sessions
        .into_iter()
        .map(|session_id| crate::Invalidation::Session { session_id })
        .collect()
}

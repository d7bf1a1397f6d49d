//! Sessions and their refresh tokens: one use each, a reused token revokes the session.

use crate::db::{self};
use crate::db_error::internal;
use crate::journal::*;
use crate::records::*;
use crate::store::Store;
use crate::Invalidation;
use enclave_core::clock::now_ms;
use enclave_core::id::UserId;

pub(crate) const SESSION_COLUMNS: &str =
    "id, user_id, org_id, created_at, expires_at, revoked_at, mfa_at";

impl Store {
    /// `origin: None` when the request's own audit entry covers the sign-in (accepting an
    /// invitation); else `session.created` is audited in the session's organization.
    pub async fn create_session(
        &self,
        s: NewSession,
        origin: Option<&Origin>,
    ) -> enclave_core::Result<SessionRecord> {
        let mut tx = self.begin_write().await?;
        let rec: SessionRecord = db::query_as(format!(
            "INSERT INTO sessions (id, user_id, org_id, created_at, expires_at, mfa_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {SESSION_COLUMNS}"
        ))
        .bind(&s.id)
        .bind(&s.user_id)
        .bind(&s.org_id)
        .bind(now_ms())
        .bind(s.expires_at)
        .bind(s.mfa.then(now_ms))
        .fetch_one(&mut tx)
        .await
        .map_err(internal)?;
        db::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(&s.refresh_hash)
        .bind(&s.id)
        .bind(s.refresh_expires_at.min(s.expires_at))
        .execute(&mut tx)
        .await
        .map_err(internal)?;
        if let (Some(origin), Some(change)) = (origin, session_change(&rec, "session.created")) {
            journal(&mut tx, origin, change).await?;
        }
        self.commit(tx, vec![]).await?;
        Ok(rec)
    }

    pub async fn session(&self, session_id: &str) -> enclave_core::Result<Option<SessionRecord>> {
        db::query_as(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1"
        ))
        .bind(session_id)
        .fetch_optional(self.reader())
        .await
        .map_err(internal)
    }

    /// Uses a refresh token once: marks it used and stores its successor. A token used before
    /// revokes its whole session (reuse detection).
    pub async fn rotate_refresh(
        &self,
        r: RefreshRotation,
        origin: &Origin,
    ) -> enclave_core::Result<RotateOutcome> {
        let mut tx = self.begin_write().await?;
        let claimed: Option<String> = db::query_scalar(
            "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL \
             AND expires_at > $2 RETURNING session_id",
        )
        .bind(&r.old_hash)
        .bind(r.now)
        .fetch_optional(&mut tx)
        .await
        .map_err(internal)?;
        let Some(session_id) = claimed else {
            let used: Option<(String, Option<i64>)> = db::query_as(
                "SELECT session_id, used_at FROM refresh_tokens WHERE token_hash = $1",
            )
            .bind(&r.old_hash)
            .fetch_optional(&mut tx)
            .await
            .map_err(internal)?;
            return match used {
                Some((session_id, Some(_))) => {
                    let revoked: Option<SessionRecord> = db::query_as(format!(
                        "UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING {SESSION_COLUMNS}"
                    ))
                        .bind(&session_id)
                        .bind(r.now)
                        .fetch_optional(&mut tx)
                        .await
                        .map_err(internal)?;
                    if let Some(change) = revoked
                        .as_ref()
                        .and_then(|s| session_change(s, "session.revoked"))
                    {
                        let change =
                            change.after(serde_json::json!({"reason": "refresh_token_reused"}));
                        journal(&mut tx, origin, change).await?;
                    }
                    self.commit(tx, vec![Invalidation::Session { session_id }])
                        .await?;
                    Ok(RotateOutcome::Reused)
                }
                _ => Ok(RotateOutcome::Invalid),
            };
        };
        let session: SessionRecord = db::query_as(format!(
            "UPDATE sessions SET org_id = COALESCE($2, org_id) WHERE id = $1 RETURNING {SESSION_COLUMNS}"
        ))
        .bind(&session_id)
        .bind(r.org_id.as_deref())
        .fetch_one(&mut tx)
        .await
        .map_err(internal)?;
        if session.revoked_at.is_some() || session.expires_at <= r.now {
            return Ok(RotateOutcome::Invalid);
        }
        let refresh_expires_at = r.new_expires_at.min(session.expires_at);
        db::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(&r.new_hash)
        .bind(&session_id)
        .bind(refresh_expires_at)
        .execute(&mut tx)
        .await
        .map_err(internal)?;
        if let Some(change) = session_change(&session, "session.refreshed") {
            journal(&mut tx, origin, change).await?;
        }
        self.commit(tx, vec![Invalidation::Session { session_id }])
            .await?;
        Ok(RotateOutcome::Rotated {
            session,
            refresh_expires_at,
        })
    }

    pub async fn revoke_session(
        &self,
        session_id: &str,
        origin: &Origin,
    ) -> enclave_core::Result<()> {
        let mut tx = self.begin_write().await?;
        let revoked: Option<SessionRecord> = db::query_as(format!(
            "UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING {SESSION_COLUMNS}"
        ))
            .bind(session_id)
            .bind(now_ms())
            .fetch_optional(&mut tx)
            .await
            .map_err(internal)?;
        if let Some(change) = revoked
            .as_ref()
            .and_then(|s| session_change(s, "session.revoked"))
        {
            journal(&mut tx, origin, change).await?;
        }
        self.commit(
            tx,
            vec![Invalidation::Session {
                session_id: session_id.into(),
            }],
        )
        .await
    }

    /// The user whose session a refresh token belongs to.
    pub async fn refresh_token_owner(
        &self,
        token_hash: &str,
    ) -> enclave_core::Result<Option<UserId>> {
        db::query_scalar(
            "SELECT s.user_id FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE r.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(self.reader())
        .await
        .map_err(internal)
    }
}

/// A session event, audited in the session's organization (a session without one — a user
/// with no organization yet — has no trail to be recorded in).
pub(crate) fn session_change(
    s: &crate::SessionRecord,
    action: &str,
) -> Option<crate::journal::Change> {
    let org_id = s.org_id.as_deref()?;
    Some(
        crate::journal::Change::new(org_id, action, "session", &s.id).after(serde_json::json!({
            "session_id": s.id,
            "user_id": s.user_id,
            "expires_at": enclave_core::audit::timestamp(s.expires_at),
        })),
    )
}

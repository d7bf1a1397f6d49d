//! Just-in-time access requests and the grants they become. A change that starts or ends a
//! grant publishes `Invalidation::Jit`, so the role a requester acts with is read again on
//! this node at once and (PostgreSQL) on every other; a deadline needs no message: readers
//! compare it with their clock.

use enclave_core::id::{EnvId, JitId, UserId};
use enclave_core::jit::{JitStatus, PENDING_TTL_MS};
use enclave_core::{Error, Result};
use serde_json::{json, Value};

use crate::db;
use crate::db_error::internal;
use crate::journal::*;
use crate::records::*;
use crate::store::{for_update, Store};
use crate::Invalidation;

const JIT_COLUMNS: &str = "id, env_id, org_id, requester_id, member_role, requested_role, \
     reason, duration_minutes, status, decided_by, decided_at, decision_comment, expires_at, \
     ended_by, ended_at, created_at, updated_at, version";

/// Filters of the request list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JitFilter {
    /// The status as of the list's `now` (deadlines counted).
    pub status: Option<JitStatus>,
    /// Only this member's requests.
    pub requester_id: Option<UserId>,
}

impl Audited for JitRecord {
    const RESOURCE_TYPE: &'static str = "jit_request";
    fn org_id(&self) -> &str {
        &self.org_id
    }
    fn resource_id(&self) -> &str {
        &self.id
    }
    fn env_id(&self) -> Option<&str> {
        Some(&self.env_id)
    }
    fn audit(&self) -> Value {
        let ts = |ms: Option<i64>| ms.map(enclave_core::audit::timestamp);
        json!({
            "request_id": self.id, "env_id": self.env_id, "requester_id": self.requester_id,
            "current_role": self.current_role, "requested_role": self.requested_role,
            "reason": self.reason, "duration_minutes": self.duration_minutes,
            "status": self.status, "decided_by": self.decided_by,
            "decided_at": ts(self.decided_at), "comment": self.decision_comment,
            "expires_at": ts(self.expires_at), "ended_by": self.ended_by,
            "ended_at": ts(self.ended_at),
        })
    }
}

/// The SQL condition (on `jit_requests`) of requests whose status at `$now` is `status`,
/// counting the deadlines housekeeping has not written yet; `$now` is parameter `now`.
fn status_condition(status: JitStatus, now: &str) -> String {
    let ttl = PENDING_TTL_MS;
    match status {
        JitStatus::Pending => format!("(status = 'pending' AND created_at > {now} - {ttl})"),
        JitStatus::Approved => format!("(status = 'approved' AND expires_at > {now})"),
        JitStatus::Expired => format!(
            "(status = 'expired' OR (status = 'pending' AND created_at <= {now} - {ttl}) \
             OR (status = 'approved' AND expires_at <= {now}))"
        ),
        JitStatus::Denied => "(status = 'denied')".into(),
        JitStatus::Revoked => "(status = 'revoked')".into(),
    }
}

impl Store {
    /// Files a request (`pending`), audited as `jit.requested`. 404 when the environment is
    /// gone or being deleted; 409 `jit_already_open` while the requester has a pending request
    /// or a live grant there.
    pub async fn create_jit_request(
        &self,
        req: NewJitRequest,
        now_ms: i64,
        origin: &Origin,
    ) -> Result<JitRecord> {
        let mut tx = self.begin_write().await?;
        let env = db::query_as::<(String, String)>(&format!(
            "SELECT org_id, status FROM environments WHERE id = $1{}",
            for_update(&tx)
        ))
        .bind(&req.env_id)
        .fetch_optional(&mut tx)
        .await
        .map_err(internal)?;
        let Some((org_id, status)) = env else {
            return Err(Error::not_found("environment"));
        };
        if status == "decommissioning" {
            return Err(Error::not_found("environment"));
        }
        let open: Option<(JitId, String)> = db::query_as(format!(
            "SELECT id, status FROM jit_requests WHERE env_id = $1 AND requester_id = $2 \
             AND ({} OR {}) LIMIT 1",
            status_condition(JitStatus::Pending, "$3"),
            status_condition(JitStatus::Approved, "$3"),
        ))
        .bind(&req.env_id)
        .bind(&req.requester_id)
        .bind(now_ms)
        .fetch_optional(&mut tx)
        .await
        .map_err(internal)?;
        if let Some((id, status)) = open {
            let what = if status == "pending" {
                "a pending request"
            } else {
                "a live grant"
            };
            return Err(Error::conflict(
                "jit_already_open",
                format!("you already have {what} in this environment ({id}); wait for it to end or revoke it"),
            ));
        }
        let rec: JitRecord = db::query_as(format!(
            "INSERT INTO jit_requests (id, env_id, org_id, requester_id, member_role, \
             requested_role, reason, duration_minutes, status, created_at, updated_at, version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $9, 1) \
             RETURNING {JIT_COLUMNS}"
        ))
        .bind(JitId::generate())
        .bind(&req.env_id)
        .bind(&org_id)
        .bind(&req.requester_id)
        .bind(req.current_role.as_str())
        .bind(req.requested_role.as_str())
        .bind(&req.reason)
        .bind(req.duration_minutes)
        .bind(now_ms)
        .fetch_one(&mut tx)
        .await
        .map_err(internal)?;
        journal(
            &mut tx,
            origin,
            Change::of("jit.requested", None, Some(&rec)),
        )
        .await?;
        self.commit(tx, vec![]).await?;
        Ok(rec)
    }

    /// The environment's requests matching `filter` as of `now_ms`, newest first (keyset on
    /// the id), with the number matching.
    pub async fn jit_requests(
        &self,
        env_id: &EnvId,
        filter: &JitFilter,
        now_ms: i64,
        page: &PageQuery,
    ) -> Result<(Vec<JitRecord>, i64)> {
        let mut conditions = vec![
            "env_id = $1".to_string(),
            "($2 IS NULL OR requester_id = $2)".into(),
        ];
        if let Some(status) = filter.status {
            conditions.push(status_condition(status, "$3"));
        } else {
            // The parameter is bound either way, so both queries take the same arguments.
            conditions.push("$3 = $3".into());
        }
        let condition = conditions.join(" AND ");
        let rows = db::query_as(format!(
            "SELECT {JIT_COLUMNS} FROM jit_requests WHERE {condition} \
             AND ($4 IS NULL OR id < $4) ORDER BY id DESC LIMIT $5"
        ))
        .bind(env_id)
        .bind(filter.requester_id.as_ref())
        .bind(now_ms)
        .bind(page.after.as_deref())
        .bind(i64::from(page.limit) + 1)
        .fetch_all(self.reader())
        .await
        .map_err(internal)?;
        let total = db::query_scalar(format!(
            "SELECT COUNT(*) FROM jit_requests WHERE {condition}"
        ))
        .bind(env_id)
        .bind(filter.requester_id.as_ref())
        .bind(now_ms)
        .fetch_one(self.reader())
        .await
        .map_err(internal)?;
        Ok((rows, total))
    }

    pub async fn jit_request(&self, env_id: &EnvId, id: &JitId) -> Result<Option<JitRecord>> {
        db::query_as(format!(
            "SELECT {JIT_COLUMNS} FROM jit_requests WHERE id = $1 AND env_id = $2"
        ))
        .bind(id)
        .bind(env_id)
        .fetch_optional(self.reader())
        .await
        .map_err(internal)
    }

    /// Approves (the grant runs from `now_ms` for the requested duration) or denies a request
    /// that is pending at `now_ms`; audited as `jit.approved` / `jit.denied`. 404 for an
    /// unknown request, 409 `jit_not_pending` for one already decided or expired.
    pub async fn decide_jit_request(
        &self,
        env_id: &EnvId,
        id: &JitId,
        approve: bool,
        comment: Option<&str>,
        now_ms: i64,
        origin: &Origin,
    ) -> Result<JitRecord> {
        let mut tx = self.begin_write().await?;
        let (status, action, verb) = if approve {
            ("approved", "jit.approved", "approved")
        } else {
            ("denied", "jit.denied", "denied")
        };
        let rec: Option<JitRecord> = db::query_as(format!(
            "UPDATE jit_requests SET status = $3, decided_by = $4, decided_at = $5, \
             decision_comment = $6, \
             expires_at = CASE WHEN $3 = 'approved' THEN $5 + duration_minutes * 60000 END, \
             updated_at = $5, version = version + 1 \
             WHERE id = $1 AND env_id = $2 AND {} RETURNING {JIT_COLUMNS}",
            status_condition(JitStatus::Pending, "$5")
        ))
        .bind(id)
        .bind(env_id)
        .bind(status)
        .bind(&origin.actor.id)
        .bind(now_ms)
        .bind(comment)
        .fetch_optional(&mut tx)
        .await
        .map_err(internal)?;
        let Some(rec) = rec else {
            return Err(self
                .refusal(&mut tx, env_id, id, JitStatus::Pending, verb, now_ms)
                .await);
        };
        journal(&mut tx, origin, Change::of(action, None, Some(&rec))).await?;
        let events = if approve {
            vec![Invalidation::Jit {
                env_id: rec.env_id.clone(),
                user_id: rec.requester_id.clone(),
            }]
        } else {
            vec![]
        };
        self.commit(tx, events).await?;
        Ok(rec)
    }

    /// Ends a grant that is live at `now_ms` (`revoked`, audited as `jit.revoked`); the
    /// requester's role is theirs again on every node. 409 `jit_not_approved` otherwise.
    pub async fn revoke_jit_grant(
        &self,
        env_id: &EnvId,
        id: &JitId,
        now_ms: i64,
        origin: &Origin,
    ) -> Result<JitRecord> {
        let mut tx = self.begin_write().await?;
        let rec: Option<JitRecord> = db::query_as(format!(
            "UPDATE jit_requests SET status = 'revoked', ended_by = $3, ended_at = $4, \
             updated_at = $4, version = version + 1 \
             WHERE id = $1 AND env_id = $2 AND {} RETURNING {JIT_COLUMNS}",
            status_condition(JitStatus::Approved, "$4")
        ))
        .bind(id)
        .bind(env_id)
        .bind(&origin.actor.id)
        .bind(now_ms)
        .fetch_optional(&mut tx)
        .await
        .map_err(internal)?;
        let Some(rec) = rec else {
            return Err(self
                .refusal(&mut tx, env_id, id, JitStatus::Approved, "revoked", now_ms)
                .await);
        };
        journal(&mut tx, origin, Change::of("jit.revoked", None, Some(&rec))).await?;
        let event = Invalidation::Jit {
            env_id: rec.env_id.clone(),
            user_id: rec.requester_id.clone(),
        };
        self.commit(tx, vec![event]).await?;
        Ok(rec)
    }

    /// Writes `expired` for requests unanswered for 24 hours and grants past their deadline
    /// at `now_ms` (audited as the system's `jit.expired`, announced to webhooks); returns them.
    pub async fn expire_jit_requests(&self, now_ms: i64) -> Result<Vec<JitRecord>> {
        let mut tx = self.begin_write().await?;
        let rows: Vec<JitRecord> = db::query_as(format!(
            "UPDATE jit_requests SET status = 'expired', updated_at = $1, version = version + 1 \
             WHERE (status = 'pending' AND created_at <= $1 - {PENDING_TTL_MS}) \
                OR (status = 'approved' AND expires_at <= $1) \
             RETURNING {JIT_COLUMNS}"
        ))
        .bind(now_ms)
        .fetch_all(&mut tx)
        .await
        .map_err(internal)?;
        let mut events = Vec::new();
        for rec in &rows {
            journal(
                &mut tx,
                &Origin::system(),
                Change::of("jit.expired", None, Some(rec)),
            )
            .await?;
            if rec.decided_at.is_some() {
                events.push(Invalidation::Jit {
                    env_id: rec.env_id.clone(),
                    user_id: rec.requester_id.clone(),
                });
            }
        }
        self.commit(tx, events).await?;
        Ok(rows)
    }

    /// The member's latest approved grant in the environment, whatever its deadline (callers
    /// compare `expires_at` with their clock, so a cached grant ends on time by itself).
    pub async fn approved_jit_grant(
        &self,
        user_id: &UserId,
        env_id: &EnvId,
    ) -> Result<Option<JitRecord>> {
        db::query_as(format!(
            "SELECT {JIT_COLUMNS} FROM jit_requests WHERE env_id = $1 AND requester_id = $2 \
             AND status = 'approved' ORDER BY expires_at DESC LIMIT 1"
        ))
        .bind(env_id)
        .bind(user_id)
        .fetch_optional(self.reader())
        .await
        .map_err(internal)
    }

    /// Why a conditional change of request `id` matched no row: 404 when there is none, else
    /// 409 naming the status it has at `now_ms`.
    async fn refusal(
        &self,
        tx: &mut db::Tx,
        env_id: &EnvId,
        id: &JitId,
        expected: JitStatus,
        verb: &str,
        now_ms: i64,
    ) -> Error {
        let found: Result<Option<JitRecord>> = db::query_as(format!(
            "SELECT {JIT_COLUMNS} FROM jit_requests WHERE id = $1 AND env_id = $2"
        ))
        .bind(id)
        .bind(env_id)
        .fetch_optional(tx)
        .await
        .map_err(internal);
        match found {
            Ok(Some(rec)) => {
                match enclave_core::jit::check_status(rec.status_at(now_ms), expected, verb) {
                    Err(e) => e,
                    Ok(()) => Error::internal(),
                }
            }
            Ok(None) => Error::not_found("jit_request"),
            Err(e) => e,
        }
    }
}

//! Just-in-time access (docs/provisioning.md): a member asks for a higher role in one
//! environment for a while, an owner or admin approves or denies, and the grant ends at its
//! deadline or when revoked. The rules are pure functions here; the store keeps the requests,
//! the control plane and the gateway apply a live grant to the requester's role.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{Error, Result};
use crate::id::{EnvId, JitId, UserId};
use crate::role::Role;
use crate::stored::UnknownValue;

/// The shortest grant one may ask for, in minutes.
pub const MIN_DURATION_MINUTES: i64 = 15;
/// The longest grant one may ask for, in minutes (a day).
pub const MAX_DURATION_MINUTES: i64 = 1440;
/// How long a request waits for an answer before it expires.
pub const PENDING_TTL_MS: i64 = 24 * 3_600_000;
/// The longest `reason` or `comment`, in characters.
pub const MAX_TEXT_CHARS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JitStatus {
    /// Waiting for an owner or admin.
    Pending,
    /// Granted: the requester acts with the requested role until `expires_at`.
    Approved,
    Denied,
    /// Unanswered for 24 hours, or approved and past `expires_at`.
    Expired,
    /// Ended early by an owner, an admin or the requester.
    Revoked,
}

impl JitStatus {
    pub const ALL: [JitStatus; 5] = [
        JitStatus::Pending,
        JitStatus::Approved,
        JitStatus::Denied,
        JitStatus::Expired,
        JitStatus::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JitStatus::Pending => "pending",
            JitStatus::Approved => "approved",
            JitStatus::Denied => "denied",
            JitStatus::Expired => "expired",
            JitStatus::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<JitStatus> {
        JitStatus::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// The status at `now_ms` of a request stored with this status: a pending request past
    /// its 24 hours and an approved one past its deadline are expired, whether or not
    /// housekeeping has written so yet.
    pub fn at(self, now_ms: i64, created_at: i64, expires_at: Option<i64>) -> JitStatus {
        match self {
            JitStatus::Pending if now_ms >= created_at + PENDING_TTL_MS => JitStatus::Expired,
            JitStatus::Approved if expires_at.is_some_and(|end| now_ms >= end) => {
                JitStatus::Expired
            }
            other => other,
        }
    }
}

/// A request as the API shows it; once approved, the grant it became.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JitRequest {
    pub request_id: JitId,
    pub env_id: EnvId,
    pub requester_id: UserId,
    /// The requester's own role in the organization when they asked.
    pub current_role: Role,
    pub requested_role: Role,
    pub reason: String,
    pub duration_minutes: i64,
    /// As of the answer: deadlines count even before housekeeping writes them.
    pub status: JitStatus,
    /// The owner or admin who approved or denied it.
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    /// The decider's comment.
    pub comment: Option<String>,
    /// When the grant ends (set at approval: the clock starts then).
    pub expires_at: Option<DateTime<Utc>>,
    /// Until when a pending request waits for an answer.
    pub answer_by: Option<DateTime<Utc>>,
    /// Who ended the grant early, and when.
    pub revoked_by: Option<String>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl TryFrom<String> for JitStatus {
    type Error = UnknownValue;
    fn try_from(value: String) -> std::result::Result<Self, UnknownValue> {
        JitStatus::parse(&value).ok_or(UnknownValue {
            kind: "jit status",
            value,
        })
    }
}

/// Checks a request for `requested` by a member whose role is `current`: 400 naming the
/// field and the rule when the role cannot be asked for (owner, the API keys' service
/// account, or one that grants nothing the current role lacks), the duration is out of
/// 15–1440 minutes, or the reason is empty or too long.
pub fn check_request(
    current: Role,
    requested: Role,
    duration_minutes: i64,
    reason: &str,
) -> Result<()> {
    match requested {
        Role::Owner => {
            return Err(Error::validation(
                "requested_role",
                "not_requestable",
                "the owner role cannot be requested; ask an owner to change your membership",
            ))
        }
        Role::ServiceAccount => {
            return Err(Error::validation(
                "requested_role",
                "not_requestable",
                "service_account is the role of API keys, not of people",
            ))
        }
        _ => {}
    }
    if current.covers(requested) {
        return Err(Error::validation(
            "requested_role",
            "above_current_role",
            format!(
                "the {requested} role grants nothing your {current} role lacks; ask for a \
                 role above it"
            ),
        ));
    }
    if !(MIN_DURATION_MINUTES..=MAX_DURATION_MINUTES).contains(&duration_minutes) {
        return Err(Error::validation(
            "duration_minutes",
            "range",
            format!(
                "duration_minutes must be between {MIN_DURATION_MINUTES} and \
                 {MAX_DURATION_MINUTES}"
            ),
        ));
    }
    check_text("reason", reason, true)
}

/// Checks an optional decision comment (at most 1000 characters).
pub fn check_comment(comment: Option<&str>) -> Result<()> {
    comment.map_or(Ok(()), |c| check_text("comment", c, false))
}

fn check_text(field: &str, text: &str, required: bool) -> Result<()> {
    if required && text.trim().is_empty() {
        return Err(Error::validation(
            field,
            "required",
            format!("{field} must say why the access is needed"),
        ));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(Error::validation(
            field,
            "max_length",
            format!("{field} must be at most {MAX_TEXT_CHARS} characters"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(Error::validation(
            field,
            "printable",
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(())
}

/// Who decides on a request: an owner or admin by their own membership (never through a
/// grant of their own), and never the requester.
pub fn check_decider(decider_role: Role, is_requester: bool) -> Result<()> {
    if is_requester {
        return Err(Error::forbidden(
            "jit:self_approval",
            "a request cannot be approved or denied by the member who made it",
        ));
    }
    if !matches!(decider_role, Role::Owner | Role::Admin) {
        return Err(Error::forbidden(
            "jit:decider",
            format!(
                "only an owner or admin decides on access requests, not the {decider_role} role"
            ),
        ));
    }
    Ok(())
}

/// Who may end a live grant early: an owner or admin (by membership), or its requester.
pub fn check_revoker(revoker_role: Role, is_requester: bool) -> Result<()> {
    if is_requester || matches!(revoker_role, Role::Owner | Role::Admin) {
        return Ok(());
    }
    Err(Error::forbidden(
        "jit:revoker",
        "only an owner, an admin or the requester ends a grant",
    ))
}

/// 409 unless a request is `expected` at the time of the change.
pub fn check_status(actual: JitStatus, expected: JitStatus, verb: &str) -> Result<()> {
    if actual == expected {
        return Ok(());
    }
    Err(Error::conflict(
        &format!("jit_not_{}", expected.as_str()),
        format!(
            "only a {} request can be {verb}; this one is {}",
            expected.as_str(),
            actual.as_str()
        ),
    ))
}

/// The role a member acts with in an environment where a grant of `granted` is live. A
/// member whose own role has since come to cover the grant keeps their own.
pub fn acting_role(member_role: Role, granted: Role) -> Role {
    if member_role.covers(granted) {
        member_role
    } else {
        granted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(r: Result<()>) -> String {
        let e = r.unwrap_err();
        e.details["rule"].as_str().unwrap_or_default().to_string()
    }

    #[test]
    fn only_roles_above_the_current_one_are_requestable() {
        assert!(check_request(Role::Analyst, Role::Developer, 60, "fix rows").is_ok());
        assert!(check_request(Role::Analyst, Role::Admin, 15, "x").is_ok());
        // Neither covers the other: an auditor may ask to write data for a while.
        assert!(check_request(Role::Auditor, Role::Developer, 1440, "x").is_ok());
        assert_eq!(
            rule(check_request(Role::Analyst, Role::Owner, 60, "x")),
            "not_requestable"
        );
        assert_eq!(
            rule(check_request(Role::Analyst, Role::ServiceAccount, 60, "x")),
            "not_requestable"
        );
        assert_eq!(
            rule(check_request(Role::Developer, Role::Analyst, 60, "x")),
            "above_current_role"
        );
        assert_eq!(
            rule(check_request(Role::Developer, Role::Developer, 60, "x")),
            "above_current_role"
        );
        assert_eq!(
            rule(check_request(Role::Admin, Role::Developer, 60, "x")),
            "above_current_role"
        );
    }

    #[test]
    fn durations_and_reasons_are_bounded() {
        assert_eq!(
            rule(check_request(Role::Analyst, Role::Developer, 14, "x")),
            "range"
        );
        assert_eq!(
            rule(check_request(Role::Analyst, Role::Developer, 1441, "x")),
            "range"
        );
        assert_eq!(
            rule(check_request(Role::Analyst, Role::Developer, 60, "  ")),
            "required"
        );
        let long = "x".repeat(MAX_TEXT_CHARS + 1);
        assert_eq!(
            rule(check_request(Role::Analyst, Role::Developer, 60, &long)),
            "max_length"
        );
        assert_eq!(rule(check_comment(Some("a\u{0}b"))), "printable");
        assert!(check_comment(None).is_ok());
    }

    #[test]
    fn deciders_are_owners_or_admins_and_never_the_requester() {
        assert!(check_decider(Role::Admin, false).is_ok());
        assert_eq!(rule(check_decider(Role::Admin, true)), "jit:self_approval");
        assert_eq!(rule(check_decider(Role::Developer, false)), "jit:decider");
        assert!(check_revoker(Role::Analyst, true).is_ok());
        assert!(check_revoker(Role::Owner, false).is_ok());
        assert_eq!(rule(check_revoker(Role::Developer, false)), "jit:revoker");
    }

    #[test]
    fn deadlines_expire_requests_and_grants() {
        let created = 1_000;
        let pending = JitStatus::Pending;
        assert_eq!(
            pending.at(created + PENDING_TTL_MS - 1, created, None),
            JitStatus::Pending
        );
        assert_eq!(
            pending.at(created + PENDING_TTL_MS, created, None),
            JitStatus::Expired
        );
        let approved = JitStatus::Approved;
        assert_eq!(
            approved.at(4_999, created, Some(5_000)),
            JitStatus::Approved
        );
        assert_eq!(approved.at(5_000, created, Some(5_000)), JitStatus::Expired);
        assert_eq!(
            JitStatus::Revoked.at(i64::MAX, created, Some(5_000)),
            JitStatus::Revoked
        );
        assert_eq!(
            rule(check_status(
                JitStatus::Denied,
                JitStatus::Pending,
                "approved"
            )),
            "jit_not_pending"
        );
    }

    #[test]
    fn a_grant_never_lowers_a_role_that_has_grown() {
        assert_eq!(acting_role(Role::Analyst, Role::Developer), Role::Developer);
        assert_eq!(acting_role(Role::Admin, Role::Developer), Role::Admin);
        assert_eq!(acting_role(Role::Auditor, Role::Developer), Role::Developer);
    }
}

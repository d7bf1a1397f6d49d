//! The error type every layer returns, and the codes of the API's error envelope.

use serde::Serialize;
use serde_json::{json, Value};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The machine-readable codes of `{"error": {"code", ...}}` (docs/api-conventions.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    ValidationError,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    PreconditionFailed,
    PolicyViolation,
    RateLimited,
    QuotaExceeded,
    InternalError,
    ServiceUnavailable,
}

impl ErrorCode {
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::ValidationError => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::PreconditionFailed => 412,
            ErrorCode::PolicyViolation => 422,
            ErrorCode::RateLimited | ErrorCode::QuotaExceeded => 429,
            ErrorCode::InternalError => 500,
            ErrorCode::ServiceUnavailable => 503,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ValidationError => "VALIDATION_ERROR",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::PreconditionFailed => "PRECONDITION_FAILED",
            ErrorCode::PolicyViolation => "POLICY_VIOLATION",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::QuotaExceeded => "QUOTA_EXCEEDED",
            ErrorCode::InternalError => "INTERNAL_ERROR",
            ErrorCode::ServiceUnavailable => "SERVICE_UNAVAILABLE",
        }
    }
}

/// An error with its code, a message meant for people, and `details` naming the field and the
/// rule that was broken. Internal errors keep their cause out of the message: it goes to the
/// log, never to the client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    pub details: Value,
    /// Overrides the code's usual HTTP status (e.g. 413 for an oversize body, still a
    /// `VALIDATION_ERROR`).
    pub status: Option<u16>,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            details: json!({}),
            status: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// The error of a nested object: its `details.field` gains the parent's name
    /// (`scopes[0]` → `create_api_key.scopes[0]`).
    pub fn within(mut self, parent: &str) -> Self {
        if let Some(field) = self.details.get("field").and_then(Value::as_str) {
            let nested = format!("{parent}.{field}");
            self.details["field"] = Value::String(nested);
        }
        self
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn http_status(&self) -> u16 {
        self.status.unwrap_or_else(|| self.code.http_status())
    }

    /// A bad field: `details = {field, rule}`.
    pub fn validation(field: &str, rule: &str, message: impl Into<String>) -> Self {
        Error::new(ErrorCode::ValidationError, message)
            .with_details(json!({ "field": field, "rule": rule }))
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::Unauthorized, message)
    }

    /// A permission the caller lacks; `rule` names it.
    pub fn forbidden(rule: &str, message: impl Into<String>) -> Self {
        Error::new(ErrorCode::Forbidden, message).with_details(json!({ "rule": rule }))
    }

    /// `resource` is the kind ("organization", "user"); the message never says whether the
    /// thing exists elsewhere.
    pub fn not_found(resource: &str) -> Self {
        Error::new(ErrorCode::NotFound, format!("{resource} not found"))
            .with_details(json!({ "resource": resource }))
    }

    pub fn conflict(rule: &str, message: impl Into<String>) -> Self {
        Error::new(ErrorCode::Conflict, message).with_details(json!({ "rule": rule }))
    }

    /// An organization quota is used up: `details = {quota, limit, setting}`, `setting` naming
    /// the server setting an operator raises a tier's default with (the organization's owner
    /// raises its own with `PATCH …/billing/quotas`).
    pub fn quota_exceeded(quota: &str, limit: u64) -> Self {
        let setting = "tier_quotas (--tier-quotas)";
        Error::new(
            ErrorCode::QuotaExceeded,
            format!(
                "the organization's {quota} quota ({limit}) is used up; its owner raises it with \
                 PATCH /v1/organizations/{{org_id}}/billing/quotas, the server's operator with \
                 {setting}"
            ),
        )
        .with_details(json!({ "quota": quota, "limit": limit, "setting": setting }))
    }

    pub fn precondition_failed(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::PreconditionFailed, message)
            .with_details(json!({ "rule": "if_match" }))
    }

    pub fn internal() -> Self {
        Error::new(ErrorCode::InternalError, "internal error")
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::ServiceUnavailable, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_their_statuses() {
        assert_eq!(ErrorCode::ValidationError.http_status(), 400);
        assert_eq!(ErrorCode::QuotaExceeded.http_status(), 429);
        assert_eq!(
            Error::validation("body", "max_bytes", "x")
                .with_status(413)
                .http_status(),
            413
        );
        assert_eq!(
            serde_json::to_value(ErrorCode::NotFound).unwrap(),
            json!("NOT_FOUND")
        );
        assert_eq!(
            ErrorCode::PreconditionFailed.as_str(),
            "PRECONDITION_FAILED"
        );
    }

    #[test]
    fn validation_names_field_and_rule() {
        let e = Error::validation("slug", "pattern", "bad slug");
        assert_eq!(e.details, json!({"field": "slug", "rule": "pattern"}));
    }
}

//! SQLSTATEs: the wire reports every error with one, and HTTP keeps it in the error details.

use crate::error::{Error, ErrorCode};

/// `error` carrying an explicit SQLSTATE in its details.
pub fn with_sqlstate(error: Error, code: &str) -> Error {
    let mut details = error.details.clone();
    if !details.is_object() {
        details = serde_json::json!({});
    }
    details["sqlstate"] = code.into();
    Error { details, ..error }
}

/// The SQLSTATE an error is reported with: the one it carries, else one for its code.
pub fn sqlstate(error: &Error) -> &str {
    if let Some(code) = error.details.get("sqlstate").and_then(|v| v.as_str()) {
        return code;
    }
    match error.code {
        ErrorCode::ValidationError => "22023",
        ErrorCode::Unauthorized => "28000",
        ErrorCode::Forbidden | ErrorCode::PolicyViolation => "42501",
        ErrorCode::NotFound => "42704",
        ErrorCode::Conflict => "40001",
        ErrorCode::PreconditionFailed => "55000",
        ErrorCode::RateLimited | ErrorCode::QuotaExceeded => "53400",
        ErrorCode::ServiceUnavailable => "53300",
        ErrorCode::InternalError => "XX000",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_codes_win_and_details_are_kept() {
        let e = with_sqlstate(Error::validation("sql", "syntax", "bad"), "42601");
        assert_eq!(sqlstate(&e), "42601");
        assert_eq!(e.details["field"], "sql");
        assert_eq!(sqlstate(&Error::unavailable("busy")), "53300");
        assert_eq!(sqlstate(&Error::internal()), "XX000");
    }
}

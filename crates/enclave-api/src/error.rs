//! The error envelope: `{"error": {"code", "message", "details", "request_id"}}`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use enclave_core::Error;
use serde::Serialize;
use serde_json::Value;

use crate::middleware::context::current_request_id;

/// [`enclave_core::Error`] as an HTTP response.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The envelope as documented in the OpenAPI document.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: enclave_core::ErrorCode,
    pub message: String,
    #[schema(value_type = Object)]
    pub details: Value,
    pub request_id: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = self.0.details["retry_after_seconds"].as_u64();
        let body = ErrorEnvelope {
            error: ErrorBody {
                code: self.0.code,
                message: self.0.message,
                details: self.0.details,
                request_id: current_request_id().unwrap_or_default(),
            },
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
        }
        if let Some(secs) = retry_after.filter(|_| status == StatusCode::TOO_MANY_REQUESTS) {
            resp.headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
        }
        resp
    }
}

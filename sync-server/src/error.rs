//! Typed refusals: every bad input gets a 4xx with a protocol error code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use doorstep_core::sync::protocol::{CONTENT_TYPE, ErrorBody, ErrorCode, encode};

/// A refusal or failure, as the API reports it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code:?}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Protocol error code.
    pub code: ErrorCode,
    /// Human-readable message (never holds citizen data).
    pub message: String,
}

impl ApiError {
    /// A refusal with this status and code.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }

    /// 400 malformed.
    pub fn malformed(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::Malformed, message)
    }

    /// 500 internal; the detail goes to the server log, not the client.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        eprintln!("internal error: {detail}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, "internal error")
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = encode(&ErrorBody { code: self.code, message: self.message });
        (self.status, [("content-type", CONTENT_TYPE)], body).into_response()
    }
}

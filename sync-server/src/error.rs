//! Typed refusals: every bad input gets a 4xx with a protocol error code. The one
//! place a [`StorageError`] becomes an HTTP status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use doorstep_core::sync::protocol::{CONTENT_TYPE, ErrorBody, ErrorCode, encode};

use crate::store::{ErrorKind, StorageError};

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
    /// With [`ErrorCode::Revoked`]: the signed statement the device checks before it wipes.
    pub revocation: Option<String>,
}

impl ApiError {
    /// A refusal with this status and code.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), revocation: None }
    }

    /// 400 malformed.
    pub fn malformed(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::Malformed, message)
    }

    /// 500 internal; the detail goes to the server log, not the client.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(%detail, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, "internal error")
    }
}

/// The HTTP status of each kind of storage refusal.
fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Gone => StatusCode::GONE,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Retry => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        ApiError { status: status_of(e.kind), code: e.code, message: e.message, revocation: None }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = encode(&ErrorBody { code: self.code, message: self.message, revocation: self.revocation });
        (self.status, [("content-type", CONTENT_TYPE)], body).into_response()
    }
}

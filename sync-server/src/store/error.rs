//! What the store and the sync algorithm report when they refuse or fail: a kind
//! of failure and the protocol's error code, never an HTTP status (the API maps
//! kinds to statuses in one place, [`crate::error`]).

use doorstep_core::sync::protocol::ErrorCode;

/// What kind of refusal or failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input is malformed or breaks a rule.
    Invalid,
    /// The thing asked for is not there (or not for this caller).
    NotFound,
    /// The thing is in a state that does not allow this now (used token, decided candidate).
    Conflict,
    /// The thing has expired (an enrolment code past its lifetime).
    Gone,
    /// The caller may not touch this area.
    Forbidden,
    /// Over a size limit or a quota.
    TooLarge,
    /// Well-formed but unusable content (Automerge bytes that are not a household).
    Unprocessable,
    /// The store asked for the transaction to be tried again (a deadlock between
    /// writers, a serialization failure, a busy database).
    Retry,
    /// The store failed; the detail is logged, never shown.
    Internal,
}

impl StorageError {
    /// Whether this refuses one pushed document for what it holds (malformed, unusable,
    /// outside the area, too large), so that the rest of its request can still be taken.
    pub fn refuses_one_document(&self) -> bool {
        matches!(self.kind, ErrorKind::Invalid | ErrorKind::Unprocessable | ErrorKind::Forbidden | ErrorKind::TooLarge)
    }
}

/// A refusal or failure below the API.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind:?} {code:?}: {message}")]
pub struct StorageError {
    /// What kind.
    pub kind: ErrorKind,
    /// The protocol's code for a device.
    pub code: ErrorCode,
    /// Human-readable message (never holds citizen data).
    pub message: String,
}

impl StorageError {
    /// A refusal of this kind and code.
    pub fn new(kind: ErrorKind, code: ErrorCode, message: impl Into<String>) -> StorageError {
        StorageError { kind, code, message: message.into() }
    }

    /// Malformed input.
    pub fn invalid(message: impl Into<String>) -> StorageError {
        Self::new(ErrorKind::Invalid, ErrorCode::Malformed, message)
    }

    /// A failure; the detail goes to the server log, not the caller.
    pub fn internal(detail: impl std::fmt::Display) -> StorageError {
        tracing::error!(%detail, "internal error");
        Self::new(ErrorKind::Internal, ErrorCode::Internal, "internal error")
    }

    /// A failure whose message is for the operator starting the server (names no resident).
    pub fn startup(message: impl Into<String>) -> StorageError {
        Self::new(ErrorKind::Internal, ErrorCode::Internal, message)
    }
}

impl StorageError {
    /// Whether running the transaction again may succeed.
    pub fn is_retry(&self) -> bool {
        self.kind == ErrorKind::Retry
    }
}

/// PostgreSQL's deadlock and serialization failures, SQLite's busy and locked.
const RETRY_CODES: &[&str] = &["40P01", "40001", "5", "6"];

impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> Self {
        if let Some(db) = e.as_database_error()
            && db.code().is_some_and(|c| RETRY_CODES.contains(&c.as_ref()))
        {
            tracing::info!(error = %db, "transaction to be retried");
            return StorageError::new(ErrorKind::Retry, ErrorCode::Internal, "the store is busy: retry");
        }
        StorageError::internal(e)
    }
}

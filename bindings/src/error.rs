//! The one public error. Every internal error is mapped here, once.

use doorstep_core::Error;

/// What went wrong, by what the app should do about it. Kotlin sees `DoorstepException`.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum DoorstepError {
    /// The PIN was wrong: ask again.
    #[error("wrong PIN ({failed_attempts} failed attempts)")]
    WrongPin {
        /// Consecutive failures so far.
        failed_attempts: u32,
    },
    /// Too many wrong PINs: wait before asking again.
    #[error("too many failed attempts: wait {retry_after_secs} s")]
    Throttled {
        /// Seconds to wait.
        retry_after_secs: u64,
    },
    /// No profile is unlocked: show the unlock screen.
    #[error("the store is locked")]
    Locked,
    /// This profile may not do that: hide the action.
    #[error("not permitted: {reason}")]
    NotPermitted {
        /// Why.
        reason: String,
    },
    /// The input is wrong (a form, a QR code, an image, an argument): tell the user.
    #[error("invalid input: {reason}")]
    InvalidInput {
        /// What is wrong.
        reason: String,
    },
    /// Nothing with that id: refresh the screen.
    #[error("not found: {what}")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// Stored data failed its integrity check: report it; other records still work.
    #[error("corrupt data: {what}")]
    Corrupt {
        /// Which record.
        what: String,
    },
    /// The network or server failed: retry later; nothing was lost.
    #[error("network: {reason}")]
    Network {
        /// What failed.
        reason: String,
    },
    /// The server refused the request: show the reason.
    #[error("server refused: {reason}")]
    ServerRefused {
        /// The server's reason.
        reason: String,
    },
    /// An offline bundle or QR frame was refused (another device's, altered, from an
    /// unknown or revoked device): tell the user; nothing was imported.
    #[error("transfer refused: {reason}")]
    TransferRefused {
        /// Why.
        reason: String,
    },
    /// The device was revoked and its data wiped: go back to enrolment.
    #[error("this device was revoked and wiped")]
    Revoked,
    /// A server said this device is revoked without the signature of the server it
    /// enrolled with: nothing was wiped. Likely a fake server or a hostile network.
    #[error("an unsigned revocation was ignored: {reason}")]
    UnverifiedRevocation {
        /// Why the statement was not accepted.
        reason: String,
    },
    /// The operation was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// Anything else, including an internal panic caught at the boundary.
    #[error("{reason}")]
    Other {
        /// What happened.
        reason: String,
    },
}

impl From<Error> for DoorstepError {
    fn from(e: Error) -> Self {
        match e {
            Error::WrongPin { failed_attempts } => DoorstepError::WrongPin { failed_attempts },
            Error::Throttled { retry_after_secs } => DoorstepError::Throttled { retry_after_secs },
            Error::Locked => DoorstepError::Locked,
            Error::NotPermitted(reason) => DoorstepError::NotPermitted { reason },
            Error::NotFound(what) => DoorstepError::NotFound { what },
            Error::Corrupt { what } => DoorstepError::Corrupt { what },
            Error::Revoked => DoorstepError::Revoked,
            Error::UnverifiedRevocation(reason) => DoorstepError::UnverifiedRevocation { reason },
            Error::RevocationClaimed { .. } => {
                DoorstepError::UnverifiedRevocation { reason: "the statement was not checked".into() }
            }
            Error::Cancelled => DoorstepError::Cancelled,
            Error::Network(reason) => DoorstepError::Network { reason },
            Error::Transfer(e) => DoorstepError::TransferRefused { reason: e.to_string() },
            Error::Server { status, message, .. } if status == 429 || status >= 500 => {
                DoorstepError::Network { reason: message }
            }
            Error::Server { code, message, .. } => {
                DoorstepError::ServerRefused { reason: format!("{code}: {message}") }
            }
            e @ (Error::MalformedForm { .. }
            | Error::Expression { .. }
            | Error::InvalidCccd(_)
            | Error::MalformedQr(_)
            | Error::Image(_)
            | Error::BadSignature(_)
            | Error::InsecureUrl(_)
            | Error::ImmutableField(_)
            | Error::InvalidArgument(_)
            | Error::AlreadyExists(_)) => DoorstepError::InvalidInput { reason: e.to_string() },
            other => DoorstepError::Other { reason: other.to_string() },
        }
    }
}

/// Runs `f`, turning a panic into [`DoorstepError::Other`]: nothing unwinds across the FFI.
pub(crate) fn guard<T>(f: impl FnOnce() -> Result<T, DoorstepError>) -> Result<T, DoorstepError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            Err(DoorstepError::Other { reason: format!("internal error: {msg}") })
        }
    }
}

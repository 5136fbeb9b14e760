//! The one internal error type of the core.
//!
//! Every fallible function in `doorstep-core` returns [`Result`]. The
//! bindings map [`Error`] once, at the FFI boundary, to a smaller public enum.

use std::fmt;

/// Where a form definition is malformed: a JSON path and, when known, a line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormLocation {
    /// JSON path into the definition, for example `fields[3].constraint`.
    pub path: String,
    /// 1-based line in the JSON text, when the JSON itself did not parse.
    pub line: Option<usize>,
    /// 1-based column in the JSON text, when the JSON itself did not parse.
    pub column: Option<usize>,
}

impl fmt::Display for FormLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", if self.path.is_empty() { "." } else { &self.path })?;
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, " (line {l}, column {c})")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong in the core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A form definition could not be parsed or is inconsistent.
    #[error("malformed form definition at {location}: {message}")]
    MalformedForm {
        /// Where the problem is.
        location: FormLocation,
        /// What the problem is.
        message: String,
    },
    /// An expression in a form failed to parse.
    #[error("bad expression at offset {offset}: {message}")]
    Expression {
        /// Byte offset in the expression text.
        offset: usize,
        /// What is wrong.
        message: String,
    },
    /// A CCCD number is not valid.
    #[error("invalid CCCD number: {0}")]
    InvalidCccd(#[from] crate::identity::CccdError),
    /// A chip-card QR payload could not be parsed.
    #[error("malformed CCCD QR payload: {0}")]
    MalformedQr(String),
    /// An image could not be decoded, or holds no readable QR code.
    #[error("image: {0}")]
    Image(String),
    /// The PIN did not unlock the profile.
    #[error("wrong PIN ({failed_attempts} failed attempts)")]
    WrongPin {
        /// Consecutive failed attempts so far, persisted across restarts.
        failed_attempts: u32,
    },
    /// Too many wrong PINs: the profile is locked for a while.
    #[error("too many failed attempts: try again in {retry_after_secs} s")]
    Throttled {
        /// Seconds to wait before the next attempt is accepted.
        retry_after_secs: u64,
    },
    /// The store is locked: unlock a profile first.
    #[error("the store is locked")]
    Locked,
    /// The unlocked profile may not do this.
    #[error("not permitted: {0}")]
    NotPermitted(String),
    /// A stored blob failed authentication or could not be decoded.
    #[error("corrupt data in {what}")]
    Corrupt {
        /// Which record or blob is corrupt.
        what: String,
    },
    /// Nothing with this id exists.
    #[error("not found: {0}")]
    NotFound(String),
    /// Something with this id exists already.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// A caller passed an argument that makes no sense.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The store was written by a newer version of Doorstep.
    #[error("store schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew {
        /// Version on disk.
        found: u32,
        /// Highest version this build knows.
        supported: u32,
    },
    /// SQLite failed.
    #[error("database: {0}")]
    Database(#[from] rusqlite::Error),
    /// Automerge failed.
    #[error("automerge: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    /// The operating system's random source failed.
    #[error("random source failed")]
    Random,
    /// A key derivation failed (bad parameters).
    #[error("key derivation: {0}")]
    Kdf(String),
    /// A sync message was malformed or broke the protocol.
    #[error("sync protocol: {0}")]
    Protocol(String),
    /// The network failed: no connection, a timeout, a cut-off body.
    #[error("network: {0}")]
    Network(String),
    /// The server refused a request.
    #[error("server refused ({status}, {code}): {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// The protocol's error code, snake_case.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The server revoked this device; its local data has been wiped.
    #[error("this device was revoked and its data wiped")]
    Revoked,
    /// A server answered "revoked" without a statement signed by the server this device
    /// enrolled with (or one naming another device): nothing was wiped.
    #[error("a revocation that is not signed by this device's server was ignored: {0}")]
    UnverifiedRevocation(String),
    /// A server answered "revoked" (the transport's report; the sync client checks the
    /// statement before anything is wiped).
    #[error("the server says this device is revoked")]
    RevocationClaimed {
        /// The signed statement, when the answer carried one.
        statement: Option<String>,
    },
    /// A change to a field that never changes (`household_id`, `schema`).
    #[error("a field that never changes was written: {0}")]
    ImmutableField(String),
    /// A server address that would send credentials or residents' data in clear text.
    #[error("insecure server address: {0}")]
    InsecureUrl(String),
    /// A signed document (a verification slip) failed its signature check, or was not one.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// An offline bundle or one of its QR frames was refused.
    #[error("transfer refused: {0}")]
    Transfer(#[from] crate::transfer::TransferError),
    /// The caller cancelled the operation.
    #[error("cancelled")]
    Cancelled,
    /// Input or output failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Result with the core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for a [`Error::Corrupt`] about `what`.
    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        Error::Corrupt { what: what.into() }
    }
}

impl From<crate::area::AreaError> for Error {
    fn from(e: crate::area::AreaError) -> Error {
        Error::InvalidArgument(e.to_string())
    }
}

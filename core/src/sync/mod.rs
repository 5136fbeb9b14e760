//! Sync: the wire protocol shared with the server, the [`Transport`] the
//! client talks through, and the client itself.
//!
//! A sync is O(1) round trips: one request pushes every dirty household's
//! changes since the server's acknowledged heads and pulls a page of what the
//! device lacks for its areas; more pages follow only when the server says so.
//! The cursor advances only after the pulled changes are committed locally.
//! Photos travel apart, in resumable chunks ([`sync_attachments`]).

mod attachments;
mod client;
pub mod protocol;
pub mod revocation;
mod transport;

pub use attachments::{AttachmentReport, fetch_blob, sync_attachments};
pub use client::{StoreAccess, SyncObserver, SyncProgress, SyncReport, enrol, sync, sync_shared, verify_slip};
pub use transport::{HttpTransport, Transport};

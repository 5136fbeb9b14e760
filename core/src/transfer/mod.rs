//! Offline transfer between devices: households and their photos sealed to
//! one receiving device, carried as a file or as an animated sequence of QR
//! codes, and merged through Automerge on arrival exactly as a sync would.
//!
//! - [`bundle`]: the sealed, authenticated bundle (X25519 + XChaCha20-Poly1305).
//! - [`frames`]: a bundle as numbered, checksummed QR frames, taken in any order.
//!
//! The store side ([`crate::store::Store::export_bundle`], [`crate::store::Store::import_bundle`])
//! checks senders and recipients against the directory of the area's devices
//! that each sync brings, so that a bundle from a revoked or unknown device is refused.

pub mod bundle;
pub mod frames;

pub use bundle::{BundleBody, BundleHeader, TransferError};
pub use frames::{FRAME_PAYLOAD_BYTES, FrameProgress, FrameReceiver, to_frames};

/// Which households a bundle carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleSelection {
    /// These households.
    Households(Vec<String>),
    /// Every household of this area (and its sub-areas) with changes the server has not acknowledged.
    DirtyInArea(String),
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// The device that made the bundle.
    pub sender_device: String,
    /// Households in the bundle.
    pub households: usize,
    /// Households that changed here (new, or with changes this device lacked).
    pub changed: usize,
    /// Attachment blobs this device did not hold.
    pub blobs_added: usize,
}

//! # doorstep-core
//!
//! The pure Rust core of Doorstep: offline collection of household and
//! resident data for a population registry, on phones that may go weeks
//! without a network and may be lost.
//!
//! - [`area`]: administrative area codes, validated once.
//! - [`form`]: form definitions, the expression language, validation, the built-in survey.
//! - [`identity`]: CCCD numbers, the chip-card QR payload, name normalization, duplicate scoring.
//! - [`crypto`]: the device data key, PIN-derived wrapping keys, sealing, blind indexes.
//! - [`attachment`]: sealed, content-addressed photo blobs and the references household fields hold.
//! - [`photo`]: photos for `photo` fields: decoded within limits, upright, stripped of metadata, downsized, thumbnailed.
//! - [`reconcile`]: a registry's new version of a household applied over officers' corrections.
//! - [`signed`]: Ed25519-signed texts (slips, revocations), one format.
//! - [`slip`]: household verification slips the server signs (Ed25519) and devices verify offline.
//! - [`transfer`]: offline bundles between devices, as a file or a sequence of QR codes.
//! - [`verification`]: door-to-door verification and operators' review of a household.
//! - [`vn_time`]: Vietnam's civil time, the one clock of days, weeks and months.
//! - [`error`]: the one internal error type.
//!
//! This crate has no FFI types; `doorstep-ffi` wraps it for Kotlin and Swift.

pub mod area;
pub mod attachment;
pub mod crypto;
pub mod error;
pub mod form;
pub mod identity;
pub mod photo;
pub mod qr;
pub mod reconcile;
pub mod record;
pub mod signed;
pub mod slip;
pub mod store;
pub mod sync;
pub mod transfer;
pub mod verification;
pub mod vn_time;

pub use error::{Error, Result};

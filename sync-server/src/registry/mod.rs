//! The registry in and out (docs/REGISTRY.md): preloading a commune's residents from the
//! registry's files, and exporting households changed since a cursor.
//!
//! - [`formats`]: the JSON Lines and CSV formats, read and written a household at a time.
//! - [`problem`]: why a row was not imported, typed, in Vietnamese and English.
//! - [`import`]: a batch of checked households written into the store (server side of the sync algorithm).
//! - [`export`]: an area's households in the order of their latest change.
//! - [`command`]: the `import` and `export` commands over [`crate::storage::Storage`].

pub mod command;
pub mod export;
pub mod formats;
pub mod import;
pub mod problem;

//! Encryption at rest.
//!
//! The public surface is the envelope: [`DataKey`] (the device's random data
//! key), [`KdfParams`], [`Sealer`] (seal and open values bound to where they
//! are stored) and [`BlindIndexer`] (keyed lookup tokens). The primitives stay
//! in the private `aead` module.
//!
//! Key scheme: every device has one random data key (DEK). Each user profile
//! wraps it with a key-encryption key `KEK = Argon2id(PIN, salt, secret)`,
//! where the optional secret is a platform secret (Android Keystore, iOS
//! Keychain). Changing a PIN rewraps the DEK; no data is re-encrypted.

pub(crate) mod aead;
mod blind_index;
mod keys;
mod sealer;

pub use blind_index::{BlindIndexer, IndexToken};
pub use keys::{DataKey, KdfParams, Kek, Salt, WrappedKey, derive_kek};
pub use sealer::{Aad, Sealer};

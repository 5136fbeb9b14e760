//! The device data key, PIN-derived key-encryption keys, and key wrapping.

use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::aead;
use crate::error::{Error, Result};

/// A device's random 256-bit data key. Zeroed when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DataKey([u8; 32]);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// A data key sealed under a KEK: safe to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey(pub Vec<u8>);

/// A random 16-byte Argon2 salt, one per profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Salt(pub [u8; 16]);

impl Salt {
    /// Makes a fresh random salt.
    pub fn make() -> Result<Salt> {
        Ok(Salt(aead::random_bytes()?))
    }
}

/// Argon2id cost parameters, stored beside each wrapped key so they can change later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for KdfParams {
    /// OWASP's Argon2id minimum: 19 MiB, 2 passes, 1 lane.
    fn default() -> Self {
        KdfParams { m_kib: 19 * 1024, t: 2, p: 1 }
    }
}

impl KdfParams {
    /// Cheap parameters for tests and benchmarks only. Never use them for real profiles.
    pub const INSECURE_FOR_TESTS: KdfParams = KdfParams { m_kib: 64, t: 1, p: 1 };
}

impl DataKey {
    /// Makes a fresh random data key.
    pub fn make() -> Result<DataKey> {
        Ok(DataKey(aead::random_bytes()?))
    }

    /// A data key from 32 bytes kept elsewhere (the sync server's key file).
    pub fn from_bytes(bytes: [u8; 32]) -> DataKey {
        DataKey(bytes)
    }

    #[cfg(test)]
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Derives a purpose-bound subkey, so one DEK never keys two algorithms.
    pub(crate) fn derive_subkey(&self, context: &str) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(blake3::derive_key(context, &self.0))
    }

    /// Wraps this key under `kek`, bound to `aad` (the profile id).
    pub fn wrap(&self, kek: &Kek, aad: &[u8]) -> Result<WrappedKey> {
        Ok(WrappedKey(aead::seal(&kek.0, aad, &self.0)?))
    }

    /// Unwraps a data key; `None` when `kek` is not the one it was wrapped with.
    pub fn unwrap_with(wrapped: &WrappedKey, kek: &Kek, aad: &[u8]) -> Option<DataKey> {
        let mut plain = Zeroizing::new(aead::open(&kek.0, aad, &wrapped.0)?);
        let key: [u8; 32] = plain.as_slice().try_into().ok()?;
        plain.zeroize();
        Some(DataKey(key))
    }
}

/// A key-encryption key derived from a PIN. Zeroed when dropped.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Kek([u8; 32]);

/// Derives `KEK = Argon2id(pin, salt)` with the platform secret, if any, as Argon2's secret input.
pub fn derive_kek(pin: &str, platform_secret: Option<&[u8]>, salt: &Salt, params: KdfParams) -> Result<Kek> {
    let argon_params =
        Params::new(params.m_kib, params.t, params.p, Some(32)).map_err(|e| Error::Kdf(e.to_string()))?;
    let argon = match platform_secret {
        Some(secret) => Argon2::new_with_secret(secret, Algorithm::Argon2id, Version::V0x13, argon_params)
            .map_err(|e| Error::Kdf(e.to_string()))?,
        None => Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params),
    };
    let mut out = [0u8; 32];
    argon.hash_password_into(pin.as_bytes(), &salt.0, &mut out).map_err(|e| Error::Kdf(e.to_string()))?;
    Ok(Kek(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap_with_pin_and_secret() {
        let dek = DataKey::make().unwrap();
        let salt = Salt::make().unwrap();
        let p = KdfParams::INSECURE_FOR_TESTS;
        let kek = derive_kek("123456", Some(b"platform"), &salt, p).unwrap();
        let wrapped = dek.wrap(&kek, b"profile-1").unwrap();
        let back = DataKey::unwrap_with(&wrapped, &kek, b"profile-1").unwrap();
        assert_eq!(back.bytes(), dek.bytes());
        let wrong_pin = derive_kek("123457", Some(b"platform"), &salt, p).unwrap();
        assert!(DataKey::unwrap_with(&wrapped, &wrong_pin, b"profile-1").is_none());
        let no_secret = derive_kek("123456", None, &salt, p).unwrap();
        assert!(DataKey::unwrap_with(&wrapped, &no_secret, b"profile-1").is_none());
        assert!(DataKey::unwrap_with(&wrapped, &kek, b"profile-2").is_none());
    }

    #[test]
    fn bad_params_are_a_typed_error() {
        let salt = Salt::make().unwrap();
        let bad = KdfParams { m_kib: 1, t: 0, p: 0 };
        assert!(matches!(derive_kek("1", None, &salt, bad), Err(Error::Kdf(_))));
    }

    #[test]
    fn subkeys_differ_by_context() {
        let dek = DataKey::make().unwrap();
        assert_ne!(*dek.derive_subkey("a"), *dek.derive_subkey("b"));
        assert_eq!(format!("{dek:?}"), "DataKey(..)");
    }
}

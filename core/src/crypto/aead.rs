//! XChaCha20-Poly1305 with a random 24-byte nonce. Crate-private primitives.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::error::{Error, Result};

/// Format byte at the start of every sealed blob.
const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Bytes added to a plaintext by [`seal`].
pub(crate) const OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|_| Error::Random)?;
    Ok(out)
}

/// Seals `plaintext` under `key`, bound to `aad`: `01 || nonce || ciphertext+tag`.
pub(crate) fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let nonce_bytes = random_bytes::<NONCE_LEN>()?;
    let nonce = XNonce::from(nonce_bytes);
    let ct = cipher
        .encrypt(&nonce, Payload { msg: plaintext, aad })
        .map_err(|_| Error::InvalidArgument("plaintext too long to seal".into()))?;
    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens a blob made by [`seal`]; `None` when it is not authentic for this key and `aad`.
pub(crate) fn open(key: &[u8; 32], aad: &[u8], blob: &[u8]) -> Option<Vec<u8>> {
    if blob.len() < OVERHEAD || blob[0] != FORMAT_V1 {
        return None;
    }
    let nonce = XNonce::try_from(&blob[1..1 + NONCE_LEN]).ok()?;
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher.decrypt(&nonce, Payload { msg: &blob[1 + NONCE_LEN..], aad }).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let key = [7u8; 32];
        let blob = seal(&key, b"aad", b"hello").unwrap();
        assert_eq!(blob.len(), OVERHEAD + 5);
        assert_eq!(open(&key, b"aad", &blob).unwrap(), b"hello");
        assert!(open(&key, b"other", &blob).is_none());
        assert!(open(&[8u8; 32], b"aad", &blob).is_none());
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x01;
            assert!(open(&key, b"aad", &bad).is_none(), "flip at {i}");
        }
        assert!(open(&key, b"aad", &blob[..blob.len() - 1]).is_none());
        assert!(open(&key, b"aad", &[]).is_none());
    }

    #[test]
    fn nonces_differ() {
        let key = [1u8; 32];
        assert_ne!(seal(&key, b"", b"x").unwrap(), seal(&key, b"", b"x").unwrap());
    }
}

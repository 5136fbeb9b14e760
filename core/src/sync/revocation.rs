//! Signed revocations: the only answer that makes a device wipe itself.
//!
//! When an operator revokes a device, the server refuses its next request with
//! `revoked` and a statement signed by the server's Ed25519 key — the key the
//! device received at enrolment (the one that also signs verification slips). The
//! statement names the device and when it was revoked. A device wipes only when the
//! signature checks out against the key it holds and names itself; an unsigned,
//! altered or replayed-for-another-device "revoked" (a fake server, a hostile
//! network) leaves its store untouched and is reported as
//! [`Error::UnverifiedRevocation`](crate::Error::UnverifiedRevocation).
//!
//! Text form: `DREVOKE1.<payload>.<signature>`, base64url without padding; the
//! payload is CBOR, the signature covers [`SIGNATURE_CONTEXT`] and the payload.

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Prefix of a revocation's text; the digit is the format version.
pub const PREFIX: &str = "DREVOKE1.";
/// Bytes signed before the payload: a slip's signature cannot pass as a revocation, nor the reverse.
pub const SIGNATURE_CONTEXT: &[u8] = b"doorstep device revocation v1\0";
/// Longest revocation text accepted.
pub const MAX_TEXT_LEN: usize = 1_000;

/// What a revocation states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The revoked device.
    pub device_id: String,
    /// When it was revoked, Unix seconds.
    pub revoked_at: i64,
}

impl Revocation {
    /// Signs the statement with the server's key: the text to send the device.
    pub fn sign(&self, key: &SigningKey) -> String {
        REVOCATION.sign(self, key)
    }

    /// Checks a revocation text against the server's public key and this device's id.
    pub fn verify(text: &str, public_key: &[u8], device_id: &str) -> Result<Revocation> {
        let revocation: Revocation = REVOCATION
            .open(text, public_key)
            .map_err(|why| Error::UnverifiedRevocation(format!("revocation: {why}")))?;
        if revocation.device_id != device_id {
            return Err(Error::UnverifiedRevocation("the statement revokes another device".into()));
        }
        Ok(revocation)
    }
}

/// How revocations are signed.
const REVOCATION: crate::signed::Kind =
    crate::signed::Kind { prefix: PREFIX, context: SIGNATURE_CONTEXT, max_len: MAX_TEXT_LEN };

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn a_signed_revocation_verifies_for_its_device_only() {
        let text = Revocation { device_id: "dev-1".into(), revoked_at: 1_700_000_000 }.sign(&key(1));
        let public = key(1).verifying_key().to_bytes();
        assert_eq!(Revocation::verify(&text, &public, "dev-1").unwrap().revoked_at, 1_700_000_000);
        assert!(matches!(Revocation::verify(&text, &public, "dev-2"), Err(Error::UnverifiedRevocation(_))));
        let other = key(2).verifying_key().to_bytes();
        assert!(matches!(Revocation::verify(&text, &other, "dev-1"), Err(Error::UnverifiedRevocation(_))));
    }

    #[test]
    fn altered_or_foreign_statements_are_refused() {
        let public = key(1).verifying_key().to_bytes();
        let text = Revocation { device_id: "dev-1".into(), revoked_at: 5 }.sign(&key(1));
        let (head, sig) = text.rsplit_once('.').unwrap();
        let forged = Revocation { device_id: "dev-1".into(), revoked_at: 6 }.sign(&key(9));
        let forged_payload = forged.rsplit_once('.').unwrap().0;
        for bad in [
            String::new(),
            "revoked".into(),
            format!("{forged_payload}.{sig}"),
            format!("{head}.{}", &sig[1..]),
            format!("DSLIP1.{}", &text[PREFIX.len()..]),
            "D".repeat(5000),
        ] {
            assert!(matches!(Revocation::verify(&bad, &public, "dev-1"), Err(Error::UnverifiedRevocation(_))), "{bad}");
        }
    }
}

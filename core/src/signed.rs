//! Ed25519-signed texts: what the server signs and a device checks offline —
//! verification slips ([`crate::slip`]) and revocations
//! ([`crate::sync::revocation`]).
//!
//! The text is `<PREFIX><payload>.<signature>`, both parts base64url without padding;
//! the payload is CBOR, and the signature covers a context string (one per kind of
//! statement, so a signature of one kind never passes as another) and the payload.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// One kind of signed statement.
pub struct Kind {
    /// What starts its text, with a format version (`DSLIP1.`).
    pub prefix: &'static str,
    /// What the signature covers before the payload.
    pub context: &'static [u8],
    /// Longest text accepted.
    pub max_len: usize,
}

impl Kind {
    /// Signs `value`: its text.
    pub fn sign<T: Serialize>(&self, value: &T, key: &SigningKey) -> String {
        let mut payload = Vec::new();
        // Writing CBOR into a Vec cannot fail for these plain types.
        let _ = ciborium::into_writer(value, &mut payload);
        let signature = key.sign(&[self.context, &payload].concat());
        format!("{}{}.{}", self.prefix, URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    /// Checks a text's signature against `public_key` and reads its payload; the error says
    /// why not, for a person.
    pub fn open<T: DeserializeOwned>(&self, text: &str, public_key: &[u8]) -> Result<T, &'static str> {
        if text.len() > self.max_len {
            return Err("the text is too long");
        }
        let body = text.trim().strip_prefix(self.prefix).ok_or("not this kind of signed text")?;
        let (payload, signature) = body.split_once('.').ok_or("no signature")?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| "the payload is not base64url")?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| "the signature is not base64url")?;
        let signature = Signature::from_slice(&signature).map_err(|_| "the signature has the wrong length")?;
        let key: [u8; 32] = public_key.try_into().map_err(|_| "the public key must be 32 bytes")?;
        let key = VerifyingKey::from_bytes(&key).map_err(|_| "the public key is not a valid Ed25519 key")?;
        key.verify_strict(&[self.context, &payload].concat(), &signature)
            .map_err(|_| "the signature does not match: altered, or not signed by this server")?;
        ciborium::from_reader(payload.as_slice()).map_err(|_| "the signed payload is malformed")
    }
}

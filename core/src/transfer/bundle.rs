//! The sealed bundle: households and their attachments, sealed to one
//! receiving device, authenticated as coming from one sending device.
//!
//! Format: `DSBUNDLE1` ‖ header length (u32, big endian) ‖ header (CBOR) ‖
//! ciphertext. The header names the bundle, the sender (device id and X25519
//! key), the recipient's key and an ephemeral key. The body key is
//! `BLAKE3-derive("doorstep bundle v1", DH(eph, recipient) ‖ DH(sender, recipient) ‖ BLAKE3(header))`:
//! only the recipient can open it, and only the holder of the sender's secret
//! key could have made it (the static-static DH authenticates the sender, as
//! in NaCl's `crypto_box`, with an ephemeral key for forward secrecy). The
//! body is XChaCha20-Poly1305 with the whole header as associated data, so
//! no header byte can change either.

use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::crypto::aead;
use crate::error::{Error, Result};
use crate::sync::protocol::serde_bytes_vec;

/// The first bytes of every bundle file.
pub const MAGIC: &[u8] = b"DSBUNDLE1";
/// Largest bundle accepted.
pub const MAX_BUNDLE_BYTES: usize = 64 * 1024 * 1024;
const MAX_HEADER_BYTES: usize = 4096;
const KEY_CONTEXT: &str = "doorstep bundle v1";

/// Why a bundle was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// The bytes are not a bundle, or are cut short.
    #[error("not a Doorstep bundle, or incomplete: {0}")]
    Malformed(String),
    /// The bundle is sealed to another device.
    #[error("this bundle is for another device")]
    NotForThisDevice,
    /// The sender is not in this device's directory of the area's devices.
    #[error("the sending device {0} is unknown here: sync once to refresh the directory")]
    UnknownSender(String),
    /// The sender was revoked.
    #[error("the sending device {0} was revoked")]
    RevokedSender(String),
    /// The bundle does not authenticate: altered, or not made by the device it names.
    #[error("the bundle was altered or forged")]
    Tampered,
    /// The recipient was revoked: nothing is sent to it.
    #[error("the receiving device {0} was revoked")]
    RevokedRecipient(String),
    /// The recipient is not in this device's directory.
    #[error("no device {0} in the directory: sync once to refresh it")]
    UnknownRecipient(String),
    /// A QR frame is damaged or belongs to another bundle.
    #[error("bad QR frame: {0}")]
    BadFrame(String),
}

/// The clear part of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleHeader {
    /// Format version.
    pub v: u32,
    /// Random id of this bundle.
    #[serde(with = "serde_bytes_vec")]
    pub bundle_id: Vec<u8>,
    /// The sending device.
    pub sender_device: String,
    /// Its X25519 public key.
    #[serde(with = "serde_bytes_vec")]
    pub sender_key: Vec<u8>,
    /// The recipient's X25519 public key.
    #[serde(with = "serde_bytes_vec")]
    pub recipient_key: Vec<u8>,
    /// The ephemeral public key of this bundle.
    #[serde(with = "serde_bytes_vec")]
    pub ephemeral_key: Vec<u8>,
    /// When it was made, Unix seconds.
    pub created_at: i64,
}

/// One household's document in a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundledHousehold {
    /// Household id.
    pub doc_id: String,
    /// Its area.
    pub area: String,
    /// The whole Automerge document, saved.
    #[serde(with = "serde_bytes_vec")]
    pub doc: Vec<u8>,
}

/// One sealed attachment blob in a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundledBlob {
    /// Blob id.
    pub id: String,
    /// The sealed blob (sealed under its content key, which the household document carries).
    #[serde(with = "serde_bytes_vec")]
    pub sealed: Vec<u8>,
}

/// What a bundle carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleBody {
    /// Households.
    pub households: Vec<BundledHousehold>,
    /// Their attachments.
    pub blobs: Vec<BundledBlob>,
}

fn malformed(why: &str) -> Error {
    Error::Transfer(TransferError::Malformed(why.to_string()))
}

fn key32(bytes: &[u8]) -> Result<[u8; 32]> {
    bytes.try_into().map_err(|_| malformed("a key is not 32 bytes"))
}

fn body_key(dh_ephemeral: &[u8; 32], dh_static: &[u8; 32], header: &[u8]) -> [u8; 32] {
    let mut material = Vec::with_capacity(96);
    material.extend_from_slice(dh_ephemeral);
    material.extend_from_slice(dh_static);
    material.extend_from_slice(blake3::hash(header).as_bytes());
    blake3::derive_key(KEY_CONTEXT, &material)
}

fn cbor<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = ciborium::into_writer(value, &mut out);
    out
}

/// Seals `body` from `sender` (device id and secret key) to `recipient_key`.
pub fn seal(
    sender_device: &str,
    sender: &StaticSecret,
    recipient_key: &[u8; 32],
    body: &BundleBody,
    now: i64,
) -> Result<Vec<u8>> {
    let recipient = PublicKey::from(*recipient_key);
    let mut eph_bytes = [0u8; 32];
    getrandom::fill(&mut eph_bytes).map_err(|_| Error::Random)?;
    let ephemeral = StaticSecret::from(eph_bytes);
    let mut bundle_id = vec![0u8; 16];
    getrandom::fill(&mut bundle_id).map_err(|_| Error::Random)?;
    let header = BundleHeader {
        v: 1,
        bundle_id,
        sender_device: sender_device.to_string(),
        sender_key: PublicKey::from(sender).as_bytes().to_vec(),
        recipient_key: recipient_key.to_vec(),
        ephemeral_key: PublicKey::from(&ephemeral).as_bytes().to_vec(),
        created_at: now,
    };
    let header_bytes = cbor(&header);
    let key = body_key(
        ephemeral.diffie_hellman(&recipient).as_bytes(),
        sender.diffie_hellman(&recipient).as_bytes(),
        &header_bytes,
    );
    let ciphertext = aead::seal(&key, &header_bytes, &cbor(body))?;
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header_bytes.len() + ciphertext.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header_bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(&header_bytes);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Reads a bundle's header without opening it.
pub fn read_header(bundle: &[u8]) -> Result<(BundleHeader, &[u8], &[u8])> {
    if bundle.len() > MAX_BUNDLE_BYTES {
        return Err(malformed("the bundle is over the size limit"));
    }
    let rest = bundle.strip_prefix(MAGIC).ok_or_else(|| malformed("no bundle marker"))?;
    let len_bytes: [u8; 4] = rest.get(..4).and_then(|b| b.try_into().ok()).ok_or_else(|| malformed("cut short"))?;
    let len = u32::from_be_bytes(len_bytes) as usize;
    if len > MAX_HEADER_BYTES {
        return Err(malformed("the header is too long"));
    }
    let header_bytes = rest.get(4..4 + len).ok_or_else(|| malformed("cut short in the header"))?;
    let header: BundleHeader = ciborium::from_reader(header_bytes).map_err(|_| malformed("unreadable header"))?;
    if header.v != 1 {
        return Err(malformed("unsupported bundle version"));
    }
    Ok((header, header_bytes, &rest[4 + len..]))
}

/// Opens a bundle with this device's secret key. The caller checks the sender
/// (`header.sender_device`, `header.sender_key`) against its directory first:
/// this only proves the bundle was made with the sender key it names.
pub fn open(bundle: &[u8], recipient: &StaticSecret) -> Result<(BundleHeader, BundleBody)> {
    let (header, header_bytes, ciphertext) = read_header(bundle)?;
    if header.recipient_key.as_slice() != PublicKey::from(recipient).as_bytes() {
        return Err(Error::Transfer(TransferError::NotForThisDevice));
    }
    let sender = PublicKey::from(key32(&header.sender_key)?);
    let ephemeral = PublicKey::from(key32(&header.ephemeral_key)?);
    let dh_ephemeral = recipient.diffie_hellman(&ephemeral);
    let dh_static = recipient.diffie_hellman(&sender);
    if !dh_ephemeral.was_contributory() || !dh_static.was_contributory() {
        return Err(Error::Transfer(TransferError::Tampered));
    }
    let key = body_key(dh_ephemeral.as_bytes(), dh_static.as_bytes(), header_bytes);
    let plain = aead::open(&key, header_bytes, ciphertext).ok_or(Error::Transfer(TransferError::Tampered))?;
    let body: BundleBody = ciborium::from_reader(plain.as_slice()).map_err(|_| malformed("unreadable body"))?;
    Ok((header, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(b: u8) -> StaticSecret {
        StaticSecret::from([b; 32])
    }

    fn body() -> BundleBody {
        BundleBody {
            households: vec![BundledHousehold { doc_id: "hh-1".into(), area: "01".into(), doc: vec![1, 2, 3] }],
            blobs: vec![BundledBlob { id: "ab".into(), sealed: vec![9; 100] }],
        }
    }

    #[test]
    fn only_the_recipient_opens_and_the_sender_is_authenticated() {
        let (a, b, c) = (secret(1), secret(2), secret(3));
        let b_pub = *PublicKey::from(&b).as_bytes();
        let bundle = seal("dev-a", &a, &b_pub, &body(), 100).unwrap();
        let (header, opened) = open(&bundle, &b).unwrap();
        assert_eq!(opened, body());
        assert_eq!(header.sender_device, "dev-a");
        assert_eq!(header.sender_key, PublicKey::from(&a).as_bytes().to_vec());
        assert!(matches!(open(&bundle, &c), Err(Error::Transfer(TransferError::NotForThisDevice))));

        // C claims to be A: it can write A's public key in the header, but not A's DH.
        let mut forged = seal("dev-a", &c, &b_pub, &body(), 100).unwrap();
        let (h, hb, ct) = read_header(&forged).unwrap();
        let mut h2 = h.clone();
        h2.sender_key = PublicKey::from(&a).as_bytes().to_vec();
        let hb2 = cbor(&h2);
        let mut swapped = MAGIC.to_vec();
        swapped.extend_from_slice(&(hb2.len() as u32).to_be_bytes());
        swapped.extend_from_slice(&hb2);
        swapped.extend_from_slice(ct);
        assert!(matches!(open(&swapped, &b), Err(Error::Transfer(TransferError::Tampered))));
        let _ = hb;

        // Any flipped byte after the marker is refused.
        for i in (MAGIC.len()..forged.len()).step_by(7) {
            let mut bad = bundle.clone();
            bad[i] ^= 0x40;
            assert!(open(&bad, &b).is_err(), "byte {i}");
        }
        forged.truncate(forged.len() - 1);
        assert!(open(&forged, &b).is_err());
        for junk in [&b""[..], b"DSBUNDLE1", b"DSBUNDLE1\xff\xff\xff\xff", b"hello"] {
            assert!(matches!(open(junk, &b), Err(Error::Transfer(TransferError::Malformed(_)))));
        }
    }
}

//! Attachments: photo bytes kept outside the household document, sealed and
//! content-addressed.
//!
//! A blob's id is the BLAKE3 hash of its plaintext, so the same photo added
//! twice, on one device or two, is one attachment. Its content key is derived
//! from the plaintext too (convergent encryption), so every device that adds
//! the same photo makes the same reference. The blob is sealed with that key
//! (XChaCha20-Poly1305, bound to the id); the key travels inside the
//! household document (itself sealed on devices) and, on a device, sealed
//! again under the device data key. Servers and peers store and forward only
//! the sealed blob. What this leaks: that two sealed blobs hold the same photo.
//!
//! A household field refers to a photo with a [`PhotoRef`], written as text:
//! `att1:<full id>:<full key>:<thumb id>:<thumb key>:<width>x<height>`.

use crate::crypto::aead;
use crate::error::{Error, Result};

/// The prefix of a photo reference's text form.
pub const REF_PREFIX: &str = "att1";
/// Largest sealed blob accepted (a processed photo is far smaller).
pub const MAX_BLOB_BYTES: usize = 20 * 1024 * 1024;
const KEY_CONTEXT: &str = "doorstep attachment content key v1";

/// One sealed blob: its id and its content key.
#[derive(Clone, PartialEq, Eq)]
pub struct BlobRef {
    /// BLAKE3 of the plaintext, 64 hex digits.
    pub id: String,
    /// The content key.
    pub key: [u8; 32],
}

impl std::fmt::Debug for BlobRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobRef").field("id", &self.id).field("key", &"…").finish()
    }
}

/// A photo field's value: the stored photo and its thumbnail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhotoRef {
    /// The photo.
    pub full: BlobRef,
    /// Its thumbnail.
    pub thumb: BlobRef,
    /// The photo's width in pixels.
    pub width: u32,
    /// Its height.
    pub height: u32,
}

/// Whether `id` looks like a blob id: 64 lowercase hex digits.
pub fn is_blob_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn parse_key(hex_key: &str) -> Option<[u8; 32]> {
    hex::decode(hex_key).ok()?.try_into().ok()
}

impl PhotoRef {
    /// The text stored in the household field.
    pub fn to_field(&self) -> String {
        format!(
            "{REF_PREFIX}:{}:{}:{}:{}:{}x{}",
            self.full.id,
            hex::encode(self.full.key),
            self.thumb.id,
            hex::encode(self.thumb.key),
            self.width,
            self.height
        )
    }

    /// Parses a field's text.
    pub fn parse(text: &str) -> Result<PhotoRef> {
        let bad = || Error::InvalidArgument("not a photo reference".into());
        let parts: Vec<&str> = text.split(':').collect();
        let [REF_PREFIX, full_id, full_key, thumb_id, thumb_key, size] = parts.as_slice() else {
            return Err(bad());
        };
        let (w, h) = size.split_once('x').ok_or_else(bad)?;
        if !is_blob_id(full_id) || !is_blob_id(thumb_id) {
            return Err(bad());
        }
        Ok(PhotoRef {
            full: BlobRef { id: full_id.to_string(), key: parse_key(full_key).ok_or_else(bad)? },
            thumb: BlobRef { id: thumb_id.to_string(), key: parse_key(thumb_key).ok_or_else(bad)? },
            width: w.parse().map_err(|_| bad())?,
            height: h.parse().map_err(|_| bad())?,
        })
    }
}

/// The reference a plaintext gets: its hash and its derived key.
pub fn blob_ref(plaintext: &[u8]) -> BlobRef {
    BlobRef { id: blake3::hash(plaintext).to_hex().to_string(), key: blake3::derive_key(KEY_CONTEXT, plaintext) }
}

/// Seals a plaintext under its content key: returns its reference and the sealed blob.
pub fn seal_blob(plaintext: &[u8]) -> Result<(BlobRef, Vec<u8>)> {
    let r = blob_ref(plaintext);
    let sealed = aead::seal(&r.key, r.id.as_bytes(), plaintext)?;
    Ok((r, sealed))
}

/// Opens a sealed blob and checks that it is the plaintext its id names.
pub fn open_blob(r: &BlobRef, sealed: &[u8]) -> Result<Vec<u8>> {
    let corrupt = || Error::corrupt(format!("attachment {}", &r.id[..r.id.len().min(12)]));
    let plain = aead::open(&r.key, r.id.as_bytes(), sealed).ok_or_else(corrupt)?;
    if blake3::hash(&plain).to_hex().as_str() != r.id {
        return Err(corrupt());
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_photo_gets_the_same_reference_and_opens_only_with_its_key() {
        let (a, sealed_a) = seal_blob(b"jpeg bytes").unwrap();
        let (b, sealed_b) = seal_blob(b"jpeg bytes").unwrap();
        assert_eq!(a, b, "content-addressed");
        assert_ne!(sealed_a, sealed_b, "random nonces");
        assert_eq!(open_blob(&a, &sealed_b).unwrap(), b"jpeg bytes");
        assert!(!sealed_a.windows(10).any(|w| w == b"jpeg bytes"));
        let (other, sealed_other) = seal_blob(b"other photo").unwrap();
        assert!(matches!(open_blob(&a, &sealed_other), Err(Error::Corrupt { .. })));
        // Right key, wrong id: the hash check catches a blob filed under another id.
        let swapped = BlobRef { id: a.id.clone(), key: other.key };
        assert!(open_blob(&swapped, &sealed_other).is_err());
        let mut flipped = sealed_a.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(open_blob(&a, &flipped).is_err());
    }

    #[test]
    fn references_round_trip_through_their_text() {
        let r = PhotoRef { full: blob_ref(b"full"), thumb: blob_ref(b"thumb"), width: 1600, height: 1200 };
        let text = r.to_field();
        assert!(text.starts_with("att1:"));
        assert_eq!(PhotoRef::parse(&text).unwrap(), r);
        for bad in ["", "att1", "att2:x", &text.replace("1600x1200", "big"), &text[..text.len() - 20]] {
            assert!(PhotoRef::parse(bad).is_err(), "{bad}");
        }
        assert!(!format!("{r:?}").contains(&hex::encode(r.full.key)), "keys stay out of logs");
    }
}

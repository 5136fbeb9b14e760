//! Sealing stored values, bound to their table, document and chunk.

use zeroize::Zeroizing;

use super::{DataKey, aead};
use crate::error::{Error, Result};

/// Where a sealed value lives. Opening it anywhere else fails.
#[derive(Debug, Clone, Copy)]
pub struct Aad<'a> {
    /// Table name.
    pub table: &'a str,
    /// Document id.
    pub doc_id: &'a str,
    /// Chunk or column id within the document.
    pub chunk: &'a str,
}

impl Aad<'_> {
    fn to_bytes(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.table.len() + self.doc_id.len() + self.chunk.len());
        out.extend_from_slice(b"doorstep/v1");
        for part in [self.table, self.doc_id, self.chunk] {
            out.push(0);
            out.extend_from_slice(&(part.len() as u32).to_le_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out
    }
}

/// Seals and opens values with a subkey of the device data key.
pub struct Sealer {
    key: Zeroizing<[u8; 32]>,
}

impl Sealer {
    /// A sealer for records, keyed from `dek`.
    pub fn new(dek: &DataKey) -> Sealer {
        Sealer { key: dek.derive_subkey("doorstep 2026-11 record sealing v1") }
    }

    /// Seals `plaintext` for the place `aad` names.
    pub fn seal(&self, aad: Aad<'_>, plaintext: &[u8]) -> Result<Vec<u8>> {
        aead::seal(&self.key, &aad.to_bytes(), plaintext)
    }

    /// Opens a sealed value; [`Error::Corrupt`] when it was altered or belongs elsewhere.
    pub fn open(&self, aad: Aad<'_>, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        aead::open(&self.key, &aad.to_bytes(), blob)
            .map(Zeroizing::new)
            .ok_or_else(|| Error::corrupt(format!("{}/{}/{}", aad.table, aad.doc_id, aad.chunk)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_moved_to_another_row_fails() {
        let sealer = Sealer::new(&DataKey::make().unwrap());
        let here = Aad { table: "doc_chunk", doc_id: "h1", chunk: "1" };
        let blob = sealer.seal(here, b"secret").unwrap();
        assert_eq!(&*sealer.open(here, &blob).unwrap(), b"secret");
        for other in [
            Aad { table: "doc_meta", doc_id: "h1", chunk: "1" },
            Aad { table: "doc_chunk", doc_id: "h2", chunk: "1" },
            Aad { table: "doc_chunk", doc_id: "h1", chunk: "2" },
            Aad { table: "doc_chunk", doc_id: "h", chunk: "11" },
        ] {
            assert!(matches!(sealer.open(other, &blob), Err(Error::Corrupt { .. })));
        }
    }
}

//! Blind indexes: keyed hashes of normalized values, so the store can find a
//! record by CCCD or name without decrypting every record.

use zeroize::Zeroizing;

use super::DataKey;
use crate::identity::{name_tokens, normalize_name};

/// A 16-byte lookup token. Equal inputs give equal tokens under one device key.
pub type IndexToken = [u8; 16];

/// Makes lookup tokens with a subkey of the device data key.
pub struct BlindIndexer {
    key: Zeroizing<[u8; 32]>,
}

impl BlindIndexer {
    /// An indexer keyed from `dek`.
    pub fn new(dek: &DataKey) -> BlindIndexer {
        BlindIndexer { key: dek.derive_subkey("doorstep 2026-11 blind index v1") }
    }

    fn token(&self, kind: &str, value: &str) -> IndexToken {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(kind.as_bytes());
        h.update(&[0]);
        h.update(value.as_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&h.finalize().as_bytes()[..16]);
        out
    }

    /// Token for a CCCD number (white space ignored).
    pub fn cccd(&self, cccd: &str) -> IndexToken {
        let digits: String = cccd.chars().filter(|c| !c.is_whitespace()).collect();
        self.token("cccd", &digits)
    }

    /// Tokens for each word of a name, normalized (so a search without diacritics finds it).
    pub fn name_words(&self, name: &str) -> Vec<IndexToken> {
        let mut tokens: Vec<IndexToken> = name_tokens(name).iter().map(|t| self.token("name", t)).collect();
        tokens.sort();
        tokens.dedup();
        tokens
    }

    /// Token for a date of birth (`YYYY-MM-DD`).
    pub fn dob(&self, dob: &str) -> IndexToken {
        self.token("dob", dob.trim())
    }

    /// Token for a year of birth (the sync server finds residents nearing ID-card age by it).
    pub fn birth_year(&self, year: i32) -> IndexToken {
        self.token("birth-year", &year.to_string())
    }

    /// Token for a record-linkage blocking key (`rule:value`, see
    /// [`crate::identity::linkage::blocking`]).
    pub fn blocking(&self, key: &str) -> IndexToken {
        self.token("block", key)
    }

    /// Token for the whole normalized name with the date of birth (duplicate candidates).
    pub fn name_dob(&self, name: &str, dob: &str) -> IndexToken {
        self.token("name+dob", &format!("{}|{}", normalize_name(name), dob))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_fold_like_names_and_differ_by_key() {
        let a = BlindIndexer::new(&DataKey::make().unwrap());
        let b = BlindIndexer::new(&DataKey::make().unwrap());
        assert_eq!(a.name_words("Nguyễn Thị"), a.name_words("nguyen THI"));
        assert_ne!(a.name_words("Nguyễn"), b.name_words("Nguyễn"));
        assert_eq!(a.cccd("001 190 012345"), a.cccd("001190012345"));
        assert_ne!(a.cccd("001190012345"), a.cccd("001190012346"));
        assert_eq!(a.name_dob("Đạt", "2000-01-01"), a.name_dob("dat", "2000-01-01"));
        assert_ne!(a.token("cccd", "x"), a.token("name", "x"));
    }
}

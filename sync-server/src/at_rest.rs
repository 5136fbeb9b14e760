//! Encryption at rest of the server's store.
//!
//! Everything the server keeps that names or identifies a resident is sealed
//! with XChaCha20-Poly1305 under a server key that lives outside the database
//! (a key file, `--key-file`): household documents, the change feed, the
//! resident index and conflict values, and the slip signing key. Each sealed
//! value is bound to its table and row, so a value moved to another row does
//! not open. Lookups go through keyed blind indexes (CCCD, date of birth, year
//! of birth), so the database never holds those values in clear either.
//!
//! The store records a check value sealed under the key the first time it is
//! opened; a server started with another key, or on a database written in clear
//! by a version before this one, refuses to start and says why.
//!
//! [`crate::store::Tx`] seals and opens with these keys: the sync algorithm hands it
//! values in clear, the database only ever sees sealed bytes and index tokens.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use chrono::{Datelike, NaiveDate};
use doorstep_core::crypto::{Aad, BlindIndexer, DataKey, IndexToken, Sealer};
use doorstep_core::identity::PersonKey;
use zeroize::Zeroizing;

use crate::storage::{ConflictItem, Turning14};
use crate::store::StorageError;

/// The setting that holds the check value.
pub const CHECK_SETTING: &str = "at_rest_check";
const CHECK_PLAINTEXT: &[u8] = b"doorstep sync server store v1";
/// Days a window of dates of birth looks up at most ([`AtRest::dob_tags`]).
pub const MAX_WINDOW_DAYS: usize = 400;

/// Why the server key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("server key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The file does not hold a key.
    #[error("server key file {0} does not hold a key (64 hexadecimal digits)")]
    Malformed(PathBuf),
    /// The key does not open this database.
    #[error("the server key does not open this database: start the server with the key file it was created with")]
    WrongKey,
    /// The database holds records written in clear by an earlier version.
    #[error(
        "this database holds records stored in clear by an earlier version; export them and start on a new database"
    )]
    StoredInClear,
    /// A PostgreSQL store was named without a key file.
    #[error("a PostgreSQL store needs --key-file (every server node the same file)")]
    Missing,
}

impl From<KeyError> for StorageError {
    /// The message is the operator's to read when the server refuses to start (it names no resident).
    fn from(e: KeyError) -> Self {
        StorageError::startup(e.to_string())
    }
}

/// The server's sealing and index keys, derived from one 256-bit server key.
pub struct AtRest {
    sealer: Sealer,
    index: BlindIndexer,
}

impl std::fmt::Debug for AtRest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AtRest(..)")
    }
}

impl AtRest {
    /// Keys derived from `key`.
    pub fn new(key: &DataKey) -> AtRest {
        AtRest { sealer: Sealer::new(key), index: BlindIndexer::new(key) }
    }

    /// Reads the key file; creates it (mode 0600, a fresh random key) when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<AtRest, KeyError> {
        let io = |source| KeyError::Io { path: path.to_path_buf(), source };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let text = Zeroizing::new(text);
                let bytes =
                    Zeroizing::new(hex::decode(text.trim()).map_err(|_| KeyError::Malformed(path.to_path_buf()))?);
                if bytes.len() != 32 {
                    return Err(KeyError::Malformed(path.to_path_buf()));
                }
                let mut key = Zeroizing::new([0u8; 32]);
                key.copy_from_slice(&bytes);
                Ok(AtRest::new(&DataKey::from_bytes(*key)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = Zeroizing::new([0u8; 32]);
                getrandom::fill(&mut key[..]).map_err(|e| io(std::io::Error::other(e.to_string())))?;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = match options.open(path) {
                    // Another node created it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Self::load_or_create(path),
                    other => other.map_err(io)?,
                };
                file.write_all(Zeroizing::new(format!("{}\n", hex::encode(*key))).as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok(AtRest::new(&DataKey::from_bytes(*key)))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The key file a store uses when none is named: `<file>.key` beside a SQLite file.
    pub fn default_key_file(db: &str) -> Result<PathBuf, KeyError> {
        if db.starts_with("postgres://") || db.starts_with("postgresql://") {
            Err(KeyError::Missing)
        } else {
            Ok(PathBuf::from(format!("{db}.key")))
        }
    }

    /// A check value to record in a new store.
    pub fn check_value(&self) -> Result<String, StorageError> {
        self.seal_text("setting", CHECK_SETTING, "", std::str::from_utf8(CHECK_PLAINTEXT).unwrap_or_default())
    }

    /// Decides whether this key may open a store holding `check` (its recorded check value,
    /// if any) and documents (`has_docs`). Returns the check value to record, if none is.
    pub fn admit(&self, check: Option<&str>, has_docs: bool) -> Result<Option<String>, KeyError> {
        match check {
            Some(value) => match self.open_text("setting", CHECK_SETTING, "", value) {
                Ok(plain) if plain.as_bytes() == CHECK_PLAINTEXT => Ok(None),
                _ => Err(KeyError::WrongKey),
            },
            None if has_docs => Err(KeyError::StoredInClear),
            None => Ok(Some(self.check_value().map_err(|_| KeyError::WrongKey)?)),
        }
    }

    fn aad<'a>(table: &'a str, id: &'a str, chunk: &'a str) -> Aad<'a> {
        Aad { table, doc_id: id, chunk }
    }

    /// Seals bytes for one row's column.
    pub fn seal(&self, table: &str, id: &str, chunk: &str, plain: &[u8]) -> Result<Vec<u8>, StorageError> {
        self.sealer.seal(Self::aad(table, id, chunk), plain).map_err(StorageError::internal)
    }

    /// Opens bytes sealed for this row's column.
    pub fn open(&self, table: &str, id: &str, chunk: &str, sealed: &[u8]) -> Result<Vec<u8>, StorageError> {
        self.sealer
            .open(Self::aad(table, id, chunk), sealed)
            .map(|z| z.to_vec())
            .map_err(|_| StorageError::internal(format!("a sealed {table} value of {id} does not open")))
    }

    /// Seals text for a text column (base64).
    pub fn seal_text(&self, table: &str, id: &str, chunk: &str, plain: &str) -> Result<String, StorageError> {
        Ok(B64.encode(self.seal(table, id, chunk, plain.as_bytes())?))
    }

    /// Opens text sealed by [`AtRest::seal_text`].
    pub fn open_text(&self, table: &str, id: &str, chunk: &str, sealed: &str) -> Result<String, StorageError> {
        let bytes =
            B64.decode(sealed).map_err(|_| StorageError::internal(format!("a sealed {table} value is not base64")))?;
        String::from_utf8(self.open(table, id, chunk, &bytes)?).map_err(StorageError::internal)
    }

    fn tag(token: IndexToken) -> String {
        hex::encode(token)
    }

    /// Index token of a CCCD number.
    pub fn cccd_tag(&self, cccd: &str) -> String {
        Self::tag(self.index.cccd(cccd))
    }

    /// Index token of a record-linkage blocking key (or a search key), written
    /// `locality/rest` (the text before the first `/` names the part of the country the key's
    /// holders share; `logic` writes it). Its top 16 bits are a keyed hash of the locality and
    /// its other 48 the keyed hash of the whole key, as the residents' token index stores
    /// them: the tokens of one district (or of one province's CCCD numbers) sit together in
    /// the index, so a commune's lookups and inserts reach a few stretches of a province's
    /// index — which stay in memory — instead of leaves all over it. An index entry is two
    /// integers (token, resident). Two keys that share a token (one chance in 2^48 a pair
    /// within a locality) only make a lookup read a row the model then scores. The tokens
    /// reveal which entries share a locality, as the entries' area codes (stored in clear) do.
    pub fn block_token(&self, key: &str) -> i64 {
        let locality = key.split_once('/').map_or("", |(locality, _)| locality);
        let place = self.index.blocking(&format!("locality:{locality}"));
        let hash = self.index.blocking(key);
        let mut token = [0u8; 8];
        token[..2].copy_from_slice(&place[..2]);
        token[2..].copy_from_slice(&hash[..6]);
        i64::from_be_bytes(token)
    }

    /// A keyed hash of a registry row as an import read it (to know an unchanged row again
    /// without opening its document; it reveals nothing of the row without the key).
    pub fn registry_row_tag(&self, row_json: &str) -> String {
        Self::tag(self.index.blocking(&format!("registry-row:{row_json}")))
    }

    /// Index token of a CCCD number's sorted digits (a transposition keeps them).
    pub fn cccd_digits_tag(&self, sorted_digits: &str) -> String {
        Self::tag(self.index.blocking(&format!("cccd-digits:{sorted_digits}")))
    }

    /// Index token of a date of birth.
    pub fn dob_tag(&self, dob: &str) -> String {
        Self::tag(self.index.dob(dob))
    }

    /// Index token of a year of birth.
    pub fn birth_year_tag(&self, year: i32) -> String {
        Self::tag(self.index.birth_year(year))
    }

    /// The tokens of the birth years of the window `(born_after, born_until]`: its first and
    /// last year, which covers every window shorter than a year (progress uses 90 days).
    pub fn birth_year_tags(&self, born_after: &str, born_until: &str) -> [String; 2] {
        let year = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").map(|d| d.year()).unwrap_or(0);
        let (from, to) = (year(born_after), year(born_until));
        [self.birth_year_tag(from), self.birth_year_tag(to.max(from))]
    }

    /// The date-of-birth tokens of the days of the window `(born_after, born_until]`, at most
    /// [`MAX_WINDOW_DAYS`] of them (progress uses 90 days); none for a date that does not parse.
    pub fn dob_tags(&self, born_after: &str, born_until: &str) -> Vec<String> {
        let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
        let (Some(after), Some(until)) = (day(born_after), day(born_until)) else { return Vec::new() };
        after
            .iter_days()
            .skip(1)
            .take_while(|d| *d <= until)
            .take(MAX_WINDOW_DAYS)
            .map(|d| self.dob_tag(&d.format("%Y-%m-%d").to_string()))
            .collect()
    }

    /// Opens a resident's index entry.
    pub fn open_person(&self, doc_id: &str, member_id: &str, sealed: &str) -> Result<PersonKey, StorageError> {
        let json = self.open_text("person", doc_id, member_id, sealed)?;
        serde_json::from_str(&json).map_err(StorageError::internal)
    }

    /// Opens a conflict's values, read as `item` with its sealed values beside it.
    pub fn open_conflict(&self, mut item: ConflictItem, sealed: &str) -> Result<ConflictItem, StorageError> {
        let json = self.open_text("conflict", &item.doc_id, &item.path, sealed)?;
        item.values = serde_json::from_str(&json).map_err(StorageError::internal)?;
        Ok(item)
    }

    /// Opens index entries read as `(household, member, area, sealed entry)`:
    /// `(household, area, entry JSON)`.
    pub fn open_people(
        &self,
        rows: Vec<(String, String, String, String)>,
    ) -> Result<Vec<(String, String, String)>, StorageError> {
        rows.into_iter()
            .map(|(doc, member, area, sealed)| {
                let json = self.open_text("person", &doc, &member, &sealed)?;
                Ok((doc, area, json))
            })
            .collect()
    }

    /// From residents born in the window's years, `(household, member, area, sealed entry)`,
    /// those born in `(born_after, born_until]`, oldest first.
    pub fn turning_14(
        &self,
        rows: Vec<(String, String, String, String)>,
        born_after: &str,
        born_until: &str,
    ) -> Result<Vec<Turning14>, StorageError> {
        let mut out = Vec::new();
        for (doc_id, member_id, area, sealed) in rows {
            let key = self.open_person(&doc_id, &member_id, &sealed)?;
            let Some(dob) = key.dob.map(|d| d.format("%Y-%m-%d").to_string()) else { continue };
            if dob.as_str() > born_after && dob.as_str() <= born_until {
                out.push(Turning14 { doc_id, member_id, area, name: key.full_name, dob });
            }
        }
        out.sort_by(|a, b| (&a.dob, &a.doc_id, &a.member_id).cmp(&(&b.dob, &b.doc_id, &b.member_id)));
        Ok(out)
    }
}

/// How many of `residents` live in each area.
pub fn count_by_area(residents: &[Turning14]) -> Vec<(String, i64)> {
    let mut counts = std::collections::BTreeMap::<String, i64>::new();
    for r in residents {
        *counts.entry(r.area.clone()).or_default() += 1;
    }
    counts.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.key");
        let a = AtRest::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let b = AtRest::load_or_create(&path).unwrap();
        let sealed = a.seal("doc", "h1", "", b"Nguyen Van A").unwrap();
        assert_eq!(b.open("doc", "h1", "", &sealed).unwrap(), b"Nguyen Van A");
        assert!(a.open("doc", "h2", "", &sealed).is_err(), "a value moved to another row must not open");
        assert_eq!(a.cccd_tag("001200012345"), b.cccd_tag("001200012345"));
        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(AtRest::load_or_create(&path), Err(KeyError::Malformed(_))));
    }

    #[test]
    fn only_the_right_key_is_admitted() {
        let a = AtRest::new(&DataKey::make().unwrap());
        let b = AtRest::new(&DataKey::make().unwrap());
        let check = a.admit(None, false).unwrap().expect("a new store gets a check value");
        assert!(a.admit(Some(&check), true).unwrap().is_none());
        assert!(matches!(b.admit(Some(&check), true), Err(KeyError::WrongKey)));
        assert!(matches!(a.admit(None, true), Err(KeyError::StoredInClear)));
        assert!(matches!(AtRest::default_key_file("postgres://x/y"), Err(KeyError::Missing)));
    }

    #[test]
    fn turning_14_filters_opened_entries_by_date() {
        let k = AtRest::new(&DataKey::make().unwrap());
        let person = |name: &str, dob: &str| PersonKey {
            full_name: name.into(),
            dob: Some(NaiveDate::parse_from_str(dob, "%Y-%m-%d").unwrap()),
            sex: None,
            cccd: None,
            phone: None,
        };
        let row = |doc: &str, p: PersonKey| {
            let sealed = k.seal_text("person", doc, "m0", &serde_json::to_string(&p).unwrap()).unwrap();
            (doc.to_string(), "m0".to_string(), "01".to_string(), sealed)
        };
        let rows = vec![
            row("h1", person("Lê Văn B", "2012-12-30")),
            row("h2", person("Trần Thị C", "2012-11-01")),
            row("h3", person("Phạm D", "2013-01-15")),
        ];
        let got = k.turning_14(rows, "2012-11-01", "2013-01-31").unwrap();
        let names: Vec<&str> = got.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["Lê Văn B", "Phạm D"]);
        let days = k.dob_tags("2012-12-30", "2013-01-02");
        assert_eq!(days, ["2012-12-31", "2013-01-01", "2013-01-02"].map(|d| k.dob_tag(d)));
        assert!(k.dob_tags("2013-01-02", "2012-12-30").is_empty());
        assert_eq!(k.dob_tags("2000-01-01", "2010-01-01").len(), MAX_WINDOW_DAYS);
    }
}

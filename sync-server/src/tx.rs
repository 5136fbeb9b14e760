//! The storage primitives one sync transaction needs, so that the sync
//! algorithm ([`crate::logic`]) is written once for every backend.

use doorstep_core::sync::protocol::DirectoryEntry;

use crate::error::ApiError;

/// A row of the change feed.
pub struct FeedRow {
    /// Position in the feed: the device cursor.
    pub seq: i64,
    /// Area of the document.
    pub area: String,
    /// Household id.
    pub doc_id: String,
    /// Device that sent the changes (`server` for an operator's).
    pub origin: String,
    /// Automerge changes.
    pub changes: Vec<u8>,
}

/// One open transaction on the server's store. Implementations run blocking.
pub trait Tx {
    /// The server's copy of a document: saved bytes and area.
    fn doc(&mut self, doc_id: &str) -> Result<Option<(Vec<u8>, String)>, ApiError>;
    /// Writes the server's copy of a document.
    fn put_doc(&mut self, doc_id: &str, area: &str, snapshot: &[u8], heads: &str, now: i64) -> Result<(), ApiError>;
    /// Appends changes to the feed.
    fn append_feed(&mut self, area: &str, doc_id: &str, origin: &str, changes: &[u8], now: i64)
    -> Result<(), ApiError>;
    /// Records an accepted change in the audit log.
    fn audit(
        &mut self,
        at: i64,
        device: &str,
        user: &str,
        doc_id: &str,
        heads: &str,
        action: &str,
    ) -> Result<(), ApiError>;
    /// Open conflicts of a document: (id, path).
    fn open_conflicts(&mut self, doc_id: &str) -> Result<Vec<(i64, String)>, ApiError>;
    /// Marks a conflict resolved.
    fn resolve_conflict_row(&mut self, id: i64, by: &str, now: i64) -> Result<(), ApiError>;
    /// Inserts an open conflict, or updates the values of the open one at this path.
    fn upsert_conflict(
        &mut self,
        doc_id: &str,
        area: &str,
        path: &str,
        values_json: &str,
        now: i64,
    ) -> Result<(), ApiError>;
    /// An open conflict's document and path.
    fn conflict(&mut self, id: i64) -> Result<Option<(String, String)>, ApiError>;
    /// Forgets a document's people (before re-indexing them).
    fn delete_people(&mut self, doc_id: &str) -> Result<(), ApiError>;
    /// People in other documents that share a blocking key with a probe
    /// ([`doorstep_core::identity::linkage::blocking`]): `(doc, member, area, key JSON)`, at most
    /// `limit`. A person whose CCCD differs from `cccd` (and whose sorted digits differ from
    /// `cccd_digits`, so no transposition) is a hard non-duplicate and left out.
    fn person_candidates(
        &mut self,
        doc_id: &str,
        blocks: &[String],
        cccd: Option<&str>,
        cccd_digits: Option<&str>,
        limit: i64,
    ) -> Result<Vec<PersonRow>, ApiError>;
    /// Indexes one person: the key (JSON), CCCD (and its sorted digits), date and year of
    /// birth, and its blocking keys; a backend stores them as given
    /// ([`crate::at_rest::SealingTx`] gives them sealed and as index tokens).
    fn insert_person(&mut self, person: &PersonIndex) -> Result<(), ApiError>;
    /// One person's index entry: `(area, key JSON)`.
    fn person(&mut self, doc_id: &str, member_id: &str) -> Result<Option<(String, String)>, ApiError>;
    /// Index entries after `(doc, member)` in key order, at most `limit` (re-indexing walks them).
    fn people_after(&mut self, after: (&str, &str), limit: i64) -> Result<Vec<PersonRow>, ApiError>;
    /// Replaces one person's blocking keys.
    fn put_person_blocks(&mut self, doc_id: &str, member_id: &str, blocks: &[String]) -> Result<(), ApiError>;
    /// Open duplicate candidates after id `after`, at most `limit`: `(id, a, b)`.
    fn open_duplicates_after(&mut self, after: i64, limit: i64) -> Result<Vec<DuplicateRow>, ApiError>;
    /// Sets an open candidate's score, or withdraws it (status `withdrawn`) when `keep` is false.
    fn rescore_duplicate_row(&mut self, id: i64, score: f64, reasons_json: &str, keep: bool) -> Result<(), ApiError>;
    /// A server setting.
    fn setting(&mut self, key: &str) -> Result<Option<String>, ApiError>;
    /// Writes a server setting.
    fn put_setting(&mut self, key: &str, value: &str) -> Result<(), ApiError>;
    /// Queues (or rescores) a duplicate pair.
    #[allow(clippy::too_many_arguments)]
    fn upsert_duplicate(
        &mut self,
        a: (&str, &str),
        b: (&str, &str),
        area: &str,
        score: f64,
        reasons_json: &str,
        now: i64,
    ) -> Result<(), ApiError>;
    /// Feed rows after `cursor` within `area` (and its sub-areas), oldest first, at most `limit`.
    fn feed_after(&mut self, cursor: i64, area: &str, limit: i64) -> Result<Vec<FeedRow>, ApiError>;
    /// Records a device's last sync.
    fn touch_device(&mut self, device_id: &str, now: i64) -> Result<(), ApiError>;
    /// Writes a household's progress figures; keeps the time it was first seen.
    #[allow(clippy::too_many_arguments)]
    fn put_stats(&mut self, doc_id: &str, area: &str, stats: &HouseholdStats, now: i64) -> Result<(), ApiError>;
    /// Documents with no progress figures yet (stored before figures were kept).
    fn docs_without_stats(&mut self) -> Result<Vec<String>, ApiError>;
    /// A duplicate candidate: status, and its two records.
    fn duplicate_row(&mut self, id: i64) -> Result<Option<DuplicateRow>, ApiError>;
    /// Sets a candidate's status and records who decided, when.
    fn decide_duplicate_row(&mut self, id: i64, status: &str, action: &str, by: &str, now: i64)
    -> Result<(), ApiError>;
    /// Links two resident records as one person.
    fn link_residents(&mut self, row: &DuplicateRow, by: &str, now: i64) -> Result<(), ApiError>;
    /// Ends the link a candidate made.
    fn unlink_residents(&mut self, duplicate_id: i64, by: &str, now: i64) -> Result<(), ApiError>;
    /// Records (or replaces) a device's public key for offline bundles.
    fn set_transfer_key(&mut self, device_id: &str, key: &str, now: i64) -> Result<(), ApiError>;
    /// Devices with a bundle key whose area contains, or lies within, `area`.
    fn directory(&mut self, area: &str) -> Result<Vec<DirectoryEntry>, ApiError>;
    /// An attachment blob's upload state (locked for update where the backend can).
    fn blob_state(&mut self, id: &str) -> Result<Option<BlobState>, ApiError>;
    /// Starts a blob upload.
    fn create_blob(&mut self, id: &str, area: &str, device_id: &str, total: i64, now: i64) -> Result<(), ApiError>;
    /// Forgets a blob's partial upload (another device takes it over).
    fn restart_blob(&mut self, id: &str, device_id: &str, now: i64) -> Result<(), ApiError>;
    /// Appends a chunk at `start` (the blob's received count) and advances it.
    fn append_blob(&mut self, id: &str, start: i64, chunk: &[u8], complete: bool, now: i64) -> Result<(), ApiError>;
    /// Bytes of blobs this device has uploaded or is uploading.
    fn device_blob_bytes(&mut self, device_id: &str) -> Result<i64, ApiError>;
    /// Up to `max` bytes of a blob from `start`.
    fn read_blob(&mut self, id: &str, start: i64, max: i64) -> Result<Vec<u8>, ApiError>;
}

/// An attachment blob as the server holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobState {
    /// The area of the device that uploaded it.
    pub area: String,
    /// That device.
    pub device_id: String,
    /// Whole size.
    pub total: i64,
    /// Bytes held.
    pub received: i64,
    /// Last chunk, Unix seconds.
    pub updated_at: i64,
}

/// A household's figures for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HouseholdStats {
    /// Residents.
    pub members: i64,
    /// Every required field filled.
    pub complete: bool,
    /// Residents with a CCCD number.
    pub cccd_present: i64,
    /// … that passes every check.
    pub cccd_valid: i64,
}

/// A person's index entry as the store returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonRow {
    /// Household id.
    pub doc_id: String,
    /// Member id.
    pub member_id: String,
    /// Area of the household.
    pub area: String,
    /// The person's key as JSON (sealed at rest).
    pub key_json: String,
}

/// What the store keeps to find one person again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonIndex {
    /// Household id.
    pub doc_id: String,
    /// Member id.
    pub member_id: String,
    /// Area of the household.
    pub area: String,
    /// The person's key as JSON.
    pub key_json: String,
    /// CCCD number.
    pub cccd: Option<String>,
    /// Its digits, sorted (finds a transposition).
    pub cccd_digits: Option<String>,
    /// Date of birth, `YYYY-MM-DD`.
    pub dob: Option<String>,
    /// Year of birth.
    pub birth_year: Option<String>,
    /// Blocking keys, `rule:value` (tokens once sealed).
    pub blocks: Vec<String>,
}

/// A duplicate candidate as a decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateRow {
    /// Queue id.
    pub id: i64,
    /// `open`, `merged` or `dismissed`.
    pub status: String,
    /// One record: household, member.
    pub a: (String, String),
    /// The other.
    pub b: (String, String),
}

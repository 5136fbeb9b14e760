//! The records the store reads and writes, shared by every layer above it.

use serde::{Deserialize, Serialize};

/// An enrolled device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// The device's own id.
    pub device_id: String,
    /// The area it serves.
    pub area: String,
    /// When it enrolled, Unix seconds.
    pub enrolled_at: i64,
    /// When it last synced.
    pub last_sync_at: Option<i64>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
}

/// A conflict waiting for an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictItem {
    /// Queue id.
    pub id: i64,
    /// Household id.
    pub doc_id: String,
    /// Area.
    pub area: String,
    /// Field path.
    pub path: String,
    /// The concurrent values with their authors and times.
    pub values: Vec<doorstep_core::record::ConflictValue>,
    /// `open` or `resolved`.
    pub status: String,
}

/// A duplicate candidate waiting for an operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DuplicateItem {
    /// Queue id.
    pub id: i64,
    /// One record: household and member.
    pub doc_a: String,
    /// Its member id.
    pub member_a: String,
    /// The other record.
    pub doc_b: String,
    /// Its member id.
    pub member_b: String,
    /// Match probability from 0 to 1.
    pub score: f64,
    /// Why: each comparison's level and weight, the hard rule, the model version
    /// (`None` for a candidate stored in an older format, until it is re-scored).
    pub explanation: Option<doorstep_core::identity::MatchScore>,
    /// `open`, `merged` or `dismissed`.
    pub status: String,
    /// The area the candidate was found in.
    pub area: String,
    /// The last operator decision: action, operator, Unix seconds.
    pub decided: Option<(String, String, i64)>,
}

/// What a re-scoring of the duplicate queue did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RescoreReport {
    /// Index entries whose blocking keys were rebuilt.
    pub reindexed: usize,
    /// Open candidates scored again and kept open.
    pub kept: usize,
    /// Open candidates the model no longer queues (status `withdrawn`).
    pub withdrawn: usize,
}

/// One accepted change, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When, Unix seconds.
    pub at: i64,
    /// Which device (or `server` for an operator's change).
    pub device_id: String,
    /// Which user.
    pub user: String,
    /// Which household.
    pub doc_id: String,
    /// Heads after the change.
    pub heads: Vec<String>,
    /// What happened: `sync` or `resolve`.
    pub action: String,
}

/// What an operator account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reviews conflicts and duplicates, reads progress, prints slips.
    Operator,
    /// Everything an operator does, and manages devices and accounts.
    Admin,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// An operator account of the web console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// Login name.
    pub username: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// What the account may do.
    pub role: Role,
    /// The area it works on, with its sub-areas (empty: every area).
    pub area: String,
    /// When it was created, Unix seconds.
    pub created_at: i64,
}

/// A logged-in console session. Only the hash of its cookie token is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// BLAKE3 of the cookie token.
    pub token_hash: String,
    /// The operator.
    pub username: String,
    /// Their role when they logged in.
    pub role: Role,
    /// The area the operator works on (empty: every area).
    pub area: String,
    /// The token every form of this session must carry.
    pub csrf: String,
    /// Unix seconds after which the session is dead.
    pub expires_at: i64,
}

/// Whether `area` is `scope` or lies within it (an empty scope holds every area).
pub fn area_within(area: &str, scope: &str) -> bool {
    scope.is_empty() || area == scope || area.strip_prefix(scope).is_some_and(|rest| rest.starts_with('.'))
}

/// An operator's decision on a duplicate candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicateAction {
    /// The two records are one resident: link them (both records and histories stay).
    Merge,
    /// Undo a merge: remove the link and reopen the candidate.
    Undo,
    /// They are different people: close the candidate.
    Dismiss,
}

impl DuplicateAction {
    /// The name written to the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            DuplicateAction::Merge => "merge",
            DuplicateAction::Undo => "unmerge",
            DuplicateAction::Dismiss => "dismiss",
        }
    }
}

/// Two resident records an operator linked as one person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResidentLink {
    /// The duplicate candidate it came from.
    pub duplicate_id: i64,
    /// One record: household and member.
    pub a: (String, String),
    /// The other.
    pub b: (String, String),
    /// Who linked them.
    pub linked_by: String,
    /// When, Unix seconds.
    pub linked_at: i64,
}

/// The time windows of a progress report, computed by the caller so that backends only compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressQuery {
    /// The area (and its sub-areas).
    pub area: String,
    /// Unix seconds: households first seen after this count as new today.
    pub since_day: i64,
    /// … in the last 7 days.
    pub since_week: i64,
    /// … in the last 30 days.
    pub since_month: i64,
    /// Residents born after this day (`YYYY-MM-DD`, exclusive) …
    pub born_after: String,
    /// … and on or before this day turn 14 in the window.
    pub born_until: String,
}

/// Counts for one exact area code; the console rolls them up into sub-areas.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AreaCounts {
    /// Area code.
    pub area: String,
    /// Households.
    pub households: i64,
    /// Residents.
    pub residents: i64,
    /// Households with every required field filled.
    pub complete: i64,
    /// Residents with a CCCD number.
    pub cccd_present: i64,
    /// … whose number passes every check.
    pub cccd_valid: i64,
    /// Households first seen in the last day.
    pub new_day: i64,
    /// … in the last 7 days.
    pub new_week: i64,
    /// … in the last 30 days.
    pub new_month: i64,
    /// Residents turning 14 in the window.
    pub turning_14: i64,
    /// Open conflicts.
    pub open_conflicts: i64,
    /// Open duplicate candidates.
    pub open_duplicates: i64,
    /// Households verified at the door.
    pub verified: i64,
    /// Residents verified at the door.
    pub verified_residents: i64,
    /// Households waiting for an operator's review.
    pub review_waiting: i64,
    /// Households returned for correction.
    pub review_returned: i64,
    /// Households approved.
    pub review_approved: i64,
    /// Residents' life events by when they happened.
    pub events: EventCounts,
}

/// Life events of residents, each counted for today, this week and this month (calendar
/// periods in Vietnam time), by the day they happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCounts {
    /// Births.
    pub born: [i64; 3],
    /// Deaths.
    pub died: [i64; 3],
    /// Residents who moved in.
    pub moved_in: [i64; 3],
    /// Residents who moved out.
    pub moved_out: [i64; 3],
}

impl EventCounts {
    /// The counts of one kind (a life event's code), if it is one.
    pub fn of_kind(&mut self, kind: &str) -> Option<&mut [i64; 3]> {
        match kind {
            "born" => Some(&mut self.born),
            "died" => Some(&mut self.died),
            "moved_in" => Some(&mut self.moved_in),
            "moved_out" => Some(&mut self.moved_out),
            _ => None,
        }
    }

    /// Adds another area's counts.
    pub fn add(&mut self, other: &EventCounts) {
        for (into, from) in [
            (&mut self.born, &other.born),
            (&mut self.died, &other.died),
            (&mut self.moved_in, &other.moved_in),
            (&mut self.moved_out, &other.moved_out),
        ] {
            for (a, b) in into.iter_mut().zip(from) {
                *a += b;
            }
        }
    }
}

/// Adds one kind of per-area count to `out`, creating areas as they appear.
pub fn add_counts(
    out: &mut std::collections::BTreeMap<String, AreaCounts>,
    rows: Vec<(String, i64)>,
    field: fn(&mut AreaCounts) -> &mut i64,
) {
    for (area, n) in rows {
        let entry = out.entry(area.clone()).or_insert_with(|| AreaCounts { area, ..AreaCounts::default() });
        *field(entry) = n;
    }
}

/// A resident who reaches ID-card age soon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turning14 {
    /// Household.
    pub doc_id: String,
    /// Member.
    pub member_id: String,
    /// Area.
    pub area: String,
    /// Full name.
    pub name: String,
    /// Date of birth.
    pub dob: String,
}

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
    /// For a departure (no changes): the area the household moved to.
    pub moved_to: Option<String>,
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
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HouseholdStats {
    /// Residents.
    pub members: i64,
    /// Every required field filled.
    pub complete: bool,
    /// Residents with a CCCD number.
    pub cccd_present: i64,
    /// … that passes every check.
    pub cccd_valid: i64,
    /// Verified at the door.
    pub verified: bool,
    /// Residents verified at the door.
    pub verified_residents: i64,
    /// Where it stands in the review (`doorstep_core::verification::ReviewStatus` code).
    pub review: String,
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
    /// Keys the person is indexed under, `rule:value` (tokens once sealed): its blocking keys
    /// and the console's search key of its name.
    pub blocks: Vec<String>,
    /// Blocking keys the person's candidate lookup reads (`blocking::index_keys`).
    pub probes: Vec<String>,
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

/// What an import did with one household of the registry's file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImportOutcome {
    /// A new household document, written by the registry import.
    Created,
    /// The registry changed fields: one change, to those fields.
    Updated,
    /// Nothing the registry changed since its last import (or it already reads so).
    Unchanged,
    /// The household is stored in an area outside the import's (it holds that area).
    HeldElsewhere(String),
}

/// One household as an export gives it: its current state and where it stands in the
/// export's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedHousehold {
    /// The position of its latest change: an export after it no longer includes it.
    pub cursor: i64,
    /// When it last changed, Unix seconds.
    pub updated_at: i64,
    /// The household as its document reads now (for a departure: its id and new area only).
    pub household: doorstep_core::record::Household,
    /// Set when this row says the household moved out of the exported area (to the area
    /// `household.area_code` names): the registry's copy for the area drops it.
    #[serde(default)]
    pub moved_out: bool,
}

/// A page of an export: households changed after a cursor, and the cursor after them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ExportPage {
    /// Households in the order of their latest change.
    pub households: Vec<ExportedHousehold>,
    /// Where the next page starts (the last household's cursor, or the cursor asked with).
    pub next: i64,
}

/// A read-only token of the export API, bound to an area. The secret is stored hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportToken {
    /// A public id, to name and revoke it.
    pub id: String,
    /// The area it may export, with its sub-areas.
    pub area: String,
    /// What it is for (the integration job's name).
    pub label: String,
    /// Who made it.
    pub created_by: String,
    /// When, Unix seconds.
    pub created_at: i64,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
}

/// A household in the review lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewItem {
    /// Household id.
    pub doc_id: String,
    /// Area.
    pub area: String,
    /// Residents.
    pub members: i64,
    /// Residents verified at the door.
    pub verified_residents: i64,
    /// When it last changed, Unix seconds.
    pub updated_at: i64,
}

/// A stored document read in export order (the store's row, opened).
#[derive(Debug, Clone)]
pub struct DocRow {
    /// Its latest feed position.
    pub seq: i64,
    /// When it last changed.
    pub updated_at: i64,
    /// Household id.
    pub doc_id: String,
    /// What the row holds of it.
    pub body: DocBody,
}

/// A stored document's body as an export reads it.
#[derive(Debug, Clone)]
pub enum DocBody {
    /// The household as the document read when it was stored, JSON.
    View(Vec<u8>),
    /// The saved document (a row from before views were kept).
    Saved(Vec<u8>),
}

/// A device's request to move a household out of its areas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRow {
    /// The server's id for it.
    pub id: i64,
    /// The device that asked.
    pub device_id: String,
    /// The device's id for it.
    pub request_id: String,
    /// Household id.
    pub doc_id: String,
    /// Where the household was when asked.
    pub from_area: String,
    /// Where it would go.
    pub to_area: String,
    /// The officer (profile label) who asked.
    pub username: String,
    /// Why, in the officer's words.
    pub reason: String,
    /// `pending`, `approved` or `refused`.
    pub status: String,
    /// The operator's note.
    pub note: String,
    /// When asked, Unix seconds.
    pub created_at: i64,
    /// The operator who decided.
    pub decided_by: Option<String>,
    /// When decided.
    pub decided_at: Option<i64>,
}

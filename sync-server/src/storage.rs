//! The server's storage, behind a trait so that SQLite (the embedded default)
//! and other backends serve the same API.

use async_trait::async_trait;
use doorstep_core::sync::protocol::{BlobChunk, BlobGet, BlobPut, BlobPutAck, SyncRequest, SyncResponse};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

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

/// A progress count beside the household figures.
pub type CountField = fn(&mut AreaCounts) -> &mut i64;

/// The per-area counts a progress report adds to the household figures, as
/// (SQL, field). `within` is the backend's area test on parameter 1.
/// (Residents turning 14 are counted from their sealed entries: [`crate::at_rest::count_by_area`].)
pub fn side_count_queries(within: &str) -> [(String, CountField); 2] {
    [
        (format!("SELECT area, count(*) FROM conflict WHERE {within} AND status = 'open' GROUP BY area"), |c| {
            &mut c.open_conflicts
        }),
        (format!("SELECT area, count(*) FROM duplicate WHERE {within} AND status = 'open' GROUP BY area"), |c| {
            &mut c.open_duplicates
        }),
    ]
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

/// Everything the server stores.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Records a one-time enrolment token (by hash) for an area.
    async fn create_enrolment(&self, token_hash: String, area: String, now: i64) -> Result<(), ApiError>;
    /// Uses a token once: registers the device and its credential (by hash). Returns its areas.
    async fn redeem_enrolment(
        &self,
        token_hash: String,
        device_id: String,
        credential_hash: String,
        now: i64,
    ) -> Result<Vec<String>, ApiError>;
    /// The device holding this credential (by hash), revoked or not.
    async fn device_by_credential(&self, credential_hash: String) -> Result<Option<Device>, ApiError>;
    /// Revokes a device. Returns whether it existed.
    async fn revoke_device(&self, device_id: String, now: i64) -> Result<bool, ApiError>;
    /// Every device.
    async fn devices(&self) -> Result<Vec<Device>, ApiError>;
    /// Applies a device's sync request in one transaction and answers it.
    async fn sync(&self, device: Device, request: SyncRequest, now: i64) -> Result<SyncResponse, ApiError>;
    /// Conflicts, open ones first, optionally within an area.
    async fn conflicts(&self, area: Option<String>) -> Result<Vec<ConflictItem>, ApiError>;
    /// An open conflict's household and field path.
    async fn open_conflict(&self, id: i64) -> Result<Option<(String, String)>, ApiError>;
    /// Resolves a conflict with a value: writes a new change that devices will pull.
    async fn resolve_conflict(
        &self,
        id: i64,
        value: Option<String>,
        operator: String,
        now: i64,
    ) -> Result<(), ApiError>;
    /// Duplicate candidates.
    async fn duplicates(&self, area: Option<String>) -> Result<Vec<DuplicateItem>, ApiError>;
    /// The audit log of a household, or all of it.
    async fn audit(&self, doc_id: Option<String>) -> Result<Vec<AuditEntry>, ApiError>;
    /// Records an operator's action that concerns no household (enrolment, revocation, accounts).
    async fn log_event(&self, at: i64, user: String, action: String) -> Result<(), ApiError>;
    /// The latest such actions, newest first.
    async fn events(&self, limit: i64) -> Result<Vec<AuditEntry>, ApiError>;
    /// Indexed residents within an area (empty: all), for the console's search: (household, area, key JSON).
    async fn people(&self, area: String, limit: i64) -> Result<Vec<(String, String, String)>, ApiError>;
    /// Creates an operator account, or replaces its password and role.
    async fn put_operator(&self, operator: Operator) -> Result<(), ApiError>;
    /// An operator account by name.
    async fn operator(&self, username: String) -> Result<Option<Operator>, ApiError>;
    /// Every operator account.
    async fn operators(&self) -> Result<Vec<Operator>, ApiError>;
    /// Stores a new console session (and forgets expired ones).
    async fn create_session(&self, session: Session, now: i64) -> Result<(), ApiError>;
    /// A live session by token hash.
    async fn session(&self, token_hash: String, now: i64) -> Result<Option<Session>, ApiError>;
    /// Ends a session.
    async fn delete_session(&self, token_hash: String) -> Result<(), ApiError>;
    /// A server setting; when absent, stores `default` first. Every node sees the same value.
    async fn setting_or_insert(&self, key: String, default: String) -> Result<String, ApiError>;
    /// The server's copy of a household: saved document and heads.
    async fn household(&self, doc_id: String) -> Result<Option<(Vec<u8>, Vec<String>)>, ApiError>;
    /// Applies an operator's decision on a duplicate candidate, audited, in one transaction.
    async fn decide_duplicate(
        &self,
        id: i64,
        action: DuplicateAction,
        operator: String,
        now: i64,
    ) -> Result<(), ApiError>;
    /// Re-scores the open duplicate candidates with the shipped linkage model (decided ones
    /// keep their decision); with `reindex`, rebuilds every person's blocking keys first.
    async fn rescore_duplicates(&self, reindex: bool) -> Result<RescoreReport, ApiError>;
    /// Resident links in force.
    async fn links(&self) -> Result<Vec<ResidentLink>, ApiError>;
    /// Progress counts for each exact area code within the query's area.
    async fn area_counts(&self, query: ProgressQuery) -> Result<Vec<AreaCounts>, ApiError>;
    /// Residents turning 14 in the query's window, within its area, youngest last, at most `limit`.
    async fn turning_14(&self, query: ProgressQuery, limit: i64) -> Result<Vec<Turning14>, ApiError>;
    /// Takes one chunk of an attachment blob from a device, within its quota (bytes).
    async fn put_blob(&self, device: Device, put: BlobPut, quota: u64, now: i64) -> Result<BlobPutAck, ApiError>;
    /// A range of a complete attachment blob, for a device of a related area.
    async fn get_blob(&self, device: Device, get: BlobGet) -> Result<BlobChunk, ApiError>;
    /// A complete attachment blob, sealed, for the console (which holds the key from the document).
    async fn blob(&self, id: String) -> Result<Option<Vec<u8>>, ApiError>;
    /// A checksum of everything stored, for tests that prove a refusal changed nothing.
    async fn fingerprint(&self) -> Result<String, ApiError>;
}

//! The server's storage, behind a trait so that SQLite (the embedded default)
//! and other backends serve the same API.

use async_trait::async_trait;
use doorstep_core::sync::protocol::{SyncRequest, SyncResponse};
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
    /// Score from 0 to 1.
    pub score: f64,
    /// Why.
    pub reasons: Vec<doorstep_core::identity::MatchReason>,
    /// `open`, `merged` or `dismissed`.
    pub status: String,
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
    /// A checksum of everything stored, for tests that prove a refusal changed nothing.
    async fn fingerprint(&self) -> Result<String, ApiError>;
}

//! What the API and the console ask of the server's store: one trait, served by
//! [`crate::store::Store`] on SQLite and PostgreSQL alike ([`crate::service`]).

use async_trait::async_trait;
use doorstep_core::sync::protocol::{BlobChunk, BlobGet, BlobPut, BlobPutAck, SyncRequest, SyncResponse};

use crate::registry::import::ImportPlan;
use crate::store::{LevelLimits, Settled, StorageError};

pub use crate::store::model::*;

/// Everything the server stores.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Records a one-time enrolment token (by hash) for an area.
    async fn create_enrolment(&self, token_hash: String, area: String, now: i64) -> Result<(), StorageError>;
    /// Uses a token once: registers the device and its credential (by hash). Returns its areas.
    /// A token created before `issued_after` has expired and is refused.
    async fn redeem_enrolment(
        &self,
        token_hash: String,
        device_id: String,
        credential_hash: String,
        now: i64,
        issued_after: i64,
    ) -> Result<Vec<String>, StorageError>;
    /// The device holding this credential (by hash), revoked or not.
    async fn device_by_credential(&self, credential_hash: String) -> Result<Option<Device>, StorageError>;
    /// Revokes a device. Returns whether it existed.
    async fn revoke_device(&self, device_id: String, now: i64) -> Result<bool, StorageError>;
    /// The devices whose area lies within `scope` (every device for an empty scope).
    async fn devices(&self, scope: String) -> Result<Vec<Device>, StorageError>;
    /// Applies a device's sync request in one transaction and answers it; a compact first
    /// sync sends at most `snapshot_page_docs` documents a page.
    async fn sync(
        &self,
        device: Device,
        request: SyncRequest,
        snapshot_page_docs: i64,
        now: i64,
    ) -> Result<SyncResponse, StorageError>;
    /// Conflicts, open ones first, optionally within an area.
    async fn conflicts(&self, area: Option<String>) -> Result<Vec<ConflictItem>, StorageError>;
    /// An open conflict's household and field path.
    async fn open_conflict(&self, id: i64) -> Result<Option<(String, String)>, StorageError>;
    /// Resolves a conflict with a value: writes a new change that devices will pull.
    async fn resolve_conflict(
        &self,
        id: i64,
        value: Option<String>,
        operator: String,
        now: i64,
    ) -> Result<(), StorageError>;
    /// Duplicate candidates.
    async fn duplicates(&self, area: Option<String>) -> Result<Vec<DuplicateItem>, StorageError>;
    /// The audit log of a household, or all of it.
    async fn audit(&self, doc_id: Option<String>) -> Result<Vec<AuditEntry>, StorageError>;
    /// Records an operator's action that concerns no household (enrolment, revocation, accounts).
    async fn log_event(&self, at: i64, user: String, action: String) -> Result<(), StorageError>;
    /// The latest such actions, newest first.
    async fn events(&self, limit: i64) -> Result<Vec<AuditEntry>, StorageError>;
    /// Indexed residents within an area (empty: all), for the console's search: (household, area, key JSON).
    async fn people(&self, area: String, limit: i64) -> Result<Vec<(String, String, String)>, StorageError>;
    /// Residents within an area (empty: all) found by the index: those indexed under one of
    /// `keys` (the search keys of `logic`), and those of at most `households` households
    /// whose id starts with `id_prefix` (none when empty): (household, area, key JSON), in
    /// household order, at most `limit` of the former.
    async fn find_people(
        &self,
        area: String,
        keys: Vec<String>,
        id_prefix: String,
        households: i64,
        limit: i64,
    ) -> Result<Vec<(String, String, String)>, StorageError>;
    /// Creates an operator account, or replaces its password and role.
    async fn put_operator(&self, operator: Operator) -> Result<(), StorageError>;
    /// An operator account by name.
    async fn operator(&self, username: String) -> Result<Option<Operator>, StorageError>;
    /// Every operator account.
    async fn operators(&self) -> Result<Vec<Operator>, StorageError>;
    /// Stores a new console session (and forgets expired ones).
    async fn create_session(&self, session: Session, now: i64) -> Result<(), StorageError>;
    /// A live session by token hash.
    async fn session(&self, token_hash: String, now: i64) -> Result<Option<Session>, StorageError>;
    /// Ends a session.
    async fn delete_session(&self, token_hash: String) -> Result<(), StorageError>;
    /// A server setting; when absent, stores `default` first. Every node sees the same value.
    async fn setting_or_insert(&self, key: String, default: String) -> Result<String, StorageError>;
    /// The server's copy of a household: saved document and heads.
    async fn household(&self, doc_id: String) -> Result<Option<(Vec<u8>, Vec<String>)>, StorageError>;
    /// Applies an operator's decision on a duplicate candidate, audited, in one transaction.
    async fn decide_duplicate(
        &self,
        id: i64,
        action: DuplicateAction,
        operator: String,
        now: i64,
    ) -> Result<(), StorageError>;
    /// Re-scores the open duplicate candidates with the shipped linkage model (decided ones
    /// keep their decision); with `reindex`, rebuilds every person's blocking keys first.
    async fn rescore_duplicates(&self, reindex: bool) -> Result<RescoreReport, StorageError>;
    /// Resident links in force.
    async fn links(&self) -> Result<Vec<ResidentLink>, StorageError>;
    /// Progress counts for each exact area code within the query's area.
    async fn area_counts(&self, query: ProgressQuery) -> Result<Vec<AreaCounts>, StorageError>;
    /// What the progress page shows, read once: the counts of [`Storage::area_counts`], and
    /// the residents turning 14 in the query's window, within its area, youngest last, at
    /// most `limit`.
    async fn progress(
        &self,
        query: ProgressQuery,
        limit: i64,
    ) -> Result<(Vec<AreaCounts>, Vec<Turning14>), StorageError>;
    /// Imports a batch of checked households of the registry into `area` in one transaction
    /// (docs/REGISTRY.md): what happened to each, in order.
    async fn import_households(
        &self,
        area: String,
        households: Vec<doorstep_core::record::Household>,
        now: i64,
    ) -> Result<Vec<ImportOutcome>, StorageError>;
    /// Prepares a batch of checked households of the registry for `area` outside any write
    /// transaction (documents built on every core from what the store holds now), so that an
    /// import prepares one batch while it writes the last.
    async fn plan_import(
        &self,
        area: String,
        households: Vec<doorstep_core::record::Household>,
        now: i64,
    ) -> Result<ImportPlan, StorageError>;
    /// Writes a prepared batch in one transaction ([`Storage::import_households`] if what it
    /// read has changed since): what happened to each household, in order.
    async fn apply_import(&self, plan: ImportPlan, now: i64) -> Result<Vec<ImportOutcome>, StorageError>;
    /// Refreshes the query planner's statistics after a bulk load, so that lookups keep their
    /// index plans: `ANALYZE` on PostgreSQL; nothing on SQLite, which plans by rule.
    async fn refresh_statistics(&self) -> Result<(), StorageError>;
    /// One pass that settles the residents' token index under `limits` (a running server
    /// settles in the background under the defaults; a bench or a test forces it).
    async fn settle_index(&self, limits: LevelLimits) -> Result<Settled, StorageError>;
    /// Builds the token index's base filter now if it is not up to date (a running server
    /// builds it in the background when a lookup finds it missing; a bench or a test waits
    /// for it): the tokens it was built from, `None` if nothing was built.
    async fn build_index_filter(&self) -> Result<Option<usize>, StorageError>;
    /// The households of `area` changed after the cursor `since`, at most `limit`, and the next cursor.
    async fn export_page(&self, area: String, since: i64, limit: i64) -> Result<ExportPage, StorageError>;
    /// Stores a new export token, by the hash of its secret.
    async fn create_export_token(&self, token: ExportToken, token_hash: String) -> Result<(), StorageError>;
    /// The export token whose secret hashes to `token_hash`, revoked or not.
    async fn export_token(&self, token_hash: String) -> Result<Option<ExportToken>, StorageError>;
    /// Every export token, newest first.
    async fn export_tokens(&self) -> Result<Vec<ExportToken>, StorageError>;
    /// Revokes an export token. Returns whether a live one was revoked.
    async fn revoke_export_token(&self, id: String, now: i64) -> Result<bool, StorageError>;
    /// Records an operator's review of a household within `scope` (empty: every area), audited.
    async fn review_household(
        &self,
        doc_id: String,
        decision: doorstep_core::verification::ReviewDecision,
        comment: Option<String>,
        operator: String,
        scope: String,
        now: i64,
    ) -> Result<(), StorageError>;
    /// Households of `area` whose review status is `status`, most recently changed first, at most `limit`.
    async fn households_in_review(
        &self,
        area: String,
        status: String,
        limit: i64,
    ) -> Result<Vec<ReviewItem>, StorageError>;
    /// Transfer requests in `status` whose both areas lie within `scope` (empty: every
    /// area), newest first, at most `limit`.
    async fn transfers(&self, status: String, scope: String, limit: i64) -> Result<Vec<TransferRow>, StorageError>;
    /// An operator's decision on a pending transfer request; an approval moves the
    /// household. `scope` (the operator's area, empty for every area) must cover both areas.
    async fn decide_transfer(
        &self,
        id: i64,
        approve: bool,
        note: String,
        operator: String,
        scope: String,
        now: i64,
    ) -> Result<(), StorageError>;
    /// Takes one chunk of an attachment blob from a device, within its quota (bytes).
    async fn put_blob(&self, device: Device, put: BlobPut, quota: u64, now: i64) -> Result<BlobPutAck, StorageError>;
    /// A range of a complete attachment blob, for a device of a related area.
    async fn get_blob(&self, device: Device, get: BlobGet) -> Result<BlobChunk, StorageError>;
    /// A complete attachment blob, sealed, for the console (which holds the key from the document).
    async fn blob(&self, id: String) -> Result<Option<Vec<u8>>, StorageError>;
}

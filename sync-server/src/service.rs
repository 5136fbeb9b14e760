//! The server's operations over its store: each opens one [`Tx`], runs the sync
//! algorithm ([`crate::logic`]) or a query, and commits. This is the only place
//! that composes the two layers.

use async_trait::async_trait;
use doorstep_core::identity::LinkageModel;
use doorstep_core::sync::protocol::{BlobChunk, BlobGet, BlobPut, BlobPutAck, SyncRequest, SyncResponse};

use crate::registry::import::ImportPlan;
use crate::storage::{
    AreaCounts, AuditEntry, ConflictItem, Device, DuplicateAction, DuplicateItem, ExportPage, ExportToken,
    ImportOutcome, Operator, ProgressQuery, RescoreReport, ResidentLink, ReviewItem, Session, Storage, TransferRow,
    Turning14,
};
use crate::store::{LevelLimits, Settled, StorageError, Store, Tx};
use crate::{logic, registry};

type Result<T> = std::result::Result<T, StorageError>;

/// Runs `f` in one read transaction.
macro_rules! in_read {
    ($store:expr, |$tx:ident| $body:expr) => {{
        let mut $tx: Tx<'_> = $store.read().await?;
        let out = $body;
        $tx.commit().await?;
        Ok(out)
    }};
}

/// Write transactions a deadlock or serialization failure may run again.
const WRITE_ATTEMPTS: usize = 4;

/// Runs `f` in one write transaction; runs it again (from its start, on a fresh
/// transaction) when the store asks for a retry.
macro_rules! in_write {
    ($store:expr, |$tx:ident| $body:expr) => {{
        let mut attempt = 1;
        loop {
            let outcome: Result<_> = async {
                let mut $tx: Tx<'_> = $store.write().await?;
                let out = $body;
                $tx.commit().await?;
                Ok(out)
            }
            .await;
            match outcome {
                Err(e) if e.is_retry() && attempt < WRITE_ATTEMPTS => attempt += 1,
                other => break other,
            }
        }
    }};
}

impl Store {
    /// Brings derived data up to date after an upgrade: progress figures of documents
    /// stored before they were kept, and duplicate candidates made by an older linkage model.
    pub async fn catch_up(&self, now: i64) -> Result<()> {
        let rescored = in_write!(self, |tx| {
            logic::backfill_stats(&mut tx, now).await?;
            logic::backfill_photo_refs(&mut tx).await?;
            logic::rescore_after_upgrade(&mut tx).await?
        })?;
        self.after_rescore(rescored.as_ref()).await
    }

    /// After a re-scoring that re-indexed (every token rewritten), the planner's statistics
    /// are refreshed: on PostgreSQL an autovacuum that sampled the token table mid-rewrite left
    /// the planner costing a province's lookups from a sample without the new rows (1.3 s a
    /// push of 100 edits, 0.12 s after `ANALYZE`).
    async fn after_rescore(&self, report: Option<&RescoreReport>) -> Result<()> {
        match report {
            Some(r) if r.reindexed > 0 => Store::refresh_statistics(self).await,
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl Storage for Store {
    async fn refresh_statistics(&self) -> Result<()> {
        Store::refresh_statistics(self).await
    }

    async fn settle_index(&self, limits: LevelLimits) -> Result<Settled> {
        self.settle_tokens(limits).await
    }

    async fn build_index_filter(&self) -> Result<Option<usize>> {
        self.build_base_filter().await
    }

    async fn create_enrolment(&self, token_hash: String, area: String, now: i64) -> Result<()> {
        in_write!(self, |tx| tx.create_enrolment(&token_hash, &area, now).await?)
    }

    async fn redeem_enrolment(
        &self,
        token_hash: String,
        device_id: String,
        credential_hash: String,
        now: i64,
        issued_after: i64,
    ) -> Result<Vec<String>> {
        in_write!(self, |tx| tx.redeem_enrolment(&token_hash, &device_id, &credential_hash, now, issued_after).await?)
    }

    async fn device_by_credential(&self, credential_hash: String) -> Result<Option<Device>> {
        in_read!(self, |tx| tx.device_by_credential(&credential_hash).await?)
    }

    async fn revoke_device(&self, device_id: String, now: i64) -> Result<bool> {
        in_write!(self, |tx| tx.revoke_device(&device_id, now).await?)
    }

    async fn devices(&self, scope: String) -> Result<Vec<Device>> {
        in_read!(self, |tx| tx.devices(&scope).await?)
    }

    async fn sync(
        &self,
        device: Device,
        request: SyncRequest,
        snapshot_page_docs: i64,
        now: i64,
    ) -> Result<SyncResponse> {
        in_write!(self, |tx| logic::sync(&mut tx, &device, &request, snapshot_page_docs, now).await?)
    }

    async fn conflicts(&self, area: Option<String>) -> Result<Vec<ConflictItem>> {
        in_read!(self, |tx| tx.conflicts(area.as_deref()).await?)
    }

    async fn open_conflict(&self, id: i64) -> Result<Option<(String, String)>> {
        in_read!(self, |tx| tx.conflict(id).await?)
    }

    async fn resolve_conflict(&self, id: i64, value: Option<String>, operator: String, now: i64) -> Result<()> {
        in_write!(self, |tx| logic::resolve(&mut tx, id, value.as_deref(), &operator, now).await?)
    }

    async fn duplicates(&self, area: Option<String>) -> Result<Vec<DuplicateItem>> {
        in_read!(self, |tx| tx.duplicates(area.as_deref()).await?)
    }

    async fn audit(&self, doc_id: Option<String>) -> Result<Vec<AuditEntry>> {
        in_read!(self, |tx| tx.audit_log(doc_id.as_deref()).await?)
    }

    async fn log_event(&self, at: i64, user: String, action: String) -> Result<()> {
        in_write!(self, |tx| tx.audit(at, "console", &user, "", "", &action).await?)
    }

    async fn events(&self, limit: i64) -> Result<Vec<AuditEntry>> {
        in_read!(self, |tx| tx.events(limit).await?)
    }

    async fn people(&self, area: String, limit: i64) -> Result<Vec<(String, String, String)>> {
        in_read!(self, |tx| tx.people(&area, limit).await?)
    }

    async fn find_people(
        &self,
        area: String,
        keys: Vec<String>,
        id_prefix: String,
        households: i64,
        limit: i64,
    ) -> Result<Vec<(String, String, String)>> {
        in_read!(self, |tx| {
            let mut rows = tx.people_under(&area, &keys, limit).await?;
            if !id_prefix.is_empty() {
                rows.extend(tx.people_of_ids(&area, &id_prefix, households).await?);
            }
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            rows.dedup();
            rows
        })
    }

    async fn put_operator(&self, operator: Operator) -> Result<()> {
        in_write!(self, |tx| tx.put_operator(&operator).await?)
    }

    async fn operator(&self, username: String) -> Result<Option<Operator>> {
        in_read!(self, |tx| tx.operator(&username).await?)
    }

    async fn operators(&self) -> Result<Vec<Operator>> {
        in_read!(self, |tx| tx.operators().await?)
    }

    async fn create_session(&self, session: Session, now: i64) -> Result<()> {
        in_write!(self, |tx| tx.create_session(&session, now).await?)
    }

    async fn session(&self, token_hash: String, now: i64) -> Result<Option<Session>> {
        in_read!(self, |tx| tx.session(&token_hash, now).await?)
    }

    async fn delete_session(&self, token_hash: String) -> Result<()> {
        in_write!(self, |tx| tx.delete_session(&token_hash).await?)
    }

    async fn setting_or_insert(&self, key: String, default: String) -> Result<String> {
        in_write!(self, |tx| tx.setting_or_insert(&key, &default).await?)
    }

    async fn household(&self, doc_id: String) -> Result<Option<(Vec<u8>, Vec<String>)>> {
        in_read!(self, |tx| tx.household(&doc_id).await?)
    }

    async fn decide_duplicate(&self, id: i64, action: DuplicateAction, operator: String, now: i64) -> Result<()> {
        in_write!(self, |tx| logic::decide_duplicate(&mut tx, id, action, &operator, now).await?)
    }

    async fn rescore_duplicates(&self, reindex: bool) -> Result<RescoreReport> {
        let report = in_write!(self, |tx| logic::rescore(&mut tx, LinkageModel::shipped(), reindex).await?)?;
        self.after_rescore(Some(&report)).await?;
        Ok(report)
    }

    async fn links(&self) -> Result<Vec<ResidentLink>> {
        in_read!(self, |tx| tx.links().await?)
    }

    async fn area_counts(&self, query: ProgressQuery) -> Result<Vec<AreaCounts>> {
        in_read!(self, |tx| tx.area_counts(&query).await?)
    }

    async fn progress(&self, query: ProgressQuery, limit: i64) -> Result<(Vec<AreaCounts>, Vec<Turning14>)> {
        in_read!(self, |tx| {
            let mut turning = tx.turning_14(&query).await?;
            let counts = tx.area_counts_with(&query, &turning).await?;
            turning.truncate(usize::try_from(limit).unwrap_or(0));
            (counts, turning)
        })
    }

    async fn import_households(
        &self,
        area: String,
        households: Vec<doorstep_core::record::Household>,
        now: i64,
    ) -> Result<Vec<ImportOutcome>> {
        in_write!(self, |tx| registry::import::import_batch(&mut tx, &area, &households, now).await?)
    }

    async fn plan_import(
        &self,
        area: String,
        households: Vec<doorstep_core::record::Household>,
        now: i64,
    ) -> Result<ImportPlan> {
        let seen: Result<_> = in_read!(self, |tx| registry::import::observe(&mut tx, &households).await?);
        registry::import::plan(area, households, seen?, now, self.at_rest()).await
    }

    async fn apply_import(&self, plan: ImportPlan, now: i64) -> Result<Vec<ImportOutcome>> {
        in_write!(self, |tx| registry::import::apply(&mut tx, &plan, now).await?)
    }

    async fn export_page(&self, area: String, since: i64, limit: i64) -> Result<ExportPage> {
        in_read!(self, |tx| registry::export::export_page(&mut tx, &area, since, limit).await?)
    }

    async fn create_export_token(&self, token: ExportToken, token_hash: String) -> Result<()> {
        in_write!(self, |tx| tx.create_export_token(&token, &token_hash).await?)
    }

    async fn export_token(&self, token_hash: String) -> Result<Option<ExportToken>> {
        in_read!(self, |tx| tx.export_token_by_hash(&token_hash).await?)
    }

    async fn export_tokens(&self) -> Result<Vec<ExportToken>> {
        in_read!(self, |tx| tx.export_tokens().await?)
    }

    async fn revoke_export_token(&self, id: String, now: i64) -> Result<bool> {
        in_write!(self, |tx| tx.revoke_export_token(&id, now).await?)
    }

    async fn review_household(
        &self,
        doc_id: String,
        decision: doorstep_core::verification::ReviewDecision,
        comment: Option<String>,
        operator: String,
        scope: String,
        now: i64,
    ) -> Result<()> {
        in_write!(self, |tx| {
            crate::review::review(&mut tx, &doc_id, decision, comment.as_deref(), &operator, &scope, now).await?
        })
    }

    async fn households_in_review(&self, area: String, status: String, limit: i64) -> Result<Vec<ReviewItem>> {
        in_read!(self, |tx| tx.households_in_review(&area, &status, limit).await?)
    }

    async fn transfers(&self, status: String, scope: String, limit: i64) -> Result<Vec<TransferRow>> {
        in_read!(self, |tx| tx.transfers(&status, &scope, limit).await?)
    }

    async fn decide_transfer(
        &self,
        id: i64,
        approve: bool,
        note: String,
        operator: String,
        scope: String,
        now: i64,
    ) -> Result<()> {
        in_write!(self, |tx| {
            crate::moves::decide_transfer(&mut tx, id, approve, &note, &operator, &scope, now).await?
        })
    }

    async fn put_blob(&self, device: Device, put: BlobPut, quota: u64, now: i64) -> Result<BlobPutAck> {
        in_write!(self, |tx| logic::put_blob(&mut tx, &device, &put, quota, now).await?)
    }

    async fn get_blob(&self, device: Device, get: BlobGet) -> Result<BlobChunk> {
        in_read!(self, |tx| logic::get_blob(&mut tx, &device, &get).await?)
    }

    async fn blob(&self, id: String) -> Result<Option<Vec<u8>>> {
        in_read!(self, |tx| match tx.blob_state(&id).await?.filter(|s| s.received == s.total) {
            Some(state) => Some(tx.read_blob(&id, 0, state.total).await?),
            None => None,
        })
    }
}

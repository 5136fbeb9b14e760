//! The PostgreSQL backend (`--db postgres://…`): any number of stateless
//! server processes can share one database.
//!
//! Writes (syncs that push, conflict resolutions) take one transaction-scoped
//! advisory lock, so feed positions are handed out and committed in order
//! across all nodes: a device that has seen position N has seen every
//! position before it. Reads run in parallel.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::http::StatusCode;
use doorstep_core::sync::protocol::{
    BlobChunk, BlobGet, BlobPut, BlobPutAck, DirectoryEntry, ErrorCode, SyncRequest, SyncResponse,
};
use postgres::{Client, NoTls, Transaction};

use crate::at_rest::{AtRest, CHECK_SETTING, SealingTx, count_by_area};
use crate::error::ApiError;
use crate::logic;
use crate::storage::{
    AreaCounts, AuditEntry, ConflictItem, Device, DuplicateAction, DuplicateItem, Operator, ProgressQuery,
    RescoreReport, ResidentLink, Role, Session, Storage, Turning14, add_counts, side_count_queries,
};
use crate::tx::{BlobState, DuplicateRow, FeedRow, HouseholdStats, PersonIndex, PersonRow, Tx};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS enrolment (
    token_hash TEXT PRIMARY KEY, area TEXT NOT NULL, created_at BIGINT NOT NULL,
    used_at BIGINT, device_id TEXT);
CREATE TABLE IF NOT EXISTS device (
    device_id TEXT PRIMARY KEY, credential_hash TEXT NOT NULL UNIQUE, area TEXT NOT NULL,
    enrolled_at BIGINT NOT NULL, last_sync_at BIGINT, revoked_at BIGINT);
CREATE TABLE IF NOT EXISTS doc (
    doc_id TEXT PRIMARY KEY, area TEXT NOT NULL, snapshot BYTEA NOT NULL, heads TEXT NOT NULL,
    updated_at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS feed (
    seq BIGSERIAL PRIMARY KEY, area TEXT NOT NULL, doc_id TEXT NOT NULL,
    origin TEXT NOT NULL, changes BYTEA NOT NULL, created_at BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS feed_by_area ON feed (area, seq);
CREATE TABLE IF NOT EXISTS person (
    doc_id TEXT NOT NULL, member_id TEXT NOT NULL, area TEXT NOT NULL, key_json TEXT NOT NULL,
    cccd TEXT, dob TEXT, birth_year TEXT, PRIMARY KEY (doc_id, member_id));
CREATE INDEX IF NOT EXISTS person_by_cccd ON person (cccd);
CREATE INDEX IF NOT EXISTS person_by_dob ON person (dob);
ALTER TABLE person ADD COLUMN IF NOT EXISTS birth_year TEXT;
CREATE INDEX IF NOT EXISTS person_by_birth_year ON person (birth_year);
ALTER TABLE person ADD COLUMN IF NOT EXISTS cccd_digits TEXT;
CREATE TABLE IF NOT EXISTS person_block (
    token TEXT NOT NULL, doc_id TEXT NOT NULL, member_id TEXT NOT NULL, PRIMARY KEY (token, doc_id, member_id));
CREATE INDEX IF NOT EXISTS person_block_by_person ON person_block (doc_id, member_id);
CREATE TABLE IF NOT EXISTS conflict (
    id BIGSERIAL PRIMARY KEY, doc_id TEXT NOT NULL, area TEXT NOT NULL, path TEXT NOT NULL,
    values_json TEXT NOT NULL, status TEXT NOT NULL, created_at BIGINT NOT NULL, resolved_at BIGINT,
    resolved_by TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS conflict_open ON conflict (doc_id, path) WHERE status = 'open';
CREATE TABLE IF NOT EXISTS duplicate (
    id BIGSERIAL PRIMARY KEY, doc_a TEXT NOT NULL, member_a TEXT NOT NULL,
    doc_b TEXT NOT NULL, member_b TEXT NOT NULL, area TEXT NOT NULL, score DOUBLE PRECISION NOT NULL,
    reasons_json TEXT NOT NULL, status TEXT NOT NULL, created_at BIGINT NOT NULL,
    UNIQUE (doc_a, member_a, doc_b, member_b));
CREATE TABLE IF NOT EXISTS audit (
    id BIGSERIAL PRIMARY KEY, at BIGINT NOT NULL, device_id TEXT NOT NULL, username TEXT NOT NULL,
    doc_id TEXT NOT NULL, heads TEXT NOT NULL, action TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS household_stats (
    doc_id TEXT PRIMARY KEY, area TEXT NOT NULL, members BIGINT NOT NULL, complete BOOLEAN NOT NULL,
    cccd_present BIGINT NOT NULL, cccd_valid BIGINT NOT NULL, first_seen_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS household_stats_by_area ON household_stats (area);
CREATE TABLE IF NOT EXISTS duplicate_decision (
    id BIGSERIAL PRIMARY KEY, duplicate_id BIGINT NOT NULL, action TEXT NOT NULL,
    decided_by TEXT NOT NULL, decided_at BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS duplicate_decision_by_candidate ON duplicate_decision (duplicate_id, id);
CREATE TABLE IF NOT EXISTS resident_link (
    duplicate_id BIGINT NOT NULL, doc_a TEXT NOT NULL, member_a TEXT NOT NULL, doc_b TEXT NOT NULL,
    member_b TEXT NOT NULL, linked_by TEXT NOT NULL, linked_at BIGINT NOT NULL, undone_by TEXT, undone_at BIGINT);
CREATE TABLE IF NOT EXISTS operator (
    username TEXT PRIMARY KEY, password_hash TEXT NOT NULL, role TEXT NOT NULL, created_at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS session (
    token_hash TEXT PRIMARY KEY, username TEXT NOT NULL, role TEXT NOT NULL, csrf TEXT NOT NULL,
    expires_at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS setting (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS device_key (
    device_id TEXT PRIMARY KEY, transfer_key TEXT NOT NULL, updated_at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS blob (
    id TEXT PRIMARY KEY, area TEXT NOT NULL, device_id TEXT NOT NULL, total BIGINT NOT NULL,
    received BIGINT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, completed_at BIGINT);
CREATE INDEX IF NOT EXISTS blob_by_device ON blob (device_id);
CREATE TABLE IF NOT EXISTS blob_chunk (
    id TEXT NOT NULL, start_at BIGINT NOT NULL, data BYTEA NOT NULL, PRIMARY KEY (id, start_at));
ALTER TABLE operator ADD COLUMN IF NOT EXISTS area TEXT NOT NULL DEFAULT '';
ALTER TABLE session ADD COLUMN IF NOT EXISTS area TEXT NOT NULL DEFAULT '';
";

/// The advisory lock that orders writers across server processes.
const WRITE_LOCK: i64 = 0x00D0_0257;

fn person_row(r: &postgres::Row) -> PersonRow {
    PersonRow { doc_id: r.get(0), member_id: r.get(1), area: r.get(2), key_json: r.get(3) }
}

fn pg(e: postgres::Error) -> ApiError {
    match e.as_db_error() {
        Some(db) => ApiError::internal(format!("{e}: {} ({})", db.message(), db.code().code())),
        None => ApiError::internal(e),
    }
}

/// Idle connections. The blocking client runs a runtime of its own, so the
/// connections are dropped on a plain thread, never on an async worker.
struct Pool(Mutex<Vec<Client>>);

impl Drop for Pool {
    fn drop(&mut self) {
        let clients = std::mem::take(self.0.get_mut().unwrap_or_else(|e| e.into_inner()));
        if !clients.is_empty() {
            let _ = std::thread::spawn(move || drop(clients)).join();
        }
    }
}

/// PostgreSQL storage with a small pool of blocking connections.
#[derive(Clone)]
pub struct PostgresStorage {
    url: String,
    pool: Arc<Pool>,
    keys: Arc<AtRest>,
}

impl PostgresStorage {
    /// Connects, creates the schema if it is missing, and checks that `keys` open this store.
    pub fn open(url: &str, keys: Arc<AtRest>) -> Result<PostgresStorage, ApiError> {
        let mut client = Client::connect(url, NoTls).map_err(pg)?;
        // Serialise schema creation (and the key check) between processes starting together.
        let mut tx = client.transaction().map_err(pg)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&(WRITE_LOCK + 1)]).map_err(pg)?;
        tx.batch_execute(SCHEMA).map_err(pg)?;
        let check: Option<String> =
            tx.query_opt("SELECT value FROM setting WHERE key = $1", &[&CHECK_SETTING]).map_err(pg)?.map(|r| r.get(0));
        let has_docs: bool = tx
            .query_one("SELECT EXISTS (SELECT 1 FROM doc) OR EXISTS (SELECT 1 FROM setting)", &[])
            .map_err(pg)?
            .get(0);
        if let Some(value) = keys.admit(check.as_deref(), has_docs)? {
            tx.execute("INSERT INTO setting (key, value) VALUES ($1, $2)", &[&CHECK_SETTING, &value]).map_err(pg)?;
        }
        tx.commit().map_err(pg)?;
        in_write_tx(&mut client, &keys, |tx| logic::backfill_stats(tx, crate::api::now()))?;
        in_write_tx(&mut client, &keys, logic::rescore_after_upgrade)?;
        Ok(PostgresStorage { url: url.to_string(), pool: Arc::new(Pool(Mutex::new(vec![client]))), keys })
    }

    /// Runs `f` in a plain transaction that seals what it stores (no write lock).
    async fn in_tx<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Tx) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let keys = self.keys.clone();
        self.run(move |c| {
            let mut wrapped = PgTx(c.transaction().map_err(pg)?);
            let out = f(&mut SealingTx::new(&mut wrapped, &keys))?;
            wrapped.0.commit().map_err(pg)?;
            Ok(out)
        })
        .await
    }

    /// Runs `f` under the write lock, sealing what it stores.
    async fn in_write_tx<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Tx) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let keys = self.keys.clone();
        self.run(move |c| in_write_tx(c, &keys, f)).await
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = this.pool.0.lock().map_err(|_| ApiError::internal("poisoned pool"))?.pop();
            let mut client = match pooled {
                Some(c) if !c.is_closed() => c,
                _ => Client::connect(&this.url, NoTls).map_err(pg)?,
            };
            let out = f(&mut client);
            if !client.is_closed()
                && let Ok(mut pool) = this.pool.0.lock()
                && pool.len() < 16
            {
                pool.push(client);
            }
            out
        })
        .await
        .map_err(ApiError::internal)?
    }
}

struct PgTx<'a>(Transaction<'a>);

impl Tx for PgTx<'_> {
    fn doc(&mut self, doc_id: &str) -> Result<Option<(Vec<u8>, String)>, ApiError> {
        Ok(self
            .0
            .query_opt("SELECT snapshot, area FROM doc WHERE doc_id = $1", &[&doc_id])
            .map_err(pg)?
            .map(|r| (r.get(0), r.get(1))))
    }

    fn put_doc(&mut self, doc_id: &str, area: &str, snapshot: &[u8], heads: &str, now: i64) -> Result<(), ApiError> {
        self.0
            .execute(
                "INSERT INTO doc (doc_id, area, snapshot, heads, updated_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (doc_id) DO UPDATE SET area = excluded.area, snapshot = excluded.snapshot,
                     heads = excluded.heads, updated_at = excluded.updated_at",
                &[&doc_id, &area, &snapshot, &heads, &now],
            )
            .map_err(pg)?;
        Ok(())
    }

    fn append_feed(
        &mut self,
        area: &str,
        doc_id: &str,
        origin: &str,
        changes: &[u8],
        now: i64,
    ) -> Result<(), ApiError> {
        self.0
            .execute(
                "INSERT INTO feed (area, doc_id, origin, changes, created_at) VALUES ($1, $2, $3, $4, $5)",
                &[&area, &doc_id, &origin, &changes, &now],
            )
            .map_err(pg)?;
        Ok(())
    }

    fn audit(
        &mut self,
        at: i64,
        device: &str,
        user: &str,
        doc_id: &str,
        heads: &str,
        action: &str,
    ) -> Result<(), ApiError> {
        self.0
            .execute(
                "INSERT INTO audit (at, device_id, username, doc_id, heads, action) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&at, &device, &user, &doc_id, &heads, &action],
            )
            .map_err(pg)?;
        Ok(())
    }

    fn open_conflicts(&mut self, doc_id: &str) -> Result<Vec<(i64, String)>, ApiError> {
        Ok(self
            .0
            .query("SELECT id, path FROM conflict WHERE doc_id = $1 AND status = 'open'", &[&doc_id])
            .map_err(pg)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    fn resolve_conflict_row(&mut self, id: i64, by: &str, now: i64) -> Result<(), ApiError> {
        self.0
            .execute(
                "UPDATE conflict SET status = 'resolved', resolved_at = $2, resolved_by = $3 WHERE id = $1",
                &[&id, &now, &by],
            )
            .map_err(pg)?;
        Ok(())
    }

    fn upsert_conflict(
        &mut self,
        doc_id: &str,
        area: &str,
        path: &str,
        values_json: &str,
        now: i64,
    ) -> Result<(), ApiError> {
        self.0
            .execute(
                "INSERT INTO conflict (doc_id, area, path, values_json, status, created_at) VALUES ($1, $2, $3, $4, 'open', $5)
                 ON CONFLICT (doc_id, path) WHERE status = 'open' DO UPDATE SET values_json = excluded.values_json",
                &[&doc_id, &area, &path, &values_json, &now],
            )
            .map_err(pg)?;
        Ok(())
    }

    fn conflict(&mut self, id: i64) -> Result<Option<(String, String)>, ApiError> {
        Ok(self
            .0
            .query_opt("SELECT doc_id, path FROM conflict WHERE id = $1 AND status = 'open'", &[&id])
            .map_err(pg)?
            .map(|r| (r.get(0), r.get(1))))
    }

    fn delete_people(&mut self, doc_id: &str) -> Result<(), ApiError> {
        self.0.execute("DELETE FROM person WHERE doc_id = $1", &[&doc_id]).map_err(pg)?;
        self.0.execute("DELETE FROM person_block WHERE doc_id = $1", &[&doc_id]).map_err(pg)?;
        Ok(())
    }

    fn person_candidates(
        &mut self,
        doc_id: &str,
        blocks: &[String],
        cccd: Option<&str>,
        cccd_digits: Option<&str>,
        limit: i64,
    ) -> Result<Vec<PersonRow>, ApiError> {
        Ok(self
            .0
            .query(
                "SELECT p.doc_id, p.member_id, p.area, p.key_json
                 FROM (SELECT DISTINCT doc_id, member_id FROM person_block WHERE token = ANY($2)) b
                 JOIN person p ON p.doc_id = b.doc_id AND p.member_id = b.member_id
                 WHERE p.doc_id != $1
                   AND ($3::TEXT IS NULL OR p.cccd IS NULL OR p.cccd = $3 OR p.cccd_digits = $4)
                 LIMIT $5",
                &[&doc_id, &blocks, &cccd, &cccd_digits, &limit],
            )
            .map_err(pg)?
            .iter()
            .map(person_row)
            .collect())
    }

    fn insert_person(&mut self, p: &PersonIndex) -> Result<(), ApiError> {
        self.0
            .execute(
                "INSERT INTO person (doc_id, member_id, area, key_json, cccd, cccd_digits, dob, birth_year)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[&p.doc_id, &p.member_id, &p.area, &p.key_json, &p.cccd, &p.cccd_digits, &p.dob, &p.birth_year],
            )
            .map_err(pg)?;
        self.put_person_blocks(&p.doc_id, &p.member_id, &p.blocks)
    }

    fn person(&mut self, doc_id: &str, member_id: &str) -> Result<Option<(String, String)>, ApiError> {
        Ok(self
            .0
            .query_opt("SELECT area, key_json FROM person WHERE doc_id = $1 AND member_id = $2", &[&doc_id, &member_id])
            .map_err(pg)?
            .map(|r| (r.get(0), r.get(1))))
    }

    fn people_after(&mut self, after: (&str, &str), limit: i64) -> Result<Vec<PersonRow>, ApiError> {
        Ok(self
            .0
            .query(
                "SELECT doc_id, member_id, area, key_json FROM person WHERE (doc_id, member_id) > ($1, $2)
                 ORDER BY doc_id, member_id LIMIT $3",
                &[&after.0, &after.1, &limit],
            )
            .map_err(pg)?
            .iter()
            .map(person_row)
            .collect())
    }

    fn put_person_blocks(&mut self, doc_id: &str, member_id: &str, blocks: &[String]) -> Result<(), ApiError> {
        self.0
            .execute("DELETE FROM person_block WHERE doc_id = $1 AND member_id = $2", &[&doc_id, &member_id])
            .map_err(pg)?;
        self.0
            .execute(
                "INSERT INTO person_block (token, doc_id, member_id) SELECT DISTINCT t, $2, $3 FROM unnest($1::TEXT[]) t
                 ON CONFLICT DO NOTHING",
                &[&blocks, &doc_id, &member_id],
            )
            .map_err(pg)?;
        Ok(())
    }

    fn open_duplicates_after(&mut self, after: i64, limit: i64) -> Result<Vec<DuplicateRow>, ApiError> {
        Ok(self
            .0
            .query(
                "SELECT id, status, doc_a, member_a, doc_b, member_b FROM duplicate
                 WHERE status = 'open' AND id > $1 ORDER BY id LIMIT $2",
                &[&after, &limit],
            )
            .map_err(pg)?
            .iter()
            .map(|r| DuplicateRow { id: r.get(0), status: r.get(1), a: (r.get(2), r.get(3)), b: (r.get(4), r.get(5)) })
            .collect())
    }

    fn rescore_duplicate_row(&mut self, id: i64, score: f64, reasons_json: &str, keep: bool) -> Result<(), ApiError> {
        self.0
            .execute(
                "UPDATE duplicate SET score = $2, reasons_json = $3,
                     status = CASE WHEN $4 THEN status ELSE 'withdrawn' END
                 WHERE id = $1 AND status = 'open'",
                &[&id, &score, &reasons_json, &keep],
            )
            .map_err(pg)?;
        Ok(())
    }

    fn setting(&mut self, key: &str) -> Result<Option<String>, ApiError> {
        Ok(self.0.query_opt("SELECT value FROM setting WHERE key = $1", &[&key]).map_err(pg)?.map(|r| r.get(0)))
    }

    fn put_setting(&mut self, key: &str, value: &str) -> Result<(), ApiError> {
        self.0
            .execute(
                "INSERT INTO setting (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )
            .map_err(pg)?;
        Ok(())
    }

    fn upsert_duplicate(
        &mut self,
        a: (&str, &str),
        b: (&str, &str),
        area: &str,
        score: f64,
        reasons_json: &str,
        now: i64,
    ) -> Result<(), ApiError> {
        self.0
            .execute(
                "INSERT INTO duplicate (doc_a, member_a, doc_b, member_b, area, score, reasons_json, status, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8)
                 ON CONFLICT (doc_a, member_a, doc_b, member_b) DO UPDATE SET score = excluded.score,
                     reasons_json = excluded.reasons_json,
                     status = CASE WHEN duplicate.status = 'withdrawn' THEN 'open' ELSE duplicate.status END",
                &[&a.0, &a.1, &b.0, &b.1, &area, &score, &reasons_json, &now],
            )
            .map_err(pg)?;
        Ok(())
    }

    fn feed_after(&mut self, cursor: i64, area: &str, limit: i64) -> Result<Vec<FeedRow>, ApiError> {
        Ok(self
            .0
            .query(
                "SELECT seq, area, doc_id, origin, changes FROM feed
                 WHERE seq > $1 AND (area = $2 OR area LIKE $2 || '.%') ORDER BY seq LIMIT $3",
                &[&cursor, &area, &limit],
            )
            .map_err(pg)?
            .iter()
            .map(|r| FeedRow { seq: r.get(0), area: r.get(1), doc_id: r.get(2), origin: r.get(3), changes: r.get(4) })
            .collect())
    }

    fn touch_device(&mut self, device_id: &str, now: i64) -> Result<(), ApiError> {
        self.0.execute("UPDATE device SET last_sync_at = $2 WHERE device_id = $1", &[&device_id, &now]).map_err(pg)?;
        Ok(())
    }

    fn put_stats(&mut self, doc_id: &str, area: &str, st: &HouseholdStats, now: i64) -> Result<(), ApiError> {
        self.0
            .execute(
                "INSERT INTO household_stats (doc_id, area, members, complete, cccd_present, cccd_valid, first_seen_at,
                     updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
                 ON CONFLICT (doc_id) DO UPDATE SET area = excluded.area, members = excluded.members,
                     complete = excluded.complete, cccd_present = excluded.cccd_present,
                     cccd_valid = excluded.cccd_valid, updated_at = excluded.updated_at",
                &[&doc_id, &area, &st.members, &st.complete, &st.cccd_present, &st.cccd_valid, &now],
            )
            .map_err(pg)?;
        Ok(())
    }

    fn docs_without_stats(&mut self) -> Result<Vec<String>, ApiError> {
        Ok(self
            .0
            .query(
                "SELECT doc_id FROM doc WHERE NOT EXISTS
                     (SELECT 1 FROM household_stats s WHERE s.doc_id = doc.doc_id)",
                &[],
            )
            .map_err(pg)?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn duplicate_row(&mut self, id: i64) -> Result<Option<DuplicateRow>, ApiError> {
        Ok(self
            .0
            .query_opt("SELECT status, doc_a, member_a, doc_b, member_b FROM duplicate WHERE id = $1", &[&id])
            .map_err(pg)?
            .map(|r| DuplicateRow { id, status: r.get(0), a: (r.get(1), r.get(2)), b: (r.get(3), r.get(4)) }))
    }

    fn decide_duplicate_row(
        &mut self,
        id: i64,
        status: &str,
        action: &str,
        by: &str,
        now: i64,
    ) -> Result<(), ApiError> {
        self.0.execute("UPDATE duplicate SET status = $2 WHERE id = $1", &[&id, &status]).map_err(pg)?;
        self.0
            .execute(
                "INSERT INTO duplicate_decision (duplicate_id, action, decided_by, decided_at) VALUES ($1, $2, $3, $4)",
                &[&id, &action, &by, &now],
            )
            .map_err(pg)?;
        Ok(())
    }

    fn link_residents(&mut self, row: &DuplicateRow, by: &str, now: i64) -> Result<(), ApiError> {
        self.0
            .execute(
                "INSERT INTO resident_link (duplicate_id, doc_a, member_a, doc_b, member_b, linked_by, linked_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&row.id, &row.a.0, &row.a.1, &row.b.0, &row.b.1, &by, &now],
            )
            .map_err(pg)?;
        Ok(())
    }

    fn unlink_residents(&mut self, duplicate_id: i64, by: &str, now: i64) -> Result<(), ApiError> {
        self.0
            .execute(
                "UPDATE resident_link SET undone_by = $2, undone_at = $3 WHERE duplicate_id = $1 AND undone_at IS NULL",
                &[&duplicate_id, &by, &now],
            )
            .map_err(pg)?;
        Ok(())
    }

    fn set_transfer_key(&mut self, device_id: &str, key: &str, now: i64) -> Result<(), ApiError> {
        self.0
            .execute(
                "INSERT INTO device_key (device_id, transfer_key, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (device_id) DO UPDATE SET transfer_key = excluded.transfer_key,
                     updated_at = excluded.updated_at WHERE device_key.transfer_key != excluded.transfer_key",
                &[&device_id, &key, &now],
            )
            .map_err(pg)?;
        Ok(())
    }

    fn directory(&mut self, area: &str) -> Result<Vec<DirectoryEntry>, ApiError> {
        Ok(self
            .0
            .query(
                "SELECT d.device_id, d.area, k.transfer_key, d.revoked_at IS NOT NULL FROM device d
                 JOIN device_key k ON k.device_id = d.device_id
                 WHERE d.area = $1 OR d.area LIKE $1 || '.%' OR $1 LIKE d.area || '.%' ORDER BY d.device_id",
                &[&area],
            )
            .map_err(pg)?
            .iter()
            .map(|r| DirectoryEntry { device_id: r.get(0), area: r.get(1), transfer_key: r.get(2), revoked: r.get(3) })
            .collect())
    }

    fn blob_state(&mut self, id: &str) -> Result<Option<BlobState>, ApiError> {
        Ok(self
            .0
            .query_opt("SELECT area, device_id, total, received, updated_at FROM blob WHERE id = $1 FOR UPDATE", &[&id])
            .map_err(pg)?
            .map(|r| BlobState {
                area: r.get(0),
                device_id: r.get(1),
                total: r.get(2),
                received: r.get(3),
                updated_at: r.get(4),
            }))
    }

    fn create_blob(&mut self, id: &str, area: &str, device_id: &str, total: i64, now: i64) -> Result<(), ApiError> {
        // Two devices starting the same blob at once: the second insert waits, then finds the row.
        self.0
            .execute(
                "INSERT INTO blob (id, area, device_id, total, received, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, 0, $5, $5) ON CONFLICT (id) DO NOTHING",
                &[&id, &area, &device_id, &total, &now],
            )
            .map_err(pg)?;
        Ok(())
    }

    fn restart_blob(&mut self, id: &str, device_id: &str, now: i64) -> Result<(), ApiError> {
        self.0.execute("DELETE FROM blob_chunk WHERE id = $1", &[&id]).map_err(pg)?;
        self.0
            .execute(
                "UPDATE blob SET device_id = $2, received = 0, updated_at = $3 WHERE id = $1",
                &[&id, &device_id, &now],
            )
            .map_err(pg)?;
        Ok(())
    }

    fn append_blob(&mut self, id: &str, start: i64, chunk: &[u8], complete: bool, now: i64) -> Result<(), ApiError> {
        self.0
            .execute("INSERT INTO blob_chunk (id, start_at, data) VALUES ($1, $2, $3)", &[&id, &start, &chunk])
            .map_err(pg)?;
        let completed: Option<i64> = complete.then_some(now);
        self.0
            .execute(
                "UPDATE blob SET received = received + $2, updated_at = $3, completed_at = $4 WHERE id = $1",
                &[&id, &(chunk.len() as i64), &now, &completed],
            )
            .map_err(pg)?;
        Ok(())
    }

    fn device_blob_bytes(&mut self, device_id: &str) -> Result<i64, ApiError> {
        Ok(self
            .0
            .query_one("SELECT COALESCE(SUM(total), 0)::BIGINT FROM blob WHERE device_id = $1", &[&device_id])
            .map_err(pg)?
            .get(0))
    }

    fn read_blob(&mut self, id: &str, start: i64, max: i64) -> Result<Vec<u8>, ApiError> {
        let mut out = Vec::new();
        for r in self
            .0
            .query(
                "SELECT start_at, data FROM blob_chunk WHERE id = $1 AND start_at < $2::BIGINT + $3::BIGINT
                     AND start_at + length(data) > $2::BIGINT ORDER BY start_at",
                &[&id, &start, &max],
            )
            .map_err(pg)?
        {
            let data: &[u8] = r.get(1);
            crate::sqlite::slice_into(&mut out, r.get(0), data, start, max);
        }
        Ok(out)
    }
}

fn in_write_tx<T>(
    c: &mut Client,
    keys: &AtRest,
    f: impl FnOnce(&mut dyn Tx) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let mut tx = c.transaction().map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK]).map_err(pg)?;
    let mut wrapped = PgTx(tx);
    let out = f(&mut SealingTx::new(&mut wrapped, keys))?;
    wrapped.0.commit().map_err(pg)?;
    Ok(out)
}

/// Residents of the query's area turning 14 in its window: those born in the window's
/// years (found by index token), opened and filtered by date.
fn turning_14(c: &mut Client, keys: &AtRest, q: &ProgressQuery) -> Result<Vec<Turning14>, ApiError> {
    let [first, last] = keys.birth_year_tags(&q.born_after, &q.born_until);
    let rows = c
        .query(
            "SELECT doc_id, member_id, area, key_json FROM person
             WHERE ($1 = '' OR area = $1 OR area LIKE $1 || '.%') AND birth_year IN ($2, $3)",
            &[&q.area, &first, &last],
        )
        .map_err(pg)?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    keys.turning_14(rows, &q.born_after, &q.born_until)
}

fn operator_row(r: &postgres::Row) -> Operator {
    Operator {
        username: r.get(0),
        password_hash: r.get(1),
        role: Role::parse(r.get(2)).unwrap_or(Role::Operator),
        created_at: r.get(3),
        area: r.get(4),
    }
}

fn device_row(r: &postgres::Row) -> Device {
    Device { device_id: r.get(0), area: r.get(1), enrolled_at: r.get(2), last_sync_at: r.get(3), revoked_at: r.get(4) }
}

#[async_trait]
impl Storage for PostgresStorage {
    async fn create_enrolment(&self, token_hash: String, area: String, now: i64) -> Result<(), ApiError> {
        self.run(move |c| {
            c.execute(
                "INSERT INTO enrolment (token_hash, area, created_at) VALUES ($1, $2, $3)",
                &[&token_hash, &area, &now],
            )
            .map_err(pg)?;
            Ok(())
        })
        .await
    }

    async fn redeem_enrolment(
        &self,
        token_hash: String,
        device_id: String,
        credential_hash: String,
        now: i64,
    ) -> Result<Vec<String>, ApiError> {
        self.run(move |c| {
            let mut tx = c.transaction().map_err(pg)?;
            let row = tx
                .query_opt(
                    "UPDATE enrolment SET used_at = $2, device_id = $3 WHERE token_hash = $1 AND used_at IS NULL RETURNING area",
                    &[&token_hash, &now, &device_id],
                )
                .map_err(pg)?;
            let Some(row) = row else {
                return Err(ApiError::new(StatusCode::CONFLICT, ErrorCode::TokenUsed, "unknown or already used enrolment token"));
            };
            let area: String = row.get(0);
            let inserted = tx
                .execute(
                    "INSERT INTO device (device_id, credential_hash, area, enrolled_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (device_id) DO NOTHING",
                    &[&device_id, &credential_hash, &area, &now],
                )
                .map_err(pg)?;
            if inserted == 0 {
                return Err(ApiError::malformed("this device id is already enrolled"));
            }
            tx.commit().map_err(pg)?;
            Ok(vec![area])
        })
        .await
    }

    async fn device_by_credential(&self, credential_hash: String) -> Result<Option<Device>, ApiError> {
        self.run(move |c| {
            Ok(c.query_opt(
                "SELECT device_id, area, enrolled_at, last_sync_at, revoked_at FROM device WHERE credential_hash = $1",
                &[&credential_hash],
            )
            .map_err(pg)?
            .map(|r| device_row(&r)))
        })
        .await
    }

    async fn revoke_device(&self, device_id: String, now: i64) -> Result<bool, ApiError> {
        self.run(move |c| {
            Ok(c.execute(
                "UPDATE device SET revoked_at = $2 WHERE device_id = $1 AND revoked_at IS NULL",
                &[&device_id, &now],
            )
            .map_err(pg)?
                > 0)
        })
        .await
    }

    async fn devices(&self) -> Result<Vec<Device>, ApiError> {
        self.run(|c| {
            Ok(c.query(
                "SELECT device_id, area, enrolled_at, last_sync_at, revoked_at FROM device ORDER BY enrolled_at",
                &[],
            )
            .map_err(pg)?
            .iter()
            .map(device_row)
            .collect())
        })
        .await
    }

    async fn sync(&self, device: Device, request: SyncRequest, now: i64) -> Result<SyncResponse, ApiError> {
        if request.push.is_empty() {
            // A pull only reads: no lock, so pulls from many nodes run in parallel.
            self.in_tx(move |tx| logic::sync(tx, &device, &request, now)).await
        } else {
            self.in_write_tx(move |tx| logic::sync(tx, &device, &request, now)).await
        }
    }

    async fn conflicts(&self, area: Option<String>) -> Result<Vec<ConflictItem>, ApiError> {
        let keys = self.keys.clone();
        self.run(move |c| {
            c.query(
                "SELECT id, doc_id, area, path, values_json, status FROM conflict
                 WHERE $1::TEXT IS NULL OR area = $1 OR area LIKE $1 || '.%' ORDER BY status = 'open' DESC, id",
                &[&area],
            )
            .map_err(pg)?
            .iter()
            .map(|r| {
                let item = ConflictItem {
                    id: r.get(0),
                    doc_id: r.get(1),
                    area: r.get(2),
                    path: r.get(3),
                    values: Vec::new(),
                    status: r.get(5),
                };
                keys.open_conflict(item, r.get(4))
            })
            .collect()
        })
        .await
    }

    async fn open_conflict(&self, id: i64) -> Result<Option<(String, String)>, ApiError> {
        self.run(move |c| PgTx(c.transaction().map_err(pg)?).conflict(id)).await
    }

    async fn resolve_conflict(
        &self,
        id: i64,
        value: Option<String>,
        operator: String,
        now: i64,
    ) -> Result<(), ApiError> {
        self.in_write_tx(move |tx| logic::resolve(tx, id, value.as_deref(), &operator, now)).await
    }

    async fn duplicates(&self, area: Option<String>) -> Result<Vec<DuplicateItem>, ApiError> {
        self.run(move |c| {
            Ok(c.query(
                "SELECT d.id, doc_a, member_a, doc_b, member_b, score, reasons_json, status, area,
                     x.action, x.decided_by, x.decided_at
                 FROM duplicate d LEFT JOIN duplicate_decision x ON x.id =
                     (SELECT max(id) FROM duplicate_decision WHERE duplicate_id = d.id)
                 WHERE $1::TEXT IS NULL OR area = $1 OR area LIKE $1 || '.%'
                 ORDER BY status = 'open' DESC, score DESC, d.id",
                &[&area],
            )
            .map_err(pg)?
            .iter()
            .map(|r| DuplicateItem {
                id: r.get(0),
                doc_a: r.get(1),
                member_a: r.get(2),
                doc_b: r.get(3),
                member_b: r.get(4),
                score: r.get(5),
                explanation: serde_json::from_str(r.get::<_, &str>(6)).ok(),
                status: r.get(7),
                area: r.get(8),
                decided: match (r.get(9), r.get(10), r.get(11)) {
                    (Some(a), Some(b), Some(t)) => Some((a, b, t)),
                    _ => None,
                },
            })
            .collect())
        })
        .await
    }

    async fn audit(&self, doc_id: Option<String>) -> Result<Vec<AuditEntry>, ApiError> {
        self.run(move |c| {
            Ok(c.query(
                "SELECT at, device_id, username, doc_id, heads, action FROM audit
                 WHERE $1::TEXT IS NULL OR doc_id = $1 ORDER BY id",
                &[&doc_id],
            )
            .map_err(pg)?
            .iter()
            .map(|r| AuditEntry {
                at: r.get(0),
                device_id: r.get(1),
                user: r.get(2),
                doc_id: r.get(3),
                heads: r.get::<_, &str>(4).split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
                action: r.get(5),
            })
            .collect())
        })
        .await
    }

    async fn log_event(&self, at: i64, user: String, action: String) -> Result<(), ApiError> {
        self.run(move |c| {
            c.execute(
                "INSERT INTO audit (at, device_id, username, doc_id, heads, action) VALUES ($1, 'console', $2, '', '', $3)",
                &[&at, &user, &action],
            )
            .map_err(pg)?;
            Ok(())
        })
        .await
    }

    async fn events(&self, limit: i64) -> Result<Vec<AuditEntry>, ApiError> {
        self.run(move |c| {
            Ok(c.query(
                "SELECT at, device_id, username, doc_id, action FROM audit WHERE doc_id = '' ORDER BY id DESC LIMIT $1",
                &[&limit],
            )
            .map_err(pg)?
            .iter()
            .map(|r| AuditEntry {
                at: r.get(0),
                device_id: r.get(1),
                user: r.get(2),
                doc_id: r.get(3),
                heads: Vec::new(),
                action: r.get(4),
            })
            .collect())
        })
        .await
    }

    async fn people(&self, area: String, limit: i64) -> Result<Vec<(String, String, String)>, ApiError> {
        let keys = self.keys.clone();
        self.run(move |c| {
            let rows = c
                .query(
                    "SELECT doc_id, member_id, area, key_json FROM person
                     WHERE ($1 = '' OR area = $1 OR area LIKE $1 || '.%') ORDER BY doc_id, member_id LIMIT $2",
                    &[&area, &limit],
                )
                .map_err(pg)?
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect();
            keys.open_people(rows)
        })
        .await
    }

    async fn put_operator(&self, op: Operator) -> Result<(), ApiError> {
        self.run(move |c| {
            let mut tx = c.transaction().map_err(pg)?;
            tx.execute(
                "INSERT INTO operator (username, password_hash, role, created_at, area) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, role = excluded.role,
                     area = excluded.area",
                &[&op.username, &op.password_hash, &op.role.as_str(), &op.created_at, &op.area],
            )
            .map_err(pg)?;
            // A changed password or role ends the account's sessions.
            tx.execute("DELETE FROM session WHERE username = $1", &[&op.username]).map_err(pg)?;
            tx.commit().map_err(pg)
        })
        .await
    }

    async fn operator(&self, username: String) -> Result<Option<Operator>, ApiError> {
        self.run(move |c| {
            Ok(c.query_opt(
                "SELECT username, password_hash, role, created_at, area FROM operator WHERE username = $1",
                &[&username],
            )
            .map_err(pg)?
            .map(|r| operator_row(&r)))
        })
        .await
    }

    async fn operators(&self) -> Result<Vec<Operator>, ApiError> {
        self.run(|c| {
            Ok(c.query("SELECT username, password_hash, role, created_at, area FROM operator ORDER BY username", &[])
                .map_err(pg)?
                .iter()
                .map(operator_row)
                .collect())
        })
        .await
    }

    async fn create_session(&self, s: Session, now: i64) -> Result<(), ApiError> {
        self.run(move |c| {
            c.execute("DELETE FROM session WHERE expires_at <= $1", &[&now]).map_err(pg)?;
            c.execute(
                "INSERT INTO session (token_hash, username, role, csrf, expires_at, area) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&s.token_hash, &s.username, &s.role.as_str(), &s.csrf, &s.expires_at, &s.area],
            )
            .map_err(pg)?;
            Ok(())
        })
        .await
    }

    async fn session(&self, token_hash: String, now: i64) -> Result<Option<Session>, ApiError> {
        self.run(move |c| {
            Ok(c.query_opt(
                "SELECT token_hash, username, role, csrf, expires_at, area FROM session
                 WHERE token_hash = $1 AND expires_at > $2",
                &[&token_hash, &now],
            )
            .map_err(pg)?
            .and_then(|r| {
                Some(Session {
                    token_hash: r.get(0),
                    username: r.get(1),
                    role: Role::parse(r.get(2))?,
                    csrf: r.get(3),
                    expires_at: r.get(4),
                    area: r.get(5),
                })
            }))
        })
        .await
    }

    async fn delete_session(&self, token_hash: String) -> Result<(), ApiError> {
        self.run(move |c| {
            c.execute("DELETE FROM session WHERE token_hash = $1", &[&token_hash]).map_err(pg)?;
            Ok(())
        })
        .await
    }

    async fn setting_or_insert(&self, key: String, default: String) -> Result<String, ApiError> {
        let keys = self.keys.clone();
        self.run(move |c| {
            let sealed = keys.seal_text("setting", &key, "", &default)?;
            c.execute(
                "INSERT INTO setting (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                &[&key, &sealed],
            )
            .map_err(pg)?;
            let stored: String = c.query_one("SELECT value FROM setting WHERE key = $1", &[&key]).map_err(pg)?.get(0);
            keys.open_text("setting", &key, "", &stored)
        })
        .await
    }

    async fn household(&self, doc_id: String) -> Result<Option<(Vec<u8>, Vec<String>)>, ApiError> {
        let keys = self.keys.clone();
        self.run(move |c| {
            let Some(r) = c.query_opt("SELECT snapshot, heads FROM doc WHERE doc_id = $1", &[&doc_id]).map_err(pg)?
            else {
                return Ok(None);
            };
            let heads: &str = r.get(1);
            let heads = heads.split(',').filter(|x| !x.is_empty()).map(str::to_owned).collect();
            Ok(Some((keys.open("doc", &doc_id, "", r.get(0))?, heads)))
        })
        .await
    }

    async fn decide_duplicate(
        &self,
        id: i64,
        action: DuplicateAction,
        operator: String,
        now: i64,
    ) -> Result<(), ApiError> {
        self.in_write_tx(move |tx| logic::decide_duplicate(tx, id, action, &operator, now)).await
    }

    async fn rescore_duplicates(&self, reindex: bool) -> Result<RescoreReport, ApiError> {
        self.in_write_tx(move |tx| logic::rescore(tx, doorstep_core::identity::LinkageModel::shipped(), reindex)).await
    }

    async fn links(&self) -> Result<Vec<ResidentLink>, ApiError> {
        self.run(|c| {
            Ok(c.query(
                "SELECT duplicate_id, doc_a, member_a, doc_b, member_b, linked_by, linked_at FROM resident_link
                 WHERE undone_at IS NULL ORDER BY linked_at, duplicate_id",
                &[],
            )
            .map_err(pg)?
            .iter()
            .map(|r| ResidentLink {
                duplicate_id: r.get(0),
                a: (r.get(1), r.get(2)),
                b: (r.get(3), r.get(4)),
                linked_by: r.get(5),
                linked_at: r.get(6),
            })
            .collect())
        })
        .await
    }

    async fn area_counts(&self, q: ProgressQuery) -> Result<Vec<AreaCounts>, ApiError> {
        let keys = self.keys.clone();
        self.run(move |c| {
            let mut out: std::collections::BTreeMap<String, AreaCounts> = Default::default();
            // An empty area means every area.
            const WITHIN: &str = "($1 = '' OR area = $1 OR area LIKE $1 || '.%')";
            for r in c
                .query(
                    &format!(
                        "SELECT area, count(*), sum(members)::BIGINT, count(*) FILTER (WHERE complete),
                             sum(cccd_present)::BIGINT, sum(cccd_valid)::BIGINT,
                             count(*) FILTER (WHERE first_seen_at > $2), count(*) FILTER (WHERE first_seen_at > $3),
                             count(*) FILTER (WHERE first_seen_at > $4)
                         FROM household_stats WHERE {WITHIN} GROUP BY area"
                    ),
                    &[&q.area, &q.since_day, &q.since_week, &q.since_month],
                )
                .map_err(pg)?
            {
                let area: String = r.get(0);
                out.insert(
                    area.clone(),
                    AreaCounts {
                        area,
                        households: r.get(1),
                        residents: r.get(2),
                        complete: r.get(3),
                        cccd_present: r.get(4),
                        cccd_valid: r.get(5),
                        new_day: r.get(6),
                        new_week: r.get(7),
                        new_month: r.get(8),
                        ..AreaCounts::default()
                    },
                );
            }
            for (sql, field) in side_count_queries(WITHIN) {
                let rows = c.query(&sql, &[&q.area]).map_err(pg)?.iter().map(|r| (r.get(0), r.get(1))).collect();
                add_counts(&mut out, rows, field);
            }
            add_counts(&mut out, count_by_area(&turning_14(c, &keys, &q)?), |c| &mut c.turning_14);
            Ok(out.into_values().collect())
        })
        .await
    }

    async fn turning_14(&self, q: ProgressQuery, limit: i64) -> Result<Vec<Turning14>, ApiError> {
        let keys = self.keys.clone();
        self.run(move |c| {
            let mut all = turning_14(c, &keys, &q)?;
            all.truncate(usize::try_from(limit).unwrap_or(0));
            Ok(all)
        })
        .await
    }

    async fn put_blob(&self, device: Device, put: BlobPut, quota: u64, now: i64) -> Result<BlobPutAck, ApiError> {
        // Blobs do not touch the feed: a plain transaction, the row lock orders chunks of one blob.
        self.in_tx(move |tx| logic::put_blob(tx, &device, &put, quota, now)).await
    }

    async fn get_blob(&self, device: Device, get: BlobGet) -> Result<BlobChunk, ApiError> {
        self.in_tx(move |tx| logic::get_blob(tx, &device, &get)).await
    }

    async fn blob(&self, id: String) -> Result<Option<Vec<u8>>, ApiError> {
        self.run(move |c| {
            let mut tx = PgTx(c.transaction().map_err(pg)?);
            let Some(state) = tx.blob_state(&id)?.filter(|s| s.received == s.total) else { return Ok(None) };
            let bytes = tx.read_blob(&id, 0, state.total)?;
            tx.0.commit().map_err(pg)?;
            Ok(Some(bytes))
        })
        .await
    }

    async fn fingerprint(&self) -> Result<String, ApiError> {
        self.run(|c| {
            let mut h = blake3::Hasher::new();
            for (table, cols) in [
                ("enrolment", "token_hash, area, used_at::TEXT, device_id"),
                ("device", "device_id, area, revoked_at::TEXT"),
                ("doc", "doc_id, area, heads"),
                ("feed", "seq::TEXT, doc_id, origin, encode(changes, 'hex')"),
                ("conflict", "id::TEXT, doc_id, path, status"),
                ("duplicate", "id::TEXT, doc_a, member_a, doc_b, member_b, status"),
                ("audit", "id::TEXT, device_id, doc_id, heads"),
                ("duplicate_decision", "id::TEXT, duplicate_id::TEXT, action"),
                ("resident_link", "duplicate_id::TEXT, doc_a, member_a, doc_b, member_b, undone_at::TEXT"),
                ("blob", "id, device_id, total::TEXT, received::TEXT"),
                ("blob_chunk", "id, start_at::TEXT, encode(data, 'hex')"),
                ("device_key", "device_id, transfer_key"),
            ] {
                for row in
                    c.query(&format!("SELECT concat_ws('|', {cols}) FROM {table} ORDER BY 1"), &[]).map_err(pg)?
                {
                    let v: Option<String> = row.get(0);
                    h.update(v.unwrap_or_default().as_bytes());
                    h.update(b"\n");
                }
            }
            Ok(h.finalize().to_hex().to_string())
        })
        .await
    }
}

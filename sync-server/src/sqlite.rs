//! The embedded SQLite backend (`--db ./data.db`).
//!
//! One connection behind a mutex, used from blocking tasks: SQLite has one
//! writer anyway, and every sync is one transaction.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::http::StatusCode;
use doorstep_core::sync::protocol::{
    BlobChunk, BlobGet, BlobPut, BlobPutAck, DirectoryEntry, ErrorCode, SyncRequest, SyncResponse,
};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

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
    token_hash TEXT PRIMARY KEY, area TEXT NOT NULL, created_at INTEGER NOT NULL,
    used_at INTEGER, device_id TEXT);
CREATE TABLE IF NOT EXISTS device (
    device_id TEXT PRIMARY KEY, credential_hash TEXT NOT NULL UNIQUE, area TEXT NOT NULL,
    enrolled_at INTEGER NOT NULL, last_sync_at INTEGER, revoked_at INTEGER);
CREATE TABLE IF NOT EXISTS doc (
    doc_id TEXT PRIMARY KEY, area TEXT NOT NULL, snapshot BLOB NOT NULL, heads TEXT NOT NULL,
    updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS feed (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, area TEXT NOT NULL, doc_id TEXT NOT NULL,
    origin TEXT NOT NULL, changes BLOB NOT NULL, created_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS feed_by_area ON feed (area, seq);
CREATE TABLE IF NOT EXISTS person (
    doc_id TEXT NOT NULL, member_id TEXT NOT NULL, area TEXT NOT NULL, key_json TEXT NOT NULL,
    cccd TEXT, dob TEXT, birth_year TEXT, PRIMARY KEY (doc_id, member_id));
CREATE INDEX IF NOT EXISTS person_by_cccd ON person (cccd);
CREATE INDEX IF NOT EXISTS person_by_dob ON person (dob);
CREATE TABLE IF NOT EXISTS person_block (
    token TEXT NOT NULL, doc_id TEXT NOT NULL, member_id TEXT NOT NULL, PRIMARY KEY (token, doc_id, member_id))
    WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS person_block_by_person ON person_block (doc_id, member_id);
CREATE TABLE IF NOT EXISTS conflict (
    id INTEGER PRIMARY KEY AUTOINCREMENT, doc_id TEXT NOT NULL, area TEXT NOT NULL, path TEXT NOT NULL,
    values_json TEXT NOT NULL, status TEXT NOT NULL, created_at INTEGER NOT NULL, resolved_at INTEGER,
    resolved_by TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS conflict_open ON conflict (doc_id, path) WHERE status = 'open';
CREATE TABLE IF NOT EXISTS duplicate (
    id INTEGER PRIMARY KEY AUTOINCREMENT, doc_a TEXT NOT NULL, member_a TEXT NOT NULL,
    doc_b TEXT NOT NULL, member_b TEXT NOT NULL, area TEXT NOT NULL, score REAL NOT NULL,
    reasons_json TEXT NOT NULL, status TEXT NOT NULL, created_at INTEGER NOT NULL,
    UNIQUE (doc_a, member_a, doc_b, member_b));
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, device_id TEXT NOT NULL, user TEXT NOT NULL,
    doc_id TEXT NOT NULL, heads TEXT NOT NULL, action TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS household_stats (
    doc_id TEXT PRIMARY KEY, area TEXT NOT NULL, members INTEGER NOT NULL, complete INTEGER NOT NULL,
    cccd_present INTEGER NOT NULL, cccd_valid INTEGER NOT NULL, first_seen_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS household_stats_by_area ON household_stats (area);
CREATE TABLE IF NOT EXISTS duplicate_decision (
    id INTEGER PRIMARY KEY AUTOINCREMENT, duplicate_id INTEGER NOT NULL, action TEXT NOT NULL,
    decided_by TEXT NOT NULL, decided_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS duplicate_decision_by_candidate ON duplicate_decision (duplicate_id, id);
CREATE TABLE IF NOT EXISTS resident_link (
    duplicate_id INTEGER NOT NULL, doc_a TEXT NOT NULL, member_a TEXT NOT NULL, doc_b TEXT NOT NULL,
    member_b TEXT NOT NULL, linked_by TEXT NOT NULL, linked_at INTEGER NOT NULL, undone_by TEXT, undone_at INTEGER);
CREATE TABLE IF NOT EXISTS operator (
    username TEXT PRIMARY KEY, password_hash TEXT NOT NULL, role TEXT NOT NULL, created_at INTEGER NOT NULL,
    area TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS session (
    token_hash TEXT PRIMARY KEY, username TEXT NOT NULL, role TEXT NOT NULL, csrf TEXT NOT NULL,
    expires_at INTEGER NOT NULL, area TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS setting (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS device_key (
    device_id TEXT PRIMARY KEY, transfer_key TEXT NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS blob (
    id TEXT PRIMARY KEY, area TEXT NOT NULL, device_id TEXT NOT NULL, total INTEGER NOT NULL,
    received INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, completed_at INTEGER);
CREATE INDEX IF NOT EXISTS blob_by_device ON blob (device_id);
CREATE TABLE IF NOT EXISTS blob_chunk (
    id TEXT NOT NULL, start_at INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (id, start_at));
";

/// SQLite storage.
#[derive(Clone)]
pub struct SqliteStorage {
    conn: Arc<Mutex<Connection>>,
    keys: Arc<AtRest>,
}

impl SqliteStorage {
    /// Opens (or creates) the database file, sealed under `keys`.
    pub fn open(path: &Path, keys: Arc<AtRest>) -> Result<SqliteStorage, ApiError> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -65536;
             PRAGMA temp_store = MEMORY;",
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // A push runs some forty distinct statements per household: keep them all prepared.
        conn.set_prepared_statement_cache_capacity(128);
        conn.execute_batch(SCHEMA)?;
        // Columns added since the first schema.
        for (table, column, decl) in [
            ("person", "birth_year", "TEXT"),
            ("person", "cccd_digits", "TEXT"),
            ("operator", "area", "TEXT NOT NULL DEFAULT ''"),
            ("session", "area", "TEXT NOT NULL DEFAULT ''"),
        ] {
            let has: bool = conn.query_row(
                &format!("SELECT count(*) > 0 FROM pragma_table_info('{table}') WHERE name = '{column}'"),
                [],
                |r| r.get(0),
            )?;
            if !has {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
            }
        }
        conn.execute_batch("CREATE INDEX IF NOT EXISTS person_by_birth_year ON person (birth_year)")?;
        let mut conn = conn;
        {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let check: Option<String> =
                tx.query_row("SELECT value FROM setting WHERE key = ?1", [CHECK_SETTING], |r| r.get(0)).optional()?;
            let has_docs: bool =
                tx.query_row("SELECT EXISTS (SELECT 1 FROM doc) OR EXISTS (SELECT 1 FROM setting)", [], |r| r.get(0))?;
            if let Some(value) = keys.admit(check.as_deref(), has_docs)? {
                tx.execute("INSERT INTO setting (key, value) VALUES (?1, ?2)", [CHECK_SETTING, &value])?;
            }
            tx.commit()?;
        }
        in_tx(&mut conn, &keys, |tx| logic::backfill_stats(tx, crate::api::now()))?;
        in_tx(&mut conn, &keys, logic::rescore_after_upgrade)?;
        Ok(SqliteStorage { conn: Arc::new(Mutex::new(conn)), keys })
    }

    /// Runs `f` in one write transaction that seals what it stores.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Tx) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let keys = self.keys.clone();
        self.run(move |c| in_tx(c, &keys, f)).await
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| ApiError::internal("poisoned lock"))?;
            f(&mut guard)
        })
        .await
        .map_err(ApiError::internal)?
    }
}

fn area_clause(col: &str, n: usize) -> String {
    format!("({col} = ?{n} OR {col} LIKE ?{n} || '.%')")
}

/// [`Tx`] over a rusqlite transaction.
struct SqliteTx<'a>(Transaction<'a>);

impl SqliteTx<'_> {
    /// Runs one statement, prepared once per connection (a push runs the same few thousands of times).
    fn exec(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.0.prepare_cached(sql)?.execute(params)
    }
}

impl Tx for SqliteTx<'_> {
    fn doc(&mut self, doc_id: &str) -> Result<Option<(Vec<u8>, String)>, ApiError> {
        Ok(self
            .0
            .query_row("SELECT snapshot, area FROM doc WHERE doc_id = ?1", [doc_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    fn put_doc(&mut self, doc_id: &str, area: &str, snapshot: &[u8], heads: &str, now: i64) -> Result<(), ApiError> {
        self.exec(
            "INSERT INTO doc (doc_id, area, snapshot, heads, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (doc_id) DO UPDATE SET area = excluded.area, snapshot = excluded.snapshot,
                 heads = excluded.heads, updated_at = excluded.updated_at",
            params![doc_id, area, snapshot, heads, now],
        )?;
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
        self.exec(
            "INSERT INTO feed (area, doc_id, origin, changes, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![area, doc_id, origin, changes, now],
        )?;
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
        self.exec(
            "INSERT INTO audit (at, device_id, user, doc_id, heads, action) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![at, device, user, doc_id, heads, action],
        )?;
        Ok(())
    }

    fn open_conflicts(&mut self, doc_id: &str) -> Result<Vec<(i64, String)>, ApiError> {
        let mut stmt = self.0.prepare_cached("SELECT id, path FROM conflict WHERE doc_id = ?1 AND status = 'open'")?;
        Ok(stmt.query_map([doc_id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?)
    }

    fn resolve_conflict_row(&mut self, id: i64, by: &str, now: i64) -> Result<(), ApiError> {
        self.exec(
            "UPDATE conflict SET status = 'resolved', resolved_at = ?2, resolved_by = ?3 WHERE id = ?1",
            params![id, now, by],
        )?;
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
        self.exec(
            "INSERT INTO conflict (doc_id, area, path, values_json, status, created_at) VALUES (?1, ?2, ?3, ?4, 'open', ?5)
             ON CONFLICT (doc_id, path) WHERE status = 'open' DO UPDATE SET values_json = excluded.values_json",
            params![doc_id, area, path, values_json, now],
        )?;
        Ok(())
    }

    fn conflict(&mut self, id: i64) -> Result<Option<(String, String)>, ApiError> {
        Ok(self
            .0
            .query_row("SELECT doc_id, path FROM conflict WHERE id = ?1 AND status = 'open'", [id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?)
    }

    fn delete_people(&mut self, doc_id: &str) -> Result<(), ApiError> {
        self.exec("DELETE FROM person WHERE doc_id = ?1", [doc_id])?;
        self.exec("DELETE FROM person_block WHERE doc_id = ?1", [doc_id])?;
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
        let mut stmt = self.0.prepare_cached(
            "SELECT p.doc_id, p.member_id, p.area, p.key_json
             FROM (SELECT DISTINCT doc_id, member_id FROM person_block
                   WHERE token IN (SELECT value FROM json_each(?2))) b
             JOIN person p ON p.doc_id = b.doc_id AND p.member_id = b.member_id
             WHERE p.doc_id != ?1 AND (?3 IS NULL OR p.cccd IS NULL OR p.cccd = ?3 OR p.cccd_digits = ?4)
             LIMIT ?5",
        )?;
        let blocks = serde_json::to_string(blocks).map_err(ApiError::internal)?;
        Ok(stmt.query_map(params![doc_id, blocks, cccd, cccd_digits, limit], person_row)?.collect::<Result<_, _>>()?)
    }

    fn insert_person(&mut self, p: &PersonIndex) -> Result<(), ApiError> {
        self.exec(
            "INSERT INTO person (doc_id, member_id, area, key_json, cccd, cccd_digits, dob, birth_year)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![p.doc_id, p.member_id, p.area, p.key_json, p.cccd, p.cccd_digits, p.dob, p.birth_year],
        )?;
        self.put_person_blocks(&p.doc_id, &p.member_id, &p.blocks)
    }

    fn person(&mut self, doc_id: &str, member_id: &str) -> Result<Option<(String, String)>, ApiError> {
        Ok(self
            .0
            .query_row(
                "SELECT area, key_json FROM person WHERE doc_id = ?1 AND member_id = ?2",
                [doc_id, member_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    fn people_after(&mut self, after: (&str, &str), limit: i64) -> Result<Vec<PersonRow>, ApiError> {
        let mut stmt = self.0.prepare_cached(
            "SELECT doc_id, member_id, area, key_json FROM person WHERE (doc_id, member_id) > (?1, ?2)
             ORDER BY doc_id, member_id LIMIT ?3",
        )?;
        Ok(stmt.query_map(params![after.0, after.1, limit], person_row)?.collect::<Result<_, _>>()?)
    }

    fn put_person_blocks(&mut self, doc_id: &str, member_id: &str, blocks: &[String]) -> Result<(), ApiError> {
        self.exec("DELETE FROM person_block WHERE doc_id = ?1 AND member_id = ?2", [doc_id, member_id])?;
        let mut stmt = self
            .0
            .prepare_cached("INSERT OR IGNORE INTO person_block (token, doc_id, member_id) VALUES (?1, ?2, ?3)")?;
        for token in blocks {
            stmt.execute([token.as_str(), doc_id, member_id])?;
        }
        Ok(())
    }

    fn open_duplicates_after(&mut self, after: i64, limit: i64) -> Result<Vec<DuplicateRow>, ApiError> {
        let mut stmt = self.0.prepare_cached(
            "SELECT id, status, doc_a, member_a, doc_b, member_b FROM duplicate
             WHERE status = 'open' AND id > ?1 ORDER BY id LIMIT ?2",
        )?;
        Ok(stmt
            .query_map([after, limit], |r| {
                Ok(DuplicateRow {
                    id: r.get(0)?,
                    status: r.get(1)?,
                    a: (r.get(2)?, r.get(3)?),
                    b: (r.get(4)?, r.get(5)?),
                })
            })?
            .collect::<Result<_, _>>()?)
    }

    fn rescore_duplicate_row(&mut self, id: i64, score: f64, reasons_json: &str, keep: bool) -> Result<(), ApiError> {
        self.exec(
            "UPDATE duplicate SET score = ?2, reasons_json = ?3,
                 status = CASE WHEN ?4 THEN status ELSE 'withdrawn' END
             WHERE id = ?1 AND status = 'open'",
            params![id, score, reasons_json, keep],
        )?;
        Ok(())
    }

    fn setting(&mut self, key: &str) -> Result<Option<String>, ApiError> {
        Ok(self.0.query_row("SELECT value FROM setting WHERE key = ?1", [key], |r| r.get(0)).optional()?)
    }

    fn put_setting(&mut self, key: &str, value: &str) -> Result<(), ApiError> {
        self.exec(
            "INSERT INTO setting (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )?;
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
        self.exec(
            "INSERT INTO duplicate (doc_a, member_a, doc_b, member_b, area, score, reasons_json, status, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'open', ?8)
             ON CONFLICT (doc_a, member_a, doc_b, member_b) DO UPDATE SET score = excluded.score,
                 reasons_json = excluded.reasons_json,
                 status = CASE WHEN duplicate.status = 'withdrawn' THEN 'open' ELSE duplicate.status END",
            params![a.0, a.1, b.0, b.1, area, score, reasons_json, now],
        )?;
        Ok(())
    }

    fn feed_after(&mut self, cursor: i64, area: &str, limit: i64) -> Result<Vec<FeedRow>, ApiError> {
        let sql = format!(
            "SELECT seq, area, doc_id, origin, changes FROM feed WHERE seq > ?1 AND {} ORDER BY seq LIMIT ?3",
            area_clause("area", 2)
        );
        let mut stmt = self.0.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![cursor, area, limit], |r| {
            Ok(FeedRow { seq: r.get(0)?, area: r.get(1)?, doc_id: r.get(2)?, origin: r.get(3)?, changes: r.get(4)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn touch_device(&mut self, device_id: &str, now: i64) -> Result<(), ApiError> {
        self.exec("UPDATE device SET last_sync_at = ?2 WHERE device_id = ?1", params![device_id, now])?;
        Ok(())
    }

    fn put_stats(&mut self, doc_id: &str, area: &str, st: &HouseholdStats, now: i64) -> Result<(), ApiError> {
        self.exec(
            "INSERT INTO household_stats (doc_id, area, members, complete, cccd_present, cccd_valid, first_seen_at,
                 updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
             ON CONFLICT (doc_id) DO UPDATE SET area = excluded.area, members = excluded.members,
                 complete = excluded.complete, cccd_present = excluded.cccd_present,
                 cccd_valid = excluded.cccd_valid, updated_at = excluded.updated_at",
            params![doc_id, area, st.members, st.complete, st.cccd_present, st.cccd_valid, now],
        )?;
        Ok(())
    }

    fn docs_without_stats(&mut self) -> Result<Vec<String>, ApiError> {
        let mut stmt = self.0.prepare(
            "SELECT doc_id FROM doc WHERE NOT EXISTS (SELECT 1 FROM household_stats s WHERE s.doc_id = doc.doc_id)",
        )?;
        Ok(stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?)
    }

    fn duplicate_row(&mut self, id: i64) -> Result<Option<DuplicateRow>, ApiError> {
        Ok(self
            .0
            .query_row("SELECT status, doc_a, member_a, doc_b, member_b FROM duplicate WHERE id = ?1", [id], |r| {
                Ok(DuplicateRow { id, status: r.get(0)?, a: (r.get(1)?, r.get(2)?), b: (r.get(3)?, r.get(4)?) })
            })
            .optional()?)
    }

    fn decide_duplicate_row(
        &mut self,
        id: i64,
        status: &str,
        action: &str,
        by: &str,
        now: i64,
    ) -> Result<(), ApiError> {
        self.exec("UPDATE duplicate SET status = ?2 WHERE id = ?1", params![id, status])?;
        self.exec(
            "INSERT INTO duplicate_decision (duplicate_id, action, decided_by, decided_at) VALUES (?1, ?2, ?3, ?4)",
            params![id, action, by, now],
        )?;
        Ok(())
    }

    fn link_residents(&mut self, row: &DuplicateRow, by: &str, now: i64) -> Result<(), ApiError> {
        self.exec(
            "INSERT INTO resident_link (duplicate_id, doc_a, member_a, doc_b, member_b, linked_by, linked_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![row.id, row.a.0, row.a.1, row.b.0, row.b.1, by, now],
        )?;
        Ok(())
    }

    fn unlink_residents(&mut self, duplicate_id: i64, by: &str, now: i64) -> Result<(), ApiError> {
        self.exec(
            "UPDATE resident_link SET undone_by = ?2, undone_at = ?3 WHERE duplicate_id = ?1 AND undone_at IS NULL",
            params![duplicate_id, by, now],
        )?;
        Ok(())
    }

    fn set_transfer_key(&mut self, device_id: &str, key: &str, now: i64) -> Result<(), ApiError> {
        self.exec(
            "INSERT INTO device_key (device_id, transfer_key, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (device_id) DO UPDATE SET transfer_key = excluded.transfer_key, updated_at = excluded.updated_at
             WHERE device_key.transfer_key != excluded.transfer_key",
            params![device_id, key, now],
        )?;
        Ok(())
    }

    fn directory(&mut self, area: &str) -> Result<Vec<DirectoryEntry>, ApiError> {
        let mut stmt = self.0.prepare_cached(
            "SELECT d.device_id, d.area, k.transfer_key, d.revoked_at IS NOT NULL FROM device d
             JOIN device_key k ON k.device_id = d.device_id
             WHERE d.area = ?1 OR d.area LIKE ?1 || '.%' OR ?1 LIKE d.area || '.%' ORDER BY d.device_id",
        )?;
        let rows = stmt.query_map([area], |r| {
            Ok(DirectoryEntry { device_id: r.get(0)?, area: r.get(1)?, transfer_key: r.get(2)?, revoked: r.get(3)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn blob_state(&mut self, id: &str) -> Result<Option<BlobState>, ApiError> {
        Ok(self
            .0
            .query_row("SELECT area, device_id, total, received, updated_at FROM blob WHERE id = ?1", [id], |r| {
                Ok(BlobState {
                    area: r.get(0)?,
                    device_id: r.get(1)?,
                    total: r.get(2)?,
                    received: r.get(3)?,
                    updated_at: r.get(4)?,
                })
            })
            .optional()?)
    }

    fn create_blob(&mut self, id: &str, area: &str, device_id: &str, total: i64, now: i64) -> Result<(), ApiError> {
        self.exec(
            "INSERT INTO blob (id, area, device_id, total, received, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, 0, ?5, ?5)",
            params![id, area, device_id, total, now],
        )?;
        Ok(())
    }

    fn restart_blob(&mut self, id: &str, device_id: &str, now: i64) -> Result<(), ApiError> {
        self.exec("DELETE FROM blob_chunk WHERE id = ?1", [id])?;
        self.exec(
            "UPDATE blob SET device_id = ?2, received = 0, updated_at = ?3 WHERE id = ?1",
            params![id, device_id, now],
        )?;
        Ok(())
    }

    fn append_blob(&mut self, id: &str, start: i64, chunk: &[u8], complete: bool, now: i64) -> Result<(), ApiError> {
        self.exec("INSERT INTO blob_chunk (id, start_at, data) VALUES (?1, ?2, ?3)", params![id, start, chunk])?;
        self.exec(
            "UPDATE blob SET received = received + ?2, updated_at = ?3,
                 completed_at = CASE WHEN ?4 THEN ?3 ELSE NULL END WHERE id = ?1",
            params![id, chunk.len() as i64, now, complete],
        )?;
        Ok(())
    }

    fn device_blob_bytes(&mut self, device_id: &str) -> Result<i64, ApiError> {
        Ok(self
            .0
            .query_row("SELECT COALESCE(SUM(total), 0) FROM blob WHERE device_id = ?1", [device_id], |r| r.get(0))?)
    }

    fn read_blob(&mut self, id: &str, start: i64, max: i64) -> Result<Vec<u8>, ApiError> {
        let mut stmt = self.0.prepare_cached(
            "SELECT start_at, data FROM blob_chunk WHERE id = ?1 AND start_at < ?2 + ?3
                 AND start_at + length(data) > ?2 ORDER BY start_at",
        )?;
        let rows = stmt.query_map(params![id, start, max], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (at, data) = row?;
            slice_into(&mut out, at, &data, start, max);
        }
        Ok(out)
    }
}

/// Appends the part of a chunk stored at `at` that falls in `[start, start + max)`.
pub(crate) fn slice_into(out: &mut Vec<u8>, at: i64, data: &[u8], start: i64, max: i64) {
    let from = (start.max(at) - at) as usize;
    let to = ((start + max).min(at + data.len() as i64) - at).max(0) as usize;
    if from < to {
        out.extend_from_slice(&data[from..to]);
    }
}

fn in_tx<T>(
    c: &mut Connection,
    keys: &AtRest,
    f: impl FnOnce(&mut dyn Tx) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let mut tx = SqliteTx(c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?);
    let out = f(&mut SealingTx::new(&mut tx, keys))?;
    tx.0.commit()?;
    Ok(out)
}

/// Residents of the query's area turning 14 in its window: those born in the window's
/// years (found by index token), opened and filtered by date.
fn turning_14(c: &Connection, keys: &AtRest, q: &ProgressQuery) -> Result<Vec<Turning14>, ApiError> {
    let [first, last] = keys.birth_year_tags(&q.born_after, &q.born_until);
    let mut stmt = c.prepare(&format!(
        "SELECT doc_id, member_id, area, key_json FROM person
         WHERE (?1 = '' OR {}) AND birth_year IN (?2, ?3)",
        area_clause("area", 1)
    ))?;
    let rows = stmt.query_map(params![q.area, first, last], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    keys.turning_14(rows.collect::<Result<Vec<_>, _>>()?, &q.born_after, &q.born_until)
}

fn person_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PersonRow> {
    Ok(PersonRow { doc_id: r.get(0)?, member_id: r.get(1)?, area: r.get(2)?, key_json: r.get(3)? })
}

fn operator_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Operator> {
    let role: String = r.get(2)?;
    Ok(Operator {
        username: r.get(0)?,
        password_hash: r.get(1)?,
        role: Role::parse(&role).unwrap_or(Role::Operator),
        created_at: r.get(3)?,
        area: r.get(4)?,
    })
}

fn device_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Device> {
    Ok(Device {
        device_id: r.get(0)?,
        area: r.get(1)?,
        enrolled_at: r.get(2)?,
        last_sync_at: r.get(3)?,
        revoked_at: r.get(4)?,
    })
}

#[async_trait]
impl Storage for SqliteStorage {
    async fn create_enrolment(&self, token_hash: String, area: String, now: i64) -> Result<(), ApiError> {
        self.run(move |c| {
            c.execute(
                "INSERT INTO enrolment (token_hash, area, created_at) VALUES (?1, ?2, ?3)",
                params![token_hash, area, now],
            )?;
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
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let area: Option<String> = tx
                .query_row("SELECT area FROM enrolment WHERE token_hash = ?1 AND used_at IS NULL", [&token_hash], |r| {
                    r.get(0)
                })
                .optional()?;
            let Some(area) = area else {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    ErrorCode::TokenUsed,
                    "unknown or already used enrolment token",
                ));
            };
            let taken: bool =
                tx.query_row("SELECT EXISTS (SELECT 1 FROM device WHERE device_id = ?1)", [&device_id], |r| r.get(0))?;
            if taken {
                return Err(ApiError::malformed("this device id is already enrolled"));
            }
            tx.execute(
                "UPDATE enrolment SET used_at = ?2, device_id = ?3 WHERE token_hash = ?1",
                params![token_hash, now, device_id],
            )?;
            tx.execute(
                "INSERT INTO device (device_id, credential_hash, area, enrolled_at) VALUES (?1, ?2, ?3, ?4)",
                params![device_id, credential_hash, area, now],
            )?;
            tx.commit()?;
            Ok(vec![area])
        })
        .await
    }

    async fn device_by_credential(&self, credential_hash: String) -> Result<Option<Device>, ApiError> {
        self.run(move |c| {
            Ok(c.query_row(
                "SELECT device_id, area, enrolled_at, last_sync_at, revoked_at FROM device WHERE credential_hash = ?1",
                [credential_hash],
                device_row,
            )
            .optional()?)
        })
        .await
    }

    async fn revoke_device(&self, device_id: String, now: i64) -> Result<bool, ApiError> {
        self.run(move |c| {
            Ok(c.execute(
                "UPDATE device SET revoked_at = ?2 WHERE device_id = ?1 AND revoked_at IS NULL",
                params![device_id, now],
            )? > 0)
        })
        .await
    }

    async fn devices(&self) -> Result<Vec<Device>, ApiError> {
        self.run(|c| {
            let mut stmt = c.prepare(
                "SELECT device_id, area, enrolled_at, last_sync_at, revoked_at FROM device ORDER BY enrolled_at",
            )?;
            let rows = stmt.query_map([], device_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn sync(&self, device: Device, request: SyncRequest, now: i64) -> Result<SyncResponse, ApiError> {
        self.write(move |tx| logic::sync(tx, &device, &request, now)).await
    }

    async fn conflicts(&self, area: Option<String>) -> Result<Vec<ConflictItem>, ApiError> {
        let keys = self.keys.clone();
        self.run(move |c| {
            let sql = format!(
                "SELECT id, doc_id, area, path, values_json, status FROM conflict WHERE ?1 IS NULL OR {}
                 ORDER BY status = 'open' DESC, id",
                area_clause("area", 1)
            );
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map([area], |r| {
                Ok((
                    ConflictItem {
                        id: r.get(0)?,
                        doc_id: r.get(1)?,
                        area: r.get(2)?,
                        path: r.get(3)?,
                        values: Vec::new(),
                        status: r.get(5)?,
                    },
                    r.get::<_, String>(4)?,
                ))
            })?;
            let rows = rows.collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(|(item, sealed)| keys.open_conflict(item, &sealed)).collect()
        })
        .await
    }

    async fn open_conflict(&self, id: i64) -> Result<Option<(String, String)>, ApiError> {
        self.run(move |c| SqliteTx(c.transaction()?).conflict(id)).await
    }

    async fn resolve_conflict(
        &self,
        id: i64,
        value: Option<String>,
        operator: String,
        now: i64,
    ) -> Result<(), ApiError> {
        self.write(move |tx| logic::resolve(tx, id, value.as_deref(), &operator, now)).await
    }

    async fn duplicates(&self, area: Option<String>) -> Result<Vec<DuplicateItem>, ApiError> {
        self.run(move |c| {
            let sql = format!(
                "SELECT d.id, doc_a, member_a, doc_b, member_b, score, reasons_json, status, area,
                     x.action, x.decided_by, x.decided_at
                 FROM duplicate d LEFT JOIN duplicate_decision x ON x.id =
                     (SELECT max(id) FROM duplicate_decision WHERE duplicate_id = d.id)
                 WHERE ?1 IS NULL OR {} ORDER BY status = 'open' DESC, score DESC, d.id",
                area_clause("area", 1)
            );
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map([area], |r| {
                let reasons: String = r.get(6)?;
                Ok(DuplicateItem {
                    id: r.get(0)?,
                    doc_a: r.get(1)?,
                    member_a: r.get(2)?,
                    doc_b: r.get(3)?,
                    member_b: r.get(4)?,
                    score: r.get(5)?,
                    explanation: serde_json::from_str(&reasons).ok(),
                    status: r.get(7)?,
                    area: r.get(8)?,
                    decided: match (r.get(9)?, r.get(10)?, r.get(11)?) {
                        (Some(a), Some(b), Some(t)) => Some((a, b, t)),
                        _ => None,
                    },
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn audit(&self, doc_id: Option<String>) -> Result<Vec<AuditEntry>, ApiError> {
        self.run(move |c| {
            let mut stmt = c.prepare(
                "SELECT at, device_id, user, doc_id, heads, action FROM audit WHERE ?1 IS NULL OR doc_id = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([doc_id], |r| {
                let heads: String = r.get(4)?;
                Ok(AuditEntry {
                    at: r.get(0)?,
                    device_id: r.get(1)?,
                    user: r.get(2)?,
                    doc_id: r.get(3)?,
                    heads: heads.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
                    action: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn log_event(&self, at: i64, user: String, action: String) -> Result<(), ApiError> {
        self.run(move |c| {
            c.execute(
                "INSERT INTO audit (at, device_id, user, doc_id, heads, action) VALUES (?1, 'console', ?2, '', '', ?3)",
                params![at, user, action],
            )?;
            Ok(())
        })
        .await
    }

    async fn events(&self, limit: i64) -> Result<Vec<AuditEntry>, ApiError> {
        self.run(move |c| {
            let mut stmt = c.prepare(
                "SELECT at, device_id, user, doc_id, heads, action FROM audit WHERE doc_id = '' ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit], |r| {
                Ok(AuditEntry {
                    at: r.get(0)?,
                    device_id: r.get(1)?,
                    user: r.get(2)?,
                    doc_id: r.get(3)?,
                    heads: Vec::new(),
                    action: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn people(&self, area: String, limit: i64) -> Result<Vec<(String, String, String)>, ApiError> {
        let keys = self.keys.clone();
        self.run(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT doc_id, member_id, area, key_json FROM person WHERE (?1 = '' OR {})
                 ORDER BY doc_id, member_id LIMIT ?2",
                area_clause("area", 1)
            ))?;
            let rows = stmt.query_map(params![area, limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            keys.open_people(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn put_operator(&self, op: Operator) -> Result<(), ApiError> {
        self.run(move |c| {
            c.execute(
                "INSERT INTO operator (username, password_hash, role, created_at, area) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, role = excluded.role,
                     area = excluded.area",
                params![op.username, op.password_hash, op.role.as_str(), op.created_at, op.area],
            )?;
            // A changed password or role ends the account's sessions.
            c.execute("DELETE FROM session WHERE username = ?1", [&op.username])?;
            Ok(())
        })
        .await
    }

    async fn operator(&self, username: String) -> Result<Option<Operator>, ApiError> {
        self.run(move |c| {
            Ok(c.query_row(
                "SELECT username, password_hash, role, created_at, area FROM operator WHERE username = ?1",
                [username],
                operator_row,
            )
            .optional()?)
        })
        .await
    }

    async fn operators(&self) -> Result<Vec<Operator>, ApiError> {
        self.run(|c| {
            let mut stmt =
                c.prepare("SELECT username, password_hash, role, created_at, area FROM operator ORDER BY username")?;
            Ok(stmt.query_map([], operator_row)?.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn create_session(&self, s: Session, now: i64) -> Result<(), ApiError> {
        self.run(move |c| {
            c.execute("DELETE FROM session WHERE expires_at <= ?1", [now])?;
            c.execute(
                "INSERT INTO session (token_hash, username, role, csrf, expires_at, area) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![s.token_hash, s.username, s.role.as_str(), s.csrf, s.expires_at, s.area],
            )?;
            Ok(())
        })
        .await
    }

    async fn session(&self, token_hash: String, now: i64) -> Result<Option<Session>, ApiError> {
        self.run(move |c| {
            let row: Option<(String, String, String, String, i64, String)> = c
                .query_row(
                    "SELECT token_hash, username, role, csrf, expires_at, area FROM session
                     WHERE token_hash = ?1 AND expires_at > ?2",
                    params![token_hash, now],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
                )
                .optional()?;
            Ok(row.and_then(|(token_hash, username, role, csrf, expires_at, area)| {
                Some(Session { token_hash, username, role: Role::parse(&role)?, area, csrf, expires_at })
            }))
        })
        .await
    }

    async fn delete_session(&self, token_hash: String) -> Result<(), ApiError> {
        self.run(move |c| {
            c.execute("DELETE FROM session WHERE token_hash = ?1", [token_hash])?;
            Ok(())
        })
        .await
    }

    async fn setting_or_insert(&self, key: String, default: String) -> Result<String, ApiError> {
        let keys = self.keys.clone();
        self.run(move |c| {
            let sealed = keys.seal_text("setting", &key, "", &default)?;
            c.execute(
                "INSERT INTO setting (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
                [&key, &sealed],
            )?;
            let stored: String = c.query_row("SELECT value FROM setting WHERE key = ?1", [&key], |r| r.get(0))?;
            keys.open_text("setting", &key, "", &stored)
        })
        .await
    }

    async fn household(&self, doc_id: String) -> Result<Option<(Vec<u8>, Vec<String>)>, ApiError> {
        let keys = self.keys.clone();
        self.run(move |c| {
            let row: Option<(Vec<u8>, String)> = c
                .query_row("SELECT snapshot, heads FROM doc WHERE doc_id = ?1", [&doc_id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            let Some((sealed, heads)) = row else { return Ok(None) };
            let heads = heads.split(',').filter(|x| !x.is_empty()).map(str::to_owned).collect();
            Ok(Some((keys.open("doc", &doc_id, "", &sealed)?, heads)))
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
        self.write(move |tx| logic::decide_duplicate(tx, id, action, &operator, now)).await
    }

    async fn rescore_duplicates(&self, reindex: bool) -> Result<RescoreReport, ApiError> {
        self.write(move |tx| logic::rescore(tx, doorstep_core::identity::LinkageModel::shipped(), reindex)).await
    }

    async fn links(&self) -> Result<Vec<ResidentLink>, ApiError> {
        self.run(|c| {
            let mut stmt = c.prepare(
                "SELECT duplicate_id, doc_a, member_a, doc_b, member_b, linked_by, linked_at FROM resident_link
                 WHERE undone_at IS NULL ORDER BY linked_at, duplicate_id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(ResidentLink {
                    duplicate_id: r.get(0)?,
                    a: (r.get(1)?, r.get(2)?),
                    b: (r.get(3)?, r.get(4)?),
                    linked_by: r.get(5)?,
                    linked_at: r.get(6)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn area_counts(&self, q: ProgressQuery) -> Result<Vec<AreaCounts>, ApiError> {
        let keys = self.keys.clone();
        self.run(move |c| {
            let mut out: std::collections::BTreeMap<String, AreaCounts> = Default::default();
            // An empty area means every area.
            let within = format!("(?1 = '' OR {})", area_clause("area", 1));
            let mut stmt = c.prepare(&format!(
                "SELECT area, count(*), sum(members), sum(complete), sum(cccd_present), sum(cccd_valid),
                     sum(first_seen_at > ?2), sum(first_seen_at > ?3), sum(first_seen_at > ?4)
                 FROM household_stats WHERE {within} GROUP BY area"
            ))?;
            let mut rows = stmt.query(params![q.area, q.since_day, q.since_week, q.since_month])?;
            while let Some(r) = rows.next()? {
                let area: String = r.get(0)?;
                out.insert(
                    area.clone(),
                    AreaCounts {
                        area,
                        households: r.get(1)?,
                        residents: r.get(2)?,
                        complete: r.get(3)?,
                        cccd_present: r.get(4)?,
                        cccd_valid: r.get(5)?,
                        new_day: r.get(6)?,
                        new_week: r.get(7)?,
                        new_month: r.get(8)?,
                        ..AreaCounts::default()
                    },
                );
            }
            for (sql, field) in side_count_queries(&within) {
                let mut stmt = c.prepare(&sql)?;
                let rows = stmt.query_map([&q.area], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
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
        self.write(move |tx| logic::put_blob(tx, &device, &put, quota, now)).await
    }

    async fn get_blob(&self, device: Device, get: BlobGet) -> Result<BlobChunk, ApiError> {
        self.write(move |tx| logic::get_blob(tx, &device, &get)).await
    }

    async fn blob(&self, id: String) -> Result<Option<Vec<u8>>, ApiError> {
        self.run(move |c| {
            let mut tx = SqliteTx(c.transaction()?);
            let Some(state) = tx.blob_state(&id)?.filter(|s| s.received == s.total) else { return Ok(None) };
            Ok(Some(tx.read_blob(&id, 0, state.total)?))
        })
        .await
    }

    async fn fingerprint(&self) -> Result<String, ApiError> {
        self.run(|c| {
            let mut h = blake3::Hasher::new();
            for (table, cols) in [
                ("enrolment", "token_hash, area, used_at, device_id"),
                ("device", "device_id, area, revoked_at"),
                ("doc", "doc_id, area, heads"),
                ("feed", "seq, doc_id, origin, hex(changes)"),
                ("conflict", "id, doc_id, path, status"),
                ("duplicate", "id, doc_a, member_a, doc_b, member_b, status"),
                ("audit", "id, device_id, doc_id, heads"),
                ("duplicate_decision", "id, duplicate_id, action"),
                ("resident_link", "duplicate_id, doc_a, member_a, doc_b, member_b, undone_at"),
                ("blob", "id, device_id, total, received"),
                ("blob_chunk", "id, start_at, hex(data)"),
                ("device_key", "device_id, transfer_key"),
            ] {
                let mut stmt = c.prepare(&format!("SELECT {cols} FROM {table} ORDER BY 1"))?;
                let n = stmt.column_count();
                let mut rows = stmt.query([])?;
                while let Some(row) = rows.next()? {
                    for i in 0..n {
                        let v: rusqlite::types::Value = row.get(i)?;
                        h.update(format!("{v:?}|").as_bytes());
                    }
                }
            }
            Ok(h.finalize().to_hex().to_string())
        })
        .await
    }
}

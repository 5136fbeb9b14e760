//! The embedded SQLite backend (`--db ./data.db`).
//!
//! One connection behind a mutex, used from blocking tasks: SQLite has one
//! writer anyway, and every sync is one transaction.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::http::StatusCode;
use doorstep_core::identity::{DuplicateScore, score_pair};
use doorstep_core::record::HouseholdDoc;
use doorstep_core::sync::protocol::{
    DocAck, DocPull, ErrorCode, MAX_PUSH_DOCS, PROTOCOL_VERSION, PULL_PAGE_BYTES, SyncRequest, SyncResponse,
};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::error::ApiError;
use crate::merge::{merge_push, people, server_editor};
use crate::storage::{AuditEntry, ConflictItem, Device, DuplicateItem, Storage};

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
    cccd TEXT, dob TEXT, PRIMARY KEY (doc_id, member_id));
CREATE INDEX IF NOT EXISTS person_by_cccd ON person (cccd);
CREATE INDEX IF NOT EXISTS person_by_dob ON person (dob);
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
";

/// SQLite storage.
#[derive(Clone)]
pub struct SqliteStorage {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStorage {
    /// Opens (or creates) the database file.
    pub fn open(path: &Path) -> Result<SqliteStorage, ApiError> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
             PRAGMA temp_store = MEMORY;",
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteStorage { conn: Arc::new(Mutex::new(conn)) })
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

/// Records conflicts (replacing this document's open ones) and duplicate candidates.
fn queue_reviews(tx: &Transaction<'_>, merged: &crate::merge::Merged, area: &str, now: i64) -> Result<(), ApiError> {
    let doc_id = merged.household.household_id.as_str();
    // Open conflicts that no longer hold were settled by a later edit.
    let paths: Vec<&str> = merged.conflicts.iter().map(|c| c.path.as_str()).collect();
    let open: Vec<(i64, String)> = {
        let mut stmt = tx.prepare_cached("SELECT id, path FROM conflict WHERE doc_id = ?1 AND status = 'open'")?;
        stmt.query_map([doc_id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?
    };
    for (id, path) in &open {
        if !paths.contains(&path.as_str()) {
            tx.execute(
                "UPDATE conflict SET status = 'resolved', resolved_at = ?2, resolved_by = 'edit' WHERE id = ?1",
                params![id, now],
            )?;
        }
    }
    for c in &merged.conflicts {
        tx.execute(
            "INSERT INTO conflict (doc_id, area, path, values_json, status, created_at) VALUES (?1, ?2, ?3, ?4, 'open', ?5)
             ON CONFLICT (doc_id, path) WHERE status = 'open' DO UPDATE SET values_json = excluded.values_json",
            params![doc_id, area, c.path, serde_json::to_string(&c.values).unwrap_or_default(), now],
        )?;
    }
    tx.execute("DELETE FROM person WHERE doc_id = ?1", [doc_id])?;
    for (member_id, key) in people(&merged.household) {
        let dob = key.dob.map(|d| d.format("%Y-%m-%d").to_string());
        let mut candidates: Vec<(String, String, String)> = Vec::new();
        {
            let mut stmt = tx.prepare_cached(
                "SELECT doc_id, member_id, key_json FROM person
                 WHERE doc_id != ?1 AND ((?2 IS NOT NULL AND cccd = ?2) OR (?3 IS NOT NULL AND dob = ?3)) LIMIT 200",
            )?;
            let rows = stmt.query_map(params![doc_id, key.cccd, dob], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            for row in rows {
                candidates.push(row?);
            }
        }
        for (other_doc, other_member, json) in candidates {
            let Ok(other) = serde_json::from_str(&json) else { continue };
            let score = score_pair(&key, &other);
            if score.score < DuplicateScore::REVIEW {
                continue;
            }
            let ((da, ma), (db, mb)) = if (doc_id, member_id.as_str()) < (other_doc.as_str(), other_member.as_str()) {
                ((doc_id, member_id.as_str()), (other_doc.as_str(), other_member.as_str()))
            } else {
                ((other_doc.as_str(), other_member.as_str()), (doc_id, member_id.as_str()))
            };
            tx.execute(
                "INSERT INTO duplicate (doc_a, member_a, doc_b, member_b, area, score, reasons_json, status, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'open', ?8)
                 ON CONFLICT (doc_a, member_a, doc_b, member_b) DO UPDATE SET score = excluded.score,
                     reasons_json = excluded.reasons_json",
                params![da, ma, db, mb, area, score.score, serde_json::to_string(&score.reasons).unwrap_or_default(), now],
            )?;
        }
        tx.execute(
            "INSERT INTO person (doc_id, member_id, area, key_json, cccd, dob) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![doc_id, member_id, area, serde_json::to_string(&key).unwrap_or_default(), key.cccd, dob],
        )?;
    }
    Ok(())
}

/// Stores a merged document and appends its new changes to the feed.
fn store_merged(
    tx: &Transaction<'_>,
    merged: &mut crate::merge::Merged,
    origin: &str,
    user: &str,
    action: &str,
    now: i64,
) -> Result<(), ApiError> {
    let area = merged.household.area_code.clone();
    let doc_id = merged.household.household_id.clone();
    let snapshot = merged.doc.save();
    tx.execute(
        "INSERT INTO doc (doc_id, area, snapshot, heads, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (doc_id) DO UPDATE SET area = excluded.area, snapshot = excluded.snapshot,
             heads = excluded.heads, updated_at = excluded.updated_at",
        params![doc_id, area, snapshot, merged.heads.join(","), now],
    )?;
    tx.execute(
        "INSERT INTO feed (area, doc_id, origin, changes, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![area, doc_id, origin, merged.new_changes, now],
    )?;
    tx.execute(
        "INSERT INTO audit (at, device_id, user, doc_id, heads, action) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![now, origin, user, doc_id, merged.heads.join(","), action],
    )?;
    queue_reviews(tx, merged, &area, now)
}

fn sync_tx(conn: &mut Connection, device: &Device, req: &SyncRequest, now: i64) -> Result<SyncResponse, ApiError> {
    if req.push.len() > MAX_PUSH_DOCS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            "too many documents in one request",
        ));
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut acked = Vec::with_capacity(req.push.len());
    for push in &req.push {
        let existing: Option<(Vec<u8>, String)> = tx
            .query_row("SELECT snapshot, area FROM doc WHERE doc_id = ?1", [&push.doc_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        if let Some((_, area)) = &existing
            && !doorstep_core::sync::protocol::area_within(area, &device.area)
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::ForbiddenArea,
                format!("{} belongs to another area", push.doc_id),
            ));
        }
        let mut merged = merge_push(existing.as_ref().map(|(s, _)| s.as_slice()), push, &device.area)?;
        if merged.changed {
            store_merged(&tx, &mut merged, &device.device_id, &req.user, "sync", now)?;
        }
        acked.push(DocAck::new(push.doc_id.clone(), &merged.doc.heads()));
    }
    // Pull: the area's feed after the cursor, without this device's own changes, one bounded page.
    let mut pulls: BTreeMap<String, DocPull> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut bytes = 0usize;
    let mut next_cursor = req.cursor;
    let mut more = false;
    {
        let sql = format!(
            "SELECT seq, area, doc_id, origin, changes FROM feed WHERE seq > ?1 AND {} ORDER BY seq LIMIT 5000",
            area_clause("area", 2)
        );
        let mut stmt = tx.prepare_cached(&sql)?;
        let mut rows = stmt.query(params![req.cursor as i64, device.area])?;
        let mut scanned = 0;
        while let Some(row) = rows.next()? {
            scanned += 1;
            let seq: i64 = row.get(0)?;
            let origin: String = row.get(3)?;
            if origin != device.device_id {
                let changes: Vec<u8> = row.get(4)?;
                if bytes > 0 && bytes + changes.len() > PULL_PAGE_BYTES {
                    more = true;
                    break;
                }
                bytes += changes.len();
                let doc_id: String = row.get(2)?;
                let area: String = row.get(1)?;
                let entry = pulls.entry(doc_id.clone()).or_insert_with(|| {
                    order.push(doc_id.clone());
                    DocPull { doc_id, area: area.clone(), changes: Vec::new() }
                });
                entry.area = area;
                entry.changes.extend_from_slice(&changes);
            }
            next_cursor = seq as u64;
        }
        if scanned == 5000 {
            more = true;
        }
    }
    tx.execute("UPDATE device SET last_sync_at = ?2 WHERE device_id = ?1", params![device.device_id, now])?;
    tx.commit()?;
    let pull = order.into_iter().filter_map(|id| pulls.remove(&id)).collect();
    Ok(SyncResponse { protocol: PROTOCOL_VERSION, acked, pull, next_cursor, more })
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
        self.run(move |c| sync_tx(c, &device, &request, now)).await
    }

    async fn conflicts(&self, area: Option<String>) -> Result<Vec<ConflictItem>, ApiError> {
        self.run(move |c| {
            let sql = format!(
                "SELECT id, doc_id, area, path, values_json, status FROM conflict WHERE ?1 IS NULL OR {}
                 ORDER BY status = 'open' DESC, id",
                area_clause("area", 1)
            );
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map([area], |r| {
                let values: String = r.get(4)?;
                Ok(ConflictItem {
                    id: r.get(0)?,
                    doc_id: r.get(1)?,
                    area: r.get(2)?,
                    path: r.get(3)?,
                    values: serde_json::from_str(&values).unwrap_or_default(),
                    status: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn resolve_conflict(
        &self,
        id: i64,
        value: Option<String>,
        operator: String,
        now: i64,
    ) -> Result<(), ApiError> {
        self.run(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let row: Option<(String, String)> = tx
                .query_row("SELECT doc_id, path FROM conflict WHERE id = ?1 AND status = 'open'", [id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            let Some((doc_id, path)) = row else {
                return Err(ApiError::new(StatusCode::NOT_FOUND, ErrorCode::Malformed, "no such open conflict"));
            };
            let snapshot: Vec<u8> =
                tx.query_row("SELECT snapshot FROM doc WHERE doc_id = ?1", [&doc_id], |r| r.get(0))?;
            let editor = server_editor(&operator);
            let mut doc = HouseholdDoc::load(&doc_id, &snapshot, &editor).map_err(ApiError::internal)?;
            let before = doc.heads();
            doc.resolve(&path, value.as_deref(), &editor).map_err(|e| ApiError::malformed(e.to_string()))?;
            let heads = doc.heads();
            let new_changes = doc.save_after(&before);
            let household = doc.read();
            let conflicts = doc.conflicts().map_err(ApiError::internal)?;
            let mut merged = crate::merge::Merged {
                doc,
                changed: true,
                new_changes,
                heads: heads.iter().map(ToString::to_string).collect(),
                household,
                conflicts,
            };
            store_merged(&tx, &mut merged, "server", &operator, "resolve", now)?;
            tx.execute(
                "UPDATE conflict SET status = 'resolved', resolved_at = ?2, resolved_by = ?3 WHERE id = ?1",
                params![id, now, operator],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn duplicates(&self, area: Option<String>) -> Result<Vec<DuplicateItem>, ApiError> {
        self.run(move |c| {
            let sql = format!(
                "SELECT id, doc_a, member_a, doc_b, member_b, score, reasons_json, status FROM duplicate
                 WHERE ?1 IS NULL OR {} ORDER BY status = 'open' DESC, score DESC, id",
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
                    reasons: serde_json::from_str(&reasons).unwrap_or_default(),
                    status: r.get(7)?,
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

//! One transaction on the store, and every query the server runs — each written
//! once for both backends. What names a resident is sealed here on the way in and
//! opened on the way out, so the database only ever holds sealed bytes and index tokens.

use doorstep_core::sync::protocol::DirectoryEntry;
use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Row, Transaction};

use super::base_filter::BaseFilter;
use super::dialect::{Dialect, province_lock_key, province_of, within, within_or_all};
use super::model::{
    AreaCounts, AuditEntry, BlobState, ConflictItem, Device, DocBody, DocRow, DuplicateItem, DuplicateRow, EventCounts,
    ExportToken, FeedRow, HouseholdStats, Operator, PersonIndex, PersonRow, ProgressQuery, ResidentLink, ReviewItem,
    Role, Session, Turning14, add_counts,
};
use super::{ErrorKind, StorageError};
use crate::at_rest::{AtRest, count_by_area};
use doorstep_core::sync::protocol::ErrorCode;

/// An open transaction. Dropped without [`Tx::commit`], it rolls back.
pub struct Tx<'a> {
    tx: Transaction<'static, Any>,
    keys: &'a AtRest,
    dialect: Dialect,
    /// The store's filter of the token index's base level (SQLite).
    base_filter: Option<&'a BaseFilter>,
    /// Provinces whose write lock this transaction holds.
    locked: std::collections::BTreeSet<String>,
    _writer: Option<tokio::sync::MutexGuard<'a, ()>>,
}

type Result<T> = std::result::Result<T, StorageError>;

mod progress;
mod token_levels;
mod transfers;

pub use progress::StatsRow;
pub use token_levels::TokenLevel;

/// A person's entry as its columns store it ([`Tx::person_columns`]).
struct PersonColumns {
    key_json: String,
    cccd: Option<String>,
    cccd_digits: Option<String>,
    dob: Option<String>,
    birth_year: Option<String>,
}

fn person_row(r: &AnyRow) -> Result<PersonRow> {
    Ok(PersonRow { doc_id: r.try_get(0)?, member_id: r.try_get(1)?, area: r.try_get(2)?, key_json: r.try_get(3)? })
}

/// Rows of `(household, member, area, sealed key)`, as the residents' queries select them.
fn sealed_people(rows: &[AnyRow]) -> Result<Vec<(String, String, String, String)>> {
    rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?))).collect()
}

fn device_row(r: &AnyRow) -> Result<Device> {
    Ok(Device {
        device_id: r.try_get(0)?,
        area: r.try_get(1)?,
        enrolled_at: r.try_get(2)?,
        last_sync_at: r.try_get(3)?,
        revoked_at: r.try_get(4)?,
    })
}

fn operator_row(r: &AnyRow) -> Result<Operator> {
    let role: String = r.try_get(2)?;
    Ok(Operator {
        username: r.try_get(0)?,
        password_hash: r.try_get(1)?,
        role: Role::parse(&role).unwrap_or(Role::Operator),
        created_at: r.try_get(3)?,
        area: r.try_get(4)?,
    })
}

fn duplicate_row(r: &AnyRow) -> Result<DuplicateRow> {
    Ok(DuplicateRow {
        id: r.try_get(0)?,
        status: r.try_get(1)?,
        a: (r.try_get(2)?, r.try_get(3)?),
        b: (r.try_get(4)?, r.try_get(5)?),
    })
}

/// Seals a saved document for the `doc` table, zstd-compressed first: saves are kept
/// without Automerge's own column compression (so that a page of them compresses well on
/// the wire), and zstd keeps them small at rest.
fn seal_doc_with(keys: &AtRest, doc_id: &str, saved: &[u8]) -> Result<Vec<u8>> {
    keys.seal("doc", doc_id, "", &zstd_at_rest(saved)?)
}

/// Compresses what the store keeps at [`DOC_ZSTD_LEVEL`], with a compression context kept
/// per thread (making one costs more than compressing a household).
fn zstd_at_rest(plain: &[u8]) -> Result<Vec<u8>> {
    thread_local! {
        static CONTEXT: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    CONTEXT
        .with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = Some(zstd::bulk::Compressor::new(DOC_ZSTD_LEVEL)?);
            }
            match slot.as_mut() {
                Some(c) => c.compress(plain),
                None => Err(std::io::Error::other("no zstd context")),
            }
        })
        .map_err(|e| StorageError::internal(e.to_string()))
}

/// A `doc` row as read, still sealed: position, time, id, view, saved document.
type SealedDocRow = (i64, i64, String, Option<Vec<u8>>, Option<Vec<u8>>);

/// Opens a sealed `doc` row (see [`Tx::open_doc`]).
fn open_doc_with(keys: &AtRest, doc_id: &str, sealed: &[u8]) -> Result<Vec<u8>> {
    let plain = keys.open("doc", doc_id, "", sealed)?;
    if plain.starts_with(&ZSTD_MAGIC) {
        return unzstd(&plain)
            .map_err(|e| StorageError::internal(format!("document {doc_id} does not decompress: {e}")));
    }
    Ok(plain)
}

/// Decompresses a zstd frame the store wrote (which names its size), at most
/// [`MAX_SAVED_DOC_BYTES`], with a decompression context kept per thread.
fn unzstd(frame: &[u8]) -> std::io::Result<Vec<u8>> {
    thread_local! {
        static CONTEXT: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    let size = zstd::zstd_safe::get_frame_content_size(frame).ok().flatten().unwrap_or(MAX_SAVED_DOC_BYTES as u64);
    if size > MAX_SAVED_DOC_BYTES as u64 {
        return Err(std::io::Error::other("a frame larger than a saved document may be"));
    }
    CONTEXT.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        match slot.as_mut() {
            Some(d) => d.decompress(frame, size as usize),
            None => Err(std::io::Error::other("no zstd context")),
        }
    })
}

/// Opens a sealed JSON view of a document.
fn open_view_with(keys: &AtRest, doc_id: &str, sealed: &[u8]) -> Result<Vec<u8>> {
    let packed = keys.open("doc_view", doc_id, "", sealed)?;
    unzstd(&packed).map_err(|e| StorageError::internal(format!("the view of {doc_id} does not decompress: {e}")))
}

/// Seals a document's JSON view for the `doc` table's `view` column, zstd-compressed first.
fn seal_view_with(keys: &AtRest, doc_id: &str, view: &[u8]) -> Result<Vec<u8>> {
    keys.seal("doc_view", doc_id, "", &zstd_at_rest(view)?)
}

fn export_token_row(r: &AnyRow) -> Result<ExportToken> {
    Ok(ExportToken {
        id: r.try_get(0)?,
        area: r.try_get(1)?,
        label: r.try_get(2)?,
        created_by: r.try_get(3)?,
        created_at: r.try_get(4)?,
        revoked_at: r.try_get(5)?,
    })
}

fn split_heads(heads: &str) -> Vec<String> {
    heads.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// `$from, $from+1, …` for `n` parameters, in the dialect's form for a generated list
/// ([`Dialect::parameter`]): bound in this order, each once, and the list's parameters last.
fn placeholders(dialect: Dialect, from: usize, n: usize) -> String {
    (from..from + n).map(|i| dialect.parameter(i)).collect::<Vec<_>>().join(", ")
}

/// `($1, …, $cols), ($cols+1, …), …` for `rows` rows of `cols` parameters ([`placeholders`]).
fn value_rows(dialect: Dialect, rows: usize, cols: usize) -> String {
    (0..rows).map(|r| format!("({})", placeholders(dialect, r * cols + 1, cols))).collect::<Vec<_>>().join(", ")
}

/// Rows one multi-row statement carries at most, for `cols` parameters a row (well
/// under SQLite's 32,766 and PostgreSQL's 65,535 parameters).
fn rows_per_statement(cols: usize) -> usize {
    (8000 / cols).max(1)
}

/// A document write of a batch: id, area, saved bytes (in clear: sealed here), heads.
pub struct DocWrite {
    /// Household id.
    pub doc_id: String,
    /// Its area.
    pub area: String,
    /// The saved document.
    pub snapshot: Vec<u8>,
    /// Heads, comma-separated.
    pub heads: String,
    /// The changes new to the server, for the feed.
    pub changes: Vec<u8>,
    /// Its progress figures.
    pub stats: HouseholdStats,
    /// The household as the document reads, JSON (for exports).
    pub view: Vec<u8>,
    /// Its residents' life events: (kind code, day `YYYY-MM-DD`).
    pub events: Vec<(String, String)>,
    /// The area it left, when this write moves it: the old area's feed gets a departure,
    /// and `changes` must then hold the whole saved document (the new area's devices may
    /// hold nothing of it).
    pub moved_from: Option<String>,
    /// The snapshot and the view already compressed and sealed ([`DocWrite::seal_ahead`]),
    /// or `None`: they are sealed as they are written.
    pub sealed: Option<SealedDoc>,
}

/// A document's snapshot and view as the store keeps them: compressed and sealed.
#[derive(Debug, Clone)]
pub struct SealedDoc {
    snapshot: Vec<u8>,
    view: Vec<u8>,
}

impl DocWrite {
    /// Compresses and seals the snapshot and the view before the write transaction (an
    /// import does it while the batch before is written: the one writer then only writes).
    pub fn seal_ahead(&mut self, keys: &AtRest) -> Result<()> {
        self.sealed = Some(SealedDoc {
            snapshot: seal_doc_with(keys, &self.doc_id, &self.snapshot)?,
            view: seal_view_with(keys, &self.doc_id, &self.view)?,
        });
        Ok(())
    }
}

/// The first bytes of a zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// zstd level for saved documents at rest.
const DOC_ZSTD_LEVEL: i32 = 3;
/// Largest saved document the store opens (a pushed document's changes are capped at 1 MiB
/// a request; this leaves room for a long history).
const MAX_SAVED_DOC_BYTES: usize = 64 * 1024 * 1024;

impl<'a> Tx<'a> {
    pub(super) fn new(
        tx: Transaction<'static, Any>,
        keys: &'a AtRest,
        dialect: Dialect,
        base_filter: Option<&'a BaseFilter>,
        writer: Option<tokio::sync::MutexGuard<'a, ()>>,
    ) -> Tx<'a> {
        Tx { tx, keys, dialect, base_filter, locked: Default::default(), _writer: writer }
    }

    /// Commits.
    pub async fn commit(self) -> Result<()> {
        Ok(self.tx.commit().await?)
    }

    /// Takes the write lock of each area's province, in a fixed order, until the
    /// transaction ends. A transaction that writes to the feed takes, before it reads
    /// the documents it will write, the locks of every province it writes: then the
    /// feed positions of one province are committed in the order they were handed out,
    /// and a device that has read position N has read every earlier one of its province
    /// (docs/adr/0005).
    pub async fn lock_areas(&mut self, areas: &[&str]) -> Result<()> {
        let mut provinces: Vec<&str> = areas.iter().map(|a| province_of(a)).collect();
        provinces.sort_unstable();
        provinces.dedup();
        for province in provinces {
            if self.locked.contains(province) {
                continue;
            }
            if let Some(sql) = self.dialect.province_lock() {
                sqlx::query(sql).bind(province_lock_key(province)).execute(&mut *self.tx).await?;
            }
            self.locked.insert(province.to_string());
        }
        Ok(())
    }

    /// The area of a stored document.
    pub async fn doc_area(&mut self, doc_id: &str) -> Result<Option<String>> {
        let row =
            sqlx::query("SELECT area FROM doc WHERE doc_id = $1").bind(doc_id).fetch_optional(&mut *self.tx).await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Opens a sealed `doc` row: a zstd frame or, as older versions wrote them, the saved
    /// bytes themselves (an Automerge chunk begins with other magic bytes).
    fn open_doc(&self, doc_id: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        open_doc_with(self.keys, doc_id, sealed)
    }

    fn open_person_row(&self, mut row: PersonRow) -> Result<PersonRow> {
        row.key_json = self.keys.open_text("person", &row.doc_id, &row.member_id, &row.key_json)?;
        Ok(row)
    }

    // ---- documents and the feed ----

    /// The server's copy of a document: saved bytes and area.
    pub async fn doc(&mut self, doc_id: &str) -> Result<Option<(Vec<u8>, String)>> {
        let row = sqlx::query("SELECT snapshot, area FROM doc WHERE doc_id = $1")
            .bind(doc_id)
            .fetch_optional(&mut *self.tx)
            .await?;
        match row {
            Some(r) => {
                let sealed: Vec<u8> = r.try_get(0)?;
                Ok(Some((self.open_doc(doc_id, &sealed)?, r.try_get(1)?)))
            }
            None => Ok(None),
        }
    }

    /// The server's copy of a household, with its heads.
    pub async fn household(&mut self, doc_id: &str) -> Result<Option<(Vec<u8>, Vec<String>)>> {
        let row = sqlx::query("SELECT snapshot, heads FROM doc WHERE doc_id = $1")
            .bind(doc_id)
            .fetch_optional(&mut *self.tx)
            .await?;
        let Some(r) = row else { return Ok(None) };
        let sealed: Vec<u8> = r.try_get(0)?;
        let heads: String = r.try_get(1)?;
        Ok(Some((self.open_doc(doc_id, &sealed)?, split_heads(&heads))))
    }

    /// The rows `select` (a fixed query of the code ending in `doc_id IN`) returns for
    /// `doc_ids`, a statement for each chunk of them.
    async fn rows_of_docs(&mut self, select: &str, doc_ids: &[&str]) -> Result<Vec<AnyRow>> {
        let mut out = Vec::new();
        for chunk in doc_ids.chunks(rows_per_statement(1)) {
            let sql = format!("{select} ({})", placeholders(self.dialect, 1, chunk.len()));
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(*id);
            }
            out.extend(query.fetch_all(&mut *self.tx).await?);
        }
        Ok(out)
    }

    /// The server's copies of several documents, opened: id → (saved bytes, area).
    pub async fn docs(&mut self, doc_ids: &[&str]) -> Result<std::collections::HashMap<String, (Vec<u8>, String)>> {
        let mut out = std::collections::HashMap::new();
        for r in self.rows_of_docs("SELECT doc_id, snapshot, area FROM doc WHERE doc_id IN", doc_ids).await? {
            let doc_id: String = r.try_get(0)?;
            let sealed: Vec<u8> = r.try_get(1)?;
            let plain = self.open_doc(&doc_id, &sealed)?;
            out.insert(doc_id, (plain, r.try_get(2)?));
        }
        Ok(out)
    }

    /// Heads and area of each of these documents the store holds, by id (no document is opened).
    pub async fn doc_heads(&mut self, doc_ids: &[&str]) -> Result<std::collections::HashMap<String, (String, String)>> {
        self.two_columns_by_doc("doc", "heads, area", doc_ids).await
    }

    /// Two text columns (`columns`, a fixed list in the code) of each row of `table` whose
    /// `doc_id` is one of `doc_ids`, by id.
    async fn two_columns_by_doc(
        &mut self,
        table: &str,
        columns: &str,
        doc_ids: &[&str],
    ) -> Result<std::collections::HashMap<String, (String, String)>> {
        let mut out = std::collections::HashMap::new();
        let select = format!("SELECT doc_id, {columns} FROM {table} WHERE doc_id IN");
        for r in self.rows_of_docs(&select, doc_ids).await? {
            out.insert(r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?));
        }
        Ok(out)
    }

    /// Stores a batch of merged documents written by `origin` for `user`: each saved copy
    /// (sealed), its new changes on the feed (sealed; the transaction holds each area's
    /// province lock), an audit row and its progress figures — four statements for the batch.
    pub async fn store_docs(
        &mut self,
        docs: &[DocWrite],
        origin: &str,
        user: &str,
        action: &str,
        now: i64,
    ) -> Result<()> {
        let areas = docs.iter().flat_map(|d| std::iter::once(&d.area).chain(d.moved_from.as_ref()));
        if let Some(area) = areas.into_iter().find(|a| !self.locked.contains(province_of(a))) {
            return Err(StorageError::internal(format!("a feed row of {area} without its province's write lock")));
        }
        for d in docs {
            if let Some(from) = &d.moved_from {
                self.record_departure(&d.doc_id, from, &d.area, origin, now).await?;
            }
        }
        for chunk in docs.chunks(rows_per_statement(5)) {
            // The feed rows first: their positions become each document's `seq`.
            let sql = format!(
                "INSERT INTO feed (area, doc_id, origin, changes, created_at) VALUES {} RETURNING doc_id, seq",
                value_rows(self.dialect, chunk.len(), 5)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for d in chunk {
                let sealed = self.keys.seal("feed", &d.doc_id, origin, &d.changes)?;
                query =
                    query.bind(d.area.clone()).bind(d.doc_id.clone()).bind(origin.to_string()).bind(sealed).bind(now);
            }
            let mut positions = std::collections::HashMap::new();
            for row in query.fetch_all(&mut *self.tx).await? {
                let (doc_id, seq): (String, i64) = (row.try_get(0)?, row.try_get(1)?);
                let at = positions.entry(doc_id).or_insert(seq);
                *at = (*at).max(seq);
            }

            let sql = format!(
                "INSERT INTO doc (doc_id, area, snapshot, heads, updated_at, seq, view) VALUES {}
                 ON CONFLICT (doc_id) DO UPDATE SET area = excluded.area, snapshot = excluded.snapshot,
                     heads = excluded.heads, updated_at = excluded.updated_at, seq = excluded.seq,
                     view = excluded.view",
                value_rows(self.dialect, chunk.len(), 7)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            // Compressing and sealing a batch's documents runs on every core.
            let keys: &AtRest = self.keys;
            let sealed: Vec<(Vec<u8>, Vec<u8>)> = {
                use rayon::prelude::*;
                chunk
                    .par_iter()
                    .map(|d| match &d.sealed {
                        Some(s) => Ok((s.snapshot.clone(), s.view.clone())),
                        None => Ok((
                            seal_doc_with(keys, &d.doc_id, &d.snapshot)?,
                            seal_view_with(keys, &d.doc_id, &d.view)?,
                        )),
                    })
                    .collect::<Result<_>>()?
            };
            for (d, (sealed, view)) in chunk.iter().zip(sealed) {
                let seq = positions.get(&d.doc_id).copied().unwrap_or_default();
                query = query
                    .bind(d.doc_id.clone())
                    .bind(d.area.clone())
                    .bind(sealed)
                    .bind(d.heads.clone())
                    .bind(now)
                    .bind(seq)
                    .bind(view);
            }
            query.execute(&mut *self.tx).await?;

            let sql = format!(
                "INSERT INTO audit (at, device_id, username, doc_id, heads, action) VALUES {}",
                value_rows(self.dialect, chunk.len(), 6)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for d in chunk {
                query = query
                    .bind(now)
                    .bind(origin.to_string())
                    .bind(user.to_string())
                    .bind(d.doc_id.clone())
                    .bind(d.heads.clone())
                    .bind(action.to_string());
            }
            query.execute(&mut *self.tx).await?;

            let stats: Vec<StatsRow<'_>> =
                chunk.iter().map(|d| StatsRow { doc_id: &d.doc_id, area: &d.area, stats: &d.stats }).collect();
            self.put_stats_rows(&stats, now).await?;
            self.put_life_events(chunk).await?;
        }
        Ok(())
    }

    /// Rewrites the life events of a batch of documents, each day as its index token.
    async fn put_life_events(&mut self, docs: &[DocWrite]) -> Result<()> {
        let sql = format!("DELETE FROM life_event WHERE doc_id IN ({})", placeholders(self.dialect, 1, docs.len()));
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for d in docs {
            query = query.bind(d.doc_id.clone());
        }
        query.execute(&mut *self.tx).await?;
        let keys: &AtRest = self.keys;
        let rows: Vec<(&DocWrite, usize, &str, String)> = docs
            .iter()
            .flat_map(|d| {
                d.events.iter().enumerate().map(move |(n, (kind, day))| (d, n, kind.as_str(), keys.dob_tag(day)))
            })
            .collect();
        for chunk in rows.chunks(rows_per_statement(5)) {
            let sql = format!(
                "INSERT INTO life_event (doc_id, n, area, kind, day_tag) VALUES {}",
                value_rows(self.dialect, chunk.len(), 5)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (d, n, kind, tag) in chunk {
                query = query
                    .bind(d.doc_id.clone())
                    .bind(*n as i64)
                    .bind(d.area.clone())
                    .bind(kind.to_string())
                    .bind(tag.clone());
            }
            query.execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// Life events within the query's area that happened this month or this week (found by
    /// their days' index tokens), counted per area for today, this week and this month.
    async fn event_counts(&mut self, q: &ProgressQuery) -> Result<Vec<(String, EventCounts)>> {
        let today = doorstep_core::vn_time::date(q.since_day);
        let week = doorstep_core::vn_time::date(q.since_week);
        let month = doorstep_core::vn_time::date(q.since_month);
        // A calendar month and week at most (a query from the epoch reads no more).
        let first = week.min(month).max(today - chrono::Days::new(62));
        let days: std::collections::BTreeMap<String, chrono::NaiveDate> = first
            .iter_days()
            .take_while(|d| *d <= today)
            .map(|d| (self.keys.dob_tag(&d.format("%Y-%m-%d").to_string()), d))
            .collect();
        let mut out: std::collections::BTreeMap<String, EventCounts> = Default::default();
        let tags: Vec<&String> = days.keys().collect();
        // By day first (`life_event_by_day`); the area is tested on the few grouped rows.
        let sql = format!(
            "SELECT area, kind, day_tag, count(*) FROM life_event WHERE day_tag IN ({}) GROUP BY area, kind, day_tag",
            placeholders(self.dialect, 1, tags.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for t in &tags {
            query = query.bind((*t).clone());
        }
        for r in query.fetch_all(&mut *self.tx).await? {
            let (area, kind, tag, n): (String, String, String, i64) =
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
            if !q.area.is_empty() && !doorstep_core::sync::protocol::area_within(&area, &q.area) {
                continue;
            }
            let Some(day) = days.get(&tag) else { continue };
            let counts = out.entry(area).or_default();
            let Some(by_period) = counts.of_kind(&kind) else { continue };
            for (i, from) in [today, week, month].into_iter().enumerate() {
                if *day >= from {
                    by_period[i] += n;
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Departures from `area` (and its sub-areas) after feed position `since`, oldest first, at
    /// most `limit`: (position, household id, the area it went to, when).
    pub async fn departures_after(
        &mut self,
        area: &str,
        since: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, String, i64)>> {
        let sql = format!(
            "SELECT seq, doc_id, moved_to, created_at FROM feed WHERE moved_to IS NOT NULL AND {} AND seq > $2
             ORDER BY seq LIMIT $3",
            within("area", "$1")
        );
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(area).bind(since).bind(limit).fetch_all(&mut *self.tx).await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?))).collect()
    }

    /// The documents of `area` (and its sub-areas) whose latest change is after `since`, in
    /// the order of that change, at most `limit`, opened.
    pub async fn docs_changed_after(&mut self, area: &str, since: i64, limit: i64) -> Result<Vec<DocRow>> {
        // The JSON view when the row has one (every row written since it was added), else
        // the saved document. Read in `seq` order through `doc_by_seq`, the area tested on
        // each row (`area || ''` keeps the planner off `doc_by_area`, which would sort the
        // whole area for every page).
        let sql = format!(
            "SELECT seq, updated_at, doc_id, view, CASE WHEN view IS NULL THEN snapshot END FROM doc
             WHERE seq > $1 AND {} ORDER BY seq LIMIT $3",
            within("(area || '')", "$2")
        );
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(since).bind(area).bind(limit).fetch_all(&mut *self.tx).await?;
        // Read serially, opened (decrypted, decompressed) on every core.
        let read: Vec<SealedDocRow> = rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?)))
            .collect::<Result<_>>()?;
        let keys: &AtRest = self.keys;
        use rayon::prelude::*;
        read.into_par_iter()
            .map(|(seq, updated_at, doc_id, view, saved)| {
                let body = match (view, saved) {
                    (Some(sealed), _) => DocBody::View(open_view_with(keys, &doc_id, &sealed)?),
                    (None, Some(sealed)) => DocBody::Saved(open_doc_with(keys, &doc_id, &sealed)?),
                    (None, None) => return Err(StorageError::internal(format!("document {doc_id} has no body"))),
                };
                Ok(DocRow { seq, updated_at, doc_id, body })
            })
            .collect()
    }

    /// Households of `area` (every area when empty) in review status `status`, most recently
    /// changed first, at most `limit`.
    pub async fn households_in_review(&mut self, area: &str, status: &str, limit: i64) -> Result<Vec<ReviewItem>> {
        let sql = format!(
            "SELECT doc_id, area, members, verified_residents, updated_at FROM household_stats
             WHERE review = $2 AND {} ORDER BY updated_at DESC, doc_id LIMIT $3",
            within_or_all("area", "$1", area)
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(area.to_string())
            .bind(status.to_string())
            .bind(limit)
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ReviewItem {
                    doc_id: r.try_get(0)?,
                    area: r.try_get(1)?,
                    members: r.try_get(2)?,
                    verified_residents: r.try_get(3)?,
                    updated_at: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// A keyed hash of a registry row ([`AtRest::registry_row_tag`]).
    pub fn registry_row_tag(&self, row_json: &str) -> String {
        self.keys.registry_row_tag(row_json)
    }

    /// The heads each of these documents had when the registry's import last wrote it, and
    /// the tag of the row it imported.
    pub async fn import_bases(
        &mut self,
        doc_ids: &[&str],
    ) -> Result<std::collections::HashMap<String, (String, String)>> {
        self.two_columns_by_doc("import_base", "heads, row_tag", doc_ids).await
    }

    /// Records the heads the registry's import left documents at, and the tag of the row
    /// it imported: (doc_id, heads, row tag).
    pub async fn put_import_bases(&mut self, bases: &[(String, String, String)]) -> Result<()> {
        for chunk in bases.chunks(rows_per_statement(3)) {
            let sql = format!(
                "INSERT INTO import_base (doc_id, heads, row_tag) VALUES {}
                 ON CONFLICT (doc_id) DO UPDATE SET heads = excluded.heads, row_tag = excluded.row_tag",
                value_rows(self.dialect, chunk.len(), 3)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (doc_id, heads, tag) in chunk {
                query = query.bind(doc_id.clone()).bind(heads.clone()).bind(tag.clone());
            }
            query.execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// Stores a new export token (by the hash of its secret).
    pub async fn create_export_token(&mut self, token: &ExportToken, token_hash: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO export_token (id, token_hash, area, label, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token.id.clone())
        .bind(token_hash.to_string())
        .bind(token.area.clone())
        .bind(token.label.clone())
        .bind(token.created_by.clone())
        .bind(token.created_at)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// The export token whose secret hashes to `token_hash`, revoked or not.
    pub async fn export_token_by_hash(&mut self, token_hash: &str) -> Result<Option<ExportToken>> {
        let row = sqlx::query(
            "SELECT id, area, label, created_by, created_at, revoked_at FROM export_token WHERE token_hash = $1",
        )
        .bind(token_hash.to_string())
        .fetch_optional(&mut *self.tx)
        .await?;
        row.as_ref().map(export_token_row).transpose()
    }

    /// Every export token, newest first.
    pub async fn export_tokens(&mut self) -> Result<Vec<ExportToken>> {
        let rows = sqlx::query(
            "SELECT id, area, label, created_by, created_at, revoked_at FROM export_token ORDER BY created_at DESC, id",
        )
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(export_token_row).collect()
    }

    /// Revokes an export token. Returns whether a live one was revoked.
    pub async fn revoke_export_token(&mut self, id: &str, now: i64) -> Result<bool> {
        let done = sqlx::query("UPDATE export_token SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(id.to_string())
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// A household left `from` for `to`: a departure on `from`'s feed (no changes), and the
    /// rows that name its area (people, open conflicts, duplicate candidates, attachments)
    /// follow it. Its progress figures and photo references follow with its next write.
    async fn record_departure(&mut self, doc_id: &str, from: &str, to: &str, origin: &str, now: i64) -> Result<()> {
        let sealed = self.keys.seal("feed", doc_id, origin, &[])?;
        sqlx::query(
            "INSERT INTO feed (area, doc_id, origin, changes, created_at, moved_to) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(from.to_string())
        .bind(doc_id.to_string())
        .bind(origin.to_string())
        .bind(sealed)
        .bind(now)
        .bind(to.to_string())
        .execute(&mut *self.tx)
        .await?;
        for sql in [
            "UPDATE person SET area = $2 WHERE doc_id = $1",
            "UPDATE conflict SET area = $2 WHERE doc_id = $1",
            "UPDATE duplicate SET area = $2 WHERE doc_a = $1 OR doc_b = $1",
            "UPDATE blob SET area = $2 WHERE id IN (SELECT blob_id FROM photo_ref WHERE doc_id = $1)",
        ] {
            sqlx::query(sql).bind(doc_id.to_string()).bind(to.to_string()).execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// The latest departure of a household from an area within `scope` after feed position
    /// `after`: (its position, the area it went to).
    pub async fn departure_after(&mut self, doc_id: &str, scope: &str, after: i64) -> Result<Option<(i64, String)>> {
        let sql = format!(
            "SELECT seq, moved_to FROM feed WHERE doc_id = $1 AND moved_to IS NOT NULL AND seq > $2 AND {}
             ORDER BY seq DESC LIMIT 1",
            within("area", "$3")
        );
        let row =
            sqlx::query(AssertSqlSafe(sql)).bind(doc_id).bind(after).bind(scope).fetch_optional(&mut *self.tx).await?;
        Ok(row.map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?))).transpose()?)
    }

    /// Feed rows after `cursor` within `area` (and its sub-areas), oldest first, at most `limit`.
    pub async fn feed_after(&mut self, cursor: i64, area: &str, limit: i64) -> Result<Vec<FeedRow>> {
        // The area's own rows, and its sub-areas' rows, each found through `feed_by_area`
        // (`+seq` keeps the planner off a scan of every position after the cursor: a new
        // device's cursor is 0, and the feed holds every area's rows).
        let rows = sqlx::query(
            "SELECT seq, area, doc_id, origin, changes, moved_to FROM feed WHERE area = $2 AND seq > $1
             UNION ALL
             SELECT seq, area, doc_id, origin, changes, moved_to FROM feed
             WHERE area > $2 || '.' AND area < $2 || '/' AND +seq > $1 AND substr(area, 1, length($2) + 1) = $2 || '.'
             ORDER BY seq LIMIT $3",
        )
        .bind(cursor)
        .bind(area)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| {
                let (doc_id, origin): (String, String) = (r.try_get(2)?, r.try_get(3)?);
                let sealed: Vec<u8> = r.try_get(4)?;
                let changes = self.keys.open("feed", &doc_id, &origin, &sealed)?;
                Ok(FeedRow {
                    seq: r.try_get(0)?,
                    area: r.try_get(1)?,
                    doc_id,
                    origin,
                    changes,
                    moved_to: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// The last feed position within `area` (and its sub-areas); 0 for none. A province's
    /// positions commit in order (see [`Tx::lock_areas`]), so every row at or before it is
    /// committed and any row still to commit in the area comes after it.
    pub async fn feed_mark(&mut self, area: &str) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COALESCE(MAX(seq), 0) FROM feed WHERE area = $1
             UNION ALL
             SELECT COALESCE(MAX(seq), 0) FROM feed WHERE area > $1 || '.' AND area < $1 || '/'",
        )
        .bind(area)
        .fetch_all(&mut *self.tx)
        .await?;
        let mut mark = 0i64;
        for r in row {
            mark = mark.max(r.try_get(0)?);
        }
        Ok(mark)
    }

    /// The saved documents of `area` (and its sub-areas) after `after` in (area, doc_id)
    /// order, opened, at most `limit`: (area, doc_id, saved bytes).
    pub async fn docs_of_area_after(
        &mut self,
        area: &str,
        after: (&str, &str),
        limit: i64,
    ) -> Result<Vec<(String, String, Vec<u8>)>> {
        // `area >= $1 AND area < $1 || '/'` is the area and its sub-areas (digits sort after
        // '/', '.' before it), one range of `doc_by_area`.
        let rows = sqlx::query(
            "SELECT area, doc_id, snapshot FROM doc
             WHERE area >= $1 AND area < $1 || '/' AND (area > $2 OR (area = $2 AND doc_id > $3))
             ORDER BY area, doc_id LIMIT $4",
        )
        .bind(area)
        .bind(after.0)
        .bind(after.1)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| {
                let doc_id: String = r.try_get(1)?;
                let sealed: Vec<u8> = r.try_get(2)?;
                let plain = self.open_doc(&doc_id, &sealed)?;
                Ok((r.try_get(0)?, doc_id, plain))
            })
            .collect()
    }

    /// Documents with no progress figures yet (stored before figures were kept).
    pub async fn docs_without_stats(&mut self) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT doc_id FROM doc WHERE NOT EXISTS (SELECT 1 FROM household_stats s WHERE s.doc_id = doc.doc_id)",
        )
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows.iter().map(|r| r.try_get(0)).collect::<std::result::Result<_, _>>()?)
    }

    /// Writes a household's progress figures; keeps the time it was first seen.
    pub async fn put_stats(&mut self, doc_id: &str, area: &str, st: &HouseholdStats, now: i64) -> Result<()> {
        self.put_stats_rows(&[StatsRow { doc_id, area, stats: st }], now).await
    }

    // ---- audit ----

    /// Records an accepted change (or an operator's decision) in the audit log.
    pub async fn audit(
        &mut self,
        at: i64,
        device: &str,
        user: &str,
        doc_id: &str,
        heads: &str,
        action: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit (at, device_id, username, doc_id, heads, action) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(at)
        .bind(device)
        .bind(user)
        .bind(doc_id)
        .bind(heads)
        .bind(action)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// The audit log of a household, or all of it.
    pub async fn audit_log(&mut self, doc_id: Option<&str>) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT at, device_id, username, doc_id, heads, action FROM audit WHERE $1 IS NULL OR doc_id = $1 ORDER BY id",
        )
        .bind(doc_id)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| {
                let heads: String = r.try_get(4)?;
                Ok(AuditEntry {
                    at: r.try_get(0)?,
                    device_id: r.try_get(1)?,
                    user: r.try_get(2)?,
                    doc_id: r.try_get(3)?,
                    heads: split_heads(&heads),
                    action: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// The latest actions that concern no household, newest first.
    pub async fn events(&mut self, limit: i64) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT at, device_id, username, doc_id, action FROM audit WHERE doc_id = '' ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    at: r.try_get(0)?,
                    device_id: r.try_get(1)?,
                    user: r.try_get(2)?,
                    doc_id: r.try_get(3)?,
                    heads: Vec::new(),
                    action: r.try_get(4)?,
                })
            })
            .collect()
    }

    // ---- conflicts ----

    /// Open conflicts of several documents: (id, doc, path).
    pub async fn open_conflicts_of(&mut self, doc_ids: &[&str]) -> Result<Vec<(i64, String, String)>> {
        let select = "SELECT id, doc_id, path FROM conflict WHERE status = 'open' AND doc_id IN";
        let rows = self.rows_of_docs(select, doc_ids).await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))).collect()
    }

    /// Marks a conflict resolved.
    pub async fn resolve_conflict_row(&mut self, id: i64, by: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE conflict SET status = 'resolved', resolved_at = $2, resolved_by = $3 WHERE id = $1")
            .bind(id)
            .bind(now)
            .bind(by)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Inserts an open conflict, or updates the values of the open one at this path.
    pub async fn upsert_conflict(
        &mut self,
        doc_id: &str,
        area: &str,
        path: &str,
        values_json: &str,
        now: i64,
    ) -> Result<()> {
        let sealed = self.keys.seal_text("conflict", doc_id, path, values_json)?;
        sqlx::query(
            "INSERT INTO conflict (doc_id, area, path, values_json, status, created_at) VALUES ($1, $2, $3, $4, 'open', $5)
             ON CONFLICT (doc_id, path) WHERE status = 'open' DO UPDATE SET values_json = excluded.values_json",
        )
        .bind(doc_id)
        .bind(area)
        .bind(path)
        .bind(sealed)
        .bind(now)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// An open conflict's document and path.
    pub async fn conflict(&mut self, id: i64) -> Result<Option<(String, String)>> {
        let row = sqlx::query("SELECT doc_id, path FROM conflict WHERE id = $1 AND status = 'open'")
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// Conflicts, open ones first, optionally within an area.
    pub async fn conflicts(&mut self, area: Option<&str>) -> Result<Vec<ConflictItem>> {
        let sql = format!(
            "SELECT id, doc_id, area, path, values_json, status FROM conflict WHERE $1 IS NULL OR {}
             ORDER BY status = 'open' DESC, id",
            within("area", "$1")
        );
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(area).fetch_all(&mut *self.tx).await?;
        rows.iter()
            .map(|r| {
                let item = ConflictItem {
                    id: r.try_get(0)?,
                    doc_id: r.try_get(1)?,
                    area: r.try_get(2)?,
                    path: r.try_get(3)?,
                    values: Vec::new(),
                    status: r.try_get(5)?,
                };
                let sealed: String = r.try_get(4)?;
                self.keys.open_conflict(item, &sealed)
            })
            .collect()
    }

    // ---- the resident index and duplicate candidates ----

    /// The people indexed for several documents, opened (a re-index compares them with the
    /// documents' people now).
    pub async fn people_of_docs(&mut self, doc_ids: &[&str]) -> Result<Vec<PersonRow>> {
        let rows =
            self.rows_of_docs("SELECT doc_id, member_id, area, key_json FROM person WHERE doc_id IN", doc_ids).await?;
        rows.iter().map(|r| self.open_person_row(person_row(r)?)).collect()
    }

    /// Rewrites edited people's entries in place, not their index tokens: a person keeps its
    /// id, and of its tokens only those that change are written ([`Tx::add_person_blocks`],
    /// [`Tx::remove_person_blocks`]). `moved`: the area or the date of birth changes too;
    /// otherwise only the key, the CCCD and its digits are written (the lookup by date of
    /// birth keeps its entry). Returns each person's id, `None` for one not stored.
    pub async fn rewrite_person_entries(&mut self, people: &[&PersonIndex], moved: bool) -> Result<Vec<Option<i64>>> {
        let sql = match moved {
            true => {
                "UPDATE person SET key_json = $3, cccd = $4, cccd_digits = $5, area = $6, dob = $7, birth_year = $8
                 WHERE doc_id = $1 AND member_id = $2 RETURNING id"
            }
            false => {
                "UPDATE person SET key_json = $3, cccd = $4, cccd_digits = $5
                 WHERE doc_id = $1 AND member_id = $2 RETURNING id"
            }
        };
        let mut ids = Vec::with_capacity(people.len());
        for p in people {
            let c = self.person_columns(p)?;
            let mut query = sqlx::query(sql).bind(p.doc_id.clone()).bind(p.member_id.clone()).bind(c.key_json);
            query = query.bind(c.cccd).bind(c.cccd_digits);
            if moved {
                query = query.bind(p.area.clone()).bind(c.dob).bind(c.birth_year);
            }
            let row = query.fetch_optional(&mut *self.tx).await?;
            ids.push(row.map(|r| r.try_get::<i64, _>(0)).transpose()?);
        }
        Ok(ids)
    }

    /// Forgets some people's entries `(doc_id, member_id)`, not their index tokens
    /// ([`Tx::remove_person_blocks`] removes tokens by their keys). Returns the ids of those
    /// that were stored, in order (`None` for one that was not).
    pub async fn delete_person_entries(&mut self, people: &[(&str, &str)]) -> Result<Vec<Option<i64>>> {
        let mut ids = Vec::with_capacity(people.len());
        for (doc_id, member_id) in people {
            let row = sqlx::query("DELETE FROM person WHERE doc_id = $1 AND member_id = $2 RETURNING id")
                .bind(*doc_id)
                .bind(*member_id)
                .fetch_optional(&mut *self.tx)
                .await?;
            ids.push(row.map(|r| r.try_get::<i64, _>(0)).transpose()?);
        }
        Ok(ids)
    }

    /// A person's entry as its columns store it: the key sealed, the CCCD, its sorted digits,
    /// the date and the year of birth as index tokens.
    fn person_columns(&self, p: &PersonIndex) -> Result<PersonColumns> {
        let k = self.keys;
        Ok(PersonColumns {
            key_json: k.seal_text("person", &p.doc_id, &p.member_id, &p.key_json)?,
            cccd: p.cccd.as_deref().map(|c| k.cccd_tag(c)),
            cccd_digits: p.cccd_digits.as_deref().map(|d| k.cccd_digits_tag(d)),
            dob: p.dob.as_deref().map(|d| k.dob_tag(d)),
            birth_year: p.birth_year.as_deref().and_then(|y| y.parse().ok()).map(|y| k.birth_year_tag(y)),
        })
    }

    /// For each probe — a person about to be indexed, whose old entry is already deleted or
    /// rewritten — the people it may be (never of its own household, each once): those stored under one of the keys its lookup
    /// reads (`probes`; one query for the whole batch, at most `limit` rows read, each opened
    /// once), and the earlier probes of other households of the batch stored under one. The
    /// keys keep a card holder's lookup away from other card holders' names and dates
    /// (`blocking::index_keys`); beyond that, a person
    /// whose CCCD differs from the probe's (and whose sorted digits differ too, so no
    /// transposition) is a hard non-duplicate: left out by its index tokens, before it is opened.
    pub async fn candidates(&mut self, probes: &[PersonIndex], limit: i64) -> Result<Vec<Vec<PersonRow>>> {
        struct Probe {
            tokens: Vec<i64>,
            cccd: Option<String>,
            digits: Option<String>,
        }
        struct Found {
            sealed: PersonRow,
            tokens: Vec<i64>,
            cccd: Option<String>,
            digits: Option<String>,
        }
        let k = self.keys;
        let tagged: Vec<Probe> = probes
            .iter()
            .map(|p| Probe {
                tokens: p.probes.iter().map(|b| k.block_token(b)).collect(),
                cccd: p.cccd.as_deref().map(|c| k.cccd_tag(c)),
                digits: p.cccd_digits.as_deref().map(|d| k.cccd_digits_tag(d)),
            })
            .collect();
        let mut tokens: Vec<i64> = tagged.iter().flat_map(|p| p.tokens.iter().copied()).collect();
        tokens.sort_unstable();
        tokens.dedup();
        let mut found: std::collections::BTreeMap<(String, String), Found> = Default::default();
        let mut read = 0i64;
        // The levels to read and the tokens to ask each: every token everywhere, or, when the
        // base's filter answers for this transaction's base, the base for those it may hold.
        let in_base = match self.base_filter {
            Some(filter) => {
                let generation = self.base_generation().await?;
                filter.may_hold(generation, &tokens)
            }
            None => None,
        };
        let passes: Vec<(&str, &[i64])> = match &in_base {
            Some(maybe) => vec![(TokenLevel::ABOVE_BASE, &tokens), (TokenLevel::Base.table(), maybe)],
            None => vec![(TokenLevel::ALL, &tokens)],
        };
        for (levels, tokens) in passes {
            for chunk in tokens.chunks(rows_per_statement(1)) {
                if read >= limit {
                    break;
                }
                let sql = format!(
                    "SELECT b.token, p.doc_id, p.member_id, p.area, p.key_json, p.cccd, p.cccd_digits
                     FROM {levels} b JOIN person p ON p.id = b.person_id
                     WHERE b.token IN ({}) LIMIT {}",
                    placeholders(self.dialect, 1, chunk.len()),
                    limit - read
                );
                let mut query = sqlx::query(AssertSqlSafe(sql));
                for token in chunk {
                    query = query.bind(*token);
                }
                let rows = query.fetch_all(&mut *self.tx).await?;
                read += rows.len() as i64;
                for r in &rows {
                    let sealed = PersonRow {
                        doc_id: r.try_get(1)?,
                        member_id: r.try_get(2)?,
                        area: r.try_get(3)?,
                        key_json: r.try_get(4)?,
                    };
                    let token: i64 = r.try_get(0)?;
                    let entry = found.entry((sealed.doc_id.clone(), sealed.member_id.clone())).or_insert(Found {
                        sealed,
                        tokens: Vec::new(),
                        cccd: r.try_get(5)?,
                        digits: r.try_get(6)?,
                    });
                    entry.tokens.push(token);
                }
            }
        }
        let allows = |mine: &Option<String>,
                      my_digits: &Option<String>,
                      theirs: &Option<String>,
                      their_digits: &Option<String>| {
            match (mine, theirs) {
                (Some(a), Some(b)) => a == b || my_digits == their_digits,
                _ => true,
            }
        };
        // Who holds each token, and (for the batch) which earlier probe holds each key.
        let found: Vec<Found> = found.into_values().collect();
        let mut by_token: std::collections::HashMap<i64, Vec<usize>> = Default::default();
        for (n, f) in found.iter().enumerate() {
            for t in &f.tokens {
                by_token.entry(*t).or_default().push(n);
            }
        }
        let mut by_block: std::collections::HashMap<&str, Vec<usize>> = Default::default();
        let mut opened: std::collections::HashMap<usize, PersonRow> = Default::default();
        let mut out: Vec<Vec<PersonRow>> = Vec::with_capacity(probes.len());
        for (i, (person, probe)) in probes.iter().zip(&tagged).enumerate() {
            let mut candidates = Vec::new();
            let mut stored: Vec<usize> = probe.tokens.iter().flat_map(|t| by_token.get(t)).flatten().copied().collect();
            stored.sort_unstable();
            stored.dedup();
            for n in stored {
                let f = &found[n];
                if f.sealed.doc_id == person.doc_id || !allows(&probe.cccd, &probe.digits, &f.cccd, &f.digits) {
                    continue;
                }
                if let std::collections::hash_map::Entry::Vacant(slot) = opened.entry(n) {
                    slot.insert(self.open_person_row(f.sealed.clone())?);
                }
                candidates.push(opened[&n].clone());
            }
            let mut earlier: Vec<usize> =
                person.probes.iter().flat_map(|b| by_block.get(b.as_str())).flatten().copied().collect();
            earlier.sort_unstable();
            earlier.dedup();
            for j in earlier {
                let other = &probes[j];
                if other.doc_id == person.doc_id
                    || !allows(&person.cccd, &person.cccd_digits, &other.cccd, &other.cccd_digits)
                    // An entry rewritten in place is found in the store too.
                    || candidates.iter().any(|c: &PersonRow| c.doc_id == other.doc_id && c.member_id == other.member_id)
                {
                    continue;
                }
                candidates.push(PersonRow {
                    doc_id: other.doc_id.clone(),
                    member_id: other.member_id.clone(),
                    area: other.area.clone(),
                    key_json: other.key_json.clone(),
                });
            }
            for b in &person.blocks {
                by_block.entry(b.as_str()).or_default().push(i);
            }
            out.push(candidates);
        }
        Ok(out)
    }

    /// Indexes new people: each key sealed, the CCCD, its sorted digits, date and year of
    /// birth, and the blocking keys as index tokens of the ids the entries are given.
    pub async fn insert_people(&mut self, people: &[&PersonIndex]) -> Result<()> {
        let mut ids: std::collections::HashMap<(String, String), i64> = Default::default();
        for chunk in people.chunks(500) {
            let rows: Vec<String> =
                (0..chunk.len()).map(|i| format!("({})", placeholders(self.dialect, i * 8 + 1, 8))).collect();
            let sql = format!(
                "INSERT INTO person (doc_id, member_id, area, key_json, cccd, cccd_digits, dob, birth_year) VALUES {}
                 RETURNING id, doc_id, member_id",
                rows.join(", ")
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for p in chunk {
                let c = self.person_columns(p)?;
                query = query.bind(p.doc_id.clone()).bind(p.member_id.clone()).bind(p.area.clone());
                query = query.bind(c.key_json).bind(c.cccd).bind(c.cccd_digits).bind(c.dob).bind(c.birth_year);
            }
            for r in query.fetch_all(&mut *self.tx).await? {
                ids.insert((r.try_get(1)?, r.try_get(2)?), r.try_get(0)?);
            }
        }
        let mut blocks: Vec<(&[String], i64)> = Vec::with_capacity(people.len());
        for p in people {
            let id = ids.get(&(p.doc_id.clone(), p.member_id.clone())).copied().ok_or_else(|| {
                StorageError::internal(format!("no id came back for resident {}/{}", p.doc_id, p.member_id))
            })?;
            blocks.push((p.blocks.as_slice(), id));
        }
        self.add_person_blocks(&blocks).await
    }

    /// Inserts index rows `(token, person id)` into the level `table`, many rows a statement.
    async fn insert_blocks(&mut self, table: TokenLevel, blocks: &[(i64, i64)]) -> Result<()> {
        for chunk in blocks.chunks(1000) {
            let sql = format!(
                "INSERT INTO {} (token, person_id) VALUES {} ON CONFLICT DO NOTHING",
                table.table(),
                value_rows(self.dialect, chunk.len(), 2)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (token, person_id) in chunk {
                query = query.bind(*token).bind(*person_id);
            }
            query.execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// One person's index entry, opened: `(area, key JSON)`.
    pub async fn person(&mut self, doc_id: &str, member_id: &str) -> Result<Option<(String, String)>> {
        let row = sqlx::query("SELECT area, key_json FROM person WHERE doc_id = $1 AND member_id = $2")
            .bind(doc_id)
            .bind(member_id)
            .fetch_optional(&mut *self.tx)
            .await?;
        let Some(r) = row else { return Ok(None) };
        let sealed: String = r.try_get(1)?;
        Ok(Some((r.try_get(0)?, self.keys.open_text("person", doc_id, member_id, &sealed)?)))
    }

    /// Index entries with an id above `after`, in id order, opened, at most `limit`, each
    /// with its id (re-indexing walks them).
    pub async fn people_after(&mut self, after: i64, limit: i64) -> Result<Vec<(i64, PersonRow)>> {
        let rows =
            sqlx::query("SELECT doc_id, member_id, area, key_json, id FROM person WHERE id > $1 ORDER BY id LIMIT $2")
                .bind(after)
                .bind(limit)
                .fetch_all(&mut *self.tx)
                .await?;
        rows.iter().map(|r| Ok((r.try_get(4)?, self.open_person_row(person_row(r)?)?))).collect()
    }

    /// Indexed residents within an area (empty: all), opened, for the console's search:
    /// (household, area, key JSON).
    pub async fn people(&mut self, area: &str, limit: i64) -> Result<Vec<(String, String, String)>> {
        let sql = format!(
            "SELECT doc_id, member_id, area, key_json FROM person WHERE {} ORDER BY doc_id, member_id LIMIT $2",
            within_or_all("area", "$1", area)
        );
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(area).bind(limit).fetch_all(&mut *self.tx).await?;
        let rows = sealed_people(&rows)?;
        self.keys.open_people(rows)
    }

    /// Residents within `area` (empty: all) indexed under one of `keys` (given in clear,
    /// looked up by index token), at most `limit`, opened: (household, area, key JSON).
    pub async fn people_under(
        &mut self,
        area: &str,
        keys: &[String],
        limit: i64,
    ) -> Result<Vec<(String, String, String)>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // The tokens first (a generated list is anonymous `?` on SQLite, bound in order),
        // then the area and the limit as numbered parameters after them.
        let n = keys.len();
        let sql = format!(
            "SELECT DISTINCT p.doc_id, p.member_id, p.area, p.key_json
             FROM person_token_any b JOIN person p ON p.id = b.person_id
             WHERE b.token IN ({}) AND {} ORDER BY p.doc_id, p.member_id LIMIT ${}",
            placeholders(self.dialect, 1, n),
            within_or_all("p.area", &format!("${}", n + 1), area),
            n + 2
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for key in keys {
            query = query.bind(self.keys.block_token(key));
        }
        let query = query.bind(area).bind(limit);
        let rows = query.fetch_all(&mut *self.tx).await?;
        let rows = sealed_people(&rows)?;
        self.keys.open_people(rows)
    }

    /// Residents of the households within `area` (empty: all) whose id starts with
    /// `prefix`, of at most `households` households, opened: (household, area, key JSON).
    pub async fn people_of_ids(
        &mut self,
        area: &str,
        prefix: &str,
        households: i64,
    ) -> Result<Vec<(String, String, String)>> {
        let sql = format!(
            "SELECT p.doc_id, p.member_id, p.area, p.key_json FROM person p WHERE p.doc_id IN (
                 SELECT doc_id FROM doc WHERE {} AND substr(doc_id, 1, length($2)) = $2 LIMIT $3)
             ORDER BY p.doc_id, p.member_id",
            // No order in the inner query: the area's index range serves it (an order by id
            // would walk every household of the store).
            within_or_all("area", "$1", area)
        );
        let rows =
            sqlx::query(AssertSqlSafe(sql)).bind(area).bind(prefix).bind(households).fetch_all(&mut *self.tx).await?;
        let rows = sealed_people(&rows)?;
        self.keys.open_people(rows)
    }

    /// Forgets every person's index tokens, of every level (a re-index writes them all again).
    pub async fn clear_person_blocks(&mut self) -> Result<()> {
        for level in TokenLevel::NEWEST_FIRST {
            sqlx::query(AssertSqlSafe(format!("DELETE FROM {}", level.table()))).execute(&mut *self.tx).await?;
        }
        // The base's filter is left behind (it would answer for every old token too).
        self.note_base_written(None).await
    }

    /// Adds index keys (given in clear; stored as index tokens): `(keys, person id)` a
    /// person, to the fresh level ([`super::token_levels`]), in token order.
    pub async fn add_person_blocks(&mut self, people: &[(&[String], i64)]) -> Result<()> {
        let blocks = self.tagged_blocks(people);
        self.insert_blocks(TokenLevel::Fresh, &blocks).await
    }

    /// Adds index keys as [`Tx::add_person_blocks`] does, but to the oldest level: a re-index,
    /// which writes every person's tokens in turn, fills the large index in bulk.
    pub async fn add_person_blocks_in_bulk(&mut self, people: &[(&[String], i64)]) -> Result<()> {
        let blocks = self.tagged_blocks(people);
        self.insert_blocks(TokenLevel::Base, &blocks).await?;
        let tokens: Vec<i64> = blocks.iter().map(|(token, _)| *token).collect();
        self.note_base_written(Some(&tokens)).await
    }

    /// People's keys as index rows `(token, person id)`, in token order.
    fn tagged_blocks(&self, people: &[(&[String], i64)]) -> Vec<(i64, i64)> {
        let mut blocks: Vec<(i64, i64)> =
            people.iter().flat_map(|(keys, id)| keys.iter().map(|k| (self.keys.block_token(k), *id))).collect();
        blocks.sort_unstable();
        blocks.dedup();
        blocks
    }

    /// Removes index keys (given in clear): `(keys, person id)` a person, from every level.
    /// The levels are read newest first, the way tokens move between them: on PostgreSQL a
    /// token that a merge moves meanwhile is found in the level it moved to
    /// ([`super::token_levels`]).
    pub async fn remove_person_blocks(&mut self, people: &[(&[String], i64)]) -> Result<()> {
        let blocks = self.tagged_blocks(people);
        if blocks.is_empty() {
            return Ok(());
        }
        for level in TokenLevel::NEWEST_FIRST {
            for chunk in blocks.chunks(500) {
                let sql = format!(
                    "DELETE FROM {} WHERE (token, person_id) IN (VALUES {})",
                    level.table(),
                    value_rows(self.dialect, chunk.len(), 2)
                );
                let mut query = sqlx::query(AssertSqlSafe(sql));
                for (token, person_id) in chunk {
                    query = query.bind(*token).bind(*person_id);
                }
                query.execute(&mut *self.tx).await?;
            }
        }
        Ok(())
    }

    /// Open duplicate candidates after id `after`, at most `limit`.
    pub async fn open_duplicates_after(&mut self, after: i64, limit: i64) -> Result<Vec<DuplicateRow>> {
        let rows = sqlx::query(
            "SELECT id, status, doc_a, member_a, doc_b, member_b FROM duplicate
             WHERE status = 'open' AND id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(duplicate_row).collect()
    }

    /// Sets an open candidate's score, or withdraws it (status `withdrawn`) when `keep` is false.
    pub async fn rescore_duplicate_row(&mut self, id: i64, score: f64, reasons_json: &str, keep: bool) -> Result<()> {
        sqlx::query(
            "UPDATE duplicate SET score = $2, reasons_json = $3,
                 status = CASE WHEN $4 = 1 THEN status ELSE 'withdrawn' END
             WHERE id = $1 AND status = 'open'",
        )
        .bind(id)
        .bind(score)
        .bind(reasons_json)
        .bind(i64::from(keep))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Queues (or rescores) a duplicate pair; a withdrawn one opens again.
    pub async fn upsert_duplicate(
        &mut self,
        a: (&str, &str),
        b: (&str, &str),
        area: &str,
        score: f64,
        reasons_json: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO duplicate (doc_a, member_a, doc_b, member_b, area, score, reasons_json, status, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8)
             ON CONFLICT (doc_a, member_a, doc_b, member_b) DO UPDATE SET score = excluded.score,
                 reasons_json = excluded.reasons_json,
                 status = CASE WHEN duplicate.status = 'withdrawn' THEN 'open' ELSE duplicate.status END",
        )
        .bind(a.0)
        .bind(a.1)
        .bind(b.0)
        .bind(b.1)
        .bind(area)
        .bind(score)
        .bind(reasons_json)
        .bind(now)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// A duplicate candidate: status, and its two records.
    pub async fn duplicate_row(&mut self, id: i64) -> Result<Option<DuplicateRow>> {
        let row = sqlx::query("SELECT id, status, doc_a, member_a, doc_b, member_b FROM duplicate WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(duplicate_row).transpose()
    }

    /// Duplicate candidates within an area (None: all), open ones first, best first.
    pub async fn duplicates(&mut self, area: Option<&str>) -> Result<Vec<DuplicateItem>> {
        let sql = format!(
            "SELECT d.id, doc_a, member_a, doc_b, member_b, score, reasons_json, status, area,
                 x.action, x.decided_by, x.decided_at
             FROM duplicate d LEFT JOIN duplicate_decision x ON x.id =
                 (SELECT max(id) FROM duplicate_decision WHERE duplicate_id = d.id)
             WHERE $1 IS NULL OR {} ORDER BY status = 'open' DESC, score DESC, d.id",
            within("area", "$1")
        );
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(area).fetch_all(&mut *self.tx).await?;
        rows.iter()
            .map(|r| {
                let reasons: String = r.try_get(6)?;
                let decided = match (r.try_get(9)?, r.try_get(10)?, r.try_get(11)?) {
                    (Some(a), Some(b), Some(t)) => Some((a, b, t)),
                    _ => None,
                };
                Ok(DuplicateItem {
                    id: r.try_get(0)?,
                    doc_a: r.try_get(1)?,
                    member_a: r.try_get(2)?,
                    doc_b: r.try_get(3)?,
                    member_b: r.try_get(4)?,
                    score: r.try_get(5)?,
                    explanation: serde_json::from_str(&reasons).ok(),
                    status: r.try_get(7)?,
                    area: r.try_get(8)?,
                    decided,
                })
            })
            .collect()
    }

    /// Sets a candidate's status and records who decided, when.
    pub async fn decide_duplicate_row(
        &mut self,
        id: i64,
        status: &str,
        action: &str,
        by: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query("UPDATE duplicate SET status = $2 WHERE id = $1")
            .bind(id)
            .bind(status)
            .execute(&mut *self.tx)
            .await?;
        sqlx::query(
            "INSERT INTO duplicate_decision (duplicate_id, action, decided_by, decided_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(action)
        .bind(by)
        .bind(now)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Links two resident records as one person.
    pub async fn link_residents(&mut self, row: &DuplicateRow, by: &str, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO resident_link (duplicate_id, doc_a, member_a, doc_b, member_b, linked_by, linked_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(row.id)
        .bind(&row.a.0)
        .bind(&row.a.1)
        .bind(&row.b.0)
        .bind(&row.b.1)
        .bind(by)
        .bind(now)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Ends the link a candidate made.
    pub async fn unlink_residents(&mut self, duplicate_id: i64, by: &str, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE resident_link SET undone_by = $2, undone_at = $3 WHERE duplicate_id = $1 AND undone_at IS NULL",
        )
        .bind(duplicate_id)
        .bind(by)
        .bind(now)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Resident links in force.
    pub async fn links(&mut self) -> Result<Vec<ResidentLink>> {
        let rows = sqlx::query(
            "SELECT duplicate_id, doc_a, member_a, doc_b, member_b, linked_by, linked_at FROM resident_link
             WHERE undone_at IS NULL ORDER BY linked_at, duplicate_id",
        )
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ResidentLink {
                    duplicate_id: r.try_get(0)?,
                    a: (r.try_get(1)?, r.try_get(2)?),
                    b: (r.try_get(3)?, r.try_get(4)?),
                    linked_by: r.try_get(5)?,
                    linked_at: r.try_get(6)?,
                })
            })
            .collect()
    }

    // ---- settings ----

    /// A server setting, opened.
    pub async fn setting(&mut self, key: &str) -> Result<Option<String>> {
        match self.raw_setting(key).await? {
            Some(sealed) => Ok(Some(self.keys.open_text("setting", key, "", &sealed)?)),
            None => Ok(None),
        }
    }

    /// Writes a server setting, sealed.
    pub async fn put_setting(&mut self, key: &str, value: &str) -> Result<()> {
        let sealed = self.keys.seal_text("setting", key, "", value)?;
        self.put_raw_setting(key, &sealed).await
    }

    /// A setting as stored (the key check value is stored as it is).
    pub(super) async fn raw_setting(&mut self, key: &str) -> Result<Option<String>> {
        let row =
            sqlx::query("SELECT value FROM setting WHERE key = $1").bind(key).fetch_optional(&mut *self.tx).await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    pub(super) async fn put_raw_setting(&mut self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO setting (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// A setting; when absent, stores `default` first. Every node sees the same value.
    pub async fn setting_or_insert(&mut self, key: &str, default: &str) -> Result<String> {
        let sealed = self.keys.seal_text("setting", key, "", default)?;
        sqlx::query("INSERT INTO setting (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(sealed)
            .execute(&mut *self.tx)
            .await?;
        let stored = self.raw_setting(key).await?.ok_or_else(|| StorageError::internal("setting vanished"))?;
        self.keys.open_text("setting", key, "", &stored)
    }

    /// Whether the store holds anything yet (a new store takes any key).
    pub(super) async fn has_data(&mut self) -> Result<bool> {
        let row = sqlx::query(
            "SELECT (SELECT count(*) FROM (SELECT 1 FROM doc LIMIT 1) d) + (SELECT count(*) FROM (SELECT 1 FROM setting LIMIT 1) s)",
        )
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(row.try_get::<i64, _>(0)? > 0)
    }

    // ---- enrolment and devices ----

    /// Records a one-time enrolment token (by hash) for an area.
    pub async fn create_enrolment(&mut self, token_hash: &str, area: &str, now: i64) -> Result<()> {
        sqlx::query("INSERT INTO enrolment (token_hash, area, created_at) VALUES ($1, $2, $3)")
            .bind(token_hash)
            .bind(area)
            .bind(now)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Uses a token once: registers the device and its credential (by hash). Returns its areas.
    /// A token created before `issued_after` has expired.
    pub async fn redeem_enrolment(
        &mut self,
        token_hash: &str,
        device_id: &str,
        credential_hash: &str,
        now: i64,
        issued_after: i64,
    ) -> Result<Vec<String>> {
        let row = sqlx::query("SELECT area, created_at FROM enrolment WHERE token_hash = $1 AND used_at IS NULL")
            .bind(token_hash)
            .fetch_optional(&mut *self.tx)
            .await?;
        let Some(row) = row else {
            return Err(StorageError::new(
                ErrorKind::Conflict,
                ErrorCode::TokenUsed,
                "unknown or already used enrolment token",
            ));
        };
        let area: String = row.try_get(0)?;
        let created_at: i64 = row.try_get(1)?;
        if created_at < issued_after {
            return Err(StorageError::new(
                ErrorKind::Gone,
                ErrorCode::TokenExpired,
                "this enrolment code has expired: ask the operator for a new one",
            ));
        }
        let taken: i64 = sqlx::query("SELECT count(*) FROM device WHERE device_id = $1")
            .bind(device_id)
            .fetch_one(&mut *self.tx)
            .await?
            .try_get(0)?;
        if taken > 0 {
            return Err(StorageError::invalid("this device id is already enrolled"));
        }
        sqlx::query("UPDATE enrolment SET used_at = $2, device_id = $3 WHERE token_hash = $1")
            .bind(token_hash)
            .bind(now)
            .bind(device_id)
            .execute(&mut *self.tx)
            .await?;
        sqlx::query("INSERT INTO device (device_id, credential_hash, area, enrolled_at) VALUES ($1, $2, $3, $4)")
            .bind(device_id)
            .bind(credential_hash)
            .bind(&area)
            .bind(now)
            .execute(&mut *self.tx)
            .await?;
        Ok(vec![area])
    }

    /// The device holding this credential (by hash), revoked or not.
    pub async fn device_by_credential(&mut self, credential_hash: &str) -> Result<Option<Device>> {
        let row = sqlx::query(
            "SELECT device_id, area, enrolled_at, last_sync_at, revoked_at FROM device WHERE credential_hash = $1",
        )
        .bind(credential_hash)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.as_ref().map(device_row).transpose()
    }

    /// Revokes a device. Returns whether it existed (and was not revoked already).
    pub async fn revoke_device(&mut self, device_id: &str, now: i64) -> Result<bool> {
        let done = sqlx::query("UPDATE device SET revoked_at = $2 WHERE device_id = $1 AND revoked_at IS NULL")
            .bind(device_id)
            .bind(now)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every device, oldest enrolment first.
    pub async fn devices(&mut self, scope: &str) -> Result<Vec<Device>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT device_id, area, enrolled_at, last_sync_at, revoked_at FROM device WHERE {} \
             ORDER BY enrolled_at, device_id",
            within_or_all("area", "$1", scope)
        )))
        .bind(scope)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(device_row).collect()
    }

    /// Records a device's last sync.
    /// Kept to the minute: a device that syncs again within a minute writes nothing (an empty
    /// sync then commits no write, and on PostgreSQL waits for no WAL flush).
    pub async fn touch_device(&mut self, device_id: &str, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE device SET last_sync_at = $2 WHERE device_id = $1 \
             AND (last_sync_at IS NULL OR last_sync_at <= $2 - 60)",
        )
        .bind(device_id)
        .bind(now)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Records (or replaces) a device's public key for offline bundles.
    pub async fn set_transfer_key(&mut self, device_id: &str, key: &str, now: i64) -> Result<()> {
        // Read first: most syncs send the key the server has, and then nothing is written.
        let held: Option<String> = sqlx::query("SELECT transfer_key FROM device_key WHERE device_id = $1")
            .bind(device_id)
            .fetch_optional(&mut *self.tx)
            .await?
            .map(|row| row.try_get(0))
            .transpose()?;
        if held.as_deref() == Some(key) {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO device_key (device_id, transfer_key, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (device_id) DO UPDATE SET transfer_key = excluded.transfer_key, updated_at = excluded.updated_at
             WHERE device_key.transfer_key <> excluded.transfer_key",
        )
        .bind(device_id)
        .bind(key)
        .bind(now)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Devices with a bundle key whose area contains, or lies within, `area`.
    pub async fn directory(&mut self, area: &str) -> Result<Vec<DirectoryEntry>> {
        let sql = format!(
            "SELECT d.device_id, d.area, k.transfer_key, CASE WHEN d.revoked_at IS NULL THEN 0 ELSE 1 END
             FROM device d JOIN device_key k ON k.device_id = d.device_id
             WHERE {} OR {} ORDER BY d.device_id",
            within("d.area", "$1"),
            within("$1", "d.area")
        );
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(area).fetch_all(&mut *self.tx).await?;
        rows.iter()
            .map(|r| {
                Ok(DirectoryEntry {
                    device_id: r.try_get(0)?,
                    area: r.try_get(1)?,
                    transfer_key: r.try_get(2)?,
                    revoked: r.try_get::<i64, _>(3)? != 0,
                })
            })
            .collect()
    }

    // ---- operators and sessions ----

    /// Creates an operator account, or replaces its password and role; ends its sessions.
    pub async fn put_operator(&mut self, op: &Operator) -> Result<()> {
        sqlx::query(
            "INSERT INTO operator (username, password_hash, role, created_at, area) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, role = excluded.role,
                 area = excluded.area",
        )
        .bind(&op.username)
        .bind(&op.password_hash)
        .bind(op.role.as_str())
        .bind(op.created_at)
        .bind(&op.area)
        .execute(&mut *self.tx)
        .await?;
        // A changed password or role ends the account's sessions.
        sqlx::query("DELETE FROM session WHERE username = $1").bind(&op.username).execute(&mut *self.tx).await?;
        Ok(())
    }

    /// An operator account by name.
    pub async fn operator(&mut self, username: &str) -> Result<Option<Operator>> {
        let row =
            sqlx::query("SELECT username, password_hash, role, created_at, area FROM operator WHERE username = $1")
                .bind(username)
                .fetch_optional(&mut *self.tx)
                .await?;
        row.as_ref().map(operator_row).transpose()
    }

    /// Every operator account.
    pub async fn operators(&mut self) -> Result<Vec<Operator>> {
        let rows =
            sqlx::query("SELECT username, password_hash, role, created_at, area FROM operator ORDER BY username")
                .fetch_all(&mut *self.tx)
                .await?;
        rows.iter().map(operator_row).collect()
    }

    /// Stores a new console session, and forgets expired ones.
    pub async fn create_session(&mut self, s: &Session, now: i64) -> Result<()> {
        sqlx::query("DELETE FROM session WHERE expires_at <= $1").bind(now).execute(&mut *self.tx).await?;
        sqlx::query(
            "INSERT INTO session (token_hash, username, role, csrf, expires_at, area) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&s.token_hash)
        .bind(&s.username)
        .bind(s.role.as_str())
        .bind(&s.csrf)
        .bind(s.expires_at)
        .bind(&s.area)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// A live session by token hash.
    pub async fn session(&mut self, token_hash: &str, now: i64) -> Result<Option<Session>> {
        let row = sqlx::query(
            "SELECT token_hash, username, role, csrf, expires_at, area FROM session WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&mut *self.tx)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let role: String = r.try_get(2)?;
        let Some(role) = Role::parse(&role) else { return Ok(None) };
        Ok(Some(Session {
            token_hash: r.try_get(0)?,
            username: r.try_get(1)?,
            role,
            csrf: r.try_get(3)?,
            expires_at: r.try_get(4)?,
            area: r.try_get(5)?,
        }))
    }

    /// Ends a session.
    pub async fn delete_session(&mut self, token_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM session WHERE token_hash = $1").bind(token_hash).execute(&mut *self.tx).await?;
        Ok(())
    }

    // ---- progress ----

    /// Progress counts for each exact area code within the query's area.
    pub async fn area_counts(&mut self, q: &ProgressQuery) -> Result<Vec<AreaCounts>> {
        let turning = self.turning_14(q).await?;
        self.area_counts_with(q, &turning).await
    }

    /// [`Self::area_counts`] with the residents turning 14 in the query's window already read
    /// ([`Self::turning_14`]): the progress page reads them once, for the counts and the list.
    pub async fn area_counts_with(&mut self, q: &ProgressQuery, turning: &[Turning14]) -> Result<Vec<AreaCounts>> {
        let mut out: std::collections::BTreeMap<String, AreaCounts> = Default::default();
        let inside = within_or_all("area", "$1", &q.area);
        // The sums kept per area (`tx/progress.rs`), and the households first seen on each day.
        let sql = format!(
            "SELECT area, households, residents, complete, cccd_present, cccd_valid, verified, verified_residents,
                 review_waiting, review_returned, review_approved
             FROM area_progress WHERE {inside} AND households <> 0"
        );
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(&q.area).fetch_all(&mut *self.tx).await?;
        for r in &rows {
            let area: String = r.try_get(0)?;
            out.insert(
                area.clone(),
                AreaCounts {
                    area,
                    households: r.try_get(1)?,
                    residents: r.try_get(2)?,
                    complete: r.try_get(3)?,
                    cccd_present: r.try_get(4)?,
                    cccd_valid: r.try_get(5)?,
                    verified: r.try_get(6)?,
                    verified_residents: r.try_get(7)?,
                    review_waiting: r.try_get(8)?,
                    review_returned: r.try_get(9)?,
                    review_approved: r.try_get(10)?,
                    ..AreaCounts::default()
                },
            );
        }
        let sql = format!(
            "SELECT area, CAST(sum(CASE WHEN day >= $2 THEN households ELSE 0 END) AS BIGINT),
                 CAST(sum(CASE WHEN day >= $3 THEN households ELSE 0 END) AS BIGINT),
                 CAST(sum(CASE WHEN day >= $4 THEN households ELSE 0 END) AS BIGINT)
             FROM area_new WHERE {inside} AND day >= $5 GROUP BY area"
        );
        let earliest = q.since_day.min(q.since_week).min(q.since_month);
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(&q.area)
            .bind(q.since_day)
            .bind(q.since_week)
            .bind(q.since_month)
            .bind(earliest)
            .fetch_all(&mut *self.tx)
            .await?;
        for r in &rows {
            let area: String = r.try_get(0)?;
            let c = out.entry(area.clone()).or_insert_with(|| AreaCounts { area, ..AreaCounts::default() });
            c.new_day = r.try_get(1)?;
            c.new_week = r.try_get(2)?;
            c.new_month = r.try_get(3)?;
        }
        for (table, field) in [
            ("conflict", (|c| &mut c.open_conflicts) as fn(&mut AreaCounts) -> &mut i64),
            ("duplicate", |c| &mut c.open_duplicates),
        ] {
            let sql = format!("SELECT area, count(*) FROM {table} WHERE {inside} AND status = 'open' GROUP BY area");
            let rows = sqlx::query(AssertSqlSafe(sql)).bind(&q.area).fetch_all(&mut *self.tx).await?;
            let rows = rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect::<Result<Vec<_>>>()?;
            add_counts(&mut out, rows, field);
        }
        add_counts(&mut out, count_by_area(turning), |c| &mut c.turning_14);
        for (area, events) in self.event_counts(q).await? {
            out.entry(area.clone()).or_insert_with(|| AreaCounts { area, ..AreaCounts::default() }).events = events;
        }
        Ok(out.into_values().collect())
    }

    /// Residents of the query's area turning 14 in its window: those born on the window's
    /// days (found by their index tokens, under their years'), opened and checked by date.
    pub async fn turning_14(&mut self, q: &ProgressQuery) -> Result<Vec<Turning14>> {
        let days = self.keys.dob_tags(&q.born_after, &q.born_until);
        if days.is_empty() {
            return Ok(Vec::new());
        }
        // The years, then the days (anonymous `?` on SQLite, bound in order), then the area.
        let [first, last] = self.keys.birth_year_tags(&q.born_after, &q.born_until);
        let sql = format!(
            "SELECT doc_id, member_id, area, key_json FROM person WHERE birth_year IN ({}) AND dob IN ({}) AND {}",
            placeholders(self.dialect, 1, 2),
            placeholders(self.dialect, 3, days.len()),
            within_or_all("area", &format!("${}", days.len() + 3), &q.area)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(first).bind(last);
        for day in &days {
            query = query.bind(day.as_str());
        }
        let rows = query.bind(&q.area).fetch_all(&mut *self.tx).await?;
        let rows = sealed_people(&rows)?;
        self.keys.turning_14(rows, &q.born_after, &q.born_until)
    }

    // ---- attachment blobs ----

    /// An attachment blob's upload state, locked for the transaction where the backend can.
    pub async fn blob_state(&mut self, id: &str) -> Result<Option<BlobState>> {
        let sql = format!(
            "SELECT area, device_id, total, received, updated_at FROM blob WHERE id = $1{}",
            self.dialect.for_update()
        );
        let row = sqlx::query(AssertSqlSafe(sql)).bind(id).fetch_optional(&mut *self.tx).await?;
        row.map(|r| {
            Ok(BlobState {
                area: r.try_get(0)?,
                device_id: r.try_get(1)?,
                total: r.try_get(2)?,
                received: r.try_get(3)?,
                updated_at: r.try_get(4)?,
            })
        })
        .transpose()
    }

    /// Starts a blob upload.
    pub async fn create_blob(&mut self, id: &str, area: &str, device_id: &str, total: i64, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO blob (id, area, device_id, total, received, created_at, updated_at) VALUES ($1, $2, $3, $4, 0, $5, $5)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(area)
        .bind(device_id)
        .bind(total)
        .bind(now)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Forgets what a blob holds: another device (of `area`) takes its upload over from the start.
    pub async fn restart_blob(&mut self, id: &str, device_id: &str, area: &str, total: i64, now: i64) -> Result<()> {
        sqlx::query("DELETE FROM blob_chunk WHERE id = $1").bind(id).execute(&mut *self.tx).await?;
        sqlx::query(
            "UPDATE blob SET device_id = $2, area = $5, total = $4, received = 0, verified = 0, \
             completed_at = NULL, updated_at = $3 WHERE id = $1",
        )
        .bind(id)
        .bind(device_id)
        .bind(now)
        .bind(total)
        .bind(area)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Forgets a blob entirely: its row and its bytes.
    pub async fn discard_blob(&mut self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM blob_chunk WHERE id = $1").bind(id).execute(&mut *self.tx).await?;
        sqlx::query("DELETE FROM blob WHERE id = $1").bind(id).execute(&mut *self.tx).await?;
        Ok(())
    }

    /// Appends a chunk at `start` (the blob's received count) and advances it.
    pub async fn append_blob(&mut self, id: &str, start: i64, chunk: &[u8], complete: bool, now: i64) -> Result<()> {
        sqlx::query("INSERT INTO blob_chunk (id, start_at, data) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(start)
            .bind(chunk)
            .execute(&mut *self.tx)
            .await?;
        sqlx::query(
            "UPDATE blob SET received = received + $2, updated_at = $3,
                 completed_at = CASE WHEN $4 = 1 THEN $3 ELSE NULL END WHERE id = $1",
        )
        .bind(id)
        .bind(chunk.len() as i64)
        .bind(now)
        .bind(i64::from(complete))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Replaces the photo references of these documents: `refs` are (blob id, doc id, area).
    pub async fn set_photo_refs(&mut self, doc_ids: &[&str], refs: &[(String, String, String)]) -> Result<()> {
        for chunk in doc_ids.chunks(rows_per_statement(1)) {
            let sql = format!("DELETE FROM photo_ref WHERE doc_id IN ({})", placeholders(self.dialect, 1, chunk.len()));
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(*id);
            }
            query.execute(&mut *self.tx).await?;
        }
        for chunk in refs.chunks(rows_per_statement(3)) {
            let sql = format!(
                "INSERT INTO photo_ref (blob_id, doc_id, area) VALUES {} ON CONFLICT DO NOTHING",
                value_rows(self.dialect, chunk.len(), 3)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (blob, doc, area) in chunk {
                query = query.bind(blob).bind(doc).bind(area);
            }
            query.execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// The documents within `scope` whose photo fields refer to this blob, a few at most.
    pub async fn photo_refs(&mut self, blob_id: &str, scope: &str) -> Result<Vec<String>> {
        let sql = format!(
            "SELECT doc_id FROM photo_ref WHERE blob_id = $1 AND {} ORDER BY doc_id LIMIT 8",
            within("area", "$2")
        );
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(blob_id).bind(scope).fetch_all(&mut *self.tx).await?;
        Ok(rows.iter().map(|r| r.try_get(0)).collect::<std::result::Result<_, sqlx::Error>>()?)
    }

    /// Whether a blob was checked against a referring household's key.
    pub async fn blob_verified(&mut self, id: &str) -> Result<bool> {
        let row = sqlx::query("SELECT verified FROM blob WHERE id = $1").bind(id).fetch_optional(&mut *self.tx).await?;
        Ok(row.map(|r| r.try_get::<i64, _>(0)).transpose()?.unwrap_or(0) == 1)
    }

    /// Marks a blob checked (it opened under a referring household's key and hashed to its id).
    pub async fn set_blob_verified(&mut self, id: &str) -> Result<()> {
        sqlx::query("UPDATE blob SET verified = 1 WHERE id = $1").bind(id).execute(&mut *self.tx).await?;
        Ok(())
    }

    /// Whether any attachment blob is stored (a store with none needs no photo reference backfill).
    pub async fn any_blob(&mut self) -> Result<bool> {
        Ok(sqlx::query("SELECT 1 FROM blob LIMIT 1").fetch_optional(&mut *self.tx).await?.is_some())
    }

    /// Whole blobs not yet verified: id, size and their uploader's area.
    pub async fn whole_blobs(&mut self) -> Result<Vec<(String, i64, String)>> {
        let rows = sqlx::query("SELECT id, total, area FROM blob WHERE received = total AND verified = 0 ORDER BY id")
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))).collect()
    }

    /// Every document id.
    pub async fn doc_ids(&mut self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT doc_id FROM doc ORDER BY doc_id").fetch_all(&mut *self.tx).await?;
        Ok(rows.iter().map(|r| r.try_get(0)).collect::<std::result::Result<_, sqlx::Error>>()?)
    }

    /// Bytes of blobs this device has uploaded or is uploading.
    pub async fn device_blob_bytes(&mut self, device_id: &str) -> Result<i64> {
        let row = sqlx::query("SELECT CAST(COALESCE(SUM(total), 0) AS BIGINT) FROM blob WHERE device_id = $1")
            .bind(device_id)
            .fetch_one(&mut *self.tx)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Up to `max` bytes of a blob from `start`.
    pub async fn read_blob(&mut self, id: &str, start: i64, max: i64) -> Result<Vec<u8>> {
        let rows = sqlx::query(
            "SELECT start_at, data FROM blob_chunk WHERE id = $1 AND start_at < $2 + $3
                 AND start_at + length(data) > $2 ORDER BY start_at",
        )
        .bind(id)
        .bind(start)
        .bind(max)
        .fetch_all(&mut *self.tx)
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let at: i64 = r.try_get(0)?;
            let data: Vec<u8> = r.try_get(1)?;
            slice_into(&mut out, at, &data, start, max);
        }
        Ok(out)
    }
}

/// Appends the part of a chunk stored at `at` that falls in `[start, start + max)`.
fn slice_into(out: &mut Vec<u8>, at: i64, data: &[u8], start: i64, max: i64) {
    let from = (start.max(at) - at) as usize;
    let to = ((start + max).min(at + data.len() as i64) - at).max(0) as usize;
    if from < to {
        out.extend_from_slice(&data[from..to]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_is_cut_to_the_range_asked() {
        let mut out = Vec::new();
        slice_into(&mut out, 10, b"abcdef", 12, 3);
        assert_eq!(out, b"cde");
        out.clear();
        slice_into(&mut out, 10, b"abcdef", 0, 5);
        assert!(out.is_empty());
    }

    #[test]
    fn placeholders_number_from_where_they_start() {
        assert_eq!(placeholders(Dialect::Postgres, 5, 3), "$5, $6, $7");
        assert_eq!(placeholders(Dialect::Sqlite, 5, 3), "?, ?, ?");
    }
}

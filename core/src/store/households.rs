//! Saving, opening, listing and searching households.

use std::collections::HashMap;

use automerge::ChangeHash;
use chrono::NaiveDate;
use rusqlite::{OptionalExtension, params, params_from_iter};

use super::summary::{HouseholdSummary, ListedHousehold, SearchHit};
use super::{Role, Store};
use crate::crypto::Aad;
use crate::error::{Error, Result};
use crate::form::{ValidationIssue, residence_survey};
use crate::identity::linkage::NameParts;
use crate::identity::{LinkageModel, MatchScore, PersonKey, PersonRecord, Sex, name_tokens};
use crate::record::{Household, HouseholdDoc, check_id};

/// What a save did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveOutcome {
    /// Problems the form found. A household with problems is still saved: nothing typed is lost.
    pub issues: Vec<ValidationIssue>,
    /// Whether anything new was written.
    pub changed: bool,
    /// Whether the document's chunks were compacted into one snapshot.
    pub compacted: bool,
}

/// A pulled document new to this store, prepared off the connection
/// ([`Store::prepare_remote_new`]): what its first save writes, sealed.
pub(crate) struct PreparedNew {
    household: Household,
    heads: String,
    sealed_summary: Vec<u8>,
    sealed_chunk: Vec<u8>,
    snapshot_bytes: i64,
    tokens: Vec<crate::crypto::IndexToken>,
    updated_at: i64,
}

/// Sizes on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageStats {
    /// Households stored.
    pub households: u64,
    /// Sealed document bytes.
    pub chunk_bytes: u64,
    /// Sealed summary bytes.
    pub summary_bytes: u64,
    /// Blind index rows.
    pub index_rows: u64,
    /// The database's pages in use, in bytes.
    pub database_bytes: u64,
}

/// A possible duplicate of a person, found at entry.
#[derive(Debug, Clone, PartialEq)]
pub struct DuplicateCandidate {
    /// The household that holds the other record.
    pub household_id: String,
    /// The other record's member id.
    pub member_id: String,
    /// Its name.
    pub full_name: String,
    /// The linkage model's score: match probability and each comparison's weight.
    pub score: MatchScore,
}

const CHUNK_TABLE: &str = "doc_chunk";
const SUMMARY_TABLE: &str = "doc_meta";

/// Heads as sorted, comma-separated hex, so equal sets compare equal as text.
pub(crate) fn heads_to_text(heads: &[ChangeHash]) -> String {
    let mut hex: Vec<String> = heads.iter().map(ToString::to_string).collect();
    hex.sort();
    hex.join(",")
}

pub(crate) fn heads_from_text(text: &str) -> Vec<ChangeHash> {
    text.split(',').filter(|s| !s.is_empty()).filter_map(|s| s.parse().ok()).collect()
}

/// Where a save's changes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Typed on this device: the document becomes dirty.
    Local,
    /// Received from the server: the document's dirty flag stays as it was.
    Remote,
    /// Received from another device by an offline bundle: merged like a sync, and
    /// dirty, so that the server gets it at the next sync.
    Transfer,
}

struct Meta {
    created_by: String,
    local_heads: String,
    snapshot_bytes: i64,
    incremental_bytes: i64,
}

impl Store {
    fn today(&self) -> NaiveDate {
        crate::vn_time::date(self.clock.now())
    }

    pub(crate) fn meta_heads(&self, id: &str) -> Result<Option<(String, String, bool)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT area, synced_heads, dirty FROM doc_meta WHERE doc_id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?)
    }

    fn meta(&self, id: &str) -> Result<Option<Meta>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT created_by, local_heads, snapshot_bytes, incremental_bytes FROM doc_meta WHERE doc_id = ?1",
            )?
            .query_row([id], |r| {
                Ok(Meta {
                    created_by: r.get(0)?,
                    local_heads: r.get(1)?,
                    snapshot_bytes: r.get(2)?,
                    incremental_bytes: r.get(3)?,
                })
            })
            .optional()?)
    }

    fn check_access(&self, created_by: &str) -> Result<()> {
        let s = self.session()?;
        if s.profile.role == Role::Helper && created_by != s.profile.profile_id {
            return Err(Error::NotPermitted("a helper can open only the households it registered".into()));
        }
        Ok(())
    }

    pub(crate) fn read_chunks(&self, id: &str) -> Result<Vec<u8>> {
        let s = self.session()?;
        let mut stmt = self.conn.prepare_cached("SELECT seq, sealed FROM doc_chunk WHERE doc_id = ?1 ORDER BY seq")?;
        let rows = stmt.query_map([id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
        let mut bytes = Vec::new();
        for row in rows {
            let (seq, sealed) = row?;
            let seq = seq.to_string();
            let plain = s.sealer.open(Aad { table: CHUNK_TABLE, doc_id: id, chunk: &seq }, &sealed)?;
            bytes.extend_from_slice(&plain);
        }
        Ok(bytes)
    }

    /// Creates a new household document and saves it.
    pub fn create_household(&mut self, household: &Household) -> Result<(HouseholdDoc, SaveOutcome)> {
        check_id(&household.household_id)?;
        if self.meta(&household.household_id)?.is_some() {
            return Err(Error::AlreadyExists(format!("household {}", household.household_id)));
        }
        let mut doc = HouseholdDoc::create(household, &self.editor()?)?;
        let outcome = self.save_household(&mut doc)?;
        Ok((doc, outcome))
    }

    /// Opens a household document for reading and editing.
    pub fn open_household(&self, id: &str) -> Result<HouseholdDoc> {
        let meta = self.meta(id)?.ok_or_else(|| Error::NotFound(format!("household {id}")))?;
        self.check_access(&meta.created_by)?;
        let bytes = self.read_chunks(id)?;
        HouseholdDoc::load(id, &bytes, &self.editor()?)
    }

    /// Marks a household — or one resident, by `member` — verified at the door or as needing
    /// correction, by this profile on this device (see [`HouseholdDoc::verify`]), and saves it.
    pub fn verify_household(
        &mut self,
        id: &str,
        state: crate::verification::VerificationState,
        note: Option<&str>,
        member: Option<&str>,
    ) -> Result<crate::verification::Verification> {
        let mut doc = self.open_household(id)?;
        let verification = doc.verify(&self.editor()?, state, note, member)?;
        self.save_household(&mut doc)?;
        Ok(verification)
    }

    /// Reads a household's current values.
    pub fn household(&self, id: &str) -> Result<Household> {
        Ok(self.open_household(id)?.read())
    }

    /// Saves a document's new changes in one transaction: an incremental
    /// chunk (or the first snapshot), the sealed summary and the blind index.
    /// When the increments outgrow the snapshot they are compacted into a new one.
    ///
    /// Validation problems are returned, not refused: an officer's draft is never lost.
    pub fn save_household(&mut self, doc: &mut HouseholdDoc) -> Result<SaveOutcome> {
        self.persist(doc, Origin::Local)
    }

    pub(crate) fn persist(&mut self, doc: &mut HouseholdDoc, origin: Origin) -> Result<SaveOutcome> {
        self.persist_saved(doc, origin, None)
    }

    /// [`Store::persist`], given for a document new to this store the bytes it was just
    /// loaded from (`saved`: a save, or changes, that load as exactly this document): they are
    /// kept as its first chunk instead of saving it again.
    pub(crate) fn persist_saved(
        &mut self,
        doc: &mut HouseholdDoc,
        origin: Origin,
        saved: Option<&[u8]>,
    ) -> Result<SaveOutcome> {
        let profile_id = self.session()?.profile.profile_id.clone();
        let id = doc.id().to_string();
        let meta = self.meta(&id)?;
        if let Some(m) = &meta {
            if origin == Origin::Local {
                self.check_access(&m.created_by)?;
            }
            // Another copy of this document was saved since this one was loaded: merge it first.
            let stored = heads_from_text(&m.local_heads);
            if !stored.iter().all(|h| doc.has_change(h)) {
                let bytes = self.read_chunks(&id)?;
                doc.load_incremental(&bytes)?;
            }
        }
        let now = self.clock.now();
        let household = doc.read();
        if origin != Origin::Remote {
            // An area is digits in dotted parts: no wildcard or stray character reaches the server.
            crate::area::Area::parse(&household.area_code)?;
            // Nor a change to a field that never changes.
            doc.check_immutable_fields()?;
        }
        let issues = residence_survey().validate_owned(household.to_answers(), self.today());
        let conflicts = doc.conflicts()?.len();
        let (kind, bytes) = match (&meta, saved) {
            (None, Some(saved)) => ("snapshot", saved.to_vec()),
            (None, None) => ("snapshot", doc.save()),
            (Some(_), _) => ("incremental", doc.save_incremental()),
        };
        if bytes.is_empty() {
            return Ok(SaveOutcome { issues, changed: false, compacted: false });
        }
        let heads = heads_to_text(&doc.heads());
        let summary = HouseholdSummary::of(&household, issues.len(), conflicts, now);
        let summary_json = serde_json::to_vec(&summary).map_err(|e| Error::InvalidArgument(e.to_string()))?;

        let s = self.session.as_ref().ok_or(Error::Locked)?;
        let sealed_summary =
            s.sealer.seal(Aad { table: SUMMARY_TABLE, doc_id: &id, chunk: "summary" }, &summary_json)?;
        let tokens = HouseholdDoc::index_tokens(&household, &s.indexer);
        let (mut snapshot_bytes, mut incremental_bytes) =
            meta.as_ref().map_or((0, 0), |m| (m.snapshot_bytes, m.incremental_bytes));
        if kind == "snapshot" {
            snapshot_bytes = bytes.len() as i64;
        } else {
            incremental_bytes += bytes.len() as i64;
        }
        let compact = incremental_bytes > snapshot_bytes;
        let full = if compact { Some(doc.save()) } else { None };
        let (creator, local) = match origin {
            Origin::Local => (profile_id.as_str(), true),
            Origin::Remote => ("remote", false),
            Origin::Transfer => ("remote", true),
        };
        self.register_photo_refs(&household)?;

        // A savepoint: its own transaction normally, or part of a batch (see `apply_remote_batch`).
        let tx = self.conn.savepoint()?;
        tx.prepare_cached(
            "INSERT INTO doc_meta (doc_id, area, created_by, summary, local_heads, dirty, snapshot_bytes,
                                   incremental_bytes, updated_at, synced_heads)
             VALUES (?1, ?2, ?3, ?4, ?5, ?9, ?6, ?7, ?8, CASE WHEN ?9 THEN '' ELSE ?5 END)
             ON CONFLICT (doc_id) DO UPDATE SET area = excluded.area, summary = excluded.summary,
                 local_heads = excluded.local_heads,
                 dirty = CASE WHEN ?9 THEN 1 ELSE (doc_meta.dirty AND excluded.local_heads != doc_meta.synced_heads) END,
                 synced_heads = CASE WHEN ?9 OR doc_meta.dirty THEN doc_meta.synced_heads ELSE excluded.local_heads END,
                 snapshot_bytes = excluded.snapshot_bytes,
                 incremental_bytes = excluded.incremental_bytes, updated_at = excluded.updated_at",
        )?
        .execute(params![
                id,
                household.area_code,
                creator,
                sealed_summary,
                heads,
                snapshot_bytes,
                incremental_bytes,
                now,
                local
        ])?;
        let next_seq: i64 = tx
            .prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM doc_chunk WHERE doc_id = ?1")?
            .query_row([&id], |r| r.get(0))?;
        let (seq, kind, bytes) = match full {
            Some(full) => {
                tx.execute("DELETE FROM doc_chunk WHERE doc_id = ?1", [&id])?;
                tx.execute(
                    "UPDATE doc_meta SET snapshot_bytes = ?2, incremental_bytes = 0 WHERE doc_id = ?1",
                    params![id, full.len() as i64],
                )?;
                (next_seq, "snapshot", full)
            }
            None => (next_seq, kind, bytes),
        };
        let seq_text = seq.to_string();
        let sealed = s.sealer.seal(Aad { table: CHUNK_TABLE, doc_id: &id, chunk: &seq_text }, &bytes)?;
        tx.prepare_cached("INSERT INTO doc_chunk (doc_id, seq, kind, sealed) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![id, seq, kind, sealed])?;
        tx.prepare_cached("DELETE FROM blind_index WHERE doc_id = ?1")?.execute([&id])?;
        {
            let mut ins = tx.prepare_cached("INSERT OR IGNORE INTO blind_index (token, doc_id) VALUES (?1, ?2)")?;
            for t in &tokens {
                ins.execute(params![t.as_slice(), id])?;
            }
        }
        tx.commit()?;
        Ok(SaveOutcome { issues, changed: true, compacted: compact })
    }

    /// Prepares documents new to this store, as received from the server, on every core:
    /// each is loaded (strictly), read, validated, summarised, sealed and indexed off the
    /// database connection. The results come back in order, for [`Store::insert_prepared`].
    pub(crate) fn prepare_remote_new(&self, pulls: &[(&str, &[u8])]) -> Result<Vec<Result<PreparedNew>>> {
        let s = self.session()?;
        let editor = self.editor()?;
        let now = self.clock.now();
        let today = self.today();
        let prepare = |(id, saved): &(&str, &[u8])| -> Result<PreparedNew> {
            check_id(id)?;
            let mut doc = HouseholdDoc::load(id, saved, &editor)?;
            let household = doc.read();
            let issues = residence_survey().validate_owned(household.to_answers(), today).len();
            let conflicts = doc.conflicts()?.len();
            let summary = HouseholdSummary::of(&household, issues, conflicts, now);
            let summary_json = serde_json::to_vec(&summary).map_err(|e| Error::InvalidArgument(e.to_string()))?;
            let sealed_summary =
                s.sealer.seal(Aad { table: SUMMARY_TABLE, doc_id: id, chunk: "summary" }, &summary_json)?;
            let sealed_chunk = s.sealer.seal(Aad { table: CHUNK_TABLE, doc_id: id, chunk: "1" }, saved)?;
            let tokens = HouseholdDoc::index_tokens(&household, &s.indexer);
            Ok(PreparedNew {
                heads: heads_to_text(&doc.heads()),
                household,
                sealed_summary,
                sealed_chunk,
                snapshot_bytes: saved.len() as i64,
                tokens,
                updated_at: now,
            })
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
        if threads == 1 || pulls.len() < 16 {
            return Ok(pulls.iter().map(prepare).collect());
        }
        let per = pulls.len().div_ceil(threads);
        let prepare = &prepare;
        let parts: Vec<Vec<Result<PreparedNew>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = pulls
                .chunks(per)
                .map(|chunk| scope.spawn(move || chunk.iter().map(prepare).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| vec![Err(Error::InvalidArgument("a document could not be read".into()))])
                })
                .collect()
        });
        let out: Vec<Result<PreparedNew>> = parts.into_iter().flatten().collect();
        if out.len() != pulls.len() {
            return Err(Error::InvalidArgument("a page of documents could not be read".into()));
        }
        Ok(out)
    }

    /// Stores a document [`Store::prepare_remote_new`] prepared, as a save of a pulled
    /// document new to this store does (not dirty; the server holds it).
    pub(crate) fn insert_prepared(&mut self, p: &PreparedNew) -> Result<()> {
        let id = p.household.household_id.as_str();
        self.register_photo_refs(&p.household)?;
        let tx = self.conn.savepoint()?;
        tx.prepare_cached(
            "INSERT INTO doc_meta (doc_id, area, created_by, summary, local_heads, dirty, snapshot_bytes,
                                   incremental_bytes, updated_at, synced_heads)
             VALUES (?1, ?2, 'remote', ?3, ?4, 0, ?5, 0, ?6, ?4)",
        )?
        .execute(params![
            id,
            p.household.area_code,
            p.sealed_summary,
            p.heads,
            p.snapshot_bytes,
            p.updated_at
        ])?;
        tx.prepare_cached("INSERT INTO doc_chunk (doc_id, seq, kind, sealed) VALUES (?1, 1, 'snapshot', ?2)")?
            .execute(params![id, p.sealed_chunk])?;
        {
            let mut ins = tx.prepare_cached("INSERT OR IGNORE INTO blind_index (token, doc_id) VALUES (?1, ?2)")?;
            for t in &p.tokens {
                ins.execute(params![t.as_slice(), id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn open_summary(&self, id: &str, sealed: &[u8]) -> Result<HouseholdSummary> {
        let plain = self.session()?.sealer.open(Aad { table: SUMMARY_TABLE, doc_id: id, chunk: "summary" }, sealed)?;
        serde_json::from_slice(&plain).map_err(|_| Error::corrupt(format!("household {id} summary")))
    }

    pub(crate) fn helper_filter(&self) -> Result<Option<String>> {
        let s = self.session()?;
        Ok((s.profile.role == Role::Helper).then(|| s.profile.profile_id.clone()))
    }

    /// Households, most recently saved first. A helper sees only its own.
    pub fn list_households(&self, offset: u32, limit: u32) -> Result<Vec<ListedHousehold>> {
        let creator = self.helper_filter()?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT doc_id, area, updated_at, summary FROM doc_meta
             WHERE ?1 IS NULL OR created_by = ?1
             ORDER BY updated_at DESC, doc_id LIMIT ?2 OFFSET ?3",
        )?;
        let rows = stmt.query_map(params![creator, limit, offset], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, Vec<u8>>(3)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (household_id, area_code, updated_at, sealed) = row?;
            let summary = self.open_summary(&household_id, &sealed).ok();
            out.push(ListedHousehold { household_id, area_code, updated_at, summary });
        }
        Ok(out)
    }

    /// How many households this profile can see.
    pub fn count_households(&self) -> Result<u64> {
        let creator = self.helper_filter()?;
        let n: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM doc_meta WHERE ?1 IS NULL OR created_by = ?1",
            [creator],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Summaries of the households whose index holds every token, opened one by one.
    fn households_with_tokens(&self, tokens: &[[u8; 16]]) -> Result<Vec<HouseholdSummary>> {
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let creator = self.helper_filter()?;
        let placeholders = vec!["?"; tokens.len()].join(",");
        let sql = format!(
            "SELECT m.doc_id, m.summary FROM doc_meta m
             JOIN (SELECT doc_id FROM blind_index WHERE token IN ({placeholders})
                   GROUP BY doc_id HAVING COUNT(*) = {n}) hit ON hit.doc_id = m.doc_id
             WHERE ?{c} IS NULL OR m.created_by = ?{c}
             ORDER BY m.updated_at DESC LIMIT 500",
            n = tokens.len(),
            c = tokens.len() + 1,
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let mut args: Vec<rusqlite::types::Value> =
            tokens.iter().map(|t| rusqlite::types::Value::Blob(t.to_vec())).collect();
        args.push(creator.map_or(rusqlite::types::Value::Null, rusqlite::types::Value::Text));
        let rows = stmt.query_map(params_from_iter(args), |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, sealed) = row?;
            if let Ok(summary) = self.open_summary(&id, &sealed) {
                out.push(summary);
            }
        }
        Ok(out)
    }

    /// Finds the residents with this CCCD number.
    pub fn search_cccd(&self, cccd: &str) -> Result<Vec<SearchHit>> {
        let digits: String = cccd.chars().filter(|c| !c.is_whitespace()).collect();
        let token = self.session()?.indexer.cccd(&digits);
        Ok(self
            .households_with_tokens(&[token])?
            .into_iter()
            .map(|h| {
                let member_ids = h
                    .members
                    .iter()
                    .filter(|m| m.cccd.as_deref() == Some(&digits))
                    .map(|m| m.member_id.clone())
                    .collect();
                SearchHit { household: h, member_ids }
            })
            .filter(|hit| !hit.member_ids.is_empty())
            .collect())
    }

    /// Finds residents whose name has every word of `query`, ignoring diacritics, case, spacing and đ/d.
    pub fn search_name(&self, query: &str) -> Result<Vec<SearchHit>> {
        let words = name_tokens(query);
        let tokens = self.session()?.indexer.name_words(query);
        Ok(self
            .households_with_tokens(&tokens)?
            .into_iter()
            .filter_map(|h| {
                let member_ids: Vec<String> = h
                    .members
                    .iter()
                    .filter(|m| {
                        let have = name_tokens(&m.full_name);
                        words.iter().all(|w| have.contains(w))
                    })
                    .map(|m| m.member_id.clone())
                    .collect();
                (!member_ids.is_empty()).then_some(SearchHit { household: h, member_ids })
            })
            .collect())
    }

    /// Residents who may be the same person as `person`, entered in `household`
    /// (whose own members are left out): records found by CCCD, by normalized
    /// name and date of birth, or by a shared name word, scored by the same
    /// linkage model the sync server uses ([`LinkageModel::shipped`]). Returns the
    /// candidates at or above the model's review threshold, best first.
    pub fn find_duplicates(&self, person: &PersonKey, household: Option<&str>) -> Result<Vec<DuplicateCandidate>> {
        let indexer = &self.session()?.indexer;
        let mut households: HashMap<String, HouseholdSummary> = HashMap::new();
        let mut probes = Vec::new();
        if let Some(c) = person.cccd.as_deref().filter(|c| !c.trim().is_empty()) {
            probes.push(vec![indexer.cccd(c)]);
        }
        if let Some(dob) = person.dob {
            probes.push(vec![indexer.name_dob(&person.full_name, &dob.format("%Y-%m-%d").to_string())]);
        }
        let words = indexer.name_words(&person.full_name);
        if !words.is_empty() {
            probes.push(words);
        }
        for tokens in probes {
            for h in self.households_with_tokens(&tokens)? {
                households.entry(h.household_id.clone()).or_insert(h);
            }
        }
        let own_area: String = match household {
            Some(id) => self
                .conn
                .query_row("SELECT area FROM doc_meta WHERE doc_id = ?1", [id], |r| r.get(0))
                .optional()?
                .unwrap_or_default(),
            None => String::new(),
        };
        let model = LinkageModel::shipped();
        let probe = PersonRecord { key: person, household_id: household.unwrap_or(""), area: &own_area };
        let probe_name = NameParts::new(&person.full_name);
        let mut out = Vec::new();
        for h in households.values() {
            if Some(h.household_id.as_str()) == household {
                continue;
            }
            for m in &h.members {
                let other = PersonKey {
                    full_name: m.full_name.clone(),
                    dob: m.dob.as_deref().and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()),
                    sex: m.sex.as_deref().and_then(Sex::parse),
                    cccd: m.cccd.clone(),
                    phone: m.phone.clone(),
                };
                let record = PersonRecord { key: &other, household_id: &h.household_id, area: &h.area_code };
                let score = model.score_parts(&probe, &probe_name, &record, &NameParts::new(&m.full_name));
                if model.is_review(score.probability) {
                    out.push(DuplicateCandidate {
                        household_id: h.household_id.clone(),
                        member_id: m.member_id.clone(),
                        full_name: m.full_name.clone(),
                        score,
                    });
                }
            }
        }
        out.sort_by(|a, b| {
            b.score.probability.total_cmp(&a.score.probability).then_with(|| a.household_id.cmp(&b.household_id))
        });
        Ok(out)
    }

    /// Sizes of what is stored.
    pub fn storage_stats(&self) -> Result<StorageStats> {
        let one = |sql: &str| -> Result<u64> { Ok(self.conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64) };
        let households = one("SELECT COUNT(*) FROM doc_meta")?;
        let summary_bytes = one("SELECT COALESCE(SUM(LENGTH(summary)), 0) FROM doc_meta")?;
        let chunk_bytes = one("SELECT COALESCE(SUM(LENGTH(sealed)), 0) FROM doc_chunk")?;
        let index_rows = one("SELECT COUNT(*) FROM blind_index")?;
        let pages = one("PRAGMA page_count")?;
        let free = one("PRAGMA freelist_count")?;
        let page_size = one("PRAGMA page_size")?;
        Ok(StorageStats {
            households,
            chunk_bytes,
            summary_bytes,
            index_rows,
            database_bytes: (pages - free) * page_size,
        })
    }
}

//! The sync algorithm, over one store transaction ([`Tx`]).

use chrono::Datelike;
use doorstep_core::attachment::{MAX_BLOB_BYTES, PhotoRef, is_blob_id, open_blob};
use doorstep_core::form::{IssueKind, residence_survey};
use doorstep_core::identity::linkage::blocking::{self, BlockingKey};
use doorstep_core::identity::linkage::{NameParts, comparison};
use doorstep_core::identity::{Cccd, LinkageModel, MatchScore, PersonKey, PersonRecord};
use doorstep_core::record::{Household, HouseholdDoc};
use doorstep_core::sync::protocol::{
    BLOB_CHUNK_BYTES, BlobChunk, BlobGet, BlobPut, BlobPutAck, DocAck, DocDeparture, DocPull, DocRefusal, ErrorCode,
    MAX_PUSH_DOCS, MAX_RESEND_DOCS, PROTOCOL_VERSION, PULL_PAGE_BYTES, SnapshotPosition, SyncRequest, SyncResponse,
    area_within,
};
use doorstep_core::verification::VerificationState;
use rayon::prelude::*;

use crate::merge::{Bound, Merged, Settled, merge_push, people, server_editor};
use crate::storage::{Device, DuplicateAction, RescoreReport};
use crate::store::DocWrite;
use crate::store::model::{DuplicateRow, HouseholdStats, PersonIndex};
use crate::store::{ErrorKind, StorageError, Tx};

/// Feed rows one pull reads at most.
const FEED_SCAN: i64 = 5000;

/// Records conflicts and duplicate candidates of merged documents.
async fn queue_reviews(tx: &mut Tx<'_>, merged: &[Settled<'_>], now: i64) -> Result<(), StorageError> {
    let ids: Vec<&str> = merged.iter().map(|m| m.household.household_id.as_str()).collect();
    // Open conflicts that no longer hold were settled by a later edit.
    for (id, doc_id, path) in tx.open_conflicts_of(&ids).await? {
        let holds = merged
            .iter()
            .filter(|m| m.household.household_id == doc_id)
            .any(|m| m.conflicts.iter().any(|c| c.path == path));
        if !holds {
            tx.resolve_conflict_row(id, "edit", now).await?;
        }
    }
    for m in merged {
        for c in m.conflicts {
            let values = serde_json::to_string(&c.values).unwrap_or_default();
            tx.upsert_conflict(&m.household.household_id, &m.household.area_code, &c.path, &values, now).await?;
        }
    }
    // Only the people whose entry changes (new, edited, moved) are re-indexed and looked up:
    // a pair of unchanged people scores as it did, and a changed one finds the unchanged.
    let mut stored: std::collections::HashMap<(String, String), crate::store::model::PersonRow> = tx
        .people_of_docs(&ids)
        .await?
        .into_iter()
        .map(|row| ((row.doc_id.clone(), row.member_id.clone()), row))
        .collect();
    let model = LinkageModel::shipped();
    let mut index: Vec<PersonIndex> = Vec::new();
    let mut keys: Vec<PersonKey> = Vec::new();
    // The record each person is known to be (a resident who moved, a merged duplicate):
    // never a candidate against it.
    let mut linked: Vec<Option<&str>> = Vec::new();
    // People whose entry changes (edited, moved) keep their id, and the tokens their old and
    // new keys share (an edited phone number changes one token of seven).
    let mut edited: Vec<Edited> = Vec::new();
    for m in merged {
        for (member_id, key) in people(m.household) {
            let entry = person_index(&m.household.household_id, &member_id, &m.household.area_code, &key);
            match stored.remove(&(entry.doc_id.clone(), entry.member_id.clone())) {
                Some(was) if was.area == entry.area && was.key_json == entry.key_json => continue,
                Some(was) => {
                    let old = stored_entry(&was);
                    let moved = !old.as_ref().is_some_and(|o| o.area == entry.area && o.dob == entry.dob);
                    let old_keys = old.map(|o| o.blocks).unwrap_or_default();
                    edited.push(Edited { at: index.len(), old_keys, moved, id: None });
                }
                None => {}
            }
            index.push(entry);
            keys.push(key);
            let member = m.household.members.iter().find(|x| x.member_id == member_id);
            linked.push(member.and_then(|x| x.same_person_as.as_deref()));
        }
    }
    // An entry that changes is rewritten in place before the lookup (the lookup then reads it
    // as it is, and never for its own household), and keeps its tokens until they are
    // compared below; people who left their household (what is left of `stored`) lose both.
    for moved in [false, true] {
        let (at, entries): (Vec<usize>, Vec<&PersonIndex>) =
            edited.iter().enumerate().filter(|(_, e)| e.moved == moved).map(|(n, e)| (n, &index[e.at])).unzip();
        for (n, id) in at.into_iter().zip(tx.rewrite_person_entries(&entries, moved).await?) {
            edited[n].id = id;
        }
    }
    let left: Vec<(Vec<String>, &str, &str)> = stored
        .values()
        .map(|was| {
            (stored_entry(was).map(|o| o.blocks).unwrap_or_default(), was.doc_id.as_str(), was.member_id.as_str())
        })
        .collect();
    let pairs: Vec<(&str, &str)> = left.iter().map(|(_, d, m)| (*d, *m)).collect();
    let left_ids = tx.delete_person_entries(&pairs).await?;
    let left: Vec<(&[String], i64)> =
        left.iter().zip(left_ids).filter_map(|((keys, _, _), id)| Some((keys.as_slice(), id?))).collect();
    tx.remove_person_blocks(&left).await?;
    let limit = CANDIDATE_LIMIT * index.len().max(1) as i64;
    let found = tx.candidates(&index, limit).await?;
    for (((person, key), candidates), link) in index.iter().zip(&keys).zip(found).zip(linked) {
        let probe = PersonRecord { key, household_id: &person.doc_id, area: &person.area };
        let probe_name = NameParts::new(&key.full_name);
        for row in candidates {
            if link.and_then(|l| l.split_once('/')) == Some((row.doc_id.as_str(), row.member_id.as_str())) {
                continue;
            }
            let Ok(other) = serde_json::from_str::<PersonKey>(&row.key_json) else { continue };
            let record = PersonRecord { key: &other, household_id: &row.doc_id, area: &row.area };
            let score = model.score_parts(&probe, &probe_name, &record, &NameParts::new(&other.full_name));
            if !model.is_review(score.probability) {
                continue;
            }
            let (a, b) = ordered(
                (person.doc_id.as_str(), person.member_id.as_str()),
                (row.doc_id.as_str(), row.member_id.as_str()),
            );
            tx.upsert_duplicate(a, b, &person.area, score.probability, &explanation_json(&score), now).await?;
        }
    }
    // Of an edited person's tokens, those of its old keys alone go and those of its new keys
    // alone come; new people are indexed whole.
    let mut rewritten: std::collections::HashMap<usize, (Vec<String>, i64)> = Default::default();
    for e in edited {
        let Some(id) = e.id else { continue };
        let (removed, added) = key_changes(e.old_keys, std::mem::take(&mut index[e.at].blocks));
        index[e.at].blocks = added;
        rewritten.insert(e.at, (removed, id));
    }
    let gone: Vec<(&[String], i64)> = rewritten.values().map(|(keys, id)| (keys.as_slice(), *id)).collect();
    tx.remove_person_blocks(&gone).await?;
    let (mut kept, mut written) = (Vec::new(), Vec::new());
    for (i, p) in index.iter().enumerate() {
        match rewritten.get(&i) {
            Some((_, id)) => kept.push((p.blocks.as_slice(), *id)),
            None => written.push(p),
        }
    }
    tx.add_person_blocks(&kept).await?;
    tx.insert_people(&written).await
}

/// A person whose stored entry changes: its position in the batch's index, the keys it was
/// indexed under, whether its area or date of birth changes (the lookup by date of birth
/// then moves its entry too), and its id once its entry is rewritten.
struct Edited {
    at: usize,
    old_keys: Vec<String>,
    moved: bool,
    id: Option<i64>,
}

/// A stored entry as it was indexed (its keys computed again from it). None for an entry
/// that no longer reads (not one the server writes): its tokens stay until the next
/// re-index, and find no entry, or the one written in its place, which the model then scores.
fn stored_entry(row: &crate::store::model::PersonRow) -> Option<PersonIndex> {
    let key = serde_json::from_str::<PersonKey>(&row.key_json).ok()?;
    Some(person_index(&row.doc_id, &row.member_id, &row.area, &key))
}

/// The keys of `old` that `new` lacks, and those of `new` that `old` lacks.
fn key_changes(old: Vec<String>, new: Vec<String>) -> (Vec<String>, Vec<String>) {
    let removed = old.iter().filter(|k| !new.contains(k)).cloned().collect();
    let added = new.into_iter().filter(|k| !old.contains(k)).collect();
    (removed, added)
}

/// Candidate rows one person's blocking lookup reads at most (a guard, far above a real block).
const CANDIDATE_LIMIT: i64 = 2000;

/// The setting that names the linkage model and blocking rules the stored candidates and keys were made with.
pub const LINKAGE_MODEL_SETTING: &str = "linkage_model";

/// The model version and the blocking rules' version, as [`LINKAGE_MODEL_SETTING`] records them.
fn linkage_version(model: &LinkageModel) -> String {
    format!("{} {} {SEARCH_INDEX_VERSION}", model.version(), blocking::RULES_VERSION)
}

/// The version [`LINKAGE_MODEL_SETTING`] records for this build's model and rules: a store that
/// records another is re-indexed and re-scored at start-up.
pub fn shipped_linkage_version() -> String {
    linkage_version(LinkageModel::shipped())
}

fn ordered<'a>(x: (&'a str, &'a str), y: (&'a str, &'a str)) -> ((&'a str, &'a str), (&'a str, &'a str)) {
    if x < y { (x, y) } else { (y, x) }
}

/// A blocking key as the store indexes it: `locality/rule:value`, its locality first
/// ([`AtRest::block_token`](crate::at_rest::AtRest::block_token) keeps the keys of one
/// locality together).
fn block_text(k: &BlockingKey) -> String {
    format!("{}/{}:{}", k.locality(), k.rule, k.value)
}

/// The version of what the server indexes beyond the blocking rules (the console's search
/// keys, and the tokens' form: `search-2` stored 64-bit tokens, migration 0010; `search-3`
/// gives each token its key's locality in its top bits): part of the recorded linkage
/// version, so that an upgrade rebuilds the index.
const SEARCH_INDEX_VERSION: &str = "search-3";

/// The console's search key of a full name: the name folded as the search folds what is
/// typed (no diacritics, one case, single spaces). `None` for a name that folds to nothing.
/// It has no locality (the empty text before the `/`): a name is searched across the country.
pub fn name_search_key(name: &str) -> Option<String> {
    let folded = doorstep_core::identity::normalize_name(name);
    (!folded.is_empty()).then(|| format!("/search-name:{folded}"))
}

/// The console's search key of a CCCD number: the blocking key every holder of that number
/// is indexed under (the number with its digit pairs sorted; holders of a transposed number
/// share it too, and are told apart once opened).
pub fn cccd_search_key(cccd: &str) -> Option<String> {
    let probe = PersonKey { full_name: String::new(), dob: None, sex: None, cccd: Some(cccd.to_string()), phone: None };
    // The CCCD's keys reach across every area.
    blocking::index_keys(&probe, "").stored.first().map(block_text)
}

/// The keys one person is indexed under: its blocking keys (`indexed`, its
/// [`blocking::index_keys`]) and its name's search key.
fn stored_keys(key: &PersonKey, indexed: &blocking::IndexKeys) -> Vec<String> {
    let mut keys: Vec<String> = indexed.stored.iter().map(block_text).collect();
    keys.extend(name_search_key(&key.full_name));
    keys
}

/// What the store keeps of one person to find it again.
fn person_index(doc_id: &str, member_id: &str, area: &str, key: &PersonKey) -> PersonIndex {
    let cccd = comparison::cccd_digits(key.cccd.as_deref());
    let cccd_digits = cccd.as_deref().map(comparison::sorted_digits);
    let indexed = blocking::index_keys(key, area);
    PersonIndex {
        doc_id: doc_id.to_string(),
        member_id: member_id.to_string(),
        area: area.to_string(),
        key_json: serde_json::to_string(key).unwrap_or_default(),
        cccd,
        cccd_digits,
        dob: key.dob.map(|d| d.format("%Y-%m-%d").to_string()),
        birth_year: key.dob.map(|d| d.year().to_string()),
        blocks: stored_keys(key, &indexed),
        probes: indexed.probes.iter().map(block_text).collect(),
    }
}

/// A candidate's explanation as stored: each comparison's level and weight, the hard rule, the model.
pub fn explanation_json(score: &MatchScore) -> String {
    serde_json::to_string(score).unwrap_or_default()
}

/// Re-scores the open duplicate candidates with `model` (decided ones keep their decision),
/// and, when `reindex`, rebuilds every person's blocking keys. Records the model's version.
pub async fn rescore(tx: &mut Tx<'_>, model: &LinkageModel, reindex: bool) -> Result<RescoreReport, StorageError> {
    let mut report = RescoreReport::default();
    if reindex {
        // Every token is written again, a page of people at a time in token order.
        tx.clear_person_blocks().await?;
        let mut after = 0;
        loop {
            let rows = tx.people_after(after, 5000).await?;
            let Some((last, _)) = rows.last() else { break };
            after = *last;
            let people: Vec<(Vec<String>, i64)> = rows
                .par_iter()
                .filter_map(|(id, row)| {
                    let key = serde_json::from_str::<PersonKey>(&row.key_json).ok()?;
                    Some((stored_keys(&key, &blocking::index_keys(&key, &row.area)), *id))
                })
                .collect();
            let people: Vec<(&[String], i64)> = people.iter().map(|(k, id)| (k.as_slice(), *id)).collect();
            tx.add_person_blocks_in_bulk(&people).await?;
            report.reindexed += people.len();
        }
    }
    let mut after = 0;
    loop {
        let rows = tx.open_duplicates_after(after, 500).await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        for row in rows {
            let (Some((area_a, json_a)), Some((area_b, json_b))) =
                (tx.person(&row.a.0, &row.a.1).await?, tx.person(&row.b.0, &row.b.1).await?)
            else {
                // A record that is gone cannot be one person with anything.
                tx.rescore_duplicate_row(row.id, 0.0, "{}", false).await?;
                report.withdrawn += 1;
                continue;
            };
            let (Ok(a), Ok(b)) =
                (serde_json::from_str::<PersonKey>(&json_a), serde_json::from_str::<PersonKey>(&json_b))
            else {
                continue;
            };
            let score = model.score(
                &PersonRecord { key: &a, household_id: &row.a.0, area: &area_a },
                &PersonRecord { key: &b, household_id: &row.b.0, area: &area_b },
            );
            let keep = model.is_review(score.probability);
            tx.rescore_duplicate_row(row.id, score.probability, &explanation_json(&score), keep).await?;
            if keep {
                report.kept += 1;
            } else {
                report.withdrawn += 1;
            }
        }
    }
    tx.put_setting(LINKAGE_MODEL_SETTING, &linkage_version(model)).await?;
    Ok(report)
}

/// At start-up: when the stored candidates and keys were made by another model or other blocking
/// rules (or none are recorded), rebuilds the blocking keys and re-scores the open candidates.
pub async fn rescore_after_upgrade(tx: &mut Tx<'_>) -> Result<Option<RescoreReport>, StorageError> {
    let model = LinkageModel::shipped();
    if tx.setting(LINKAGE_MODEL_SETTING).await?.as_deref() == Some(linkage_version(model).as_str()) {
        return Ok(None);
    }
    rescore(tx, model, true).await.map(Some)
}

/// Stores merged documents: each saved copy, its new changes on the feed, an audit row and
/// its progress figures, then queues their reviews — a batch costs a few statements, not a
/// few per household.
pub async fn store_merged(
    tx: &mut Tx<'_>,
    merged: &mut [Merged],
    origin: &str,
    user: &str,
    action: &str,
    now: i64,
) -> Result<(), StorageError> {
    let writes = doc_writes(merged, now);
    let settled: Vec<Settled<'_>> = merged.iter().map(Merged::settled).collect();
    store_written(tx, &settled, &writes, origin, user, action, now).await
}

/// What storing merged documents writes for each (saved bytes, feed changes, figures, view),
/// computed on every core — outside any transaction when a caller prepares a batch ahead.
pub fn doc_writes(merged: &mut [Merged], now: i64) -> Vec<DocWrite> {
    merged
        .par_iter_mut()
        .map(|m| {
            let snapshot = m.doc.save_nocompress();
            // A household new to an area reaches its devices whole: they may hold none of it.
            let changes = match (&m.moved_from, &m.household.area_code) {
                (Some(from), to) if from != to => snapshot.clone(),
                _ => m.new_changes.clone(),
            };
            DocWrite {
                doc_id: m.household.household_id.clone(),
                area: m.household.area_code.clone(),
                snapshot,
                heads: m.heads.join(","),
                changes,
                stats: household_stats(&m.household, day_of(now)),
                view: serde_json::to_vec(&m.household).unwrap_or_default(),
                events: m
                    .household
                    .events
                    .iter()
                    .filter(|e| chrono::NaiveDate::parse_from_str(&e.date, "%Y-%m-%d").is_ok())
                    .map(|e| (e.kind.code().to_string(), e.date.clone()))
                    .collect(),
                moved_from: m.moved_from.clone().filter(|from| *from != m.household.area_code),
                sealed: None,
            }
        })
        .collect()
}

/// Stores merged documents whose writes ([`doc_writes`]) are made: the writes, the audit of
/// moves, photo references, then the reviews they queue.
pub async fn store_written(
    tx: &mut Tx<'_>,
    merged: &[Settled<'_>],
    writes: &[DocWrite],
    origin: &str,
    user: &str,
    action: &str,
    now: i64,
) -> Result<(), StorageError> {
    if merged.is_empty() {
        return Ok(());
    }
    tx.store_docs(writes, origin, user, action, now).await?;
    for w in writes {
        if let Some(from) = &w.moved_from {
            tx.audit(now, origin, user, &w.doc_id, &w.heads, &format!("move {from} → {}", w.area)).await?;
        }
    }
    let ids: Vec<&str> = merged.iter().map(|m| m.household.household_id.as_str()).collect();
    let refs: Vec<(String, String, String)> = merged
        .iter()
        .flat_map(|m| {
            let h = &m.household;
            photo_ids(h).into_iter().map(|blob| (blob, h.household_id.clone(), h.area_code.clone()))
        })
        .collect();
    tx.set_photo_refs(&ids, &refs).await?;
    queue_reviews(tx, merged, now).await
}

/// The day in Vietnam of a Unix time: the clock is the caller's `now`, never read here.
fn day_of(now: i64) -> chrono::NaiveDate {
    doorstep_core::vn_time::date(now)
}

/// A household's progress figures: completeness by the residence survey's
/// required rules, validity by the CCCD checks (number, province, sex, century, year of birth).
pub fn household_stats(h: &Household, today: chrono::NaiveDate) -> HouseholdStats {
    let issues = residence_survey().validate_owned(h.to_answers(), today);
    let complete = !issues.iter().any(|i| matches!(i.kind, IssueKind::Required | IssueKind::TooFewRows));
    let mut stats = HouseholdStats {
        members: h.members.len() as i64,
        complete,
        verified: h.verification.as_ref().is_some_and(|v| v.state == VerificationState::Verified),
        verified_residents: h.verified_residents() as i64,
        review: h.review_status().code().to_string(),
        ..HouseholdStats::default()
    };
    for (_, key) in people(h) {
        let Some(cccd) = key.cccd.as_deref() else { continue };
        stats.cccd_present += 1;
        if Cccd::parse(cccd).and_then(|c| c.check_against(key.dob, key.sex)).is_ok() {
            stats.cccd_valid += 1;
        }
    }
    stats
}

/// Computes the figures of documents stored before figures were kept.
/// Indexes the photo references of every stored document once (a store from before the
/// index), and checks each whole blob against them: one that does not open under a key its
/// uploader's area holds stays untrusted, and is replaced at its owner's next upload.
pub async fn backfill_photo_refs(tx: &mut Tx<'_>) -> Result<Option<usize>, StorageError> {
    const DONE: &str = "photo_refs_indexed";
    if tx.setting(DONE).await?.is_some() {
        return Ok(None);
    }
    let mut indexed = 0;
    if tx.any_blob().await? {
        let editor = server_editor("server");
        for id in tx.doc_ids().await? {
            let Some((snapshot, area)) = tx.doc(&id).await? else { continue };
            let Ok(doc) = HouseholdDoc::load(&id, &snapshot, &editor) else { continue };
            let refs: Vec<(String, String, String)> =
                photo_ids(&doc.read()).into_iter().map(|b| (b, id.clone(), area.clone())).collect();
            if !refs.is_empty() {
                tx.set_photo_refs(&[id.as_str()], &refs).await?;
                indexed += 1;
            }
        }
        for (blob, total, area) in tx.whole_blobs().await? {
            if blob_opens(tx, &blob, total, &area).await? == Some(true) {
                tx.set_blob_verified(&blob).await?;
            } else {
                tracing::warn!(%blob, "a stored attachment does not open under its household's key: not trusted");
            }
        }
    }
    tx.put_setting(DONE, "1").await?;
    Ok(Some(indexed))
}

pub async fn backfill_stats(tx: &mut Tx<'_>, now: i64) -> Result<usize, StorageError> {
    let ids = tx.docs_without_stats().await?;
    let editor = server_editor("server");
    for id in &ids {
        let Some((snapshot, area)) = tx.doc(id).await? else { continue };
        let doc = HouseholdDoc::load(id, &snapshot, &editor).map_err(StorageError::internal)?;
        tx.put_stats(id, &area, &household_stats(&doc.read(), day_of(now)), now).await?;
    }
    Ok(ids.len())
}

/// Applies an operator's decision on a duplicate candidate: merge links the two
/// records (both stay, with their histories), undo removes the link and reopens
/// the candidate, dismiss closes it. Each decision is audited on both households.
/// A merge (and its undo) is also a change by the operator to both documents —
/// each member's `same_person_as` names the other record — so devices learn of it
/// at their next sync.
pub async fn decide_duplicate(
    tx: &mut Tx<'_>,
    id: i64,
    action: DuplicateAction,
    operator: &str,
    now: i64,
) -> Result<(), StorageError> {
    let missing = || StorageError::new(ErrorKind::NotFound, ErrorCode::NotFound, "no such duplicate candidate");
    let row = tx.duplicate_row(id).await?.ok_or_else(missing)?;
    // A decision writes both households: their provinces' locks first, then the candidate
    // read again (another operator's decision may have come first).
    let (area_a, area_b) = (tx.doc_area(&row.a.0).await?, tx.doc_area(&row.b.0).await?);
    let areas: Vec<&str> = [area_a.as_deref(), area_b.as_deref()].into_iter().flatten().collect();
    tx.lock_areas(&areas).await?;
    let Some(row): Option<DuplicateRow> = tx.duplicate_row(id).await? else { return Err(missing()) };
    let status = match (action, row.status.as_str()) {
        (DuplicateAction::Merge, "open") => {
            tx.link_residents(&row, operator, now).await?;
            let (a, b) = (format!("{}/{}", row.a.0, row.a.1), format!("{}/{}", row.b.0, row.b.1));
            write_link(tx, &row.a, Some(b), operator, "merge", now).await?;
            write_link(tx, &row.b, Some(a), operator, "merge", now).await?;
            "merged"
        }
        (DuplicateAction::Dismiss, "open") => "dismissed",
        (DuplicateAction::Undo, "merged") => {
            tx.unlink_residents(id, operator, now).await?;
            write_link(tx, &row.a, None, operator, "unmerge", now).await?;
            write_link(tx, &row.b, None, operator, "unmerge", now).await?;
            "open"
        }
        (DuplicateAction::Undo, "dismissed") => "open",
        (_, current) => {
            return Err(StorageError::new(
                ErrorKind::Conflict,
                ErrorCode::Malformed,
                format!("candidate #{id} is {current}: cannot {}", action.as_str()),
            ));
        }
    };
    tx.decide_duplicate_row(id, status, action.as_str(), operator, now).await?;
    let what = format!("{} duplicate #{id}: {}/{} = {}/{}", action.as_str(), row.a.0, row.a.1, row.b.0, row.b.1);
    tx.audit(now, "console", operator, &row.a.0, "", &what).await?;
    if row.b.0 != row.a.0 {
        tx.audit(now, "console", operator, &row.b.0, "", &what).await?;
    }
    Ok(())
}

/// Applies a device's sync request and builds its answer, inside `tx`.
pub async fn sync(
    tx: &mut Tx<'_>,
    device: &Device,
    req: &SyncRequest,
    snapshot_page_docs: i64,
    now: i64,
) -> Result<SyncResponse, StorageError> {
    if req.push.len() > MAX_PUSH_DOCS {
        return Err(StorageError::new(ErrorKind::TooLarge, ErrorCode::TooLarge, "too many documents in one request"));
    }
    if !req.push.is_empty() {
        // Pushes write the feed of the device's province: its lock before any document is read.
        tx.lock_areas(&[&device.area]).await?;
    }
    // The stored copies of every pushed document in one read; merged in order (a document
    // named twice merges into its first merge); stored as one batch.
    let ids: Vec<&str> = req.push.iter().map(|p| p.doc_id.as_str()).collect();
    let mut existing = tx.docs(&ids).await?;
    // Merging is most of a push's work: a document named once, stored within the device's
    // areas or new, merges on every core first; the rest (moved away, named twice) in order.
    let mut named: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for id in &ids {
        *named.entry(id).or_default() += 1;
    }
    let mut merged_first: Vec<Option<Result<Merged, StorageError>>> = req
        .push
        .par_iter()
        .map(|push| match existing.get(&push.doc_id) {
            Some((_, area)) if !area_within(area, &device.area) => None,
            _ if named.get(push.doc_id.as_str()).is_some_and(|n| *n > 1) => None,
            stored => Some(merge_push(stored.map(|(s, _)| s.as_slice()), push, Bound::Scope(&device.area))),
        })
        .collect();
    let mut acked = Vec::with_capacity(req.push.len());
    let mut changed: Vec<Merged> = Vec::new();
    let mut refused = Vec::new();
    for (n, push) in req.push.iter().enumerate() {
        let outcome = match (merged_first[n].take(), existing.get(&push.doc_id)) {
            (Some(first), _) => first,
            (None, Some((_, area))) if !area_within(area, &device.area) => {
                // Moved out of the device's areas: its edits from before it was told are taken.
                match crate::moves::departed_since(tx, &push.doc_id, &device.area, req.cursor).await? {
                    Some(to) => {
                        tx.lock_areas(&[&to]).await?;
                        let stored = tx.doc(&push.doc_id).await?;
                        if let Some((saved, area)) = &stored {
                            existing.insert(push.doc_id.clone(), (saved.clone(), area.clone()));
                        }
                        match stored {
                            Some((saved, area)) => merge_push(Some(&saved), push, Bound::Departed(&area)),
                            None => Err(StorageError::internal("a departed household without its document")),
                        }
                    }
                    None => Err(crate::moves::refusal_outside(tx, &push.doc_id, &device.area).await?),
                }
            }
            (None, stored) => merge_push(stored.map(|(s, _)| s.as_slice()), push, Bound::Scope(&device.area)),
        };
        // One bad household gets its own refusal; the rest of the request is taken.
        let mut merged = match outcome {
            Ok(m) => m,
            Err(e) if e.refuses_one_document() => {
                refused.push(DocRefusal { doc_id: push.doc_id.clone(), code: e.code, message: e.message });
                continue;
            }
            Err(e) => return Err(e),
        };
        acked.push(DocAck::new(push.doc_id.clone(), &merged.doc.heads()));
        if !merged.changed {
            continue;
        }
        // A move within the device's areas: the old area's devices are told, the new area's
        // get the whole document.
        if let Some((_, stored_area)) = existing.get(&push.doc_id)
            && *stored_area != merged.household.area_code
        {
            merged.moved_from = Some(stored_area.clone());
        }
        if ids.iter().filter(|id| **id == push.doc_id).count() > 1 {
            existing.insert(push.doc_id.clone(), (merged.doc.save(), merged.household.area_code.clone()));
        }
        match changed.iter().position(|m| m.household.household_id == merged.household.household_id) {
            Some(i) => {
                let mut earlier = std::mem::take(&mut changed[i].new_changes);
                earlier.extend_from_slice(&merged.new_changes);
                merged.new_changes = earlier;
                merged.moved_from = merged.moved_from.or(changed[i].moved_from.take());
                changed[i] = merged;
            }
            None => changed.push(merged),
        }
    }
    store_merged(tx, &mut changed, &device.device_id, &req.user, "sync", now).await?;
    let mut page = match &req.snapshot {
        Some(position) if req.cursor == 0 => {
            snapshot_page(tx, &device.area, position, snapshot_page_docs.max(1)).await?
        }
        _ => feed_page(tx, device, req.cursor).await?,
    };
    // Households the device quarantined: their whole saved documents first.
    if !req.resend.is_empty() {
        if req.resend.len() > MAX_RESEND_DOCS {
            return Err(StorageError::new(ErrorKind::TooLarge, ErrorCode::TooLarge, "too many documents to resend"));
        }
        let ids: Vec<&str> = req.resend.iter().map(String::as_str).collect();
        let mut stored = tx.docs(&ids).await?;
        let mut whole = Vec::new();
        for id in &req.resend {
            if let Some((saved, area)) = stored.remove(id)
                && area_within(&area, &device.area)
            {
                whole.push(DocPull { doc_id: id.clone(), area, changes: saved });
            }
        }
        whole.append(&mut page.pull);
        page.pull = whole;
    }
    if let Some(key) = req.transfer_key.as_deref() {
        if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StorageError::invalid("a transfer key is 64 hex digits"));
        }
        tx.set_transfer_key(&device.device_id, &key.to_ascii_lowercase(), now).await?;
    }
    let transfers = crate::moves::take_transfer_asks(tx, device, &req.user, &req.transfers, now).await?;
    let directory = tx.directory(&device.area).await?;
    tx.touch_device(&device.device_id, now).await?;
    Ok(SyncResponse {
        protocol: PROTOCOL_VERSION,
        acked,
        pull: page.pull,
        next_cursor: page.next_cursor,
        more: page.more,
        refused,
        snapshot: page.snapshot,
        directory,
        departed: page.departed,
        transfers,
    })
}

/// One page of what a device pulls.
struct PullPage {
    pull: Vec<DocPull>,
    next_cursor: u64,
    more: bool,
    snapshot: Option<SnapshotPosition>,
    /// Households that left the device's areas.
    departed: Vec<DocDeparture>,
}

/// The area's feed after the cursor, without the device's own changes, one bounded page.
async fn feed_page(tx: &mut Tx<'_>, device: &Device, cursor: u64) -> Result<PullPage, StorageError> {
    let from = i64::try_from(cursor).map_err(|_| StorageError::invalid("cursor out of range"))?;
    let rows = tx.feed_after(from, &device.area, FEED_SCAN).await?;
    let scanned = rows.len() as i64;
    let mut pull: Vec<DocPull> = Vec::new();
    let mut bytes = 0usize;
    let mut next_cursor = cursor;
    let mut more = scanned == FEED_SCAN;
    let mut departed: Vec<DocDeparture> = Vec::new();
    for row in rows {
        if let Some(to) = row.moved_to {
            // A departure: devices that do not cover the new area drop the household (and
            // anything of it earlier in this page); the others get it from the new area's row.
            if !area_within(&to, &device.area) {
                pull.retain(|p| p.doc_id != row.doc_id);
                departed.retain(|d| d.doc_id != row.doc_id);
                departed.push(DocDeparture { doc_id: row.doc_id, moved_to: to });
            }
            next_cursor = row.seq as u64;
            continue;
        }
        if row.origin != device.device_id {
            // Back in the device's areas later in the page: it arrives whole.
            departed.retain(|d| d.doc_id != row.doc_id);
            if bytes > 0 && bytes + row.changes.len() > PULL_PAGE_BYTES {
                more = true;
                break;
            }
            bytes += row.changes.len();
            match pull.iter_mut().find(|p| p.doc_id == row.doc_id) {
                Some(p) => {
                    p.area = row.area;
                    p.changes.extend_from_slice(&row.changes);
                }
                None => pull.push(DocPull { doc_id: row.doc_id, area: row.area, changes: row.changes }),
            }
        }
        next_cursor = row.seq as u64;
    }
    Ok(PullPage { pull, next_cursor, more, snapshot: None, departed })
}

/// One page of a compact first sync: the area's saved documents after `position`, whole.
/// The first page fixes the mark, the area's last feed position: documents read at or after
/// that moment hold every change up to it, so the feed after the mark completes them.
async fn snapshot_page(
    tx: &mut Tx<'_>,
    area: &str,
    position: &SnapshotPosition,
    page_docs: i64,
) -> Result<PullPage, StorageError> {
    let mark = match position.mark {
        0 => tx.feed_mark(area).await?.max(0) as u64,
        m => m,
    };
    if mark == 0 {
        // Nothing in the area yet: the feed from the start is all there is.
        return Ok(PullPage { pull: Vec::new(), next_cursor: 0, more: false, snapshot: None, departed: Vec::new() });
    }
    let docs = tx.docs_of_area_after(area, (&position.after_area, &position.after_doc), page_docs).await?;
    let mut more = docs.len() as i64 == page_docs;
    let mut pull: Vec<DocPull> = Vec::new();
    let mut bytes = 0usize;
    for (doc_area, doc_id, saved) in docs {
        if bytes > 0 && bytes + saved.len() > PULL_PAGE_BYTES {
            more = true;
            break;
        }
        bytes += saved.len();
        pull.push(DocPull { doc_id, area: doc_area, changes: saved });
    }
    match pull.last() {
        Some(last) if more => {
            let snapshot =
                Some(SnapshotPosition { mark, after_area: last.area.clone(), after_doc: last.doc_id.clone() });
            Ok(PullPage { pull, next_cursor: 0, more: true, snapshot, departed: Vec::new() })
        }
        // The documents are done: the feed after the mark is next (if it holds anything).
        _ => {
            let more = tx.feed_mark(area).await?.max(0) as u64 > mark;
            Ok(PullPage { pull, next_cursor: mark, more, snapshot: None, departed: Vec::new() })
        }
    }
}

/// A partial upload untouched this long may be taken over by another device.
const STALE_UPLOAD_SECS: i64 = 600;

/// Takes one chunk of an attachment blob, resumably: a chunk is stored only at
/// the offset the server has reached; every answer says where that is.
pub async fn put_blob(
    tx: &mut Tx<'_>,
    device: &Device,
    put: &BlobPut,
    quota: u64,
    now: i64,
) -> Result<BlobPutAck, StorageError> {
    if !is_blob_id(&put.id) {
        return Err(StorageError::invalid("a blob id is 64 lowercase hex digits"));
    }
    if put.total == 0 || put.total > MAX_BLOB_BYTES as u64 || put.chunk.len() > BLOB_CHUNK_BYTES {
        return Err(StorageError::new(ErrorKind::TooLarge, ErrorCode::TooLarge, "attachment or chunk too large"));
    }
    // Bound to the uploader's area: a household of its area must refer to the blob (its
    // reference holds the key the upload is checked with).
    if tx.photo_refs(&put.id, &device.area).await?.is_empty() {
        return Err(StorageError::new(
            ErrorKind::NotFound,
            ErrorCode::NotFound,
            "no household of this device's area refers to this attachment: sync the household first",
        ));
    }
    let total = put.total as i64;
    let state = match tx.blob_state(&put.id).await? {
        Some(s) if s.received == s.total => {
            if tx.blob_verified(&put.id).await? || blob_opens(tx, &put.id, s.total, &device.area).await? == Some(true) {
                tx.set_blob_verified(&put.id).await?;
                return Ok(BlobPutAck { protocol: PROTOCOL_VERSION, received: s.total as u64, complete: true });
            }
            // Stored but never shown to open under its key (poisoned, or from before this
            // check): never trusted, replaced by this upload.
            tracing::warn!(blob = %put.id, "an attachment that does not open under its key is replaced");
            check_quota(tx, device, total, quota).await?;
            tx.restart_blob(&put.id, &device.device_id, &device.area, total, now).await?;
            tx.blob_state(&put.id).await?.ok_or_else(|| StorageError::internal("blob vanished"))?
        }
        Some(s) if s.device_id != device.device_id => {
            if now - s.updated_at < STALE_UPLOAD_SECS {
                return Err(StorageError::new(
                    ErrorKind::Conflict,
                    ErrorCode::Malformed,
                    "another device is uploading this attachment: try later",
                ));
            }
            check_quota(tx, device, total, quota).await?;
            tx.restart_blob(&put.id, &device.device_id, &device.area, total, now).await?;
            tx.blob_state(&put.id).await?.ok_or_else(|| StorageError::internal("blob vanished"))?
        }
        Some(s) => s,
        None => {
            check_quota(tx, device, total, quota).await?;
            tx.create_blob(&put.id, &device.area, &device.device_id, total, now).await?;
            tx.blob_state(&put.id).await?.ok_or_else(|| StorageError::internal("blob vanished"))?
        }
    };
    if state.total != total {
        return Err(StorageError::invalid("the size differs from the upload under way"));
    }
    let mut received = state.received;
    if put.offset == received as u64 && !put.chunk.is_empty() {
        if received + put.chunk.len() as i64 > total {
            return Err(StorageError::invalid("the chunk runs past the announced size"));
        }
        received += put.chunk.len() as i64;
        tx.append_blob(&put.id, state.received, &put.chunk, received == total, now).await?;
        if received == total {
            // Whole: it must open under the key a household of the uploader's area holds, and
            // hash to its id. Otherwise nothing of it is kept.
            if blob_opens(tx, &put.id, total, &device.area).await? != Some(true) {
                tx.discard_blob(&put.id).await?;
                return Err(StorageError::new(
                    ErrorKind::Unprocessable,
                    ErrorCode::InvalidDocument,
                    "the attachment does not open under its household's key, or is not the photo its id names",
                ));
            }
            tx.set_blob_verified(&put.id).await?;
        }
    }
    Ok(BlobPutAck { protocol: PROTOCOL_VERSION, received: received as u64, complete: received == total })
}

/// Whether a stored blob opens under the key that some household within `scope` holds for it
/// in a photo field, and is the plaintext its id names. `None` when no household there refers to it.
async fn blob_opens(tx: &mut Tx<'_>, id: &str, total: i64, scope: &str) -> Result<Option<bool>, StorageError> {
    let docs = tx.photo_refs(id, scope).await?;
    if docs.is_empty() {
        return Ok(None);
    }
    let sealed = tx.read_blob(id, 0, total).await?;
    let editor = server_editor("server");
    for doc_id in docs {
        let Some((snapshot, _)) = tx.doc(&doc_id).await? else { continue };
        let Ok(doc) = HouseholdDoc::load(&doc_id, &snapshot, &editor) else { continue };
        let household = doc.read();
        let keys = household.photos().into_iter().filter_map(|text| PhotoRef::parse(text).ok());
        for r in keys.flat_map(|p| [p.full, p.thumb]).filter(|r| r.id == id) {
            if open_blob(&r, &sealed).is_ok() {
                return Ok(Some(true));
            }
        }
    }
    Ok(Some(false))
}

/// The blob ids a household's photo fields refer to (photo and thumbnail).
pub fn photo_ids(household: &Household) -> Vec<String> {
    let refs = household.photos().into_iter().filter_map(|text| PhotoRef::parse(text).ok());
    refs.flat_map(|p| [p.full.id, p.thumb.id]).collect()
}

async fn check_quota(tx: &mut Tx<'_>, device: &Device, total: i64, quota: u64) -> Result<(), StorageError> {
    let used = tx.device_blob_bytes(&device.device_id).await?;
    if (used + total) as u64 > quota {
        return Err(StorageError::new(
            ErrorKind::TooLarge,
            ErrorCode::QuotaExceeded,
            format!("attachment quota of {quota} bytes for this device is used up ({used} used)"),
        ));
    }
    Ok(())
}

/// Serves a range of a complete attachment blob within the device's areas.
pub async fn get_blob(tx: &mut Tx<'_>, device: &Device, get: &BlobGet) -> Result<BlobChunk, StorageError> {
    let not_found = || StorageError::new(ErrorKind::NotFound, ErrorCode::NotFound, "no such attachment");
    if !is_blob_id(&get.id) {
        return Err(StorageError::invalid("a blob id is 64 lowercase hex digits"));
    }
    let s = tx.blob_state(&get.id).await?.ok_or_else(not_found)?;
    let related = area_within(&s.area, &device.area) || area_within(&device.area, &s.area);
    // Only a blob shown to open under its household's key is handed out.
    if s.received != s.total || !related || !tx.blob_verified(&get.id).await? {
        return Err(not_found());
    }
    let offset = i64::try_from(get.offset).map_err(|_| StorageError::invalid("offset out of range"))?.min(s.total);
    let max = (get.max.min(BLOB_CHUNK_BYTES as u64)) as i64;
    let chunk = tx.read_blob(&get.id, offset, max).await?;
    Ok(BlobChunk { protocol: PROTOCOL_VERSION, total: s.total as u64, offset: offset as u64, chunk })
}

/// Resolves a conflict: a new change by the operator, written like any other.
/// Checks an operator's value for the field it goes into (the console and the admin API alike).
pub fn check_value(path: &str, value: &str) -> Result<(), StorageError> {
    if value.trim().is_empty() || value.chars().count() > MAX_VALUE_LEN {
        return Err(StorageError::invalid(format!("the value must be 1 to {MAX_VALUE_LEN} characters")));
    }
    match path.rsplit('/').next() {
        Some("cccd") => {
            Cccd::parse(value).map_err(|e| StorageError::invalid(format!("not a valid CCCD number: {e}")))?;
        }
        Some("dob") => {
            chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
                .map_err(|_| StorageError::invalid("a date of birth is written YYYY-MM-DD"))?;
        }
        Some("sex") if !matches!(value, "M" | "F") => {
            return Err(StorageError::invalid("sex is M or F"));
        }
        _ => {}
    }
    Ok(())
}

/// Longest value an operator may type into a field.
pub const MAX_VALUE_LEN: usize = 500;

/// Resolves a conflict with the operator's value (checked for its field), as a change devices pull.
pub async fn resolve(
    tx: &mut Tx<'_>,
    id: i64,
    value: Option<&str>,
    operator: &str,
    now: i64,
) -> Result<(), StorageError> {
    let missing = || StorageError::new(ErrorKind::NotFound, ErrorCode::NotFound, "no such open conflict");
    let (doc_id, path) = tx.conflict(id).await?.ok_or_else(missing)?;
    if path == "area_code" {
        // A household changes area by a move or a transfer, never through a conflict.
        return Err(StorageError::new(
            ErrorKind::Forbidden,
            ErrorCode::ForbiddenArea,
            "a household's area is not changed through a conflict: move or transfer it",
        ));
    }
    let area = tx.doc_area(&doc_id).await?.ok_or_else(|| StorageError::internal("conflict without a document"))?;
    tx.lock_areas(&[&area]).await?;
    // Read again under the lock: another operator may have resolved it first.
    let (doc_id, path) = tx.conflict(id).await?.ok_or_else(missing)?;
    if let Some(v) = value {
        check_value(&path, v)?;
    }
    let (snapshot, _) = tx.doc(&doc_id).await?.ok_or_else(|| StorageError::internal("conflict without a document"))?;
    let editor = server_editor(operator);
    let mut doc = HouseholdDoc::load(&doc_id, &snapshot, &editor).map_err(StorageError::internal)?;
    let before = doc.heads();
    doc.resolve(&path, value, &editor).map_err(|e| StorageError::invalid(e.to_string()))?;
    store_operator_change(tx, doc, &before, operator, "resolve", now).await?;
    tx.resolve_conflict_row(id, operator, now).await
}

/// Sets (or clears) a member's `same_person_as`: a change by the operator that devices
/// pull. A household or member no longer there is left alone.
async fn write_link(
    tx: &mut Tx<'_>,
    (doc_id, member_id): &(String, String),
    other: Option<String>,
    operator: &str,
    action: &str,
    now: i64,
) -> Result<(), StorageError> {
    let Some((snapshot, _)) = tx.doc(doc_id).await? else { return Ok(()) };
    let editor = server_editor(operator);
    let mut doc = HouseholdDoc::load(doc_id, &snapshot, &editor).map_err(StorageError::internal)?;
    let mut household = doc.read();
    let Some(member) = household.members.iter_mut().find(|m| &m.member_id == member_id) else { return Ok(()) };
    if member.same_person_as == other {
        return Ok(());
    }
    member.same_person_as = other;
    let before = doc.heads();
    doc.update(&household, &editor).map_err(StorageError::internal)?;
    store_operator_change(tx, doc, &before, operator, action, now).await
}

/// Stores a document an operator changed since `before`, as [`store_merged`] stores a push.
pub async fn store_operator_change(
    tx: &mut Tx<'_>,
    doc: HouseholdDoc,
    before: &[automerge::ChangeHash],
    operator: &str,
    action: &str,
    now: i64,
) -> Result<(), StorageError> {
    let mut merged = Merged::local_change(doc, before)?;
    store_merged(tx, std::slice::from_mut(&mut merged), "server", operator, action, now).await
}

#[cfg(test)]
mod value_tests {
    use super::check_value;

    #[test]
    fn typed_values_are_checked_for_their_field() {
        assert!(check_value("address", "Số 1").is_ok());
        assert!(check_value("address", "").is_err());
        assert!(check_value("address", &"x".repeat(501)).is_err());
        assert!(check_value("members/m0/cccd", "080166796635").is_ok());
        assert!(check_value("members/m0/cccd", "12345").is_err());
        assert!(check_value("members/m0/dob", "1990-02-30").is_err());
        assert!(check_value("members/m0/dob", "1990-02-28").is_ok());
        assert!(check_value("members/m0/sex", "X").is_err());
    }
}

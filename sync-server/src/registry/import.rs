//! Writing a batch of the registry's households into the store, as documents the
//! server writes under the "registry import" editor (docs/REGISTRY.md).

use automerge::ChangeHash;
use doorstep_core::reconcile::registry_update;
use doorstep_core::record::{Editor, Household, HouseholdDoc};
use doorstep_core::sync::protocol::area_within;
use rayon::prelude::*;

use std::collections::HashMap;
use std::sync::Arc;

use crate::at_rest::AtRest;
use crate::logic::{doc_writes, store_written};
use crate::merge::{Merged, Settled, server_editor};
use crate::store::model::ImportOutcome;
use crate::store::{DocWrite, StorageError, Tx};
use doorstep_core::record::Conflict;

/// The editor (Automerge author, audit user) of every change an import writes.
pub const IMPORT_EDITOR: &str = "registry import";

fn heads_of(text: &str) -> Vec<ChangeHash> {
    text.split(',').filter_map(|h| h.parse().ok()).collect()
}

/// What importing one household comes to: its outcome, the document to write, and the
/// heads to record as the registry's last version.
struct Prepared {
    outcome: ImportOutcome,
    write: Option<Merged>,
    base: Option<String>,
}

impl Prepared {
    fn skip(outcome: ImportOutcome) -> Prepared {
        Prepared { outcome, write: None, base: None }
    }
}

/// Builds what importing `incoming` writes, from the stored copy (`existing`: saved bytes
/// and area) and the heads of the registry's last import of it (`base`).
fn prepare(
    incoming: &Household,
    existing: Option<&(Vec<u8>, String)>,
    base: Option<&str>,
    area: &str,
    editor: &Editor,
) -> Result<Prepared, StorageError> {
    let id = incoming.household_id.as_str();
    let Some((snapshot, stored_area)) = existing else {
        let doc = HouseholdDoc::create(incoming, editor).map_err(StorageError::internal)?;
        let m = Merged::local_change(doc, &[])?;
        return Ok(Prepared { outcome: ImportOutcome::Created, base: Some(m.heads.join(",")), write: Some(m) });
    };
    if !area_within(stored_area, area) {
        return Ok(Prepared::skip(ImportOutcome::HeldElsewhere(stored_area.clone())));
    }
    let mut doc = HouseholdDoc::load(id, snapshot, editor).map_err(StorageError::internal)?;
    let before = doc.heads();
    let base = match base {
        Some(heads) => Some(doc.read_at(&heads_of(heads)).map_err(StorageError::internal)?.without_workflow()),
        None => None,
    };
    if base.as_ref() == Some(incoming) {
        return Ok(Prepared::skip(ImportOutcome::Unchanged));
    }
    let current = doc.read();
    let next = registry_update(&current, base.as_ref(), incoming);
    if next == current || !doc.update(&next, editor).map_err(StorageError::internal)? {
        // It already reads as the registry says: only the base moves on.
        let heads = before.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        return Ok(Prepared { outcome: ImportOutcome::Unchanged, write: None, base: Some(heads) });
    }
    let m = Merged::local_change(doc, &before)?;
    Ok(Prepared { outcome: ImportOutcome::Updated, base: Some(m.heads.join(",")), write: Some(m) })
}

/// What the store held of a batch's households when it was read: each one's last import
/// (heads, row tag) by id; the stored heads and area of those whose row changed since (a row
/// equal to the last one imported is unchanged whatever its document holds now); their saved
/// bytes; the keyed tag of each row, in order.
pub struct Observed {
    bases: HashMap<String, (String, String)>,
    heads: HashMap<String, (String, String)>,
    snapshots: HashMap<String, (Vec<u8>, String)>,
    tags: Vec<String>,
}

/// The ids of `rows` whose row differs from the last one imported (by keyed tag).
fn changed_ids<'a>(rows: &'a [Household], tags: &[String], bases: &HashMap<String, (String, String)>) -> Vec<&'a str> {
    rows.iter().zip(tags).filter(|(h, tag)| !same_row(bases, h, tag)).map(|(h, _)| h.household_id.as_str()).collect()
}

/// Reads what importing `rows` depends on (in a read transaction, or the write one).
pub async fn observe(tx: &mut Tx<'_>, rows: &[Household]) -> Result<Observed, StorageError> {
    let ids: Vec<&str> = rows.iter().map(|h| h.household_id.as_str()).collect();
    let bases = tx.import_bases(&ids).await?;
    // A row equal to the one the last import read (by its keyed tag) is unchanged: its
    // document is not even looked at.
    let tags: Vec<String> =
        rows.iter().map(|h| tx.registry_row_tag(&serde_json::to_string(h).unwrap_or_default())).collect();
    let changed = changed_ids(rows, &tags, &bases);
    let heads = tx.doc_heads(&changed).await?;
    let to_open: Vec<&str> = changed.into_iter().filter(|id| heads.contains_key(*id)).collect();
    let snapshots = tx.docs(&to_open).await?;
    Ok(Observed { bases, heads, snapshots, tags })
}

fn same_row(bases: &HashMap<String, (String, String)>, h: &Household, tag: &str) -> bool {
    bases.get(h.household_id.as_str()).is_some_and(|(_, stored)| stored == tag)
}

/// A batch of the registry's rows made ready to write: documents built, saved and summarised
/// on every core from what the store held ([`Observed`]). [`apply`] writes it if the store
/// still holds that, and imports the batch afresh otherwise.
pub struct ImportPlan {
    area: String,
    rows: Vec<Household>,
    tags: Vec<String>,
    bases: HashMap<String, (String, String)>,
    heads: HashMap<String, (String, String)>,
    outcomes: Vec<ImportOutcome>,
    /// Each written household as it reads, with its concurrent values (its Automerge
    /// document is dropped once its writes are made: a batch waits in memory).
    settled: Vec<(Household, Vec<Conflict>)>,
    writes: Vec<DocWrite>,
    new_bases: Vec<(String, String, String)>,
}

/// Builds what importing `rows` into `area` writes (Automerge is most of an import's work:
/// it runs on every core, and needs no transaction).
fn prepare_plan(area: String, rows: Vec<Household>, seen: Observed, now: i64) -> Result<ImportPlan, StorageError> {
    let editor = server_editor(IMPORT_EDITOR);
    let prepared: Vec<Prepared> = rows
        .par_iter()
        .zip(&seen.tags)
        .map(|(incoming, tag)| {
            if same_row(&seen.bases, incoming, tag) {
                return Ok(Prepared::skip(ImportOutcome::Unchanged));
            }
            let id = incoming.household_id.as_str();
            let base = seen.bases.get(id).map(|(heads, _)| heads.as_str());
            prepare(incoming, seen.snapshots.get(id), base, &area, &editor)
        })
        .collect::<Result<_, _>>()?;
    let mut outcomes = Vec::with_capacity(rows.len());
    let mut merged = Vec::new();
    let mut new_bases = Vec::new();
    for ((incoming, p), tag) in rows.iter().zip(prepared).zip(&seen.tags) {
        if let Some(heads) = p.base {
            new_bases.push((incoming.household_id.clone(), heads, tag.clone()));
        }
        merged.extend(p.write);
        outcomes.push(p.outcome);
    }
    let writes = doc_writes(&mut merged, now);
    let settled = merged.into_iter().map(|m| (m.household, m.conflicts)).collect();
    Ok(ImportPlan {
        area,
        rows,
        tags: seen.tags,
        bases: seen.bases,
        heads: seen.heads,
        outcomes,
        settled,
        writes,
        new_bases,
    })
}

/// Writes a plan in this transaction (which holds the area's province lock).
async fn write_plan(tx: &mut Tx<'_>, plan: &ImportPlan, now: i64) -> Result<Vec<ImportOutcome>, StorageError> {
    let settled: Vec<Settled<'_>> =
        plan.settled.iter().map(|(household, conflicts)| Settled { household, conflicts }).collect();
    store_written(tx, &settled, &plan.writes, "registry", IMPORT_EDITOR, "import", now).await?;
    tx.put_import_bases(&plan.new_bases).await?;
    Ok(plan.outcomes.clone())
}

/// Imports checked households (each within `area`, ids unique in the batch) in this
/// transaction: a new household becomes a document; a known one takes the fields the
/// registry changed since its last import ([`registry_update`]), as one change. Returns
/// what happened to each, in order.
pub async fn import_batch(
    tx: &mut Tx<'_>,
    area: &str,
    rows: &[Household],
    now: i64,
) -> Result<Vec<ImportOutcome>, StorageError> {
    // Every household written lies within `area`, so within its province: one lock, taken
    // before any read. (A stored household outside `area` is refused, not written.)
    tx.lock_areas(&[area]).await?;
    let seen = observe(tx, rows).await?;
    let plan = prepare_plan(area.to_string(), rows.to_vec(), seen, now)?;
    write_plan(tx, &plan, now).await
}

/// Prepares a batch from what was observed, on the CPU pool, without blocking the caller's
/// task: an import reads and prepares its next batch while the last one is written. The
/// documents are compressed and sealed here too, with `keys`: the one writer only writes.
pub async fn plan(
    area: String,
    rows: Vec<Household>,
    seen: Observed,
    now: i64,
    keys: Arc<AtRest>,
) -> Result<ImportPlan, StorageError> {
    let (send, receive) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let prepare = || {
            let mut plan = prepare_plan(area, rows, seen, now)?;
            plan.writes.par_iter_mut().try_for_each(|w| w.seal_ahead(&keys))?;
            Ok(plan)
        };
        // A panic in a spawned job would abort the process: it becomes this batch's error.
        let prepared = std::panic::catch_unwind(std::panic::AssertUnwindSafe(prepare))
            .unwrap_or_else(|_| Err(StorageError::internal("preparing an import batch failed")));
        let _ = send.send(prepared);
    });
    receive.await.map_err(|_| StorageError::internal("the import's preparation stopped"))?
}

/// Writes a prepared batch in this transaction if the store still holds what the plan read
/// (each household's last import and heads); imports the batch afresh otherwise (another
/// writer, or an earlier batch of the same file, changed one of them).
pub async fn apply(tx: &mut Tx<'_>, plan: &ImportPlan, now: i64) -> Result<Vec<ImportOutcome>, StorageError> {
    tx.lock_areas(&[plan.area.as_str()]).await?;
    let ids: Vec<&str> = plan.rows.iter().map(|h| h.household_id.as_str()).collect();
    if tx.import_bases(&ids).await? != plan.bases
        || tx.doc_heads(&changed_ids(&plan.rows, &plan.tags, &plan.bases)).await? != plan.heads
    {
        return import_batch(tx, &plan.area, &plan.rows, now).await;
    }
    write_plan(tx, plan, now).await
}

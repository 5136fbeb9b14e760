//! Writing a batch of the registry's households into the store, as documents the
//! server writes under the "registry import" editor (docs/REGISTRY.md).

use automerge::ChangeHash;
use doorstep_core::reconcile::registry_update;
use doorstep_core::record::{Editor, Household, HouseholdDoc};
use doorstep_core::sync::protocol::area_within;
use rayon::prelude::*;

use crate::logic::store_merged;
use crate::merge::{Merged, server_editor};
use crate::store::model::ImportOutcome;
use crate::store::{StorageError, Tx};

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
    let ids: Vec<&str> = rows.iter().map(|h| h.household_id.as_str()).collect();
    // Every household written lies within `area`, so within its province: one lock, taken
    // before any read. (A stored household outside `area` is refused, not written.)
    tx.lock_areas(&[area]).await?;
    let bases = tx.import_bases(&ids).await?;
    // A row equal to the one the last import read (by its keyed tag) is unchanged: its
    // document is not even opened.
    let tags: Vec<String> =
        rows.iter().map(|h| tx.registry_row_tag(&serde_json::to_string(h).unwrap_or_default())).collect();
    let same: Vec<bool> = rows
        .iter()
        .zip(&tags)
        .map(|(h, tag)| bases.get(h.household_id.as_str()).is_some_and(|(_, stored)| stored == tag))
        .collect();
    let to_open: Vec<&str> = ids.iter().zip(&same).filter(|(_, same)| !**same).map(|(id, _)| *id).collect();
    let existing = tx.docs(&to_open).await?;
    let editor = server_editor(IMPORT_EDITOR);
    // The documents are built on every core (Automerge is most of an import's work); the
    // writes then go in as one batch.
    let prepared: Vec<Prepared> = rows
        .par_iter()
        .zip(&same)
        .map(|(incoming, same)| {
            if *same {
                return Ok(Prepared::skip(ImportOutcome::Unchanged));
            }
            let id = incoming.household_id.as_str();
            prepare(incoming, existing.get(id), bases.get(id).map(|(heads, _)| heads.as_str()), area, &editor)
        })
        .collect::<Result<_, _>>()?;
    let mut outcomes = Vec::with_capacity(rows.len());
    let mut writes = Vec::new();
    let mut new_bases = Vec::new();
    for ((incoming, p), tag) in rows.iter().zip(prepared).zip(tags) {
        if let Some(heads) = p.base {
            new_bases.push((incoming.household_id.clone(), heads, tag));
        }
        writes.extend(p.write);
        outcomes.push(p.outcome);
    }
    store_merged(tx, &mut writes, "registry", IMPORT_EDITOR, "import", now).await?;
    tx.put_import_bases(&new_bases).await?;
    Ok(outcomes)
}

//! Reading an area's households in the order of their latest change, for exports.

use doorstep_core::record::{Household, HouseholdDoc};
use rayon::prelude::*;

use crate::merge::server_editor;
use crate::store::model::{DocBody, ExportPage, ExportedHousehold};
use crate::store::{StorageError, Tx};

/// Households an export page holds at most.
pub const MAX_EXPORT_PAGE: i64 = 2000;

/// The households of `area` changed after `since`, at most `limit` (capped at
/// [`MAX_EXPORT_PAGE`]), each as its document reads now.
///
/// `area` lies within one province, whose writers commit their positions in order
/// (docs/adr/0005): every change at or before the page's last position has committed, so
/// a later page from `next` — on any node — misses nothing.
pub async fn export_page(tx: &mut Tx<'_>, area: &str, since: i64, limit: i64) -> Result<ExportPage, StorageError> {
    let rows = tx.docs_changed_after(area, since, limit.clamp(1, MAX_EXPORT_PAGE)).await?;
    let editor = server_editor("export");
    let next = rows.last().map_or(since, |r| r.seq);
    // Opening the page's documents runs on every core.
    let households = rows
        .par_iter()
        .map(|row| {
            let household = match &row.body {
                DocBody::View(json) => serde_json::from_slice(json).map_err(StorageError::internal)?,
                DocBody::Saved(saved) => {
                    HouseholdDoc::load(&row.doc_id, saved, &editor).map_err(StorageError::internal)?.read()
                }
            };
            Ok(ExportedHousehold { cursor: row.seq, updated_at: row.updated_at, household, moved_out: false })
        })
        .collect::<Result<Vec<ExportedHousehold>, StorageError>>()?;
    // Households that moved out of the area meanwhile, in position order with the others:
    // the first `limit` of both lists are the page.
    let limit = limit.clamp(1, MAX_EXPORT_PAGE);
    let departures = tx.departures_after(area, since, limit).await?;
    if departures.is_empty() {
        return Ok(ExportPage { households, next });
    }
    let moved = departures.into_iter().map(|(seq, doc_id, moved_to, at)| ExportedHousehold {
        cursor: seq,
        updated_at: at,
        household: Household { household_id: doc_id, area_code: moved_to, ..Household::default() },
        moved_out: true,
    });
    let mut all: Vec<ExportedHousehold> = households.into_iter().chain(moved).collect();
    all.sort_by_key(|h| h.cursor);
    all.truncate(limit as usize);
    let next = all.last().map_or(since, |h| h.cursor);
    Ok(ExportPage { households: all, next })
}

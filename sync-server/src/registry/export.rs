//! Reading an area's households in the order of their latest change, for exports.

use doorstep_core::record::HouseholdDoc;

use crate::merge::server_editor;
use crate::store::model::{ExportPage, ExportedHousehold};
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
    let mut page = ExportPage { households: Vec::with_capacity(rows.len()), next: since };
    for row in rows {
        let doc = HouseholdDoc::load(&row.doc_id, &row.snapshot, &editor).map_err(StorageError::internal)?;
        page.next = row.seq;
        page.households.push(ExportedHousehold { cursor: row.seq, updated_at: row.updated_at, household: doc.read() });
    }
    Ok(page)
}

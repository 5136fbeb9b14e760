//! An operator's review of a household: approve it, or return it to the officer for
//! correction with a comment. The decision is a change to the household's document (so the
//! officer's phone sees it at its next sync), audited as `approve` or `return`.

use doorstep_core::record::HouseholdDoc;
use doorstep_core::sync::protocol::{ErrorCode, area_within};
use doorstep_core::verification::ReviewDecision;

use crate::logic::store_operator_change;
use crate::merge::server_editor;
use crate::store::{ErrorKind, StorageError, Tx};

/// A review comment's length at most, in characters.
pub const MAX_COMMENT_CHARS: usize = 1000;

/// Records `operator`'s decision on household `doc_id`, which must lie within `scope`
/// (the operator's area; empty for every area). A return needs a comment.
pub async fn review(
    tx: &mut Tx<'_>,
    doc_id: &str,
    decision: ReviewDecision,
    comment: Option<&str>,
    operator: &str,
    scope: &str,
    now: i64,
) -> Result<(), StorageError> {
    let comment = comment.map(str::trim).filter(|c| !c.is_empty());
    if decision == ReviewDecision::Returned && comment.is_none() {
        return Err(StorageError::invalid("a household returned for correction needs a comment saying what to fix"));
    }
    if comment.is_some_and(|c| c.chars().count() > MAX_COMMENT_CHARS) {
        return Err(StorageError::invalid(format!("a comment has at most {MAX_COMMENT_CHARS} characters")));
    }
    let missing = || StorageError::new(ErrorKind::NotFound, ErrorCode::NotFound, "no such household");
    let area = tx.doc_area(doc_id).await?.ok_or_else(missing)?;
    if !scope.is_empty() && !area_within(&area, scope) {
        return Err(StorageError::new(
            ErrorKind::Forbidden,
            ErrorCode::ForbiddenArea,
            "the household is outside your area",
        ));
    }
    tx.lock_areas(&[&area]).await?;
    let (snapshot, _) = tx.doc(doc_id).await?.ok_or_else(missing)?;
    let editor = server_editor(operator);
    let mut doc = HouseholdDoc::load(doc_id, &snapshot, &editor).map_err(StorageError::internal)?;
    let before = doc.heads();
    doc.review(&editor, decision, comment, now).map_err(StorageError::internal)?;
    let action = match decision {
        ReviewDecision::Approved => "approve",
        ReviewDecision::Returned => "return for correction",
    };
    store_operator_change(tx, doc, &before, operator, action, now).await
}

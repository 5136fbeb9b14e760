//! Server-side document work: merging pushed changes into the server's copy,
//! and finding conflicts and people for the review queues.

use automerge::ChangeHash;
use doorstep_core::identity::{PersonKey, Sex};
use doorstep_core::record::{Conflict, Editor, Household, HouseholdDoc};
use doorstep_core::sync::protocol::{DocPush, ErrorCode, MAX_DOC_CHANGE_BYTES, area_within};

use crate::store::{ErrorKind, StorageError};

/// The result of merging one push.
pub struct Merged {
    /// The document after the merge.
    pub doc: HouseholdDoc,
    /// Whether the push brought anything new.
    pub changed: bool,
    /// Changes that were new to the server (for the feed).
    pub new_changes: Vec<u8>,
    /// Heads after the merge, hex.
    pub heads: Vec<String>,
    /// The household as it now reads.
    pub household: Household,
    /// Fields with concurrent values.
    pub conflicts: Vec<Conflict>,
    /// The area the household left, when this merge moved it to another one.
    pub moved_from: Option<String>,
}

/// What storing a merged document reads of it once its writes are made ([`crate::logic::doc_writes`]):
/// how it now reads and its concurrent values. The Automerge document is not needed any more,
/// so a batch prepared ahead (an import's) keeps only this.
#[derive(Debug, Clone, Copy)]
pub struct Settled<'a> {
    /// The household as it now reads.
    pub household: &'a Household,
    /// Fields with concurrent values.
    pub conflicts: &'a [Conflict],
}

impl Merged {
    /// What storing this merge reads of it once its writes are made.
    pub fn settled(&self) -> Settled<'_> {
        Settled { household: &self.household, conflicts: &self.conflicts }
    }

    /// A document changed here (by an operator or an import) since `before`: its new
    /// changes, heads, reading and conflicts. A document made here from nothing (`before`
    /// empty) has one author and holds no concurrent values.
    pub fn local_change(mut doc: HouseholdDoc, before: &[ChangeHash]) -> Result<Merged, StorageError> {
        let heads = doc.heads();
        let new_changes = doc.save_after(before);
        let household = doc.read();
        let conflicts = if before.is_empty() { Vec::new() } else { doc.conflicts().map_err(StorageError::internal)? };
        Ok(Merged {
            doc,
            changed: true,
            new_changes,
            heads: heads.iter().map(ToString::to_string).collect(),
            household,
            conflicts,
            moved_from: None,
        })
    }
}

/// The server's own editor, for changes operators make.
pub fn server_editor(user: &str) -> Editor {
    Editor { user: user.to_string(), device: "server".to_string() }
}

fn invalid(message: impl Into<String>) -> StorageError {
    StorageError::new(ErrorKind::Unprocessable, ErrorCode::InvalidDocument, message)
}

/// Where a pushed household must lie after its merge.
#[derive(Debug, Clone, Copy)]
pub enum Bound<'a> {
    /// Within the device's scope (any area of it: a move inside the scope is allowed).
    Scope(&'a str),
    /// Exactly where it is: it moved out of the device's scope after the device last
    /// synced, and the device's edits from before it knew are still taken.
    Departed(&'a str),
}

/// Merges `push` into the server's copy (`existing`, a saved document), checking
/// that it is a household document for this id that stays within `bound`.
/// Hostile bytes cannot panic the server: loading runs under `catch_unwind`.
pub fn merge_push(existing: Option<&[u8]>, push: &DocPush, bound: Bound<'_>) -> Result<Merged, StorageError> {
    if push.changes.len() > MAX_DOC_CHANGE_BYTES {
        return Err(StorageError::new(
            ErrorKind::TooLarge,
            ErrorCode::TooLarge,
            format!("changes for {} too large", push.doc_id),
        ));
    }
    if doorstep_core::record::check_id(&push.doc_id).is_err() {
        return Err(StorageError::invalid("bad document id"));
    }
    if let Err(e) = doorstep_core::area::Area::parse(&push.area) {
        return Err(StorageError::invalid(e.to_string()));
    }
    if let Bound::Scope(scope) = bound
        && !area_within(&push.area, scope)
    {
        return Err(StorageError::new(
            ErrorKind::Forbidden,
            ErrorCode::ForbiddenArea,
            format!("{} is outside this device's area", push.doc_id),
        ));
    }
    let editor = server_editor("server");
    let result = std::panic::catch_unwind(|| -> Result<Merged, StorageError> {
        let (mut doc, before): (HouseholdDoc, Vec<ChangeHash>) = match existing {
            Some(bytes) => {
                let mut doc = HouseholdDoc::load(&push.doc_id, bytes, &editor).map_err(StorageError::internal)?;
                let before = doc.heads();
                doc.load_incremental(&push.changes).map_err(|_| invalid("the changes do not load"))?;
                (doc, before)
            }
            None => (
                HouseholdDoc::load(&push.doc_id, &push.changes, &editor)
                    .map_err(|_| invalid("not a household document for this id"))?,
                Vec::new(),
            ),
        };
        doc.check_immutable_fields()
            .map_err(|e| StorageError::new(ErrorKind::Unprocessable, ErrorCode::ImmutableField, e.to_string()))?;
        let mut household = doc.read();
        if let Bound::Departed(area) = bound
            && household.area_code != area
        {
            // The device moved the household too, not knowing it had left: the move the
            // server made stands, as a change of the server's on top of both.
            household.area_code = area.to_string();
            doc.update(&household, &editor).map_err(StorageError::internal)?;
            household = doc.read();
        }
        if doorstep_core::area::Area::parse(&household.area_code).is_err() {
            return Err(invalid("the household's area code is not digits in dot-separated parts"));
        }
        let stays = match bound {
            Bound::Scope(scope) => area_within(&household.area_code, scope),
            Bound::Departed(area) => household.area_code == area,
        };
        if !stays {
            return Err(StorageError::new(
                ErrorKind::Forbidden,
                ErrorCode::ForbiddenArea,
                "the document moves outside this device's area",
            ));
        }
        let heads = doc.heads();
        let changed = heads != before;
        let new_changes = if changed { doc.save_after(&before) } else { Vec::new() };
        let conflicts = doc.conflicts().map_err(StorageError::internal)?;
        Ok(Merged {
            doc,
            changed,
            new_changes,
            heads: heads.iter().map(ToString::to_string).collect(),
            household,
            conflicts,
            moved_from: None,
        })
    });
    match result {
        Ok(r) => r,
        Err(_) => Err(invalid("the changes could not be read")),
    }
}

/// The identifying fields of each member, for duplicate matching.
pub fn people(h: &Household) -> Vec<(String, PersonKey)> {
    h.members
        .iter()
        .map(|m| {
            (
                m.member_id.clone(),
                PersonKey {
                    full_name: m.full_name.clone(),
                    dob: m.dob.as_deref().and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()),
                    sex: m.sex.as_deref().and_then(Sex::parse),
                    cccd: m.cccd.clone().filter(|c| !c.is_empty()),
                    phone: m.phone.clone().filter(|p| !p.is_empty()),
                },
            )
        })
        .collect()
}

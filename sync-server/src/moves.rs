//! Households that move between areas (docs/SYNC-PROTOCOL.md, "Moves and transfers";
//! docs/adr/0008). A device moves a household within its own areas by changing its area;
//! a move out of them is a transfer request that an operator whose scope covers both areas
//! approves (the server then makes the move) or refuses. Either way the old area's feed
//! gets a departure and the new area's feed the whole document ([`crate::store::Tx::store_docs`]).

use doorstep_core::area::Area;
use doorstep_core::record::HouseholdDoc;
use doorstep_core::sync::protocol::{
    ErrorCode, MAX_TRANSFER_ASKS, MAX_TRANSFER_REASON_CHARS, TransferAsk, TransferOutcome, TransferStatus, area_within,
};

use crate::logic::store_merged;
use crate::merge::{Merged, server_editor};
use crate::store::model::{Device, TransferRow};
use crate::store::{ErrorKind, StorageError, Tx};

/// The area a household went to, if it left `scope` after feed position `cursor`: a device
/// of `scope` that had not synced past its departure still has its edits from before taken.
pub async fn departed_since(
    tx: &mut Tx<'_>,
    doc_id: &str,
    scope: &str,
    cursor: u64,
) -> Result<Option<String>, StorageError> {
    let after = i64::try_from(cursor).map_err(|_| StorageError::invalid("cursor out of range"))?;
    Ok(tx.departure_after(doc_id, scope, after).await?.map(|(_, to)| to))
}

/// Why a push of a household outside the device's areas is refused: it moved away (and the
/// device was already told), or it never was the device's.
pub async fn refusal_outside(tx: &mut Tx<'_>, doc_id: &str, scope: &str) -> Result<StorageError, StorageError> {
    Ok(match tx.departure_after(doc_id, scope, 0).await? {
        Some((_, to)) => StorageError::new(
            ErrorKind::Forbidden,
            ErrorCode::MovedAway,
            format!("{doc_id} moved to {to}: send its later edits to that area's officers"),
        ),
        None => StorageError::new(
            ErrorKind::Forbidden,
            ErrorCode::ForbiddenArea,
            format!("{doc_id} belongs to another area"),
        ),
    })
}

fn outcome(row: &TransferRow) -> TransferOutcome {
    TransferOutcome {
        request_id: row.request_id.clone(),
        status: TransferStatus::parse(&row.status).unwrap_or(TransferStatus::Pending),
        note: row.note.clone(),
    }
}

fn refused(ask: &TransferAsk, note: &str) -> TransferOutcome {
    TransferOutcome { request_id: ask.request_id.clone(), status: TransferStatus::Refused, note: note.to_string() }
}

/// A request id: what a device makes with a UUID, nothing else.
fn check_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Takes a device's transfer requests (a repeat changes nothing) and answers where each
/// stands. A request for a household outside the device's areas, or to one of its own
/// areas, is refused at once, with why; one for a household the server does not hold yet
/// stays pending, unrecorded, and is taken when the device asks again.
pub async fn take_transfer_asks(
    tx: &mut Tx<'_>,
    device: &Device,
    user: &str,
    asks: &[TransferAsk],
    now: i64,
) -> Result<Vec<TransferOutcome>, StorageError> {
    if asks.len() > MAX_TRANSFER_ASKS {
        return Err(StorageError::new(ErrorKind::TooLarge, ErrorCode::TooLarge, "too many transfer requests"));
    }
    let mut out = Vec::with_capacity(asks.len());
    for ask in asks {
        if !check_request_id(&ask.request_id) {
            return Err(StorageError::invalid("a transfer request id is letters, digits and dashes, at most 64"));
        }
        if let Some(row) = tx.transfer_of_device(&device.device_id, &ask.request_id).await? {
            out.push(outcome(&row));
            continue;
        }
        if doorstep_core::record::check_id(&ask.doc_id).is_err() {
            out.push(refused(ask, "not a household id"));
            continue;
        }
        if Area::parse(&ask.to_area).is_err() {
            out.push(refused(ask, "the area to move to is not digits in dot-separated parts"));
            continue;
        }
        if ask.reason.chars().count() > MAX_TRANSFER_REASON_CHARS {
            out.push(refused(ask, "the reason is too long"));
            continue;
        }
        let from = match tx.doc_area(&ask.doc_id).await? {
            Some(area) if area_within(&area, &device.area) => area,
            Some(_) => {
                out.push(refused(ask, "the household is not in this device's areas"));
                continue;
            }
            None => {
                // Not pushed yet (it may be on its way): asked again at the next sync.
                out.push(TransferOutcome {
                    request_id: ask.request_id.clone(),
                    status: TransferStatus::Pending,
                    note: String::new(),
                });
                continue;
            }
        };
        if area_within(&ask.to_area, &device.area) {
            out.push(refused(ask, "the area lies within this device's own: move the household there directly"));
            continue;
        }
        if tx.transfer_pending_for(&ask.doc_id).await? {
            out.push(refused(ask, "a transfer of this household already waits for an operator"));
            continue;
        }
        tx.insert_transfer(
            &device.device_id,
            &ask.request_id,
            &ask.doc_id,
            &from,
            &ask.to_area,
            user,
            &ask.reason,
            now,
        )
        .await?;
        tx.audit(now, &device.device_id, user, &ask.doc_id, "", &format!("ask transfer {from} → {}", ask.to_area))
            .await?;
        out.push(TransferOutcome {
            request_id: ask.request_id.clone(),
            status: TransferStatus::Pending,
            note: String::new(),
        });
    }
    Ok(out)
}

/// An operator's decision on a pending transfer request. `scope` is the operator's area
/// (empty for every area): it must cover both the household's area and the new one. An
/// approval moves the household (a server change to its document, audited as a transfer).
pub async fn decide_transfer(
    tx: &mut Tx<'_>,
    id: i64,
    approve: bool,
    note: &str,
    operator: &str,
    scope: &str,
    now: i64,
) -> Result<(), StorageError> {
    let note = note.trim();
    if note.chars().count() > MAX_TRANSFER_REASON_CHARS {
        return Err(StorageError::invalid(format!("a note has at most {MAX_TRANSFER_REASON_CHARS} characters")));
    }
    let missing = || StorageError::new(ErrorKind::NotFound, ErrorCode::NotFound, "no such transfer request");
    let row = tx.transfer(id).await?.ok_or_else(missing)?;
    let covers = |area: &str| scope.is_empty() || area_within(area, scope);
    if !covers(&row.from_area) || !covers(&row.to_area) {
        return Err(StorageError::new(
            ErrorKind::Forbidden,
            ErrorCode::ForbiddenArea,
            "deciding this transfer needs an operator whose area covers both areas",
        ));
    }
    if row.status != TransferStatus::Pending.as_str() {
        return Err(StorageError::new(ErrorKind::Conflict, ErrorCode::Malformed, "this request was already decided"));
    }
    if approve {
        tx.lock_areas(&[&row.from_area, &row.to_area]).await?;
        let (saved, area) = tx.doc(&row.doc_id).await?.ok_or_else(missing)?;
        if area != row.from_area {
            return Err(StorageError::new(
                ErrorKind::Conflict,
                ErrorCode::Malformed,
                format!("the household moved to {area} since it was asked: refuse this request"),
            ));
        }
        move_household(tx, &row.doc_id, &saved, &row.from_area, &row.to_area, operator, now).await?;
    }
    let status = if approve { TransferStatus::Approved } else { TransferStatus::Refused };
    if !tx.decide_transfer(id, status.as_str(), note, operator, now).await? {
        return Err(StorageError::new(ErrorKind::Conflict, ErrorCode::Malformed, "this request was already decided"));
    }
    let verb = if approve { "approve" } else { "refuse" };
    tx.audit(now, "console", operator, &row.doc_id, "", &format!("{verb} transfer {} → {}", row.from_area, row.to_area))
        .await
}

/// Moves a stored household (its saved document `saved`, in `from`) to `to`, as a change
/// by `operator`. The caller holds both provinces' write locks.
pub async fn move_household(
    tx: &mut Tx<'_>,
    doc_id: &str,
    saved: &[u8],
    from: &str,
    to: &str,
    operator: &str,
    now: i64,
) -> Result<(), StorageError> {
    let editor = server_editor(operator);
    let mut doc = HouseholdDoc::load(doc_id, saved, &editor).map_err(StorageError::internal)?;
    let before = doc.heads();
    let mut household = doc.read();
    household.area_code = to.to_string();
    doc.update(&household, &editor).map_err(StorageError::internal)?;
    let mut merged = Merged::local_change(doc, &before)?;
    merged.moved_from = Some(from.to_string());
    store_merged(tx, std::slice::from_mut(&mut merged), "server", operator, "transfer", now).await
}

//! Transfer requests: households a device asked to move out of its areas. An operator whose
//! area covers both the household's area and the new one approves (the household moves: the
//! old area's devices drop it, the new area's receive it whole) or refuses, with a note the
//! officer's phone shows at its next sync.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{Html, Response};
use doorstep_core::sync::protocol::{MAX_TRANSFER_REASON_CHARS, TransferStatus};
use maud::html;
use serde::Deserialize;

use super::auth::{Current, Posted, csrf, scoped_area};
use super::households::household_link;
use super::layout::{ListQuery, PageError, done, filter_form, flash, page, time};
use crate::state::AppState;

/// Requests a list shows at most.
const LIST_LIMIT: i64 = 200;

/// A status's bilingual name.
fn status_label(status: TransferStatus) -> &'static str {
    match status {
        TransferStatus::Pending => "Chờ quyết định · Waiting",
        TransferStatus::Approved => "Đã chấp thuận · Approved",
        TransferStatus::Refused => "Đã từ chối · Refused",
    }
}

/// GET /console/transfers?status=pending|approved|refused&area=…: the requests whose both
/// areas lie within the area (the operator's own unless narrowed).
pub async fn list(
    State(state): State<Arc<AppState>>,
    current: Current,
    Query(q): Query<ListQuery>,
) -> Result<Html<String>, PageError> {
    let area = scoped_area(&current.0, &q.area)?;
    let status = q.status.as_deref().and_then(TransferStatus::parse).unwrap_or(TransferStatus::Pending);
    let items = state.storage.transfers(status.as_str().into(), area.clone(), LIST_LIMIT).await?;
    let statuses = [TransferStatus::Pending, TransferStatus::Approved, TransferStatus::Refused]
        .map(|s| (s.as_str(), status_label(s)));
    let body = html! {
        h1 { "Chuyển hộ · Household transfers" }
        p.muted { "Yêu cầu chuyển hộ ra khỏi khu vực của thiết bị. Chỉ hiện yêu cầu mà cả hai khu vực thuộc phạm vi của bạn. · "
            "Requests to move a household out of a device's areas. Only requests whose both areas lie within your scope are shown." }
        (flash(q.flash.done.as_deref()))
        (filter_form("/console/transfers", &area, &statuses, status.as_str()))
        @if items.is_empty() {
            p.muted { "Không có yêu cầu nào. · No requests." }
        } @else {
            table.transfers {
                thead { tr { th { "Hộ · Household" } th { "Từ · From" } th { "Đến · To" } th { "Cán bộ · Officer" }
                    th { "Lý do · Reason" } th { "Lúc · Asked" }
                    @if status == TransferStatus::Pending { th { "Quyết định · Decision" } } @else { th { "Ghi chú · Note" } } } }
                tbody { @for t in &items { tr data-request=(t.request_id) {
                    td { (household_link(&t.doc_id)) } td { (t.from_area) } td { (t.to_area) } td { (t.username) }
                    td { (t.reason) } td { (time(t.created_at)) }
                    @if status == TransferStatus::Pending {
                        td { form.transfer method="post" action={ "/console/transfers/" (t.id) } {
                            (csrf(&current.0))
                            input name="note" maxlength=(MAX_TRANSFER_REASON_CHARS) placeholder="Ghi chú · Note";
                            " "
                            button.primary type="submit" name="decision" value="approve" { "Chấp thuận · Approve" }
                            " "
                            button type="submit" name="decision" value="refuse" { "Từ chối · Refuse" }
                        } }
                    } @else {
                        td { (t.note) @if let Some(by) = &t.decided_by { " — " (by) } }
                    }
                } } }
            }
        }
    };
    Ok(page("Transfers", Some(&current.0), "transfers", body))
}

#[derive(Deserialize)]
pub struct Decision {
    decision: String,
    #[serde(default)]
    note: String,
}

/// POST /console/transfers/{id}: approve or refuse, with an optional note.
pub async fn decide(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
    posted: Posted<Decision>,
) -> Result<Response, PageError> {
    let approve = match posted.form.decision.as_str() {
        "approve" => true,
        "refuse" => false,
        _ => return Err(PageError::bad_request("Quyết định không rõ. · Unknown decision.")),
    };
    if posted.form.note.chars().count() > MAX_TRANSFER_REASON_CHARS {
        return Err(PageError::bad_request("Ghi chú quá dài. · The note is too long."));
    }
    state
        .storage
        .decide_transfer(
            id,
            approve,
            posted.form.note.clone(),
            posted.session.username.clone(),
            posted.session.area.clone(),
            state.now(),
        )
        .await?;
    let msg = if approve {
        "Đã chấp thuận, hộ đã được chuyển. · Approved: the household moved."
    } else {
        "Đã từ chối. · Refused."
    };
    Ok(done("/console/transfers", msg))
}

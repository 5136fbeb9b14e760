//! The operators' review: households waiting for review, returned for correction, and
//! approved, by area; and the decision on one household (approve, or return with a comment).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{Html, Response};
use doorstep_core::verification::{ReviewDecision, ReviewStatus};
use maud::html;
use serde::Deserialize;

use super::auth::{Current, Posted, scoped_area};
use super::households::household_link;
use super::layout::{ListQuery, PageError, done, filter_form, flash, page, time};
use crate::review::MAX_COMMENT_CHARS;
use crate::state::AppState;

/// Households a review list shows at most.
const LIST_LIMIT: i64 = 200;

/// A status's bilingual name.
pub fn status_label(status: ReviewStatus) -> &'static str {
    match status {
        ReviewStatus::NotSubmitted => "Chưa xác minh · Not verified yet",
        ReviewStatus::Waiting => "Chờ duyệt · Waiting for review",
        ReviewStatus::Returned => "Trả lại để sửa · Returned for correction",
        ReviewStatus::Approved => "Đã duyệt · Approved",
    }
}

/// GET /console/review?status=waiting|returned|approved&area=…
pub async fn list(
    State(state): State<Arc<AppState>>,
    current: Current,
    Query(q): Query<ListQuery>,
) -> Result<Html<String>, PageError> {
    let area = scoped_area(&current.0, &q.area)?;
    let status = q
        .status
        .as_deref()
        .and_then(ReviewStatus::parse)
        .filter(|s| *s != ReviewStatus::NotSubmitted)
        .unwrap_or(ReviewStatus::Waiting);
    let items = state.storage.households_in_review(area.clone(), status.code().into(), LIST_LIMIT).await?;
    let statuses =
        [ReviewStatus::Waiting, ReviewStatus::Returned, ReviewStatus::Approved].map(|s| (s.code(), status_label(s)));
    let body = html! {
        h1 { "Duyệt hộ · Household review" }
        (flash(q.flash.done.as_deref()))
        (filter_form("/console/review", &area, &statuses, status.code()))
        @if items.is_empty() {
            p.muted { "Không có hộ nào. · No households." }
        } @else {
            table {
                thead { tr { th { "Hộ · Household" } th { "Khu vực · Area" } th.num { "Nhân khẩu · Residents" }
                    th.num { "Đã xác minh · Verified" } th { "Thay đổi lúc · Changed" } } }
                tbody { @for i in &items { tr {
                    td { (household_link(&i.doc_id)) } td { (i.area) } td.num { (i.members) }
                    td.num { (i.verified_residents) } td { (time(i.updated_at)) }
                } } }
            }
            @if items.len() as i64 == LIST_LIMIT { p.muted { "Hiện " (LIST_LIMIT) " hộ mới nhất. · Showing the latest " (LIST_LIMIT) "." } }
        }
    };
    Ok(page("Review", Some(&current.0), "review", body))
}

#[derive(Deserialize)]
pub struct Decision {
    decision: String,
    #[serde(default)]
    comment: String,
}

/// POST /console/households/{id}/review: approve, or return with a comment.
pub async fn decide(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    posted: Posted<Decision>,
) -> Result<Response, PageError> {
    let decision = match posted.form.decision.as_str() {
        "approve" => ReviewDecision::Approved,
        "return" => ReviewDecision::Returned,
        _ => return Err(PageError::bad_request("Quyết định không rõ. · Unknown decision.")),
    };
    if decision == ReviewDecision::Returned && posted.form.comment.trim().is_empty() {
        return Err(PageError::bad_request(
            "Trả lại cần ghi rõ điều cần sửa. · Say what to fix when returning a household.",
        ));
    }
    if posted.form.comment.chars().count() > MAX_COMMENT_CHARS {
        return Err(PageError::bad_request("Nhận xét quá dài. · The comment is too long."));
    }
    let comment = Some(posted.form.comment.clone()).filter(|c| !c.trim().is_empty());
    state
        .storage
        .review_household(
            id.clone(),
            decision,
            comment,
            posted.session.username.clone(),
            posted.session.area.clone(),
            state.now(),
        )
        .await?;
    let msg = match decision {
        ReviewDecision::Approved => "Đã duyệt. · Approved.",
        ReviewDecision::Returned => "Đã trả lại để sửa. · Returned for correction.",
    };
    Ok(done(&format!("/console/households/{id}"), msg))
}

/// The household page's review section: its verification, where it stands, and the decision form.
pub fn section(h: &doorstep_core::record::Household, session: &crate::storage::Session) -> maud::Markup {
    let status = h.review_status();
    html! {
        section.card.review style="margin-top:16px" {
            h2 { "Xác minh và duyệt · Verification and review" }
            dl.facts {
                dt { "Xác minh tại nhà · Verified at the door" }
                dd { @match &h.verification {
                    Some(v) => {
                        (match v.state { doorstep_core::verification::VerificationState::Verified => "đã xác minh · verified",
                            doorstep_core::verification::VerificationState::NeedsCorrection => "cần sửa · needs correction" })
                        " — " (v.by) " · " (v.device) " · " (time(v.at))
                        @if let Some(n) = &v.note { " — " em { (n) } }
                        @if h.edited_after_verification() { " " strong.warn { "(đã sửa sau khi xác minh · edited after verification)" } }
                    }
                    None => { "chưa · not yet" }
                } }
                dt { "Duyệt · Review" }
                dd id="review-status" { (status_label(status)) }
                @if let Some(r) = &h.review {
                    dt { "Lần duyệt gần nhất · Latest decision" }
                    dd { (r.decision.code()) " — " (r.by) " · " (time(r.at)) @if let Some(c) = &r.comment { " — " q { (c) } } }
                }
            }
            form.review method="post" action={ "/console/households/" (h.household_id) "/review" } {
                (super::auth::csrf(session))
                label { "Nhận xét (bắt buộc khi trả lại) · Comment (needed to return)"
                    textarea name="comment" maxlength=(MAX_COMMENT_CHARS) rows="3" {} }
                button.primary type="submit" name="decision" value="approve" { "Duyệt · Approve" }
                " "
                button type="submit" name="decision" value="return" { "Trả lại để sửa · Return for correction" }
            }
        }
    }
}

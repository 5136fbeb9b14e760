//! Duplicate candidates: two resident records that may be one person, with
//! the score and its reasons; merge (link, undoable) or dismiss.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use doorstep_core::identity::MatchReason;
use doorstep_core::record::{Household, Member};
use maud::{Markup, html};
use serde::Deserialize;

use super::auth::{Current, Posted, csrf, scoped_area};
use super::households::{cccd_ok, household_link, load_household};
use super::layout::{PageError, filter_form, flash, page, time};
use crate::api::{AppState, now};
use crate::storage::DuplicateAction;

/// Candidates shown on one page.
const PAGE_SIZE: usize = 50;

/// A reason in words, Vietnamese and English.
pub fn reason_text(r: MatchReason) -> &'static str {
    match r {
        MatchReason::SameCccd => "Cùng số CCCD · Same CCCD number",
        MatchReason::DifferentCccd => "Số CCCD khác nhau · Different CCCD numbers",
        MatchReason::SameName => "Cùng họ tên · Same name",
        MatchReason::ReorderedName => "Họ tên đảo thứ tự · Name in another order",
        MatchReason::MiddleNameOmitted => "Thiếu tên đệm · Middle name omitted",
        MatchReason::SimilarName => "Họ tên gần giống · Similar name",
        MatchReason::DifferentGivenName => "Tên khác nhau · Different given name",
        MatchReason::SameDob => "Cùng ngày sinh · Same date of birth",
        MatchReason::DobDayMonthSwapped => "Ngày và tháng sinh đảo · Day and month swapped",
        MatchReason::DifferentDob => "Ngày sinh khác · Different date of birth",
        MatchReason::DifferentSex => "Giới tính khác · Different sex",
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    area: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    done: Option<String>,
}

/// One side of a candidate; fields that differ from `other` are marked.
fn resident(h: Option<&Household>, doc_id: &str, member_id: &str, other: Option<&Member>) -> Markup {
    let m = h.and_then(|h| h.member(member_id));
    let differs = |f: fn(&Member) -> Option<&str>| -> Option<&'static str> {
        match (m, other) {
            (Some(a), Some(b)) if f(a) != f(b) => Some("diff"),
            _ => None,
        }
    };
    html! {
        div.side {
            @if let Some(m) = m {
                div.value class=[differs(|m| Some(m.full_name.as_str()))] { (m.full_name) }
                dl {
                    dt { "Ngày sinh · Born" } dd class=[differs(|m| m.dob.as_deref())] { (m.dob.as_deref().unwrap_or("–")) }
                    dt { "Giới · Sex" } dd class=[differs(|m| m.sex.as_deref())] { (m.sex.as_deref().unwrap_or("–")) }
                    dt { "CCCD" } dd class=[differs(|m| m.cccd.as_deref())] {
                        (m.cccd.as_deref().unwrap_or("–"))
                        @if cccd_ok(m) == Some(false) { " " span.badge.bad { "không hợp lệ · invalid" } }
                    }
                    dt { "Hộ · Household" } dd { (household_link(doc_id)) }
                    @if let Some(h) = h { dt { "Địa chỉ · Address" } dd { (h.address) } dt { "Khu vực · Area" } dd { (h.area_code) } }
                }
            } @else {
                div.value.muted { "Hồ sơ đã bị xoá · Record no longer present" }
                p { (household_link(doc_id)) " / " (member_id) }
            }
        }
    }
}

/// GET /console/duplicates?area=…&status=open|merged|dismissed|all
pub async fn list(
    State(state): State<Arc<AppState>>,
    current: Current,
    Query(q): Query<ListQuery>,
) -> Result<Html<String>, PageError> {
    let status = q.status.as_deref().unwrap_or("open");
    let area = scoped_area(&current.0, &q.area)?;
    let all = state.storage.duplicates((!area.is_empty()).then(|| area.clone())).await?;
    let shown: Vec<_> = all.iter().filter(|d| status == "all" || d.status == status).collect();
    let mut cards = Vec::new();
    for d in shown.iter().take(PAGE_SIZE) {
        let a = load_household(&state, &d.doc_a).await?.map(|(h, _)| h);
        let b = if d.doc_b == d.doc_a { a.clone() } else { load_household(&state, &d.doc_b).await?.map(|(h, _)| h) };
        cards.push((d, a, b));
    }
    let body = html! {
        h1 { "Trùng lặp · Duplicate residents" }
        (flash(q.done.as_deref()))
        (filter_form("/console/duplicates", &area, &[("open", "Đang mở · Open"), ("merged", "Đã gộp · Merged"), ("dismissed", "Đã bỏ qua · Dismissed"), ("all", "Tất cả · All")], status))
        p.muted { (shown.len()) " cặp nghi trùng · candidate pairs" }
        @for (d, a, b) in &cards {
            article.card id={ "duplicate-" (d.id) } {
                h3 {
                    "#" (d.id) " · " span.score { (format!("{:.0}%", d.score * 100.0)) }
                    " " span class={ "badge " (d.status) } { (d.status) }
                    " " span.muted { (d.area) }
                }
                ul.reasons { @for r in &d.reasons { li { (reason_text(*r)) } } }
                @let ma = a.as_ref().and_then(|h| h.member(&d.member_a));
                @let mb = b.as_ref().and_then(|h| h.member(&d.member_b));
                div.sides {
                    (resident(a.as_ref(), &d.doc_a, &d.member_a, mb))
                    (resident(b.as_ref(), &d.doc_b, &d.member_b, ma))
                }
                @if let Some((action, by, at)) = &d.decided {
                    p.muted { "Lần cuối · Last: " strong { (action) } " — " (by) ", " (time(*at)) }
                }
                div.actions {
                    @if d.status == "open" {
                        form.inline method="post" action={ "/console/duplicates/" (d.id) "/merge" } {
                            (csrf(&current.0))
                            button.ok type="submit" { "Gộp (liên kết) · Merge (link records)" }
                        }
                        form.inline method="post" action={ "/console/duplicates/" (d.id) "/dismiss" } {
                            (csrf(&current.0))
                            button type="submit" { "Không trùng · Not the same person" }
                        }
                    } @else {
                        form.inline method="post" action={ "/console/duplicates/" (d.id) "/undo" } {
                            (csrf(&current.0))
                            button.danger type="submit" { "Hoàn tác · Undo" }
                        }
                    }
                }
            }
        }
    };
    Ok(page("Duplicates", Some(&current.0), "duplicates", body))
}

/// POST /console/duplicates/{id}/{merge|undo|dismiss}
pub async fn decide(
    State(state): State<Arc<AppState>>,
    Path((id, action)): Path<(i64, String)>,
    posted: Posted<super::auth::Empty>,
) -> Result<Response, PageError> {
    let (action, message) = match action.as_str() {
        "merge" => (DuplicateAction::Merge, format!("Đã gộp #{id}. · Merged #{id}: the two records are linked.")),
        "undo" => (DuplicateAction::Undo, format!("Đã hoàn tác #{id}. · Undid #{id}: the candidate is open again.")),
        "dismiss" => (DuplicateAction::Dismiss, format!("Đã bỏ qua #{id}. · Dismissed #{id}.")),
        _ => return Err(PageError::not_found("No such action.")),
    };
    let scope = &posted.session.area;
    if !scope.is_empty() && !state.storage.duplicates(Some(scope.clone())).await?.iter().any(|d| d.id == id) {
        return Err(PageError::not_found("No such duplicate candidate in your area."));
    }
    state.storage.decide_duplicate(id, action, posted.session.username.clone(), now()).await?;
    let next = serde_urlencoded::to_string([("done", message)]).unwrap_or_default();
    let status = if matches!(action, DuplicateAction::Merge) { "merged" } else { "open" };
    Ok(Redirect::to(&format!("/console/duplicates?status={status}&{next}")).into_response())
}

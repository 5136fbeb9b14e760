//! Duplicate candidates: two resident records that may be one person, with
//! the match probability and each comparison's weight; merge (link, undoable) or dismiss.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use doorstep_core::identity::MatchScore;
use doorstep_core::identity::linkage::{Comparison, HardRule, Level};
use doorstep_core::record::{Household, Member};
use doorstep_core::sync::protocol::area_within;
use maud::{Markup, html};
use serde::Deserialize;

use super::auth::{Current, Posted, csrf, scoped_area};
use super::households::{cccd_ok, household_link, load_household};
use super::layout::{PageError, filter_form, flash, page, time};
use crate::state::AppState;
use crate::storage::DuplicateAction;

/// Candidates shown on one page.
const PAGE_SIZE: usize = 50;

/// A compared field in words, Vietnamese and English.
pub fn comparison_text(c: Comparison) -> &'static str {
    match c {
        Comparison::FullName => "Họ tên · Full name",
        Comparison::FamilyName => "Họ · Family name",
        Comparison::MiddleName => "Tên đệm · Middle name",
        Comparison::GivenName => "Tên · Given name",
        Comparison::DateOfBirth => "Ngày sinh · Date of birth",
        Comparison::Sex => "Giới tính · Sex",
        Comparison::Cccd => "Số CCCD · CCCD number",
        Comparison::Phone => "Số điện thoại · Phone number",
        Comparison::Household => "Hộ · Household",
        Comparison::Area => "Khu vực · Area",
    }
}

/// An agreement level in words, Vietnamese and English.
pub fn level_text(c: Comparison, l: Level) -> &'static str {
    match (c, l) {
        (Comparison::Household, Level::Exact) => "cùng hộ · the same household",
        (Comparison::Household, Level::Different) => "khác hộ · another household",
        (Comparison::Area, Level::Exact) => "cùng xã · the same commune",
        (_, Level::Exact) => "trùng khớp · the same",
        (_, Level::Reordered) => "đảo thứ tự · in another order",
        (_, Level::MiddleMissing) => "thiếu tên đệm · a middle name missing",
        (_, Level::JaroWinklerHigh) => "gần giống, lỗi gõ · nearly the same (a typo)",
        (_, Level::JaroWinklerMid) => "hơi giống · somewhat alike",
        (_, Level::DayMonthSwapped) => "đảo ngày và tháng · day and month swapped",
        (_, Level::YearOnly) => "chỉ ghi năm · the year only",
        (_, Level::OneComponentOff) => "lệch ngày hoặc tháng · the day or the month differs",
        (_, Level::YearOffByOne) => "lệch một năm · the year one off",
        (_, Level::Transposed) => "đảo hai chữ số · two digits swapped",
        (_, Level::SameDistrict) => "cùng huyện · the same district",
        (_, Level::SameProvince) => "cùng tỉnh · the same province",
        (_, Level::Different) => "khác · different",
        (_, Level::Missing) => "không đủ để so · not recorded on both",
        (_, Level::Subsumed) => "đã tính trong họ tên · counted in the full name",
    }
}

/// A hard rule in words, Vietnamese and English.
pub fn rule_text(r: HardRule) -> &'static str {
    match r {
        HardRule::DifferentCccd => {
            "Hai số CCCD khác nhau: không phải một người · Two different CCCD numbers: not one person"
        }
        HardRule::CccdTransposition => {
            "Số CCCD chỉ đảo hai chữ số: cần xem xét · The CCCD numbers differ by two swapped digits: worth a review"
        }
        HardRule::Twins => "Có thể là sinh đôi · Likely twins",
        HardRule::ParentAndChild => "Cha/mẹ và con cùng tên · A parent and a child of one name",
    }
}

/// A match probability as a percentage, with a decimal near the ends.
fn probability_text(p: f64) -> String {
    if (0.005..0.995).contains(&p) { format!("{:.0}%", p * 100.0) } else { format!("{:.2}%", p * 100.0) }
}

/// Why a pair was matched: each comparison's level and weight (bits of evidence for or against).
fn explanation(score: &MatchScore) -> Markup {
    html! {
        @if let Some(rule) = score.rule { p.rule { (rule_text(rule)) } }
        table.weights {
            thead { tr { th { "So sánh · Compared" } th { "Kết quả · Finding" } th.num { "Trọng số · Weight" } } }
            tbody {
                @for w in score.comparisons.iter().filter(|w| w.level.is_evidence()) {
                    // A weight that rounds to nothing reads as nothing, not as "-0.0".
                    @let weight = if w.weight.abs() < 0.05 { 0.0 } else { w.weight };
                    tr class=(if weight >= 0.0 { "for" } else { "against" }) {
                        td { (comparison_text(w.comparison)) }
                        td { (level_text(w.comparison, w.level)) }
                        td.num { (format!("{weight:+.1}")) }
                    }
                }
            }
        }
        p.muted { "Trọng số dương ủng hộ, âm phản đối việc là một người (bit, mô hình " (score.model) ") · "
            "Positive weights are evidence for one person, negative against (bits, model " (score.model) ")" }
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

/// Whether `area` lies within an operator's scope (an empty scope is every area).
fn in_scope(area: &str, scope: &str) -> bool {
    scope.is_empty() || area_within(area, scope)
}

/// The side of a candidate held outside the operator's area: said, never shown.
fn elsewhere() -> Markup {
    html! {
        div.side.elsewhere {
            div.value.muted { "Hồ sơ thuộc khu vực khác · Record held in another area" }
            p.muted { "Chi tiết chỉ hiện với người có quyền cả hai khu vực · Its details show only to an operator whose area covers both" }
        }
    }
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
    let scope = current.0.area.clone();
    let mut cards = Vec::new();
    for d in shown.iter().take(PAGE_SIZE) {
        let a = load_household(&state, &d.doc_a).await?.map(|(h, _)| h);
        let b = if d.doc_b == d.doc_a { a.clone() } else { load_household(&state, &d.doc_b).await?.map(|(h, _)| h) };
        // A side outside the operator's area is neither shown nor compared.
        let visible = |h: &Option<Household>| h.as_ref().is_none_or(|h| in_scope(&h.area_code, &scope));
        let (va, vb) = (visible(&a), visible(&b));
        cards.push((d, va.then_some(a).flatten(), vb.then_some(b).flatten(), va, vb));
    }
    let body = html! {
        h1 { "Trùng lặp · Duplicate residents" }
        (flash(q.done.as_deref()))
        (filter_form("/console/duplicates", &area, &[("open", "Đang mở · Open"), ("merged", "Đã gộp · Merged"), ("dismissed", "Đã bỏ qua · Dismissed"), ("all", "Tất cả · All")], status))
        p.muted { (shown.len()) " cặp nghi trùng · candidate pairs" }
        @for (d, a, b, va, vb) in &cards {
            article.card id={ "duplicate-" (d.id) } {
                h3 {
                    "#" (d.id) " · " span.score title="Xác suất là một người · Match probability" { (probability_text(d.score)) }
                    " " span class={ "badge " (d.status) } { (d.status) }
                    " " span.muted { (d.area) }
                }
                @if let Some(score) = &d.explanation {
                    // The comparison of a record held elsewhere would describe it: only the probability shows.
                    @if *va && *vb { (explanation(score)) }
                }
                @let ma = a.as_ref().and_then(|h| h.member(&d.member_a));
                @let mb = b.as_ref().and_then(|h| h.member(&d.member_b));
                div.sides {
                    @if *va { (resident(a.as_ref(), &d.doc_a, &d.member_a, mb)) } @else { (elsewhere()) }
                    @if *vb { (resident(b.as_ref(), &d.doc_b, &d.member_b, ma)) } @else { (elsewhere()) }
                }
                @if let Some((action, by, at)) = &d.decided {
                    p.muted { "Lần cuối · Last: " strong { (action) } " — " (by) ", " (time(*at)) }
                }
                div.actions {
                    @if d.status == "open" {
                        @if *va && *vb {
                            form.inline method="post" action={ "/console/duplicates/" (d.id) "/merge" } {
                                (csrf(&current.0))
                                button.ok type="submit" { "Gộp (liên kết) · Merge (link records)" }
                            }
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
    if !scope.is_empty() {
        let listed = state.storage.duplicates(Some(scope.clone())).await?;
        let Some(d) = listed.iter().find(|d| d.id == id) else {
            return Err(PageError::not_found("No such duplicate candidate in your area."));
        };
        // Linking two records writes into both households: the operator's area must cover both.
        let links = matches!(action, DuplicateAction::Merge)
            || (matches!(action, DuplicateAction::Undo) && d.status == "merged");
        if links {
            for doc in [&d.doc_a, &d.doc_b] {
                let area = load_household(&state, doc).await?.map(|(h, _)| h.area_code).unwrap_or_default();
                if !in_scope(&area, scope) {
                    return Err(PageError::forbidden(
                        "Một hồ sơ thuộc khu vực khác: cần người có quyền cả hai khu vực. · One record is held in another area: \
                         merging needs an operator whose area covers both.",
                    ));
                }
            }
        }
    }
    state.storage.decide_duplicate(id, action, posted.session.username.clone(), state.now()).await?;
    let next = serde_urlencoded::to_string([("done", message)]).unwrap_or_default();
    let status = if matches!(action, DuplicateAction::Merge) { "merged" } else { "open" };
    Ok(Redirect::to(&format!("/console/duplicates?status={status}&{next}")).into_response())
}

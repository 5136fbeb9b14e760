//! Progress for an area and each of its sub-areas: households, residents,
//! completeness, validity, open reviews, new households by day, week and
//! month, and residents reaching ID-card age. Also as CSV.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use chrono::{Datelike, Months, NaiveDate};
use doorstep_core::vn_time;
use maud::html;
use serde::Deserialize;

use super::auth::{Current, scoped_area};
use super::households::household_link;
use super::layout::{PageError, page, percent};
use crate::registry::formats::formula_safe;
use crate::state::AppState;
use crate::storage::{AreaCounts, ProgressQuery};

/// The age at which a citizen must hold a CCCD card.
pub const ID_CARD_AGE: u32 = 14;
/// How far ahead "turning 14" looks.
pub const LOOKAHEAD_DAYS: u64 = 90;

#[derive(Deserialize)]
pub struct AreaQuery {
    #[serde(default)]
    area: String,
}

/// The query for an area as of `today` (in Vietnam).
pub fn progress_query(area: &str, today: NaiveDate) -> ProgressQuery {
    let years = Months::new(12 * ID_CARD_AGE);
    // Turning 14 in (today, today + 90 days]: born in (today - 14y, today + 90d - 14y].
    let born_after = today.checked_sub_months(years).unwrap_or(today);
    let born_until = (today + chrono::Days::new(LOOKAHEAD_DAYS)).checked_sub_months(years).unwrap_or(today);
    ProgressQuery {
        area: area.to_string(),
        // Calendar boundaries in Vietnam time: today, this week (from Monday), this month.
        since_day: vn_time::start_of(today),
        since_week: vn_time::start_of(today - chrono::Days::new(u64::from(today.weekday().num_days_from_monday()))),
        since_month: vn_time::start_of(today.with_day(1).unwrap_or(today)),
        born_after: born_after.format("%Y-%m-%d").to_string(),
        born_until: born_until.format("%Y-%m-%d").to_string(),
    }
}

/// The sub-area of `parent` that `area` falls in: its next code segment.
pub fn child_of(parent: &str, area: &str) -> String {
    if area == parent {
        return area.to_string();
    }
    let rest = if parent.is_empty() {
        area
    } else {
        area.strip_prefix(parent).map(|r| r.trim_start_matches('.')).unwrap_or(area)
    };
    let first = rest.split('.').next().unwrap_or(rest);
    if parent.is_empty() { first.to_string() } else { format!("{parent}.{first}") }
}

fn add(into: &mut AreaCounts, c: &AreaCounts) {
    into.households += c.households;
    into.residents += c.residents;
    into.complete += c.complete;
    into.cccd_present += c.cccd_present;
    into.cccd_valid += c.cccd_valid;
    into.new_day += c.new_day;
    into.new_week += c.new_week;
    into.new_month += c.new_month;
    into.turning_14 += c.turning_14;
    into.open_conflicts += c.open_conflicts;
    into.open_duplicates += c.open_duplicates;
    into.verified += c.verified;
    into.verified_residents += c.verified_residents;
    into.review_waiting += c.review_waiting;
    into.review_returned += c.review_returned;
    into.review_approved += c.review_approved;
    into.events.add(&c.events);
}

/// Rolls exact-area counts up into the sub-areas of `area`, plus a total.
pub fn roll_up(area: &str, rows: &[AreaCounts]) -> (Vec<AreaCounts>, AreaCounts) {
    let mut children: BTreeMap<String, AreaCounts> = BTreeMap::new();
    let mut total =
        AreaCounts { area: if area.is_empty() { "all".into() } else { area.to_string() }, ..Default::default() };
    for r in rows {
        let key = child_of(area, &r.area);
        add(children.entry(key.clone()).or_insert_with(|| AreaCounts { area: key, ..Default::default() }), r);
        add(&mut total, r);
    }
    (children.into_values().collect(), total)
}

/// The progress page for an area.
async fn render(state: &AppState, current: &Current, area: &str) -> Result<Html<String>, PageError> {
    let today = state.today();
    let q = progress_query(area, today);
    let (rows, soon) = state.storage.progress(q, 50).await?;
    let (children, total) = roll_up(area, &rows);
    let crumbs: Vec<String> = {
        let parts: Vec<&str> = if area.is_empty() { vec![] } else { area.split('.').collect() };
        (1..=parts.len()).map(|n| parts[..n].join(".")).collect()
    };
    let body = html! {
        p.crumbs {
            a href="/console/progress" { "Tất cả · All areas" }
            @for c in &crumbs { " › " a href={ "/console/progress?area=" (c) } { (c) } }
        }
        h1 { "Tiến độ · Progress" @if !area.is_empty() { " — " (area) } }
        form.filter method="get" action="/console/progress" {
            label { "Khu vực · Area" input name="area" value=(area) placeholder="01.001"; }
            button type="submit" { "Xem · Show" }
            a.button href={ "/console/progress.csv?area=" (area) } { "Tải CSV · Export CSV" }
        }
        table.progress {
            thead { tr {
                th { "Khu vực · Area" }
                th.num { "Hộ · Households" } th.num { "Nhân khẩu · Residents" }
                th.num { "Đủ thông tin · Complete" } th.num { "CCCD hợp lệ · Valid CCCD" }
                th.num { "Mới hôm nay · New today" } th.num { "Tuần này · This week" } th.num { "Tháng này · This month" }
                th.num { "Sắp 14 tuổi · Turning 14 (90 d)" }
                th.num { "Xung đột · Conflicts" } th.num { "Trùng lặp · Duplicates" }
                th.num { "Đã xác minh · Verified" } th.num { "Chờ duyệt · Waiting" }
                th.num { "Trả lại · Returned" } th.num { "Đã duyệt · Approved" }
            } }
            tbody {
                @for c in &children {
                    tr {
                        td { @if c.area == area { (c.area) " (trực tiếp · direct)" } @else { a href={ "/console/progress?area=" (c.area) } { (c.area) } } }
                        (cells(c, &c.area))
                    }
                }
                tr.total { td { "Tổng · Total" } (cells(&total, area)) }
            }
        }
        @if children.is_empty() { p.muted { "Chưa có dữ liệu cho khu vực này. · No data for this area yet." } }
        h2 { "Biến động nhân khẩu · Life events" }
        p.muted { "Theo ngày xảy ra: hôm nay / tuần này / tháng này. · By the day they happened: today / this week / this month." }
        table.events {
            thead { tr {
                th { "Khu vực · Area" } th.num { "Sinh · Births" } th.num { "Tử · Deaths" }
                th.num { "Chuyển đến · Moved in" } th.num { "Chuyển đi · Moved out" }
            } }
            tbody {
                @for c in &children { tr { td { (c.area) } (event_cells(&c.events)) } }
                tr.total { td { "Tổng · Total" } (event_cells(&total.events)) }
            }
        }
        h2 { "Sắp đến tuổi làm CCCD (14) trong " (LOOKAHEAD_DAYS) " ngày · Reaching ID-card age in the next " (LOOKAHEAD_DAYS) " days" }
        @if soon.is_empty() { p.muted { "Không có. · None." } } @else {
            table {
                thead { tr { th { "Họ tên · Name" } th { "Ngày sinh · Born" } th { "Tròn 14 · Turns 14" } th { "Hộ · Household" } th { "Khu vực · Area" } } }
                tbody { @for t in &soon {
                    tr {
                        td { (t.name) } td { (t.dob) }
                        td { (NaiveDate::parse_from_str(&t.dob, "%Y-%m-%d").ok().and_then(|d| d.checked_add_months(Months::new(12 * ID_CARD_AGE))).map(|d| d.to_string()).unwrap_or_default()) }
                        td { (household_link(&t.doc_id)) } td { (t.area) }
                    }
                } }
            }
            @if total.turning_14 > soon.len() as i64 { p.muted { "… và " (total.turning_14 - soon.len() as i64) " người khác · and more" } }
        }
    };
    Ok(page("Progress", Some(&current.0), "progress", body))
}

/// One row of life events: each kind as today / this week / this month.
fn event_cells(e: &crate::storage::EventCounts) -> maud::Markup {
    html! {
        @for [day, week, month] in [e.born, e.died, e.moved_in, e.moved_out] {
            td.num { (day) " / " (week) " / " (month) }
        }
    }
}

/// The figures of one row; review counts link to their queues filtered by `link_area`.
fn cells(c: &AreaCounts, link_area: &str) -> maud::Markup {
    html! {
        td.num { (c.households) } td.num { (c.residents) }
        td.num { (c.complete) " " span.muted { "(" (percent(c.complete, c.households)) ")" } }
        td.num { (c.cccd_valid) "/" (c.cccd_present) " " span.muted { "(" (percent(c.cccd_valid, c.cccd_present)) ")" } }
        td.num { (c.new_day) } td.num { (c.new_week) } td.num { (c.new_month) }
        td.num { (c.turning_14) }
        td.num { @if c.open_conflicts > 0 { a href={ "/console/conflicts?area=" (link_area) } { (c.open_conflicts) } } @else { "0" } }
        td.num { @if c.open_duplicates > 0 { a href={ "/console/duplicates?area=" (link_area) } { (c.open_duplicates) } } @else { "0" } }
        td.num { (c.verified) " " span.muted { "(" (percent(c.verified, c.households)) "; " (c.verified_residents) " NK)" } }
        @for (n, status) in [(c.review_waiting, "waiting"), (c.review_returned, "returned"), (c.review_approved, "approved")] {
            td.num { @if n > 0 { a href={ "/console/review?status=" (status) "&area=" (link_area) } { (n) } } @else { "0" } }
        }
    }
}

/// GET /console/progress?area=…
pub async fn show(
    State(state): State<Arc<AppState>>,
    current: Current,
    Query(q): Query<AreaQuery>,
) -> Result<Html<String>, PageError> {
    let area = scoped_area(&current.0, &q.area)?;
    render(&state, &current, &area).await
}

/// The progress table as CSV (every cell formula-safe).
pub fn to_csv(children: &[AreaCounts], total: &AreaCounts) -> String {
    let mut out = csv::Writer::from_writer(Vec::new());
    let header = [
        "area",
        "households",
        "residents",
        "complete",
        "complete_pct",
        "cccd_present",
        "cccd_valid",
        "cccd_valid_pct",
        "new_today",
        "new_this_week",
        "new_this_month",
        "turning_14_in_90d",
        "open_conflicts",
        "open_duplicates",
        "verified_households",
        "verified_pct",
        "verified_residents",
        "review_waiting",
        "review_returned",
        "review_approved",
        "born_today",
        "born_this_week",
        "born_this_month",
        "died_today",
        "died_this_week",
        "died_this_month",
        "moved_in_today",
        "moved_in_this_week",
        "moved_in_this_month",
        "moved_out_today",
        "moved_out_this_week",
        "moved_out_this_month",
    ];
    let _ = out.write_record(header);
    for c in children.iter().chain(std::iter::once(total)) {
        let pct = |a: i64, b: i64| if b == 0 { String::new() } else { format!("{:.1}", a as f64 * 100.0 / b as f64) };
        let row = [
            formula_safe(&c.area).into_owned(),
            c.households.to_string(),
            c.residents.to_string(),
            c.complete.to_string(),
            pct(c.complete, c.households),
            c.cccd_present.to_string(),
            c.cccd_valid.to_string(),
            pct(c.cccd_valid, c.cccd_present),
            c.new_day.to_string(),
            c.new_week.to_string(),
            c.new_month.to_string(),
            c.turning_14.to_string(),
            c.open_conflicts.to_string(),
            c.open_duplicates.to_string(),
            c.verified.to_string(),
            pct(c.verified, c.households),
            c.verified_residents.to_string(),
            c.review_waiting.to_string(),
            c.review_returned.to_string(),
            c.review_approved.to_string(),
        ];
        let e = &c.events;
        let events = [e.born, e.died, e.moved_in, e.moved_out].into_iter().flatten().map(|n| n.to_string());
        let row: Vec<String> = row.into_iter().chain(events).collect();
        let _ = out.write_record(&row);
    }
    String::from_utf8(out.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// GET /console/progress.csv?area=…
pub async fn csv(
    State(state): State<Arc<AppState>>,
    current: Current,
    Query(q): Query<AreaQuery>,
) -> Result<Response, PageError> {
    let area = &scoped_area(&current.0, &q.area)?;
    let today = state.today();
    let rows = state.storage.area_counts(progress_query(area, today)).await?;
    let (children, total) = roll_up(area, &rows);
    let name: String = area.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '.').collect();
    let disposition =
        format!("attachment; filename=\"progress-{}-{today}.csv\"", if name.is_empty() { "all" } else { &name });
    Ok((
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()), (header::CONTENT_DISPOSITION, disposition)],
        to_csv(&children, &total),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turning_14_window_is_the_next_90_days() {
        let q = progress_query("01", NaiveDate::from_ymd_opt(2026, 11, 25).unwrap());
        assert_eq!((q.born_after.as_str(), q.born_until.as_str()), ("2012-11-25", "2013-02-23"));
    }

    #[test]
    fn new_households_count_from_vietnams_midnight_monday_and_first_of_the_month() {
        // Wednesday 2026-11-25 in Vietnam.
        let q = progress_query("01", NaiveDate::from_ymd_opt(2026, 11, 25).unwrap());
        let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp();
        assert_eq!(q.since_day, at("2026-11-25T00:00:00+07:00"));
        assert_eq!(q.since_week, at("2026-11-23T00:00:00+07:00"));
        assert_eq!(q.since_month, at("2026-11-01T00:00:00+07:00"));
    }

    #[test]
    fn counts_roll_up_into_sub_areas() {
        let row = |area: &str, h: i64| AreaCounts {
            area: area.into(),
            households: h,
            residents: 2 * h,
            ..Default::default()
        };
        let rows = [row("01.001.00001", 3), row("01.001.00004", 2), row("01.001", 1), row("01.002.00010", 5)];
        let (children, total) = roll_up("01.001", &rows[..3]);
        let areas: Vec<_> = children.iter().map(|c| (c.area.as_str(), c.households)).collect();
        assert_eq!(areas, [("01.001", 1), ("01.001.00001", 3), ("01.001.00004", 2)]);
        assert_eq!((total.households, total.residents), (6, 12));
        let (children, _) = roll_up("", &rows);
        assert_eq!(children.iter().map(|c| (c.area.as_str(), c.households)).collect::<Vec<_>>(), [("01", 11)]);
        let (children, _) = roll_up("01", &rows);
        assert_eq!(
            children.iter().map(|c| (c.area.as_str(), c.households)).collect::<Vec<_>>(),
            [("01.001", 6), ("01.002", 5)]
        );
    }

    #[test]
    fn csv_cells_are_quoted_and_never_formulas() {
        let row = |area: &str| AreaCounts {
            area: area.into(),
            households: 4,
            complete: 3,
            verified: 1,
            events: crate::storage::EventCounts { born: [1, 2, 3], ..Default::default() },
            ..Default::default()
        };
        let csv = to_csv(&[row("=HYPERLINK(\"x\")"), row("a,b")], &row("01"));
        let lines: Vec<&str> = csv.lines().collect();
        let tail = "1,2,3,0,0,0,0,0,0,0,0,0";
        assert_eq!(lines[1], format!("\"'=HYPERLINK(\"\"x\"\")\",4,0,3,75.0,0,0,,0,0,0,0,0,0,1,25.0,0,0,0,0,{tail}"));
        assert!(lines[2].starts_with("\"a,b\",4,"));
        assert_eq!(lines[3], format!("01,4,0,3,75.0,0,0,,0,0,0,0,0,0,1,25.0,0,0,0,0,{tail}"));
        assert_eq!(lines[0].split(',').count(), lines[3].split(',').count(), "a header for every column");
    }
}

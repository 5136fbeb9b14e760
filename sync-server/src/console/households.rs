//! A household as the registry holds it, and its printable verification slip.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Html;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use doorstep_core::attachment::{PhotoRef, open_blob};
use doorstep_core::form::residence_survey;
use doorstep_core::identity::{Cccd, Sex};
use doorstep_core::record::{Household, HouseholdDoc, Member, PhotoField};
use doorstep_core::slip::Slip;
use maud::{Markup, html};
use serde::Deserialize;

use super::auth::{Current, require_area, scoped_area};
use super::layout::{PageError, page, time};
use crate::error::ApiError;
use crate::merge::server_editor;
use crate::state::AppState;

/// The server's copy of a household, read, with its heads.
pub async fn load_household(state: &AppState, id: &str) -> Result<Option<(Household, Vec<String>)>, ApiError> {
    let Some((snapshot, heads)) = state.storage.household(id.to_string()).await? else { return Ok(None) };
    let doc = HouseholdDoc::load(id, &snapshot, &server_editor("console")).map_err(ApiError::internal)?;
    Ok(Some((doc.read(), heads)))
}

/// The survey's bilingual label of a field path: `address`, or `members/<id>/<field>`.
pub fn field_label(path: &str) -> String {
    let form = residence_survey();
    let label = |f: Option<&doorstep_core::form::Field>, name: &str| {
        f.map(|f| format!("{} · {}", f.label.vi, f.label.en)).unwrap_or_else(|| name.to_string())
    };
    match path.split('/').collect::<Vec<_>>().as_slice() {
        ["members", _, field] => {
            let members = form.field("members");
            label(members.and_then(|m| m.fields.iter().find(|f| f.name == *field)), field)
        }
        [field] => label(form.field(field), field),
        _ => path.to_string(),
    }
}

/// The member a path names, if any.
pub fn member_of<'a>(h: &'a Household, path: &str) -> Option<&'a Member> {
    match path.split('/').collect::<Vec<_>>().as_slice() {
        ["members", id, _] => h.member(id),
        _ => None,
    }
}

/// Whether a member's CCCD number passes every check.
pub fn cccd_ok(m: &Member) -> Option<bool> {
    let c = m.cccd.as_deref().filter(|c| !c.is_empty())?;
    let dob = m.dob.as_deref().and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
    Some(Cccd::parse(c).and_then(|c| c.check_against(dob, m.sex.as_deref().and_then(Sex::parse))).is_ok())
}

/// A link to a household's page.
pub fn household_link(id: &str) -> Markup {
    html! { a href={ "/console/households/" (id) } { (id) } }
}

fn members_table(h: &Household) -> Markup {
    html! {
        table {
            thead { tr { th { "Họ tên · Name" } th { "Ngày sinh · Born" } th { "Giới · Sex" } th { "CCCD" } th { "Quan hệ · Relation" } th { "Cư trú · Residence" } th { "Giấy tờ · Document" } } }
            tbody {
                @for m in &h.members {
                    tr {
                        td { (m.full_name) @if h.head_member_id.as_deref() == Some(m.member_id.as_str()) { " " span.badge { "chủ hộ · head" } } }
                        td { (m.dob.as_deref().unwrap_or("–")) }
                        td { (m.sex.as_deref().unwrap_or("–")) }
                        td {
                            (m.cccd.as_deref().unwrap_or("–"))
                            @match cccd_ok(m) {
                                Some(true) => { " " span.badge.ok { "✓" } }
                                Some(false) => { " " span.badge.bad { "không hợp lệ · invalid" } }
                                None => {}
                            }
                        }
                        td { (m.relation.as_deref().unwrap_or("–")) }
                        td { (m.residence_status.as_deref().unwrap_or("–")) }
                        td { @if m.document_photo.is_some() {
                            @let query = serde_urlencoded::to_string([("member", m.member_id.as_str())]).unwrap_or_default();
                            a href={ "/console/households/" (h.household_id) "/photo/full?" (query) } { "ảnh · photo" }
                        } @else { "–" } }
                    }
                }
            }
        }
    }
}

/// Residents scanned at most by one search (narrow the area beyond that).
const SEARCH_SCAN: i64 = 200_000;
/// Households listed at most.
const SEARCH_SHOWN: usize = 100;

#[derive(serde::Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    area: String,
    #[serde(default)]
    q: String,
}

/// One household found, with the residents that matched.
struct Found {
    doc_id: String,
    area: String,
    names: Vec<String>,
}

/// Households of an area matching a household id prefix, a CCCD number, or a
/// name typed with or without diacritics.
fn search(rows: Vec<(String, String, String)>, query: &str) -> Vec<Found> {
    let q = query.trim();
    let digits: String = q.chars().filter(|c| !c.is_whitespace()).collect();
    let wanted = doorstep_core::identity::normalize_name(q);
    let mut out: Vec<Found> = Vec::new();
    for (doc_id, area, key) in rows {
        let Ok(person) = serde_json::from_str::<doorstep_core::identity::PersonKey>(&key) else { continue };
        let hit = q.is_empty()
            || doc_id.starts_with(q)
            || (digits.len() == 12 && person.cccd.as_deref() == Some(digits.as_str()))
            || (!wanted.is_empty() && doorstep_core::identity::normalize_name(&person.full_name).contains(&wanted));
        if !hit {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.doc_id == doc_id => last.names.push(person.full_name),
            _ => {
                if out.len() == SEARCH_SHOWN {
                    break;
                }
                out.push(Found { doc_id, area, names: vec![person.full_name] });
            }
        }
    }
    out
}

/// Residents read at most through the index for one search.
const INDEXED_SHOWN: i64 = 2_000;

/// Households of `area` matching `query`: first through the index — a CCCD number by its
/// blocking key, a full name by its folded search key, a household id by its prefix — at a
/// cost that does not grow with the store; then, only when that finds nothing and the query is
/// not a CCCD number (part of a name, say), by opening the area's residents one by one, at
/// most [`SEARCH_SCAN`]. Returns
/// the households and whether the scan stopped at its limit.
async fn find(state: &AppState, area: &str, query: &str) -> Result<(Vec<Found>, bool), PageError> {
    let q = query.trim();
    if !q.is_empty() {
        let digits: String = q.chars().filter(|c| !c.is_whitespace()).collect();
        let cccd = (digits.len() == 12 && digits.chars().all(|c| c.is_ascii_digit()))
            .then(|| crate::logic::cccd_search_key(&digits))
            .flatten();
        let is_cccd = cccd.is_some();
        let keys: Vec<String> = cccd.into_iter().chain(crate::logic::name_search_key(q)).collect();
        let rows = state
            .storage
            .find_people(area.to_string(), keys, q.to_string(), SEARCH_SHOWN as i64, INDEXED_SHOWN)
            .await?;
        let found = search(rows, q);
        // What the index did not find for a CCCD number (by its token, or as an id), opening
        // every resident would not find either: no name holds twelve digits.
        if !found.is_empty() || is_cccd {
            return Ok((found, false));
        }
    }
    // An empty query lists the area's first households: only their residents are read.
    let limit = if q.is_empty() { INDEXED_SHOWN } else { SEARCH_SCAN };
    let rows = state.storage.people(area.to_string(), limit).await?;
    let truncated = !q.is_empty() && rows.len() as i64 == SEARCH_SCAN;
    Ok((search(rows, q), truncated))
}

/// GET /console/households?area=…&q=…: find a household (to view it or print its slip).
pub async fn list(
    State(state): State<Arc<AppState>>,
    current: Current,
    axum::extract::Query(q): axum::extract::Query<SearchQuery>,
) -> Result<Html<String>, PageError> {
    let area = scoped_area(&current.0, &q.area)?;
    let (found, truncated) = find(&state, &area, &q.q).await?;
    let body = html! {
        h1 { "Hộ · Households" }
        form.filter method="get" action="/console/households" {
            label { "Khu vực · Area" input name="area" value=(area) placeholder="01.001.00001"; }
            label { "Mã hộ, số CCCD hoặc họ tên · Household id, CCCD or name"
                input name="q" value=(q.q) placeholder="nguyen thi nhung" autofocus; }
            button type="submit" { "Tìm · Search" }
        }
        @if truncated { p.muted { "Chỉ xét " (SEARCH_SCAN) " người đầu tiên: hãy chọn khu vực hẹp hơn. · Only the first " (SEARCH_SCAN) " residents were searched: narrow the area." } }
        p.muted { (found.len()) " hộ · households" @if found.len() == SEARCH_SHOWN { " (" (SEARCH_SHOWN) " đầu tiên · first " (SEARCH_SHOWN) ")" } }
        table {
            thead { tr { th { "Hộ · Household" } th { "Khu vực · Area" } th { "Nhân khẩu khớp · Matching residents" } th {} } }
            tbody { @for f in &found {
                tr {
                    td { (household_link(&f.doc_id)) }
                    td { (f.area) }
                    td { (f.names.join(", ")) }
                    td { a href={ "/console/households/" (f.doc_id) "/slip" } { "Phiếu · Slip" } }
                }
            } }
        }
    };
    Ok(page("Households", Some(&current.0), "households", body))
}

/// GET /console/households/{id}
pub async fn show(
    State(state): State<Arc<AppState>>,
    current: Current,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<super::layout::Flash>,
) -> Result<Html<String>, PageError> {
    let (h, heads) = load_household(&state, &id).await?.ok_or_else(|| PageError::not_found("No such household."))?;
    require_area(&current.0, &h.area_code)?;
    let audit = state.storage.audit(Some(id.clone())).await?;
    let body = html! {
        p.crumbs { "Khu vực · Area " a href={ "/console/progress?area=" (h.area_code) } { (h.area_code) } }
        h1 { "Hộ · Household " (h.household_id) }
        (super::layout::flash(q.done.as_deref()))
        dl.facts {
            dt { "Địa chỉ · Address" } dd { (h.address) }
            dt { "Phiên bản · Version" } dd { code { (heads.iter().min().map(|s| &s[..s.len().min(16)]).unwrap_or("–")) } }
        }
        p.actions { a.button.primary href={ "/console/households/" (h.household_id) "/slip" } { "In phiếu xác minh · Print verification slip" } }
        @if h.house_photo.is_some() {
            p { a href={ "/console/households/" (h.household_id) "/photo/full" } {
                img.house alt="Ảnh nhà · House photo" src={ "/console/households/" (h.household_id) "/photo/thumb" };
            } }
        }
        h2 { "Nhân khẩu · Residents (" (h.members.len()) ")" }
        (members_table(&h))
        @if !h.events.is_empty() {
            h2 { "Sự kiện · Life events" }
            table {
                thead { tr { th { "Ngày · Date" } th { "Sự kiện · Event" } th { "Người · Who" } th { "Nơi · Place" } } }
                tbody { @for e in &h.events {
                    tr { td { (e.date) } td { (e.kind.code()) }
                         td { (h.member(&e.member_id).map(|m| m.full_name.as_str()).unwrap_or(&e.member_id)) }
                         td { (e.place.as_deref().unwrap_or("")) } }
                } }
            }
        }
        (super::review::section(&h, &current.0))
        h2 { "Nhật ký · Audit trail" }
        table {
            thead { tr { th { "Lúc · When" } th { "Người · User" } th { "Thiết bị · Device" } th { "Việc · Action" } } }
            tbody { @for e in audit.iter().rev().take(50) {
                tr { td { (time(e.at)) } td { (e.user) } td { (e.device_id) } td { (e.action) } }
            } }
        }
    };
    Ok(page(&format!("Household {id}"), Some(&current.0), "households", body))
}

/// Which photo of a household: a resident's document photo, or (no member) the house photo.
#[derive(Deserialize)]
pub struct PhotoQuery {
    member: Option<String>,
}

/// GET /console/households/{id}/photo/{thumb|full}[?member=…]: the house photo, or a
/// resident's document photo, decrypted with the key the household document holds; 404
/// until the device that took it has uploaded it.
pub async fn photo(
    State(state): State<Arc<AppState>>,
    current: Current,
    Path((id, size)): Path<(String, String)>,
    axum::extract::Query(q): axum::extract::Query<PhotoQuery>,
) -> Result<axum::response::Response, PageError> {
    use axum::response::IntoResponse;
    let (h, _) = load_household(&state, &id).await?.ok_or_else(|| PageError::not_found("No such household."))?;
    require_area(&current.0, &h.area_code)?;
    let field = match q.member {
        Some(member) => PhotoField::MemberDocument(member),
        None => PhotoField::House,
    };
    let text = h.photo(&field).ok_or_else(|| PageError::not_found("No such photo."))?;
    let photo = PhotoRef::parse(text).map_err(|_| PageError::not_found("The photo reference is unreadable."))?;
    let r = match size.as_str() {
        "thumb" => &photo.thumb,
        "full" => &photo.full,
        _ => return Err(PageError::not_found("No such size.")),
    };
    let sealed = state
        .storage
        .blob(r.id.clone())
        .await?
        .ok_or_else(|| PageError::not_found("The photo has not reached the server yet."))?;
    let jpeg = open_blob(r, &sealed).map_err(|_| {
        PageError::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, "The stored photo does not match its reference.")
    })?;
    Ok(([(axum::http::header::CONTENT_TYPE, "image/jpeg")], jpeg).into_response())
}

/// GET /console/households/{id}/slip: a printable page with the signed QR code.
pub async fn slip(
    State(state): State<Arc<AppState>>,
    current: Current,
    Path(id): Path<String>,
) -> Result<Html<String>, PageError> {
    let (h, heads) = load_household(&state, &id).await?.ok_or_else(|| PageError::not_found("No such household."))?;
    require_area(&current.0, &h.area_code)?;
    let today = state.today();
    let slip = Slip::for_household(&h, &heads, today);
    let text = slip.sign(state.slip_key().await?);
    let png = doorstep_core::qr::encode_png(&text, 4).map_err(ApiError::internal)?;
    let body = html! {
        p.no-print.actions {
            a.button href={ "/console/households/" (h.household_id) } { "← Hộ · Household" }
            span.muted { "Dùng lệnh In của trình duyệt (Ctrl+P). · Use the browser's Print (Ctrl+P)." }
        }
        article.slip {
            header {
                div {
                    h1 { "Phiếu xác minh hộ · Household verification slip" }
                    dl.facts {
                        dt { "Mã hộ · Household" } dd { (slip.household_id) }
                        dt { "Khu vực · Area" } dd { (slip.area) }
                        dt { "Địa chỉ · Address" } dd { (slip.address) }
                        dt { "Ngày cấp · Issued" } dd { (slip.issued_on) }
                        dt { "Phiên bản · Version" } dd { code { (slip.version) } }
                    }
                }
                div.qr { img alt="Mã QR có chữ ký · Signed QR code" src={ "data:image/png;base64," (STANDARD.encode(&png)) }; }
            }
            table {
                thead { tr { th { "Họ tên · Name" } th { "Năm sinh · Born" } th { "CCCD (4 số cuối · last 4)" } } }
                tbody { @for m in &slip.members {
                    tr { td { (m.name) } td { (m.birth_year.map(|y| y.to_string()).unwrap_or_default()) }
                         td { (m.cccd_last4.as_deref().map(|c| format!("…{c}")).unwrap_or_default()) } }
                } }
            }
            p.muted {
                "Mã QR được máy chủ ký (Ed25519); thiết bị của cán bộ kiểm tra chữ ký không cần mạng. "
                "· The QR code is signed by the registry server (Ed25519); an officer's device verifies it offline."
            }
        }
    };
    Ok(page(&format!("Slip {id}"), Some(&current.0), "", body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn households_are_found_by_id_cccd_or_a_name_without_diacritics() {
        let person = |name: &str, cccd: Option<&str>| {
            serde_json::json!({"full_name": name, "dob": null, "sex": null, "cccd": cccd}).to_string()
        };
        let rows = || {
            vec![
                ("hh-1".to_string(), "01".to_string(), person("Nguyễn Thị Hồng Nhung", Some("001166012345"))),
                ("hh-1".to_string(), "01".to_string(), person("Lê Văn Nam", None)),
                ("hh-2".to_string(), "01".to_string(), person("Đỗ Kim Tâm", Some("011165617775"))),
            ]
        };
        let ids = |q: &str| search(rows(), q).into_iter().map(|f| f.doc_id).collect::<Vec<_>>();
        assert_eq!(ids("nguyen thi hong"), ["hh-1"]);
        assert_eq!(ids("do kim tam"), ["hh-2"]);
        assert_eq!(ids("0111 6561 7775"), ["hh-2"]);
        assert_eq!(ids("hh-"), ["hh-1", "hh-2"]);
        assert_eq!(ids(""), ["hh-1", "hh-2"]);
        assert!(ids("trần").is_empty());
        assert_eq!(search(rows(), "").remove(0).names.len(), 2);
    }
}

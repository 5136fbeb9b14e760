//! Conflicts: concurrent values of one field, side by side, and their resolution.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::auth::{Current, Posted, csrf, scoped_area};
use super::households::{field_label, household_link, load_household, member_of};
use super::layout::{PageError, filter_form, page, time};
use crate::state::AppState;

/// Conflicts shown on one page.
const PAGE_SIZE: usize = 100;
/// Longest value an operator may type.
use crate::logic::MAX_VALUE_LEN;

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    area: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    done: Option<i64>,
}

/// `user@device` split for display.
fn author_parts(author: Option<&str>) -> (String, String) {
    match author.and_then(|a| a.rsplit_once('@')) {
        Some((user, device)) => (user.to_string(), device.to_string()),
        None => (author.unwrap_or("?").to_string(), "?".to_string()),
    }
}

/// GET /console/conflicts?area=…&status=open|resolved|all
pub async fn list(
    State(state): State<Arc<AppState>>,
    current: Current,
    Query(q): Query<ListQuery>,
) -> Result<Html<String>, PageError> {
    let status = q.status.as_deref().unwrap_or("open");
    let area = scoped_area(&current.0, &q.area)?;
    let all = state.storage.conflicts((!area.is_empty()).then(|| area.clone())).await?;
    let shown: Vec<_> = all.iter().filter(|c| status == "all" || c.status == status).collect();
    let mut cards = Vec::new();
    for c in shown.iter().take(PAGE_SIZE) {
        let household = load_household(&state, &c.doc_id).await?.map(|(h, _)| h);
        cards.push((c, household));
    }
    let body = html! {
        h1 { "Xung đột · Conflicts" }
        @if let Some(id) = q.done { p.flash role="status" { "Đã giải quyết xung đột #" (id) ". Thiết bị sẽ nhận ở lần đồng bộ sau. · Conflict #" (id) " resolved; devices receive it at their next sync." } }
        (filter_form("/console/conflicts", &area, &[("open", "Đang mở · Open"), ("resolved", "Đã giải quyết · Resolved"), ("all", "Tất cả · All")], status))
        p.muted { (shown.len()) " xung đột · conflicts" @if shown.len() > PAGE_SIZE { " (hiển thị " (PAGE_SIZE) " · showing " (PAGE_SIZE) ")" } }
        @for (c, household) in &cards {
            article.card id={ "conflict-" (c.id) } {
                h3 {
                    "#" (c.id) " · " (field_label(&c.path))
                    " " span class={ "badge " (c.status) } { (c.status) }
                }
                p.muted {
                    "Hộ · Household " (household_link(&c.doc_id)) " · " (c.area)
                    @if let Some(m) = household.as_ref().and_then(|h| member_of(h, &c.path)) { " · " strong { (m.full_name) } }
                    @else if let Some(h) = household { " · " (h.address) }
                }
                div.sides {
                    @for v in &c.values {
                        @let (user, device) = author_parts(v.author.as_deref());
                        div.side {
                            div.value { (v.value.as_deref().unwrap_or("(không phải văn bản · not text)")) }
                            dl {
                                dt { "Người · User" } dd { (user) }
                                dt { "Thiết bị · Device" } dd { code { (device) } }
                                dt { "Lúc · Time" } dd { (time(v.time)) }
                            }
                            @if c.status == "open" {
                                @if let Some(value) = &v.value {
                                    form.inline method="post" action={ "/console/conflicts/" (c.id) "/resolve" } {
                                        (csrf(&current.0))
                                        input type="hidden" name="value" value=(value);
                                        button.ok type="submit" { "Giữ giá trị này · Keep this value" }
                                    }
                                }
                            }
                        }
                    }
                }
                @if c.status == "open" {
                    form.other method="post" action={ "/console/conflicts/" (c.id) "/resolve" } {
                        (csrf(&current.0))
                        input name="value" required maxlength=(MAX_VALUE_LEN) placeholder="Giá trị khác · Another value" aria-label="Another value";
                        button type="submit" { "Dùng giá trị này · Use this value" }
                    }
                }
            }
        }
    };
    Ok(page("Conflicts", Some(&current.0), "conflicts", body))
}

#[derive(Deserialize)]
pub struct Resolution {
    value: String,
}

/// POST /console/conflicts/{id}/resolve: writes a new change that devices pull.
pub async fn resolve(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
    posted: Posted<Resolution>,
) -> Result<Response, PageError> {
    let value = posted.form.value.trim().to_string();
    let scope = &posted.session.area;
    if !scope.is_empty() && !state.storage.conflicts(Some(scope.clone())).await?.iter().any(|c| c.id == id) {
        return Err(PageError::not_found("No such conflict in your area."));
    }
    state
        .storage
        .open_conflict(id)
        .await?
        .ok_or_else(|| PageError::not_found("No such open conflict: someone may have resolved it already."))?;
    // The resolution checks the value for its field (the admin API goes through the same check).
    state.storage.resolve_conflict(id, Some(value), posted.session.username.clone(), state.now()).await?;
    Ok(Redirect::to(&format!("/console/conflicts?done={id}")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_values_are_checked_for_their_field() {
        assert_eq!(author_parts(Some("officer-a@dev-1")), ("officer-a".into(), "dev-1".into()));
    }
}

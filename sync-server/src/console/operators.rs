//! Operator accounts (admins only): list and create.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{Html, Response};
use maud::html;
use serde::Deserialize;

use super::auth::{Current, MIN_PASSWORD_LEN, Posted, csrf, hash_password, require_admin};
use super::layout::{Flash, PageError, done, flash, page, time};
use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::{Operator, Role};

/// GET /console/operators (admin)
pub async fn list(
    State(state): State<Arc<AppState>>,
    current: Current,
    Query(q): Query<Flash>,
) -> Result<Html<String>, PageError> {
    current.require_admin()?;
    let operators = state.storage.operators().await?;
    let events = state.storage.events(30).await?;
    let body = html! {
        h1 { "Tài khoản vận hành · Operator accounts" }
        (flash(q.done.as_deref()))
        table {
            thead { tr { th { "Tên · Username" } th { "Vai trò · Role" } th { "Khu vực · Area" } th { "Tạo lúc · Created" } } }
            tbody { @for o in &operators { tr {
                td { (o.username) } td { (o.role.as_str()) }
                td { @if o.area.is_empty() { span.muted { "tất cả · all" } } @else { (o.area) } }
                td { (time(o.created_at)) }
            } } }
        }
        section.card style="margin-top:16px" {
            h3 { "Thêm tài khoản · Add an account" }
            form method="post" action="/console/operators" {
                (csrf(&current.0))
                label { "Tên · Username" input name="username" required maxlength="64" autocomplete="off"; }
                label { "Mật khẩu (ít nhất " (MIN_PASSWORD_LEN) " ký tự) · Password (at least " (MIN_PASSWORD_LEN) " characters)"
                    input name="password" type="password" required minlength=(MIN_PASSWORD_LEN) autocomplete="new-password"; }
                label { "Vai trò · Role"
                    select name="role" { option value="operator" { "operator" } option value="admin" { "admin" } }
                }
                label { "Khu vực (để trống: tất cả; quản trị viên: để trống) · Area (empty: every area; admins: empty)"
                    input name="area" maxlength="64" placeholder="01.002" autocomplete="off"; }
                button.primary type="submit" { "Tạo · Create" }
            }
        }
        h2 { "Thao tác gần đây · Recent console actions" }
        table {
            thead { tr { th { "Lúc · When" } th { "Người · Who" } th { "Việc · Action" } } }
            tbody { @for e in &events { tr { td { (time(e.at)) } td { (e.user) } td { (e.action) } } } }
        }
    };
    Ok(page("Accounts", Some(&current.0), "operators", body))
}

/// ` in <area>` for a scoped account, nothing for one that sees every area.
pub fn scope_suffix(area: &str) -> String {
    if area.is_empty() { String::new() } else { format!(" in {area}") }
}

/// Checks a new account's name and password.
pub fn check_account(username: &str, password: &str) -> Result<(), ApiError> {
    let name_ok = !username.is_empty()
        && username.len() <= 64
        && username.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !name_ok {
        return Err(ApiError::malformed("a username is 1-64 of a-z A-Z 0-9 . _ -"));
    }
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(ApiError::malformed(format!("a password needs at least {MIN_PASSWORD_LEN} characters")));
    }
    Ok(())
}

/// Checks the area an account works on: empty (every area) or an area code
/// (segments of letters and digits joined by dots). Admins work on every area.
pub fn check_scope(role: Role, area: &str) -> Result<String, ApiError> {
    let area = area.trim();
    if role == Role::Admin && !area.is_empty() {
        return Err(ApiError::malformed("an admin works on every area: leave the area empty"));
    }
    if !area.is_empty() && doorstep_core::area::Area::parse(area).is_err() {
        return Err(ApiError::malformed("an area code is digits in dot-separated parts, e.g. 01.002"));
    }
    Ok(area.to_string())
}

#[derive(Deserialize)]
pub struct NewOperator {
    username: String,
    password: String,
    role: String,
    #[serde(default)]
    area: String,
}

/// POST /console/operators (admin)
pub async fn create(State(state): State<Arc<AppState>>, posted: Posted<NewOperator>) -> Result<Response, PageError> {
    require_admin(&posted.session)?;
    let f = posted.form;
    let username = f.username.trim().to_string();
    check_account(&username, &f.password)?;
    let role = Role::parse(&f.role).ok_or_else(|| PageError::bad_request("Unknown role."))?;
    let area = check_scope(role, &f.area)?;
    if state.storage.operator(username.clone()).await?.is_some() {
        return Err(PageError::bad_request("That username is taken."));
    }
    let password = f.password;
    let hash = tokio::task::spawn_blocking(move || hash_password(&password)).await.map_err(ApiError::internal)??;
    state
        .storage
        .put_operator(Operator {
            username: username.clone(),
            password_hash: hash,
            role,
            area: area.clone(),
            created_at: state.now(),
        })
        .await?;
    let action = format!("create account {username} ({}{})", role.as_str(), scope_suffix(&area));
    state.storage.log_event(state.now(), posted.session.username.clone(), action).await?;
    let msg = format!("Đã tạo {username}. · Created {username}.");
    Ok(done("/console/operators", &msg))
}

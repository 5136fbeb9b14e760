//! Export tokens (admins only): list, create (the secret shown once), revoke.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{Html, Response};
use maud::html;
use serde::Deserialize;

use super::auth::{Current, Posted, csrf, require_admin};
use super::layout::{Flash, PageError, done, flash, page, time};
use crate::state::{AppState, create_export_token};

/// GET /console/export-tokens (admin)
pub async fn list(
    State(state): State<Arc<AppState>>,
    current: Current,
    Query(q): Query<Flash>,
) -> Result<Html<String>, PageError> {
    current.require_admin()?;
    let tokens = state.storage.export_tokens().await?;
    let body = html! {
        h1 { "Mã xuất dữ liệu · Export tokens" }
        (flash(q.done.as_deref()))
        p.muted { "Mỗi mã chỉ đọc, chỉ xuất được khu vực của nó, qua GET /v1/export/households. "
            "· Each token is read-only and exports only its area, through GET /v1/export/households." }
        table {
            thead { tr { th { "Mã · Id" } th { "Khu vực · Area" } th { "Dùng cho · Label" } th { "Tạo bởi · By" }
                th { "Tạo lúc · Created" } th { "Trạng thái · State" } th {} } }
            tbody { @for t in &tokens { tr {
                td { code { (t.id) } } td { (t.area) } td { (t.label) } td { (t.created_by) } td { (time(t.created_at)) }
                td { @match t.revoked_at {
                    Some(at) => { "đã thu hồi · revoked " (time(at)) }
                    None => { "đang dùng · live" }
                } }
                td { @if t.revoked_at.is_none() {
                    form method="post" action={ "/console/export-tokens/" (t.id) "/revoke" } {
                        (csrf(&current.0))
                        button type="submit" { "Thu hồi · Revoke" }
                    }
                } }
            } } }
        }
        section.card style="margin-top:16px" {
            h3 { "Tạo mã mới · Create a token" }
            form method="post" action="/console/export-tokens" {
                (csrf(&current.0))
                label { "Khu vực · Area" input name="area" required maxlength="64" placeholder="01.002" autocomplete="off"; }
                label { "Dùng cho · Label" input name="label" required maxlength="100" placeholder="đồng bộ CSDLQG dân cư" autocomplete="off"; }
                button.primary type="submit" { "Tạo · Create" }
            }
        }
    };
    Ok(page("Export tokens", Some(&current.0), "export-tokens", body))
}

#[derive(Deserialize)]
pub struct NewToken {
    area: String,
    label: String,
}

/// POST /console/export-tokens (admin): shows the secret once.
pub async fn create(State(state): State<Arc<AppState>>, posted: Posted<NewToken>) -> Result<Html<String>, PageError> {
    require_admin(&posted.session)?;
    let (token, secret) =
        create_export_token(&state, &posted.form.area, &posted.form.label, &posted.session.username).await?;
    let body = html! {
        h1 { "Mã xuất dữ liệu mới · New export token" }
        section.card {
            p { "Khu vực · Area: " strong { (token.area) } " · " (token.label) " · " code { (token.id) } }
            p { "Mã bí mật (chỉ hiện một lần) · Secret (shown once):" }
            p { code id="export-secret" { (secret) } }
            p.muted { "Lưu vào nơi giữ bí mật của tác vụ tích hợp; máy chủ chỉ giữ bản băm. "
                "· Keep it in the integration job's secrets; the server keeps only its hash." }
            p { a.button href="/console/export-tokens" { "← Danh sách · List" } }
        }
    };
    Ok(page("New export token", Some(&posted.session), "export-tokens", body))
}

#[derive(Deserialize)]
pub struct Revocation {}

/// POST /console/export-tokens/{id}/revoke (admin)
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    posted: Posted<Revocation>,
) -> Result<Response, PageError> {
    require_admin(&posted.session)?;
    if !state.storage.revoke_export_token(id.clone(), state.now()).await? {
        return Err(PageError::bad_request("Không có mã đang dùng như vậy. · No such live token."));
    }
    state.storage.log_event(state.now(), posted.session.username.clone(), format!("revoked export token {id}")).await?;
    let msg = format!("Đã thu hồi {id}. · Revoked {id}.");
    Ok(done("/console/export-tokens", &msg))
}

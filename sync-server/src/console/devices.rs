//! Devices: the list with each one's last sync; enrolment by QR and revocation (admins).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use maud::html;
use serde::Deserialize;

use super::auth::{Current, Posted, csrf, require_admin};
use super::layout::{Flash, PageError, ago, done, flash, page, time};
use crate::error::ApiError;
use crate::state::{AppState, create_enrolment};
use crate::storage::Role;

/// GET /console/devices
pub async fn list(
    State(state): State<Arc<AppState>>,
    current: Current,
    Query(q): Query<Flash>,
) -> Result<Html<String>, PageError> {
    // An area-bound operator sees the devices of its area and sub-areas only.
    let devices = state.storage.devices(current.0.area.clone()).await?;
    let now = state.now();
    let admin = current.0.role == Role::Admin;
    let body = html! {
        h1 { "Thiết bị · Devices" }
        (flash(q.done.as_deref()))
        @if admin {
            section.card {
                h3 { "Đăng ký thiết bị mới · Enrol a device" }
                form.inline method="post" action="/console/devices/enrol" {
                    (csrf(&current.0))
                    label { "Khu vực · Area" input name="area" required maxlength="64" placeholder="01.001.00001"; }
                    button.primary type="submit" { "Tạo mã QR · Create QR code" }
                }
            }
        }
        table {
            thead { tr {
                th { "Thiết bị · Device" } th { "Khu vực · Area" } th { "Đăng ký · Enrolled" }
                th { "Đồng bộ gần nhất · Last sync" } th { "Trạng thái · Status" } @if admin { th {} }
            } }
            tbody {
                @for d in &devices {
                    tr id={ "device-" (d.device_id) } {
                        td { code { (d.device_id) } }
                        td { (d.area) }
                        td { (time(d.enrolled_at)) }
                        td { @match d.last_sync_at { Some(t) => { (time(t)) br; span.muted { (ago(t, now)) } } None => { span.muted { "chưa · never" } } } }
                        td { @match d.revoked_at {
                            Some(t) => { span.badge.revoked { "thu hồi · revoked" } br; span.muted { (time(t)) } }
                            None => { span.badge.active { "hoạt động · active" } }
                        } }
                        @if admin { td { @if d.revoked_at.is_none() {
                            form.inline method="post" action={ "/console/devices/" (d.device_id) "/revoke" } {
                                (csrf(&current.0))
                                button.danger type="submit" { "Thu hồi · Revoke" }
                            }
                        } } }
                    }
                }
            }
        }
        @if devices.is_empty() { p.muted { "Chưa có thiết bị nào. · No devices yet." } }
    };
    Ok(page("Devices", Some(&current.0), "devices", body))
}

#[derive(Deserialize)]
pub struct Enrolment {
    area: String,
}

/// POST /console/devices/enrol (admin): shows a one-time enrolment QR code.
pub async fn enrol(State(state): State<Arc<AppState>>, posted: Posted<Enrolment>) -> Result<Html<String>, PageError> {
    require_admin(&posted.session)?;
    let area = doorstep_core::area::Area::parse(&posted.form.area).map_err(|_| {
        PageError::bad_request("Mã khu vực là các số, phân cách bằng dấu chấm, như 01.001.00001. · An area code is digits in dot-separated parts, like 01.001.00001.")
    })?;
    let code = create_enrolment(&state, area.as_str()).await?;
    state
        .storage
        .log_event(state.now(), posted.session.username.clone(), format!("create enrolment for area {area}"))
        .await?;
    let png = doorstep_core::qr::encode_png(&code.to_qr_text(), 6).map_err(ApiError::internal)?;
    let body = html! {
        h1 { "Mã đăng ký thiết bị · Enrolment QR code" }
        section.card.qr {
            p { "Khu vực · Area: " strong { (code.area) } " · Máy chủ · Server: " code { (code.url) } }
            p id="expires" { "Hết hạn · Expires: " strong { (time(state.now() + state.enrolment_ttl_secs)) } }
            img alt="Mã QR đăng ký · Enrolment QR code" src={ "data:image/png;base64," (STANDARD.encode(&png)) };
            p { "Quét mã này bằng ứng dụng Doorstep trên thiết bị mới. Mã chỉ dùng được một lần. "
                "· Scan this with the Doorstep app on the new device. It works once." }
            p { a.button href="/console/devices" { "← Danh sách thiết bị · Device list" } }
        }
    };
    Ok(page("Enrol a device", Some(&posted.session), "devices", body))
}

#[derive(Deserialize)]
pub struct Revocation {
    #[serde(default)]
    confirm: Option<String>,
}

/// POST /console/devices/{id}/revoke (admin). Revoking wipes the device at its next
/// sync, so the first post only asks to confirm.
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    posted: Posted<Revocation>,
) -> Result<Response, PageError> {
    require_admin(&posted.session)?;
    if posted.form.confirm.as_deref() != Some("yes") {
        let device = state
            .storage
            .devices(posted.session.area.clone())
            .await?
            .into_iter()
            .find(|d| d.device_id == id && d.revoked_at.is_none());
        let Some(device) = device else { return Err(PageError::not_found("No such active device.")) };
        let body = html! {
            h1 { "Thu hồi thiết bị? · Revoke this device?" }
            section.card {
                p { "Thiết bị · Device " code { (device.device_id) } " — " (device.area) }
                p { "Ở lần đồng bộ sau, thiết bị sẽ bị từ chối và tự xoá mọi dữ liệu trên máy. Những thay đổi chưa đồng bộ sẽ mất. "
                    "· At its next sync the device is refused and wipes all its data. Changes it has not synced are lost." }
                div.actions {
                    form.inline method="post" action={ "/console/devices/" (device.device_id) "/revoke" } {
                        (csrf(&posted.session))
                        input type="hidden" name="confirm" value="yes";
                        button.danger type="submit" { "Thu hồi và xoá · Revoke and wipe" }
                    }
                    a.button href="/console/devices" { "Huỷ · Cancel" }
                }
            }
        };
        return Ok(page("Revoke a device", Some(&posted.session), "devices", body).into_response());
    }
    if !state.storage.revoke_device(id.clone(), state.now()).await? {
        return Err(PageError::not_found("No such active device."));
    }
    state.storage.log_event(state.now(), posted.session.username.clone(), format!("revoke device {id}")).await?;
    let msg = format!(
        "Đã thu hồi {id}; thiết bị sẽ tự xoá dữ liệu ở lần đồng bộ sau. · Revoked {id}: it wipes its data at its next sync."
    );
    Ok(done("/console/devices", &msg))
}

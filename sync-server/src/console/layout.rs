//! The console's page frame, stylesheet, error pages and small formatting helpers.

use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use crate::error::ApiError;
use crate::storage::{Role, Session};

/// A page with the navigation bar (when logged in) around `body`.
pub fn page(title: &str, session: Option<&Session>, active: &str, body: Markup) -> Html<String> {
    let nav = [
        ("progress", "/console/progress", "Tiến độ", "Progress"),
        ("conflicts", "/console/conflicts", "Xung đột", "Conflicts"),
        ("duplicates", "/console/duplicates", "Trùng lặp", "Duplicates"),
        ("review", "/console/review", "Duyệt", "Review"),
        ("transfers", "/console/transfers", "Chuyển hộ", "Transfers"),
        ("households", "/console/households", "Hộ", "Households"),
        ("devices", "/console/devices", "Thiết bị", "Devices"),
    ];
    Html(
        html! {
            (DOCTYPE)
            html lang="vi" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · Doorstep" }
                    link rel="stylesheet" href="/console/static/console.css";
                }
                body {
                    @if let Some(s) = session {
                        header.top {
                            span.brand { "Doorstep" }
                            nav {
                                @for (key, href, vi, en) in nav {
                                    a href=(href) class=[(key == active).then_some("active")] { (vi) span.en { (en) } }
                                }
                                @if s.role == Role::Admin {
                                    a href="/console/operators" class=[("operators" == active).then_some("active")] {
                                        "Tài khoản" span.en { "Accounts" }
                                    }
                                    a href="/console/export-tokens" class=[("export-tokens" == active).then_some("active")] {
                                        "Xuất dữ liệu" span.en { "Export tokens" }
                                    }
                                }
                            }
                            form.logout method="post" action="/console/logout" {
                                (csrf_field(&s.csrf))
                                span.who { (s.username) " (" (s.role.as_str()) @if !s.area.is_empty() { " · " (s.area) } ")" }
                                button type="submit" { "Đăng xuất · Log out" }
                            }
                        }
                    }
                    main { (body) }
                }
            }
        }
        .into_string(),
    )
}

/// A message carried through the redirect after an action.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Flash {
    /// What was done.
    #[serde(default)]
    pub done: Option<String>,
}

/// The query of a list filtered by area and status (review, transfers), with the flash.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ListQuery {
    /// The area (empty: the operator's own).
    #[serde(default)]
    pub area: String,
    /// The status shown.
    #[serde(default)]
    pub status: Option<String>,
    /// The message after an action.
    #[serde(flatten)]
    pub flash: Flash,
}

/// The message, when there is one.
pub fn flash(message: Option<&str>) -> Markup {
    html! { @if let Some(m) = message { p.flash role="status" { (m) } } }
}

/// A redirect after a form to `path` (no query of its own), with a message the page shows.
pub fn done(path: &str, message: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    let query = serde_urlencoded::to_string([("done", message)]).unwrap_or_default();
    axum::response::Redirect::to(&format!("{path}?{query}")).into_response()
}

/// The filter bar of a review list: an area and a status.
pub fn filter_form(action: &str, area: &str, statuses: &[(&str, &str)], current: &str) -> Markup {
    html! {
        form.filter method="get" action=(action) {
            label { "Khu vực · Area" input name="area" value=(area) placeholder="01.001"; }
            label { "Trạng thái · Status"
                select name="status" {
                    @for (v, l) in statuses { option value=(v) selected[*v == current] { (l) } }
                }
            }
            button type="submit" { "Lọc · Filter" }
        }
    }
}

/// The hidden field that carries a session's CSRF token.
pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// Unix seconds as a Vietnam local time.
pub fn time(ts: i64) -> String {
    doorstep_core::vn_time::local(ts).format("%Y-%m-%d %H:%M").to_string()
}

/// How long ago, roughly.
pub fn ago(ts: i64, now: i64) -> String {
    let d = (now - ts).max(0);
    match d {
        0..60 => "vừa xong · just now".into(),
        60..3600 => format!("{} phút trước · {} min ago", d / 60, d / 60),
        3600..86400 => format!("{} giờ trước · {} h ago", d / 3600, d / 3600),
        _ => format!("{} ngày trước · {} days ago", d / 86400, d / 86400),
    }
}

/// A percentage, or a dash when there is nothing to count.
pub fn percent(part: i64, whole: i64) -> String {
    if whole == 0 { "–".into() } else { format!("{:.0}%", part as f64 * 100.0 / whole as f64) }
}

/// A page that says what went wrong, with the right status.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    /// An error page with this status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> PageError {
        PageError { status, message: message.into() }
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> PageError {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> PageError {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> PageError {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError::new(e.status, e.message)
    }
}

impl From<crate::store::StorageError> for PageError {
    /// Through [`ApiError`]: one mapping of storage refusals to statuses.
    fn from(e: crate::store::StorageError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let body = html! {
            section.error-page {
                h1 { (self.status.as_u16()) " " (self.status.canonical_reason().unwrap_or("")) }
                p { (self.message) }
                p { a href="/console/progress" { "← Về trang chính · Back to the console" } }
            }
        };
        (self.status, page("Error", None, "", body)).into_response()
    }
}

/// GET /console/static/console.css
pub async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=86400")], CSS)
        .into_response()
}

const CSS: &str = include_str!("console.css");

//! The operator web console: server-rendered pages (maud, no JavaScript)
//! for the data centre's review work — conflicts, duplicates, devices,
//! progress per area, and printable verification slips.
//!
//! Every page needs a session ([`auth::Current`]); every form carries the
//! session's CSRF token ([`auth::Posted`]). Pages are small and cacheable-free
//! (`no-store`), with one stylesheet, so they load on a slow link.

mod auth;
mod conflicts;
mod devices;
mod duplicates;
mod export_tokens;
mod households;
mod layout;
mod operators;
mod progress;
mod review;
mod transfers;

pub use auth::{MIN_PASSWORD_LEN, SESSION_COOKIE, SESSION_TTL_SECS, hash_password, verify_password};
pub use operators::{check_account, check_scope, scope_suffix};
pub use progress::progress_query;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{Redirect, Response};
use axum::routing::{get, post};

use crate::state::AppState;

/// The console's routes, under `/console`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/progress") }))
        .route("/console/", get(|| async { Redirect::to("/console/progress") }))
        .route("/console/login", get(auth::login_page).post(auth::login))
        .route("/console/logout", post(auth::logout))
        .route("/console/static/console.css", get(layout::stylesheet))
        .route("/console/conflicts", get(conflicts::list))
        .route("/console/conflicts/{id}/resolve", post(conflicts::resolve))
        .route("/console/duplicates", get(duplicates::list))
        .route("/console/duplicates/{id}/{action}", post(duplicates::decide))
        .route("/console/devices", get(devices::list))
        .route("/console/devices/enrol", post(devices::enrol))
        .route("/console/devices/{id}/revoke", post(devices::revoke))
        .route("/console/progress", get(progress::show))
        .route("/console/progress.csv", get(progress::csv))
        .route("/console/households", get(households::list))
        .route("/console/households/{id}", get(households::show))
        .route("/console/households/{id}/slip", get(households::slip))
        .route("/console/households/{id}/review", post(review::decide))
        .route("/console/review", get(review::list))
        .route("/console/transfers", get(transfers::list))
        .route("/console/transfers/{id}", post(transfers::decide))
        .route("/console/households/{id}/photo/{size}", get(households::photo))
        .route("/console/operators", get(operators::list).post(operators::create))
        .route("/console/export-tokens", get(export_tokens::list).post(export_tokens::create))
        .route("/console/export-tokens/{id}/revoke", post(export_tokens::revoke))
        .layer(middleware::from_fn(security_headers))
}

/// Headers every console answer carries: no scripts, no framing, no caching of citizen data.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    resp
}

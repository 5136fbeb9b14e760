//! The registry's export API (docs/REGISTRY.md), for the registry's integration jobs:
//! `GET /v1/export/households?area=&since=&limit=` answers JSON Lines, one household a
//! line, and names the next cursor in `Doorstep-Next-Since`.
//!
//! Only an export token opens it: read-only, bound to an area, stored hashed, revocable
//! (`doorstep-sync-server export-token`, or the console's export tokens page). A device
//! credential or an operator's session is not one. A call writes nothing.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use doorstep_core::area::Area;
use doorstep_core::sync::protocol::{ErrorCode, area_within};
use serde::Deserialize;

use crate::api::Peer;
use crate::error::ApiError;
use crate::registry::export::MAX_EXPORT_PAGE;
use crate::registry::formats::{ExportWriter, Format};
use crate::state::{AppState, hash_secret};
use crate::storage::ExportToken;

/// The response header that names where the next page starts.
pub const NEXT_HEADER: &str = "doorstep-next-since";

/// The export API's routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/v1/export/households", get(households))
}

#[derive(Deserialize)]
struct ExportQuery {
    area: String,
    #[serde(default)]
    since: i64,
    limit: Option<i64>,
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
}

/// The live export token the request carries.
async fn token(state: &AppState, headers: &HeaderMap) -> Result<ExportToken, ApiError> {
    let secret = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("an export token is needed (Authorization: Bearer …)"))?;
    let token =
        state.storage.export_token(hash_secret(secret)).await?.ok_or_else(|| unauthorized("not an export token"))?;
    if token.revoked_at.is_some() {
        return Err(unauthorized("this export token was revoked"));
    }
    Ok(token)
}

async fn households(
    State(state): State<Arc<AppState>>,
    peer: Peer,
    headers: HeaderMap,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    // Each try costs a hash and an indexed read; a page costs up to MAX_EXPORT_PAGE documents
    // opened: both bounded per address.
    let client = state.limits.client(peer.as_deref(), &headers);
    state.limits.export(client)?;
    let token = token(&state, &headers).await?;
    let area = Area::parse(&q.area).map_err(|e| ApiError::malformed(e.to_string()))?;
    if !area_within(area.as_str(), &token.area) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::ForbiddenArea,
            format!("this token exports {} and its sub-areas only", token.area),
        ));
    }
    if q.since < 0 {
        return Err(ApiError::malformed("since is a cursor an export gave, 0 or more"));
    }
    let limit = q.limit.unwrap_or(MAX_EXPORT_PAGE).clamp(1, MAX_EXPORT_PAGE);
    let page = state.storage.export_page(area.to_string(), q.since, limit).await?;
    tracing::info!(token = %token.id, area = %area, since = q.since, households = page.households.len(), "export page");
    let next = page.next;
    // Each household is written as the body is sent.
    let lines = futures_util::stream::iter(page.households.into_iter().map(|h| {
        let mut w = ExportWriter::new(Vec::new(), Format::Jsonl)?;
        w.write(&h)?;
        w.finish()
    }));
    Response::builder()
        .header("content-type", "application/x-ndjson; charset=utf-8")
        .header(NEXT_HEADER, next.to_string())
        .header("cache-control", "no-store")
        .body(Body::from_stream(lines))
        .map_err(|e| ApiError::internal(e.to_string()))
}

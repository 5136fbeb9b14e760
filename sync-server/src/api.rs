//! HTTP routes of the device protocol (CBOR: enrol, sync, attachments) and the
//! operators' JSON API. The web console ([`crate::console`]) is its sibling under one router ([`crate::router`]).

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use doorstep_core::area::Area;
use doorstep_core::sync::protocol::{
    BlobGet, BlobPut, CONTENT_TYPE, EnrolRequest, EnrolResponse, ErrorCode, MAX_BODY_BYTES, PROTOCOL_VERSION,
    SyncRequest, decode, encode,
};
use doorstep_core::sync::revocation::Revocation;
use serde::Deserialize;

use crate::error::ApiError;
use crate::state::{AppState, REQUEST_TIMEOUT, create_enrolment, hash_secret, make_secret};
use crate::storage::Device;

async fn within_timeout<T>(f: impl std::future::Future<Output = Result<T, ApiError>>) -> Result<T, ApiError> {
    tokio::time::timeout(REQUEST_TIMEOUT, f).await.unwrap_or_else(|_| {
        Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Internal, "the request took too long: retry"))
    })
}

/// The request body, decompressed when it came zstd-compressed, at most [`MAX_BODY_BYTES`]
/// once decompressed: a zstd bomb stops at the limit with a typed refusal.
async fn read_body(body: Body) -> Result<Vec<u8>, ApiError> {
    to_bytes(body, MAX_BODY_BYTES).await.map(|b| b.to_vec()).map_err(|e| {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(c) = cause {
            if c.is::<http_body_util::LengthLimitError>() {
                return ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::TooLarge,
                    format!("body over {MAX_BODY_BYTES} bytes (decompressed)"),
                );
            }
            cause = c.source();
        }
        ApiError::malformed("the body could not be read (a broken compressed stream?)")
    })
}

/// Compression of the device protocol (zstd, RFC 7694): answers are compressed for a client
/// that accepts zstd, requests may come compressed, and every answer says the server takes them.
fn compressed(routes: Router<Arc<AppState>>) -> Router<Arc<AppState>> {
    use tower_http::compression::CompressionLayer;
    use tower_http::decompression::RequestDecompressionLayer;
    routes
        .layer(axum::middleware::map_response(|mut resp: Response| async move {
            resp.headers_mut()
                .insert(axum::http::header::ACCEPT_ENCODING, axum::http::HeaderValue::from_static("zstd"));
            resp
        }))
        .layer(CompressionLayer::new().zstd(true))
        .layer(RequestDecompressionLayer::new().zstd(true))
}

fn decode_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    decode(bytes).map_err(|e| ApiError::malformed(e.to_string()))
}

fn cbor(value: &impl serde::Serialize) -> Response {
    ([("content-type", CONTENT_TYPE)], encode(value)).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ")
}

async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Device, ApiError> {
    let credential = bearer(headers)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, "missing credential"))?;
    let device = state
        .storage
        .device_by_credential(hash_secret(credential))
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, "unknown credential"))?;
    if let Some(revoked_at) = device.revoked_at {
        // Signed with the key the device received at enrolment: it wipes only on this signature.
        let statement = Revocation { device_id: device.device_id.clone(), revoked_at }.sign(state.slip_key().await?);
        let mut refusal =
            ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Revoked, "this device was revoked: wipe local data");
        refusal.revocation = Some(statement);
        return Err(refusal);
    }
    Ok(device)
}

/// The connection's peer address, as the server records it for each request.
pub type Peer = Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>;

async fn enrol(
    State(state): State<Arc<AppState>>,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Tokens are 256-bit random and single-use, so guessing is hopeless; failed enrolments back
    // off per address, which bounds the work (a database write) a stranger can cause.
    let client = state.limits.client(peer.as_deref(), &headers);
    state.limits.enrol_allowed(client, std::time::Instant::now())?;
    let outcome = redeem(&state, body).await;
    let ok = !matches!(&outcome, Err(e) if e.status.is_client_error());
    state.limits.enrol_result(client, ok, std::time::Instant::now());
    outcome
}

async fn redeem(state: &AppState, body: Body) -> Result<Response, ApiError> {
    let req: EnrolRequest = decode_body(&read_body(body).await?)?;
    if req.protocol != PROTOCOL_VERSION {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::UnsupportedVersion,
            "unsupported protocol version",
        ));
    }
    if doorstep_core::record::check_id(&req.device_id).is_err() {
        return Err(ApiError::malformed("bad device id"));
    }
    let credential = make_secret()?;
    let areas = state
        .storage
        .redeem_enrolment(
            hash_secret(&req.token),
            req.device_id,
            hash_secret(&credential),
            state.now(),
            state.now() - state.enrolment_ttl_secs,
        )
        .await?;
    let slip_key = Some(hex::encode(state.slip_key().await?.verifying_key().to_bytes()));
    Ok(cbor(&EnrolResponse { protocol: PROTOCOL_VERSION, credential, areas, slip_key }))
}

async fn sync(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    within_timeout(async {
        let device = authenticate(&state, &headers).await?;
        state.limits.device(&device.device_id)?;
        let req: SyncRequest = decode_body(&read_body(body).await?)?;
        if req.protocol != PROTOCOL_VERSION {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::UnsupportedVersion,
                "unsupported protocol version",
            ));
        }
        let resp = state.storage.sync(device, req, state.snapshot_page_docs, state.now()).await?;
        Ok(cbor(&resp))
    })
    .await
}

async fn blob_put(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    within_timeout(async {
        let device = authenticate(&state, &headers).await?;
        state.limits.attachment(&device.device_id)?;
        let put: BlobPut = decode_body(&read_body(body).await?)?;
        check_version(put.protocol)?;
        Ok(cbor(&state.storage.put_blob(device, put, state.attachment_quota, state.now()).await?))
    })
    .await
}

async fn blob_get(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    within_timeout(async {
        let device = authenticate(&state, &headers).await?;
        state.limits.attachment(&device.device_id)?;
        let get: BlobGet = decode_body(&read_body(body).await?)?;
        check_version(get.protocol)?;
        Ok(cbor(&state.storage.get_blob(device, get).await?))
    })
    .await
}

fn check_version(protocol: u32) -> Result<(), ApiError> {
    if protocol != PROTOCOL_VERSION {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::UnsupportedVersion,
            "unsupported protocol version",
        ));
    }
    Ok(())
}

fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match bearer(headers) {
        Some(t) if !state.admin_token.is_empty() && hash_secret(t) == hash_secret(&state.admin_token) => Ok(()),
        _ => Err(ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, "operator token required")),
    }
}

#[derive(Deserialize)]
struct AreaQuery {
    area: Option<Area>,
    doc_id: Option<String>,
}

/// Who the audit names for what the operators' API does: the holder of the admin token.
/// Never a name from the request.
pub const ADMIN_API_IDENTITY: &str = "admin-api";

#[derive(Deserialize)]
struct NewEnrolment {
    area: String,
}

/// A resolution through the API: the value only. The audit names the credential's
/// holder; a body that names an operator is refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Resolution {
    value: Option<String>,
}

async fn admin_enrol(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Json(req): Json<NewEnrolment>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    let code = create_enrolment(&state, &req.area).await?;
    let action = format!("create enrolment for area {}", code.area);
    state.storage.log_event(state.now(), ADMIN_API_IDENTITY.into(), action).await?;
    Ok(Json(serde_json::json!({ "qr_text": code.to_qr_text(), "area": code.area })).into_response())
}

async fn admin_devices(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    Ok(Json(state.storage.devices(String::new()).await?).into_response())
}

async fn admin_revoke(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(device_id): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    if !state.storage.revoke_device(device_id.clone(), state.now()).await? {
        return Err(ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such active device"));
    }
    state.storage.log_event(state.now(), ADMIN_API_IDENTITY.into(), format!("revoke device {device_id}")).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn admin_conflicts(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<AreaQuery>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    Ok(Json(state.storage.conflicts(q.area.map(String::from)).await?).into_response())
}

async fn admin_resolve(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Json(r): Json<Resolution>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    state.storage.resolve_conflict(id, r.value, ADMIN_API_IDENTITY.to_string(), state.now()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn admin_duplicates(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<AreaQuery>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    Ok(Json(state.storage.duplicates(q.area.map(String::from)).await?).into_response())
}

async fn admin_audit(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<AreaQuery>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    Ok(Json(state.storage.audit(q.doc_id).await?).into_response())
}

/// The device protocol's routes (`/v1/enrol`, `/v1/sync`, attachments) and the operators' JSON API (`/v1/admin/*`).
pub fn routes() -> Router<Arc<AppState>> {
    let device_protocol = Router::new()
        .route("/v1/enrol", post(enrol))
        .route("/v1/sync", post(sync))
        .route("/v1/attachments/put", post(blob_put))
        .route("/v1/attachments/get", post(blob_get));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(compressed(device_protocol))
        .route("/v1/admin/enrolments", post(admin_enrol))
        .route("/v1/admin/devices", get(admin_devices))
        .route("/v1/admin/devices/{id}/revoke", post(admin_revoke))
        .route("/v1/admin/conflicts", get(admin_conflicts))
        .route("/v1/admin/conflicts/{id}/resolve", post(admin_resolve))
        .route("/v1/admin/duplicates", get(admin_duplicates))
        .route("/v1/admin/audit", get(admin_audit))
}

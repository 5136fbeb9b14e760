//! HTTP routes: the device protocol (CBOR: enrol, sync, attachments), the
//! operators' JSON API, and the web console (see [`crate::console`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use doorstep_core::sync::protocol::{
    BlobGet, BlobPut, CONTENT_TYPE, EnrolRequest, EnrolResponse, EnrolmentCode, ErrorCode, MAX_BODY_BYTES,
    PROTOCOL_VERSION, SyncRequest, decode, encode,
};
use serde::Deserialize;

use crate::error::ApiError;
use crate::storage::{Device, Storage};

/// What every handler shares.
pub struct AppState {
    /// The store.
    pub storage: Arc<dyn Storage>,
    /// The URL devices reach this server at, written into enrolment codes.
    pub public_url: String,
    /// Bearer token for the operators' API.
    pub admin_token: String,
    /// Attachment bytes each device may store on the server.
    pub attachment_quota: u64,
    limiter: Mutex<HashMap<String, (f64, Instant)>>,
    slip_key: tokio::sync::OnceCell<ed25519_dalek::SigningKey>,
}

/// Attachment storage per device, unless configured otherwise: 512 MiB.
pub const DEFAULT_ATTACHMENT_QUOTA: u64 = 512 * 1024 * 1024;
/// Attachment requests a device may make in a burst (chunks and thumbnails are many and small).
pub const BLOB_RATE_BURST: f64 = 200.0;
/// Attachment requests a second a device regains.
pub const BLOB_RATE_PER_SEC: f64 = 100.0;

/// Requests a device may make in a burst.
pub const RATE_BURST: f64 = 20.0;
/// Requests a second a device regains.
pub const RATE_PER_SEC: f64 = 10.0;
/// Rate-limit buckets kept before idle ones are forgotten.
const MAX_BUCKETS: usize = 10_000;
/// Longest a request may take before the server answers 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl AppState {
    /// State for a server with this store, public URL and operator token.
    pub fn new(storage: Arc<dyn Storage>, public_url: String, admin_token: String) -> AppState {
        AppState {
            storage,
            public_url,
            admin_token,
            attachment_quota: DEFAULT_ATTACHMENT_QUOTA,
            limiter: Mutex::new(HashMap::new()),
            slip_key: tokio::sync::OnceCell::new(),
        }
    }

    /// The key that signs verification slips: made once, kept in the store, shared by every node.
    pub async fn slip_key(&self) -> Result<&ed25519_dalek::SigningKey, ApiError> {
        self.slip_key
            .get_or_try_init(|| async {
                let fresh = doorstep_core::slip::generate_signing_key().map_err(ApiError::internal)?;
                let stored =
                    self.storage.setting_or_insert("slip_signing_key".into(), hex::encode(fresh.to_bytes())).await?;
                let seed: [u8; 32] = hex::decode(stored)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| ApiError::internal("the stored slip key is malformed"))?;
                Ok(ed25519_dalek::SigningKey::from_bytes(&seed))
            })
            .await
    }

    /// Token bucket per device, per server process.
    fn admit(&self, device_id: &str) -> Result<(), ApiError> {
        self.admit_with(device_id, RATE_BURST, RATE_PER_SEC)
    }

    /// Token bucket for `key` with this burst and refill rate, per server process.
    pub fn admit_with(&self, key: &str, burst: f64, per_sec: f64) -> Result<(), ApiError> {
        let mut buckets = self.limiter.lock().map_err(|_| ApiError::internal("poisoned limiter"))?;
        let now = Instant::now();
        // Keys come from clients (login names): forget idle buckets before the map grows large.
        if buckets.len() > MAX_BUCKETS {
            buckets.retain(|_, (_, last)| now.duration_since(*last) < Duration::from_secs(600));
        }
        let (tokens, last) = buckets.entry(key.to_string()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * per_sec).min(burst);
        *last = now;
        if *tokens < 1.0 {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                "too many requests: slow down",
            ));
        }
        *tokens -= 1.0;
        Ok(())
    }
}

async fn within_timeout<T>(f: impl std::future::Future<Output = Result<T, ApiError>>) -> Result<T, ApiError> {
    tokio::time::timeout(REQUEST_TIMEOUT, f).await.unwrap_or_else(|_| {
        Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Internal, "the request took too long: retry"))
    })
}

/// Unix seconds now.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A fresh random secret, hex.
pub fn make_secret() -> Result<String, ApiError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|_| ApiError::internal("random source failed"))?;
    Ok(hex::encode(b))
}

/// Secrets are stored hashed: a leaked database does not leak credentials.
pub fn hash_secret(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

async fn read_body(body: Body) -> Result<Vec<u8>, ApiError> {
    to_bytes(body, MAX_BODY_BYTES).await.map(|b| b.to_vec()).map_err(|_| {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge, format!("body over {MAX_BODY_BYTES} bytes"))
    })
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
    if device.revoked_at.is_some() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Revoked,
            "this device was revoked: wipe local data",
        ));
    }
    Ok(device)
}

async fn enrol(State(state): State<Arc<AppState>>, body: Body) -> Result<Response, ApiError> {
    // No rate limit here: tokens are 256-bit random and single-use, so guessing is hopeless.
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
    let areas =
        state.storage.redeem_enrolment(hash_secret(&req.token), req.device_id, hash_secret(&credential), now()).await?;
    let slip_key = Some(hex::encode(state.slip_key().await?.verifying_key().to_bytes()));
    Ok(cbor(&EnrolResponse { protocol: PROTOCOL_VERSION, credential, areas, slip_key }))
}

async fn sync(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    within_timeout(async {
        let device = authenticate(&state, &headers).await?;
        state.admit(&device.device_id)?;
        let req: SyncRequest = decode_body(&read_body(body).await?)?;
        if req.protocol != PROTOCOL_VERSION {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::UnsupportedVersion,
                "unsupported protocol version",
            ));
        }
        let resp = state.storage.sync(device, req, now()).await?;
        Ok(cbor(&resp))
    })
    .await
}

async fn blob_put(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    within_timeout(async {
        let device = authenticate(&state, &headers).await?;
        state.admit_with(&format!("blob:{}", device.device_id), BLOB_RATE_BURST, BLOB_RATE_PER_SEC)?;
        let put: BlobPut = decode_body(&read_body(body).await?)?;
        check_version(put.protocol)?;
        Ok(cbor(&state.storage.put_blob(device, put, state.attachment_quota, now()).await?))
    })
    .await
}

async fn blob_get(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    within_timeout(async {
        let device = authenticate(&state, &headers).await?;
        state.admit_with(&format!("blob:{}", device.device_id), BLOB_RATE_BURST, BLOB_RATE_PER_SEC)?;
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
    area: Option<String>,
    doc_id: Option<String>,
}

#[derive(Deserialize)]
struct NewEnrolment {
    area: String,
}

#[derive(Deserialize)]
struct Resolution {
    value: Option<String>,
    operator: String,
}

/// Creates an enrolment: returns the QR text; the CLI and console render it.
pub async fn create_enrolment(state: &AppState, area: &str) -> Result<EnrolmentCode, ApiError> {
    if area.is_empty() || area.len() > 64 {
        return Err(ApiError::malformed("bad area code"));
    }
    let token = make_secret()?;
    state.storage.create_enrolment(hash_secret(&token), area.to_string(), now()).await?;
    Ok(EnrolmentCode { v: PROTOCOL_VERSION, url: state.public_url.clone(), area: area.to_string(), token })
}

async fn admin_enrol(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Json(req): Json<NewEnrolment>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    let code = create_enrolment(&state, &req.area).await?;
    Ok(Json(serde_json::json!({ "qr_text": code.to_qr_text(), "area": code.area })).into_response())
}

async fn admin_devices(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    Ok(Json(state.storage.devices().await?).into_response())
}

async fn admin_revoke(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(device_id): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    if !state.storage.revoke_device(device_id, now()).await? {
        return Err(ApiError::new(StatusCode::NOT_FOUND, ErrorCode::Malformed, "no such active device"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn admin_conflicts(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<AreaQuery>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    Ok(Json(state.storage.conflicts(q.area).await?).into_response())
}

async fn admin_resolve(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Json(r): Json<Resolution>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    state.storage.resolve_conflict(id, r.value, r.operator, now()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn admin_duplicates(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<AreaQuery>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    Ok(Json(state.storage.duplicates(q.area).await?).into_response())
}

async fn admin_audit(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<AreaQuery>,
) -> Result<Response, ApiError> {
    require_admin(&state, &headers)?;
    Ok(Json(state.storage.audit(q.doc_id).await?).into_response())
}

/// The router: `/v1/enrol` and `/v1/sync` for devices, `/v1/admin/*` for operators.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/enrol", post(enrol))
        .route("/v1/sync", post(sync))
        .route("/v1/attachments/put", post(blob_put))
        .route("/v1/attachments/get", post(blob_get))
        .route("/v1/admin/enrolments", post(admin_enrol))
        .route("/v1/admin/devices", get(admin_devices))
        .route("/v1/admin/devices/{id}/revoke", post(admin_revoke))
        .route("/v1/admin/conflicts", get(admin_conflicts))
        .route("/v1/admin/conflicts/{id}/resolve", post(admin_resolve))
        .route("/v1/admin/duplicates", get(admin_duplicates))
        .route("/v1/admin/audit", get(admin_audit))
        .merge(crate::console::routes())
        .with_state(state)
}

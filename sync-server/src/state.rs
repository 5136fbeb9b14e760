//! What every request handler shares — the store, the server's settings, rate
//! limits, the clock — and the operations both the device API and the console use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use doorstep_core::area::Area;
use doorstep_core::sync::protocol::{EnrolmentCode, ErrorCode, PROTOCOL_VERSION};

use crate::error::ApiError;
use crate::storage::Storage;

/// Where the server reads the time: the system clock, or a fixed one in tests.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    /// The system clock, Unix seconds.
    pub fn system() -> Clock {
        Clock(Arc::new(|| chrono::Utc::now().timestamp()))
    }

    /// A clock that reads `f`.
    pub fn from_fn(f: impl Fn() -> i64 + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(f))
    }

    /// Unix seconds now.
    pub fn now(&self) -> i64 {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

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
    /// Where the time comes from.
    pub clock: Clock,
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
            clock: Clock::system(),
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

    /// Unix seconds now, by the state's clock.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Today's date (UTC), by the state's clock.
    pub fn today(&self) -> chrono::NaiveDate {
        chrono::DateTime::from_timestamp(self.now(), 0).unwrap_or_default().date_naive()
    }

    /// Token bucket per device, per server process.
    pub fn admit(&self, device_id: &str) -> Result<(), ApiError> {
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

/// Creates an enrolment: returns the QR text; the CLI and console render it.
pub async fn create_enrolment(state: &AppState, area: &str) -> Result<EnrolmentCode, ApiError> {
    let area = Area::parse(area).map_err(|e| ApiError::malformed(e.to_string()))?;
    let token = make_secret()?;
    state.storage.create_enrolment(hash_secret(&token), area.to_string(), state.now()).await?;
    Ok(EnrolmentCode { v: PROTOCOL_VERSION, url: state.public_url.clone(), area: area.into(), token })
}

//! What every request handler shares — the store, the server's settings, rate
//! limits, the clock — and the operations both the device API and the console use.

use std::sync::Arc;
use std::time::Duration;

use doorstep_core::area::Area;
use doorstep_core::sync::protocol::{EnrolmentCode, PROTOCOL_VERSION};

use crate::error::ApiError;
use crate::limits::Limits;
use crate::storage::{ExportToken, Storage};

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
    /// How long an enrolment code may be used after it is made, in seconds.
    pub enrolment_ttl_secs: i64,
    /// Request rates, the hashing cap and the login backoff.
    pub limits: Limits,
    /// Documents per page of a compact first sync (before the page's byte limit).
    pub snapshot_page_docs: i64,
    slip_key: tokio::sync::OnceCell<ed25519_dalek::SigningKey>,
}

/// How long an enrolment code works, unless configured otherwise: 72 hours.
pub const DEFAULT_ENROLMENT_TTL_SECS: i64 = 72 * 3600;
/// Documents per page of a compact first sync, unless configured otherwise.
pub const DEFAULT_SNAPSHOT_PAGE_DOCS: i64 = 4000;
/// Attachment storage per device, unless configured otherwise: 512 MiB.
pub const DEFAULT_ATTACHMENT_QUOTA: u64 = 512 * 1024 * 1024;
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
            enrolment_ttl_secs: DEFAULT_ENROLMENT_TTL_SECS,
            limits: Limits::default(),
            snapshot_page_docs: DEFAULT_SNAPSHOT_PAGE_DOCS,
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

    /// Today's date in Vietnam, by the state's clock.
    pub fn today(&self) -> chrono::NaiveDate {
        doorstep_core::vn_time::date(self.now())
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

/// Creates an export token for an area (audited as `by`): returns the token and its secret,
/// which is shown once and stored only hashed.
pub async fn create_export_token(
    state: &AppState,
    area: &str,
    label: &str,
    by: &str,
) -> Result<(ExportToken, String), ApiError> {
    let area = Area::parse(area).map_err(|e| ApiError::malformed(e.to_string()))?;
    let label = label.trim();
    if label.is_empty() || label.chars().count() > 100 {
        return Err(ApiError::malformed("an export token needs a label of 1-100 characters"));
    }
    let secret = format!("dx_{}", make_secret()?);
    let id = format!("xt-{}", &make_secret()?[..12]);
    let now = state.now();
    let token = ExportToken {
        id,
        area: area.to_string(),
        label: label.to_string(),
        created_by: by.to_string(),
        created_at: now,
        revoked_at: None,
    };
    state.storage.create_export_token(token.clone(), hash_secret(&secret)).await?;
    state
        .storage
        .log_event(
            now,
            by.to_string(),
            format!("created export token {} for area {} ({})", token.id, token.area, label),
        )
        .await?;
    Ok((token, secret))
}

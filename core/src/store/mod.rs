//! The encrypted offline store: SQLite (bundled) holding sealed Automerge
//! chunks, sealed summaries and blind indexes.
//!
//! Nothing written to the file, its WAL or a temp file holds plaintext
//! citizen data: documents and summaries are sealed with a subkey of the
//! device data key before they reach SQLite, lookups go through keyed hashes,
//! and temp storage stays in memory. What stays in clear: ids, area codes,
//! profile labels, change hashes, sizes and timestamps.

mod attachments;
mod households;
mod moves;
mod profiles;
mod quarantine;
mod schema;
mod summary;
mod sync_state;
mod transfer;

use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension};

pub use attachments::{PendingUpload, PhotoSize};
pub use households::{DuplicateCandidate, SaveOutcome, StorageStats};
pub use moves::{MOVED_OUT, MoveOutcome, TransferRequest};
pub use profiles::{FREE_ATTEMPTS, MAX_LOCKOUT_SECS, MIN_PIN_LEN, ProfileInfo, Role, lockout_secs};
pub use quarantine::QuarantinedDoc;
pub use schema::LATEST_VERSION;
pub use summary::{HouseholdSummary, ListedHousehold, MemberSummary, SearchHit};
pub use sync_state::{PendingPush, RemoteBatch};
pub use transfer::MAX_BUNDLE_HOUSEHOLDS;

use crate::crypto::{BlindIndexer, DataKey, KdfParams, Sealer};
use crate::error::{Error, Result};
use crate::record::{Editor, make_id};

/// The time, as the store sees it. Tests replace it to check lockouts.
pub trait Clock: Send + Sync {
    /// Unix seconds.
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        chrono::Utc::now().timestamp()
    }
}

struct Session {
    profile: ProfileInfo,
    dek: DataKey,
    sealer: Sealer,
    indexer: BlindIndexer,
}

/// One device's store. Many profiles share it; one is unlocked at a time.
pub struct Store {
    conn: Connection,
    clock: Arc<dyn Clock>,
    device_id: String,
    session: Option<Session>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("device_id", &self.device_id)
            .field("unlocked", &self.session.as_ref().map(|s| &s.profile.label))
            .finish()
    }
}

impl Store {
    /// Opens (or creates) a store file, migrating it to the latest schema.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Self::open_with_clock(path, Arc::new(SystemClock))
    }

    /// [`Store::open`] with another clock.
    pub fn open_with_clock(path: impl AsRef<Path>, clock: Arc<dyn Clock>) -> Result<Store> {
        let mut conn = Connection::open(path)?;
        schema::open_database(&mut conn)?;
        let device_id: Option<String> =
            conn.query_row("SELECT device_id FROM device WHERE id = 1", [], |r| r.get(0)).optional()?;
        let device_id = match device_id {
            Some(id) => id,
            None => {
                let id = make_id("dev")?;
                conn.execute(
                    "INSERT INTO device (id, device_id, created_at) VALUES (1, ?1, ?2)",
                    rusqlite::params![id, clock.now()],
                )?;
                id
            }
        };
        Ok(Store { conn, clock, device_id, session: None })
    }

    /// This device's id.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// The profiles on this device.
    pub fn profiles(&self) -> Result<Vec<ProfileInfo>> {
        profiles::list(&self.conn)
    }

    /// The unlocked profile, if any.
    pub fn current_profile(&self) -> Option<&ProfileInfo> {
        self.session.as_ref().map(|s| &s.profile)
    }

    /// Creates a profile protected by `pin` (and the platform secret, when given).
    ///
    /// The first profile on a device must be an officer's; it creates the
    /// device data key. Later profiles can be added only while an officer is unlocked.
    pub fn create_profile(
        &mut self,
        label: &str,
        role: Role,
        pin: &str,
        platform_secret: Option<&[u8]>,
        kdf: KdfParams,
    ) -> Result<ProfileInfo> {
        profiles::check_pin(pin)?;
        let label = label.trim();
        if label.is_empty() || label.len() > 64 {
            return Err(Error::InvalidArgument("a profile label needs 1 to 64 characters".into()));
        }
        let existing = self.profiles()?;
        if existing.iter().any(|p| p.label == label) {
            return Err(Error::AlreadyExists(format!("profile {label}")));
        }
        let dek = if existing.is_empty() {
            if role != Role::Officer {
                return Err(Error::NotPermitted("the first profile on a device must be an officer".into()));
            }
            DataKey::make()?
        } else {
            match &self.session {
                Some(s) if s.profile.role == Role::Officer => s.dek.clone(),
                Some(_) => return Err(Error::NotPermitted("only an officer can add profiles".into())),
                None => return Err(Error::Locked),
            }
        };
        let info = ProfileInfo {
            profile_id: make_id("p")?,
            label: label.to_string(),
            role,
            uses_platform_secret: platform_secret.is_some(),
        };
        profiles::write_row(&self.conn, &info, &dek, pin, platform_secret, kdf, self.clock.now())?;
        Ok(info)
    }

    /// Unlocks a profile (by label or id) with its PIN.
    ///
    /// A wrong PIN is [`Error::WrongPin`]; after [`FREE_ATTEMPTS`] in a row the
    /// profile is locked for a doubling time ([`Error::Throttled`]). The count
    /// is stored, so restarting the app does not reset it.
    pub fn unlock(&mut self, label: &str, pin: &str, platform_secret: Option<&[u8]>) -> Result<ProfileInfo> {
        self.session = None;
        let row = profiles::load_row(&self.conn, label)?;
        let dek = profiles::verify_pin(&self.conn, &row, pin, platform_secret, self.clock.now())?;
        self.session = Some(Session {
            sealer: Sealer::new(&dek),
            indexer: BlindIndexer::new(&dek),
            dek,
            profile: row.info.clone(),
        });
        Ok(row.info)
    }

    /// Forgets the data key. Everything but the profile list needs a new unlock.
    pub fn lock(&mut self) {
        self.session = None;
    }

    /// Changes the unlocked profile's PIN. Rewraps the data key; no record is re-encrypted.
    pub fn change_pin(&mut self, old_pin: &str, new_pin: &str, platform_secret: Option<&[u8]>) -> Result<()> {
        profiles::check_pin(new_pin)?;
        let profile = self.session.as_ref().ok_or(Error::Locked)?.profile.clone();
        let row = profiles::load_row(&self.conn, &profile.profile_id)?;
        let dek = profiles::verify_pin(&self.conn, &row, old_pin, platform_secret, self.clock.now())?;
        let info = ProfileInfo { uses_platform_secret: platform_secret.is_some(), ..profile };
        profiles::write_row(&self.conn, &info, &dek, new_pin, platform_secret, row.kdf, self.clock.now())?;
        if let Some(s) = &mut self.session {
            s.profile = info;
        }
        Ok(())
    }

    fn session(&self) -> Result<&Session> {
        self.session.as_ref().ok_or(Error::Locked)
    }

    /// Who edits, for Automerge authorship: the unlocked profile on this device.
    pub fn editor(&self) -> Result<Editor> {
        Ok(Editor { user: self.session()?.profile.label.clone(), device: self.device_id.clone() })
    }

    /// After a panic caught while this store was in use (at the FFI boundary): rolls back a
    /// transaction the panic left open, so that the next call starts clean. Nothing that was
    /// committed is touched.
    pub fn recover_after_panic(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }

    /// Runs SQL directly. For tests that tamper with the file.
    #[doc(hidden)]
    pub fn raw_connection(&self) -> &Connection {
        &self.conn
    }
}

#[cfg(test)]
mod tests;

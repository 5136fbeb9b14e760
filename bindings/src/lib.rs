//! # doorstep-ffi
//!
//! A thin UniFFI layer over `doorstep-core` for Kotlin (Android) and Swift
//! (iOS). It only wraps: objects hold core types behind a mutex and forward
//! to them; records mirror core types; every internal error is mapped once
//! to [`DoorstepError`], and every call runs under a panic guard, so nothing
//! unwinds across the FFI.

mod error;
mod records;
mod transfer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use doorstep_core::crypto::KdfParams;
use doorstep_core::form::residence_survey;
use doorstep_core::identity::{Cccd, ChipCardQr, PersonKey, Sex};
use doorstep_core::record::{Household, Member, make_id};
use doorstep_core::store::Store;
use doorstep_core::sync::protocol::EnrolmentCode;
use doorstep_core::sync::{HttpTransport, SyncProgress};
use doorstep_core::verification::VerificationState;

pub use error::DoorstepError;
use error::guard;
pub use records::*;
pub use transfer::{BundleReceiver, bundle_to_frames};

uniffi::setup_scaffolding!();

/// Supplies the platform secret (Android Keystore, iOS Keychain) mixed into a profile's key.
#[uniffi::export(foreign)]
pub trait KeyProvider: Send + Sync {
    /// The secret for this profile, or `None` when the platform has none.
    fn platform_secret(&self, profile_label: String) -> Option<Vec<u8>>;
}

/// Told about a sync's progress.
#[uniffi::export(foreign)]
pub trait SyncObserver: Send + Sync {
    /// Called after each round trip.
    fn on_progress(&self, progress: SyncProgressRecord);
}

struct ObserverBridge(Arc<dyn SyncObserver>);

impl doorstep_core::sync::SyncObserver for ObserverBridge {
    fn progress(&self, p: &SyncProgress) {
        self.0.on_progress(SyncProgressRecord {
            pushed: p.pushed as u64,
            pulled: p.pulled as u64,
            round_trips: p.round_trips as u64,
            quarantined: p.quarantined as u64,
        });
    }
}

/// Today in Vietnam (the one clock of days: `doorstep_core::vn_time`).
fn today() -> chrono::NaiveDate {
    doorstep_core::vn_time::date(chrono::Utc::now().timestamp())
}

/// One device's encrypted household store.
#[derive(uniffi::Object)]
pub struct DoorstepStore {
    store: Mutex<Store>,
    pub(crate) cancel: AtomicBool,
    /// Argon2id cost for new profiles and PIN changes.
    kdf: KdfParams,
}

impl DoorstepStore {
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Store) -> doorstep_core::Result<T>) -> Result<T, DoorstepError> {
        guard(|| self.held(f).map_err(DoorstepError::from))
    }

    /// Runs `f` with the store held. A panic caught while the store was held left its mutex
    /// poisoned: what it left half done is undone and the store goes on.
    fn held<T>(&self, f: impl FnOnce(&mut Store) -> doorstep_core::Result<T>) -> doorstep_core::Result<T> {
        let mut store = match self.store.lock() {
            Ok(store) => store,
            Err(poisoned) => {
                self.store.clear_poison();
                let mut store = poisoned.into_inner();
                store.recover_after_panic();
                store
            }
        };
        f(&mut store)
    }
}

/// A sync holds the store only between its network round trips (never while a request is on
/// the network), so the app's other calls go on meanwhile.
impl doorstep_core::sync::StoreAccess for DoorstepStore {
    fn with_store<R>(&self, f: impl FnOnce(&mut Store) -> doorstep_core::Result<R>) -> doorstep_core::Result<R> {
        self.held(f)
    }
}

fn secret_for(provider: &Option<Arc<dyn KeyProvider>>, label: &str) -> Option<Vec<u8>> {
    provider.as_ref().and_then(|p| p.platform_secret(label.to_string()))
}

#[uniffi::export]
impl DoorstepStore {
    /// Opens (or creates) the store file at `path`.
    #[uniffi::constructor]
    pub fn open(path: String) -> Result<Arc<DoorstepStore>, DoorstepError> {
        guard(|| {
            let store = Store::open(&path)?;
            Ok(Arc::new(DoorstepStore {
                store: Mutex::new(store),
                cancel: AtomicBool::new(false),
                kdf: KdfParams::default(),
            }))
        })
    }

    /// This device's id.
    pub fn device_id(&self) -> Result<String, DoorstepError> {
        self.with(|s| Ok(s.device_id().to_string()))
    }

    /// Profiles on this device.
    pub fn profiles(&self) -> Result<Vec<Profile>, DoorstepError> {
        self.with(|s| Ok(s.profiles()?.into_iter().map(Into::into).collect()))
    }

    /// Creates a profile. The first must be an officer; later ones need an officer unlocked.
    pub fn create_profile(
        &self,
        label: String,
        role: ProfileRole,
        pin: String,
        key_provider: Option<Arc<dyn KeyProvider>>,
    ) -> Result<Profile, DoorstepError> {
        let secret = secret_for(&key_provider, &label);
        self.with(|s| Ok(s.create_profile(&label, role.into(), &pin, secret.as_deref(), self.kdf)?.into()))
    }

    /// Unlocks a profile with its PIN (and the platform secret, when it uses one).
    pub fn unlock(
        &self,
        label: String,
        pin: String,
        key_provider: Option<Arc<dyn KeyProvider>>,
    ) -> Result<Profile, DoorstepError> {
        let secret = secret_for(&key_provider, &label);
        self.with(|s| Ok(s.unlock(&label, &pin, secret.as_deref())?.into()))
    }

    /// Changes the unlocked profile's PIN. Re-encrypts nothing.
    pub fn change_pin(
        &self,
        old_pin: String,
        new_pin: String,
        key_provider: Option<Arc<dyn KeyProvider>>,
    ) -> Result<(), DoorstepError> {
        self.with(|s| {
            let label = s.current_profile().map(|p| p.label.clone()).ok_or(doorstep_core::Error::Locked)?;
            let secret = secret_for(&key_provider, &label);
            s.change_pin(&old_pin, &new_pin, secret.as_deref())
        })
    }

    /// Forgets the key until the next unlock.
    pub fn lock(&self) -> Result<(), DoorstepError> {
        self.with(|s| {
            s.lock();
            Ok(())
        })
    }

    /// Saves a new household (an empty id gets a fresh one). Returns validation issues; the household is saved anyway.
    pub fn create_household(&self, household: HouseholdRecord) -> Result<SaveResult, DoorstepError> {
        self.with(|s| {
            let mut h: Household = household.into();
            if h.household_id.is_empty() {
                h.household_id = make_id("hh")?;
            }
            let (_, out) = s.create_household(&h)?;
            Ok(SaveResult {
                household_id: h.household_id,
                issues: out.issues.into_iter().map(Into::into).collect(),
                changed: out.changed,
            })
        })
    }

    /// Saves an edited household: only the fields that changed are written.
    pub fn update_household(&self, household: HouseholdRecord) -> Result<SaveResult, DoorstepError> {
        self.with(|s| {
            let h: Household = household.into();
            let mut doc = s.open_household(&h.household_id)?;
            doc.update(&h, &s.editor()?)?;
            let out = s.save_household(&mut doc)?;
            Ok(SaveResult {
                household_id: h.household_id,
                issues: out.issues.into_iter().map(Into::into).collect(),
                changed: out.changed,
            })
        })
    }

    /// Marks a household verified at the door after checking it with the family (and each of
    /// its residents), or — with `needsCorrection` — as needing correction, with a note; with
    /// `memberId`, one resident only. An edit made later shows as `editedAfterVerification`.
    pub fn verify_household(
        &self,
        household_id: String,
        needs_correction: bool,
        note: Option<String>,
        member_id: Option<String>,
    ) -> Result<VerificationRecord, DoorstepError> {
        let state = if needs_correction { VerificationState::NeedsCorrection } else { VerificationState::Verified };
        self.with(|s| Ok(s.verify_household(&household_id, state, note.as_deref(), member_id.as_deref())?.into()))
    }

    /// Reads a household.
    pub fn household(&self, household_id: String) -> Result<HouseholdRecord, DoorstepError> {
        self.with(|s| Ok(s.household(&household_id)?.into()))
    }

    /// Households, most recent first.
    pub fn list_households(&self, offset: u32, limit: u32) -> Result<Vec<HouseholdSummaryRecord>, DoorstepError> {
        self.with(|s| {
            Ok(s.list_households(offset, limit)?
                .into_iter()
                .map(|l| match l.summary {
                    Some(summary) => summary.into(),
                    None => HouseholdSummaryRecord {
                        household_id: l.household_id,
                        area_code: l.area_code,
                        address: String::new(),
                        head_name: None,
                        member_names: Vec::new(),
                        issue_count: 0,
                        conflict_count: 0,
                        updated_at: l.updated_at,
                        corrupt: true,
                    },
                })
                .collect())
        })
    }

    /// Finds residents by CCCD number.
    pub fn search_cccd(&self, cccd: String) -> Result<Vec<SearchHitRecord>, DoorstepError> {
        self.with(|s| {
            Ok(s.search_cccd(&cccd)?
                .into_iter()
                .map(|h| SearchHitRecord { household: h.household.into(), member_ids: h.member_ids })
                .collect())
        })
    }

    /// Finds residents by name words, diacritics optional.
    pub fn search_name(&self, query: String) -> Result<Vec<SearchHitRecord>, DoorstepError> {
        self.with(|s| {
            Ok(s.search_name(&query)?
                .into_iter()
                .map(|h| SearchHitRecord { household: h.household.into(), member_ids: h.member_ids })
                .collect())
        })
    }

    /// Possible duplicates of a person being entered.
    pub fn find_duplicates(
        &self,
        member: MemberRecord,
        exclude_household: Option<String>,
    ) -> Result<Vec<DuplicateRecord>, DoorstepError> {
        self.with(|s| {
            let key = PersonKey {
                full_name: member.full_name,
                dob: member.dob.as_deref().and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()),
                sex: member.sex.as_deref().and_then(Sex::parse),
                cccd: member.cccd,
                phone: member.phone,
            };
            Ok(s.find_duplicates(&key, exclude_household.as_deref())?
                .into_iter()
                .map(|d| DuplicateRecord {
                    household_id: d.household_id,
                    member_id: d.member_id,
                    full_name: d.full_name,
                    score: d.score.probability,
                    reasons: d.score.explanation_lines(),
                })
                .collect())
        })
    }

    /// Fields of a household with concurrent values.
    pub fn conflicts(&self, household_id: String) -> Result<Vec<ConflictRecord>, DoorstepError> {
        self.with(|s| {
            Ok(s.open_household(&household_id)?
                .conflicts()?
                .into_iter()
                .map(|c| ConflictRecord {
                    path: c.path,
                    values: c
                        .values
                        .into_iter()
                        .map(|v| ConflictValueRecord { value: v.value, author: v.author, time: v.time })
                        .collect(),
                })
                .collect())
        })
    }

    /// Settles a conflict with the chosen (or typed) value.
    pub fn resolve_conflict(
        &self,
        household_id: String,
        path: String,
        value: Option<String>,
    ) -> Result<(), DoorstepError> {
        self.with(|s| {
            let mut doc = s.open_household(&household_id)?;
            doc.resolve(&path, value.as_deref(), &s.editor()?)?;
            s.save_household(&mut doc)?;
            Ok(())
        })
    }

    /// Enrols with a sync server from a photo of its enrolment QR code. Returns the areas.
    pub fn enrol_from_qr_image(&self, image: Vec<u8>) -> Result<Vec<String>, DoorstepError> {
        self.with(|s| {
            let code = EnrolmentCode::from_image(&image)?;
            let transport = HttpTransport::new(&code.url)?;
            doorstep_core::sync::enrol(s, &transport, &code)
        })
    }

    /// Syncs with the server, blocking the calling thread. `cancel_sync` stops it between round trips.
    pub fn sync_blocking(&self, observer: Option<Arc<dyn SyncObserver>>) -> Result<SyncReportRecord, DoorstepError> {
        self.cancel.store(false, Ordering::SeqCst);
        guard(|| {
            let url = self
                .with(|s| s.sync_value("server_url"))?
                .ok_or_else(|| doorstep_core::Error::InvalidArgument("not enrolled".into()))?;
            let transport = HttpTransport::new(&url)?;
            let bridge = observer.map(ObserverBridge);
            let r = doorstep_core::sync::sync_shared(self, &transport, bridge.as_ref().map(|b| b as _), &self.cancel)?;
            Ok(SyncReportRecord {
                pushed: r.pushed as u64,
                pulled: r.pulled as u64,
                round_trips: r.round_trips as u64,
                bytes_sent: r.bytes_sent as u64,
                bytes_received: r.bytes_received as u64,
                refused: r
                    .refused
                    .into_iter()
                    .map(|d| RefusedHouseholdRecord { household_id: d.doc_id, reason: d.message })
                    .collect(),
                quarantined: r
                    .quarantined
                    .into_iter()
                    .map(|(household_id, reason)| RefusedHouseholdRecord { household_id, reason })
                    .collect(),
                released: r.released as u64,
                departed: r.departed as u64,
                departing: r
                    .departing
                    .into_iter()
                    .map(|(household_id, to_area)| DepartingRecord { household_id, to_area })
                    .collect(),
                transfers_decided: r.transfers_decided.into_iter().map(Into::into).collect(),
            })
        })
    }

    /// Moves a household to `toArea`. Within this device's areas it moves at once (the next
    /// sync sends it; the old area's other devices drop it, the new area's receive it whole).
    /// Outside them it becomes a transfer request, with `reason`, for an operator whose scope
    /// covers both areas; `transferRequests` shows how it stands after each sync.
    pub fn move_household(
        &self,
        household_id: String,
        to_area: String,
        reason: String,
    ) -> Result<MoveResult, DoorstepError> {
        self.with(|s| {
            Ok(match s.move_household(&household_id, &to_area, &reason)? {
                doorstep_core::store::MoveOutcome::Moved => MoveResult { moved: true, transfer_request_id: None },
                doorstep_core::store::MoveOutcome::TransferRequested { request_id } => {
                    MoveResult { moved: false, transfer_request_id: Some(request_id) }
                }
            })
        })
    }

    /// Moves resident `memberId` of household `fromHousehold` into `toHousehold` (both held on
    /// this device) on `date` (`YYYY-MM-DD`): "moved out" in the old household, "moved in" in
    /// the new one with `relation` to its head, each record naming the other. Returns the new
    /// record's member id.
    pub fn move_resident(
        &self,
        from_household: String,
        member_id: String,
        to_household: String,
        date: String,
        relation: Option<String>,
    ) -> Result<String, DoorstepError> {
        self.with(|s| s.move_resident(&from_household, &member_id, &to_household, &date, relation.as_deref()))
    }

    /// This device's transfer requests, newest first, as of the last sync.
    pub fn transfer_requests(&self) -> Result<Vec<TransferRequestRecord>, DoorstepError> {
        self.with(|s| Ok(s.transfer_requests()?.into_iter().map(Into::into).collect()))
    }

    /// Verifies a household verification slip from a photo of its QR code, offline, with the
    /// server key received at enrolment. A forged or altered slip gives `InvalidInput`.
    pub fn verify_slip_image(&self, image: Vec<u8>) -> Result<SlipRecord, DoorstepError> {
        self.with(|s| {
            let texts = doorstep_core::qr::decode_image(&image)?;
            let mut last = doorstep_core::Error::BadSignature("no verification slip in the image".into());
            for t in texts {
                match doorstep_core::sync::verify_slip(s, &t) {
                    Ok(slip) => return Ok(slip.into()),
                    Err(e) => last = e,
                }
            }
            Err(last)
        })
    }

    /// Asks a running sync to stop at its next round trip.
    pub fn cancel_sync(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// Deletes every household, profile and secret on this device.
    pub fn wipe(&self) -> Result<(), DoorstepError> {
        self.with(|s| s.wipe())
    }
}

/// The one runtime async exports run on.
pub(crate) fn runtime() -> Result<&'static tokio::runtime::Runtime, DoorstepError> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("doorstep")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| DoorstepError::Other { reason: format!("no runtime: {e}") })
}

#[uniffi::export]
impl DoorstepStore {
    /// Syncs with the server without blocking the caller: a suspend function in
    /// Kotlin, async in Swift. The work runs on the library's own runtime;
    /// `cancel_sync` stops it between round trips.
    pub async fn sync(
        self: Arc<Self>,
        observer: Option<Arc<dyn SyncObserver>>,
    ) -> Result<SyncReportRecord, DoorstepError> {
        let handle = runtime()?.spawn_blocking(move || self.sync_blocking(observer));
        handle.await.map_err(|e| DoorstepError::Other { reason: format!("sync task failed: {e}") })?
    }
}

/// The built-in residence survey, as JSON (labels in Vietnamese and English).
#[uniffi::export]
pub fn residence_survey_json() -> String {
    residence_survey().to_json().to_string()
}

/// Validates a household against the residence survey; every problem at once.
#[uniffi::export]
pub fn validate_household(household: HouseholdRecord) -> Vec<ValidationIssueRecord> {
    let h: Household = household.into();
    residence_survey().validate_owned(h.to_answers(), today()).into_iter().map(Into::into).collect()
}

/// Checks a CCCD number, and its agreement with a date of birth and sex when given.
#[uniffi::export]
pub fn check_cccd(number: String, dob: Option<String>, sex: Option<String>) -> Result<(), DoorstepError> {
    guard(|| {
        let cccd = Cccd::parse(&number).map_err(doorstep_core::Error::from)?;
        let dob = dob.as_deref().and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
        cccd.check_against(dob, sex.as_deref().and_then(Sex::parse)).map_err(doorstep_core::Error::from)?;
        Ok(())
    })
}

fn member_from_card(card: &ChipCardQr) -> Result<MemberRecord, DoorstepError> {
    Ok(Member::from_chip_card(card, make_id("m")?).into())
}

/// Prefills a member from the text of a chip CCCD card's QR code.
#[uniffi::export]
pub fn member_from_chip_card_text(text: String) -> Result<MemberRecord, DoorstepError> {
    guard(|| member_from_card(&ChipCardQr::parse(&text)?))
}

/// Prefills a member from a photo (PNG or JPEG) of a chip CCCD card's QR code.
#[uniffi::export]
pub fn member_from_chip_card_image(image: Vec<u8>) -> Result<MemberRecord, DoorstepError> {
    guard(|| member_from_card(&doorstep_core::qr::read_chip_card(&image)?))
}

/// A QR code PNG holding `text` (citizen receipts, test cards).
#[uniffi::export]
pub fn qr_png(text: String) -> Result<Vec<u8>, DoorstepError> {
    guard(|| Ok(doorstep_core::qr::encode_png(&text, 6)?))
}

/// Test hooks, built only with the `test-support` feature (the JVM tests' library): never in
/// the shipped library or its generated bindings.
#[cfg(any(test, feature = "test-support"))]
mod test_support {
    use super::*;

    #[uniffi::export]
    impl DoorstepStore {
        /// Opens a store with cheap key derivation. For tests only: never for real profiles.
        #[uniffi::constructor]
        pub fn open_for_tests(path: String) -> Result<Arc<DoorstepStore>, DoorstepError> {
            guard(|| {
                let store = Store::open(&path)?;
                Ok(Arc::new(DoorstepStore {
                    store: Mutex::new(store),
                    cancel: AtomicBool::new(false),
                    kdf: KdfParams::INSECURE_FOR_TESTS,
                }))
            })
        }

        /// Panics while holding the store (its mutex is poisoned): the next call must still work.
        pub fn panic_while_holding_store(&self) -> Result<(), DoorstepError> {
            self.with(|_| panic!("probe while the store is held"))
        }
    }

    /// Panics inside the boundary guard, to prove a panic comes out as an error.
    #[uniffi::export]
    pub fn internal_panic_probe() -> Result<(), DoorstepError> {
        guard(|| panic!("probe"))
    }
}
#[cfg(test)]
use test_support::internal_panic_probe;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_comes_out_as_an_error() {
        assert!(matches!(internal_panic_probe(), Err(DoorstepError::Other { reason }) if reason.contains("probe")));
    }

    #[test]
    fn a_panic_while_the_store_is_held_does_not_disable_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = DoorstepStore::open_for_tests(dir.path().join("s.db").to_str().unwrap().into()).unwrap();
        store.create_profile("officer".into(), ProfileRole::Officer, "246810".into(), None).unwrap();
        store.unlock("officer".into(), "246810".into(), None).unwrap();
        // A panic in the middle of a write transaction, caught at the boundary.
        let outcome: Result<(), DoorstepError> = store.with(|s| {
            s.raw_connection().execute_batch("BEGIN IMMEDIATE").unwrap();
            panic!("in the middle of a write")
        });
        assert!(matches!(outcome, Err(DoorstepError::Other { reason }) if reason.contains("middle")));
        assert!(store.store.is_poisoned());
        // The next calls work, and the half-done transaction was rolled back.
        assert!(store.list_households(0, 10).unwrap().is_empty());
        assert!(!store.store.is_poisoned());
        assert!(store.with(|s| Ok(s.raw_connection().is_autocommit())).unwrap());
    }

    #[test]
    fn errors_map_to_actions() {
        let dir = tempfile::tempdir().unwrap();
        let store = DoorstepStore::open_for_tests(dir.path().join("s.db").to_str().unwrap().into()).unwrap();
        store.create_profile("officer".into(), ProfileRole::Officer, "246810".into(), None).unwrap();
        assert!(matches!(store.list_households(0, 10), Err(DoorstepError::Locked)));
        assert!(matches!(
            store.unlock("officer".into(), "000000".into(), None),
            Err(DoorstepError::WrongPin { failed_attempts: 1 })
        ));
        store.unlock("officer".into(), "246810".into(), None).unwrap();
        assert!(matches!(member_from_chip_card_text("nope".into()), Err(DoorstepError::InvalidInput { .. })));
        assert!(matches!(store.household("hh-x".into()), Err(DoorstepError::NotFound { .. })));
        assert!(matches!(
            check_cccd("001190012345".into(), Some("1991-01-01".into()), None),
            Err(DoorstepError::InvalidInput { .. })
        ));
    }

    #[test]
    fn a_day_in_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let store = DoorstepStore::open_for_tests(dir.path().join("s.db").to_str().unwrap().into()).unwrap();
        store.create_profile("officer".into(), ProfileRole::Officer, "246810".into(), None).unwrap();
        store.unlock("officer".into(), "246810".into(), None).unwrap();
        let png = qr_png("001190012345||Nguyễn Thị Hồng Nhung|15031990|Nữ|Hà Nội|20042021".into()).unwrap();
        let mut head = member_from_chip_card_image(png).unwrap();
        head.relation = Some("head".into());
        head.residence_status = Some("permanent".into());
        let h = HouseholdRecord {
            household_id: String::new(),
            area_code: "01.001.00001".into(),
            address: "Số 12, Thôn Đông".into(),
            head_member_id: Some(head.member_id.clone()),
            location: None,
            house_photo: None,
            members: vec![head],
            events: vec![],
            verification: None,
            edited_after_verification: false,
            review_status: "not_submitted".into(),
            review_comment: None,
        };
        assert!(validate_household(h.clone()).is_empty());
        let saved = store.create_household(h).unwrap();
        assert!(saved.issues.is_empty());
        let hits = store.search_name("nguyen thi hong nhung".into()).unwrap();
        assert_eq!(hits[0].household.household_id, saved.household_id);
        let mut edited = store.household(saved.household_id.clone()).unwrap();
        edited.members[0].phone = Some("0912345678".into());
        assert!(store.update_household(edited).unwrap().changed);
        let v = store.verify_household(saved.household_id.clone(), false, None, None).unwrap();
        let verified = store.household(saved.household_id.clone()).unwrap();
        assert_eq!((v.state.as_str(), verified.review_status.as_str()), ("verified", "waiting"));
        assert_eq!(verified.members[0].verification.as_ref().map(|m| m.state.as_str()), Some("verified"));
        assert!(!verified.edited_after_verification);
        assert_eq!(store.list_households(0, 10).unwrap().len(), 1);
        assert!(residence_survey_json().contains("residence_survey"));
    }
}

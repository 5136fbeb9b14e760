use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use super::*;
use crate::record::{Household, Member};

struct FakeClock(AtomicI64);

impl Clock for FakeClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

const KDF: KdfParams = KdfParams::INSECURE_FOR_TESTS;

fn household(id: &str, name: &str, cccd: &str) -> Household {
    Household {
        household_id: id.into(),
        area_code: "01.001.00001".into(),
        address: "Số 1, Thôn Đông, xã Tân Lập".into(),
        head_member_id: Some("m1".into()),
        members: vec![Member {
            member_id: "m1".into(),
            full_name: name.into(),
            dob: Some("1966-01-01".into()),
            sex: Some("F".into()),
            cccd: Some(cccd.into()),
            relation: Some("head".into()),
            residence_status: Some("permanent".into()),
            ..Member::default()
        }],
        ..Household::default()
    }
}

fn sealed_chunks(store: &Store) -> Vec<Vec<u8>> {
    let mut stmt = store.raw_connection().prepare("SELECT sealed FROM doc_chunk ORDER BY doc_id, seq").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

fn new_store(dir: &tempfile::TempDir) -> (Store, Arc<FakeClock>) {
    let clock = Arc::new(FakeClock(AtomicI64::new(1_790_000_000)));
    let mut store = Store::open_with_clock(dir.path().join("s.db"), clock.clone()).unwrap();
    store.create_profile("officer", Role::Officer, "123456", None, KDF).unwrap();
    (store, clock)
}

#[test]
fn locked_store_refuses_everything_but_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = new_store(&dir);
    assert!(matches!(store.list_households(0, 10), Err(Error::Locked)));
    assert!(matches!(store.create_household(&household("hh-1", "A B", "080166796635")), Err(Error::Locked)));
    assert_eq!(store.profiles().unwrap().len(), 1);
}

#[test]
fn wrong_pin_is_typed_persisted_and_throttled() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, clock) = new_store(&dir);
    for n in 1..=FREE_ATTEMPTS {
        assert!(
            matches!(store.unlock("officer", "000000", None), Err(Error::WrongPin { failed_attempts }) if failed_attempts == n)
        );
    }
    // Now locked: even the right PIN waits.
    assert!(matches!(store.unlock("officer", "123456", None), Err(Error::Throttled { retry_after_secs: 30 })));
    // Restarting the app does not reset the count.
    drop(store);
    let mut store = Store::open_with_clock(dir.path().join("s.db"), clock.clone()).unwrap();
    assert!(matches!(store.unlock("officer", "123456", None), Err(Error::Throttled { .. })));
    clock.0.fetch_add(31, Ordering::SeqCst);
    assert!(matches!(store.unlock("officer", "000000", None), Err(Error::WrongPin { failed_attempts: 4 })));
    assert!(matches!(store.unlock("officer", "123456", None), Err(Error::Throttled { retry_after_secs: 60 })));
    clock.0.fetch_add(61, Ordering::SeqCst);
    store.unlock("officer", "123456", None).unwrap();
    store.lock();
    assert!(matches!(store.unlock("officer", "000000", None), Err(Error::WrongPin { failed_attempts: 1 })));
    assert!(matches!(store.unlock("nobody", "123456", None), Err(Error::NotFound(_))));
}

#[test]
fn profiles_share_one_data_key_and_pin_change_does_not_reencrypt() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = new_store(&dir);
    assert!(matches!(store.create_profile("two", Role::Officer, "1111", None, KDF), Err(Error::Locked)));
    store.unlock("officer", "123456", None).unwrap();
    store.create_profile("two", Role::Officer, "222222", Some(b"keystore"), KDF).unwrap();
    assert!(matches!(store.create_profile("two", Role::Officer, "222222", None, KDF), Err(Error::AlreadyExists(_))));
    assert!(matches!(store.create_profile("x", Role::Officer, "12", None, KDF), Err(Error::InvalidArgument(_))));
    store.create_household(&household("hh-1", "Lê Thanh Vân", "080166796635")).unwrap();
    let chunks_before = sealed_chunks(&store);

    store.unlock("two", "222222", Some(b"keystore")).unwrap();
    assert_eq!(store.household("hh-1").unwrap().members[0].full_name, "Lê Thanh Vân");
    assert!(matches!(store.unlock("two", "222222", None), Err(Error::InvalidArgument(_))));
    assert!(matches!(store.unlock("two", "222222", Some(b"other")), Err(Error::WrongPin { .. })));

    store.unlock("officer", "123456", None).unwrap();
    assert!(matches!(store.change_pin("999999", "654321", None), Err(Error::WrongPin { .. })));
    store.change_pin("123456", "654321", None).unwrap();
    store.lock();
    assert!(matches!(store.unlock("officer", "123456", None), Err(Error::WrongPin { .. })));
    store.unlock("officer", "654321", None).unwrap();
    assert_eq!(store.household("hh-1").unwrap().address, "Số 1, Thôn Đông, xã Tân Lập");
    let chunks_after = sealed_chunks(&store);
    assert_eq!(chunks_before, chunks_after, "changing a PIN re-encrypts nothing");
}

#[test]
fn first_profile_must_be_an_officer() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path().join("s.db")).unwrap();
    assert!(matches!(store.create_profile("h", Role::Helper, "1234", None, KDF), Err(Error::NotPermitted(_))));
}

#[test]
fn helper_registers_but_cannot_see_others() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = new_store(&dir);
    store.unlock("officer", "123456", None).unwrap();
    store.create_household(&household("hh-officer", "Trần Văn Hùng", "001070000001")).unwrap();
    store.create_profile("helper", Role::Helper, "4321", None, KDF).unwrap();
    store.unlock("helper", "4321", None).unwrap();
    assert!(matches!(store.create_profile("h2", Role::Helper, "4321", None, KDF), Err(Error::NotPermitted(_))));
    store.create_household(&household("hh-helper", "Nguyễn Thị Hồng Nhung", "001190012345")).unwrap();
    let listed: Vec<String> = store.list_households(0, 50).unwrap().into_iter().map(|l| l.household_id).collect();
    assert_eq!(listed, vec!["hh-helper"]);
    assert_eq!(store.count_households().unwrap(), 1);
    assert!(matches!(store.open_household("hh-officer"), Err(Error::NotPermitted(_))));
    assert!(store.search_cccd("001070000001").unwrap().is_empty());
    assert!(store.search_name("hung").unwrap().is_empty());
    assert_eq!(store.search_name("nhung").unwrap().len(), 1);
    store.unlock("officer", "123456", None).unwrap();
    assert_eq!(store.count_households().unwrap(), 2);

    // Photos follow their household: the helper reaches only its own.
    let jpeg = crate::photo::synthetic_jpeg(64, 48, 90);
    let officer_photo = store.add_house_photo("hh-officer", &jpeg, crate::photo::PhotoOptions::default()).unwrap();
    store.unlock("helper", "4321", None).unwrap();
    let own = crate::photo::synthetic_jpeg(80, 48, 90);
    store.add_house_photo("hh-helper", &own, crate::photo::PhotoOptions::default()).unwrap();
    assert!(store.house_photo("hh-helper", super::PhotoSize::Thumb).unwrap().is_some());
    assert!(matches!(store.house_photo("hh-officer", super::PhotoSize::Thumb), Err(Error::NotPermitted(_))));
    assert!(matches!(store.blob(&officer_photo.full.id), Err(Error::NotPermitted(_))));
    assert!(matches!(
        store.add_house_photo("hh-officer", &own, crate::photo::PhotoOptions::default()),
        Err(Error::NotPermitted(_))
    ));
}

#[test]
fn search_by_cccd_and_by_name_without_diacritics() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = new_store(&dir);
    store.unlock("officer", "123456", None).unwrap();
    store.create_household(&household("hh-1", "Nguyễn Thị Hồng Nhung", "001190012345")).unwrap();
    store.create_household(&household("hh-2", "Đặng Văn Đạt", "001070000001")).unwrap();
    let hits = store.search_cccd("001 190 012345").unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(
        (hits[0].household.household_id.as_str(), hits[0].member_ids.as_slice()),
        ("hh-1", ["m1".to_string()].as_slice())
    );
    assert!(store.search_cccd("001190012346").unwrap().is_empty());
    assert_eq!(store.search_name("nguyen thi hong nhung").unwrap()[0].household.household_id, "hh-1");
    assert_eq!(store.search_name("NHUNG nguyễn").unwrap().len(), 1);
    assert_eq!(store.search_name("dang dat").unwrap()[0].household.household_id, "hh-2");
    assert!(store.search_name("nhung dat").unwrap().is_empty());
    assert!(store.search_name("").unwrap().is_empty());
}

#[test]
fn saves_are_incremental_and_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = new_store(&dir);
    store.unlock("officer", "123456", None).unwrap();
    let (mut doc, first) = store.create_household(&household("hh-1", "Lê Thanh Vân", "080166796635")).unwrap();
    assert!(first.changed && first.issues.is_empty());
    let kinds = |store: &Store| -> Vec<String> {
        store
            .raw_connection()
            .prepare("SELECT kind FROM doc_chunk WHERE doc_id = 'hh-1' ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(kinds(&store), vec!["snapshot"]);
    let same = store.save_household(&mut doc).unwrap();
    assert!(!same.changed, "nothing changed, nothing written");
    let mut h = doc.read();
    let mut compacted_at = None;
    for i in 0..40 {
        h.address = format!("Số {i}, Thôn Đông, xã Tân Lập");
        doc.update(&h, &store.editor().unwrap()).unwrap();
        let out = store.save_household(&mut doc).unwrap();
        assert!(out.changed);
        if out.compacted {
            compacted_at = Some(i);
            break;
        }
        assert_eq!(kinds(&store).last().unwrap(), "incremental");
    }
    assert!(compacted_at.is_some_and(|i| i > 0), "compacted once the increments outgrew the snapshot");
    assert_eq!(kinds(&store), vec!["snapshot"]);
    assert_eq!(store.household("hh-1").unwrap(), h);
}

#[test]
fn two_open_copies_saved_in_turn_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = new_store(&dir);
    store.unlock("officer", "123456", None).unwrap();
    store.create_household(&household("hh-1", "Lê Thanh Vân", "080166796635")).unwrap();
    let mut a = store.open_household("hh-1").unwrap();
    let mut b = store.open_household("hh-1").unwrap();
    let ed = store.editor().unwrap();
    let mut ha = a.read();
    ha.address = "Số 9, Thôn Tây".into();
    a.update(&ha, &ed).unwrap();
    store.save_household(&mut a).unwrap();
    let mut hb = b.read();
    hb.members[0].phone = Some("0912345678".into());
    b.update(&hb, &ed).unwrap();
    store.save_household(&mut b).unwrap();
    let stored = store.household("hh-1").unwrap();
    assert_eq!(stored.address, "Số 9, Thôn Tây");
    assert_eq!(stored.members[0].phone.as_deref(), Some("0912345678"));
}

#[test]
fn invalid_households_are_saved_with_their_issues() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = new_store(&dir);
    store.unlock("officer", "123456", None).unwrap();
    let mut h = household("hh-1", "Lê Thanh Vân", "080167796635");
    h.address.clear();
    let (_, out) = store.create_household(&h).unwrap();
    let paths: Vec<&str> = out.issues.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(paths, vec!["address", "members[0].cccd"]);
    let listed = store.list_households(0, 10).unwrap();
    assert_eq!(listed[0].summary.as_ref().unwrap().issue_count, 2);
    assert!(matches!(store.create_household(&h), Err(Error::AlreadyExists(_))));
}

#[test]
fn duplicates_found_at_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = new_store(&dir);
    store.unlock("officer", "123456", None).unwrap();
    store.create_household(&household("hh-1", "Nguyễn Thị Hồng Nhung", "001190012345")).unwrap();
    let probe = crate::identity::PersonKey {
        full_name: "Nguyen Thi Hong Nhung".into(),
        dob: chrono::NaiveDate::from_ymd_opt(1966, 1, 1),
        sex: Some(crate::identity::Sex::Female),
        cccd: None,
        phone: None,
    };
    let found = store.find_duplicates(&probe, None).unwrap();
    assert_eq!(found.len(), 1);
    // Name and date of birth without the CCCD: worth a review, not proof.
    let model = crate::identity::LinkageModel::shipped();
    assert!(model.is_review(found[0].score.probability));
    assert!(!model.is_likely(found[0].score.probability));
    assert_eq!(found[0].score.model, model.version());
    let with_id = crate::identity::PersonKey { cccd: Some("001190012345".into()), ..probe.clone() };
    let found = store.find_duplicates(&with_id, None).unwrap();
    assert!(model.is_likely(found[0].score.probability), "{:?}", found[0].score);
    assert!(store.find_duplicates(&probe, Some("hh-1")).unwrap().is_empty());
    let stranger = crate::identity::PersonKey { full_name: "Phạm Văn Long".into(), ..probe };
    assert!(store.find_duplicates(&stranger, None).unwrap().is_empty());
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    drop(Store::open(&path).unwrap());
    rusqlite::Connection::open(&path).unwrap().pragma_update(None, "user_version", LATEST_VERSION + 1).unwrap();
    assert!(matches!(Store::open(&path), Err(Error::SchemaTooNew { .. })));
}

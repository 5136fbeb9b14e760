//! Households that move between areas (docs/SYNC-PROTOCOL.md, "Moves and transfers"):
//! a move inside a district device's areas, a transfer across districts approved or refused
//! by an operator, and what every device holds afterwards. Real phones syncing with a real
//! server on 127.0.0.1; both backends (the conformance run sets DOORSTEP_TEST_POSTGRES_URL).

mod common;

use common::{Device, TestServer, household};
use doorstep_core::Error;
use doorstep_core::record::{Household, HouseholdDoc};
use doorstep_core::store::MoveOutcome;
use doorstep_core::sync::protocol::TransferStatus;
use doorstep_sync_server::merge::server_editor;
use doorstep_sync_server::storage::AreaCounts;

const DISTRICT: &str = "01.001";
const OLD: &str = "01.001.00001";
const NEW: &str = "01.001.00002";
const FAR: &str = "01.002.00004";

/// The server's copy of a household.
fn on_server(server: &TestServer, id: &str) -> Household {
    let (saved, _) = server.runtime.block_on(server.storage.household(id.into())).unwrap().expect("on the server");
    HouseholdDoc::load(id, &saved, &server_editor("test")).unwrap().read()
}

/// Transfer requests waiting for an operator whose area is `scope` (empty: every area).
fn pending_transfers(server: &TestServer, scope: &str) -> Vec<doorstep_sync_server::storage::TransferRow> {
    server.runtime.block_on(server.storage.transfers("pending".into(), scope.into(), 10)).unwrap()
}

/// An operator of `scope` decides a transfer request.
fn decide(
    server: &TestServer,
    id: i64,
    approve: bool,
    note: &str,
    scope: &str,
) -> Result<(), doorstep_sync_server::store::StorageError> {
    server.runtime.block_on(server.storage.decide_transfer(
        id,
        approve,
        note.into(),
        "operator".into(),
        scope.into(),
        1_800_000_000,
    ))
}

/// Today in Vietnam.
fn today() -> String {
    doorstep_core::vn_time::date(chrono::Utc::now().timestamp()).format("%Y-%m-%d").to_string()
}

/// The server's figures for one exact area, as the progress page asks for them today.
fn counts(server: &TestServer, area: &str) -> AreaCounts {
    let today = doorstep_core::vn_time::date(chrono::Utc::now().timestamp());
    let query = doorstep_sync_server::console::progress_query(area, today);
    let all = server.runtime.block_on(server.storage.area_counts(query)).unwrap();
    all.into_iter().find(|c| c.area == area).unwrap_or_default()
}

/// Rows of a household left in a phone's database file: summary, chunks, blind index.
fn rows_left(device: &Device, id: &str) -> i64 {
    let conn = device.store.raw_connection();
    ["doc_meta", "doc_chunk", "blind_index", "quarantine"]
        .iter()
        .map(|t| {
            conn.query_row(&format!("SELECT COUNT(*) FROM {t} WHERE doc_id = ?1"), [id], |r| r.get::<_, i64>(0))
                .unwrap()
        })
        .sum()
}

/// Syncs every device, each one without a refusal or a quarantine.
fn sync_all(devices: &mut [&mut Device]) {
    for d in devices.iter_mut() {
        let report = d.sync().unwrap();
        assert!(report.refused.is_empty(), "refused: {:?}", report.refused);
        assert!(report.quarantined.is_empty(), "quarantined: {:?}", report.quarantined);
    }
}

fn is_gone(device: &Device, id: &str) -> bool {
    matches!(device.store.household(id), Err(Error::NotFound(_))) && rows_left(device, id) == 0
}

#[test]
fn a_district_device_moves_a_household_between_its_communes() {
    let server = TestServer::start();
    let mut x = Device::enrolled(&server, "district", DISTRICT);
    let mut y = Device::enrolled(&server, "old commune", OLD);
    let mut z = Device::enrolled(&server, "new commune", NEW);
    let mut h = household("hh-move", OLD, "Lò Văn Pọm", "001085012345");
    h.events.push(doorstep_core::record::LifeEvent {
        kind: doorstep_core::record::LifeEventKind::Born,
        member_id: "m0".into(),
        date: today(),
        place: None,
        note: None,
    });
    x.store.create_household(&h).unwrap();
    x.store.create_household(&household("hh-stays", OLD, "Quàng Thị Ín", "001185012346")).unwrap();
    // The same man registered twice: a duplicate candidate of the old commune.
    x.store.create_household(&household("hh-twice", OLD, "Lò Văn Pọm", "001085012345")).unwrap();
    sync_all(&mut [&mut x, &mut y, &mut z]);
    let candidate_areas = || -> Vec<String> {
        let queued = server.runtime.block_on(server.storage.duplicates(None)).unwrap();
        queued.into_iter().filter(|d| d.doc_a == "hh-move" || d.doc_b == "hh-move").map(|d| d.area).collect()
    };
    assert_eq!(candidate_areas(), vec![OLD.to_string()]);
    assert!(y.store.household("hh-move").is_ok());
    assert!(z.store.household("hh-move").is_err());
    assert_eq!(counts(&server, OLD).households, 3);
    assert_eq!(counts(&server, OLD).events.born, [1, 1, 1]);

    // Y corrects the address, offline; meanwhile X moves the household to the new commune.
    y.edit("hh-move", |h| h.address = "Bản Nà Hừ, nhà số 7".into());
    assert_eq!(x.store.move_household("hh-move", NEW, "").unwrap(), MoveOutcome::Moved);
    sync_all(&mut [&mut x]);
    let moved = on_server(&server, "hh-move");
    assert_eq!(moved.area_code, NEW);

    // Y's edit from before it knew still reaches the server; then Y lets the household go.
    let report = y.sync().unwrap();
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    assert_eq!(report.departed, 1, "{report:?}");
    assert!(is_gone(&y, "hh-move"), "Y still holds the household");
    assert!(y.store.household("hh-stays").is_ok(), "Y keeps its other household");
    assert_eq!(y.store.search_cccd("001085012345").unwrap().len(), 1, "only the other registration is left on Y");
    let on = on_server(&server, "hh-move");
    assert_eq!((on.address.as_str(), on.area_code.as_str()), ("Bản Nà Hừ, nhà số 7", NEW));

    // Z, which never held it, receives it whole, Y's edit included.
    sync_all(&mut [&mut z, &mut x]);
    let at_z = z.store.household("hh-move").unwrap();
    assert_eq!(at_z.without_workflow(), on.without_workflow());
    assert_eq!(x.store.household("hh-move").unwrap().without_workflow(), on.without_workflow());
    assert_eq!(z.store.search_cccd("001085012345").unwrap().len(), 1);

    // Every later sync of every device works, edits at the new commune flow as before.
    z.edit("hh-move", |h| h.members[0].phone = Some("0912345678".into()));
    for _ in 0..2 {
        sync_all(&mut [&mut x, &mut y, &mut z]);
    }
    assert_eq!(x.store.household("hh-move").unwrap().members[0].phone.as_deref(), Some("0912345678"));
    assert!(is_gone(&y, "hh-move"));

    // The progress figures, the duplicate queue and the audit trail follow it.
    assert_eq!(candidate_areas(), vec![NEW.to_string()]);
    assert_eq!(counts(&server, OLD).households, 2);
    assert_eq!(counts(&server, NEW).households, 1);
    assert_eq!(counts(&server, NEW).residents, 1);
    assert_eq!((counts(&server, OLD).events.born, counts(&server, NEW).events.born), ([0; 3], [1; 3]));
    // The sums kept per area followed the household: they equal a recount.
    common::assert_progress_rollup(&server.db);
    let audit = server.runtime.block_on(server.storage.audit(Some("hh-move".into()))).unwrap();
    assert!(audit.iter().any(|e| e.action == format!("move {OLD} → {NEW}")), "{audit:?}");

    // The registry's export of the old commune says it moved out; the new one's holds it.
    let export = |area: &str| server.runtime.block_on(server.storage.export_page(area.into(), 0, 100)).unwrap();
    let old = export(OLD);
    let row = old.households.iter().find(|h| h.household.household_id == "hh-move").expect("a removal row");
    assert!(row.moved_out);
    assert_eq!(row.household.area_code, NEW);
    assert!(old.households.iter().any(|h| h.household.household_id == "hh-stays" && !h.moved_out));
    let new = export(NEW);
    let row = new.households.iter().find(|h| h.household.household_id == "hh-move").unwrap();
    assert!(!row.moved_out && row.household.address == "Bản Nà Hừ, nhà số 7");
    // A cursor after the move leaves the removal out.
    assert!(
        server.runtime.block_on(server.storage.export_page(OLD.into(), old.next, 100)).unwrap().households.is_empty()
    );
}

#[test]
fn a_transfer_out_of_the_district_waits_for_an_operator_and_a_refusal_changes_nothing() {
    let server = TestServer::start();
    let mut y = Device::enrolled(&server, "old commune", OLD);
    let mut w = Device::enrolled(&server, "far commune", FAR);
    y.store.create_household(&household("hh-go", OLD, "Hà Văn Khiêm", "001085012347")).unwrap();
    y.store.create_household(&household("hh-no", OLD, "Lường Thị Ón", "001185012348")).unwrap();
    sync_all(&mut [&mut y, &mut w]);

    let MoveOutcome::TransferRequested { request_id: go } =
        y.store.move_household("hh-go", FAR, "lấy chồng ở xã Tân Lập").unwrap()
    else {
        panic!("a move out of the commune is a transfer request")
    };
    let MoveOutcome::TransferRequested { request_id: no } = y.store.move_household("hh-no", FAR, "").unwrap() else {
        panic!("a move out of the commune is a transfer request")
    };
    assert!(matches!(y.store.move_household("hh-go", FAR, ""), Err(Error::AlreadyExists(_))));
    sync_all(&mut [&mut y]);
    let pending = pending_transfers(&server, "");
    assert_eq!(pending.len(), 2);
    let row = pending.iter().find(|t| t.request_id == go).unwrap();
    assert_eq!(
        (row.from_area.as_str(), row.to_area.as_str(), row.reason.as_str()),
        (OLD, FAR, "lấy chồng ở xã Tân Lập")
    );
    let row_no = pending.iter().find(|t| t.request_id == no).unwrap().id;

    // An operator of one district alone may not decide it; one of the province may.
    assert!(decide(&server, row.id, true, "", DISTRICT).is_err());
    assert!(pending_transfers(&server, DISTRICT).is_empty());
    decide(&server, row.id, true, "đã xác minh", "01").unwrap();
    decide(&server, row_no, false, "thiếu giấy tờ", "01").unwrap();
    assert!(decide(&server, row.id, false, "", "01").is_err(), "a decided request is not decided again");

    let report = y.sync().unwrap();
    let mut decided: Vec<_> = report.transfers_decided.iter().map(|t| (t.request_id.clone(), t.status)).collect();
    decided.sort();
    let mut expected = vec![(go.clone(), TransferStatus::Approved), (no.clone(), TransferStatus::Refused)];
    expected.sort();
    assert_eq!(decided, expected);
    assert!(is_gone(&y, "hh-go"));
    assert_eq!(y.store.household("hh-no").unwrap().area_code, OLD, "a refused request leaves it where it was");
    let requests = y.store.transfer_requests().unwrap();
    let refused = requests.iter().find(|r| r.request_id == no).unwrap();
    assert_eq!((refused.status, refused.note.as_str()), (TransferStatus::Refused, "thiếu giấy tờ"));

    sync_all(&mut [&mut w]);
    assert_eq!(w.store.household("hh-go").unwrap().area_code, FAR);
    assert!(w.store.household("hh-no").is_err());
    assert_eq!(on_server(&server, "hh-no").area_code, OLD);
    // W works on its new household; nothing goes back to Y.
    w.edit("hh-go", |h| h.address = "Thôn Mới, xã Tân Lập".into());
    sync_all(&mut [&mut w, &mut y]);
    assert!(is_gone(&y, "hh-go"));
    assert_eq!(counts(&server, FAR).households, 1);
    assert_eq!(counts(&server, OLD).households, 1);
    let audit = server.runtime.block_on(server.storage.audit(Some("hh-go".into()))).unwrap();
    for action in [format!("ask transfer {OLD} → {FAR}"), format!("approve transfer {OLD} → {FAR}")] {
        assert!(audit.iter().any(|e| e.action == action), "{action} missing from {audit:?}");
    }
}

#[test]
fn a_device_cannot_request_a_transfer_of_a_household_outside_its_areas() {
    let server = TestServer::start();
    let mut y = Device::enrolled(&server, "old commune", OLD);
    let mut z = Device::enrolled(&server, "new commune", NEW);
    z.store.create_household(&household("hh-z", NEW, "Cầm Văn Ơn", "001085012349")).unwrap();
    sync_all(&mut [&mut z, &mut y]);
    // Y never held it: it cannot even ask.
    assert!(matches!(y.store.move_household("hh-z", FAR, ""), Err(Error::NotFound(_))));
    assert!(pending_transfers(&server, "").is_empty());
}

#[test]
fn a_resident_moves_between_households_of_two_communes_and_is_not_a_duplicate() {
    use doorstep_core::record::LifeEventKind;
    let server = TestServer::start();
    let mut x = Device::enrolled(&server, "district", DISTRICT);
    let mut z = Device::enrolled(&server, "new commune", NEW);
    x.store.create_household(&household("hh-bride", OLD, "Lò Thị Xuân", "001186012345")).unwrap();
    let mut groom = household("hh-groom", NEW, "Cầm Văn Đức", "001085012350");
    groom.members[0].sex = Some("M".into());
    x.store.create_household(&groom).unwrap();
    sync_all(&mut [&mut x, &mut z]);

    let new_id = x.store.move_resident("hh-bride", "m0", "hh-groom", &today(), Some("spouse")).unwrap();
    sync_all(&mut [&mut x, &mut z]);
    let old = on_server(&server, "hh-bride");
    let new = on_server(&server, "hh-groom");
    let out = old.events.iter().find(|e| e.kind == LifeEventKind::MovedOut).expect("moved out");
    assert_eq!((out.member_id.as_str(), out.place.clone()), ("m0", Some(format!("hh-groom/{new_id}"))));
    let moved_in = new.events.iter().find(|e| e.kind == LifeEventKind::MovedIn).expect("moved in");
    assert_eq!((moved_in.member_id.as_str(), moved_in.place.as_deref()), (new_id.as_str(), Some("hh-bride/m0")));
    assert_eq!(old.members[0].residence_status.as_deref(), Some(doorstep_core::store::MOVED_OUT));
    assert_eq!(old.members[0].same_person_as, Some(format!("hh-groom/{new_id}")));
    let record = new.members.iter().find(|m| m.member_id == new_id).unwrap();
    assert_eq!(
        (record.full_name.as_str(), record.cccd.as_deref(), record.same_person_as.as_deref()),
        ("Lò Thị Xuân", Some("001186012345"), Some("hh-bride/m0"))
    );
    // The progress page counts the move in both communes.
    assert_eq!((counts(&server, OLD).events.moved_out, counts(&server, NEW).events.moved_in), ([1; 3], [1; 3]));
    assert_eq!((counts(&server, OLD).events.moved_in, counts(&server, NEW).events.moved_out), ([0; 3], [0; 3]));
    // The commune's own phone holds the household with its new resident.
    assert!(z.store.household("hh-groom").unwrap().members.iter().any(|m| m.member_id == new_id));

    // No candidate for the pair; the same person registered a second time, unlinked, is one.
    let involves = |d: &doorstep_sync_server::storage::DuplicateItem, id: &str| d.doc_a == id || d.doc_b == id;
    let queued = server.runtime.block_on(server.storage.duplicates(None)).unwrap();
    assert!(!queued.iter().any(|d| involves(d, "hh-bride") && involves(d, "hh-groom")), "{queued:?}");
    x.store.create_household(&household("hh-again", NEW, "Lò Thị Xuân", "001186012345")).unwrap();
    sync_all(&mut [&mut x]);
    let queued = server.runtime.block_on(server.storage.duplicates(None)).unwrap();
    assert!(queued.iter().any(|d| involves(d, "hh-again")), "the unlinked registration is queued: {queued:?}");
    assert!(!queued.iter().any(|d| involves(d, "hh-bride") && involves(d, "hh-groom")));
}

#[test]
fn a_transfer_approved_while_a_district_device_moves_the_household_stands_and_the_device_lets_it_go() {
    let server = TestServer::start();
    let mut x = Device::enrolled(&server, "district", DISTRICT);
    let mut w = Device::enrolled(&server, "far commune", FAR);
    x.store.create_household(&household("hh-both", OLD, "Lò Văn Pọm", "001085012345")).unwrap();
    let MoveOutcome::TransferRequested { .. } = x.store.move_household("hh-both", FAR, "").unwrap() else {
        panic!("a move out of the district is a transfer request")
    };
    sync_all(&mut [&mut x, &mut w]);
    let request = pending_transfers(&server, "");
    decide(&server, request[0].id, true, "", "").unwrap();
    // Not knowing yet, the district officer moves it between two of the district's communes
    // and corrects its address.
    assert_eq!(x.store.move_household("hh-both", NEW, "").unwrap(), MoveOutcome::Moved);
    x.edit("hh-both", |h| h.address = "Bản Mới, nhà số 3".into());
    let report = x.sync().unwrap();
    assert!(report.refused.is_empty(), "{:?}", report.refused);
    assert!(report.departing.is_empty(), "{:?}", report.departing);
    assert!(is_gone(&x, "hh-both"), "the district device lets the household go");
    let on = on_server(&server, "hh-both");
    assert_eq!((on.area_code.as_str(), on.address.as_str()), (FAR, "Bản Mới, nhà số 3"));
    sync_all(&mut [&mut w, &mut x]);
    assert_eq!(w.store.household("hh-both").unwrap().without_workflow(), on.without_workflow());
}

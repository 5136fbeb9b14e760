//! Convergence: three devices make random edits offline and sync in random
//! order; once everyone has synced, all hold identical heads and content.

mod common;

use common::{AREA, Device, TestServer, household};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Create { device: usize },
    Edit { device: usize, pick: usize, field: u8, value: u16 },
    Sync { device: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..3usize).prop_map(|device| Op::Create { device }),
        4 => (0..3usize, any::<usize>(), 0..4u8, any::<u16>()).prop_map(|(device, pick, field, value)| Op::Edit { device, pick, field, value }),
        3 => (0..3usize).prop_map(|device| Op::Sync { device }),
    ]
}

fn ids(d: &Device) -> Vec<String> {
    let mut v: Vec<String> = d.store.list_households(0, 10_000).unwrap().into_iter().map(|l| l.household_id).collect();
    v.sort();
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, max_shrink_iters: 20, ..ProptestConfig::default() })]
    #[test]
    fn devices_converge(ops in proptest::collection::vec(op(), 10..60)) {
        let server = TestServer::start();
        let mut devices: Vec<Device> = (0..3).map(|i| Device::enrolled(&server, &format!("officer-{i}"), AREA)).collect();
        let mut created = 0;
        for op in ops {
            match op {
                Op::Create { device } => {
                    created += 1;
                    let id = format!("hh-{created}");
                    devices[device].store.create_household(&household(&id, AREA, "Lê Thanh Vân", "080166796635")).unwrap();
                }
                Op::Edit { device, pick, field, value } => {
                    let have = ids(&devices[device]);
                    if have.is_empty() { continue; }
                    let id = have[pick % have.len()].clone();
                    devices[device].edit(&id, |h| match field {
                        0 => h.address = format!("Số {value}"),
                        1 => h.members[0].phone = Some(format!("09{value:08}")),
                        2 => h.members[0].full_name = format!("Lê Thanh Vân {value}"),
                        _ => h.events.push(doorstep_core::record::LifeEvent {
                            kind: doorstep_core::record::LifeEventKind::MovedIn,
                            member_id: "m0".into(),
                            date: "2026-01-01".into(),
                            place: Some(format!("Xã {value}")),
                            note: None,
                        }),
                    });
                }
                Op::Sync { device } => { devices[device].sync().unwrap(); }
            }
        }
        // Everyone syncs twice: the first round pushes, the second pulls the rest.
        for _ in 0..2 {
            for d in devices.iter_mut() { d.sync().unwrap(); }
        }
        let reference = ids(&devices[0]);
        prop_assert_eq!(reference.len(), created);
        for id in &reference {
            let mut docs: Vec<_> = devices.iter().map(|d| d.store.open_household(id).unwrap()).collect();
            let heads0 = docs[0].heads();
            let content0 = docs[0].read();
            for doc in docs.iter_mut().skip(1) {
                prop_assert_eq!(doc.heads(), heads0.clone());
                prop_assert_eq!(doc.read(), content0.clone());
            }
        }
        for d in &devices {
            prop_assert_eq!(ids(d), reference.clone());
            prop_assert!(d.store.pending_pushes(1).unwrap().is_empty(), "nothing left dirty");
        }
    }
}

/// Areas of the second property: a district device, two of its communes, and a commune of
/// another district.
const AREAS: [&str; 4] = ["01.001", "01.001.00001", "01.001.00002", "01.002.00004"];
const COMMUNES: [&str; 3] = ["01.001.00001", "01.001.00002", "01.002.00004"];

#[derive(Debug, Clone)]
enum MoveOp {
    Create { device: usize, commune: usize },
    Edit { device: usize, pick: usize, value: u16 },
    Move { device: usize, pick: usize, commune: usize },
    Decide { approve: bool },
    Sync { device: usize },
}

fn move_op() -> impl Strategy<Value = MoveOp> {
    prop_oneof![
        2 => (0..4usize, 0..3usize).prop_map(|(device, commune)| MoveOp::Create { device, commune }),
        3 => (0..4usize, any::<usize>(), any::<u16>()).prop_map(|(device, pick, value)| MoveOp::Edit { device, pick, value }),
        3 => (0..4usize, any::<usize>(), 0..3usize).prop_map(|(device, pick, commune)| MoveOp::Move { device, pick, commune }),
        1 => any::<bool>().prop_map(|approve| MoveOp::Decide { approve }),
        3 => (0..4usize).prop_map(|device| MoveOp::Sync { device }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, max_shrink_iters: 20, ..ProptestConfig::default() })]
    /// Households are created, edited, moved within a device's areas and transferred out of
    /// them (approved or refused by an operator) while devices sync in random order. Once
    /// everyone has synced, each device holds exactly the households of its areas, each
    /// equal to the server's copy.
    #[test]
    fn devices_converge_through_moves_and_transfers(ops in proptest::collection::vec(move_op(), 10..50)) {
        use doorstep_core::sync::protocol::area_within;
        let server = TestServer::start();
        let mut devices: Vec<Device> =
            AREAS.iter().enumerate().map(|(i, a)| Device::enrolled(&server, &format!("officer-{i}"), a)).collect();
        let mut created = 0;
        for op in ops {
            match op {
                MoveOp::Create { device, commune } => {
                    let area = COMMUNES[commune];
                    if !area_within(area, AREAS[device]) { continue; }
                    created += 1;
                    let id = format!("hh-{created}");
                    devices[device].store.create_household(&household(&id, area, "Lê Thanh Vân", "080166796635")).unwrap();
                }
                MoveOp::Edit { device, pick, value } => {
                    let have = ids(&devices[device]);
                    if have.is_empty() { continue; }
                    let id = have[pick % have.len()].clone();
                    devices[device].edit(&id, |h| h.address = format!("Số {value}"));
                }
                MoveOp::Move { device, pick, commune } => {
                    let have = ids(&devices[device]);
                    if have.is_empty() { continue; }
                    let id = have[pick % have.len()].clone();
                    let here = devices[device].store.household(&id).unwrap().area_code;
                    let to = if COMMUNES[commune] == here { COMMUNES[(commune + 1) % 3] } else { COMMUNES[commune] };
                    // Refused when a transfer was already asked for it: fine here.
                    let _ = devices[device].store.move_household(&id, to, "");
                }
                MoveOp::Decide { approve } => {
                    let rt = &server.runtime;
                    for t in rt.block_on(server.storage.transfers("pending".into(), String::new(), 100)).unwrap() {
                        let decide = |approve| rt.block_on(server.storage.decide_transfer(
                            t.id, approve, String::new(), "operator".into(), String::new(), 1_800_000_000));
                        // An approval of a household that moved since it was asked is refused: refuse it then.
                        if decide(approve).is_err() { decide(false).unwrap(); }
                    }
                }
                MoveOp::Sync { device } => {
                    let report = devices[device].sync().unwrap();
                    prop_assert!(report.quarantined.is_empty(), "{:?}", report.quarantined);
                }
            }
        }
        for _ in 0..3 {
            for d in devices.iter_mut() {
                let report = d.sync().unwrap();
                prop_assert!(report.quarantined.is_empty(), "{:?}", report.quarantined);
                prop_assert!(report.departing.is_empty(), "{:?}", report.departing);
            }
        }
        let editor = doorstep_sync_server::merge::server_editor("test");
        let mut on_server = Vec::new();
        for n in 1..=created {
            let id = format!("hh-{n}");
            let (saved, heads) = server.runtime.block_on(server.storage.household(id.clone())).unwrap().expect("stored");
            let doc = doorstep_core::record::HouseholdDoc::load(&id, &saved, &editor).unwrap();
            on_server.push((id, doc.read(), heads));
        }
        for (d, scope) in devices.iter().zip(AREAS) {
            let mut expected: Vec<String> = on_server
                .iter()
                .filter(|(_, h, _)| area_within(&h.area_code, scope))
                .map(|(id, _, _)| id.clone())
                .collect();
            expected.sort();
            prop_assert_eq!(ids(d), expected, "device of {}", scope);
            for (id, h, heads) in on_server.iter().filter(|(_, h, _)| area_within(&h.area_code, scope)) {
                let mut doc = d.store.open_household(id).unwrap();
                let held: Vec<String> = doc.heads().iter().map(ToString::to_string).collect();
                let mut want = heads.clone();
                want.sort();
                let mut held = held;
                held.sort();
                prop_assert_eq!(held, want, "heads of {} on the device of {}", id, scope);
                prop_assert_eq!(doc.read(), h.clone());
            }
            prop_assert!(d.store.pending_pushes(1).unwrap().is_empty(), "nothing left dirty");
        }
    }
}

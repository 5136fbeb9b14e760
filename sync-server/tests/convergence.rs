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

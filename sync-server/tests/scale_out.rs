//! Scale-out: two server processes share one PostgreSQL database; devices
//! alternate between them, and everything converges.
//!
//! Needs DOORSTEP_TEST_POSTGRES_URL: scripts/test.sh starts PostgreSQL and runs
//! this suite a second time with it set. In the SQLite pass it says so and returns.

mod common;

use common::{AREA, Device, TestServer, household};
use doorstep_core::sync::HttpTransport;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

#[test]
fn two_servers_on_one_postgres_converge() {
    if !common::using_postgres() {
        eprintln!("not run in the SQLite pass: needs DOORSTEP_TEST_POSTGRES_URL (scripts/postgres.sh prints it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = common::fresh_db(dir.path());
    let (mut one, addr_one) = common::spawn_server(&db);
    let (mut two, addr_two) = common::spawn_server(&db);
    let urls = [format!("http://{addr_one}"), format!("http://{addr_two}")];
    let server = TestServer::start_on(&db, &urls[0]);
    let mut devices: Vec<Device> = (0..3).map(|i| Device::enrolled(&server, &format!("officer-{i}"), AREA)).collect();
    let mut rng = StdRng::seed_from_u64(21);
    let mut created = 0;
    for round in 0..60 {
        let i = rng.random_range(0..3);
        let d = &mut devices[i];
        if rng.random_bool(0.4) {
            created += 1;
            d.store
                .create_household(&household(&format!("hh-{created}"), AREA, "Lê Thanh Vân", "080166796635"))
                .unwrap();
        } else {
            let have: Vec<String> =
                d.store.list_households(0, 1000).unwrap().into_iter().map(|l| l.household_id).collect();
            if let Some(id) = have.get(rng.random_range(0..have.len().max(1))) {
                d.edit(id, |h| h.address = format!("Số {round}"));
            }
        }
        // Each sync goes to whichever node this round picks.
        d.transport = HttpTransport::new(&urls[round % 2]).unwrap();
        d.sync().unwrap();
    }
    for round in 0..2 {
        for d in devices.iter_mut() {
            d.transport = HttpTransport::new(&urls[round % 2]).unwrap();
            d.sync().unwrap();
        }
    }
    let ids = |d: &Device| {
        let mut v: Vec<String> =
            d.store.list_households(0, 10_000).unwrap().into_iter().map(|l| l.household_id).collect();
        v.sort();
        v
    };
    let reference = ids(&devices[0]);
    assert_eq!(reference.len(), created);
    for id in &reference {
        let heads: Vec<_> = devices.iter().map(|d| d.store.open_household(id).unwrap().heads()).collect();
        assert!(heads.windows(2).all(|w| w[0] == w[1]), "{id} did not converge");
    }
    one.kill().unwrap();
    two.kill().unwrap();
    one.wait().unwrap();
    two.wait().unwrap();
}

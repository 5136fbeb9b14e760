//! Faults: a proxy between devices and server drops connections mid-request
//! and mid-response, truncates bodies and adds delay. After 200 randomised
//! faulty syncs nothing is lost or doubled and everything converges. Then the
//! server process is SIGKILLed in the middle of syncing, restarted, and
//! everything converges again.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{AREA, Device, TestServer, household};
use doorstep_core::record::{LifeEvent, LifeEventKind};
use doorstep_core::sync::HttpTransport;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

#[derive(Clone, Copy, Debug)]
enum Fault {
    Pass,
    CutRequest(usize),
    CutResponse(usize),
    Delay(u64),
}

/// A TCP proxy on 127.0.0.1 that applies a random fault to each connection.
struct FaultyProxy {
    port: u16,
    faults: Arc<AtomicU64>,
}

fn pipe(mut from: TcpStream, mut to: TcpStream, limit: Option<usize>, delay: u64) {
    let mut buf = [0u8; 16 * 1024];
    let mut sent = 0usize;
    if delay > 0 {
        std::thread::sleep(Duration::from_millis(delay));
    }
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let n = match limit {
            Some(l) if sent + n >= l => {
                let _ = to.write_all(&buf[..l - sent]);
                break;
            }
            _ => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n;
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

impl FaultyProxy {
    fn start(upstream: Arc<Mutex<String>>, seed: u64) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let faults = Arc::new(AtomicU64::new(0));
        let counter = faults.clone();
        std::thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(seed);
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let fault = match rng.random_range(0..10) {
                    0..=3 => Fault::Pass,
                    4 | 5 => Fault::CutRequest(rng.random_range(1..400)),
                    6 | 7 => Fault::CutResponse(rng.random_range(1..600)),
                    _ => Fault::Delay(rng.random_range(1..150)),
                };
                if !matches!(fault, Fault::Pass) {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                let addr = upstream.lock().unwrap().clone();
                let Ok(server) = TcpStream::connect(&addr) else { continue };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (req_limit, resp_limit, delay) = match fault {
                    Fault::Pass => (None, None, 0),
                    Fault::CutRequest(n) => (Some(n), Some(0), 0),
                    Fault::CutResponse(n) => (None, Some(n), 0),
                    Fault::Delay(ms) => (None, None, ms),
                };
                std::thread::spawn(move || pipe(client, server, req_limit, 0));
                std::thread::spawn(move || pipe(s2, c2, resp_limit, delay));
            }
        });
        FaultyProxy { port, faults }
    }
}

fn converge_and_check(
    devices: &mut [Device],
    expected_households: usize,
    expected_events: &std::collections::HashMap<String, usize>,
) {
    for _ in 0..2 {
        for d in devices.iter_mut() {
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
    assert_eq!(reference.len(), expected_households, "nothing lost");
    for id in &reference {
        let mut heads = Vec::new();
        for d in devices.iter() {
            let mut doc = d.store.open_household(id).unwrap();
            let h = doc.read();
            assert_eq!(h.events.len(), expected_events.get(id).copied().unwrap_or(0), "{id}: events lost or doubled");
            heads.push(doc.heads());
        }
        assert!(heads.windows(2).all(|w| w[0] == w[1]), "{id} did not converge");
    }
    for d in devices.iter() {
        assert_eq!(ids(d), reference);
    }
}

#[test]
fn two_hundred_faulty_syncs_lose_and_double_nothing() {
    let server = TestServer::start();
    let upstream = Arc::new(Mutex::new(server.url.trim_start_matches("http://").to_string()));
    let proxy = FaultyProxy::start(upstream, 7);
    let mut devices: Vec<Device> = (0..3).map(|i| Device::enrolled(&server, &format!("officer-{i}"), AREA)).collect();
    let faulty: Vec<HttpTransport> =
        (0..3).map(|_| HttpTransport::new(&format!("http://127.0.0.1:{}", proxy.port)).unwrap()).collect();
    let mut rng = StdRng::seed_from_u64(11);
    let mut created = 0;
    let mut events: std::collections::HashMap<String, usize> = Default::default();
    let (mut failed, mut ok) = (0, 0);
    for round in 0..200 {
        let i = rng.random_range(0..3);
        let d = &mut devices[i];
        if rng.random_bool(0.3) {
            created += 1;
            let id = format!("hh-{created}");
            d.store.create_household(&household(&id, AREA, "Lê Thanh Vân", "080166796635")).unwrap();
        } else {
            let have: Vec<String> =
                d.store.list_households(0, 1000).unwrap().into_iter().map(|l| l.household_id).collect();
            if !have.is_empty() {
                let id = have[rng.random_range(0..have.len())].clone();
                let add_event = rng.random_bool(0.3);
                d.edit(&id, |h| {
                    h.address = format!("Số {round}");
                    if add_event {
                        h.events.push(LifeEvent {
                            kind: LifeEventKind::MovedIn,
                            member_id: "m0".into(),
                            date: "2026-01-01".into(),
                            place: Some(format!("{round}")),
                            note: None,
                        });
                    }
                });
                if add_event {
                    *events.entry(id).or_default() += 1;
                }
            }
        }
        let cancel = AtomicBool::new(false);
        match doorstep_core::sync::sync(&mut d.store, &faulty[i], None, &cancel) {
            Ok(_) => ok += 1,
            Err(doorstep_core::Error::Network(_) | doorstep_core::Error::Protocol(_)) => failed += 1,
            // Fast failures retried at once can trip the per-device rate limit: also transient.
            Err(doorstep_core::Error::Server { status: 429, .. }) => failed += 1,
            Err(e) => panic!("round {round}: unexpected {e}"),
        }
    }
    assert!(proxy.faults.load(Ordering::SeqCst) >= 60, "the proxy injected too few faults");
    assert!(failed >= 40 && ok >= 40, "faults {failed}, successes {ok}");
    converge_and_check(&mut devices, created, &events);
}

#[test]
fn server_killed_mid_sync_restarts_and_converges() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::fresh_db(dir.path());
    let (mut child, addr) = common::spawn_server(&db);
    // Enrol through a storage handle on the same file (SQLite allows a second connection).
    let server = TestServer::start_on(&db, &format!("http://{addr}"));
    let mut devices: Vec<Device> = (0..2).map(|i| Device::enrolled(&server, &format!("officer-{i}"), AREA)).collect();
    let upstream = Arc::new(Mutex::new(addr.clone()));
    let mut created = 0;
    let mut rng = StdRng::seed_from_u64(5);
    let mut interrupted = 0;
    for _ in 0..5 {
        for d in devices.iter_mut() {
            for _ in 0..20 {
                created += 1;
                d.store
                    .create_household(&household(&format!("hh-{created}"), AREA, "Lê Thanh Vân", "080166796635"))
                    .unwrap();
            }
        }
        // Devices sync in a loop while another thread SIGKILLs the server at a random moment.
        let shared = Arc::new(Mutex::new(child));
        let killed = Arc::new(AtomicBool::new(false));
        let killer = {
            let (shared, killed) = (shared.clone(), killed.clone());
            let delay = rng.random_range(2..40);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(delay));
                let mut c = shared.lock().unwrap();
                c.kill().unwrap(); // SIGKILL
                c.wait().unwrap();
                killed.store(true, Ordering::SeqCst);
            })
        };
        let mut n = 0;
        while !killed.load(Ordering::SeqCst) {
            if devices[n % 2].sync().is_err() {
                interrupted += 1;
            }
            n += 1;
        }
        killer.join().unwrap();
        let (c, new_addr) = common::spawn_server(&db);
        child = c;
        *upstream.lock().unwrap() = new_addr.clone();
        for d in devices.iter_mut() {
            d.transport = HttpTransport::new(&format!("http://{new_addr}")).unwrap();
        }
    }
    assert!(interrupted >= 1, "no sync was cut by a kill");
    converge_and_check(&mut devices, created, &Default::default());
    child.kill().unwrap();
    child.wait().unwrap();
}

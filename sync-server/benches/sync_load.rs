//! Sync figures on the synthetic commune, against a real server on 127.0.0.1:
//! the first sync of 10,000 households to a new device, an incremental sync of
//! 100 edited households, and N simulated devices syncing at once.
//!
//! `cargo bench -p doorstep-sync-server --bench sync_load`
//! (`-- --test` for a smoke run; DOORSTEP_BENCH_HOUSEHOLDS and DOORSTEP_BENCH_DEVICES scale it.)

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::{AREA, Device, TestServer};
use doorstep_core::record::{Editor, Household, HouseholdDoc};
use doorstep_core::sync::protocol::{
    DocPush, EnrolRequest, EnrolResponse, PROTOCOL_VERSION, SyncRequest, SyncResponse, decode, encode,
};

fn commune(n: usize) -> Vec<Household> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/gen_households.py");
    let out = Command::new("python3").arg(script).arg(n.to_string()).output().expect("python3");
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let smoke = std::env::args().any(|a| a == "--test");
    let n = env_usize("DOORSTEP_BENCH_HOUSEHOLDS", if smoke { 200 } else { 10_000 });
    let n_devices = env_usize("DOORSTEP_BENCH_DEVICES", if smoke { 20 } else { 1000 });
    let households = commune(n);

    let server = TestServer::start();
    println!("backend: {}", if common::using_postgres() { "PostgreSQL" } else { "SQLite" });
    let mut a = Device::enrolled(&server, "officer-a", AREA);
    let t = Instant::now();
    for h in &households {
        a.store.create_household(h).unwrap();
    }
    println!("device A: saved {n} households locally in {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let r = a.sync().unwrap();
    println!(
        "device A: first push of {n} households: {:.2} s, {} round trip(s), {} bytes sent, {} received",
        t.elapsed().as_secs_f64(),
        r.round_trips,
        r.bytes_sent,
        r.bytes_received
    );

    let mut b = Device::enrolled(&server, "officer-b", AREA);
    let t = Instant::now();
    let r = b.sync().unwrap();
    println!(
        "device B: FIRST SYNC of a {n}-household commune to a new device: {:.2} s, {} round trip(s), {} bytes received ({:.0} B/household), {} sent",
        t.elapsed().as_secs_f64(),
        r.round_trips,
        r.bytes_received,
        r.bytes_received as f64 / n as f64,
        r.bytes_sent
    );
    assert_eq!(r.pulled, n);

    for h in households.iter().take(100) {
        a.edit(&h.household_id, |x| x.members[0].phone = Some("0987654321".into()));
    }
    let r = a.sync().unwrap();
    println!(
        "device A: INCREMENTAL push of 100 edited households: {} round trip(s), {} bytes sent, {} received",
        r.round_trips, r.bytes_sent, r.bytes_received
    );
    let r = b.sync().unwrap();
    println!(
        "device B: INCREMENTAL pull of 100 edited households: {} round trip(s), {} bytes sent, {} received",
        r.round_trips, r.bytes_sent, r.bytes_received
    );

    // The store grew from empty in a few seconds: its planner statistics are brought up to it,
    // as PostgreSQL's autovacuum does a minute or so after a bulk load (and `import` at its end).
    server.runtime.block_on(server.storage.refresh_statistics()).unwrap();
    // N simulated devices, two per commune, each pushing 5 new households per sync, two syncs each.
    let backend = if common::using_postgres() { "PostgreSQL" } else { "SQLite" };
    let run = simulate(&server, std::slice::from_ref(&server.url), n_devices, &households, |d| {
        format!("02.{:03}.{:05}", d / 200, d / 2)
    });
    println!("{n_devices} SIMULATED DEVICES ({backend}, {THREADS} concurrent connections), {}", run.report());

    if common::using_postgres() {
        two_nodes(&server, n_devices, &households);
    }
}

/// Concurrent connections of the simulated devices.
const THREADS: usize = 64;
/// New households each simulated sync pushes.
const PER_SYNC: usize = 5;

/// What a run of simulated devices measured.
struct Run {
    latencies: Vec<f64>,
    elapsed: f64,
    households: usize,
}

impl Run {
    fn report(&self) -> String {
        let l = &self.latencies;
        format!(
            "2 syncs of {PER_SYNC} new households each: {} syncs in {:.1} s; latency p50 {:.0} ms, p99 {:.0} ms, \
             max {:.0} ms; throughput {:.0} households/s",
            l.len(),
            self.elapsed,
            percentile(l, 0.5) * 1e3,
            percentile(l, 0.99) * 1e3,
            l[l.len() - 1] * 1e3,
            self.households as f64 / self.elapsed
        )
    }
}

/// `n_devices` devices (area of each from `area_of`), enrolled on `server`'s store, each
/// pushing two syncs of new households to one of `urls` in turn, over THREADS connections.
fn simulate(
    server: &TestServer,
    urls: &[String],
    n_devices: usize,
    households: &[Household],
    area_of: impl Fn(usize) -> String,
) -> Run {
    let n = households.len();
    let editor = Editor { user: "sim".into(), device: "sim".into() };
    let mut jobs = Vec::new();
    let tag = format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    for d in 0..n_devices {
        let area = area_of(d);
        let url = urls[d % urls.len()].clone();
        let code = server.enrolment(&area);
        let body = encode(&EnrolRequest {
            protocol: PROTOCOL_VERSION,
            token: code.token,
            device_id: format!("sim-{tag}-{d}"),
        });
        let resp = reqwest::blocking::Client::new().post(format!("{url}/v1/enrol")).body(body).send().unwrap();
        let enrolled: EnrolResponse = decode(&resp.bytes().unwrap()).unwrap();
        let mut syncs = Vec::new();
        for s in 0..2 {
            let push: Vec<DocPush> = (0..PER_SYNC)
                .map(|k| {
                    let mut h = households[(d * 10 + s * PER_SYNC + k) % n].clone();
                    h.household_id = format!("sim-{tag}-{d}-{s}-{k}");
                    h.area_code = area.clone();
                    let mut doc = HouseholdDoc::create(&h, &editor).unwrap();
                    DocPush { doc_id: h.household_id, area: area.clone(), changes: doc.save() }
                })
                .collect();
            syncs.push(push);
        }
        jobs.push((url, enrolled.credential, syncs));
    }
    let jobs = Arc::new(Mutex::new(jobs));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let pushed = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let (jobs, latencies, pushed) = (jobs.clone(), latencies.clone(), pushed.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                loop {
                    let Some((url, credential, syncs)) = jobs.lock().unwrap().pop() else { break };
                    let mut cursor = 0;
                    for push in syncs {
                        let count = push.len();
                        let body = encode(&SyncRequest {
                            protocol: PROTOCOL_VERSION,
                            cursor,
                            user: "sim".into(),
                            push,
                            transfer_key: None,
                            snapshot: None,
                            resend: vec![],
                            transfers: vec![],
                        });
                        let start = Instant::now();
                        let resp =
                            client.post(format!("{url}/v1/sync")).bearer_auth(&credential).body(body).send().unwrap();
                        assert!(resp.status().is_success(), "{}", resp.status());
                        let r: SyncResponse = decode(&resp.bytes().unwrap()).unwrap();
                        latencies.lock().unwrap().push(start.elapsed().as_secs_f64());
                        cursor = r.next_cursor;
                        pushed.fetch_add(count, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let elapsed = t.elapsed().as_secs_f64();
    let mut latencies = latencies.lock().unwrap().clone();
    latencies.sort_by(f64::total_cmp);
    Run { latencies, elapsed, households: pushed.load(Ordering::Relaxed) }
}

/// Writers on two PostgreSQL server nodes: all in one province, then half in each of two;
/// with the mean number of backends waiting on a province lock, sampled every 10 ms.
fn two_nodes(server: &TestServer, n_devices: usize, households: &[Household]) {
    let (mut one, addr_one) = common::spawn_server(&server.db);
    let (mut two, addr_two) = common::spawn_server(&server.db);
    let urls = [format!("http://{addr_one}"), format!("http://{addr_two}")];
    type AreaOf = fn(usize) -> String;
    let cases: [(&str, AreaOf); 2] = [
        ("one province", |d| format!("03.{:03}.{:05}", d / 200, d / 2)),
        ("two provinces", |d| format!("{:02}.{:03}.{:05}", 3 + d % 2, d / 200, d / 2)),
    ];
    for (what, area_of) in cases {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sampler = {
            let (stop, db) = (stop.clone(), server.db.clone());
            std::thread::spawn(move || {
                let name = db.rsplit('/').next().unwrap().to_string();
                let admin = std::env::var("DOORSTEP_TEST_POSTGRES_URL").unwrap();
                let mut client = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
                let (mut samples, mut waiting) = (0u64, 0i64);
                while !stop.load(Ordering::Relaxed) {
                    let row = client
                        .query_one(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event = 'advisory'",
                            &[&name],
                        )
                        .unwrap();
                    waiting += row.get::<_, i64>(0);
                    samples += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                waiting as f64 / samples.max(1) as f64
            })
        };
        let run = simulate(server, &urls, n_devices, households, area_of);
        stop.store(true, Ordering::Relaxed);
        let waiters = sampler.join().unwrap();
        println!(
            "TWO POSTGRESQL NODES, writers of {what}: {n_devices} devices, {}; on average {waiters:.1} writers waiting on a province lock",
            run.report()
        );
    }
    let _ = (one.kill(), two.kill(), one.wait(), two.wait());
}

//! The duplicate queue through the real product: a phone imports a labelled
//! commune (`bench/gen_linkage.py`) and syncs it to a server on 127.0.0.1, and
//! the server's open queue is compared with the truth file. Then the cost of
//! that push against a server that already holds a province of residents, and
//! the same labelled set through Splink (the peer), side by side.
//!
//! `cargo bench -p doorstep-sync-server --bench linkage`
//! (`-- --test` for a smoke run on a small commune, without the province and Splink).
//! DOORSTEP_BENCH_HOUSEHOLDS sets the commune (10,000), DOORSTEP_BENCH_PROVINCE_HOUSEHOLDS
//! the province (1,000,000 households, about 3.6 million residents; 0 skips it),
//! DOORSTEP_BENCH_SPLINK=0 skips Splink. The province store is the province bench's, built
//! once and cached under target/bench-fixtures/ (SQLite), or its PostgreSQL database when
//! DOORSTEP_TEST_POSTGRES_URL names a cluster (then every server of the run is on PostgreSQL).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/province.rs"]
mod province;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::{AREA, Device, TestServer};
use doorstep_core::identity::linkage::calibrate::true_pairs_closed;
use doorstep_core::record::Household;
use doorstep_sync_server::store::LevelLimits;

/// A commune the labelled set is pushed to on the province server: of another province.
const OTHER_PROVINCE: &str = "02.001.00001";
/// Another: a new commune of the province's first district (01.001).
const SAME_DISTRICT: &str = "01.001.00099";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A labelled commune written to `dir`: households (JSON Lines) and truth (TSV).
struct Labelled {
    name: String,
    jsonl: PathBuf,
    truth: PathBuf,
    households: Vec<Household>,
    /// `(record, record, kind)`.
    pairs: Vec<(String, String, String)>,
}

fn generate(dir: &Path, name: &str, args: &[String], linkage: bool) -> Labelled {
    let jsonl = dir.join(format!("{name}.jsonl"));
    let truth = dir.join(format!("{name}.truth.tsv"));
    let script = workspace().join(if linkage { "bench/gen_linkage.py" } else { "bench/gen_households.py" });
    let mut cmd = Command::new("python3");
    cmd.arg(script).args(args);
    if linkage {
        cmd.arg("--truth").arg(&truth);
    }
    let out = cmd.output().expect("python3 runs the generator");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(&jsonl, &out.stdout).unwrap();
    if !linkage {
        std::fs::write(&truth, "").unwrap();
    }
    let households = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let pairs = std::fs::read_to_string(&truth)
        .unwrap()
        .lines()
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (c[0].to_string(), c[1].to_string(), c.get(2).unwrap_or(&"").to_string())
        })
        .collect();
    Labelled { name: name.into(), jsonl, truth, households, pairs }
}

fn ordered(x: String, y: String) -> (String, String) {
    if x < y { (x, y) } else { (y, x) }
}

/// True pairs (closed: two re-registrations of one resident are one person too), with their kinds.
fn true_pairs(pairs: &[(String, String, String)]) -> HashMap<(String, String), String> {
    let mut index: HashMap<String, usize> = HashMap::new();
    for (a, b, _) in pairs {
        for r in [a, b] {
            let n = index.len();
            index.entry(r.clone()).or_insert(n);
        }
    }
    let names: HashMap<usize, String> = index.iter().map(|(k, v)| (*v, k.clone())).collect();
    let plain: Vec<(usize, usize)> = pairs.iter().map(|(a, b, _)| (index[a], index[b])).collect();
    let kinds: HashMap<(String, String), String> =
        pairs.iter().map(|(a, b, k)| (ordered(a.clone(), b.clone()), k.clone())).collect();
    true_pairs_closed(index.len(), &plain)
        .into_iter()
        .map(|(a, b)| {
            let key = ordered(names[&a].clone(), names[&b].clone());
            let kind = kinds.get(&key).cloned().unwrap_or_else(|| "two-copies".into());
            (key, kind)
        })
        .collect()
}

struct Quality {
    queued: usize,
    true_positives: usize,
    true_pairs: usize,
    push_s: f64,
}

/// A phone imports the commune and syncs it to `server`; returns the push time and the server's open queue.
fn push_commune(server: &TestServer, households: &[Household], area: &str) -> (f64, HashSet<(String, String)>) {
    let mut phone = Device::enrolled(server, "officer", area);
    for h in households {
        phone.store.create_household(h).unwrap();
    }
    let t = Instant::now();
    phone.sync().unwrap();
    let push_s = t.elapsed().as_secs_f64();
    let queue = server.runtime.block_on(server.storage.duplicates(Some(area.into()))).unwrap();
    let open = queue
        .iter()
        .filter(|d| d.status == "open")
        .map(|d| ordered(format!("{}/{}", d.doc_a, d.member_a), format!("{}/{}", d.doc_b, d.member_b)))
        .collect();
    (push_s, open)
}

fn quality(set: &Labelled) -> Quality {
    let server = TestServer::start();
    let (push_s, found) = push_commune(&server, &set.households, AREA);
    let truth = true_pairs(&set.pairs);
    let tp = found.iter().filter(|p| truth.contains_key(*p)).count();
    let n = set.households.len() as f64;
    println!(
        "[{}] {} households: first push {push_s:.2} s; {} queued, {tp} true of {}: PRECISION {:.3}, RECALL {:.3}; \
         {} false pairs ({:.1} per 10,000 households)",
        set.name,
        set.households.len(),
        found.len(),
        truth.len(),
        tp as f64 / found.len().max(1) as f64,
        tp as f64 / truth.len().max(1) as f64,
        found.len() - tp,
        (found.len() - tp) as f64 * 10_000.0 / n
    );
    // Recall per error kind: each kind a pair carries counts it once.
    let mut per_kind: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (pair, kind) in &truth {
        for k in kind.split('+') {
            let e = per_kind.entry(k.to_string()).or_default();
            e.1 += 1;
            if found.contains(pair) {
                e.0 += 1;
            }
        }
    }
    if !per_kind.is_empty() {
        let line: Vec<String> = per_kind.iter().map(|(k, (f, t))| format!("{k} {f}/{t}")).collect();
        println!("[{}] recall per error kind: {}", set.name, line.join(", "));
    }
    Quality { queued: found.len(), true_positives: tp, true_pairs: truth.len(), push_s }
}

/// The first push of the commune against a copy of the cached province store
/// (`support/province.rs`: `households` households in the 100 communes of province 01, built
/// once by the real import), into a commune of another province: the device pulls nothing,
/// and the duplicate search, which spans the country, reads the province's residents.
fn push_against_province(households: usize, set: &Labelled, empty_push_s: f64) {
    // On PostgreSQL (DOORSTEP_TEST_POSTGRES_URL, the empty push's backend too) the province is
    // the province bench's database, copied from it as a template for each push.
    let province = province::CachedProvince::open(Path::new(env!("CARGO_BIN_EXE_doorstep-sync-server")), households);
    // A commune of another province (the country grows: nothing of the province shares a
    // district with it), and a new commune of a district of the province (its names and
    // dates are looked up among the district's 100,000 households).
    for (area, beside) in [(OTHER_PROVINCE, "in another province"), (SAME_DISTRICT, "in one of its districts")] {
        let run = tempfile::tempdir().unwrap();
        let db = province.copy("linkage", run.path());
        let server = TestServer::start_on_db(&db);
        // A server builds its filter of the token index's base in the background once its
        // first push asks (until it is built, a lookup reads the whole base); a server that
        // runs has built it long before: the push is timed after it.
        let t = Instant::now();
        let filter = server.runtime.block_on(server.storage.build_index_filter()).unwrap();
        println!(
            "[{}] TOKEN INDEX FILTER on that server: {:.2} s ({})",
            set.name,
            t.elapsed().as_secs_f64(),
            match filter {
                Some(tokens) => format!("built from {tokens} tokens"),
                None if province.on_postgres() => "none on PostgreSQL".into(),
                None => "built in the background meanwhile".into(),
            }
        );
        let moved: Vec<Household> =
            set.households.iter().cloned().map(|h| Household { area_code: area.into(), ..h }).collect();
        let (push_s, found) = push_commune(&server, &moved, area);
        println!(
            "[{}] FIRST PUSH of {} households to {area} ({beside}) against a server holding a province of \
             {households} households: {push_s:.2} s (empty server: {empty_push_s:.2} s, {:.2}x); {} queued",
            set.name,
            set.households.len(),
            push_s / empty_push_s,
            found.len()
        );
        // What the push left to the token index's background settling, forced here: its
        // fresh tokens move to the recent level (a commune's worth, once a commune), then the
        // recent level to the province's base index (once ten communes' worth).
        let settle = |limits: LevelLimits| {
            let t = Instant::now();
            let moved = server.runtime.block_on(server.storage.settle_index(limits)).unwrap();
            (t.elapsed().as_secs_f64(), moved)
        };
        let (fresh_s, fresh) = settle(LevelLimits { recent: i64::MAX, ..LevelLimits::everything() });
        let (base_s, base) = settle(LevelLimits::everything());
        println!(
            "[{}] SETTLING the push's tokens on that server: fresh to recent {fresh_s:.2} s ({} tokens), \
             recent to base {base_s:.2} s ({} tokens)",
            set.name, fresh.fresh_to_recent, base.recent_to_base
        );
        drop(server);
        province.remove_copy(&db);
    }
}

/// Splink on DuckDB over the same files, in a venv under target/ (installed from PyPI once).
fn splink(set: &Labelled, doorstep: &Quality) {
    let venv = workspace().join("target/splink-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        let ok = Command::new("python3").args(["-m", "venv"]).arg(&venv).status().map(|s| s.success()).unwrap_or(false)
            && Command::new(venv.join("bin/pip")).args(["install", "-q", "splink"]).status().is_ok_and(|s| s.success());
        if !ok {
            println!("[{}] Splink: could not install splink into {}", set.name, venv.display());
            return;
        }
    }
    let out = Command::new(python)
        .arg(workspace().join("bench/splink_peer.py"))
        .arg(&set.jsonl)
        .arg(&set.truth)
        // Doorstep's operating point, at which Splink is also read.
        .arg(format!("{:.6}", doorstep.true_positives as f64 / doorstep.queued.max(1) as f64))
        .arg(format!("{:.6}", doorstep.true_positives as f64 / doorstep.true_pairs.max(1) as f64))
        .output()
        .unwrap();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        println!("[{}] {line}", set.name);
    }
    if !out.status.success() {
        println!("[{}] Splink failed: {}", set.name, String::from_utf8_lossy(&out.stderr));
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let smoke = std::env::args().any(|a| a == "--test");
    let n = env_usize("DOORSTEP_BENCH_HOUSEHOLDS", if smoke { 300 } else { 10_000 });
    let province_households = env_usize("DOORSTEP_BENCH_PROVINCE_HOUSEHOLDS", if smoke { 0 } else { 1_000_000 });
    let with_splink = !smoke && std::env::var("DOORSTEP_BENCH_SPLINK").map(|v| v != "0").unwrap_or(true);
    println!("backend: {}", if common::using_postgres() { "PostgreSQL" } else { "SQLite" });
    println!("linkage model: {}", doorstep_core::identity::LinkageModel::shipped().version());
    let dir = tempfile::tempdir().unwrap();
    let sets = [
        generate(dir.path(), "seed 6, rate 0.02", &[n.to_string(), "6".into(), "0.02".into()], true),
        generate(dir.path(), "seed 7, rate 0.05", &[n.to_string(), "7".into(), "0.05".into()], true),
        generate(dir.path(), "plain commune", &[n.to_string()], false),
    ];
    let mut results = Vec::new();
    for set in &sets {
        let q = quality(set);
        if with_splink && !set.pairs.is_empty() {
            splink(set, &q);
        }
        results.push(q);
    }
    assert!(results[0].true_pairs > 0 && results[0].queued > 0, "the labelled commune queued nothing");
    assert!(results[0].true_positives > 0, "the labelled commune's queue holds no true pair");
    if province_households > 0 {
        push_against_province(province_households, &sets[0], results[0].push_s);
    }
}

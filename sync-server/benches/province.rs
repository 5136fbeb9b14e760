//! One commune's costs on a server that holds a whole province (issue 16): 1,000,000 households
//! in 100 communes (`support/province.rs`, built once by the real `import` and cached under
//! target/bench-fixtures/), against a server that holds that commune alone (the same households
//! imported by the same command into a fresh store). For each: the first sync of the commune to
//! a new device, seven rounds of a push of 100 edited households and their pull by another device (the first
//! round after start-up reads cold pages; the ratios compare medians; the two servers run side by
//! side and take turns, round by round, so that a machine's slower minutes weigh on both), and the
//! console's progress page (province and commune) and household search, after login.
//!
//! `cargo bench -p doorstep-sync-server --bench province` (SQLite; with DOORSTEP_TEST_POSTGRES_URL
//! naming an admin URL, PostgreSQL; `-- --test` for a smoke run on 2,000 households;
//! DOORSTEP_BENCH_PROVINCE_HOUSEHOLDS sets the province's size).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/province.rs"]
mod province;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{Device, TestServer};
use doorstep_core::record::Household;
use doorstep_sync_server::console::hash_password;
use doorstep_sync_server::storage::{Operator, Role};
use province::commune_area;

const PASSWORD: &str = "password-for-the-bench";

/// Rounds of 100 edits pushed and pulled.
const PUSH_ROUNDS: usize = 7;

/// The median of some timings.
fn median(times: &[f64]) -> f64 {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// What one server measured.
struct Figures {
    first_sync_s: f64,
    first_sync_bytes: usize,
    /// Each round's push of 100 edited households, in seconds.
    pushes: Vec<f64>,
    /// Each round's pull of them by another device.
    pulls: Vec<f64>,
    pages: Vec<(&'static str, f64)>,
}

/// A logged-in console session: its cookie.
fn login(server: &TestServer) -> (reqwest::blocking::Client, String) {
    let op = Operator {
        username: "bench-admin".into(),
        password_hash: hash_password(PASSWORD).unwrap(),
        role: Role::Admin,
        area: String::new(),
        created_at: 0,
    };
    server.runtime.block_on(server.storage.put_operator(op)).unwrap();
    let http = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let form = http.get(format!("{}/console/login", server.url)).send().unwrap();
    let cookie = |resp: &reqwest::blocking::Response, name: &str| -> String {
        let all = resp.headers().get_all("set-cookie");
        let value = all.iter().filter_map(|v| v.to_str().ok()).find(|v| v.starts_with(&format!("{name}="))).unwrap();
        value.split(';').next().unwrap().to_string()
    };
    let login_cookie = cookie(&form, "doorstep_login");
    let html = form.text().unwrap();
    let at = html.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    let csrf = html[at..].split('"').next().unwrap().to_string();
    let resp = http
        .post(format!("{}/console/login", server.url))
        .header("cookie", login_cookie)
        .form(&[("username", "bench-admin"), ("password", PASSWORD), ("csrf", &csrf), ("next", "/console/progress")])
        .send()
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::SEE_OTHER);
    let session = cookie(&resp, "doorstep_session");
    (http, session)
}

/// The median time of five requests of a console page (after one to warm it).
fn page_ms(server: &TestServer, session: &(reqwest::blocking::Client, String), path: &str) -> f64 {
    let (http, cookie) = session;
    let mut times = Vec::new();
    for _ in 0..6 {
        let t = Instant::now();
        let resp = http.get(format!("{}{path}", server.url)).header("cookie", cookie).send().unwrap();
        assert_eq!(resp.status(), reqwest::StatusCode::OK, "{path}");
        let _ = resp.text().unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.remove(0);
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// One server under measure: its two devices after their first sync, and what was measured.
struct Side {
    server: TestServer,
    a: Device,
    b: Device,
    figures: Figures,
}

/// Starts a server on `db` and syncs the commune to two new devices (the first sync is timed).
fn first_sync(db: &str, area: &str, commune: &[Household]) -> Side {
    let server = TestServer::start_on_db(db);
    // A server builds its token index's base filter in the background once its first push
    // asks (a province's in some 5 s); the measures begin once it is built, as on a server
    // that runs.
    server.runtime.block_on(server.storage.build_index_filter()).unwrap();
    let mut a = Device::enrolled(&server, "officer-a", area);
    let t = Instant::now();
    let r = a.sync().unwrap();
    let (first_sync_s, first_sync_bytes) = (t.elapsed().as_secs_f64(), r.bytes_received);
    assert_eq!(r.pulled, commune.len());
    let mut b = Device::enrolled(&server, "officer-b", area);
    assert_eq!(b.sync().unwrap().pulled, commune.len());
    let figures = Figures { first_sync_s, first_sync_bytes, pushes: Vec::new(), pulls: Vec::new(), pages: Vec::new() };
    Side { server, a, b, figures }
}

/// One round on one side: 100 other households edited on device a, pushed, and pulled by b.
fn push_round(side: &mut Side, commune: &[Household], round: usize) {
    let edited: Vec<&Household> = commune.iter().cycle().skip(round * 100).take(commune.len().min(100)).collect();
    for h in &edited {
        side.a.edit(&h.household_id, |x| x.members[0].phone = Some(format!("09876543{round:02}")));
    }
    let t = Instant::now();
    let pushed = side.a.sync().unwrap();
    side.figures.pushes.push(t.elapsed().as_secs_f64());
    assert_eq!(pushed.pushed, edited.len());
    let t = Instant::now();
    let pulled = side.b.sync().unwrap();
    side.figures.pulls.push(t.elapsed().as_secs_f64());
    assert_eq!(pulled.pulled, edited.len());
}

/// The console's pages on one side, after login.
fn pages(side: &mut Side, area: &str, commune: &[Household]) {
    let server = &side.server;
    let session = login(server);
    let cccd = commune.iter().flat_map(|h| &h.members).find_map(|m| m.cccd.clone()).unwrap();
    let name = &commune[commune.len() / 2].members[0].full_name;
    side.figures.pages = vec![
        ("progress page of the province", page_ms(server, &session, "/console/progress?area=01")),
        ("progress page of the commune", page_ms(server, &session, &format!("/console/progress?area={area}"))),
        ("household search by CCCD", page_ms(server, &session, &format!("/console/households?area={area}&q={cccd}"))),
        (
            "household search by name",
            page_ms(server, &session, &format!("/console/households?area={area}&q={}", urlencode(name))),
        ),
    ];
}

fn urlencode(text: &str) -> String {
    serde_urlencoded::to_string([("q", text)]).unwrap().trim_start_matches("q=").to_string()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let smoke = std::env::args().any(|a| a == "--test");
    let n = if smoke {
        2_000
    } else {
        std::env::var("DOORSTEP_BENCH_PROVINCE_HOUSEHOLDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
    };
    let server_bin = Path::new(env!("CARGO_BIN_EXE_doorstep-sync-server"));
    let cached = province::CachedProvince::open(server_bin, n);
    let province = &cached.province;
    let area = commune_area(0);
    let lines = province.commune_lines(0);
    let commune: Vec<Household> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let backend = if cached.on_postgres() { "PostgreSQL" } else { "SQLite" };
    println!(
        "backend: {backend}; commune {area}: {} households; province: {n} households in 100 communes",
        commune.len()
    );

    // The commune alone, imported by the same command into a fresh store.
    let alone = tempfile::tempdir().unwrap();
    let file = alone.path().join("commune.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let alone_db = common::fresh_db(alone.path());
    let mut import = Command::new(server_bin);
    import.arg("--db").arg(&alone_db);
    if let Some(key) = common::key_file(&alone_db) {
        import.arg("--key-file").arg(key);
    }
    let status = import.args(["import", "--area", &area]).arg(&file).status().unwrap();
    assert!(status.success());

    let copy = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let province_db = cached.copy("province", copy.path());
    println!("copied the province store in {:.0} s", t.elapsed().as_secs_f64());

    // Both servers run side by side and take turns, round by round: a machine that slows
    // down for a while (a shared VM does) slows both, and the ratios stay paired.
    let mut sides = [first_sync(&alone_db, &area, &commune), first_sync(&province_db, &area, &commune)];
    for round in 0..PUSH_ROUNDS {
        for side in sides.iter_mut() {
            push_round(side, &commune, round);
        }
    }
    for side in sides.iter_mut() {
        pages(side, &area, &commune);
    }
    for (label, side) in [("commune alone", &sides[0]), ("province", &sides[1])] {
        let f = &side.figures;
        let fmt = |times: &[f64]| times.iter().map(|t| format!("{t:.3}")).collect::<Vec<_>>().join(" ");
        println!("[{label}] FIRST SYNC of the commune: {:.2} s, {} bytes", f.first_sync_s, f.first_sync_bytes);
        println!(
            "[{label}] PUSH of {} edits: median {:.3} s (each round: {}); PULL of them: median {:.3} s ({})",
            commune.len().min(100),
            median(&f.pushes),
            fmt(&f.pushes),
            median(&f.pulls),
            fmt(&f.pulls)
        );
        for (page, ms) in &f.pages {
            println!("[{label}] {page}: {ms:.1} ms");
        }
    }
    let results: Vec<&Figures> = sides.iter().map(|s| &s.figures).collect();
    let (alone, full) = (results[0], results[1]);
    println!(
        "PROVINCE / ALONE: first sync {:.2}x, push {:.2}x, pull {:.2}x (medians)",
        full.first_sync_s / alone.first_sync_s,
        median(&full.pushes) / median(&alone.pushes),
        median(&full.pulls) / median(&alone.pulls)
    );
    drop(sides);
    cached.remove_copy(&province_db);
}

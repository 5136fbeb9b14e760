//! A province-sized server store for the benches: `gen_households.py N 42` spread over the 100
//! communes of province 01 (districts 01.001…01.010, ten communes each; commune `c` holds
//! households `c·N/100 …`), imported by the real `doorstep-sync-server import --area 01` into a
//! SQLite store, or into a PostgreSQL database of the cluster the benches use. Built once and
//! cached: under `target/bench-fixtures/province-N/` (the SQLite file, or the marker and key
//! of the PostgreSQL database `doorstep_province_N`, which stays in the cluster).

#![allow(dead_code, reason = "each bench uses a part of it")]

use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Communes in the province.
pub const COMMUNES: usize = 100;

/// The area code of commune `c` (0-based) of the province.
pub fn commune_area(c: usize) -> String {
    format!("01.{:03}.{:05}", 1 + c / 10, 1 + c)
}

/// The cache directory of the benches' fixtures.
pub fn fixtures() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The generator's commune of `n` households (seed 42), written once.
pub fn commune_file(n: usize) -> PathBuf {
    let path = fixtures().join(format!("commune-{n}.jsonl"));
    if !path.exists() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/gen_households.py");
        let out = Command::new("python3").arg(script).arg(n.to_string()).arg("42").output().expect("python3");
        assert!(out.status.success());
        std::fs::write(&path, out.stdout).unwrap();
    }
    path
}

/// A cached province store: its directory holds `province.jsonl` (the households as imported),
/// `server.db` and `server.db.key`.
pub struct Province {
    /// The fixture's directory.
    pub dir: PathBuf,
    /// Households in the province.
    pub households: usize,
}

impl Province {
    /// The store's database file.
    pub fn db(&self) -> PathBuf {
        self.dir.join("server.db")
    }

    /// The households of commune `c`, as JSON lines (the import's input).
    pub fn commune_lines(&self, c: usize) -> Vec<String> {
        let per = self.households / COMMUNES;
        let file = std::fs::File::open(self.dir.join("province.jsonl")).unwrap();
        std::io::BufReader::new(file).lines().skip(c * per).take(per).map(Result::unwrap).collect()
    }
}

/// The province's households as imported (`province-N/province.jsonl`), written once.
fn province_file(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("province.jsonl");
    let written = dir.join("province.jsonl.complete");
    if written.exists() {
        return path;
    }
    std::fs::create_dir_all(dir).unwrap();
    let source = std::io::BufReader::new(std::fs::File::open(commune_file(n)).unwrap());
    let mut out = BufWriter::new(std::fs::File::create(&path).unwrap());
    let per = (n / COMMUNES).max(1);
    for (i, line) in source.lines().enumerate() {
        let mut h: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        let area = commune_area((i / per).min(COMMUNES - 1));
        h["household_id"] = format!("{area}-{i:07}").into();
        h["area"] = area.into();
        writeln!(out, "{h}").unwrap();
    }
    out.flush().unwrap();
    std::fs::write(written, "").unwrap();
    path
}

/// What a marker of a built store says: its size and the linkage version its index was made by.
fn marker(n: usize) -> String {
    format!(
        "{n} households\nlinkage {}\nschema {}\n",
        doorstep_sync_server::logic::shipped_linkage_version(),
        doorstep_sync_server::store::schema_version()
    )
}

/// Runs the server binary with `args`; panics with `what` if it fails.
fn run(server: &Path, args: &[&std::ffi::OsStr], what: &str) {
    let status = Command::new(server).args(args).status().unwrap();
    assert!(status.success(), "{what} failed");
}

/// Brings a cached store built by an older version up to this one: opening it migrates it and,
/// if the search index changed, re-indexes it, once, as a server upgrade does (any command opens it; `devices` does nothing more).
fn upgrade(server: &Path, done: &Path, n: usize, db_args: &[&std::ffi::OsStr]) {
    let built = std::fs::read_to_string(done).unwrap_or_default();
    if built == marker(n) {
        return;
    }
    println!(
        "upgrading the cached province store ({}) — once",
        marker(n).lines().skip(1).collect::<Vec<_>>().join(", ")
    );
    let t = Instant::now();
    let mut args = db_args.to_vec();
    args.push("devices".as_ref());
    run(server, &args, "the province's upgrade");
    println!("province store upgraded in {:.0} s", t.elapsed().as_secs_f64());
    std::fs::write(done, marker(n)).unwrap();
}

/// The province of `n` households in a SQLite store, built once (`server` is the server binary).
pub fn province(server: &Path, n: usize) -> Province {
    let dir = fixtures().join(format!("province-{n}"));
    let done = dir.join("complete");
    let province = Province { dir: dir.clone(), households: n };
    let db = province.db();
    if done.exists() {
        upgrade(server, &done, n, &["--db".as_ref(), db.as_os_str()]);
        return province;
    }
    let file = province_file(&dir, n);
    // A store left by a build that did not finish goes, with its WAL (never replayed into a new one).
    for stale in ["server.db", "server.db-wal", "server.db-shm"] {
        let _ = std::fs::remove_file(dir.join(stale));
    }
    println!("building the province store ({n} households in {COMMUNES} communes) in {} — once", dir.display());
    let t = Instant::now();
    let report = dir.join("refused.csv");
    run(
        server,
        &[
            "--db".as_ref(),
            db.as_os_str(),
            "import".as_ref(),
            "--area".as_ref(),
            "01".as_ref(),
            file.as_os_str(),
            "--report".as_ref(),
            report.as_os_str(),
        ],
        "the province's import",
    );
    println!("province store built in {:.0} s", t.elapsed().as_secs_f64());
    std::fs::write(&done, marker(n)).unwrap();
    province
}

/// The province of `n` households in the PostgreSQL database `doorstep_province_N` of the
/// cluster `admin` (an admin URL) names, built once; returns its URL and its key file.
pub fn postgres_province(server: &Path, n: usize, admin: &str) -> (Province, String, PathBuf) {
    let dir = fixtures().join(format!("province-{n}"));
    let done = dir.join("postgres-complete");
    let key = dir.join("postgres.key");
    let name = format!("doorstep_province_{n}");
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let province = Province { dir: dir.clone(), households: n };
    let mut client = postgres::Client::connect(admin, postgres::NoTls).unwrap();
    let exists = !client.query("SELECT 1 FROM pg_database WHERE datname = $1", &[&name]).unwrap().is_empty();
    let db_args = ["--db".as_ref(), url.as_ref(), "--key-file".as_ref(), key.as_os_str()];
    if exists && done.exists() {
        upgrade(server, &done, n, &db_args);
        return (province, url, key);
    }
    let file = province_file(&dir, n);
    let _ = std::fs::remove_file(&done);
    // One statement a call: several would run as one transaction, which DROP DATABASE refuses.
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).unwrap();
    client.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    println!("building the province store ({n} households) in PostgreSQL database {name} — once");
    let t = Instant::now();
    let mut args = db_args.to_vec();
    args.extend(["import".as_ref(), "--area".as_ref(), "01".as_ref(), file.as_os_str()]);
    run(server, &args, "the province's import");
    println!("province store built in {:.0} s", t.elapsed().as_secs_f64());
    std::fs::write(&done, marker(n)).unwrap();
    (province, url, key)
}

/// The cached province on the benches' backend: the SQLite store, or the PostgreSQL database
/// when DOORSTEP_TEST_POSTGRES_URL names a cluster (then every server of the bench is on it).
pub struct CachedProvince {
    /// The province.
    pub province: Province,
    /// On PostgreSQL: the cluster's admin URL, the province database's URL and its key file.
    postgres: Option<(String, String, PathBuf)>,
}

impl CachedProvince {
    /// The province of `n` households on the benches' backend, built once.
    pub fn open(server: &Path, n: usize) -> CachedProvince {
        match std::env::var("DOORSTEP_TEST_POSTGRES_URL") {
            Ok(admin) => {
                let (province, url, key) = postgres_province(server, n, &admin);
                CachedProvince { province, postgres: Some((admin, url, key)) }
            }
            Err(_) => CachedProvince { province: province(server, n), postgres: None },
        }
    }

    /// Whether the province is in PostgreSQL.
    pub fn on_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// A copy a bench may write to (a database named for `label` and this process, or files
    /// in `dir`): its `--db` value. [`CachedProvince::remove_copy`] removes a database.
    pub fn copy(&self, label: &str, dir: &Path) -> String {
        match &self.postgres {
            Some((admin, url, key)) => {
                let name = format!("doorstep_bench_{label}_copy_{}", std::process::id());
                let copy_url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
                copy_postgres(admin, url, key, &name, &crate::common::key_file(&copy_url).unwrap())
            }
            None => copy_store(&self.province, dir).to_str().unwrap().to_string(),
        }
    }

    /// Removes a PostgreSQL copy (as large as the province: not left in the cluster); a
    /// SQLite copy goes with its directory.
    pub fn remove_copy(&self, db: &str) {
        if let Some((admin, _, _)) = &self.postgres {
            let mut client = postgres::Client::connect(admin, postgres::NoTls).unwrap();
            let copy = db.rsplit('/').next().unwrap();
            client.batch_execute(&format!("DROP DATABASE IF EXISTS {copy} WITH (FORCE)")).unwrap();
        }
    }
}

/// A copy of the PostgreSQL province (`CREATE DATABASE … TEMPLATE`), named `copy`, with its key at
/// `copy_key`: a bench's writes leave the cache as built. Returns the copy's URL.
pub fn copy_postgres(admin: &str, template: &str, key: &Path, copy: &str, copy_key: &Path) -> String {
    let mut client = postgres::Client::connect(admin, postgres::NoTls).unwrap();
    let template = template.rsplit('/').next().unwrap();
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {copy} WITH (FORCE)")).unwrap();
    client.batch_execute(&format!("CREATE DATABASE {copy} TEMPLATE {template}")).unwrap();
    std::fs::copy(key, copy_key).unwrap();
    format!("{}/{copy}", admin.rsplit_once('/').unwrap().0)
}

/// A copy of the province's store (and its key) in `dir`: a bench's writes leave the cache as built.
pub fn copy_store(province: &Province, dir: &Path) -> PathBuf {
    for f in ["server.db", "server.db.key"] {
        std::fs::copy(province.dir.join(f), dir.join(f)).unwrap();
    }
    // A WAL a process left (one that did not close its store) holds committed pages the file
    // may lack: it goes with the file, or the copy is not the store.
    let wal = province.dir.join("server.db-wal");
    if wal.exists() {
        std::fs::copy(&wal, dir.join("server.db-wal")).unwrap();
    }
    // On disk before the clock starts: the kernel writing back gigabytes of a copy made
    // seconds before competed with the measured push for the disk.
    for f in ["server.db", "server.db-wal"] {
        if let Ok(copy) = std::fs::File::open(dir.join(f)) {
            copy.sync_all().unwrap();
        }
    }
    dir.join("server.db")
}

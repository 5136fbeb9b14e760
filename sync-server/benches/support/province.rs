//! A province-sized server store for the benches: `gen_households.py N 42` spread over the 100
//! communes of province 01 (districts 01.001…01.010, ten communes each; commune `c` holds
//! households `c·N/100 …`), imported by the real `doorstep-sync-server import --area 01` into a
//! SQLite store. Built once and cached under `target/bench-fixtures/province-N/`.

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

/// The province of `n` households, built once (`server` is the server binary).
pub fn province(server: &Path, n: usize) -> Province {
    let dir = fixtures().join(format!("province-{n}"));
    let done = dir.join("complete");
    let province = Province { dir: dir.clone(), households: n };
    if done.exists() {
        return province;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let source = std::io::BufReader::new(std::fs::File::open(commune_file(n)).unwrap());
    let mut out = BufWriter::new(std::fs::File::create(dir.join("province.jsonl")).unwrap());
    let per = (n / COMMUNES).max(1);
    for (i, line) in source.lines().enumerate() {
        let mut h: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        let area = commune_area((i / per).min(COMMUNES - 1));
        h["household_id"] = format!("{area}-{i:07}").into();
        h["area"] = area.into();
        writeln!(out, "{h}").unwrap();
    }
    out.flush().unwrap();
    drop(out);
    println!("building the province store ({n} households in {COMMUNES} communes) in {} — once", dir.display());
    let t = Instant::now();
    let db = province.db();
    let status = Command::new(server)
        .arg("--db")
        .arg(&db)
        .args(["import", "--area", "01"])
        .arg(dir.join("province.jsonl"))
        .arg("--report")
        .arg(dir.join("refused.csv"))
        .status()
        .unwrap();
    assert!(status.success(), "the province's import failed");
    println!("province store built in {:.0} s", t.elapsed().as_secs_f64());
    std::fs::write(&done, format!("{n} households\n")).unwrap();
    province
}

/// A copy of the province's store (and its key) in `dir`: a bench's writes leave the cache as built.
pub fn copy_store(province: &Province, dir: &Path) -> PathBuf {
    for f in ["server.db", "server.db.key"] {
        std::fs::copy(province.dir.join(f), dir.join(f)).unwrap();
    }
    dir.join("server.db")
}

//! The registry in and out (docs/REGISTRY.md) through the real commands on a real store:
//! preloading N households (`gen_households.py N 42`), importing the same file again, a full
//! export, and an export since a cursor after 100 registry rows changed. Prints time,
//! households/s and the peak RSS of each `doorstep-sync-server` process.
//!
//! `cargo bench -p doorstep-sync-server --bench registry` (N = 100,000; `-- --test` for a smoke
//! run; DOORSTEP_BENCH_HOUSEHOLDS sets N; DOORSTEP_TEST_POSTGRES_URL for PostgreSQL). The
//! generated file is cached under target/bench-fixtures/. With DOORSTEP_BENCH_EXPORT_ONLY=1 on
//! SQLite, only the exports run, of the province store (`support/province.rs`: the N households
//! in 100 communes, built once and cached there too, as the province bench uses it): the
//! 1,000,000-household export's peak RSS comes from that.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/province.rs"]
mod province;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::key_file;
use province::commune_file;

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Runs the server command; returns its standard output, seconds, and its own peak RSS (MiB).
#[expect(clippy::zombie_processes, reason = "the child is reaped by wait4, which also gives its peak RSS")]
fn run(db: &str, args: &[&str]) -> (String, f64, f64) {
    use std::io::Read;
    let mut command = Command::new(env!("CARGO_BIN_EXE_doorstep-sync-server"));
    if let Some(key) = key_file(db) {
        command.arg("--key-file").arg(key);
    }
    let t = Instant::now();
    let mut child = command
        .arg("--db")
        .arg(db)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Both pipes drain at once: a child that fills one while the other is read would wait forever.
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        err
    });
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let err = errors.join().unwrap_or_default();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, and writes its status and usage into our variables.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let secs = t.elapsed().as_secs_f64();
    assert!(pid > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{args:?}: {err}");
    (out, secs, usage.ru_maxrss as f64 / 1024.0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let smoke = std::env::args().any(|a| a == "--test");
    let n = env_usize("DOORSTEP_BENCH_HOUSEHOLDS", if smoke { 200 } else { 100_000 });
    let file = commune_file(n);
    let dir = tempfile::tempdir().unwrap();
    let export_only = std::env::var("DOORSTEP_BENCH_EXPORT_ONLY").is_ok() && !common::using_postgres();
    println!("backend: {}", if common::using_postgres() { "PostgreSQL" } else { "SQLite" });

    // The province is exported whole; the commune's district otherwise.
    let area = if export_only { "01" } else { "01.001" };
    let db = if export_only {
        let province = province::province(Path::new(env!("CARGO_BIN_EXE_doorstep-sync-server")), n);
        province.db().to_str().unwrap().to_string()
    } else {
        let db = common::fresh_db(dir.path());
        let (said, secs, rss) = run(&db, &["import", "--area", area, file.to_str().unwrap()]);
        println!("import of {n} households: {secs:.1} s, {:.0} households/s, peak RSS {rss:.0} MiB", n as f64 / secs);
        println!("    {}", said.lines().next().unwrap_or_default());
        assert!(said.contains(&format!("{n} new")), "{said}");
        let (said, secs, _) = run(&db, &["import", "--area", area, file.to_str().unwrap()]);
        println!("the same file again: {secs:.1} s, {:.0} households/s ({})", n as f64 / secs, said.trim());
        assert!(said.contains(&format!("{n} unchanged")), "{said}");
        db
    };

    let out = dir.path().join("export.jsonl");
    let (next, secs, rss) = run(&db, &["export", "--area", area, "--out", out.to_str().unwrap()]);
    let lines = std::fs::read_to_string(&out).map(|t| t.lines().count()).unwrap_or(0);
    assert_eq!(lines, n);
    println!(
        "full export of {n} households (JSON Lines): {secs:.1} s, {:.0} households/s, peak RSS {rss:.0} MiB",
        n as f64 / secs
    );
    let cursor: i64 = next.trim().parse().unwrap();
    let csv = dir.path().join("export.csv");
    let (_, secs, _) = run(&db, &["export", "--area", area, "--format", "csv", "--out", csv.to_str().unwrap()]);
    println!("full export of {n} households (CSV): {secs:.1} s, {:.0} households/s", n as f64 / secs);
    if export_only {
        return;
    }

    // The registry changes 100 rows (a phone number each): one change each, and an export
    // since the cursor holds exactly those 100.
    let text = std::fs::read_to_string(&file).unwrap();
    let changed: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, line)| {
            if i % (n / 100).max(1) != 0 || i / (n / 100).max(1) >= 100 {
                return line.to_string();
            }
            let mut h: serde_json::Value = serde_json::from_str(line).unwrap();
            h["members"][0]["phone"] = serde_json::Value::String(format!("09{:08}", i));
            h.to_string()
        })
        .collect();
    let changed_file = dir.path().join("changed.jsonl");
    std::fs::write(&changed_file, changed.join("\n")).unwrap();
    let (said, secs, _) = run(&db, &["import", "--area", area, changed_file.to_str().unwrap()]);
    println!("import with 100 rows changed: {secs:.1} s ({})", said.trim());
    let since = dir.path().join("since.jsonl");
    let (_, secs, _) =
        run(&db, &["export", "--area", area, "--since", &cursor.to_string(), "--out", since.to_str().unwrap()]);
    let got = std::fs::read_to_string(&since).unwrap().lines().count();
    println!("export since the cursor: {got} households in {secs:.2} s");
    assert_eq!(got, 100.min(n));
}

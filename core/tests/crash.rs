//! Crash check: a child process saving households is SIGKILLed at random
//! moments, 50 times. After each reopen, every save that had returned Ok is
//! present and intact, and the database passes SQLite's integrity check.
//!
//! The child is this same test binary, re-run with `DOORSTEP_CRASH_CHILD` set.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng, rngs::StdRng};

const CHILD_ENV: &str = "DOORSTEP_CRASH_CHILD";
const ROUNDS: usize = 50;

/// In the child: save households forever, printing `OK <id> <n>` after each save returns.
/// New households are created, and a few are edited over and over (incremental chunks, compaction).
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else { return };
    let round: usize = std::env::var("DOORSTEP_CRASH_ROUND").unwrap().parse().unwrap();
    let mut store = common::officer_store(std::path::Path::new(&path));
    let template = common::commune(1, round as u64).remove(0);
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    for n in 0.. {
        if n % 2 == 0 {
            let mut h = template.clone();
            h.household_id = format!("hh-r{round}-{n}");
            h.address = format!("Số {n}, round {round}");
            store.create_household(&h).unwrap();
            writeln!(out, "OK {} {n}", h.household_id).unwrap();
        } else {
            let id = format!("hh-edit-{}", n % 3);
            let mut doc = match store.open_household(&id) {
                Ok(doc) => doc,
                Err(doorstep_core::Error::NotFound(_)) => {
                    let mut h = template.clone();
                    h.household_id = id.clone();
                    store.create_household(&h).unwrap().0
                }
                Err(e) => panic!("{e}"),
            };
            let mut h = doc.read();
            h.address = format!("Số {}, edited", round * 1_000_000 + n);
            doc.update(&h, &store.editor().unwrap()).unwrap();
            store.save_household(&mut doc).unwrap();
            writeln!(out, "OK {id} {}", round * 1_000_000 + n).unwrap();
        }
        out.flush().unwrap();
    }
}

#[test]
fn acknowledged_saves_survive_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    drop(common::officer_store(&path));
    let exe = std::env::current_exe().unwrap();
    let mut rng = StdRng::seed_from_u64(0xD0025739);
    // id -> the highest sequence number acknowledged for it.
    let mut acked: HashMap<String, usize> = HashMap::new();
    let mut total_acks = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .env("DOORSTEP_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait for the first save, then kill after a random delay.
        let first = rx.recv_timeout(Duration::from_secs(60)).expect("child saved nothing");
        let mut lines = vec![first];
        let deadline = Instant::now() + Duration::from_millis(rng.random_range(1..120));
        while Instant::now() < deadline {
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(1)) {
                lines.push(l);
            }
        }
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        for line in lines {
            let mut parts = line.split_whitespace();
            if parts.next() != Some("OK") {
                continue;
            }
            let id = parts.next().unwrap().to_string();
            let n: usize = parts.next().unwrap().parse().unwrap();
            total_acks += 1;
            let e = acked.entry(id).or_insert(n);
            *e = (*e).max(n);
        }

        let store = common::officer_store(&path);
        let check: String = store.raw_connection().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok", "round {round}");
        for (id, n) in &acked {
            let h = store.household(id).unwrap_or_else(|e| panic!("round {round}: {id} lost: {e}"));
            let stored: usize = h.address.trim_start_matches("Số ").split(',').next().unwrap().parse().unwrap();
            assert!(stored >= *n, "round {round}: {id} went back from {n} to {stored}");
        }
        // Nothing stored is corrupt, acknowledged or not.
        for row in store.list_households(0, u32::MAX).unwrap() {
            assert!(row.summary.is_some(), "round {round}: {} summary corrupt", row.household_id);
            store.household(&row.household_id).unwrap();
        }
    }
    assert!(total_acks > ROUNDS, "the child saved too little to prove anything: {total_acks}");
}

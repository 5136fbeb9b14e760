//! Shared by the benches: the synthetic commune and a store built from it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use doorstep_core::crypto::KdfParams;
use doorstep_core::record::{Household, Member};
use doorstep_core::store::{Role, Store};

pub const PIN: &str = "246810";

/// How many households: 10,000 unless DOORSTEP_BENCH_HOUSEHOLDS says otherwise (CI smoke runs use fewer).
pub fn household_count() -> usize {
    std::env::var("DOORSTEP_BENCH_HOUSEHOLDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000)
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The synthetic commune `bench/gen_households.py N` writes, parsed.
pub fn commune(n: usize) -> Vec<Household> {
    let out = Command::new("python3")
        .arg(workspace().join("bench/gen_households.py"))
        .arg(n.to_string())
        .output()
        .expect("python3 runs bench/gen_households.py");
    assert!(out.status.success(), "generator failed");
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A store of `n` households with one officer profile using the production KDF,
/// built once and cached under target/bench-cache; returns a fresh copy's path.
pub fn store_copy(n: usize, dir: &Path) -> PathBuf {
    let cache_dir = workspace().join("target/bench-cache");
    std::fs::create_dir_all(&cache_dir).unwrap();
    let cached = cache_dir.join(format!("store-{n}.db"));
    if !cached.exists() {
        let building = cache_dir.join(format!("store-{n}.building.db"));
        let _ = std::fs::remove_file(&building);
        let mut store = Store::open(&building).unwrap();
        store.create_profile("officer", Role::Officer, PIN, None, KdfParams::default()).unwrap();
        store.unlock("officer", PIN, None).unwrap();
        for h in commune(n) {
            store.create_household(&h).unwrap();
        }
        store.raw_connection().execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
        drop(store);
        std::fs::rename(&building, &cached).unwrap();
        let _ = std::fs::remove_file(cache_dir.join(format!("store-{n}.building.db-wal")));
        let _ = std::fs::remove_file(cache_dir.join(format!("store-{n}.building.db-shm")));
    }
    let copy = dir.join("store.db");
    std::fs::copy(&cached, &copy).unwrap();
    copy
}

/// A new household of four members (head, spouse, two children), all fields valid.
pub fn four_member_household(i: usize) -> Household {
    let m = |k: usize, name: &str, dob: &str, sex: &str, cccd: Option<&str>, relation: &str| Member {
        member_id: format!("m{k}"),
        full_name: name.into(),
        dob: Some(dob.into()),
        sex: Some(sex.into()),
        cccd: cccd.map(Into::into),
        relation: Some(relation.into()),
        phone: Some("0912345678".into()),
        residence_status: Some("permanent".into()),
        occupation: Some("Nông dân".into()),
        document_photo: None,
        same_person_as: None,
        verification: None,
    };
    Household {
        household_id: format!("bench-{i}"),
        area_code: "01.001.00001".into(),
        address: format!("Số {i}, Thôn Đông, xã Tân Lập"),
        head_member_id: Some("m0".into()),
        members: vec![
            m(0, "Nguyễn Văn Hùng", "1975-04-02", "M", Some("001075123456"), "head"),
            m(1, "Trần Thị Mai", "1978-09-12", "F", Some("001178654321"), "spouse"),
            m(2, "Nguyễn Minh Đạt", "2004-01-30", "M", Some("001204111222"), "child"),
            m(3, "Nguyễn Thị Hồng Nhung", "2015-06-01", "F", None, "child"),
        ],
        ..Household::default()
    }
}

//! Plaintext check: after saving 1,000 households, no name, address or CCCD
//! number appears in the raw bytes of the database, its WAL or any other file
//! beside it, with or without diacritics, in NFC or NFD.

mod common;

use doorstep_core::identity::normalize_name;
use unicode_normalization::UnicodeNormalization;

fn needles(households: &[doorstep_core::record::Household]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for h in households {
        out.push(h.address.clone());
        out.push(normalize_name(&h.address));
        for m in &h.members {
            out.push(m.full_name.clone());
            out.push(m.full_name.nfd().collect());
            out.push(normalize_name(&m.full_name));
            // Without diacritics but keeping case and spaces, as someone might type it.
            out.push(
                m.full_name
                    .nfd()
                    .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
                    .collect::<String>()
                    .replace(['đ'], "d")
                    .replace(['Đ'], "D"),
            );
            out.push(m.cccd.clone().unwrap());
            out.push(m.phone.clone().unwrap());
        }
    }
    out.sort();
    out.dedup();
    out.into_iter().map(String::into_bytes).collect()
}

fn scan_dir(dir: &std::path::Path, needles: &[Vec<u8>]) -> Vec<String> {
    let matcher = aho_corasick::AhoCorasick::new(needles).unwrap();
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(scan_dir(&path, needles));
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for m in matcher.find_iter(&bytes).take(10) {
            found.push(format!("{} in {}", String::from_utf8_lossy(&needles[m.pattern().as_usize()]), path.display()));
        }
    }
    found
}

#[test]
fn no_plaintext_pii_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    // Any temp file SQLite made would land here, inside the scanned directory.
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    // SAFETY: this test binary runs this one test; no other thread reads the environment.
    unsafe {
        std::env::set_var("SQLITE_TMPDIR", &tmp);
        std::env::set_var("TMPDIR", &tmp);
    }
    let households = common::commune(1000, 42);
    let needles = needles(&households);
    assert!(needles.len() > 5000);
    let mut store = common::officer_store(&path);
    for h in &households {
        store.create_household(h).unwrap();
    }
    // Edit some, so incremental chunks and compaction also hit the disk.
    for h in households.iter().take(100) {
        let mut doc = store.open_household(&h.household_id).unwrap();
        let mut edited = doc.read();
        edited.members[0].occupation = Some("Giáo viên".into());
        doc.update(&edited, &store.editor().unwrap()).unwrap();
        store.save_household(&mut doc).unwrap();
    }
    // Searching must not spill either.
    assert_eq!(store.search_cccd(households[7].members[0].cccd.as_deref().unwrap()).unwrap().len(), 1);
    // Work that needs temp storage (a large sort, a vacuum) must not spill either.
    let n: i64 = store
        .raw_connection()
        .query_row("SELECT COUNT(*) FROM (SELECT summary FROM doc_meta ORDER BY summary)", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1000);
    let wal = dir.path().join("store.db-wal");
    assert!(wal.exists() && std::fs::metadata(&wal).unwrap().len() > 0, "the WAL holds data while open");
    let found = scan_dir(dir.path(), &needles);
    assert!(found.is_empty(), "plaintext found while open: {found:?}");
    store.raw_connection().execute_batch("VACUUM").unwrap();
    drop(store);
    let found = scan_dir(dir.path(), &needles);
    assert!(found.is_empty(), "plaintext found after vacuum and close: {found:?}");
    // The scan would find them if they were there.
    std::fs::write(dir.path().join("canary"), households[3].members[0].full_name.as_bytes()).unwrap();
    assert_eq!(scan_dir(dir.path(), &needles).len(), 1);
}

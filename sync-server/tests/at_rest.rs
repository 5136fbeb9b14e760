//! The server's store holds nothing that identifies a resident in clear, and
//! opens only with its own key. Runs on SQLite (the file, its WAL and journal
//! read byte by byte) and, in the PostgreSQL pass, on every column of every table.

mod common;

use common::{AREA, Device, MinusYears, TestServer, household};
use doorstep_core::identity::normalize_name;
use doorstep_core::record::Member;
use doorstep_sync_server::storage::ProgressQuery;
use unicode_normalization::UnicodeNormalization;

const NAME: &str = "Nguyễn Thị Hồng Nhung";
const CHILD: &str = "Vũ Đức Khải Hoàn";
const ADDRESS: &str = "Xóm Đồng Quýt, thôn Khuổi Hẻo";
const CCCD: &str = "001185012345";

/// Every byte the store holds: the SQLite file with its WAL and journal, or each
/// PostgreSQL column (text as text, bytea as raw bytes).
fn stored_bytes(db: &str) -> Vec<u8> {
    if db.starts_with("postgres") {
        let mut client = postgres::Client::connect(db, postgres::NoTls).unwrap();
        let columns = client
            .query(
                "SELECT table_name::TEXT, column_name::TEXT, data_type::TEXT FROM information_schema.columns
                 WHERE table_schema = 'public'",
                &[],
            )
            .unwrap();
        let mut out = Vec::new();
        for c in columns {
            let (table, column, kind): (String, String, String) = (c.get(0), c.get(1), c.get(2));
            let sql = if kind == "bytea" {
                format!("SELECT \"{column}\" FROM \"{table}\"")
            } else {
                format!("SELECT convert_to(\"{column}\"::TEXT, 'UTF8') FROM \"{table}\"")
            };
            for row in client.query(&sql, &[]).unwrap() {
                if let Some(bytes) = row.get::<_, Option<Vec<u8>>>(0) {
                    out.extend_from_slice(&bytes);
                    out.push(0);
                }
            }
        }
        out
    } else {
        let mut out = Vec::new();
        for suffix in ["", "-wal", "-journal", "-shm"] {
            if let Ok(bytes) = std::fs::read(format!("{db}{suffix}")) {
                out.extend_from_slice(&bytes);
            }
        }
        out
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn nothing_that_identifies_a_resident_is_stored_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::fresh_db(dir.path());
    let server = TestServer::start_on_db(&db);
    let mut a = Device::enrolled(&server, "officer-a", AREA);
    let mut b = Device::enrolled(&server, "officer-b", AREA);

    // A child who turns 14 in 30 days, a head of household, one duplicate across
    // two households and one conflict on the head's name.
    let today = chrono::Utc::now().date_naive();
    let child_dob = (today + chrono::Duration::days(30)).with_year_minus(14).format("%Y-%m-%d").to_string();
    let mut h = household("hh-1", AREA, NAME, CCCD);
    h.address = ADDRESS.into();
    h.members.push(Member {
        member_id: "m1".into(),
        full_name: CHILD.into(),
        dob: Some(child_dob.clone()),
        sex: Some("M".into()),
        relation: Some("child".into()),
        residence_status: Some("permanent".into()),
        ..Member::default()
    });
    a.store.create_household(&h).unwrap();
    b.store.create_household(&household("hh-2", AREA, NAME, CCCD)).unwrap();
    a.sync().unwrap();
    b.sync().unwrap();
    a.sync().unwrap();
    a.edit("hh-1", |h| h.members[0].full_name = format!("{NAME} Anh"));
    b.edit("hh-1", |h| h.members[0].full_name = format!("{NAME} Em"));
    a.sync().unwrap();
    b.sync().unwrap();

    // The server still reads what it sealed: conflicts, duplicates, search, progress, households.
    let rt = &server.runtime;
    let conflicts = rt.block_on(server.storage.conflicts(None)).unwrap();
    assert_eq!(conflicts.len(), 1);
    let values: Vec<String> = conflicts[0].values.iter().filter_map(|v| v.value.clone()).collect();
    assert!(values.iter().any(|v| v.contains("Anh")) && values.iter().any(|v| v.contains("Em")), "{values:?}");
    let duplicates = rt.block_on(server.storage.duplicates(None)).unwrap();
    assert!(!duplicates.is_empty(), "the shared CCCD is found through its index token");
    let people = rt.block_on(server.storage.people(String::new(), 100)).unwrap();
    assert!(people.iter().any(|(_, _, json)| json.contains(CHILD)));
    let query = ProgressQuery {
        area: String::new(),
        since_day: 0,
        since_week: 0,
        since_month: 0,
        born_after: today.with_year_minus(14).format("%Y-%m-%d").to_string(),
        born_until: (today + chrono::Duration::days(90)).with_year_minus(14).format("%Y-%m-%d").to_string(),
    };
    let (counts, turning) = rt.block_on(server.storage.progress(query.clone(), 10)).unwrap();
    assert_eq!(turning.iter().map(|t| (t.name.as_str(), t.dob.as_str())).collect::<Vec<_>>(), [(CHILD, &*child_dob)]);
    assert_eq!(counts.iter().map(|c| c.turning_14).sum::<i64>(), 1);
    assert_eq!(rt.block_on(server.storage.area_counts(query)).unwrap(), counts, "the page's counts are the CSV's");
    let (doc, _) = rt.block_on(server.storage.household("hh-1".into())).unwrap().unwrap();
    let editor = doorstep_sync_server::merge::server_editor("test");
    let read = doorstep_core::record::HouseholdDoc::load("hh-1", &doc, &editor).unwrap().read();
    assert_eq!(read.address, ADDRESS);
    // The slip signing key, made at the first enrolment, is a secret too.
    let slip_key = rt.block_on(server.storage.setting_or_insert("slip_signing_key".into(), String::new())).unwrap();
    assert_eq!(slip_key.len(), 64);

    // …and nothing of it is on disk in clear: names in NFC, NFD and folded, the
    // address, the CCCD, dates of birth, the slip key.
    drop(server);
    let stored = stored_bytes(&db);
    // Positive controls: what is not personal (ids, areas, officers' profile names) is there to find.
    for visible in ["hh-1", "hh-2", AREA, "officer-b"] {
        assert!(contains(&stored, visible), "the scan reads the store: {visible:?} not found");
    }
    let mut needles = vec![CCCD.to_string(), child_dob.clone(), "1966-01-01".to_string(), slip_key];
    for text in [NAME, CHILD, ADDRESS, "Nhung", "Khuổi Hẻo"] {
        needles.push(text.nfc().collect());
        needles.push(text.nfd().collect());
        needles.push(normalize_name(text));
    }
    for needle in &needles {
        assert!(!contains(&stored, needle), "{needle:?} is stored in clear");
    }
    if !db.starts_with("postgres") {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(format!("{db}.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "the key file beside the database is private");
        }
    }
}

#[test]
fn a_store_opens_only_with_its_key_and_an_old_store_in_clear_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::fresh_db(dir.path());
    let server = TestServer::start_on_db(&db);
    let mut a = Device::enrolled(&server, "officer-a", AREA);
    a.store.create_household(&household("hh-1", AREA, NAME, CCCD)).unwrap();
    a.sync().unwrap();
    let before = server.fingerprint();
    drop(server);

    let other_key = dir.path().join("other.key");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = common::try_open_storage(&rt, &db, Some(&other_key)).err().expect("another key is refused");
    assert!(err.message.contains("does not open this database"), "{}", err.message);
    let garbage = dir.path().join("garbage.key");
    std::fs::write(&garbage, "0123").unwrap();
    let err = common::try_open_storage(&rt, &db, Some(&garbage)).err().expect("a malformed key is refused");
    assert!(err.message.contains("does not hold a key"), "{}", err.message);
    assert_eq!(common::fingerprint(&db), before, "refusals changed nothing");

    // A store written in clear (no check value) is refused rather than mixed with sealed rows.
    let forget_check = "DELETE FROM setting WHERE key = 'at_rest_check'";
    common::sql(&db, forget_check);
    let err = common::try_open_storage(&rt, &db, common::key_file(&db).as_deref()).err().expect("refused");
    assert!(err.message.contains("stored in clear"), "{}", err.message);
}

#[test]
fn the_server_refuses_to_start_without_its_key_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    // PostgreSQL: no default key file (nodes must share one); refused before connecting.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_doorstep-sync-server"))
        .args(["--db", "postgres://nobody@127.0.0.1:1/none", "devices"])
        .env_remove("DOORSTEP_KEY_FILE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs --key-file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // SQLite: the key beside the file is made once; another key is refused.
    let db = dir.path().join("server.db");
    let run = |key: Option<&std::path::Path>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_doorstep-sync-server"));
        c.arg("--db").arg(&db).arg("devices").env_remove("DOORSTEP_KEY_FILE");
        if let Some(k) = key {
            c.arg("--key-file").arg(k);
        }
        c.output().unwrap()
    };
    assert!(run(None).status.success());
    assert!(dir.path().join("server.db.key").exists());
    assert!(run(None).status.success());
    let out = run(Some(&dir.path().join("another.key")));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not open this database"));
}

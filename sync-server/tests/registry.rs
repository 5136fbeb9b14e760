//! The registry in and out (docs/REGISTRY.md), through the real commands and the export API:
//! preload a commune from the generator's file, re-import it (nothing changes), refuse bad
//! rows into a report, export since a cursor after a phone's edits, and the export tokens'
//! rules. Both backends.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Device, TestServer, fingerprint, key_file};
use doorstep_core::record::Household;
use doorstep_core::verification::{ReviewDecision, ReviewStatus, VerificationState};
use doorstep_sync_server::storage::ProgressQuery;

const DISTRICT: &str = "01.001";

/// Runs `doorstep-sync-server` on the test's store; returns its standard output.
fn server_cmd(db: &str, args: &[&str]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_doorstep-sync-server"));
    if let Some(key) = key_file(db) {
        command.arg("--key-file").arg(key);
    }
    let out = command.arg("--db").arg(db).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A synthetic commune from the project's generator (bench/gen_households.py).
fn generated(dir: &Path, n: usize, seed: u32) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/gen_households.py");
    let out = Command::new("python3").arg(script).arg(n.to_string()).arg(seed.to_string()).output().unwrap();
    assert!(out.status.success());
    let path = dir.join(format!("commune-{n}-{seed}.jsonl"));
    std::fs::write(&path, out.stdout).unwrap();
    path
}

fn households_of(jsonl: &str) -> Vec<Household> {
    jsonl.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn by_id(mut v: Vec<Household>) -> Vec<Household> {
    v.sort_by(|a, b| a.household_id.cmp(&b.household_id));
    v
}

fn import(db: &str, file: &Path) -> String {
    server_cmd(db, &["import", "--area", DISTRICT, file.to_str().unwrap()])
}

/// Exports into a file; returns (households, next cursor).
fn export(db: &str, since: i64, dir: &Path) -> (Vec<Household>, i64) {
    let out = dir.join(format!("export-{since}.jsonl"));
    let next =
        server_cmd(db, &["export", "--area", DISTRICT, "--since", &since.to_string(), "--out", out.to_str().unwrap()]);
    (households_of(&std::fs::read_to_string(out).unwrap()), next.trim().parse().unwrap())
}

#[test]
fn an_import_exports_back_equal_and_a_second_import_changes_nothing() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = generated(dir.path(), 150, 11);
    let said = import(&server.db, &file);
    assert!(said.contains("150 new"), "{said}");
    let (exported, next) = export(&server.db, 0, dir.path());
    assert_eq!(by_id(exported), by_id(households_of(&std::fs::read_to_string(&file).unwrap())));
    // (Equality is of values: the export also names the latest edit, by the registry import.)
    assert!(next > 0);

    let before = fingerprint(&server.db);
    let said = import(&server.db, &file);
    assert!(said.contains("150 unchanged"), "{said}");
    assert_eq!(fingerprint(&server.db), before, "a second import wrote something");
    // The CSV export, imported back, changes nothing either.
    let csv = dir.path().join("export.csv");
    server_cmd(&server.db, &["export", "--area", DISTRICT, "--format", "csv", "--out", csv.to_str().unwrap()]);
    let said = import(&server.db, &csv);
    assert!(said.contains("150 unchanged"), "{said}");
    assert_eq!(fingerprint(&server.db), before);
    // Nothing changed since the cursor: an export from it is empty and keeps it.
    assert_eq!(export(&server.db, next, dir.path()), (vec![], next));
}

/// An import writes one batch while it prepares the next from what the store held before:
/// a household a later batch repeats must still come out as that later row says.
#[test]
fn a_household_repeated_in_a_later_batch_of_one_file_takes_the_later_row() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = generated(dir.path(), 700, 13);
    let mut households = households_of(&std::fs::read_to_string(&file).unwrap());
    let mut again = households[2].clone();
    again.address = "Số 7, Thôn Sau".into();
    // Well past the first batch (doorstep_sync_server::registry::command::IMPORT_BATCH).
    households.insert(650, again.clone());
    let repeated = dir.path().join("repeated.jsonl");
    let text: Vec<String> = households.iter().map(|h| serde_json::to_string(h).unwrap()).collect();
    std::fs::write(&repeated, text.join("\n")).unwrap();
    let said = import(&server.db, &repeated);
    assert!(said.contains("700 new") && said.contains("1 changed"), "{said}");
    let (exported, _) = export(&server.db, 0, dir.path());
    assert_eq!(exported.len(), 700);
    let stored = exported.iter().find(|h| h.household_id == again.household_id).unwrap();
    assert_eq!(stored.address, "Số 7, Thôn Sau");
    assert_eq!(stored.members, again.members);
}

#[test]
fn a_changed_registry_row_is_one_change_and_keeps_an_officers_correction() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = generated(dir.path(), 20, 12);
    import(&server.db, &file);
    let mut households = households_of(&std::fs::read_to_string(&file).unwrap());
    let id = households[3].household_id.clone();
    let area = households[3].area_code.clone();

    // An officer corrects the head's phone on the doorstep.
    let mut phone = Device::enrolled(&server, "officer-a", &area);
    phone.sync().unwrap();
    phone.edit(&id, |h| h.members[0].phone = Some("0912000111".into()));
    phone.sync().unwrap();
    let (_, cursor) = export(&server.db, 0, dir.path());

    // The registry then changes the address of that household.
    households[3].address = "Số 99, Thôn Mới".into();
    let changed = dir.path().join("changed.jsonl");
    let text: Vec<String> = households.iter().map(|h| serde_json::to_string(h).unwrap()).collect();
    std::fs::write(&changed, text.join("\n")).unwrap();
    let said = import(&server.db, &changed);
    assert!(said.contains("1 changed") && said.contains("19 unchanged"), "{said}");

    let (since, _) = export(&server.db, cursor, dir.path());
    assert_eq!(since.len(), 1);
    assert_eq!(since[0].address, "Số 99, Thôn Mới");
    assert_eq!(since[0].members[0].phone.as_deref(), Some("0912000111"), "the officer's correction was undone");
    // The phone receives the registry's change.
    phone.sync().unwrap();
    assert_eq!(phone.store.open_household(&id).unwrap().read().address, "Số 99, Thôn Mới");
}

#[test]
fn bad_rows_are_reported_with_their_line_and_the_good_rows_are_stored() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let good = households_of(&std::fs::read_to_string(generated(dir.path(), 6, 13)).unwrap());
    let mut lines: Vec<String> = Vec::new();
    let mut bad_cccd = good[0].clone();
    bad_cccd.members[0].cccd = Some("12345".into());
    lines.push(serde_json::to_string(&bad_cccd).unwrap());
    lines.push(serde_json::to_string(&good[1]).unwrap());
    let mut bad_date = good[2].clone();
    bad_date.members[0].dob = Some("1990-13-45".into());
    lines.push(serde_json::to_string(&bad_date).unwrap());
    let mut no_id = serde_json::to_value(&good[3]).unwrap();
    no_id.as_object_mut().unwrap().remove("household_id");
    lines.push(no_id.to_string());
    lines.push("{\"household_id\": \"01.001.00001-x\", ".into());
    let mut outside = good[4].clone();
    outside.area_code = "02.001.00001".into();
    lines.push(serde_json::to_string(&outside).unwrap());
    lines.push(serde_json::to_string(&good[5]).unwrap());
    let file = dir.path().join("mixed.jsonl");
    std::fs::write(&file, lines.join("\n")).unwrap();

    let said = import(&server.db, &file);
    assert!(said.contains("2 new") && said.contains("5 refused"), "{said}");
    let report = std::fs::read_to_string(dir.path().join("mixed.jsonl.report.csv")).unwrap();
    let mut rows = csv::Reader::from_reader(report.as_bytes());
    let found: Vec<(String, String)> =
        rows.records().map(|r| r.unwrap()).map(|r| (r[0].to_string(), r[2].to_string())).collect();
    let want = [
        ("1", "bad_cccd"),
        ("3", "bad_date"),
        ("4", "missing_household_id"),
        ("5", "malformed"),
        ("6", "outside_area"),
    ];
    assert_eq!(found, want.map(|(l, c)| (l.to_string(), c.to_string())));
    assert!(report.contains("không hợp lệ") && report.contains("is not valid"), "reasons in vi and en: {report}");
    let (stored, _) = export(&server.db, 0, dir.path());
    assert_eq!(by_id(stored), by_id(vec![good[1].clone(), good[5].clone()]));

    // CSV: a resident row with a bad sex refuses its household only.
    let csv_file = dir.path().join("residents.csv");
    std::fs::write(
        &csv_file,
        "household_id,area_code,address,head_member_id,member_id,full_name,dob,sex,cccd\n\
         01.001.00002-a,01.001.00002,Số 1,m0,m0,Lê Văn An,1980-01-02,M,\n\
         01.001.00002-a,01.001.00002,Số 1,m0,m1,Lê Thị Bé,2015-03-04,X,\n\
         01.001.00002-b,01.001.00002,Số 2,m0,m0,Trần Văn Cả,1975-05-06,M,\n",
    )
    .unwrap();
    let said = import(&server.db, &csv_file);
    assert!(said.contains("1 new") && said.contains("1 refused"), "{said}");
    let report = std::fs::read_to_string(dir.path().join("residents.csv.report.csv")).unwrap();
    assert!(report.contains("2,01.001.00002-a,bad_sex"), "{report}");
}

#[test]
fn an_export_since_a_cursor_holds_exactly_what_phones_changed() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = generated(dir.path(), 60, 14);
    import(&server.db, &file);
    let (all, cursor) = export(&server.db, 0, dir.path());
    assert_eq!(all.len(), 60);
    let area = all[0].area_code.clone();
    let mine: Vec<&Household> = all.iter().filter(|h| h.area_code == area).collect();

    // A phone of that commune takes the preloaded households and edits two.
    let mut phone = Device::enrolled(&server, "officer-b", &area);
    phone.sync().unwrap();
    assert_eq!(phone.store.list_households(0, 1000).unwrap().len(), mine.len());
    let (a, b) = (mine[0].household_id.clone(), mine[1].household_id.clone());
    // A is checked with the family and verified; B is corrected.
    phone.store.verify_household(&a, VerificationState::Verified, None, None).unwrap();
    phone.edit(&b, |h| h.members[0].occupation = Some("Giáo viên".into()));
    phone.sync().unwrap();

    let (since, next) = export(&server.db, cursor, dir.path());
    let mut ids: Vec<String> = since.iter().map(|h| h.household_id.clone()).collect();
    ids.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(ids, want);
    assert!(next > cursor);
    let verified = since.iter().find(|h| h.household_id == a).unwrap();
    assert_eq!(
        verified.verification.as_ref().map(|v| (v.state, v.by.as_str())),
        Some((VerificationState::Verified, "officer-b"))
    );
    assert!(verified.members.iter().all(|m| m.verification.is_some()));
    // The CSV export carries the states too.
    let csv_out = dir.path().join("since.csv");
    server_cmd(
        &server.db,
        &[
            "export",
            "--area",
            DISTRICT,
            "--since",
            &cursor.to_string(),
            "--format",
            "csv",
            "--out",
            csv_out.to_str().unwrap(),
        ],
    );
    let text = std::fs::read_to_string(csv_out).unwrap();
    assert!(text.lines().next().unwrap().contains("household_verification"), "{text}");
    assert!(text.lines().any(|l| l.starts_with(&a) && l.contains(",verified,verified,officer-b@")), "{text}");
    // Progress counts the verified household and its residents.
    let counts = server.runtime.block_on(server.storage.area_counts(ProgressQuery {
        area: area.clone(),
        since_day: 0,
        since_week: 0,
        since_month: 0,
        born_after: "2100-01-01".into(),
        born_until: "2100-01-01".into(),
    }));
    let counts = counts.unwrap();
    let c = counts.iter().find(|c| c.area == area).unwrap();
    assert_eq!((c.verified, c.verified_residents, c.review_waiting), (1, verified.members.len() as i64, 1));
}

#[test]
fn an_operator_returns_a_household_the_officer_fixes_it_and_the_operator_approves_it() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    import(&server.db, &generated(dir.path(), 10, 16));
    let (all, _) = export(&server.db, 0, dir.path());
    let h = all[0].clone();
    let mut phone = Device::enrolled(&server, "officer-d", &h.area_code);
    phone.sync().unwrap();
    phone.store.verify_household(&h.household_id, VerificationState::Verified, None, None).unwrap();
    phone.sync().unwrap();
    let rt = &server.runtime;
    let storage = &server.storage;
    let waiting = |status: &str| {
        let items = rt.block_on(storage.households_in_review(DISTRICT.into(), status.into(), 50)).unwrap();
        items.into_iter().map(|i| i.doc_id).collect::<Vec<_>>()
    };
    assert_eq!(waiting("waiting"), vec![h.household_id.clone()]);
    common::assert_progress_rollup(&server.db);

    // An operator of another district may not decide on it; a return needs a comment.
    let review = |decision, comment: Option<&str>, scope: &str| {
        rt.block_on(storage.review_household(
            h.household_id.clone(),
            decision,
            comment.map(Into::into),
            "operator-e".into(),
            scope.into(),
            chrono::Utc::now().timestamp(),
        ))
    };
    assert!(review(ReviewDecision::Approved, None, "01.002").is_err());
    assert!(review(ReviewDecision::Returned, Some("  "), "").is_err());
    review(ReviewDecision::Returned, Some("Sai năm sinh của chủ hộ"), DISTRICT).unwrap();
    assert_eq!(waiting("returned"), vec![h.household_id.clone()]);

    // The phone sees it at its next sync, and the officer fixes the household.
    phone.sync().unwrap();
    let seen = phone.store.household(&h.household_id).unwrap();
    assert_eq!(seen.review_status(), ReviewStatus::Returned);
    assert_eq!(seen.review.as_ref().and_then(|r| r.comment.as_deref()), Some("Sai năm sinh của chủ hộ"));
    phone.edit(&h.household_id, |x| x.members[0].dob = Some("1960-02-03".into()));
    phone.sync().unwrap();
    assert_eq!(waiting("waiting"), vec![h.household_id.clone()], "the fix goes back to the operator");

    review(ReviewDecision::Approved, None, "").unwrap();
    assert_eq!(waiting("approved"), vec![h.household_id.clone()]);
    common::assert_progress_rollup(&server.db);
    phone.sync().unwrap();
    assert_eq!(phone.store.household(&h.household_id).unwrap().review_status(), ReviewStatus::Approved);
    let audit = rt.block_on(storage.audit(Some(h.household_id.clone()))).unwrap();
    let actions: Vec<(&str, &str)> = audit.iter().map(|e| (e.user.as_str(), e.action.as_str())).collect();
    let returned = actions.iter().position(|a| *a == ("operator-e", "return for correction")).unwrap();
    let approved = actions.iter().position(|a| *a == ("operator-e", "approve")).unwrap();
    assert!(returned < approved, "{actions:?}");
}

fn get(url: &str, token: &str) -> reqwest::blocking::Response {
    reqwest::blocking::Client::new().get(url).bearer_auth(token).send().unwrap()
}

#[test]
fn export_tokens_open_their_own_area_only_and_an_export_writes_nothing() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    import(&server.db, &generated(dir.path(), 40, 15));
    let created = server_cmd(&server.db, &["export-token", "create", "--area", DISTRICT, "--label", "registry sync"]);
    let secret = created.split_whitespace().find(|w| w.starts_with("dx_")).unwrap().to_string();
    let id = created.split_whitespace().find(|w| w.starts_with("xt-")).unwrap().to_string();
    let other = server_cmd(&server.db, &["export-token", "create", "--area", "01.002", "--label", "other district"]);
    let other = other.split_whitespace().find(|w| w.starts_with("dx_")).unwrap().to_string();
    let phone = Device::enrolled(&server, "officer-c", "01.001.00001");
    let credential = phone.store.sync_secret("credential").unwrap().unwrap();
    let before = fingerprint(&server.db);

    // Pages through the API, as an integration job does, alternating between two server nodes
    // on the one store: the cursor is valid on every node.
    let other_node = TestServer::start_on_db(&server.db);
    let url = |since: i64| format!("{}/v1/export/households?area={DISTRICT}&since={since}&limit=15", server.url);
    let url_on_other =
        |since: i64| format!("{}/v1/export/households?area={DISTRICT}&since={since}&limit=15", other_node.url);
    let (mut since, mut got, mut page_no) = (0, Vec::new(), 0);
    loop {
        page_no += 1;
        let resp = get(&if page_no % 2 == 0 { url_on_other(since) } else { url(since) }, &secret);
        assert_eq!(resp.status().as_u16(), 200);
        let next: i64 = resp.headers()["doorstep-next-since"].to_str().unwrap().parse().unwrap();
        let page = households_of(&resp.text().unwrap());
        if page.is_empty() {
            assert_eq!(next, since);
            break;
        }
        assert!(page.len() <= 15);
        got.extend(page);
        since = next;
    }
    let (all, _) = export(&server.db, 0, dir.path());
    assert_eq!(by_id(got), by_id(all));

    assert_eq!(get(&url(0), &other).status().as_u16(), 403, "a token of another area");
    assert_eq!(get(&url(0), &credential).status().as_u16(), 401, "a device credential");
    assert_eq!(get(&url(0), "dx_not-a-token").status().as_u16(), 401);
    let no_auth = reqwest::blocking::get(url(0)).unwrap();
    assert_eq!(no_auth.status().as_u16(), 401);
    let sub = format!("{}/v1/export/households?area=01.001.00002", server.url);
    assert_eq!(get(&sub, &secret).status().as_u16(), 200, "a sub-area of the token's");
    assert_eq!(fingerprint(&server.db), before, "an export call wrote something");

    server_cmd(&server.db, &["export-token", "revoke", &id]);
    assert_eq!(get(&url(0), &secret).status().as_u16(), 401, "a revoked token");
    let listed = server_cmd(&server.db, &["export-token", "list"]);
    assert!(listed.contains(&id) && listed.contains("revoked"), "{listed}");
    assert!(!listed.contains(&secret), "the secret is shown once");
}

//! The duplicate queue on a labelled commune, through a real server: a phone
//! imports `bench/gen_linkage.py`'s households and syncs them, and the server's
//! open queue is compared with the truth file. Then re-scoring after a model
//! change. Both backends (the conformance run repeats it on PostgreSQL).

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;

use common::{AREA, Device, TestServer, fresh_db, open_storage, sql};
use doorstep_core::identity::LinkageModel;
use doorstep_core::identity::linkage::calibrate::true_pairs_closed;
use doorstep_core::record::Household;
use doorstep_sync_server::storage::{DuplicateAction, DuplicateItem};

/// `gen_linkage.py n seed`: the households and the labelled true pairs.
fn labelled_commune(n: usize, seed: u64) -> (Vec<Household>, Vec<(String, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let truth = dir.path().join("truth.tsv");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/gen_linkage.py");
    let out = Command::new("python3")
        .arg(script)
        .args([n.to_string(), seed.to_string(), "--truth".into(), truth.to_str().unwrap().to_string()])
        .output()
        .expect("python3 runs bench/gen_linkage.py");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let households = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let pairs = std::fs::read_to_string(truth)
        .unwrap()
        .lines()
        .map(|l| {
            let mut c = l.split('\t');
            (c.next().unwrap().to_string(), c.next().unwrap().to_string())
        })
        .collect();
    (households, pairs)
}

fn record(doc: &str, member: &str) -> String {
    format!("{doc}/{member}")
}

/// The open candidates of the server's queue.
fn open_queue(server: &TestServer) -> Vec<DuplicateItem> {
    let queue = server.runtime.block_on(server.storage.duplicates(None)).unwrap();
    queue.into_iter().filter(|d| d.status == "open").collect()
}

/// The open pairs of the queue, by household.
fn open_pairs(server: &TestServer) -> HashSet<(String, String)> {
    open_queue(server).into_iter().map(|d| (d.doc_a, d.doc_b)).collect()
}

#[test]
fn a_labelled_commune_gets_a_precise_duplicate_queue() {
    let (households, truth) = labelled_commune(2000, 6);
    let server = TestServer::start();
    let mut phone = Device::enrolled(&server, "officer", AREA);
    for h in &households {
        phone.store.create_household(h).unwrap();
    }
    phone.sync().unwrap();

    // The truth, closed: two re-registrations of one resident are one person too.
    let mut index = HashMap::new();
    for (a, b) in &truth {
        for r in [a, b] {
            let n = index.len();
            index.entry(r.clone()).or_insert(n);
        }
    }
    let pairs: Vec<(usize, usize)> = truth.iter().map(|(a, b)| (index[a], index[b])).collect();
    let closed = true_pairs_closed(index.len(), &pairs);
    let names: HashMap<usize, &String> = index.iter().map(|(k, v)| (*v, k)).collect();
    let true_set: HashSet<(String, String)> = closed
        .iter()
        .map(|(a, b)| {
            let (x, y) = (names[a].clone(), names[b].clone());
            if x < y { (x, y) } else { (y, x) }
        })
        .collect();

    let queue: Vec<DuplicateItem> = server.runtime.block_on(server.storage.duplicates(None)).unwrap();
    let open: Vec<&DuplicateItem> = queue.iter().filter(|d| d.status == "open").collect();
    let found: HashSet<(String, String)> = open
        .iter()
        .map(|d| {
            let (x, y) = (record(&d.doc_a, &d.member_a), record(&d.doc_b, &d.member_b));
            if x < y { (x, y) } else { (y, x) }
        })
        .collect();
    let tp = found.intersection(&true_set).count();
    let precision = tp as f64 / found.len().max(1) as f64;
    let recall = tp as f64 / true_set.len() as f64;
    println!("{} queued, {tp} true of {}: precision {precision:.3}, recall {recall:.3}", found.len(), true_set.len());
    assert!(true_set.len() >= 40, "the commune has its labelled pairs");
    assert!(precision >= 0.9, "precision {precision:.3}");
    assert!(recall >= 0.9, "recall {recall:.3}");

    // Each candidate says why: a probability, every comparison's weight, the model that scored it.
    let model = LinkageModel::shipped();
    for d in &open {
        let why = d.explanation.as_ref().expect("an explanation");
        assert!((why.probability - d.score).abs() < 1e-9);
        assert!(model.is_review(d.score));
        assert_eq!(why.model, model.version());
        let sum: f64 = why.comparisons.iter().map(|c| c.weight).sum();
        let prior = (model.params().prior / (1.0 - model.params().prior)).log2();
        assert!((prior + sum - why.match_weight).abs() < 1e-6);
    }
}

/// Runs one SQL statement on the test's store, behind the server's back (an older version's rows).
fn member(id: &str, name: &str, dob: &str, cccd: Option<&str>) -> doorstep_core::record::Member {
    doorstep_core::record::Member {
        member_id: id.into(),
        full_name: name.into(),
        dob: Some(dob.into()),
        sex: Some("M".into()),
        cccd: cccd.map(Into::into),
        relation: Some("head".into()),
        ..Default::default()
    }
}

fn house(id: &str, members: Vec<doorstep_core::record::Member>) -> Household {
    Household {
        household_id: id.into(),
        area_code: AREA.into(),
        address: "Số 2, Thôn Tây".into(),
        head_member_id: Some(members[0].member_id.clone()),
        members,
        ..Household::default()
    }
}

#[test]
fn candidates_are_rescored_when_the_model_changes_and_decisions_stay() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db(dir.path());
    let server = TestServer::start_on_db(&db);
    let mut phone = Device::enrolled(&server, "officer", AREA);
    // Two pairs the model queues (same name and date of birth, no CCCD on one side).
    let h = |id: &str, name: &str, cccd: Option<&str>| house(id, vec![member("m0", name, "1971-05-09", cccd)]);
    for hh in [
        h("01.001.00001-a", "Trần Văn Bình", Some("001071000123")),
        h("01.001.00001-b", "Tran Van Binh", None),
        h("01.001.00001-c", "Lê Quốc Việt", None),
        h("01.001.00001-d", "Le Quoc Viet", None),
        h("01.001.00001-e", "Phạm Thị Lan", None),
        h("01.001.00001-f", "Hoàng Văn Nam", None),
    ] {
        phone.store.create_household(&hh).unwrap();
    }
    phone.sync().unwrap();
    let list = || server.runtime.block_on(server.storage.duplicates(None)).unwrap();
    let queue = list();
    assert_eq!(queue.len(), 2, "{queue:#?}");
    let bc = queue.iter().find(|d| d.doc_a.ends_with("-a")).unwrap().id;
    let cd = queue.iter().find(|d| d.doc_a.ends_with("-c")).unwrap().id;
    server.runtime.block_on(server.storage.decide_duplicate(cd, DuplicateAction::Dismiss, "op".into(), 1)).unwrap();

    // An older model had queued a pair of strangers and scored the rest its own way, in its own format.
    sql(
        &db,
        &format!(
            "UPDATE duplicate SET score = 0.71, reasons_json = '[\"SameDob\"]' WHERE id IN ({bc}, {cd});
             INSERT INTO duplicate (doc_a, member_a, doc_b, member_b, area, score, reasons_json, status, created_at)
             VALUES ('01.001.00001-e', 'm0', '01.001.00001-f', 'm0', '{AREA}', 0.76, '[\"SameDob\"]', 'open', 1);
             DELETE FROM setting WHERE key = 'linkage_model';"
        ),
    );
    let before = list();
    assert!(before.iter().all(|d| d.explanation.is_none()), "the old rows are in the old format");

    // The command (`doorstep-sync-server linkage rescore`).
    let report = server.runtime.block_on(server.storage.rescore_duplicates(false)).unwrap();
    assert_eq!((report.kept, report.withdrawn), (1, 1), "{report:?}");
    let after = list();
    let by_id = |id: i64| after.iter().find(|d| d.id == id).unwrap();
    let rescored = by_id(bc);
    assert_eq!(rescored.status, "open");
    assert!(rescored.score > 0.71 && rescored.explanation.as_ref().unwrap().model == LinkageModel::shipped().version());
    let decided = by_id(cd);
    assert_eq!((decided.status.as_str(), decided.score), ("dismissed", 0.71), "a decision stays, untouched");
    let strangers = after.iter().find(|d| d.doc_a.ends_with("-e")).unwrap();
    assert_eq!(strangers.status, "withdrawn");

    // And by itself at start-up, after an upgrade (no model recorded, or another one).
    sql(
        &db,
        &format!(
            "UPDATE duplicate SET score = 0.71, reasons_json = '[\"SameDob\"]' WHERE id = {bc};
             DELETE FROM setting WHERE key = 'linkage_model';"
        ),
    );
    drop(server);
    let (runtime, storage) = open_storage(&db);
    let again = runtime.block_on(storage.duplicates(None)).unwrap();
    let rescored = again.iter().find(|d| d.id == bc).unwrap();
    assert!(rescored.explanation.is_some() && rescored.score > 0.71, "{rescored:?}");
    assert_eq!(again.iter().find(|d| d.id == cd).unwrap().status, "dismissed");
}

#[test]
fn names_and_dates_find_candidates_within_a_district_and_a_cccd_across_the_country() {
    let server = TestServer::start();
    let in_area = |area: &str, id: &str, members: Vec<doorstep_core::record::Member>| Household {
        household_id: format!("{area}-{id}"),
        area_code: area.into(),
        ..house(id, members)
    };
    let child = |id: &str| member(id, "Nguyễn Văn Hùng", "2015-03-15", None);
    let card = |id: &str| member(id, "Lê Văn Minh", "1980-06-02", Some("001080000777"));
    let mut province = Device::enrolled(&server, "officer-01", "01");
    for h in [
        in_area("01.001.00001", "a", vec![child("m0"), card("m1")]),
        // The child registered again in another commune of the district, and in another district.
        in_area("01.001.00002", "b", vec![child("m0")]),
        in_area("01.002.00011", "c", vec![child("m0")]),
    ] {
        province.store.create_household(&h).unwrap();
    }
    province.sync().unwrap();
    // The card holder registered again in another province.
    let mut elsewhere = Device::enrolled(&server, "officer-79", "79");
    elsewhere.store.create_household(&in_area("79.760.26734", "d", vec![card("m0")])).unwrap();
    elsewhere.sync().unwrap();

    let pairs: HashSet<(String, String)> = server
        .runtime
        .block_on(server.storage.duplicates(None))
        .unwrap()
        .into_iter()
        .map(|d| (record(&d.doc_a, &d.member_a), record(&d.doc_b, &d.member_b)))
        .collect();
    let expected: HashSet<(String, String)> =
        [("01.001.00001-a/m0", "01.001.00002-b/m0"), ("01.001.00001-a/m1", "79.760.26734-d/m0")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
    assert_eq!(pairs, expected, "the child of another district shares no identifier: not proposed");
}

#[test]
fn an_edit_reindexes_the_residents_it_changes_and_forgets_those_who_left() {
    let server = TestServer::start();
    let mut phone = Device::enrolled(&server, "officer", AREA);
    let h = |id: &str, members| house(&format!("{AREA}-{id}"), members);
    phone.store.create_household(&h("a", vec![member("m0", "Nguyễn Văn Hùng", "2015-03-15", None)])).unwrap();
    phone
        .store
        .create_household(&h(
            "b",
            vec![member("m0", "Trần Văn Nam", "1980-01-20", None), member("m1", "Nguyen Van Hung", "2015-03-15", None)],
        ))
        .unwrap();
    phone.sync().unwrap();
    let pairs = || -> HashSet<(String, String)> {
        open_queue(&server)
            .into_iter()
            .map(|d| (record(&d.doc_a, &d.member_a), record(&d.doc_b, &d.member_b)))
            .collect()
    };
    let pair = |a: &str, b: &str| (format!("{AREA}-{a}"), format!("{AREA}-{b}"));
    assert_eq!(pairs(), HashSet::from([pair("a/m0", "b/m1")]));

    // The child leaves household b; the head's name is corrected to a namesake of c's head.
    phone.edit(&format!("{AREA}-b"), |x| {
        x.members.retain(|m| m.member_id != "m1");
        x.members[0].full_name = "Lê Quốc Việt".into();
    });
    phone.store.create_household(&h("c", vec![member("m0", "Le Quoc Viet", "1980-01-20", None)])).unwrap();
    // A third registration of the child: found against a's, not against b's, which is gone.
    phone.store.create_household(&h("d", vec![member("m0", "Nguyễn Văn Hùng", "2015-03-15", None)])).unwrap();
    phone.sync().unwrap();
    let now = pairs();
    assert!(now.contains(&pair("b/m0", "c/m0")), "the edited head is looked up again: {now:?}");
    assert!(now.contains(&pair("a/m0", "d/m0")), "{now:?}");
    assert!(!now.iter().any(|(a, b)| *b == format!("{AREA}-d/m0") && a.ends_with("b/m1")), "{now:?}");
    assert_eq!(
        common::rows_as_text(&server.db, &format!("SELECT member_id FROM person WHERE doc_id = '{AREA}-b'")),
        vec![vec!["m0".to_string()]],
        "the child who left is no longer indexed"
    );
    assert_eq!(
        common::rows_as_text(
            &server.db,
            "SELECT count(*) FROM person_token_any WHERE person_id NOT IN (SELECT id FROM person)"
        ),
        vec![vec!["0".to_string()]],
        "nor under any of the keys it was indexed under"
    );
}

/// Tokens per level of the index (fresh, recent, base) of the households `ids`.
fn tokens_per_level(server: &TestServer, ids: &[String]) -> Vec<i64> {
    let within = ids.iter().map(|id| format!("'{id}'")).collect::<Vec<_>>().join(", ");
    ["person_token_fresh", "person_token_recent", "person_token"]
        .iter()
        .map(|table| {
            let sql = format!(
                "SELECT count(*) FROM {table} t JOIN person p ON p.id = t.person_id WHERE p.doc_id IN ({within})"
            );
            common::rows_as_text(&server.db, &sql)[0][0].parse().unwrap()
        })
        .collect()
}

#[test]
fn a_lookup_and_a_removal_reach_every_level_of_the_token_index() {
    use doorstep_sync_server::store::LevelLimits;
    let server = TestServer::start();
    let settle = |limits: LevelLimits| server.runtime.block_on(server.storage.settle_index(limits)).unwrap();
    let mut phone = Device::enrolled(&server, "officer", AREA);
    let ids: Vec<String> = ["a", "b", "c"].iter().map(|x| format!("{AREA}-{x}")).collect();
    let child = |name: &str| vec![member("m0", name, "2015-03-15", None)];
    // The child's first registration settles down to the base, the second to the recent
    // level; the third stays fresh.
    phone.store.create_household(&house(&ids[0], child("Nguyễn Văn Hùng"))).unwrap();
    phone.sync().unwrap();
    let moved = settle(LevelLimits::everything());
    assert!(moved.fresh_to_recent > 0 && moved.recent_to_base == moved.fresh_to_recent, "{moved:?}");
    phone.store.create_household(&house(&ids[1], child("Nguyen Van Hung"))).unwrap();
    phone.sync().unwrap();
    let moved = settle(LevelLimits { recent: i64::MAX, ..LevelLimits::everything() });
    assert!(moved.fresh_to_recent > 0 && moved.recent_to_base == 0, "{moved:?}");
    phone.store.create_household(&house(&ids[2], child("Nguyễn Văn Hùng"))).unwrap();
    phone.sync().unwrap();
    let levels: Vec<Vec<i64>> = ids.iter().map(|id| tokens_per_level(&server, std::slice::from_ref(id))).collect();
    assert!(levels[0][0] == 0 && levels[0][1] == 0 && levels[0][2] > 0, "{levels:?}");
    assert!(levels[1][0] == 0 && levels[1][1] > 0 && levels[1][2] == 0, "{levels:?}");
    assert!(levels[2][0] > 0 && levels[2][1] == 0 && levels[2][2] == 0, "{levels:?}");
    // The third registration found both others, wherever their tokens were.
    let open = open_pairs(&server);
    let expected: HashSet<(String, String)> =
        [(0, 1), (0, 2), (1, 2)].iter().map(|&(a, b): &(usize, usize)| (ids[a].clone(), ids[b].clone())).collect();
    assert_eq!(open, expected);
    // Each child leaves its household: its tokens go from whichever level holds them.
    for id in &ids {
        phone.edit(id, |x| x.members.clear());
    }
    phone.sync().unwrap();
    assert_eq!(tokens_per_level(&server, &ids), vec![0, 0, 0]);
    assert_eq!(
        common::rows_as_text(&server.db, "SELECT count(*) FROM person_token_any"),
        vec![vec!["0".to_string()]],
        "no token is left at any level"
    );
}

#[test]
fn a_districts_tokens_sit_together_and_settle_whole_in_parts() {
    use doorstep_sync_server::store::LevelLimits;
    let server = TestServer::start();
    let mut phone = Device::enrolled(&server, "officer", AREA);
    let (families, given) = (["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng"], ["An", "Bình", "Chi", "Dũng", "Hà", "Lan"]);
    for n in 0..30 {
        let name = |g: usize| format!("{} Văn {}", families[n % 5], given[(n + g) % 6]);
        let members = vec![
            member(
                "m0",
                &name(0),
                &format!("19{:02}-0{}-1{}", 50 + n, 1 + n % 9, n % 10),
                Some(&format!("0010{:02}{:06}", 50 + n, n)),
            ),
            member("m1", &name(1), &format!("20{:02}-0{}-2{}", 10 + n % 12, 1 + n % 9, n % 10), None),
        ];
        phone.store.create_household(&house(&format!("{AREA}-t{n}"), members)).unwrap();
    }
    phone.sync().unwrap();
    let count = |sql: &str| -> i64 { common::rows_as_text(&server.db, sql)[0][0].parse().unwrap() };
    let tokens = count("SELECT count(*) FROM person_token_any");
    // Each key's locality (the district of a name's or a date's key, the first digits of a
    // CCCD's, none for a phone's or a name search's) gives its token's top 16 bits: the
    // commune's tokens fall in a few stretches of the token space, not all over it.
    let stretches = count("SELECT count(DISTINCT token / 281474976710656) FROM person_token_any");
    assert!(tokens > 250 && stretches <= 6, "{tokens} tokens in {stretches} stretches");
    // However they crowd, a settling pass in parts moves every token down to the base, once.
    let moved = server
        .runtime
        .block_on(server.storage.settle_index(LevelLimits {
            fresh_ranges: 7,
            recent_ranges: 5,
            ..LevelLimits::everything()
        }))
        .unwrap();
    assert_eq!((moved.fresh_to_recent, moved.recent_to_base), (tokens as u64, tokens as u64));
    assert_eq!(count("SELECT count(*) FROM person_token"), tokens);
    assert_eq!(count("SELECT count(*) FROM person_token_fresh") + count("SELECT count(*) FROM person_token_recent"), 0);
}

#[test]
fn an_edited_resident_keeps_the_tokens_a_fresh_index_would_write() {
    let server = TestServer::start();
    let mut phone = Device::enrolled(&server, "officer", AREA);
    let id = format!("{AREA}-e");
    let mut head = member("m0", "Nguyễn Văn Hùng", "1990-03-15", Some("001090000123"));
    head.phone = Some("0912345678".into());
    phone.store.create_household(&house(&id, vec![head])).unwrap();
    phone.sync().unwrap();
    let tokens = || {
        common::rows_as_text(
            &server.db,
            &format!(
                "SELECT t.token FROM person_token_any t JOIN person p ON p.id = t.person_id
                 WHERE p.doc_id = '{id}' ORDER BY t.token"
            ),
        )
    };
    let before = tokens();
    // A new phone number changes one key; the CCCD, the names and the date keep theirs.
    phone.edit(&id, |x| x.members[0].phone = Some("0987654321".into()));
    phone.sync().unwrap();
    let after = tokens();
    assert_eq!(after.len(), before.len());
    assert_eq!(after.iter().filter(|t| !before.contains(t)).count(), 1, "one token comes: {before:?} → {after:?}");
    // A new name and date of birth change most of them; then a re-index writes every token afresh.
    phone.edit(&id, |x| {
        x.members[0].full_name = "Nguyễn Văn Hưng".into();
        x.members[0].dob = Some("1990-03-16".into());
    });
    phone.sync().unwrap();
    let edited = tokens();
    server.runtime.block_on(server.storage.rescore_duplicates(true)).unwrap();
    assert_eq!(edited, tokens(), "the tokens of the edits are those a fresh index writes");
}

/// A SQLite server asks its token index's base only for the tokens its base filter may
/// hold. The filter follows the server's own settling; a write it cannot follow (another
/// process on the same database, a re-index) leaves it behind, and a lookup then reads the
/// whole base: nothing the base holds is ever missed. (PostgreSQL keeps no filter; the same
/// registrations find the same pairs.)
/// A write to the base whose transaction fails after the server's filter followed it (the
/// filter then holds tokens the base never got) must not leave the filter answering for the
/// next write, which it does not follow: that write's tokens would be hidden.
#[test]
fn a_failed_write_to_the_base_never_leaves_the_filter_answering_for_the_next() {
    use doorstep_sync_server::store::{LevelLimits, TokenLevel};
    let server = TestServer::start();
    // Each level moves in one transaction: one write to the base, whole.
    let whole = LevelLimits { fresh_ranges: 1, recent_ranges: 1, ..LevelLimits::everything() };
    let settle = || server.runtime.block_on(server.storage.settle_index(whole)).unwrap();
    let build = || server.runtime.block_on(server.storage.build_index_filter()).unwrap();
    let mut phone = Device::enrolled(&server, "officer", AREA);
    let id = |x: &str| format!("{AREA}-{x}");
    let register = |phone: &mut Device, x: &str, members| {
        phone.store.create_household(&house(&id(x), members)).unwrap();
        phone.sync().unwrap();
    };
    let hung = || vec![member("m0", "Nguyễn Văn Hùng", "2015-03-15", None)];
    let mai = || vec![member("m0", "Trần Thị Mai", "1990-01-20", Some("001190001234"))];
    let lan = || vec![member("m0", "Phạm Thị Lan", "1987-09-02", Some("001187005678"))];
    let pairs =
        |list: &[(&str, &str)]| -> HashSet<(String, String)> { list.iter().map(|(a, b)| (id(a), id(b))).collect() };

    register(&mut phone, "a", hung());
    assert!(settle().recent_to_base > 0);
    build();
    assert_eq!(build(), None, "the filter answers for the base");

    // Mai's tokens reach the base in a transaction that then fails (rolled back).
    register(&mut phone, "b", mai());
    server.runtime.block_on(async {
        let mut tx = server.store.write().await.unwrap();
        tx.move_tokens(TokenLevel::Fresh, TokenLevel::Recent, i64::MIN, i64::MAX).await.unwrap();
        assert!(tx.move_tokens(TokenLevel::Recent, TokenLevel::Base, i64::MIN, i64::MAX).await.unwrap() > 0);
        drop(tx);
    });
    // The next write to the base commits Lan's tokens (and Mai's, again).
    register(&mut phone, "c", lan());
    assert!(settle().recent_to_base > 0);
    // Lan's second registration, and Mai's, find their first, before and after a new filter.
    register(&mut phone, "d", lan());
    register(&mut phone, "e", mai());
    assert_eq!(open_pairs(&server), pairs(&[("c", "d"), ("b", "e")]));
    build();
    register(&mut phone, "f", lan());
    assert_eq!(open_pairs(&server), pairs(&[("c", "d"), ("b", "e"), ("c", "f"), ("d", "f")]));
}

#[test]
fn the_base_filter_never_hides_a_token_another_writer_put_in_the_base() {
    use doorstep_sync_server::store::LevelLimits;
    let server = TestServer::start();
    let settle = |storage: &std::sync::Arc<dyn doorstep_sync_server::storage::Storage>,
                  rt: &tokio::runtime::Runtime| {
        rt.block_on(storage.settle_index(LevelLimits::everything())).unwrap()
    };
    let build = || server.runtime.block_on(server.storage.build_index_filter()).unwrap();
    let mut phone = Device::enrolled(&server, "officer", AREA);
    let id = |x: &str| format!("{AREA}-{x}");
    let hung = || vec![member("m0", "Nguyễn Văn Hùng", "2015-03-15", None)];
    let mai = || vec![member("m0", "Trần Thị Mai", "1990-01-20", Some("001190001234"))];
    let register = |phone: &mut Device, x: &str, members| {
        phone.store.create_household(&house(&id(x), members)).unwrap();
        phone.sync().unwrap();
    };
    let pairs =
        |list: &[(&str, &str)]| -> HashSet<(String, String)> { list.iter().map(|(a, b)| (id(a), id(b))).collect() };

    // The first registration settles to the base, and the filter is made current.
    register(&mut phone, "a", hung());
    assert!(settle(&server.storage, &server.runtime).recent_to_base > 0);
    let built = build();
    assert!(built.is_none_or(|tokens| tokens > 0), "{built:?}");
    // The second finds it through the filter; the server's own settling moves the filter on.
    register(&mut phone, "b", hung());
    assert_eq!(open_pairs(&server), pairs(&[("a", "b")]));
    assert!(settle(&server.storage, &server.runtime).recent_to_base > 0);
    assert_eq!(build(), None, "the filter followed the server's own settling");

    // Another process on the same store (an import beside the server) registers someone else
    // and settles her to the base, where the server's filter does not follow.
    let (runtime, other) = common::open_storage(&server.db);
    let now = chrono::Utc::now().timestamp();
    runtime.block_on(other.import_households(AREA.into(), vec![house(&id("c"), mai())], now)).unwrap();
    assert!(settle(&other, &runtime).recent_to_base > 0);
    drop(other);
    drop(runtime);
    // Her second registration, looked up before any new filter is built, finds the first.
    register(&mut phone, "d", mai());
    assert_eq!(open_pairs(&server), pairs(&[("a", "b"), ("c", "d")]));
    // Once the filter is built anew, a third finds both through it.
    build();
    assert_eq!(build(), None);
    register(&mut phone, "e", mai());
    assert_eq!(open_pairs(&server), pairs(&[("a", "b"), ("c", "d"), ("c", "e"), ("d", "e")]));

    // A re-index clears the base and writes every token again: the filter is behind it, and
    // lookups read the whole base until it is built again.
    server.runtime.block_on(server.storage.rescore_duplicates(true)).unwrap();
    register(&mut phone, "f", hung());
    let all = pairs(&[("a", "b"), ("c", "d"), ("c", "e"), ("d", "e"), ("a", "f"), ("b", "f")]);
    assert_eq!(open_pairs(&server), all);
    build();
    assert_eq!(build(), None);
}

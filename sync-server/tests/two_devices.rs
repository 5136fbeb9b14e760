//! Two devices edit one household offline; a real server in between.

mod common;

use common::{AREA, Device, TestServer, household};

#[test]
fn different_fields_merge_and_the_same_field_conflicts_until_resolved() {
    let server = TestServer::start();
    let mut a = Device::enrolled(&server, "officer-a", AREA);
    let mut b = Device::enrolled(&server, "officer-b", AREA);

    a.store.create_household(&household("hh-1", AREA, "Lê Thanh Vân", "080166796635")).unwrap();
    // A first sync takes the area's saved households (none yet), then pushes.
    let r = a.sync().unwrap();
    assert_eq!((r.pushed, r.round_trips), (1, 2));
    let r = b.sync().unwrap();
    assert_eq!((r.pulled, r.round_trips), (1, 1));
    assert_eq!(a.sync().unwrap().round_trips, 1, "then one round trip a sync");
    assert_eq!(b.store.household("hh-1").unwrap().members[0].full_name, "Lê Thanh Vân");

    // Different fields, offline on both: they merge cleanly.
    a.edit("hh-1", |h| h.address = "Số 7, Thôn Tây".into());
    b.edit("hh-1", |h| h.members[0].phone = Some("0912345678".into()));
    a.sync().unwrap();
    b.sync().unwrap();
    a.sync().unwrap();
    for d in [&a, &b] {
        let h = d.store.household("hh-1").unwrap();
        assert_eq!(h.address, "Số 7, Thôn Tây");
        assert_eq!(h.members[0].phone.as_deref(), Some("0912345678"));
        assert!(d.store.open_household("hh-1").unwrap().conflicts().unwrap().is_empty());
    }
    assert!(server.admin_get("/v1/admin/conflicts").as_array().unwrap().is_empty());

    // The same field: one conflict in the server's queue, visible on both devices.
    a.edit("hh-1", |h| h.members[0].full_name = "Lê Thanh Vân A".into());
    b.edit("hh-1", |h| h.members[0].full_name = "Lê Thanh Vân B".into());
    a.sync().unwrap();
    let r = b.sync().unwrap();
    assert_eq!((r.pushed, r.pulled, r.round_trips), (1, 1, 1), "push and pull in one round trip");
    a.sync().unwrap();
    let queue = server.admin_get("/v1/admin/conflicts");
    let queue = queue.as_array().unwrap();
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(queue[0]["path"], "members/m0/full_name");
    let authors: Vec<&str> =
        queue[0]["values"].as_array().unwrap().iter().map(|v| v["author"].as_str().unwrap()).collect();
    assert!(authors.iter().any(|a| a.starts_with("officer-a@")) && authors.iter().any(|a| a.starts_with("officer-b@")));
    for d in [&a, &b] {
        let conflicts = d.store.open_household("hh-1").unwrap().conflicts().unwrap();
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].path, "members/m0/full_name");
    }

    // The API takes no operator's name from the body, and checks values as the console does.
    let id = queue[0]["id"].as_i64().unwrap();
    let path = format!("/v1/admin/conflicts/{id}/resolve");
    let before = server.fingerprint();
    let named = server.admin_post(&path, serde_json::json!({"value": "Lê Thanh Vân", "operator": "operator1"}));
    assert!(named.is_client_error(), "{named}");
    assert_eq!(server.admin_post(&path, serde_json::json!({"value": " "})), 400);
    assert_eq!(server.fingerprint(), before, "refusals changed nothing");
    // Resolving through the API writes a change both devices receive.
    assert_eq!(server.admin_post(&path, serde_json::json!({"value": "Lê Thanh Vân"})), 204);
    a.sync().unwrap();
    b.sync().unwrap();
    for d in [&a, &b] {
        assert!(d.store.open_household("hh-1").unwrap().conflicts().unwrap().is_empty());
        assert_eq!(d.store.household("hh-1").unwrap().members[0].full_name, "Lê Thanh Vân");
    }
    assert_eq!(server.admin_get("/v1/admin/conflicts")[0]["status"], "resolved");

    // Every accepted change is audited with its device and user.
    let audit = server.admin_get("/v1/admin/audit?doc_id=hh-1");
    let audit = audit.as_array().unwrap();
    assert!(audit.len() >= 6);
    assert!(audit.iter().any(|e| e["user"] == "officer-a" && e["action"] == "sync"));
    assert!(audit.iter().any(|e| e["user"] == "officer-b"));
    // The audit names the credential's holder: the admin token's, never a name the caller chose.
    assert!(audit.iter().any(|e| e["user"] == "admin-api" && e["action"] == "resolve"), "{audit:?}");
    assert!(!audit.iter().any(|e| e["user"] == "operator1"));
    assert!(audit.iter().all(|e| !e["heads"].as_array().unwrap().is_empty()));

    // Nothing left to do: a sync with no changes is one small round trip.
    let r = a.sync().unwrap();
    assert_eq!((r.pushed, r.pulled, r.round_trips), (0, 0, 1));
}

#[test]
fn duplicates_across_devices_are_queued() {
    let server = TestServer::start();
    let mut a = Device::enrolled(&server, "officer-a", AREA);
    let mut b = Device::enrolled(&server, "officer-b", AREA);
    a.store.create_household(&household("hh-a", AREA, "Nguyễn Thị Hồng Nhung", "001166012345")).unwrap();
    b.store.create_household(&household("hh-b", AREA, "Nguyen Thi Hong Nhung", "001166012345")).unwrap();
    b.store.create_household(&household("hh-c", AREA, "Nguyễn Thị Hông Nhung", "001166099999")).unwrap();
    let mut fuzzy = household("hh-d", AREA, "Nguyen Hong Nhung", "");
    fuzzy.members[0].cccd = None;
    b.store.create_household(&fuzzy).unwrap();
    a.sync().unwrap();
    b.sync().unwrap();
    let dups = server.admin_get("/v1/admin/duplicates");
    let pairs: Vec<(String, String, f64)> = dups
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["doc_a"].as_str().unwrap().to_string(),
                d["doc_b"].as_str().unwrap().to_string(),
                d["score"].as_f64().unwrap(),
            )
        })
        .collect();
    let likely = doorstep_core::identity::LinkageModel::shipped().params().likely_threshold;
    assert!(pairs.iter().any(|(x, y, s)| x == "hh-a" && y == "hh-b" && *s >= likely), "same CCCD: {pairs:?}");
    assert!(pairs.iter().any(|(x, y, _)| x == "hh-a" && y == "hh-d"), "fuzzy name + dob: {pairs:?}");
    assert!(
        !pairs.iter().any(|(x, y, _)| x == "hh-a" && y == "hh-c"),
        "different CCCDs are different people: {pairs:?}"
    );
}

#[test]
fn progress_is_observed_and_a_cancelled_sync_resumes() {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;

    struct Seen(Mutex<Vec<doorstep_core::sync::SyncProgress>>);
    impl doorstep_core::sync::SyncObserver for Seen {
        fn progress(&self, p: &doorstep_core::sync::SyncProgress) {
            self.0.lock().unwrap().push(p.clone());
        }
    }
    let server = TestServer::start();
    let mut a = Device::enrolled(&server, "officer-a", AREA);
    for i in 0..3 {
        a.store.create_household(&household(&format!("hh-{i}"), AREA, "Lê Thanh Vân", "080166796635")).unwrap();
    }
    let cancelled = AtomicBool::new(true);
    let r = doorstep_core::sync::sync(&mut a.store, &a.transport, None, &cancelled);
    assert!(matches!(r, Err(doorstep_core::Error::Cancelled)));
    assert_eq!(a.store.pending_pushes(10).unwrap().len(), 3, "nothing was lost by cancelling");
    let seen = Seen(Mutex::new(Vec::new()));
    let r = doorstep_core::sync::sync(&mut a.store, &a.transport, Some(&seen), &AtomicBool::new(false)).unwrap();
    assert_eq!(r.pushed, 3);
    let seen = seen.0.into_inner().unwrap();
    assert_eq!(seen.last().unwrap().pushed, 3);
    assert_eq!(seen.len(), r.round_trips);
}

#[test]
fn a_device_reads_only_its_own_area_and_sub_areas() {
    let server = TestServer::start();
    let mut commune_a = Device::enrolled(&server, "officer-a", "01.001.00001");
    let mut commune_b = Device::enrolled(&server, "officer-b", "01.001.00002");
    let mut district = Device::enrolled(&server, "district", "01.001");
    commune_a.store.create_household(&household("hh-a", "01.001.00001", "Lê Thanh Vân", "080166796635")).unwrap();
    commune_b.store.create_household(&household("hh-b", "01.001.00002", "Trần Văn Hùng", "001070000001")).unwrap();
    commune_a.sync().unwrap();
    commune_b.sync().unwrap();
    commune_a.sync().unwrap();
    district.sync().unwrap();
    let ids = |d: &Device| -> Vec<String> {
        d.store.list_households(0, 100).unwrap().into_iter().map(|l| l.household_id).collect()
    };
    assert_eq!(ids(&commune_a), vec!["hh-a"]);
    assert_eq!(ids(&commune_b), vec!["hh-b"]);
    let mut all = ids(&district);
    all.sort();
    assert_eq!(all, vec!["hh-a", "hh-b"], "a district device sees its communes");
}

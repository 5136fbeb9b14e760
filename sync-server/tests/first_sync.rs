//! A compact first sync: a new device takes each household's saved document, page by page,
//! then the feed after the mark; it ends with the same documents as a device that replayed
//! the whole history (an old client, which sends no snapshot position). Both backends.

mod common;

use common::{Device, TestServer, household};
use doorstep_core::store::{Role, Store};
use doorstep_core::sync::protocol::{SnapshotPosition, SyncRequest, SyncResponse, decode, encode};

const DISTRICT: &str = "01.001";
const COMMUNES: [&str; 2] = ["01.001.00001", "01.001.00002"];

/// A phone store with no server behind it, to apply raw answers to.
fn bare_store(dir: &tempfile::TempDir) -> Store {
    let mut s = Store::open(dir.path().join("bare.db")).unwrap();
    s.create_profile("x", Role::Officer, "1234", None, doorstep_core::crypto::KdfParams::INSECURE_FOR_TESTS).unwrap();
    s.unlock("x", "1234", None).unwrap();
    s
}

fn post(server: &TestServer, credential: &str, req: &SyncRequest) -> SyncResponse {
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/v1/sync", server.url))
        .bearer_auth(credential)
        .body(encode(req))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    decode(&resp.bytes().unwrap()).unwrap()
}

fn request(cursor: u64, snapshot: Option<SnapshotPosition>) -> SyncRequest {
    SyncRequest { snapshot, ..SyncRequest::new(cursor, "x", vec![]) }
}

/// An Automerge chunk's type byte: 0 for a whole saved document, 1 or 2 for changes.
fn chunk_type(bytes: &[u8]) -> u8 {
    assert_eq!(&bytes[..4], &[0x85, 0x6f, 0x4a, 0x83]);
    bytes[8]
}

fn ids(store: &Store) -> Vec<String> {
    let mut ids: Vec<String> = store.list_households(0, 1000).unwrap().into_iter().map(|h| h.household_id).collect();
    ids.sort();
    ids
}

#[test]
fn a_first_sync_takes_whole_saves_and_ends_equal_to_the_history() {
    // Four documents a page, so that edits land between the pages of a first sync.
    let server = TestServer::start_with(|s| s.snapshot_page_docs = 4);
    let mut x = Device::enrolled(&server, "officer-x", DISTRICT);
    for i in 0..10 {
        let area = COMMUNES[i % 2];
        x.store.create_household(&household(&format!("hh-{i:02}"), area, "Lê Thanh Vân", "080166796635")).unwrap();
    }
    x.sync().unwrap();
    for round in 0..2 {
        for i in (0..10).step_by(2) {
            x.edit(&format!("hh-{i:02}"), |h| h.address = format!("Số {round}{i}, Thôn Đông"));
        }
        x.sync().unwrap();
    }
    let watcher = Device::enrolled(&server, "officer-w", DISTRICT);
    let credential = watcher.store.sync_secret("credential").unwrap().unwrap();

    // A first sync by hand, page by page, with edits made between its pages.
    let dir = tempfile::tempdir().unwrap();
    let mut compact = bare_store(&dir);
    let mut position = SnapshotPosition::default();
    let mut pages = 0;
    let cursor = loop {
        let answer = post(&server, &credential, &request(0, Some(position.clone())));
        pages += 1;
        assert!(answer.pull.len() <= 4);
        for p in &answer.pull {
            assert_eq!(chunk_type(&p.changes), 0, "{} came as changes, not as its saved document", p.doc_id);
        }
        let page: Vec<(&str, &[u8])> = answer.pull.iter().map(|p| (p.doc_id.as_str(), p.changes.as_slice())).collect();
        compact.apply_remote_batch(&page, &[], &[]).unwrap();
        if pages == 1 {
            // One document already sent and one still to come change under the first sync.
            x.edit("hh-00", |h| h.address = "Số 100, Thôn Bắc".into());
            x.edit("hh-09", |h| h.address = "Số 109, Thôn Bắc".into());
            x.sync().unwrap();
        }
        match answer.snapshot {
            Some(next) => {
                assert_eq!(answer.next_cursor, 0);
                assert!(answer.more);
                position = next;
            }
            None => break answer.next_cursor,
        }
    };
    assert_eq!(pages, 3, "10 documents in pages of 4");
    assert!(cursor > 0);
    // Then the feed after the mark.
    let mut cursor = cursor;
    loop {
        let answer = post(&server, &credential, &request(cursor, None));
        let page: Vec<(&str, &[u8])> = answer.pull.iter().map(|p| (p.doc_id.as_str(), p.changes.as_slice())).collect();
        compact.apply_remote_batch(&page, &[], &[]).unwrap();
        cursor = answer.next_cursor;
        if !answer.more {
            break;
        }
    }

    // An old client: no snapshot position, the whole history from the feed.
    let dir2 = tempfile::tempdir().unwrap();
    let mut replayed = bare_store(&dir2);
    let mut cursor = 0;
    let mut saw_changes = false;
    loop {
        let answer = post(&server, &credential, &request(cursor, None));
        assert!(answer.snapshot.is_none());
        saw_changes |= answer.pull.iter().any(|p| chunk_type(&p.changes) != 0);
        let page: Vec<(&str, &[u8])> = answer.pull.iter().map(|p| (p.doc_id.as_str(), p.changes.as_slice())).collect();
        replayed.apply_remote_batch(&page, &[], &[]).unwrap();
        cursor = answer.next_cursor;
        if !answer.more {
            break;
        }
    }
    assert!(saw_changes, "the feed sends changes");

    // And the product's own client, which takes the compact path by itself.
    let mut phone = Device::enrolled(&server, "officer-p", DISTRICT);
    let report = phone.sync().unwrap();
    assert_eq!(report.pulled, 10);
    assert!(report.round_trips >= 3, "{report:?}");

    let want = ids(&x.store);
    assert_eq!(want.len(), 10);
    for store in [&compact, &replayed, &phone.store] {
        assert_eq!(ids(store), want);
        for id in &want {
            let mut mine = store.open_household(id).unwrap();
            let mut theirs = x.store.open_household(id).unwrap();
            assert_eq!(mine.heads(), theirs.heads(), "{id}");
            assert_eq!(store.household(id).unwrap(), x.store.household(id).unwrap(), "{id}");
        }
    }
    assert_eq!(compact.household("hh-00").unwrap().address, "Số 100, Thôn Bắc");
    assert_eq!(compact.household("hh-09").unwrap().address, "Số 109, Thôn Bắc");
    // A later sync of the phone is an ordinary one: one round trip, nothing pulled.
    let again = phone.sync().unwrap();
    assert_eq!((again.round_trips, again.pulled), (1, 0));
}

#[test]
fn a_first_sync_of_an_empty_area_is_one_round_trip_and_later_households_arrive() {
    let server = TestServer::start();
    let mut phone = Device::enrolled(&server, "officer-p", COMMUNES[0]);
    let report = phone.sync().unwrap();
    assert_eq!((report.round_trips, report.pulled), (1, 0));
    let mut other = Device::enrolled(&server, "officer-o", COMMUNES[0]);
    other.store.create_household(&household("hh-1", COMMUNES[0], "Lê Thanh Vân", "080166796635")).unwrap();
    other.sync().unwrap();
    assert_eq!(phone.sync().unwrap().pulled, 1);
    assert!(phone.store.household("hh-1").is_ok());
    // A household of a neighbouring commune is not part of this one's first sync.
    let mut neighbour = Device::enrolled(&server, "officer-n", COMMUNES[1]);
    neighbour.store.create_household(&household("hh-2", COMMUNES[1], "Lê Văn Tám", "080166796637")).unwrap();
    neighbour.sync().unwrap();
    let mut fresh = Device::enrolled(&server, "officer-f", COMMUNES[0]);
    assert_eq!(fresh.sync().unwrap().pulled, 1);
    assert!(fresh.store.household("hh-2").is_err());
}

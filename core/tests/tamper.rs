//! Tamper check: a flipped byte, or a blob swapped between rows, gives a typed
//! Corrupt error for that record, and every other record still reads.

mod common;

use doorstep_core::Error;
use doorstep_core::store::Store;

fn chunk(store: &Store, id: &str) -> Vec<u8> {
    store
        .raw_connection()
        .query_row("SELECT sealed FROM doc_chunk WHERE doc_id = ?1 ORDER BY seq LIMIT 1", [id], |r| r.get(0))
        .unwrap()
}

fn set_chunk(store: &Store, id: &str, blob: &[u8]) {
    store
        .raw_connection()
        .execute("UPDATE doc_chunk SET sealed = ?2 WHERE doc_id = ?1", rusqlite::params![id, blob])
        .unwrap();
}

fn all_others_read(store: &Store, ids: &[String], broken: &[&str]) {
    for id in ids.iter().filter(|id| !broken.contains(&id.as_str())) {
        store.household(id).unwrap_or_else(|e| panic!("{id}: {e}"));
    }
}

#[test]
fn flipped_swapped_and_truncated_blobs_are_corrupt_and_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = common::officer_store(&dir.path().join("s.db"));
    let households = common::commune(20, 7);
    for h in &households {
        store.create_household(h).unwrap();
    }
    let ids: Vec<String> = households.iter().map(|h| h.household_id.clone()).collect();

    // One flipped byte in the middle of hh-000002's chunk.
    let mut blob = chunk(&store, &ids[2]);
    let mid = blob.len() / 2;
    blob[mid] ^= 0x40;
    set_chunk(&store, &ids[2], &blob);
    assert!(matches!(store.household(&ids[2]), Err(Error::Corrupt { .. })));
    all_others_read(&store, &ids, &[&ids[2]]);

    // Swap the chunks of hh-000004 and hh-000005: each is authentic, but for another row.
    let (a, b) = (chunk(&store, &ids[4]), chunk(&store, &ids[5]));
    set_chunk(&store, &ids[4], &b);
    set_chunk(&store, &ids[5], &a);
    assert!(matches!(store.household(&ids[4]), Err(Error::Corrupt { .. })));
    assert!(matches!(store.household(&ids[5]), Err(Error::Corrupt { .. })));

    // Truncated and empty blobs.
    let blob = chunk(&store, &ids[6]);
    set_chunk(&store, &ids[6], &blob[..blob.len() - 3]);
    set_chunk(&store, &ids[7], &[]);
    assert!(matches!(store.household(&ids[6]), Err(Error::Corrupt { .. })));
    assert!(matches!(store.household(&ids[7]), Err(Error::Corrupt { .. })));
    let broken = [ids[2].as_str(), &ids[4], &ids[5], &ids[6], &ids[7]];
    all_others_read(&store, &ids, &broken);

    // A tampered summary shows as a corrupt row in the list; the rest of the list still reads.
    let summary: Vec<u8> = store
        .raw_connection()
        .query_row("SELECT summary FROM doc_meta WHERE doc_id = ?1", [&ids[9]], |r| r.get(0))
        .unwrap();
    let mut bad = summary.clone();
    bad[30] ^= 1;
    store
        .raw_connection()
        .execute("UPDATE doc_meta SET summary = ?2 WHERE doc_id = ?1", rusqlite::params![ids[9], bad])
        .unwrap();
    let listed = store.list_households(0, 100).unwrap();
    assert_eq!(listed.len(), 20);
    for row in &listed {
        assert_eq!(row.summary.is_none(), row.household_id == ids[9], "{}", row.household_id);
    }
    // The document itself is intact, and saving it again repairs the summary.
    let mut doc = store.open_household(&ids[9]).unwrap();
    let mut h = doc.read();
    h.address.push('!');
    doc.update(&h, &store.editor().unwrap()).unwrap();
    store.save_household(&mut doc).unwrap();
    assert!(
        store
            .list_households(0, 100)
            .unwrap()
            .iter()
            .all(|r| r.summary.is_some() || broken.contains(&r.household_id.as_str()))
    );
}

#[test]
fn a_tampered_wrapped_key_is_a_wrong_pin_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = common::officer_store(&dir.path().join("s.db"));
    store.lock();
    store.raw_connection().execute("UPDATE profile SET wrapped_dek = X'00'", []).unwrap();
    assert!(matches!(store.unlock("officer", common::PIN, None), Err(Error::WrongPin { .. })));
    store.raw_connection().execute("UPDATE profile SET salt = X'0102'", []).unwrap();
    assert!(matches!(store.unlock("officer", common::PIN, None), Err(Error::Corrupt { .. })));
}

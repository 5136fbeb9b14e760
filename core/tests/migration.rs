//! Migration check: a store in the version-1 layout (no `synced_heads`, no
//! `sync_state`, no `attachment`, no `quarantine`, no `transfer_request`) opens, migrates to the latest version, and keeps its data.

mod common;

use doorstep_core::store::{LATEST_VERSION, Store};

#[test]
fn v1_store_migrates_and_keeps_households() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let households = common::commune(5, 3);
    {
        let mut store = common::officer_store(&path);
        for h in &households {
            store.create_household(h).unwrap();
        }
    }
    // Rewrite the file into the v1 layout, as an older build left it.
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "ALTER TABLE doc_meta DROP COLUMN synced_heads;
             ALTER TABLE doc_meta DROP COLUMN pushed_heads;
             DROP TABLE sync_state;
             DROP TABLE attachment;
             DROP TABLE quarantine;
             DROP TABLE transfer_request;
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let store = common::officer_store(&path);
    let version: u32 = store.raw_connection().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, LATEST_VERSION);
    let synced: String =
        store.raw_connection().query_row("SELECT synced_heads FROM doc_meta LIMIT 1", [], |r| r.get(0)).unwrap();
    assert_eq!(synced, "");
    store.raw_connection().execute("INSERT INTO sync_state (key, value) VALUES ('cursor', X'00')", []).unwrap();
    let attachments: i64 =
        store.raw_connection().query_row("SELECT COUNT(*) FROM attachment", [], |r| r.get(0)).unwrap();
    assert_eq!(attachments, 0, "v3 added the attachment table");
    let transfers: i64 =
        store.raw_connection().query_row("SELECT COUNT(*) FROM transfer_request", [], |r| r.get(0)).unwrap();
    assert_eq!(transfers, 0, "v5 added the transfer requests");
    for h in &households {
        assert_eq!(&store.household(&h.household_id).unwrap(), h);
    }
    drop(store);
    // Opening again is a no-op.
    assert!(Store::open(&path).is_ok());
}

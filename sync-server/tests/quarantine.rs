//! One pulled document cannot block a sync: changes that do not load are quarantined on the
//! device, sealed; the rest of the page commits and the cursor moves on; the next sync asks
//! for the document whole (`resend`), and the quarantined changes are let in once they load.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::{AREA, Device, TestServer, household};
use doorstep_core::record::{Editor, HouseholdDoc};
use doorstep_core::sync::HttpTransport;
use doorstep_core::sync::protocol::{DocPull, PROTOCOL_VERSION, SyncRequest, SyncResponse, decode, encode};

/// A server on 127.0.0.1 that answers the n-th sync request with `answers[n]` and keeps
/// the requests it got.
fn scripted_server(server: &TestServer, answers: Vec<SyncResponse>) -> (String, Arc<Mutex<Vec<SyncRequest>>>) {
    use axum::response::IntoResponse;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(AtomicUsize::new(0));
    let (seen2, answers) = (seen.clone(), Arc::new(answers));
    let app = axum::Router::new().route(
        "/v1/sync",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let (seen, calls, answers) = (seen2.clone(), calls.clone(), answers.clone());
            async move {
                // The phone compresses its requests to a server that said it takes zstd.
                let body = match headers.get("content-encoding") {
                    Some(v) if v == "zstd" => zstd::decode_all(&body[..]).unwrap(),
                    _ => body.to_vec(),
                };
                seen.lock().unwrap().push(decode::<SyncRequest>(&body).unwrap());
                let n = calls.fetch_add(1, Ordering::SeqCst);
                (axum::http::StatusCode::OK, encode(&answers[n])).into_response()
            }
        }),
    );
    let listener = server.runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    server.runtime.spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

fn answer(pull: Vec<DocPull>, next_cursor: u64) -> SyncResponse {
    SyncResponse {
        protocol: PROTOCOL_VERSION,
        acked: vec![],
        pull,
        next_cursor,
        more: false,
        refused: vec![],
        snapshot: None,
        directory: vec![],
        departed: vec![],
        transfers: vec![],
    }
}

#[test]
fn a_document_without_its_base_is_quarantined_and_released_when_the_base_comes() {
    let server = TestServer::start();
    let mut phone = Device::enrolled(&server, "officer-p", AREA);
    // hh-1 as another device holds it: its base, then an edit on top (the tail).
    let editor = Editor { user: "officer-x".into(), device: "dev-x".into() };
    let mut doc = HouseholdDoc::create(&household("hh-1", AREA, "Lê Thanh Vân", "080166796635"), &editor).unwrap();
    let base = doc.save();
    let heads = doc.heads();
    let mut h = doc.read();
    h.address = "Số 42, Thôn Quarantine".into();
    doc.update(&h, &editor).unwrap();
    let tail = doc.save_after(&heads);
    let other = HouseholdDoc::create(&household("hh-2", AREA, "Lê Văn Tám", "080166796637"), &editor).unwrap().save();
    let pull = |id: &str, changes: &[u8]| DocPull { doc_id: id.into(), area: AREA.into(), changes: changes.to_vec() };

    let (url, seen) = scripted_server(
        &server,
        vec![
            // The tail of hh-1 without its base, and a good hh-2, in one page.
            answer(vec![pull("hh-1", &tail), pull("hh-2", &other)], 7),
            // The next sync's answer: hh-1 whole, as the server sends it when asked.
            answer(vec![pull("hh-1", &base)], 7),
        ],
    );
    let transport = HttpTransport::new(&url).unwrap();
    let report = doorstep_core::sync::sync(&mut phone.store, &transport, None, &AtomicBool::new(false)).unwrap();
    assert_eq!(report.quarantined.len(), 1, "{report:?}");
    assert_eq!(report.quarantined[0].0, "hh-1");
    assert!(report.quarantined[0].1.contains("without their base"), "{}", report.quarantined[0].1);
    // The rest of the page went in, and the cursor moved on.
    assert!(phone.store.household("hh-2").is_ok());
    assert!(phone.store.household("hh-1").is_err());
    assert_eq!(phone.store.sync_value("cursor").unwrap().as_deref(), Some("7"));
    let waiting = phone.store.quarantined().unwrap();
    assert_eq!(waiting.iter().map(|q| q.doc_id.as_str()).collect::<Vec<_>>(), ["hh-1"]);
    // Kept sealed: the tail's text is nowhere in the phone's files.
    phone.store.raw_connection().execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    for entry in std::fs::read_dir(phone.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(10).any(|w| w == b"Quarantine"));
    }

    // The next sync asks for hh-1 whole; with its base in, the quarantined tail loads.
    let report = doorstep_core::sync::sync(&mut phone.store, &transport, None, &AtomicBool::new(false)).unwrap();
    assert_eq!(seen.lock().unwrap()[1].resend, ["hh-1"]);
    assert!(seen.lock().unwrap()[0].resend.is_empty());
    assert_eq!((report.released, report.quarantined.len()), (1, 0), "{report:?}");
    assert!(phone.store.quarantined().unwrap().is_empty());
    assert_eq!(phone.store.household("hh-1").unwrap().address, "Số 42, Thôn Quarantine");
    assert_eq!(phone.store.open_household("hh-1").unwrap().heads(), doc.heads());
}

#[test]
fn the_server_resends_whole_documents_of_the_devices_areas_only() {
    let server = TestServer::start();
    let mut a = Device::enrolled(&server, "officer-a", AREA);
    a.store.create_household(&household("hh-1", AREA, "Lê Thanh Vân", "080166796635")).unwrap();
    a.sync().unwrap();
    a.edit("hh-1", |h| h.address = "Số 9".into());
    a.sync().unwrap();
    let mut elsewhere = Device::enrolled(&server, "officer-e", "02.002.00002");
    elsewhere.store.create_household(&household("hh-9", "02.002.00002", "Trần Văn Hùng", "001070000001")).unwrap();
    elsewhere.sync().unwrap();
    let b = Device::enrolled(&server, "officer-b", AREA);
    let credential = b.store.sync_secret("credential").unwrap().unwrap();
    let a_cursor: u64 = a.store.sync_value("cursor").unwrap().unwrap().parse().unwrap();
    let req = SyncRequest {
        resend: vec!["hh-1".into(), "hh-9".into(), "hh-none".into()],
        ..SyncRequest::new(a_cursor, "x", vec![])
    };
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/v1/sync", server.url))
        .bearer_auth(&credential)
        .body(encode(&req))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let answer: SyncResponse = decode(&resp.bytes().unwrap()).unwrap();
    let ids: Vec<&str> = answer.pull.iter().map(|p| p.doc_id.as_str()).collect();
    assert_eq!(ids, ["hh-1"], "only the device's own area, and only what exists");
    // Whole: it loads alone, with every change.
    let editor = Editor { user: "x".into(), device: "x".into() };
    let mut whole = HouseholdDoc::load("hh-1", &answer.pull[0].changes, &editor).unwrap();
    assert_eq!(whole.read().address, "Số 9");
    assert_eq!(whole.heads(), a.store.open_household("hh-1").unwrap().heads());
    // Too many names in one request is a typed refusal.
    let many = SyncRequest { resend: (0..101).map(|i| format!("hh-{i}")).collect(), ..req };
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/v1/sync", server.url))
        .bearer_auth(&credential)
        .body(encode(&many))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
}

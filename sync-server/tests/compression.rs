//! zstd on the wire: answers compressed for clients that accept it, requests compressed
//! once the server said it takes them, old clients served as before, and bombs refused
//! with typed errors on both sides.

mod common;

use common::{AREA, Device, TestServer, household};
use doorstep_core::sync::Transport;
use doorstep_core::sync::protocol::{ErrorBody, ErrorCode, MAX_BODY_BYTES, SyncRequest, SyncResponse, decode, encode};

fn empty_sync() -> Vec<u8> {
    encode(&SyncRequest::new(0, "x", vec![]))
}

/// A raw `POST /v1/sync` with these extra headers: status, headers, body as received.
fn raw_sync(
    server: &TestServer,
    credential: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = reqwest::blocking::Client::new()
        .post(format!("{}/v1/sync", server.url))
        .bearer_auth(credential)
        .header("content-type", "application/cbor")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().unwrap().to_vec())
}

fn seeded() -> (TestServer, Device, String) {
    let server = TestServer::start();
    let mut a = Device::enrolled(&server, "officer-a", AREA);
    for i in 0..200 {
        a.store
            .create_household(&household(&format!("hh-{i}"), AREA, "Nguyễn Thị Hồng Nhung", "001166012345"))
            .unwrap();
    }
    a.sync().unwrap();
    let b = Device::enrolled(&server, "officer-b", AREA);
    let credential = b.store.sync_secret("credential").unwrap().unwrap();
    (server, b, credential)
}

#[test]
fn an_old_client_is_served_as_before_and_a_new_one_gets_zstd() {
    let (server, _b, credential) = seeded();
    // An old client: no Accept-Encoding, no Content-Encoding. Plain CBOR back.
    let (status, headers, plain) = raw_sync(&server, &credential, empty_sync(), &[]);
    assert_eq!(status, 200);
    assert!(headers.get("content-encoding").is_none());
    let old: SyncResponse = decode(&plain).unwrap();
    assert_eq!(old.pull.len(), 200);
    // Every answer says the server takes zstd requests (RFC 7694).
    assert_eq!(headers.get("accept-encoding").unwrap(), "zstd");
    // A client that accepts zstd gets the same answer compressed.
    let (status, headers, packed) = raw_sync(&server, &credential, empty_sync(), &[("accept-encoding", "zstd")]);
    assert_eq!(status, 200);
    assert_eq!(headers.get("content-encoding").unwrap(), "zstd");
    let unpacked = zstd::stream::decode_all(packed.as_slice()).unwrap();
    let new: SyncResponse = decode(&unpacked).unwrap();
    assert_eq!(new.pull.len(), old.pull.len());
    assert!(packed.len() * 2 < plain.len(), "compressed {} vs plain {}", packed.len(), plain.len());
    // A compressed request is taken.
    let body = zstd::bulk::compress(&empty_sync(), 3).unwrap();
    let (status, _, _) = raw_sync(&server, &credential, body, &[("content-encoding", "zstd")]);
    assert_eq!(status, 200);
}

#[test]
fn a_device_compresses_both_ways_once_the_server_says_it_may() {
    let (server, mut b, _) = seeded();
    let first = b.sync().unwrap();
    assert_eq!(first.pulled, 200);
    assert!(b.transport.server_takes_zstd());
    assert_eq!(b.store.sync_value("request_encoding").unwrap().as_deref(), Some("zstd"));
    // The pull came compressed: what crossed the wire is well under the CBOR it held.
    let cbor_pulled: usize = b.store.list_households(0, 1000).unwrap().len() * 300;
    assert!(first.bytes_received < cbor_pulled, "{} bytes for 200 households", first.bytes_received);
    // Edits go up compressed (a fresh transport: the store remembers the server takes zstd).
    for i in 0..50 {
        b.edit(&format!("hh-{i}"), |h| h.address = format!("Số {i}, Thôn Đông, xã Tân Lập, huyện Yên Lạc"));
    }
    b.transport = doorstep_core::sync::HttpTransport::new(&server.url).unwrap();
    let second = b.sync().unwrap();
    assert_eq!(second.pushed, 50);
    let mut a = Device::enrolled(&server, "officer-c", AREA);
    a.sync().unwrap();
    assert_eq!(a.store.household("hh-7").unwrap().address, "Số 7, Thôn Đông, xã Tân Lập, huyện Yên Lạc");
}

#[test]
fn zstd_bombs_are_refused_with_typed_errors() {
    let (server, b, credential) = seeded();
    let before = server.fingerprint();
    // 64 MiB of one byte, a few KiB compressed: refused once the decompressed body passes 8 MiB.
    let bomb = zstd::bulk::compress(&vec![0xA0u8; 64 * 1024 * 1024], 19).unwrap();
    assert!(bomb.len() < 64 * 1024);
    let (status, _, body) = raw_sync(&server, &credential, bomb, &[("content-encoding", "zstd")]);
    assert_eq!(status, 413);
    assert_eq!(decode::<ErrorBody>(&body).unwrap().code, ErrorCode::TooLarge);
    // A broken stream is malformed.
    let (status, _, body) =
        raw_sync(&server, &credential, vec![0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3], &[("content-encoding", "zstd")]);
    assert_eq!(status, 400);
    assert_eq!(decode::<ErrorBody>(&body).unwrap().code, ErrorCode::Malformed);
    assert_eq!(server.fingerprint(), before, "refusals changed nothing");

    // A hostile server's bomb: the device stops at its limit with a typed error.
    let answer = zstd::bulk::compress(&vec![0u8; MAX_BODY_BYTES + 4096], 19).unwrap();
    let app = axum::Router::new().fallback(move || {
        let answer = answer.clone();
        async move { ([("content-encoding", "zstd"), ("content-type", "application/cbor")], answer) }
    });
    let listener = server.runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    server.runtime.spawn(async move { axum::serve(listener, app).await });
    let hostile = doorstep_core::sync::HttpTransport::new(&url).unwrap();
    let mut store = b.store;
    let got = doorstep_core::sync::sync(&mut store, &hostile, None, &std::sync::atomic::AtomicBool::new(false));
    assert!(matches!(got, Err(doorstep_core::Error::Protocol(_))), "{got:?}");
}

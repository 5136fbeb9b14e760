//! Every bad input gets a typed 4xx, and the server's database does not change.

mod common;

use common::{AREA, Device, TestServer, household};
use doorstep_core::sync::protocol::{
    DocPush, EnrolRequest, ErrorBody, ErrorCode, MAX_BODY_BYTES, PROTOCOL_VERSION, SyncRequest, decode, encode,
};

struct Raw {
    url: String,
    client: reqwest::blocking::Client,
}

impl Raw {
    fn post(&self, path: &str, body: Vec<u8>, credential: Option<&str>) -> (u16, Option<ErrorCode>) {
        let mut req =
            self.client.post(format!("{}{path}", self.url)).header("content-type", "application/cbor").body(body);
        if let Some(c) = credential {
            req = req.bearer_auth(c);
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().unwrap();
        (status, decode::<ErrorBody>(&bytes).ok().map(|b| b.code))
    }
}

/// What is sent, to where, with which credential, and the refusal expected.
type Case<'a> = (&'a str, &'a str, Vec<u8>, Option<&'a str>, u16, ErrorCode);

fn sync_body(push: Vec<DocPush>) -> Vec<u8> {
    encode(&SyncRequest { protocol: PROTOCOL_VERSION, cursor: 0, user: "x".into(), push, transfer_key: None })
}

#[test]
fn refusals_are_typed_and_change_nothing() {
    let server = TestServer::start();
    let mut a = Device::enrolled(&server, "officer-a", AREA);
    a.store.create_household(&household("hh-1", AREA, "Lê Thanh Vân", "080166796635")).unwrap();
    a.sync().unwrap();
    let credential = a.store.sync_secret("credential").unwrap().unwrap();
    let good = a.store.pending_pushes(1).unwrap();
    assert!(good.is_empty());
    let raw = Raw { url: server.url.clone(), client: reqwest::blocking::Client::new() };

    // A valid household document, from another device's store, to build pushes from.
    let mut outside = household("hh-out", "02.002.00002", "Trần Văn Hùng", "001070000001");
    let dir = tempfile::tempdir().unwrap();
    let mut other = doorstep_core::store::Store::open(dir.path().join("x.db")).unwrap();
    other
        .create_profile(
            "x",
            doorstep_core::store::Role::Officer,
            "1234",
            None,
            doorstep_core::crypto::KdfParams::INSECURE_FOR_TESTS,
        )
        .unwrap();
    other.unlock("x", "1234", None).unwrap();
    other.create_household(&outside).unwrap();
    let outside_bytes = other.pending_pushes(1).unwrap().remove(0);
    outside.household_id = "hh-sneaky".into();
    other.create_household(&outside).unwrap();
    let mut inside_area_outside_doc = other.pending_pushes(2).unwrap().remove(1);
    inside_area_outside_doc.area = AREA.into();

    let push =
        |doc_id: &str, area: &str, changes: Vec<u8>| DocPush { doc_id: doc_id.into(), area: area.into(), changes };
    let before = server.fingerprint();
    let revoked_credential = {
        let mut b = Device::enrolled(&server, "officer-b", AREA);
        let c = b.store.sync_secret("credential").unwrap().unwrap();
        b.sync().unwrap();
        assert_eq!(
            server.admin_post(&format!("/v1/admin/devices/{}/revoke", b.store.device_id()), serde_json::json!({})),
            204
        );
        c
    };
    let before_revoked = server.fingerprint();
    assert_ne!(before, before_revoked);
    let reused_token = {
        let code = server.enrolment(AREA);
        let ok = raw.post(
            "/v1/enrol",
            encode(&EnrolRequest { protocol: 1, token: code.token.clone(), device_id: "dev-once".into() }),
            None,
        );
        assert_eq!(ok.0, 200);
        code.token
    };
    let before = server.fingerprint();

    let cases: Vec<Case<'_>> = vec![
        ("garbage body", "/v1/sync", b"\xff\x00garbage".to_vec(), Some(&credential), 400, ErrorCode::Malformed),
        ("empty body", "/v1/sync", vec![], Some(&credential), 400, ErrorCode::Malformed),
        (
            "truncated body",
            "/v1/sync",
            {
                let b = sync_body(vec![push("hh-1", AREA, vec![1, 2, 3])]);
                b[..b.len() - 2].to_vec()
            },
            Some(&credential),
            400,
            ErrorCode::Malformed,
        ),
        (
            "wrong version",
            "/v1/sync",
            encode(&SyncRequest { protocol: 99, cursor: 0, user: "x".into(), push: vec![], transfer_key: None }),
            Some(&credential),
            400,
            ErrorCode::UnsupportedVersion,
        ),
        (
            "invalid automerge bytes, new doc",
            "/v1/sync",
            sync_body(vec![push("hh-new", AREA, b"not automerge".to_vec())]),
            Some(&credential),
            422,
            ErrorCode::InvalidDocument,
        ),
        (
            "invalid automerge bytes, existing doc",
            "/v1/sync",
            sync_body(vec![push("hh-1", AREA, vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3, 4, 5])]),
            Some(&credential),
            422,
            ErrorCode::InvalidDocument,
        ),
        (
            "a document under another id",
            "/v1/sync",
            sync_body(vec![push("hh-2", AREA, outside_bytes.changes.clone())]),
            Some(&credential),
            422,
            ErrorCode::InvalidDocument,
        ),
        ("over the size limit", "/v1/sync", vec![0u8; MAX_BODY_BYTES + 1], Some(&credential), 413, ErrorCode::TooLarge),
        ("missing credential", "/v1/sync", sync_body(vec![]), None, 401, ErrorCode::Unauthorized),
        ("wrong credential", "/v1/sync", sync_body(vec![]), Some("0000"), 401, ErrorCode::Unauthorized),
        ("revoked credential", "/v1/sync", sync_body(vec![]), Some(&revoked_credential), 403, ErrorCode::Revoked),
        (
            "reused enrolment token",
            "/v1/enrol",
            encode(&EnrolRequest { protocol: 1, token: reused_token.clone(), device_id: "dev-twice".into() }),
            None,
            409,
            ErrorCode::TokenUsed,
        ),
        (
            "unknown enrolment token",
            "/v1/enrol",
            encode(&EnrolRequest { protocol: 1, token: "nope".into(), device_id: "dev-x".into() }),
            None,
            409,
            ErrorCode::TokenUsed,
        ),
        (
            "write outside the area",
            "/v1/sync",
            sync_body(vec![push(&outside_bytes.doc_id, "02.002.00002", outside_bytes.changes.clone())]),
            Some(&credential),
            403,
            ErrorCode::ForbiddenArea,
        ),
        (
            "document claiming the area but outside it",
            "/v1/sync",
            sync_body(vec![push(&inside_area_outside_doc.doc_id, AREA, inside_area_outside_doc.changes.clone())]),
            Some(&credential),
            403,
            ErrorCode::ForbiddenArea,
        ),
        (
            "bad document id",
            "/v1/sync",
            sync_body(vec![push("../../etc", AREA, vec![])]),
            Some(&credential),
            400,
            ErrorCode::Malformed,
        ),
    ];
    for (what, path, body, cred, status, code) in cases {
        let (got_status, got_code) = raw.post(path, body, cred);
        assert_eq!((got_status, got_code), (status, Some(code)), "{what}");
        assert_eq!(server.fingerprint(), before, "{what} changed the database");
    }
    // A good push in the same request as a bad one is not applied either: one transaction.
    a.edit("hh-1", |h| h.address = "Số 99".into());
    let mut mixed = a.store.pending_pushes(10).unwrap();
    let good = mixed.remove(0);
    let body = sync_body(vec![
        push(&good.doc_id, &good.area, good.changes.clone()),
        push(&outside_bytes.doc_id, "02.002.00002", outside_bytes.changes.clone()),
    ]);
    assert_eq!(raw.post("/v1/sync", body, Some(&credential)), (403, Some(ErrorCode::ForbiddenArea)));
    assert_eq!(server.fingerprint(), before);
    // And the device still syncs afterwards.
    assert_eq!(a.sync().unwrap().pushed, 1);
}

#[test]
fn replaying_a_request_changes_nothing() {
    let server = TestServer::start();
    let mut a = Device::enrolled(&server, "officer-a", AREA);
    a.store.create_household(&household("hh-1", AREA, "Lê Thanh Vân", "080166796635")).unwrap();
    let credential = a.store.sync_secret("credential").unwrap().unwrap();
    let p = a.store.pending_pushes(1).unwrap().remove(0);
    let body = encode(&SyncRequest {
        protocol: PROTOCOL_VERSION,
        cursor: 0,
        user: "officer-a".into(),
        push: vec![DocPush { doc_id: p.doc_id, area: p.area, changes: p.changes }],
        transfer_key: None,
    });
    let raw = Raw { url: server.url.clone(), client: reqwest::blocking::Client::new() };
    assert_eq!(raw.post("/v1/sync", body.clone(), Some(&credential)).0, 200);
    let once = server.fingerprint();
    for _ in 0..3 {
        assert_eq!(raw.post("/v1/sync", body.clone(), Some(&credential)).0, 200);
        assert_eq!(server.fingerprint(), once);
    }
}

#[test]
fn a_revoked_device_is_refused_and_wipes_itself() {
    let server = TestServer::start();
    let mut a = Device::enrolled(&server, "officer-a", AREA);
    a.store.create_household(&household("hh-1", AREA, "Lê Thanh Vân", "080166796635")).unwrap();
    a.sync().unwrap();
    assert_eq!(
        server.admin_post(&format!("/v1/admin/devices/{}/revoke", a.store.device_id()), serde_json::json!({})),
        204
    );
    assert!(matches!(a.sync(), Err(doorstep_core::Error::Revoked)));
    assert!(a.store.profiles().unwrap().is_empty());
    assert!(matches!(a.store.list_households(0, 10), Err(doorstep_core::Error::Locked)));
    let rows: i64 = a.store.raw_connection().query_row("SELECT COUNT(*) FROM doc_chunk", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 0);
    // Nothing readable is left in the files either.
    for entry in std::fs::read_dir(a.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(12).any(|w| w == b"080166796635"));
    }
}

/// A server on 127.0.0.1 that answers every request 403 `revoked`, with this statement.
fn fake_revoking_server(server: &TestServer, statement: Option<String>) -> String {
    use axum::response::IntoResponse;
    let app = axum::Router::new().fallback(move || {
        let body =
            encode(&ErrorBody { code: ErrorCode::Revoked, message: "wipe".into(), revocation: statement.clone() });
        async move { (axum::http::StatusCode::FORBIDDEN, body).into_response() }
    });
    let listener = server.runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    server.runtime.spawn(async move { axum::serve(listener, app).await });
    url
}

#[test]
fn a_revoked_answer_not_signed_by_the_enrolling_server_wipes_nothing() {
    use doorstep_core::sync::revocation::Revocation;
    let server = TestServer::start();
    let mut a = Device::enrolled(&server, "officer-a", AREA);
    a.store.create_household(&household("hh-1", AREA, "Lê Thanh Vân", "080166796635")).unwrap();
    a.sync().unwrap();
    a.store.create_household(&household("hh-2", AREA, "Lê Thanh Hà", "080166796636")).unwrap();
    let device = a.store.device_id().to_string();
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    for statement in [
        None,
        Some("DREVOKE1.bm90.aGluZw".to_string()),
        Some(Revocation { device_id: device.clone(), revoked_at: 1 }.sign(&stranger)),
    ] {
        let fake = doorstep_core::sync::HttpTransport::new(&fake_revoking_server(&server, statement)).unwrap();
        let got = doorstep_core::sync::sync(&mut a.store, &fake, None, &std::sync::atomic::AtomicBool::new(false));
        assert!(matches!(got, Err(doorstep_core::Error::UnverifiedRevocation(_))), "{got:?}");
        assert_eq!(a.store.list_households(0, 10).unwrap().len(), 2, "both households kept, the unsynced one too");
    }
    // The real server's signed statement revoking another device, replayed: not this one's.
    let mut b = Device::enrolled(&server, "officer-b", AREA);
    let credential = b.store.sync_secret("credential").unwrap().unwrap();
    assert_eq!(
        server.admin_post(&format!("/v1/admin/devices/{}/revoke", b.store.device_id()), serde_json::json!({})),
        204
    );
    let answer = reqwest::blocking::Client::new()
        .post(format!("{}/v1/sync", server.url))
        .bearer_auth(&credential)
        .body(sync_body(vec![]))
        .send()
        .unwrap();
    let statement = decode::<ErrorBody>(&answer.bytes().unwrap()).unwrap().revocation.expect("a signed statement");
    let replay = doorstep_core::sync::HttpTransport::new(&fake_revoking_server(&server, Some(statement))).unwrap();
    let got = doorstep_core::sync::sync(&mut a.store, &replay, None, &std::sync::atomic::AtomicBool::new(false));
    assert!(matches!(got, Err(doorstep_core::Error::UnverifiedRevocation(_))), "{got:?}");
    assert!(matches!(b.sync(), Err(doorstep_core::Error::Revoked)), "its own device wipes on it");
    a.sync().unwrap();
    assert_eq!(a.store.list_households(0, 10).unwrap().len(), 2);
}

#[test]
fn a_device_over_its_request_rate_is_slowed_down() {
    let server = TestServer::start();
    let a = Device::enrolled(&server, "officer-a", AREA);
    let credential = a.store.sync_secret("credential").unwrap().unwrap();
    let raw = Raw { url: server.url.clone(), client: reqwest::blocking::Client::new() };
    let before = server.fingerprint();
    let answers: Vec<(u16, Option<ErrorCode>)> =
        (0..60).map(|_| raw.post("/v1/sync", sync_body(vec![]), Some(&credential))).collect();
    assert!(answers.contains(&(429, Some(ErrorCode::RateLimited))), "{answers:?}");
    assert!(answers.iter().take(20).all(|a| a.0 == 200), "the burst is allowed");
    assert_eq!(server.fingerprint(), before);
}

#[test]
fn an_enrolment_code_past_its_lifetime_is_refused() {
    use doorstep_core::crypto::KdfParams;
    use doorstep_core::store::{Role, Store};
    let server = TestServer::start();
    let enrol = |code: &doorstep_core::sync::protocol::EnrolmentCode| {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path().join("phone.db")).unwrap();
        store.create_profile("officer", Role::Officer, "246810", None, KdfParams::INSECURE_FOR_TESTS).unwrap();
        store.unlock("officer", "246810", None).unwrap();
        let transport = doorstep_core::sync::HttpTransport::new(&code.url).unwrap();
        doorstep_core::sync::enrol(&mut store, &transport, code)
    };
    // Back-dated 400 days, and just past 72 hours: refused as expired, and still unused.
    for age in [400 * 86_400, 72 * 3600 + 60] {
        let code = server.enrolment(AREA);
        common::sql(&server.db, &format!("UPDATE enrolment SET created_at = created_at - {age} WHERE used_at IS NULL"));
        let before = server.fingerprint();
        match enrol(&code) {
            Err(doorstep_core::Error::Server { status: 410, code, .. }) => assert_eq!(code, "token_expired"),
            other => panic!("an expired code enrolled: {other:?}"),
        }
        assert_eq!(server.fingerprint(), before, "the refusal changed nothing");
        common::sql(&server.db, "DELETE FROM enrolment WHERE used_at IS NULL");
    }
    // Within its lifetime it works, once.
    let code = server.enrolment(AREA);
    common::sql(
        &server.db,
        &format!("UPDATE enrolment SET created_at = created_at - {} WHERE used_at IS NULL", 71 * 3600),
    );
    assert_eq!(enrol(&code).unwrap(), vec![AREA.to_string()]);
    assert!(matches!(enrol(&code), Err(doorstep_core::Error::Server { status: 409, .. })));
}

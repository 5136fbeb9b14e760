//! Every bad input gets a typed refusal, and the server's database does not change: a 4xx for
//! a bad request, a per-document refusal in a 200 answer for one bad household.

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
        if status == 200 && path == "/v1/sync" {
            // A request taken whole but for refused documents: the first refusal's code.
            let answer: doorstep_core::sync::protocol::SyncResponse = decode(&bytes).unwrap();
            return (status, answer.refused.first().map(|r| r.code));
        }
        (status, decode::<ErrorBody>(&bytes).ok().map(|b| b.code))
    }
}

/// What is sent, to where, with which credential, and the refusal expected.
type Case<'a> = (&'a str, &'a str, Vec<u8>, Option<&'a str>, u16, ErrorCode);

fn sync_body(push: Vec<DocPush>) -> Vec<u8> {
    encode(&SyncRequest::new(0, "x", push))
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
            encode(&SyncRequest { protocol: 99, ..SyncRequest::new(0, "x", vec![]) }),
            Some(&credential),
            400,
            ErrorCode::UnsupportedVersion,
        ),
        (
            "invalid automerge bytes, new doc",
            "/v1/sync",
            sync_body(vec![push("hh-new", AREA, b"not automerge".to_vec())]),
            Some(&credential),
            200,
            ErrorCode::InvalidDocument,
        ),
        (
            "invalid automerge bytes, existing doc",
            "/v1/sync",
            sync_body(vec![push("hh-1", AREA, vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3, 4, 5])]),
            Some(&credential),
            200,
            ErrorCode::InvalidDocument,
        ),
        (
            "a document under another id",
            "/v1/sync",
            sync_body(vec![push("hh-2", AREA, outside_bytes.changes.clone())]),
            Some(&credential),
            200,
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
            200,
            ErrorCode::ForbiddenArea,
        ),
        (
            "document claiming the area but outside it",
            "/v1/sync",
            sync_body(vec![push(&inside_area_outside_doc.doc_id, AREA, inside_area_outside_doc.changes.clone())]),
            Some(&credential),
            200,
            ErrorCode::ForbiddenArea,
        ),
        (
            "bad document id",
            "/v1/sync",
            sync_body(vec![push("../../etc", AREA, vec![])]),
            Some(&credential),
            200,
            ErrorCode::Malformed,
        ),
    ];
    for (what, path, body, cred, status, code) in cases {
        let (got_status, got_code) = raw.post(path, body, cred);
        assert_eq!((got_status, got_code), (status, Some(code)), "{what}");
        assert_eq!(server.fingerprint(), before, "{what} changed the database");
    }
    // A good push in the same request as a bad one is taken; the bad one is refused alone.
    a.edit("hh-1", |h| h.address = "Số 99".into());
    let mut mixed = a.store.pending_pushes(10).unwrap();
    let good = mixed.remove(0);
    let body = sync_body(vec![
        push(&good.doc_id, &good.area, good.changes.clone()),
        push(&outside_bytes.doc_id, "02.002.00002", outside_bytes.changes.clone()),
    ]);
    assert_eq!(raw.post("/v1/sync", body, Some(&credential)), (200, Some(ErrorCode::ForbiddenArea)));
    assert_ne!(server.fingerprint(), before);
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
        snapshot: None,
        resend: vec![],
        transfers: vec![],
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

#[test]
fn one_bad_household_is_refused_alone_and_the_rest_of_the_request_is_stored() {
    use automerge::ReadDoc;
    use automerge::transaction::Transactable;
    use doorstep_core::record::{Editor, HouseholdDoc};
    let server = TestServer::start();
    let mut a = Device::enrolled(&server, "officer-a", AREA);
    for id in ["hh-1", "hh-2"] {
        a.store.create_household(&household(id, AREA, "Lê Thanh Vân", "080166796635")).unwrap();
    }
    a.sync().unwrap();
    let editor = Editor { user: "officer-a".into(), device: a.store.device_id().into() };
    // hh-1: a change that rewrites its household_id; hh-2: a good edit; hh-3: a new household.
    let saved = a.store.open_household("hh-1").unwrap().save();
    let mut raw = automerge::AutoCommit::load(&saved).unwrap();
    let before = raw.get_heads();
    raw.put(automerge::ROOT, "household_id", "hh-9").unwrap();
    let rewrite = raw.save_after(&before);
    assert_eq!(raw.get(automerge::ROOT, "household_id").unwrap().unwrap().0.as_str(), Some("hh-9"));
    let mut good = a.store.open_household("hh-2").unwrap();
    let heads = good.heads();
    let mut h = good.read();
    h.address = "Số 2, Thôn Tây".into();
    good.update(&h, &editor).unwrap();
    let edit = good.save_after(&heads);
    let fresh = HouseholdDoc::create(&household("hh-3", AREA, "Lê Văn Tám", "080166796637"), &editor).unwrap().save();
    let push = |id: &str, changes: Vec<u8>| DocPush { doc_id: id.into(), area: AREA.into(), changes };
    let credential = a.store.sync_secret("credential").unwrap().unwrap();
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/v1/sync", server.url))
        .bearer_auth(&credential)
        .body(sync_body(vec![push("hh-1", rewrite), push("hh-2", edit), push("hh-3", fresh)]))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let answer: doorstep_core::sync::protocol::SyncResponse = decode(&resp.bytes().unwrap()).unwrap();
    assert_eq!(answer.refused.len(), 1, "{:?}", answer.refused);
    assert_eq!((answer.refused[0].doc_id.as_str(), answer.refused[0].code), ("hh-1", ErrorCode::ImmutableField));
    let acked: Vec<&str> = answer.acked.iter().map(|a| a.doc_id.as_str()).collect();
    assert_eq!(acked, ["hh-2", "hh-3"]);
    // The others are stored and reach another device; hh-1 is as it was.
    let mut b = Device::enrolled(&server, "officer-b", AREA);
    b.sync().unwrap();
    assert_eq!(b.store.household("hh-2").unwrap().address, "Số 2, Thôn Tây");
    assert!(b.store.household("hh-3").is_ok());
    assert_eq!(b.store.household("hh-1").unwrap().household_id, "hh-1");
}

#[test]
fn a_phone_keeps_a_refused_household_and_syncs_the_rest() {
    let server = TestServer::start();
    // Another commune already holds a household under this id.
    let mut elsewhere = Device::enrolled(&server, "officer-b", "02.002.00002");
    elsewhere.store.create_household(&household("hh-1", "02.002.00002", "Trần Văn Hùng", "001070000001")).unwrap();
    elsewhere.sync().unwrap();
    let mut a = Device::enrolled(&server, "officer-a", AREA);
    a.store.create_household(&household("hh-1", AREA, "Lê Thanh Vân", "080166796635")).unwrap();
    a.store.create_household(&household("hh-2", AREA, "Lê Văn Tám", "080166796637")).unwrap();
    let report = a.sync().unwrap();
    assert_eq!(report.pushed, 1, "{report:?}");
    assert_eq!(report.refused.len(), 1);
    assert_eq!((report.refused[0].doc_id.as_str(), report.refused[0].code), ("hh-1", ErrorCode::ForbiddenArea));
    // hh-1 is kept, unsynced, on the phone; hh-2 reached the server.
    assert_eq!(a.store.household("hh-1").unwrap().area_code, AREA);
    let pending: Vec<String> = a.store.pending_pushes(10).unwrap().into_iter().map(|p| p.doc_id).collect();
    assert_eq!(pending, ["hh-1"]);
    let mut b = Device::enrolled(&server, "officer-c", AREA);
    b.sync().unwrap();
    assert!(b.store.household("hh-2").is_ok());
    assert!(b.store.household("hh-1").is_err());
    // The next sync offers it again, once, and is refused again without looping.
    let again = a.sync().unwrap();
    assert_eq!((again.pushed, again.refused.len(), again.round_trips), (0, 1, 1));
}

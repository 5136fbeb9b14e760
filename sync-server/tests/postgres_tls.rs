//! PostgreSQL over TLS: the store connects as the URL's `sslmode` says, verifies the
//! server's certificate against `sslrootcert`, and a `sslmode=require` URL against a
//! server that offers no TLS is refused at start with a message that says so.

mod common;

use std::io::{Read, Write};

use common::{AREA, Device, TestServer, household};

/// The test CA's certificate that scripts/postgres.sh made (absent outside its runs).
fn test_ca() -> Option<std::path::PathBuf> {
    let dir = std::env::var("DOORSTEP_PG_TLS_DIR").unwrap_or_else(|_| "/var/lib/postgresql/doorstep-tls".into());
    let ca = std::path::Path::new(&dir).join("ca.crt");
    ca.exists().then_some(ca)
}

#[test]
fn a_tls_url_against_a_server_without_tls_fails_clearly() {
    // A PostgreSQL that offers no TLS answers the client's SSLRequest with a single 'N'.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fake = std::thread::spawn(move || {
        for _ in 0..4 {
            let Ok((mut conn, _)) = listener.accept() else { return };
            let mut request = [0u8; 8];
            if conn.read_exact(&mut request).is_ok() {
                assert_eq!(request[4..], [0x04, 0xd2, 0x16, 0x2f], "an SSLRequest comes first");
                let _ = conn.write_all(b"N");
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("server.key");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = format!("postgres://doorstep:secret@127.0.0.1:{port}/doorstep?sslmode=require");
    let err = common::try_open_storage(&runtime, &url, Some(&key)).err().expect("refused");
    assert!(err.message.contains("cannot connect to the database"), "{}", err.message);
    assert!(err.message.contains("TLS"), "the message names TLS: {}", err.message);
    assert!(!err.message.contains("secret"), "the password is not echoed: {}", err.message);
    drop(fake);
}

#[test]
fn the_store_syncs_over_verified_tls() {
    if !common::using_postgres() {
        eprintln!("not run in the SQLite pass: needs DOORSTEP_TEST_POSTGRES_URL (scripts/postgres.sh prints it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = common::fresh_db(dir.path());
    let tls_db = match test_ca() {
        Some(ca) => format!("{db}?sslmode=verify-full&sslrootcert={}", ca.display()),
        None => format!("{db}?sslmode=require"),
    };
    let key = common::key_file(&db).unwrap();
    let server = TestServer::start_on_db(&tls_db);
    let mut a = Device::enrolled(&server, "officer-a", AREA);
    let mut b = Device::enrolled(&server, "officer-b", AREA);
    a.store.create_household(&household("hh-tls", AREA, "Lò Văn Sáng", "014090001234")).unwrap();
    a.sync().unwrap();
    b.sync().unwrap();
    assert!(b.store.household("hh-tls").is_ok(), "the household crossed a TLS-only store");

    // Every connection the server holds to its database is encrypted.
    let name = db.rsplit('/').next().unwrap();
    let admin = std::env::var("DOORSTEP_TEST_POSTGRES_URL").unwrap();
    let mut client = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
    let rows = client
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid WHERE a.datname = $1",
            &[&name],
        )
        .unwrap();
    assert!(!rows.is_empty(), "the server holds connections");
    assert!(rows.iter().all(|r| r.get::<_, bool>(0)), "every connection is TLS");

    // A certificate from another CA is refused when the URL asks to verify it.
    if test_ca().is_some() {
        let other = dir.path().join("other-ca.crt");
        std::fs::write(&other, OTHER_CA).unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let url = format!("{db}?sslmode=verify-full&sslrootcert={}", other.display());
        let err = common::try_open_storage(&runtime, &url, Some(&key)).err().expect("an unknown CA is refused");
        assert!(err.message.contains("cannot connect to the database"), "{}", err.message);
    }
}

/// A self-signed CA that signed nothing this test meets.
const OTHER_CA: &str = include_str!("data/other-ca.crt");

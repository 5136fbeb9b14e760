//! A real server on 127.0.0.1 with an ephemeral port, and devices that talk to it.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use doorstep_core::crypto::KdfParams;
use doorstep_core::record::{Household, Member};
use doorstep_core::store::{Role, Store};
use doorstep_core::sync::protocol::EnrolmentCode;
use doorstep_core::sync::{HttpTransport, SyncReport};
use doorstep_sync_server::state::{AppState, create_enrolment};
use doorstep_sync_server::storage::Storage;

pub const ADMIN: &str = "admin-token-for-tests";
pub const AREA: &str = "01.001.00001";

pub struct TestServer {
    pub url: String,
    pub storage: Arc<dyn Storage>,
    /// The same store, for what only the store itself offers (its transactions).
    pub store: Arc<doorstep_sync_server::store::Store>,
    pub runtime: tokio::runtime::Runtime,
    /// The `--db` value of its store.
    pub db: String,
    _dir: tempfile::TempDir,
}

/// The backend under test: a fresh PostgreSQL database when DOORSTEP_TEST_POSTGRES_URL
/// names an admin URL (the conformance run), else a SQLite file in `dir`.
/// Returns the `--db` value for it.
pub fn fresh_db(dir: &Path) -> String {
    match std::env::var("DOORSTEP_TEST_POSTGRES_URL") {
        Ok(admin) => {
            let mut client = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
            static SWEEP: std::sync::Once = std::sync::Once::new();
            SWEEP.call_once(|| drop_finished_test_databases(&mut client));
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).unwrap();
            let name = format!("doorstep_test_{}_{}", std::process::id(), hex::encode(bytes));
            client.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
            let base = admin.rsplit_once('/').unwrap().0;
            format!("{base}/{name}")
        }
        Err(_) => dir.join("server.db").to_str().unwrap().to_string(),
    }
}

/// Drops the test databases of test processes that have ended (a test's database lives as
/// long as its process: tests hand it to servers they do not stop one by one). A database's
/// name carries the id of the process that made it; one whose process is gone, or of an older
/// name without an id, goes, with its key file.
fn drop_finished_test_databases(client: &mut postgres::Client) {
    // Which processes run is read from /proc: without it, nothing is known to have ended.
    if !Path::new("/proc/self").exists() {
        return;
    }
    let rows = client
        .query("SELECT datname FROM pg_database WHERE starts_with(datname, 'doorstep_test_')", &[])
        .unwrap_or_default();
    for row in rows {
        let name: String = row.get(0);
        let pid = name.trim_start_matches("doorstep_test_").split('_').next().and_then(|p| p.parse::<u32>().ok());
        let running = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        let ours = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !running && ours && client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).is_ok() {
            let _ = std::fs::remove_file(std::env::temp_dir().join(format!("{name}.key")));
        }
    }
}

/// The server key file for a `--db` value: beside the SQLite file by default (None),
/// one file per PostgreSQL test database (every node of a test shares it).
pub fn key_file(db: &str) -> Option<std::path::PathBuf> {
    // The database name, without the URL's options (sslmode, sslrootcert).
    let name = db.split('?').next().unwrap().rsplit('/').next().unwrap();
    db.starts_with("postgres").then(|| std::env::temp_dir().join(format!("{name}.key")))
}

/// Opens the store a test's server uses, with its key, on `runtime`.
pub fn open_storage_on(runtime: &tokio::runtime::Runtime, db: &str) -> Arc<dyn Storage> {
    open_store_on(runtime, db)
}

/// Opens the store itself, as the server does.
pub fn open_store_on(runtime: &tokio::runtime::Runtime, db: &str) -> Arc<doorstep_sync_server::store::Store> {
    try_open_store(runtime, db, key_file(db).as_deref()).unwrap()
}

/// Opens a store with this key file, or says why not.
pub fn try_open_storage(
    runtime: &tokio::runtime::Runtime,
    db: &str,
    key: Option<&Path>,
) -> Result<Arc<dyn Storage>, doorstep_sync_server::store::StorageError> {
    try_open_store(runtime, db, key).map(|s| s as Arc<dyn Storage>)
}

/// Opens the store itself with this key file, or says why not.
fn try_open_store(
    runtime: &tokio::runtime::Runtime,
    db: &str,
    key: Option<&Path>,
) -> Result<Arc<doorstep_sync_server::store::Store>, doorstep_sync_server::store::StorageError> {
    let now = chrono::Utc::now().timestamp();
    runtime.block_on(doorstep_sync_server::open_storage(db, key, Default::default(), now))
}

/// Opens the store a test's server uses, with its key, and a runtime to drive it.
pub fn open_storage(db: &str) -> (tokio::runtime::Runtime, Arc<dyn Storage>) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let storage = open_storage_on(&runtime, db);
    (runtime, storage)
}

/// Runs SQL statements on a store from outside the server (to age, corrupt or inspect it).
pub fn sql(db: &str, statements: &str) {
    if db.starts_with("postgres") {
        let mut client = postgres::Client::connect(db, postgres::NoTls).unwrap();
        client.batch_execute(statements).unwrap();
    } else {
        rusqlite::Connection::open(db).unwrap().execute_batch(statements).unwrap();
    }
}

/// A checksum of what a store holds, read from outside the server, for tests that
/// prove a refusal changed nothing.
pub fn fingerprint(db: &str) -> String {
    const TABLES: &[(&str, &str)] = &[
        ("enrolment", "token_hash, area, used_at, device_id"),
        ("device", "device_id, area, revoked_at"),
        ("doc", "doc_id, area, heads"),
        ("feed", "seq, doc_id, origin, changes"),
        ("conflict", "id, doc_id, path, status"),
        ("duplicate", "id, doc_a, member_a, doc_b, member_b, status"),
        ("audit", "id, device_id, doc_id, heads"),
        ("duplicate_decision", "id, duplicate_id, action"),
        ("resident_link", "duplicate_id, doc_a, member_a, doc_b, member_b, undone_at"),
        ("blob", "id, device_id, total, received"),
        ("blob_chunk", "id, start_at, data"),
        ("device_key", "device_id, transfer_key"),
        ("import_base", "doc_id, heads"),
        ("export_token", "id, area, revoked_at"),
    ];
    let mut h = blake3::Hasher::new();
    if db.starts_with("postgres") {
        let mut client = postgres::Client::connect(db, postgres::NoTls).unwrap();
        for (table, cols) in TABLES {
            // Every column as text (bytea as hex), so one reader fits all.
            let cols: Vec<String> = cols.split(", ").map(|c| format!("{c}::TEXT")).collect();
            for row in client.query(&format!("SELECT {} FROM {table} ORDER BY 1", cols.join(", ")), &[]).unwrap() {
                for i in 0..row.len() {
                    h.update(format!("{:?}|", row.get::<_, Option<String>>(i)).as_bytes());
                }
            }
        }
    } else {
        let conn = rusqlite::Connection::open(db).unwrap();
        for (table, cols) in TABLES {
            let mut stmt = conn.prepare(&format!("SELECT {cols} FROM {table} ORDER BY 1")).unwrap();
            let n = stmt.column_count();
            let mut rows = stmt.query([]).unwrap();
            while let Some(row) = rows.next().unwrap() {
                for i in 0..n {
                    let v: rusqlite::types::Value = row.get(i).unwrap();
                    h.update(format!("{v:?}|").as_bytes());
                }
            }
        }
    }
    h.finalize().to_hex().to_string()
}

pub fn using_postgres() -> bool {
    std::env::var("DOORSTEP_TEST_POSTGRES_URL").is_ok()
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::start_with_quota(doorstep_sync_server::state::DEFAULT_ATTACHMENT_QUOTA)
    }

    /// A server whose devices may each store `quota` bytes of attachments.
    pub fn start_with_quota(quota: u64) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let db = fresh_db(dir.path());
        Self::serve(&db, quota, dir)
    }

    /// A server on a store the test names (and reads afterwards).
    pub fn start_on_db(db: &str) -> TestServer {
        Self::serve(db, doorstep_sync_server::state::DEFAULT_ATTACHMENT_QUOTA, tempfile::tempdir().unwrap())
    }

    fn serve(db: &str, quota: u64, dir: tempfile::TempDir) -> TestServer {
        Self::serve_with(db, dir, move |state| state.attachment_quota = quota)
    }

    /// A server on a fresh store whose state the test adjusts.
    pub fn start_with(adjust: impl FnOnce(&mut AppState) + Send + 'static) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let db = fresh_db(dir.path());
        Self::serve_with(&db, dir, adjust)
    }

    fn serve_with(db: &str, dir: tempfile::TempDir, adjust: impl FnOnce(&mut AppState) + Send + 'static) -> TestServer {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let store = open_store_on(&runtime, db);
        let storage: Arc<dyn Storage> = store.clone();
        let s = storage.clone();
        let addr = runtime
            .block_on(doorstep_sync_server::spawn("127.0.0.1:0".parse().unwrap(), move |addr| {
                let mut state = AppState::new(s, format!("http://{addr}"), ADMIN.into());
                adjust(&mut state);
                state
            }))
            .unwrap();
        TestServer { url: format!("http://{addr}"), storage, store, runtime, db: db.to_string(), _dir: dir }
    }

    /// A handle on an existing database served by another process at `url` (for enrolments and fingerprints).
    pub fn start_on(db: &str, url: &str) -> TestServer {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let store = open_store_on(&runtime, db);
        let storage: Arc<dyn Storage> = store.clone();
        TestServer {
            url: url.to_string(),
            storage,
            store,
            runtime,
            db: db.to_string(),
            _dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn enrolment(&self, area: &str) -> EnrolmentCode {
        let state = AppState::new(self.storage.clone(), self.url.clone(), String::new());
        self.runtime.block_on(create_enrolment(&state, area)).unwrap()
    }

    /// A checksum of what its store holds ([`fingerprint`]).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.db)
    }

    pub fn admin_get(&self, path: &str) -> serde_json::Value {
        reqwest::blocking::Client::new()
            .get(format!("{}{path}", self.url))
            .bearer_auth(ADMIN)
            .send()
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .unwrap()
    }

    pub fn admin_post(&self, path: &str, body: serde_json::Value) -> reqwest::StatusCode {
        reqwest::blocking::Client::new()
            .post(format!("{}{path}", self.url))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .unwrap()
            .status()
    }
}

pub struct Device {
    pub store: Store,
    pub transport: HttpTransport,
    _dir: tempfile::TempDir,
}

impl Device {
    pub fn enrolled(server: &TestServer, user: &str, area: &str) -> Device {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path().join("phone.db")).unwrap();
        store.create_profile(user, Role::Officer, "246810", None, KdfParams::INSECURE_FOR_TESTS).unwrap();
        store.unlock(user, "246810", None).unwrap();
        // The operator's QR code, as a PNG, read back the way a phone's camera would.
        let png = doorstep_core::qr::encode_png(&server.enrolment(area).to_qr_text(), 4).unwrap();
        let code = EnrolmentCode::from_image(&png).unwrap();
        let transport = HttpTransport::new(&code.url).unwrap();
        doorstep_core::sync::enrol(&mut store, &transport, &code).unwrap();
        Device { store, transport, _dir: dir }
    }

    pub fn path(&self) -> &Path {
        self._dir.path()
    }

    pub fn sync(&mut self) -> doorstep_core::Result<SyncReport> {
        doorstep_core::sync::sync(&mut self.store, &self.transport, None, &AtomicBool::new(false))
    }

    pub fn sync_attachments(&mut self) -> doorstep_core::Result<doorstep_core::sync::AttachmentReport> {
        doorstep_core::sync::sync_attachments(&self.store, &self.transport, &AtomicBool::new(false))
    }

    pub fn edit(&mut self, id: &str, f: impl FnOnce(&mut Household)) {
        let mut doc = self.store.open_household(id).unwrap();
        let mut h = doc.read();
        f(&mut h);
        doc.update(&h, &self.store.editor().unwrap()).unwrap();
        self.store.save_household(&mut doc).unwrap();
    }
}

pub fn household(id: &str, area: &str, name: &str, cccd: &str) -> Household {
    Household {
        household_id: id.into(),
        area_code: area.into(),
        address: "Số 1, Thôn Đông, xã Tân Lập".into(),
        head_member_id: Some("m0".into()),
        members: vec![Member {
            member_id: "m0".into(),
            full_name: name.into(),
            dob: Some("1966-01-01".into()),
            sex: Some("F".into()),
            cccd: Some(cccd.into()),
            relation: Some("head".into()),
            residence_status: Some("permanent".into()),
            ..Member::default()
        }],
        ..Household::default()
    }
}

/// Starts `doorstep-sync-server serve` as a child process on an ephemeral port; returns it and its address.
pub fn spawn_server(db: &str) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_doorstep-sync-server"));
    if let Some(key) = key_file(db) {
        command.arg("--key-file").arg(key);
    }
    let mut child = command
        .args(["--db", db, "serve", "--listen", "127.0.0.1:0", "--insecure-http", "--admin-token", ADMIN])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.split_whitespace().find(|w| w.starts_with("127.0.0.1:")).unwrap().to_string();
    (child, addr)
}

/// Dates some years back (birthdays of residents turning 14).
pub trait MinusYears {
    fn with_year_minus(self, years: i32) -> chrono::NaiveDate;
}

impl MinusYears for chrono::NaiveDate {
    fn with_year_minus(self, years: i32) -> chrono::NaiveDate {
        self.checked_sub_months(chrono::Months::new(12 * years as u32)).unwrap()
    }
}

/// Rows of a query (its columns named apart), each column as text, read from outside the server.
pub fn rows_as_text(db: &str, query: &str) -> Vec<Vec<String>> {
    if db.starts_with("postgres") {
        let mut client = postgres::Client::connect(db, postgres::NoTls).unwrap();
        let wrapped = format!("SELECT * FROM ({query}) AS q");
        let stmt = client.prepare(&wrapped).unwrap();
        let cols: Vec<String> = stmt.columns().iter().map(|c| format!("q.\"{}\"::TEXT", c.name())).collect();
        let text = format!("SELECT {} FROM ({query}) AS q", cols.join(", "));
        client
            .query(&text, &[])
            .unwrap()
            .iter()
            .map(|r| (0..r.len()).map(|i| r.get::<_, Option<String>>(i).unwrap_or_default()).collect())
            .collect()
    } else {
        let conn = rusqlite::Connection::open(db).unwrap();
        let mut stmt = conn.prepare(query).unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        let mut out = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            out.push(
                (0..n)
                    .map(|i| match row.get::<_, rusqlite::types::Value>(i).unwrap() {
                        rusqlite::types::Value::Integer(v) => v.to_string(),
                        rusqlite::types::Value::Text(t) => t,
                        other => format!("{other:?}"),
                    })
                    .collect(),
            );
        }
        out
    }
}

/// Asserts that the progress sums the store keeps per area (and per day first seen) equal a
/// recount of its households' figures.
pub fn assert_progress_rollup(db: &str) {
    let recount = rows_as_text(
        db,
        "SELECT area, count(*) AS a, sum(members) AS b, sum(complete) AS c, sum(cccd_present) AS d,
             sum(cccd_valid) AS e, sum(verified) AS f, sum(verified_residents) AS g,
             sum(CASE WHEN review = 'waiting' THEN 1 ELSE 0 END) AS h,
             sum(CASE WHEN review = 'returned' THEN 1 ELSE 0 END) AS i,
             sum(CASE WHEN review = 'approved' THEN 1 ELSE 0 END) AS j
         FROM household_stats GROUP BY area ORDER BY area",
    );
    let kept = rows_as_text(
        db,
        "SELECT area, households, residents, complete, cccd_present, cccd_valid, verified, verified_residents,
             review_waiting, review_returned, review_approved FROM area_progress WHERE households <> 0 ORDER BY area",
    );
    assert_eq!(kept, recount, "progress sums per area");
    let recount = rows_as_text(
        db,
        "SELECT area, first_seen_at - ((first_seen_at + 25200) % 86400) AS day, count(*) AS n FROM household_stats
         GROUP BY area, first_seen_at - ((first_seen_at + 25200) % 86400) ORDER BY 1, 2",
    );
    let kept = rows_as_text(db, "SELECT area, day, households FROM area_new WHERE households <> 0 ORDER BY 1, 2");
    assert_eq!(kept, recount, "households first seen per area and day");
}

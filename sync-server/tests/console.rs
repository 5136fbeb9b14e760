//! The operator console over HTTP, as a browser would use it: login, sessions,
//! CSRF, roles, escaping, and review actions that devices receive at their next sync.

mod common;

use std::collections::HashMap;

use common::{AREA, Device, MinusYears, TestServer, household};
use doorstep_sync_server::console::hash_password;
use doorstep_sync_server::storage::{Operator, Role};
use reqwest::StatusCode;
use reqwest::blocking::Client;

const PASSWORD: &str = "password-for-tests";

fn add_account(server: &TestServer, username: &str, role: Role) {
    add_scoped_account(server, username, role, "");
}

/// An account that works on `area` and its sub-areas only.
fn add_scoped_account(server: &TestServer, username: &str, role: Role, area: &str) {
    let op = Operator {
        username: username.into(),
        password_hash: hash_password(PASSWORD).unwrap(),
        role,
        area: area.into(),
        created_at: 0,
    };
    server.runtime.block_on(server.storage.put_operator(op)).unwrap();
}

/// The value of `name="csrf"` in a page.
fn csrf_in(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    Some(html[at..].split('"').next()?.to_string())
}

fn set_cookie(resp: &reqwest::blocking::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// A logged-in browser, without a browser.
struct Console {
    url: String,
    http: Client,
    cookie: String,
    csrf: String,
}

struct Answer {
    status: StatusCode,
    location: String,
    body: String,
}

impl Console {
    fn http() -> Client {
        Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
    }

    fn login(server: &TestServer, username: &str) -> Console {
        let http = Self::http();
        let form = http.get(format!("{}/console/login", server.url)).send().unwrap();
        let login_cookie = set_cookie(&form, "doorstep_login").unwrap();
        let token = csrf_in(&form.text().unwrap()).unwrap();
        let resp = http
            .post(format!("{}/console/login", server.url))
            .header("cookie", login_cookie.split(';').next().unwrap())
            .form(&[("username", username), ("password", PASSWORD), ("csrf", &token), ("next", "/console/progress")])
            .send()
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let session = set_cookie(&resp, "doorstep_session").expect("a session cookie");
        for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/console"] {
            assert!(session.contains(attribute), "{session}");
        }
        let cookie = session.split(';').next().unwrap().to_string();
        let page = http.get(format!("{}/console/progress", server.url)).header("cookie", &cookie).send().unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let csrf = csrf_in(&page.text().unwrap()).unwrap();
        Console { url: server.url.clone(), http, cookie, csrf }
    }

    fn answer(resp: reqwest::blocking::Response) -> Answer {
        let status = resp.status();
        let location = resp.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or("").to_string();
        Answer { status, location, body: resp.text().unwrap() }
    }

    fn get(&self, path: &str) -> Answer {
        Self::answer(self.get_raw(path))
    }

    /// The response itself (for bytes and headers), with this session's cookie.
    fn get_raw(&self, path: &str) -> reqwest::blocking::Response {
        self.http.get(format!("{}{path}", self.url)).header("cookie", &self.cookie).send().unwrap()
    }

    /// Posts a form with this session's CSRF token.
    fn post(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        all.push(("csrf", &self.csrf));
        self.post_raw(path, &all)
    }

    /// Posts exactly these fields.
    fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        Self::answer(
            self.http.post(format!("{}{path}", self.url)).header("cookie", &self.cookie).form(fields).send().unwrap(),
        )
    }
}

#[test]
fn pages_need_a_session_and_forms_need_the_csrf_token() {
    let server = TestServer::start();
    add_account(&server, "admin", Role::Admin);
    let anonymous = Console::http();
    for path in ["/console/progress", "/console/conflicts?area=01", "/console/devices", "/console/progress.csv"] {
        let resp = anonymous.get(format!("{}{path}", server.url)).send().unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{path}");
        assert!(resp.headers()["location"].to_str().unwrap().starts_with("/console/login?next=%2Fconsole%2F"));
    }
    let resp = anonymous.post(format!("{}/console/devices/enrol", server.url)).form(&[("area", AREA)]).send().unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);

    // A login form posted without its cookie (a cross-site login) is refused.
    let resp = anonymous
        .post(format!("{}/console/login", server.url))
        .form(&[("username", "admin"), ("password", PASSWORD), ("csrf", "guess")])
        .send()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    let console = Console::login(&server, "admin");
    let before = server.fingerprint();
    assert_eq!(console.post_raw("/console/devices/enrol", &[("area", AREA)]).status, StatusCode::FORBIDDEN);
    assert_eq!(
        console.post_raw("/console/devices/enrol", &[("area", AREA), ("csrf", "0000")]).status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(console.post_raw("/console/logout", &[]).status, StatusCode::FORBIDDEN);
    assert_eq!(server.fingerprint(), before, "a refused form changed nothing");
    let ok = console.post("/console/devices/enrol", &[("area", AREA)]);
    assert_eq!(ok.status, StatusCode::OK);
    assert!(ok.body.contains("data:image/png;base64,"));

    // Every page forbids scripts and framing, and is not cached.
    let resp =
        console.http.get(format!("{}/console/progress", server.url)).header("cookie", &console.cookie).send().unwrap();
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(resp.headers()["cache-control"], "no-store");

    // Logging out ends the session on the server, not just in the browser.
    assert_eq!(console.post("/console/logout", &[]).status, StatusCode::SEE_OTHER);
    assert_eq!(console.get("/console/progress").status, StatusCode::SEE_OTHER);

    // A wrong password gets the login page again, and no session.
    let form = anonymous.get(format!("{}/console/login", server.url)).send().unwrap();
    let login_cookie = set_cookie(&form, "doorstep_login").unwrap();
    let token = csrf_in(&form.text().unwrap()).unwrap();
    let resp = anonymous
        .post(format!("{}/console/login", server.url))
        .header("cookie", login_cookie.split(';').next().unwrap())
        .form(&[("username", "admin"), ("password", "wrong password"), ("csrf", &token)])
        .send()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(resp.headers()["location"].to_str().unwrap().contains("failed=1"));
    assert!(set_cookie(&resp, "doorstep_session").is_none());
}

#[test]
fn an_operator_cannot_do_what_only_an_admin_may() {
    let server = TestServer::start();
    add_account(&server, "admin", Role::Admin);
    add_account(&server, "clerk", Role::Operator);
    let phone = Device::enrolled(&server, "officer-a", AREA);
    let device_id = phone.store.device_id().to_string();
    let clerk = Console::login(&server, "clerk");
    let before = server.fingerprint();
    assert_eq!(clerk.get("/console/operators").status, StatusCode::FORBIDDEN);
    assert_eq!(clerk.post("/console/devices/enrol", &[("area", AREA)]).status, StatusCode::FORBIDDEN);
    let confirmed = [("confirm", "yes")];
    assert_eq!(clerk.post(&format!("/console/devices/{device_id}/revoke"), &confirmed).status, StatusCode::FORBIDDEN);
    let new_account = [("username", "mallory"), ("password", "long enough password"), ("role", "admin")];
    assert_eq!(clerk.post("/console/operators", &new_account).status, StatusCode::FORBIDDEN);
    assert_eq!(server.fingerprint(), before);
    assert!(server.runtime.block_on(server.storage.operator("mallory".into())).unwrap().is_none());
    // The operator sees devices, without the admin's buttons.
    let devices = clerk.get("/console/devices");
    assert_eq!(devices.status, StatusCode::OK);
    assert!(devices.body.contains(&device_id) && !devices.body.contains("/revoke"));

    // The admin may.
    let admin = Console::login(&server, "admin");
    // Revoking asks first; only the confirmed post revokes.
    let asked = admin.post(&format!("/console/devices/{device_id}/revoke"), &[]);
    assert_eq!(asked.status, StatusCode::OK);
    assert!(asked.body.contains("Revoke and wipe"));
    assert!(server.runtime.block_on(server.storage.devices(String::new())).unwrap()[0].revoked_at.is_none());
    assert_eq!(admin.post(&format!("/console/devices/{device_id}/revoke"), &confirmed).status, StatusCode::SEE_OTHER);
    assert!(server.runtime.block_on(server.storage.devices(String::new())).unwrap()[0].revoked_at.is_some());
    assert_eq!(admin.post("/console/operators", &new_account).status, StatusCode::SEE_OTHER);
    // Both actions are in the console's audit trail, shown to admins.
    let events = server.runtime.block_on(server.storage.events(10)).unwrap();
    let actions: Vec<(&str, &str)> = events.iter().map(|e| (e.user.as_str(), e.action.as_str())).collect();
    assert_eq!(
        actions[..2],
        [("admin", "create account mallory (admin)"), ("admin", &*format!("revoke device {device_id}"))]
    );
    assert!(admin.get("/console/operators").body.contains("create account mallory (admin)"));
    assert_eq!(
        server.runtime.block_on(server.storage.operator("mallory".into())).unwrap().map(|o| o.role),
        Some(Role::Admin)
    );
}

#[test]
fn resident_names_holding_markup_are_shown_escaped() {
    let server = TestServer::start();
    add_account(&server, "clerk", Role::Operator);
    let mut a = Device::enrolled(&server, "officer-a", AREA);
    let mut b = Device::enrolled(&server, "officer-b", AREA);
    let evil = "<script>alert('x')</script>";
    let mut h = household("hh-evil", AREA, evil, "001166012345");
    h.address = "\"><img src=x onerror=alert(1)>".into();
    a.store.create_household(&h).unwrap();
    b.store.create_household(&household("hh-twin", AREA, evil, "001166012345")).unwrap();
    a.sync().unwrap();
    b.sync().unwrap();
    a.edit("hh-evil", |h| h.members[0].phone = Some("<b>0912</b>".into()));
    b.edit("hh-evil", |h| h.members[0].phone = Some("<i>0988</i>".into()));
    a.sync().unwrap();
    b.sync().unwrap();
    let clerk = Console::login(&server, "clerk");
    for path in [
        "/console/conflicts",
        "/console/duplicates",
        "/console/households/hh-evil",
        "/console/households/hh-evil/slip",
        "/console/households?q=alert",
        &format!("/console/progress?area={AREA}"),
    ] {
        let page = clerk.get(path);
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(!page.body.contains("<script>"), "{path}: raw script tag");
        assert!(!page.body.contains("<img src=x"), "{path}: raw img tag");
        assert!(!page.body.contains("<b>0912"), "{path}: raw markup");
    }
    assert!(clerk.get("/console/duplicates").body.contains("&lt;script&gt;alert('x')&lt;/script&gt;"));
    assert!(clerk.get("/console/conflicts").body.contains("&lt;b&gt;0912&lt;/b&gt;"));
    assert!(clerk.get("/console/households/hh-evil").body.contains("&quot;&gt;&lt;img src=x"));
    // The household search finds both records of that name, typed plainly.
    let found = clerk.get("/console/households?q=SCRIPT%20alert");
    assert!(found.body.contains("hh-evil") && found.body.contains("hh-twin"), "{}", found.body);
}

#[test]
fn a_conflict_resolved_in_the_console_reaches_both_devices() {
    let server = TestServer::start();
    add_account(&server, "clerk", Role::Operator);
    let mut a = Device::enrolled(&server, "officer-a", AREA);
    let mut b = Device::enrolled(&server, "officer-b", AREA);
    a.store.create_household(&household("hh-1", AREA, "Lê Thanh Vân", "080166796635")).unwrap();
    a.sync().unwrap();
    b.sync().unwrap();
    a.edit("hh-1", |h| h.address = "Số 7, Thôn Tây".into());
    b.edit("hh-1", |h| h.address = "Số 9, Thôn Tây".into());
    a.edit("hh-1", |h| h.members[0].cccd = Some("080166796636".into()));
    b.edit("hh-1", |h| h.members[0].cccd = Some("080166796637".into()));
    a.sync().unwrap();
    b.sync().unwrap();
    a.sync().unwrap();

    let clerk = Console::login(&server, "clerk");
    let page = clerk.get(&format!("/console/conflicts?area={AREA}"));
    for side in ["Số 7, Thôn Tây", "Số 9, Thôn Tây", "officer-a", "officer-b", a.store.device_id(), b.store.device_id()]
    {
        assert!(page.body.contains(side), "{side} missing from the conflicts page");
    }
    let conflicts = server.runtime.block_on(server.storage.conflicts(None)).unwrap();
    let id_of = |path: &str| conflicts.iter().find(|c| c.path.ends_with(path)).unwrap().id;

    // A typed CCCD must be a valid one; the refusal changes nothing.
    let before = server.fingerprint();
    let bad = clerk.post(&format!("/console/conflicts/{}/resolve", id_of("cccd")), &[("value", "12345")]);
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(server.fingerprint(), before);

    // A typed address, and a picked CCCD.
    let typed = clerk.post(&format!("/console/conflicts/{}/resolve", id_of("address")), &[("value", "Số 8, Thôn Tây")]);
    assert_eq!(typed.status, StatusCode::SEE_OTHER);
    assert!(typed.location.starts_with("/console/conflicts?done="));
    let picked = clerk.post(&format!("/console/conflicts/{}/resolve", id_of("cccd")), &[("value", "080166796637")]);
    assert_eq!(picked.status, StatusCode::SEE_OTHER);
    // Resolving twice is refused.
    assert_eq!(
        clerk.post(&format!("/console/conflicts/{}/resolve", id_of("cccd")), &[("value", "080166796636")]).status,
        StatusCode::NOT_FOUND
    );

    a.sync().unwrap();
    b.sync().unwrap();
    for d in [&a, &b] {
        let h = d.store.household("hh-1").unwrap();
        assert_eq!(h.address, "Số 8, Thôn Tây");
        assert_eq!(h.members[0].cccd.as_deref(), Some("080166796637"));
        assert!(d.store.open_household("hh-1").unwrap().conflicts().unwrap().is_empty());
    }
    let audit = server.runtime.block_on(server.storage.audit(Some("hh-1".into()))).unwrap();
    assert_eq!(audit.iter().filter(|e| e.user == "clerk" && e.action == "resolve").count(), 2);
}

#[test]
fn merges_link_records_are_audited_and_undone_and_dismissals_close() {
    let server = TestServer::start();
    add_account(&server, "clerk", Role::Operator);
    let mut a = Device::enrolled(&server, "officer-a", AREA);
    a.store.create_household(&household("hh-a", AREA, "Nguyễn Thị Hồng Nhung", "001166012345")).unwrap();
    a.store.create_household(&household("hh-b", AREA, "Nguyen Thi Hong Nhung", "001166012345")).unwrap();
    // Same name and date of birth, no CCCD: a candidate the operator will find is someone else.
    let mut other = household("hh-c", AREA, "Nguyễn Thị Hồng Nhung", "");
    other.members[0].cccd = None;
    a.store.create_household(&other).unwrap();
    a.sync().unwrap();
    let dups = server.runtime.block_on(server.storage.duplicates(None)).unwrap();
    assert!(dups.len() >= 2, "{dups:?}");
    let same_cccd = dups.iter().find(|d| (d.doc_a.as_str(), d.doc_b.as_str()) == ("hh-a", "hh-b")).unwrap().id;
    let other_id = dups.iter().find(|d| d.id != same_cccd).unwrap().id;
    let clerk = Console::login(&server, "clerk");
    let page = clerk.get("/console/duplicates");
    // The match probability, and each comparison's weight in words.
    assert!(page.body.contains("100.00%"), "{}", page.body);
    assert!(page.body.contains("Số CCCD · CCCD number") && page.body.contains("trùng khớp · the same"));
    assert!(page.body.contains("Positive weights are evidence for one person"));

    let merge = clerk.post(&format!("/console/duplicates/{same_cccd}/merge"), &[]);
    assert_eq!(merge.status, StatusCode::SEE_OTHER);
    let links = server.runtime.block_on(server.storage.links()).unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!((links[0].a.0.as_str(), links[0].b.0.as_str(), links[0].linked_by.as_str()), ("hh-a", "hh-b", "clerk"));
    // Both records and their histories stay.
    assert!(server.runtime.block_on(server.storage.household("hh-a".into())).unwrap().is_some());
    assert!(server.runtime.block_on(server.storage.household("hh-b".into())).unwrap().is_some());
    // The phone learns of the merge at its next sync: each record names the other.
    a.sync().unwrap();
    let same_as = |d: &Device, id: &str| d.store.household(id).unwrap().members[0].same_person_as.clone();
    assert_eq!(same_as(&a, "hh-a").as_deref(), Some("hh-b/m0"));
    assert_eq!(same_as(&a, "hh-b").as_deref(), Some("hh-a/m0"));
    // Merging twice is refused.
    assert_eq!(clerk.post(&format!("/console/duplicates/{same_cccd}/merge"), &[]).status, StatusCode::CONFLICT);
    // A later sync of either household does not reopen the decision.
    a.edit("hh-a", |h| h.address = "Số 2".into());
    a.sync().unwrap();
    let status = |id: i64| {
        server
            .runtime
            .block_on(server.storage.duplicates(None))
            .unwrap()
            .into_iter()
            .find(|d| d.id == id)
            .unwrap()
            .status
    };
    assert_eq!(status(same_cccd), "merged");

    assert_eq!(clerk.post(&format!("/console/duplicates/{same_cccd}/undo"), &[]).status, StatusCode::SEE_OTHER);
    assert!(server.runtime.block_on(server.storage.links()).unwrap().is_empty());
    assert_eq!(status(same_cccd), "open");
    a.sync().unwrap();
    assert_eq!((same_as(&a, "hh-a"), same_as(&a, "hh-b")), (None, None), "the undo reaches the phone");
    assert_eq!(a.store.household("hh-a").unwrap().address, "Số 2", "the officer's edit stays");

    assert_eq!(clerk.post(&format!("/console/duplicates/{other_id}/dismiss"), &[]).status, StatusCode::SEE_OTHER);
    assert_eq!(status(other_id), "dismissed");
    assert_eq!(clerk.post(&format!("/console/duplicates/{other_id}/explode"), &[]).status, StatusCode::NOT_FOUND);

    let actions = |doc: &str| -> Vec<String> {
        server
            .runtime
            .block_on(server.storage.audit(Some(doc.into())))
            .unwrap()
            .into_iter()
            .filter(|e| e.device_id == "console")
            .map(|e| format!("{} {}", e.user, e.action.split(':').next().unwrap()))
            .collect()
    };
    let expected = [format!("clerk merge duplicate #{same_cccd}"), format!("clerk unmerge duplicate #{same_cccd}")];
    assert_eq!(actions("hh-a")[..2], expected);
    assert_eq!(actions("hh-b")[..2], expected);
    let dismissed = dups.iter().find(|d| d.id == other_id).unwrap();
    for doc in [&dismissed.doc_a, &dismissed.doc_b] {
        assert!(actions(doc).contains(&format!("clerk dismiss duplicate #{other_id}")), "{doc}");
    }
}

#[test]
fn progress_counts_completeness_validity_and_residents_turning_14() {
    let server = TestServer::start();
    add_account(&server, "clerk", Role::Operator);
    let mut a = Device::enrolled(&server, "officer-a", "01.001");
    let today = chrono::Utc::now().date_naive();
    let born = |days_from_now: i64| {
        let d = today + chrono::Duration::days(days_from_now);
        d.with_year_minus(14).format("%Y-%m-%d").to_string()
    };
    // Commune 1: one complete household whose child turns 14 in 30 days.
    let mut h1 = household("hh-1", "01.001.00001", "Lê Thanh Vân", "080166796635");
    h1.members.push(doorstep_core::record::Member {
        member_id: "m1".into(),
        full_name: "Lê Ngọc Linh".into(),
        dob: Some(born(30)),
        sex: Some("F".into()),
        relation: Some("child".into()),
        residence_status: Some("permanent".into()),
        ..Default::default()
    });
    a.store.create_household(&h1).unwrap();
    // Commune 4: a CCCD that fails its checks (wrong birth year), and a resident turning 14 in 120 days.
    let mut h2 = household("hh-2", "01.001.00004", "Trần Minh Thắng", "080199796635");
    h2.members[0].dob = Some(born(120));
    a.store.create_household(&h2).unwrap();
    // Commune 4: a household with no address is incomplete.
    let mut h3 = household("hh-3", "01.001.00004", "Đỗ Kim Tâm", "011165617775");
    h3.address = String::new();
    h3.members[0].dob = Some("1965-10-14".into());
    a.store.create_household(&h3).unwrap();
    a.sync().unwrap();

    let clerk = Console::login(&server, "clerk");
    let csv = clerk.get("/console/progress.csv?area=01.001");
    assert_eq!(csv.status, StatusCode::OK);
    let rows: HashMap<String, Vec<String>> = csv
        .body
        .lines()
        .skip(1)
        .map(|l| {
            let cells: Vec<String> = l.split(',').map(str::to_owned).collect();
            (cells[0].clone(), cells)
        })
        .collect();
    // area,households,residents,complete,complete_pct,cccd_present,cccd_valid,cccd_valid_pct,new_today,new_this_week,new_this_month,turning_14,conflicts,duplicates
    assert_eq!(rows["01.001.00001"][1..12], ["1", "2", "1", "100.0", "1", "1", "100.0", "1", "1", "1", "1"]);
    assert_eq!(rows["01.001.00004"][1..12], ["2", "2", "1", "50.0", "2", "1", "50.0", "2", "2", "2", "0"]);
    assert_eq!(rows["01.001"][1..4], ["3", "4", "2"], "the total row");
    let page = clerk.get("/console/progress?area=01.001");
    assert!(page.body.contains("Lê Ngọc Linh"), "the resident turning 14 is listed");
    assert!(!page.body.contains("Trần Minh Thắng"), "120 days away is outside the window");
}

#[test]
fn a_printed_slip_verifies_on_a_device_with_no_network() {
    let server = TestServer::start();
    add_account(&server, "clerk", Role::Operator);
    let mut a = Device::enrolled(&server, "officer-a", AREA);
    a.store.create_household(&household("hh-1", AREA, "Lê Thanh Vân", "080166796635")).unwrap();
    a.sync().unwrap();
    let clerk = Console::login(&server, "clerk");
    let page = clerk.get("/console/households/hh-1/slip");
    assert_eq!(page.status, StatusCode::OK);
    let b64 = page.body.split("data:image/png;base64,").nth(1).unwrap().split('"').next().unwrap();
    use base64::Engine;
    let png = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    let text = doorstep_core::qr::decode_image(&png).unwrap().remove(0);
    // No server from here on: the device checks the signature with the key it got at enrolment.
    drop(server);
    let slip = doorstep_core::sync::verify_slip(&a.store, &text).unwrap();
    assert_eq!(slip.household_id, "hh-1");
    assert_eq!(slip.members[0].name, "Lê Thanh Vân");
    assert_eq!(slip.members[0].cccd_last4.as_deref(), Some("6635"));
    let forged = text.replacen("DSLIP1.", "DSLIP1.A", 1);
    assert!(matches!(doorstep_core::sync::verify_slip(&a.store, &forged), Err(doorstep_core::Error::BadSignature(_))));
}

#[test]
fn a_house_photo_shows_in_the_console_once_uploaded() {
    let server = TestServer::start();
    add_account(&server, "clerk", Role::Operator);
    let mut a = Device::enrolled(&server, "officer-a", AREA);
    a.store.create_household(&household("hh-1", AREA, "Lê Thanh Vân", "080166796635")).unwrap();
    let jpeg = doorstep_core::photo::synthetic_jpeg(800, 600, 90);
    a.store.add_house_photo("hh-1", &jpeg, doorstep_core::photo::PhotoOptions::default()).unwrap();
    a.sync().unwrap();
    let clerk = Console::login(&server, "clerk");
    assert!(clerk.get("/console/households/hh-1").body.contains("/console/households/hh-1/photo/thumb"));
    assert_eq!(clerk.get("/console/households/hh-1/photo/thumb").status, StatusCode::NOT_FOUND, "not uploaded yet");
    a.sync_attachments().unwrap();
    let resp = clerk.get_raw("/console/households/hh-1/photo/thumb");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "image/jpeg");
    let thumb = a.store.house_photo("hh-1", doorstep_core::store::PhotoSize::Thumb).unwrap().unwrap();
    assert_eq!(resp.bytes().unwrap().to_vec(), thumb);
    assert_eq!(
        Console::http().get(format!("{}/console/households/hh-1/photo/full", server.url)).send().unwrap().status(),
        StatusCode::SEE_OTHER
    );

    // A resident's document photo is linked from the residents table and served the same way.
    let document = doorstep_core::record::PhotoField::MemberDocument("m0".into());
    let scan = doorstep_core::photo::synthetic_jpeg(600, 900, 90);
    a.store.add_photo("hh-1", &document, &scan, doorstep_core::photo::PhotoOptions::default()).unwrap();
    a.sync().unwrap();
    a.sync_attachments().unwrap();
    let page = clerk.get("/console/households/hh-1");
    assert!(page.body.contains("/console/households/hh-1/photo/full?member=m0"), "the residents table links it");
    let resp = clerk.get_raw("/console/households/hh-1/photo/full?member=m0");
    assert_eq!(resp.status(), StatusCode::OK);
    let full = a.store.photo("hh-1", &document, doorstep_core::store::PhotoSize::Full).unwrap().unwrap();
    assert_eq!(resp.bytes().unwrap().to_vec(), full);
    assert_eq!(clerk.get("/console/households/hh-1/photo/full?member=m9").status, StatusCode::NOT_FOUND);
}

#[test]
fn an_operator_of_one_commune_sees_and_acts_on_that_commune_only() {
    let server = TestServer::start();
    add_scoped_account(&server, "commune1", Role::Operator, "01.001.00001");
    add_account(&server, "district", Role::Operator);
    let mut a = Device::enrolled(&server, "officer-a", "01.001");
    let mut b = Device::enrolled(&server, "officer-b", "01.001");
    // In each of two communes: two records of one person (a duplicate) and a conflict on a name.
    let communes =
        [("01.001.00001", "Đặng Thu Thảo", "001166011111"), ("01.001.00002", "Hoàng Văn Khôi", "001066022222")];
    for (area, name, cccd) in communes {
        a.store.create_household(&household(&format!("{area}-x"), area, name, cccd)).unwrap();
        a.store.create_household(&household(&format!("{area}-y"), area, name, cccd)).unwrap();
    }
    a.sync().unwrap();
    b.sync().unwrap();
    for (area, name, _) in communes {
        a.edit(&format!("{area}-x"), |h| h.members[0].full_name = format!("{name} A"));
        b.edit(&format!("{area}-x"), |h| h.members[0].full_name = format!("{name} B"));
    }
    a.sync().unwrap();
    b.sync().unwrap();
    let conflicts = server.runtime.block_on(server.storage.conflicts(None)).unwrap();
    let duplicates = server.runtime.block_on(server.storage.duplicates(None)).unwrap();
    let conflict_in = |area: &str| conflicts.iter().find(|c| c.area == area).unwrap().id;
    let duplicate_in = |area: &str| duplicates.iter().find(|d| d.area == area).unwrap().id;
    let (mine, theirs) = ("01.001.00001", "01.001.00002");

    let own_phone = Device::enrolled(&server, "officer-own", mine);
    let their_phone = Device::enrolled(&server, "officer-their", theirs);
    let clerk = Console::login(&server, "commune1");
    // The devices page lists the commune's own devices only.
    let devices = clerk.get("/console/devices");
    assert!(devices.body.contains(own_phone.store.device_id()));
    assert!(!devices.body.contains(their_phone.store.device_id()) && !devices.body.contains(a.store.device_id()));
    // Lists show the commune's own work; another area, or the district above, is refused.
    for page in ["/console/conflicts", "/console/duplicates", "/console/progress", "/console/households?q=001"] {
        let got = clerk.get(page);
        assert_eq!(got.status, StatusCode::OK, "{page}");
        assert!(got.body.contains(mine), "{page} shows the commune");
        assert!(!got.body.contains(theirs), "{page} shows nothing of another commune");
    }
    for page in [
        format!("/console/conflicts?area={theirs}"),
        "/console/duplicates?area=01.001".to_string(),
        format!("/console/progress?area={theirs}"),
        format!("/console/progress.csv?area={theirs}"),
        "/console/households?area=01&q=001".to_string(),
    ] {
        assert_eq!(clerk.get(&page).status, StatusCode::FORBIDDEN, "{page}");
    }
    // Another commune's households are not found; acting on its queues changes nothing.
    for page in ["", "/slip", "/photo/thumb"] {
        assert_eq!(clerk.get(&format!("/console/households/{theirs}-x{page}")).status, StatusCode::NOT_FOUND);
    }
    assert_eq!(clerk.get(&format!("/console/households/{mine}-x")).status, StatusCode::OK);
    let before = server.fingerprint();
    let refused =
        clerk.post(&format!("/console/conflicts/{}/resolve", conflict_in(theirs)), &[("value", "Hoàng Văn Khôi")]);
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    assert_eq!(
        clerk.post(&format!("/console/duplicates/{}/merge", duplicate_in(theirs)), &[]).status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(server.fingerprint(), before, "refusals changed nothing");
    // Its own commune's queues it works as any operator.
    let resolved =
        clerk.post(&format!("/console/conflicts/{}/resolve", conflict_in(mine)), &[("value", "Đặng Thu Thảo")]);
    assert_eq!(resolved.status, StatusCode::SEE_OTHER);
    assert_eq!(
        clerk.post(&format!("/console/duplicates/{}/merge", duplicate_in(mine)), &[]).status,
        StatusCode::SEE_OTHER
    );

    // An operator with no area sees the district.
    let district = Console::login(&server, "district");
    let page = district.get("/console/conflicts");
    assert!(page.body.contains(theirs));
    assert_eq!(district.get(&format!("/console/households/{theirs}-x")).status, StatusCode::OK);
}

#[test]
fn a_duplicate_across_areas_shows_an_area_bound_operator_only_its_own_side() {
    let server = TestServer::start();
    add_scoped_account(&server, "commune1", Role::Operator, "01.001.00001");
    add_account(&server, "district", Role::Operator);
    let mut d = Device::enrolled(&server, "officer-d", "01.001");
    let mut theirs = household("01.001.00002-r", "01.001.00002", "Vũ Thị Quyên", "001166033333");
    theirs.address = "Số 77, Xóm Bãi, xã Bình Minh".into();
    d.store.create_household(&theirs).unwrap();
    d.sync().unwrap();
    d.store.create_household(&household("01.001.00001-r", "01.001.00001", "Vũ Thị Quyên", "001166033333")).unwrap();
    d.sync().unwrap();
    let id = server.runtime.block_on(server.storage.duplicates(None)).unwrap()[0].id;

    let clerk = Console::login(&server, "commune1");
    let page = clerk.get("/console/duplicates");
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(&format!("duplicate-{id}")) && page.body.contains("01.001.00001-r"));
    assert!(page.body.contains("Record held in another area"));
    for secret in ["01.001.00002", "Xóm Bãi", "CCCD number"] {
        assert!(!page.body.contains(secret), "the other side shows nothing: {secret}");
    }
    // Linking writes into both households: refused; dismissing is the operator's own call.
    let before = server.fingerprint();
    assert_eq!(clerk.post(&format!("/console/duplicates/{id}/merge"), &[]).status, StatusCode::FORBIDDEN);
    assert_eq!(server.fingerprint(), before, "the refusal changed nothing");
    assert_eq!(clerk.post(&format!("/console/duplicates/{id}/dismiss"), &[]).status, StatusCode::SEE_OTHER);
    // An operator whose area covers both sees both, and may link them.
    let district = Console::login(&server, "district");
    assert_eq!(district.post(&format!("/console/duplicates/{id}/undo"), &[]).status, StatusCode::SEE_OTHER);
    let page = district.get("/console/duplicates");
    assert!(page.body.contains("Xóm Bãi") && page.body.contains("CCCD number"));
    assert_eq!(district.post(&format!("/console/duplicates/{id}/merge"), &[]).status, StatusCode::SEE_OTHER);
}

#[test]
fn areas_that_are_not_digit_codes_are_refused_everywhere() {
    let server = TestServer::start();
    add_account(&server, "admin", Role::Admin);
    let mut d = Device::enrolled(&server, "officer-d", AREA);
    d.store.create_household(&household("01.001.00001-z", "01.001.00001", "Phạm Văn Bình", "001066044444")).unwrap();
    d.sync().unwrap();
    let admin = Console::login(&server, "admin");
    let before = server.fingerprint();
    for bad in ["%", "_", "01.0%", "01.00_", "01.001.*", "01..001", "01.001 OR 1=1"] {
        let api = server.admin_post("/v1/admin/enrolments", serde_json::json!({ "area": bad }));
        assert_eq!(api, StatusCode::BAD_REQUEST, "API enrolment for {bad:?}");
        assert_eq!(admin.post("/console/devices/enrol", &[("area", bad)]).status, StatusCode::BAD_REQUEST, "{bad:?}");
        let operator = admin.post(
            "/console/operators",
            &[("username", "x-operator"), ("password", "long-enough-password"), ("role", "operator"), ("area", bad)],
        );
        assert_ne!(operator.status, StatusCode::SEE_OTHER, "operator for {bad:?}");
        let q = serde_urlencoded::to_string([("area", bad)]).unwrap();
        assert_eq!(admin.get(&format!("/console/duplicates?{q}")).status, StatusCode::BAD_REQUEST, "{bad:?}");
        let listed = reqwest::blocking::Client::new()
            .get(format!("{}/v1/admin/conflicts?{q}", server.url))
            .bearer_auth(common::ADMIN)
            .send()
            .unwrap();
        assert!(listed.status().is_client_error(), "API list for {bad:?}");
        assert!(doorstep_core::area::Area::parse(bad).is_err());
    }
    assert_eq!(server.fingerprint(), before, "nothing was stored");
    // A phone refuses a household whose area is a wildcard; a hand-made push of one is refused by the server.
    let mut wild = household("01.001.00001-w", "01.001.00001", "Phạm Văn Hùng", "001066055555");
    wild.area_code = "01.001.%".into();
    assert!(matches!(d.store.create_household(&wild), Err(doorstep_core::Error::InvalidArgument(_))));
    let editor = doorstep_core::record::Editor { user: "x".into(), device: "y".into() };
    let changes = doorstep_core::record::HouseholdDoc::create(&wild, &editor).unwrap().save();
    let credential = d.store.sync_secret("credential").unwrap().unwrap();
    use doorstep_core::sync::protocol::ErrorCode;
    for (area, code) in [("01.001.%", ErrorCode::Malformed), ("01.001.00001", ErrorCode::InvalidDocument)] {
        let push = doorstep_core::sync::protocol::DocPush {
            doc_id: wild.household_id.clone(),
            area: area.into(),
            changes: changes.clone(),
        };
        let body = doorstep_core::sync::protocol::encode(&doorstep_core::sync::protocol::SyncRequest {
            protocol: doorstep_core::sync::protocol::PROTOCOL_VERSION,
            cursor: 0,
            user: "x".into(),
            push: vec![push],
            transfer_key: None,
            snapshot: None,
            resend: vec![],
            transfers: vec![],
        });
        let resp = reqwest::blocking::Client::new()
            .post(format!("{}/v1/sync", server.url))
            .bearer_auth(&credential)
            .body(body)
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let answer: doorstep_core::sync::protocol::SyncResponse =
            doorstep_core::sync::protocol::decode(&resp.bytes().unwrap()).unwrap();
        assert_eq!(answer.refused.len(), 1, "pushed as {area}");
        assert_eq!(answer.refused[0].code, code, "pushed as {area}");
    }
    assert_eq!(server.fingerprint(), before, "the wildcard household was not stored");
    // A valid code is made, and its page says when it stops working (72 hours on).
    let made = admin.post("/console/devices/enrol", &[("area", "01.001.00009")]);
    assert_eq!(made.status, StatusCode::OK);
    assert!(made.body.contains("id=\"expires\"") && made.body.contains("Expires"), "{}", made.body);
}

#[test]
fn the_household_search_finds_by_cccd_full_name_id_and_part_of_a_name_within_its_area() {
    let server = TestServer::start();
    add_account(&server, "clerk", Role::Operator);
    let mut a = Device::enrolled(&server, "officer-a", AREA);
    for (id, name, cccd) in [
        ("hh-search-1", "Nguyễn Thị Nhung", "001166000111"),
        ("hh-search-2", "Trần Văn Bình", "001066000222"),
        // The first one's number with two digits transposed: found by the same index key, not shown.
        ("hh-search-3", "Lê Văn Cường", "001166001011"),
    ] {
        a.store.create_household(&household(id, AREA, name, cccd)).unwrap();
    }
    a.sync().unwrap();
    let clerk = Console::login(&server, "clerk");
    let shown = |q: &str| {
        let page = clerk.get(&format!("/console/households?area={AREA}&q={q}"));
        assert_eq!(page.status, StatusCode::OK, "{q}");
        ["hh-search-1", "hh-search-2", "hh-search-3"]
            .into_iter()
            .filter(|id| page.body.contains(&format!("/console/households/{id}\"")))
            .collect::<Vec<_>>()
    };
    assert_eq!(shown("001166000111"), ["hh-search-1"], "by CCCD");
    assert_eq!(shown("nguyen%20thi%20nhung"), ["hh-search-1"], "a full name typed without diacritics");
    assert_eq!(shown("TR%E1%BA%A6N%20V%C4%82N%20B%C3%8CNH"), ["hh-search-2"], "a full name in capitals");
    assert_eq!(shown("hh-search-"), ["hh-search-1", "hh-search-2", "hh-search-3"], "an id prefix");
    assert_eq!(shown("cuong"), ["hh-search-3"], "part of a name");
    assert!(shown("001166000999").is_empty(), "a number nobody holds");
    // The index itself holds them (the page above would also find them by opening every resident).
    let find = |keys: Vec<String>, prefix: &str| {
        let rows = server.runtime.block_on(server.storage.find_people(AREA.into(), keys, prefix.into(), 100, 100));
        let mut ids: Vec<String> = rows.unwrap().into_iter().map(|(doc, _, _)| doc).collect();
        ids.dedup();
        ids
    };
    let cccd = doorstep_sync_server::logic::cccd_search_key("001166000111").unwrap();
    assert_eq!(find(vec![cccd], ""), ["hh-search-1", "hh-search-3"], "the number and its transposition");
    let name = doorstep_sync_server::logic::name_search_key("NGUYEN thi  nhung").unwrap();
    assert_eq!(find(vec![name], ""), ["hh-search-1"]);
    assert_eq!(find(vec![], "hh-search-2"), ["hh-search-2"]);
    // Another commune's search sees none of them.
    let other = clerk.get("/console/households?area=01.001.00002&q=001166000111");
    assert!(!other.body.contains("hh-search-1"));
}

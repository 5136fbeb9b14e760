//! Operator login: Argon2id password hashes, server-side sessions behind a
//! `Secure; HttpOnly; SameSite=Strict` cookie, and a CSRF token on every form.
//!
//! The login form's token is issued by the server: a nonce and an expiry under a
//! keyed BLAKE3 MAC (the key derived from the server's signing key, so every node
//! checks it), sent as a cookie and a hidden field. A token the client made up fails.
//! Logins are rate-limited per client address, back off per account and address
//! after failures (never a permanent lockout), and hash passwords in a bounded
//! number of slots ([`crate::limits`]).

use std::sync::Arc;
use std::time::Instant;

use argon2::password_hash::phc::Output;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use axum::body::to_bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::layout::{PageError, csrf_field, page};
use crate::api::Peer;
use crate::error::ApiError;
use crate::state::{AppState, hash_secret, make_secret};
use crate::storage::{Role, Session, area_within};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "doorstep_session";
/// The login form's CSRF cookie (double submit: there is no session yet).
const LOGIN_COOKIE: &str = "doorstep_login";
/// How long a session lives.
pub const SESSION_TTL_SECS: i64 = 8 * 3600;
/// Shortest password accepted for an operator account.
pub const MIN_PASSWORD_LEN: usize = 10;
/// Largest form body accepted.
const MAX_FORM_BYTES: usize = 64 * 1024;
/// How long a login form's token works, in seconds.
const LOGIN_FORM_TTL: i64 = 3600;

/// The key of the login form's MAC, derived from the server's signing key.
async fn login_form_key(state: &AppState) -> Result<[u8; 32], ApiError> {
    let seed = state.slip_key().await?.to_bytes();
    Ok(blake3::derive_key("doorstep console login form v1", &seed))
}

/// A fresh login form token: `nonce.expires.mac`.
fn login_token(key: &[u8; 32], now: i64) -> Result<String, ApiError> {
    let body = format!("{}.{}", make_secret()?, now + LOGIN_FORM_TTL);
    Ok(format!("{body}.{}", blake3::keyed_hash(key, body.as_bytes()).to_hex()))
}

/// Whether the server issued this token, and it has not expired.
fn login_token_valid(key: &[u8; 32], token: &str, now: i64) -> bool {
    let Some((body, mac)) = token.rsplit_once('.') else { return false };
    let Some(expires) = body.split_once('.').and_then(|(_, e)| e.parse::<i64>().ok()) else { return false };
    let Ok(mac) = blake3::Hash::from_hex(mac) else { return false };
    // `blake3::Hash` compares in constant time.
    expires >= now && blake3::keyed_hash(key, body.as_bytes()) == mac
}

/// Hashes a password for storage: Argon2id with the crate's defaults (19 MiB, 2 passes), random salt.
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(ApiError::internal)
}

/// Checks a password against a stored hash.
pub fn verify_password(password: &str, stored: &str) -> bool {
    Argon2::default().verify_password(password.as_bytes(), stored).is_ok()
}

/// Most Argon2 memory a stored hash may ask for (64 MiB): a hash with more is refused, not run.
const MAX_HASH_BLOCKS: usize = 64 * 1024;

/// [`verify_password`], computing Argon2 in `memory`, which is grown to the hash's size once
/// and reused by the next call. The server's hashing memory is then a fixed set of buffers
/// ([`crate::limits`]), not a 19 MiB allocation per login, which the allocator may keep.
pub fn verify_password_in(password: &str, stored: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(hash) = PasswordHash::new(stored) else { return false };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else { return false };
    let (Ok(params), Ok(algorithm)) = (Params::try_from(&hash), Algorithm::try_from(hash.algorithm.as_str())) else {
        return false;
    };
    let Ok(version) = hash.version.map_or(Ok(Version::default()), Version::try_from) else { return false };
    let blocks = params.block_count();
    if blocks > MAX_HASH_BLOCKS {
        return false;
    }
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let computed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password.as_bytes(),
        salt.as_ref(),
        &mut out,
        &mut memory[..blocks],
    );
    // `Output` compares in constant time.
    computed.is_ok() && Output::new(&out).is_ok_and(|o| &o == expected)
}

/// Equality that takes the same time wherever the strings differ.
fn same_secret(a: &str, b: &str) -> bool {
    blake3::hash(a.as_bytes()) == blake3::hash(b.as_bytes())
}

/// A cookie's value from the request headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn set_cookie(name: &str, value: &str, path: &str, max_age: i64) -> String {
    format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict")
}

/// The logged-in operator of a request. Without a live session the request is
/// redirected to the login page (and comes back to where it was going).
pub struct Current(pub Session);

impl Current {
    /// Refuses anyone but an admin.
    pub fn require_admin(&self) -> Result<(), PageError> {
        require_admin(&self.0)
    }
}

/// The area a page shows: the one asked for, which must lie within the operator's own
/// area (403 otherwise), or, when none is asked for, the operator's own.
pub fn scoped_area(session: &Session, requested: &str) -> Result<String, PageError> {
    let requested = requested.trim();
    if requested.is_empty() {
        Ok(session.area.clone())
    } else if doorstep_core::area::Area::parse(requested).is_err() {
        Err(PageError::bad_request("Mã khu vực không hợp lệ. · An area code is digits in dot-separated parts."))
    } else if area_within(requested, &session.area) {
        Ok(requested.to_string())
    } else {
        Err(PageError::forbidden("This area is outside the one your account works on."))
    }
}

/// Refuses (as not found, so that nothing is learnt of it) a household outside the operator's area.
pub fn require_area(session: &Session, area: &str) -> Result<(), PageError> {
    if area_within(area, &session.area) { Ok(()) } else { Err(PageError::not_found("No such household.")) }
}

/// Refuses anyone but an admin.
pub fn require_admin(session: &Session) -> Result<(), PageError> {
    if session.role == Role::Admin { Ok(()) } else { Err(PageError::forbidden("Only an admin may do this.")) }
}

impl FromRequestParts<Arc<AppState>> for Current {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let session = match cookie(&parts.headers, SESSION_COOKIE) {
            Some(token) => state
                .storage
                .session(hash_secret(&token), state.now())
                .await
                .map_err(|e| PageError::from(e).into_response())?,
            None => None,
        };
        match session {
            Some(s) => Ok(Current(s)),
            None => {
                let target = match (parts.method == Method::GET, parts.uri.path_and_query()) {
                    (true, Some(pq)) => format!("/console/login?next={}", urlencode(pq.as_str())),
                    _ => "/console/login".to_string(),
                };
                Err(Redirect::to(&target).into_response())
            }
        }
    }
}

/// A form posted by a logged-in operator, with its CSRF token checked. A
/// missing or wrong token is refused with 403 before the form is read.
pub struct Posted<T> {
    /// Who posted it.
    pub session: Session,
    /// The form's fields.
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for Posted<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let Current(session) = Current::from_request_parts(&mut parts, state).await?;
        let bytes = to_bytes(body, MAX_FORM_BYTES).await.map_err(|_| {
            PageError::new(axum::http::StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.").into_response()
        })?;
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
        let token = fields.iter().find(|(k, _)| k == "csrf").map(|(_, v)| v.as_str());
        if !token.is_some_and(|t| same_secret(t, &session.csrf)) {
            return Err(PageError::forbidden(
                "This form has expired or did not come from the console. Reload the page and try again.",
            )
            .into_response());
        }
        let form = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| PageError::bad_request(format!("The form is incomplete: {e}")).into_response())?;
        Ok(Posted { session, form })
    }
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)]).map(|e| e.trim_start_matches('=').to_string()).unwrap_or_default()
}

/// Only local console paths are followed after login.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/console/") && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/console/progress",
    }
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    failed: Option<String>,
}

/// GET /console/login
pub async fn login_page(
    State(state): State<Arc<AppState>>,
    Query(q): Query<LoginQuery>,
) -> Result<Response, PageError> {
    let token = login_token(&login_form_key(&state).await?, state.now())?;
    let body = html! {
        section.login {
            h1 { "Doorstep" }
            p.muted { "Bảng điều khiển vận hành · Operator console" }
            @if q.failed.is_some() {
                p.error role="alert" { "Sai tên đăng nhập hoặc mật khẩu. · Wrong name or password." }
            }
            form method="post" action="/console/login" {
                input type="hidden" name="csrf" value=(token);
                input type="hidden" name="next" value=(safe_next(q.next.as_deref()));
                label { "Tên đăng nhập · Username" input name="username" autocomplete="username" required autofocus; }
                label { "Mật khẩu · Password" input name="password" type="password" autocomplete="current-password" required; }
                button.primary type="submit" { "Đăng nhập · Log in" }
            }
        }
    };
    let mut resp = page("Log in", None, "", body).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, &token, "/console/login", 3600).parse().map_err(ApiError::internal)?,
    );
    Ok(resp)
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    csrf: String,
    next: Option<String>,
}

/// A hash to verify against when the account does not exist, so that a wrong
/// name and a wrong password take the same time.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password("not a real password, only for timing").unwrap_or_default())
}

/// POST /console/login
pub async fn login(State(state): State<Arc<AppState>>, peer: Peer, req: Request) -> Result<Response, PageError> {
    let (parts, body) = req.into_parts();
    let client = state.limits.client(peer.as_deref(), &parts.headers);
    state.limits.login(client).map_err(|_| {
        PageError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "Quá nhiều lần đăng nhập từ địa chỉ này. · Too many logins from this address: wait a minute.",
        )
    })?;
    let bytes = to_bytes(body, MAX_FORM_BYTES).await.map_err(|_| PageError::bad_request("The form is too large."))?;
    let form: LoginForm =
        serde_urlencoded::from_bytes(&bytes).map_err(|_| PageError::bad_request("The login form is incomplete."))?;
    let issued = login_token_valid(&login_form_key(&state).await?, &form.csrf, state.now());
    if !issued || !cookie(&parts.headers, LOGIN_COOKIE).is_some_and(|c| same_secret(&c, &form.csrf)) {
        return Err(PageError::forbidden("This login form has expired. Reload the page and try again."));
    }
    let username: String = form.username.trim().chars().take(64).collect();
    if let Err(wait) = state.limits.login_allowed(&username, client, Instant::now()) {
        return Err(PageError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            format!("Sai quá nhiều lần. · Too many failed attempts: try again in {} s.", wait.as_secs().max(1)),
        ));
    }
    // Argon2id takes tens of milliseconds of CPU and 19 MiB: in one of a few slots, off the async
    // workers. The slot first: a login turned away costs no database read either.
    let slot = state.limits.hashing_slot().await?;
    let operator = state.storage.operator(username.clone()).await?;
    let password = form.password;
    let stored = operator.as_ref().map(|o| o.password_hash.clone());
    let ok = slot
        .run(move |memory| {
            // An unknown name is checked against a dummy hash (made here, off the async workers,
            // the first time): a wrong name and a wrong password take the same time.
            verify_password_in(&password, stored.as_deref().unwrap_or_else(|| dummy_hash()), memory)
        })
        .await?;
    state.limits.login_result(&username, client, ok && operator.is_some(), Instant::now());
    let Some(operator) = operator.filter(|_| ok) else {
        let next = urlencode(safe_next(form.next.as_deref()));
        return Ok(Redirect::to(&format!("/console/login?failed=1&next={next}")).into_response());
    };
    let token = make_secret()?;
    let session = Session {
        token_hash: hash_secret(&token),
        username: operator.username,
        role: operator.role,
        area: operator.area,
        csrf: make_secret()?,
        expires_at: state.now() + SESSION_TTL_SECS,
    };
    state.storage.create_session(session, state.now()).await?;
    let mut resp = Redirect::to(safe_next(form.next.as_deref())).into_response();
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &token, "/console", SESSION_TTL_SECS).parse().map_err(ApiError::internal)?,
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, "", "/console/login", 0).parse().map_err(ApiError::internal)?,
    );
    Ok(resp)
}

#[derive(Deserialize)]
pub struct Empty {}

/// POST /console/logout
pub async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    posted: Posted<Empty>,
) -> Result<Response, PageError> {
    let _ = posted.form;
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        state.storage.delete_session(hash_secret(&token)).await?;
    }
    let mut resp = Redirect::to("/console/login").into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", "/console", 0).parse().map_err(ApiError::internal)?);
    Ok(resp)
}

/// The hidden CSRF field for a session's forms.
pub fn csrf(session: &Session) -> maud::Markup {
    csrf_field(&session.csrf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert!(!verify_password("x", "not a hash"));
        let mut memory = Vec::new();
        assert!(verify_password_in("correct horse battery", &h, &mut memory));
        assert_eq!(memory.len(), 19 * 1024, "the default 19 MiB, in 1 KiB blocks");
        assert!(!verify_password_in("correct horse batterY", &h, &mut memory));
        assert!(verify_password_in("correct horse battery", &h, &mut memory), "memory reused");
        assert!(!verify_password_in("x", "not a hash", &mut memory));
        let huge = h.replace("m=19456", "m=4194304");
        assert!(!verify_password_in("correct horse battery", &huge, &mut memory), "a huge cost is not run");
        assert_eq!(memory.len(), 19 * 1024);
    }

    #[test]
    fn only_local_console_paths_are_followed_after_login() {
        assert_eq!(safe_next(Some("/console/conflicts?area=01")), "/console/conflicts?area=01");
        for bad in ["https://evil.example/", "//evil.example/console/", "/v1/admin/devices", "/console\\..\\x"] {
            assert_eq!(safe_next(Some(bad)), "/console/progress", "{bad}");
        }
    }

    #[test]
    fn login_form_tokens_are_the_servers_own_and_expire() {
        let key = [4u8; 32];
        let token = login_token(&key, 1000).unwrap();
        assert!(login_token_valid(&key, &token, 1000));
        assert!(login_token_valid(&key, &token, 1000 + LOGIN_FORM_TTL));
        assert!(!login_token_valid(&key, &token, 1001 + LOGIN_FORM_TTL), "expired");
        assert!(!login_token_valid(&[5u8; 32], &token, 1000), "another server's key");
        let (body, _) = token.rsplit_once('.').unwrap();
        let later = body.replace(&(1000 + LOGIN_FORM_TTL).to_string(), "99999999999");
        for forged in ["aa", "", "a.b.c", &format!("{later}.{}", token.rsplit_once('.').unwrap().1)] {
            assert!(!login_token_valid(&key, forged, 1000), "{forged}");
        }
    }

    #[test]
    fn cookies_are_read_from_any_cookie_header() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1; doorstep_session=abc".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "b"), None);
    }
}

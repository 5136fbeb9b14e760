//! Bounded work for every caller, strangers first: request rates per device and
//! per client address (GCRA token buckets from `governor`), a cap on concurrent
//! password hashing, and a backoff on failed logins per account and address that
//! never locks an account for good.
//!
//! What a flood costs the server: a refused request is a hash-map lookup; a login
//! that passes its address's rate waits for one of [`hashing_permits`] Argon2 slots
//! (19 MiB each) behind at most [`MAX_WAITING_PER_PERMIT`] others a slot, or is turned
//! away at once (503), or after [`HASHING_WAIT`]. Memory stays bounded: the key maps
//! forget idle keys past [`MAX_KEYS`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, StatusCode};
use doorstep_core::sync::protocol::ErrorCode;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

/// The backoff's account name for enrolments (no login name can hold a NUL).
const ENROL_KEY: &str = "\0enrol";
/// Keys a rate limiter or the backoff keeps before forgetting idle ones.
pub const MAX_KEYS: usize = 10_000;
/// Logins that may wait for each hashing slot; more are turned away at once (503).
pub const MAX_WAITING_PER_PERMIT: usize = 4;
/// Longest a login waits for a hashing slot before it is turned away (503).
pub const HASHING_WAIT: Duration = Duration::from_secs(5);
/// Failed logins an (account, address) pair may make before it must wait.
pub const FREE_LOGIN_FAILURES: u32 = 3;
/// Failed logins on one account, from every address together, before addresses it never
/// logged in from must wait too.
pub const FREE_ACCOUNT_FAILURES: u32 = 20;
/// The backoff's address for an account's failures from every address.
const ANY_ADDRESS: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
/// The longest wait a run of failed logins can earn.
pub const MAX_LOGIN_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// Concurrent password hashes: half the machine's cores, at least one. Every other
/// request (device syncs above all) keeps the rest.
pub fn hashing_permits() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

fn quota(burst: u32, per_minute: u32) -> Quota {
    let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
    Quota::per_minute(per_minute).allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
}

/// Per-device and per-address request rates, the hashing cap and the login backoff.
pub struct Limits {
    device: DefaultKeyedRateLimiter<String>,
    attachment: DefaultKeyedRateLimiter<String>,
    login: DefaultKeyedRateLimiter<IpAddr>,
    export: DefaultKeyedRateLimiter<IpAddr>,
    hashing: tokio::sync::Semaphore,
    /// One Argon2 working memory per hashing slot, reused from login to login.
    memory: Mutex<Vec<Vec<argon2::Block>>>,
    waiting: std::sync::atomic::AtomicUsize,
    max_waiting: usize,
    backoff: Mutex<HashMap<(String, IpAddr), Failures>>,
    known: Mutex<std::collections::HashSet<(String, IpAddr)>>,
    trusted_proxies: Vec<IpAddr>,
}

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Failures {
    /// How long after the last failure the next attempt must wait, when `free` failures cost nothing.
    fn wait_after(&self, free: u32) -> Duration {
        match self.count.checked_sub(free) {
            None | Some(0) => Duration::ZERO,
            Some(over) => Duration::from_secs(1u64 << (over - 1).min(20)).min(MAX_LOGIN_BACKOFF),
        }
    }
}

fn too_many(message: &str) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited, message)
}

fn check<K: std::hash::Hash + Eq + Clone>(limiter: &DefaultKeyedRateLimiter<K>, key: &K) -> bool {
    if limiter.len() > MAX_KEYS {
        limiter.retain_recent();
        limiter.shrink_to_fit();
    }
    limiter.check_key(key).is_ok()
}

impl Default for Limits {
    fn default() -> Self {
        Limits::new(Vec::new())
    }
}

impl Limits {
    /// The server's limits; `trusted_proxies` are the TLS proxies whose `X-Forwarded-For` names the client.
    pub fn new(trusted_proxies: Vec<IpAddr>) -> Limits {
        Limits {
            // A sync is a few requests: a burst of 20, then 10 a second.
            device: RateLimiter::keyed(quota(20, 600)),
            // Photos go in many small chunks: a burst of 200, then 100 a second.
            attachment: RateLimiter::keyed(quota(200, 6000)),
            // People log in a few times a day (an office may share an address): 20 at once, then one every 6 seconds.
            login: RateLimiter::keyed(quota(20, 10)),
            // An integration job pages through an export: a burst of 30, then 10 pages a second.
            export: RateLimiter::keyed(quota(30, 600)),
            hashing: tokio::sync::Semaphore::new(hashing_permits()),
            memory: Mutex::new(Vec::new()),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            max_waiting: hashing_permits() * MAX_WAITING_PER_PERMIT,
            backoff: Mutex::new(HashMap::new()),
            known: Mutex::new(std::collections::HashSet::new()),
            trusted_proxies,
        }
    }

    /// A device's sync request.
    pub fn device(&self, device_id: &str) -> Result<(), ApiError> {
        if check(&self.device, &device_id.to_string()) { Ok(()) } else { Err(too_many("too many requests: slow down")) }
    }

    /// A call of the export API, by address (before its token is checked).
    pub fn export(&self, client: IpAddr) -> Result<(), ApiError> {
        if check(&self.export, &client) { Ok(()) } else { Err(too_many("too many export requests: slow down")) }
    }

    /// A device's attachment request.
    pub fn attachment(&self, device_id: &str) -> Result<(), ApiError> {
        if check(&self.attachment, &device_id.to_string()) {
            Ok(())
        } else {
            Err(too_many("too many attachment requests: slow down"))
        }
    }

    /// A login attempt from this address.
    pub fn login(&self, client: IpAddr) -> Result<(), ApiError> {
        if check(&self.login, &client) {
            Ok(())
        } else {
            Err(too_many("too many logins from this address: wait a minute"))
        }
    }

    /// Refuses an enrolment from an address whose failed enrolments (unknown, used or expired
    /// tokens) say wait. Successful enrolments cost nothing here: an office enrolling a
    /// hundred phones is never slowed; a stranger trying tokens is, as a login guesser is.
    pub fn enrol_allowed(&self, client: IpAddr, now: Instant) -> Result<(), ApiError> {
        self.login_allowed(ENROL_KEY, client, now).map_err(|wait| {
            too_many(&format!("too many failed enrolments from this address: wait {} s", wait.as_secs().max(1)))
        })
    }

    /// Records an enrolment's outcome for its address.
    pub fn enrol_result(&self, client: IpAddr, ok: bool, now: Instant) {
        self.login_result(ENROL_KEY, client, ok, now);
    }

    /// Waits for a hashing slot: 503 at once when too many wait already, or when none frees
    /// up within [`HASHING_WAIT`]. Take it before any other work for the request (a database
    /// read), so that a flood turned away costs nothing but this.
    pub async fn hashing_slot(&self) -> Result<HashingSlot<'_>, ApiError> {
        use std::sync::atomic::Ordering;
        let busy = || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::RateLimited, "busy: try again");
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(busy());
        }
        let permit = tokio::time::timeout(HASHING_WAIT, self.hashing.acquire()).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let permit = permit.map_err(|_| busy())?.map_err(|_| busy())?;
        Ok(HashingSlot { limits: self, _permit: permit })
    }

    /// Refuses an attempt on `account` from `client` while a run of failures says wait: the
    /// pair's own, or the account's across every address (a guesser spread over many
    /// addresses). An address the account logged in from before is exempt from the latter,
    /// so its owner is never locked out by strangers.
    pub fn login_allowed(&self, account: &str, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let map = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        let waiting = |key: &(String, IpAddr), free: u32| match map.get(key) {
            Some(f) if now < f.last + f.wait_after(free) => Err(f.last + f.wait_after(free) - now),
            _ => Ok(()),
        };
        waiting(&(account.to_string(), client), FREE_LOGIN_FAILURES)?;
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner()).contains(&(account.to_string(), client));
        if known { Ok(()) } else { waiting(&(account.to_string(), ANY_ADDRESS), FREE_ACCOUNT_FAILURES) }
    }

    /// Records a login's outcome: a success clears the pair's failures and makes the address
    /// known for the account; a failure adds one to the pair and to the account.
    pub fn login_result(&self, account: &str, client: IpAddr, ok: bool, now: Instant) {
        if ok {
            self.backoff.lock().unwrap_or_else(|p| p.into_inner()).remove(&(account.to_string(), client));
            let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            if known.len() >= MAX_KEYS {
                known.clear();
            }
            known.insert((account.to_string(), client));
            return;
        }
        let mut map = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() + 2 > MAX_KEYS {
            map.retain(|_, f| now.duration_since(f.last) < MAX_LOGIN_BACKOFF);
        }
        if map.len() + 2 > MAX_KEYS {
            // Still full of recent failures (a distributed flood): forget the oldest half.
            let mut ages: Vec<Instant> = map.values().map(|f| f.last).collect();
            ages.sort();
            let cut = ages[ages.len() / 2];
            map.retain(|_, f| f.last > cut);
        }
        for key in [(account.to_string(), client), (account.to_string(), ANY_ADDRESS)] {
            let entry = map.entry(key).or_insert(Failures { count: 0, last: now });
            entry.count = entry.count.saturating_add(1);
            entry.last = now;
        }
    }

    /// The client's address: the peer's, or, when the peer is a trusted proxy, the last
    /// address its `X-Forwarded-For` names. Unknown (no connection info) reads as 0.0.0.0.
    pub fn client(&self, connection: Option<&ConnectInfo<SocketAddr>>, headers: &HeaderMap) -> IpAddr {
        let peer = connection.map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
        if !self.trusted_proxies.contains(&peer) {
            return peer;
        }
        // The entry the proxy appended is the last; anything before it the client wrote.
        let last = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).next_back();
        last.and_then(|v| v.rsplit(',').next()).and_then(|a| a.trim().parse::<IpAddr>().ok()).unwrap_or(peer)
    }
}

/// Makes the calling thread yield the CPU to every other (nice 19). Best effort, Unix only.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority with PRIO_PROCESS and 0 changes the calling thread's nice value (on
    // Linux a thread's own); it takes no pointers.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
}

/// A held hashing slot ([`Limits::hashing_slot`]).
pub struct HashingSlot<'a> {
    limits: &'a Limits,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl HashingSlot<'_> {
    /// Runs `hash` (Argon2) on a blocking thread, in the slot's working memory, reused from
    /// call to call: the server's hashing memory is one buffer a slot.
    pub async fn run<T: Send + 'static>(
        self,
        hash: impl FnOnce(&mut Vec<argon2::Block>) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        // As many buffers as slots: a slot holder always finds one (or makes it the first time).
        let pool = &self.limits.memory;
        let mut memory = pool.lock().unwrap_or_else(|p| p.into_inner()).pop().unwrap_or_default();
        // Its own thread, at the lowest CPU priority: while a flood of logins hashes, device
        // syncs and pages get the processor first.
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("doorstep-hash".into())
            .spawn(move || {
                lower_this_threads_priority();
                let result = hash(&mut memory);
                let _ = tx.send((result, memory));
            })
            .map_err(ApiError::internal)?;
        let (result, memory) = rx.await.map_err(|_| ApiError::internal("a password hash failed"))?;
        pool.lock().unwrap_or_else(|p| p.into_inner()).push(memory);
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_logins_back_off_per_account_and_address_and_never_for_good() {
        let limits = Limits::default();
        let (attacker, owner) = (IpAddr::from([10, 0, 0, 9]), IpAddr::from([10, 0, 0, 1]));
        let t0 = Instant::now();
        for _ in 0..FREE_LOGIN_FAILURES {
            assert!(limits.login_allowed("admin", attacker, t0).is_ok());
            limits.login_result("admin", attacker, false, t0);
        }
        limits.login_result("admin", attacker, false, t0);
        let wait = limits.login_allowed("admin", attacker, t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        // The account's owner, elsewhere, is not locked out by the attacker's failures.
        assert!(limits.login_allowed("admin", owner, t0).is_ok());
        // The wait doubles with each failure, up to a cap, and then runs out.
        for _ in 0..30 {
            limits.login_result("admin", attacker, false, t0);
        }
        let wait = limits.login_allowed("admin", attacker, t0).unwrap_err();
        assert_eq!(wait, MAX_LOGIN_BACKOFF);
        assert!(limits.login_allowed("admin", attacker, t0 + MAX_LOGIN_BACKOFF).is_ok());
        // A success clears the pair.
        limits.login_result("admin", attacker, true, t0);
        assert!(limits.login_allowed("admin", attacker, t0).is_ok());
    }

    #[test]
    fn a_guesser_spread_over_many_addresses_slows_the_account_but_not_its_known_addresses() {
        let limits = Limits::default();
        let owner = IpAddr::from([10, 0, 0, 1]);
        let t0 = Instant::now();
        limits.login_result("admin", owner, true, t0);
        for i in 0..FREE_ACCOUNT_FAILURES + 2 {
            let guesser = IpAddr::from([10, 1, (i / 250) as u8, (i % 250) as u8]);
            limits.login_result("admin", guesser, false, t0);
        }
        let fresh = IpAddr::from([10, 9, 9, 9]);
        assert!(limits.login_allowed("admin", fresh, t0).is_err(), "a new address waits");
        assert!(limits.login_allowed("admin", owner, t0).is_ok(), "the owner's address does not");
        assert!(limits.login_allowed("other", fresh, t0).is_ok(), "other accounts are untouched");
        assert!(limits.login_allowed("admin", fresh, t0 + MAX_LOGIN_BACKOFF).is_ok(), "and never for good");
    }

    #[test]
    fn the_backoff_map_stays_bounded() {
        let limits = Limits::default();
        let now = Instant::now();
        for i in 0..(MAX_KEYS as u32 + 500) {
            limits.login_result(&format!("user{i}"), IpAddr::from([10, 0, 0, 1]), false, now);
        }
        assert!(limits.backoff.lock().unwrap().len() <= MAX_KEYS);
    }

    #[test]
    fn the_client_is_the_peer_unless_the_peer_is_a_trusted_proxy() {
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let limits = Limits::new(vec![proxy]);
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "1.2.3.4, 5.6.7.8".parse().unwrap());
        let from = |ip: IpAddr| ConnectInfo(SocketAddr::new(ip, 4000));
        assert_eq!(limits.client(Some(&from(proxy)), &headers), "5.6.7.8".parse::<IpAddr>().unwrap());
        let stranger: IpAddr = "9.9.9.9".parse().unwrap();
        assert_eq!(limits.client(Some(&from(stranger)), &headers), stranger, "a stranger's header is ignored");
        assert_eq!(limits.client(None, &headers), IpAddr::from([0, 0, 0, 0]));
    }

    #[test]
    fn a_device_gets_its_burst_then_is_slowed() {
        let limits = Limits::default();
        assert!((0..20).all(|_| limits.device("dev-1").is_ok()));
        assert!(limits.device("dev-1").is_err());
        assert!(limits.device("dev-2").is_ok(), "per device");
    }
}

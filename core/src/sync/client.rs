//! The sync client: enrol once, then push dirty households and pull the area's changes.

use std::sync::atomic::{AtomicBool, Ordering};

use super::Transport;
use super::protocol::{
    DocPush, DocRefusal, EnrolRequest, EnrolResponse, EnrolmentCode, MAX_PUSH_DOCS, MAX_RESEND_DOCS, MAX_TRANSFER_ASKS,
    PROTOCOL_VERSION, SnapshotPosition, SyncRequest, SyncResponse, TransferOutcome, TransferStatus, area_within,
    decode, encode,
};
use crate::error::{Error, Result};
use crate::store::Store;

/// How often a sync waits out the server's rate limit before giving up.
const MAX_RATE_LIMIT_RETRIES: u32 = 5;
/// The first wait after a rate-limit answer; each further one is longer.
const RATE_LIMIT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(200);

/// Largest push body the client builds; more dirty documents go in the next request.
const PUSH_PAGE_BYTES: usize = 2 * 1024 * 1024;

/// Progress of a running sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncProgress {
    /// Documents pushed so far.
    pub pushed: usize,
    /// Documents pulled so far.
    pub pulled: usize,
    /// Requests made so far.
    pub round_trips: usize,
    /// Pulled documents quarantined so far (their changes did not load).
    pub quarantined: usize,
}

/// Told about progress while a sync runs.
pub trait SyncObserver: Send + Sync {
    /// Called after each round trip.
    fn progress(&self, progress: &SyncProgress);
}

/// What a finished sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Documents pushed and taken by the server.
    pub pushed: usize,
    /// Documents pulled.
    pub pulled: usize,
    /// Requests made.
    pub round_trips: usize,
    /// Request bytes sent.
    pub bytes_sent: usize,
    /// Response bytes received.
    pub bytes_received: usize,
    /// Dirty documents held back because they lie outside this device's areas.
    pub skipped_outside_areas: usize,
    /// Pushed documents the server refused, with its reasons; they stay dirty on the device
    /// (and are offered again at the next sync), while the rest went through.
    pub refused: Vec<DocRefusal>,
    /// Pulled documents whose changes did not load, with why: kept aside on the device (see
    /// [`Store::quarantined`]) while the rest of their page went in. The next sync asks the
    /// server for their whole saved documents.
    pub quarantined: Vec<(String, String)>,
    /// Quarantined changes that loaded in this sync and were let in.
    pub released: usize,
    /// Households removed from this device because they moved out of its areas.
    pub departed: usize,
    /// Households that moved out of this device's areas but are kept until the server has
    /// their edits made here (id, the area they went to).
    pub departing: Vec<(String, String)>,
    /// Transfer requests an operator decided since the last sync.
    pub transfers_decided: Vec<TransferOutcome>,
}

pub(crate) const KEY_CREDENTIAL: &str = "credential";
/// Where a compact first sync stands (JSON of a [`SnapshotPosition`]; empty when none is).
const KEY_SNAPSHOT: &str = "snapshot";
const KEY_AREAS: &str = "areas";
const KEY_CURSOR: &str = "cursor";
const KEY_SERVER: &str = "server_url";
const KEY_SLIP: &str = "slip_key";
/// `zstd` once the server said it takes compressed requests.
const KEY_REQUEST_ENCODING: &str = "request_encoding";

/// Remembers that the server takes zstd request bodies, once a response said so.
fn note_request_encoding(store: &Store, transport: &dyn Transport) -> Result<()> {
    if transport.server_takes_zstd()
        && store.sync_value(KEY_REQUEST_ENCODING)?.as_deref() != Some(super::transport::ZSTD)
    {
        store.set_sync_value(KEY_REQUEST_ENCODING, super::transport::ZSTD)?;
    }
    Ok(())
}

/// Exchanges an enrolment code's one-time token for a device credential, stored sealed.
pub fn enrol(store: &mut Store, transport: &dyn Transport, code: &EnrolmentCode) -> Result<Vec<String>> {
    store.editor()?; // must be unlocked: the credential is sealed with the data key
    let req = EnrolRequest {
        protocol: PROTOCOL_VERSION,
        token: code.token.clone(),
        device_id: store.device_id().to_string(),
    };
    let resp: EnrolResponse = decode(&transport.post("/v1/enrol", encode(&req), None)?)?;
    store.set_sync_secret(KEY_CREDENTIAL, &resp.credential)?;
    store.set_sync_value(KEY_AREAS, &serde_json::to_string(&resp.areas).unwrap_or_default())?;
    store.set_sync_value(KEY_SERVER, &code.url)?;
    store.set_sync_value(KEY_CURSOR, "0")?;
    if let Some(key) = resp.slip_key.filter(|k| k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit())) {
        store.set_sync_value(KEY_SLIP, &key)?;
    }
    note_request_encoding(store, transport)?;
    Ok(resp.areas)
}

/// Verifies a household verification slip's QR text offline, with the key this device
/// received from its server at enrolment.
pub fn verify_slip(store: &Store, text: &str) -> Result<crate::slip::Slip> {
    let key = store
        .sync_value(KEY_SLIP)?
        .and_then(|k| hex::decode(k).ok())
        .ok_or_else(|| Error::InvalidArgument("this device has no slip key: enrol it first".into()))?;
    crate::slip::Slip::verify(text, &key)
}

/// Runs one sync. Cancelling (setting `cancel`) stops it between round trips;
/// whatever was committed stays committed and the next sync resumes.
///
/// If the server says the device was revoked, with a statement signed by the key this
/// device received at enrolment, the local store is wiped and [`Error::Revoked`]
/// returned; an unsigned or foreign "revoked" wipes nothing and returns
/// [`Error::UnverifiedRevocation`].
pub fn sync(
    store: &mut Store,
    transport: &dyn Transport,
    observer: Option<&dyn SyncObserver>,
    cancel: &AtomicBool,
) -> Result<SyncReport> {
    sync_shared(&Exclusive(std::cell::RefCell::new(store)), transport, observer, cancel)
}

/// How a sync reaches a store that others use meanwhile: each step takes it for a moment,
/// never across a network round trip, so the app's other calls are not kept waiting.
pub trait StoreAccess {
    /// Runs `f` with the store held.
    fn with_store<R>(&self, f: impl FnOnce(&mut Store) -> Result<R>) -> Result<R>;
}

/// A store the caller holds alone for the whole sync.
struct Exclusive<'a>(std::cell::RefCell<&'a mut Store>);

impl StoreAccess for Exclusive<'_> {
    fn with_store<R>(&self, f: impl FnOnce(&mut Store) -> Result<R>) -> Result<R> {
        f(&mut self.0.borrow_mut())
    }
}

/// [`sync`] over a shared store: the store is held only while local work runs, and let go
/// while a request is on the network.
pub fn sync_shared(
    store: &impl StoreAccess,
    transport: &dyn Transport,
    observer: Option<&dyn SyncObserver>,
    cancel: &AtomicBool,
) -> Result<SyncReport> {
    let (credential, areas, transfer_key, zstd, mut resend, mut transfers, user) = store.with_store(|store| {
        let credential =
            store.sync_secret(KEY_CREDENTIAL)?.ok_or_else(|| Error::InvalidArgument("not enrolled".into()))?;
        let areas: Vec<String> = store
            .sync_value(KEY_AREAS)?
            .and_then(|a| serde_json::from_str(&a).ok())
            .ok_or_else(|| Error::InvalidArgument("not enrolled".into()))?;
        let transfer_key = Some(hex::encode(store.transfer_key()?));
        // Compressed requests only to a server that said it takes them (an older one would refuse).
        let zstd = store.sync_value(KEY_REQUEST_ENCODING)?.as_deref() == Some(super::transport::ZSTD);
        // Quarantined documents are asked for whole, once a sync, in its first request.
        let resend: Vec<String> = store
            .quarantined()?
            .into_iter()
            .map(|q| q.doc_id)
            .filter(|id| crate::record::check_id(id).is_ok())
            .take(MAX_RESEND_DOCS)
            .collect();
        // Transfer requests without an outcome are sent once a sync, in its first request.
        let transfers = store.transfer_asks(MAX_TRANSFER_ASKS)?;
        let user = store.editor()?.user;
        Ok((credential, areas, transfer_key, zstd, resend, transfers, user))
    })?;
    transport.set_compress_requests(zstd);
    let wire_before = transport.wire_bytes();
    // A first sync's next page is asked for while this one is stored (its request is
    // known once this one's answer is in); the threads end with this scope.
    std::thread::scope(|scope| {
        let mut ahead: Option<Ahead<'_>> = None;
        let mut report = SyncReport::default();
        let mut rate_limited = 0;
        // Whether this sync may still ask for a compact first sync (until one answer ends it).
        let mut first_sync_open = true;
        loop {
            if cancel.load(Ordering::SeqCst) {
                return Err(Error::Cancelled);
            }
            let held = report.refused.len();
            let (cursor, snapshot, held_back, pending) = store.with_store(|store| {
                let cursor: u64 = store.sync_value(KEY_CURSOR)?.and_then(|c| c.parse().ok()).unwrap_or(0);
                // With no cursor yet, a compact first sync: whole saved documents, then the feed.
                // Nothing is pushed until its documents are in (they would come back whole).
                let snapshot = (cursor == 0 && first_sync_open).then(|| {
                    store
                        .sync_value(KEY_SNAPSHOT)
                        .ok()
                        .flatten()
                        .and_then(|s| serde_json::from_str::<SnapshotPosition>(&s).ok())
                        .unwrap_or_default()
                });
                let in_first_sync = snapshot.is_some();
                let held_back = in_first_sync && !store.pending_pushes(1)?.is_empty();
                // Documents the server refused in this sync are not offered again until the next one.
                let pending = if in_first_sync { Vec::new() } else { store.pending_pushes(MAX_PUSH_DOCS + held)? };
                Ok((cursor, snapshot, held_back, pending))
            })?;
            let in_first_sync = snapshot.is_some();
            let pending: Vec<_> = pending
                .into_iter()
                .filter(|p| !report.refused.iter().any(|r| r.doc_id == p.doc_id))
                .take(MAX_PUSH_DOCS)
                .collect();
            let more_to_push = pending.len() == MAX_PUSH_DOCS;
            let mut push = Vec::new();
            let mut pushed_heads: Vec<(String, Vec<automerge::ChangeHash>)> = Vec::new();
            let mut bytes = 0;
            for p in pending {
                if !areas.iter().any(|a| area_within(&p.area, a)) {
                    report.skipped_outside_areas += 1;
                    continue;
                }
                if bytes > 0 && bytes + p.changes.len() > PUSH_PAGE_BYTES {
                    break;
                }
                bytes += p.changes.len();
                pushed_heads.push((p.doc_id.clone(), p.heads));
                push.push(DocPush { doc_id: p.doc_id, area: p.area, changes: p.changes });
            }
            let pushed_now = push.len();
            let body = encode(&SyncRequest {
                protocol: PROTOCOL_VERSION,
                cursor,
                user: user.clone(),
                push,
                transfer_key: transfer_key.clone(),
                snapshot,
                resend: std::mem::take(&mut resend),
                // Once the device's own households can go too (not during a first sync).
                transfers: if in_first_sync { Vec::new() } else { std::mem::take(&mut transfers) },
            });
            report.bytes_sent += body.len();
            let answer = match ahead.take() {
                Some(sent) if sent.body == body => {
                    sent.answer.join().unwrap_or_else(|_| Err(Error::Network("the request thread failed".into())))
                }
                other => {
                    // Asked ahead for something else (it is not used), or not asked ahead.
                    if let Some(sent) = other {
                        let _ = sent.answer.join();
                    }
                    transport.post("/v1/sync", body, Some(&credential))
                }
            };
            let raw = match answer {
                Err(Error::RevocationClaimed { statement }) => {
                    // Wipe only on the enrolling server's signature over this device's id.
                    return store.with_store(|store| {
                        let key = store.sync_value(KEY_SLIP)?.and_then(|k| hex::decode(k).ok()).ok_or_else(|| {
                            Error::UnverifiedRevocation("this device holds no server key to check it against".into())
                        })?;
                        let statement = statement.ok_or_else(|| {
                            Error::UnverifiedRevocation("the answer carries no signed statement".into())
                        })?;
                        super::revocation::Revocation::verify(&statement, &key, store.device_id())?;
                        store.wipe()?;
                        Err(Error::Revoked)
                    });
                }
                // Slowed down by the server: wait a little and try again, a few times.
                Err(Error::Server { status: 429, .. }) if rate_limited < MAX_RATE_LIMIT_RETRIES => {
                    rate_limited += 1;
                    std::thread::sleep(RATE_LIMIT_BACKOFF * rate_limited);
                    continue;
                }
                other => other?,
            };
            report.bytes_received += raw.len();
            report.round_trips += 1;
            if !zstd && transport.server_takes_zstd() {
                transport.set_compress_requests(true);
            }
            let resp: SyncResponse = decode(&raw)?;
            if resp.protocol != PROTOCOL_VERSION {
                return Err(Error::Protocol(format!("server answered with protocol {}", resp.protocol)));
            }
            report.refused.extend(resp.refused.iter().cloned());
            let mut acked = Vec::with_capacity(resp.acked.len());
            for ack in &resp.acked {
                let heads =
                    ack.hashes().ok_or_else(|| Error::Protocol("malformed heads in an acknowledgement".into()))?;
                acked.push((ack.doc_id.as_str(), heads));
            }
            if let Some(p) = resp.pull.iter().find(|p| !areas.iter().any(|a| area_within(&p.area, a))) {
                return Err(Error::Protocol(format!("server sent {} outside this device's areas", p.doc_id)));
            }
            // The pulled changes and the new cursor commit together: the cursor never runs ahead.
            let page: Vec<(&str, &[u8])> =
                resp.pull.iter().map(|p| (p.doc_id.as_str(), p.changes.as_slice())).collect();
            let position = match &resp.snapshot {
                Some(p) => serde_json::to_string(p).map_err(|e| Error::Protocol(e.to_string()))?,
                None => String::new(),
            };
            // A household that moved within this device's areas stays (its new area's row brings it).
            let departed: Vec<(&str, &str)> = resp
                .departed
                .iter()
                .filter(|d| !areas.iter().any(|a| area_within(&d.moved_to, a)))
                .map(|d| (d.doc_id.as_str(), d.moved_to.as_str()))
                .collect();
            // In a first sync, the next page's request is the same whatever this page holds.
            if in_first_sync && resp.more && resp.snapshot.is_some() && !cancel.load(Ordering::SeqCst) {
                let body = encode(&SyncRequest {
                    protocol: PROTOCOL_VERSION,
                    cursor: resp.next_cursor,
                    user: user.clone(),
                    push: Vec::new(),
                    transfer_key: transfer_key.clone(),
                    snapshot: resp.snapshot.clone(),
                    resend: Vec::new(),
                    transfers: Vec::new(),
                });
                let (sent, credential) = (body.clone(), credential.as_str());
                ahead = Some(Ahead {
                    body,
                    answer: scope.spawn(move || transport.post("/v1/sync", sent, Some(credential))),
                });
            }
            let unrefused = |p: &crate::store::PendingPush| !report.refused.iter().any(|r| r.doc_id == p.doc_id);
            let (batch, dirty_left) = store.with_store(|store| {
                if !resp.directory.is_empty() {
                    store.set_directory(&resp.directory)?;
                }
                let pushed: std::collections::HashMap<&str, &[automerge::ChangeHash]> =
                    pushed_heads.iter().map(|(id, h)| (id.as_str(), h.as_slice())).collect();
                let acks: Vec<(&str, &[automerge::ChangeHash], &[automerge::ChangeHash])> = acked
                    .iter()
                    .map(|(doc_id, heads)| (*doc_id, heads.as_slice(), pushed.get(doc_id).copied().unwrap_or(&[])))
                    .collect();
                store.mark_synced_all(&acks)?;
                let batch = store.apply_remote_batch(
                    &page,
                    &departed,
                    &[(KEY_CURSOR, &resp.next_cursor.to_string()), (KEY_SNAPSHOT, &position)],
                )?;
                store.record_transfer_outcomes(&resp.transfers)?;
                let dirty_left = pushed_now > 0
                    && !more_to_push
                    && bytes > 0
                    && store.pending_pushes(report.refused.len() + 1)?.iter().any(unrefused);
                Ok((batch, dirty_left))
            })?;
            report
                .transfers_decided
                .extend(resp.transfers.iter().filter(|t| t.status != TransferStatus::Pending).cloned());
            report.departed += batch.departed;
            report.released += batch.released;
            report.quarantined.extend(batch.quarantined);
            report.pushed += pushed_now - resp.refused.len().min(pushed_now);
            report.pulled += resp.pull.len();
            let progress = SyncProgress {
                pushed: report.pushed,
                pulled: report.pulled,
                round_trips: report.round_trips,
                quarantined: report.quarantined.len(),
            };
            if let Some(o) = observer {
                o.progress(&progress);
            }
            if in_first_sync && resp.snapshot.is_none() {
                first_sync_open = false;
            }
            let still_dirty = held_back || pushed_now > 0 && more_to_push || dirty_left;
            if !resp.more && !still_dirty {
                break;
            }
            if report.round_trips > 100_000 {
                return Err(Error::Protocol("sync did not converge".into()));
            }
        }
        // Households that left the areas while holding edits: gone once the server has them.
        store.with_store(|store| {
            report.departed += store.finish_departures()?;
            report.departing = store.departing()?;
            note_request_encoding(store, transport)
        })?;
        // What crossed the wire, compressed, when the transport counts it.
        let wire_after = transport.wire_bytes();
        if wire_after.0 > wire_before.0 {
            report.bytes_sent = wire_after.0 - wire_before.0;
            report.bytes_received = wire_after.1 - wire_before.1;
        }
        Ok(report)
    })
}

/// A request sent before its turn, and the thread that waits for its answer.
struct Ahead<'scope> {
    body: Vec<u8>,
    answer: std::thread::ScopedJoinHandle<'scope, Result<Vec<u8>>>,
}

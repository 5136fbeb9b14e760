//! Attachment sync: sealed photo blobs travel apart from records, in bounded
//! chunks, and resume where they stopped. A record sync never waits on them:
//! run [`sync_attachments`] after [`super::sync`], when the network allows.
//!
//! Uploads resume from what the server holds (it says so in every answer);
//! downloads fetch thumbnails eagerly and full photos on demand
//! ([`fetch_blob`]), and check every blob against its id before storing it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::Transport;
use super::client::KEY_CREDENTIAL;
use super::protocol::{BLOB_CHUNK_BYTES, BlobChunk, BlobGet, BlobPut, BlobPutAck, PROTOCOL_VERSION, decode, encode};
use crate::attachment::MAX_BLOB_BYTES;
use crate::error::{Error, Result};
use crate::store::{PhotoSize, Store};

/// Times one step is retried after a network failure before the sync gives up (it resumes next time).
const RETRIES: u32 = 3;
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// What an attachment sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachmentReport {
    /// Blobs the server now holds that it lacked.
    pub uploaded: usize,
    /// Blobs downloaded.
    pub downloaded: usize,
    /// Blob bytes sent (chunks only).
    pub bytes_sent: u64,
    /// Blob bytes received.
    pub bytes_received: u64,
    /// Requests made.
    pub requests: usize,
}

fn credential(store: &Store) -> Result<String> {
    store.sync_secret(KEY_CREDENTIAL)?.ok_or_else(|| Error::InvalidArgument("not enrolled".into()))
}

/// Posts with a few retries on network failures and rate limiting.
fn post(
    transport: &dyn Transport,
    path: &str,
    body: Vec<u8>,
    credential: &str,
    report: &mut AttachmentReport,
) -> Result<Vec<u8>> {
    let mut attempt = 0;
    loop {
        report.requests += 1;
        match transport.post(path, body.clone(), Some(credential)) {
            Err(Error::Network(_)) | Err(Error::Server { status: 429, .. }) if attempt < RETRIES => {
                attempt += 1;
                std::thread::sleep(RETRY_PAUSE * attempt);
            }
            other => return other,
        }
    }
}

fn upload(
    transport: &dyn Transport,
    credential: &str,
    id: &str,
    sealed: &[u8],
    report: &mut AttachmentReport,
    cancel: &AtomicBool,
) -> Result<()> {
    let total = sealed.len() as u64;
    let put = |offset: u64, chunk: &[u8], report: &mut AttachmentReport| -> Result<BlobPutAck> {
        let body =
            encode(&BlobPut { protocol: PROTOCOL_VERSION, id: id.to_string(), total, offset, chunk: chunk.to_vec() });
        report.bytes_sent += chunk.len() as u64;
        decode(&post(transport, "/v1/attachments/put", body, credential, report)?)
    };
    // Ask first: after a cut, the server already holds part of it.
    let mut ack = put(0, &[], report)?;
    while !ack.complete {
        if cancel.load(Ordering::SeqCst) {
            return Err(Error::Cancelled);
        }
        let from = ack.received.min(total) as usize;
        let to = (from + BLOB_CHUNK_BYTES).min(sealed.len());
        let next = put(from as u64, &sealed[from..to], report)?;
        if !next.complete && next.received <= ack.received {
            return Err(Error::Protocol(format!("the server did not take attachment {id}")));
        }
        ack = next;
    }
    Ok(())
}

fn download(
    transport: &dyn Transport,
    credential: &str,
    id: &str,
    report: &mut AttachmentReport,
    cancel: &AtomicBool,
) -> Result<Vec<u8>> {
    let mut blob = Vec::new();
    loop {
        if cancel.load(Ordering::SeqCst) {
            return Err(Error::Cancelled);
        }
        let body = encode(&BlobGet {
            protocol: PROTOCOL_VERSION,
            id: id.to_string(),
            offset: blob.len() as u64,
            max: BLOB_CHUNK_BYTES as u64,
        });
        let chunk: BlobChunk = decode(&post(transport, "/v1/attachments/get", body, credential, report)?)?;
        if chunk.offset != blob.len() as u64 || chunk.total > MAX_BLOB_BYTES as u64 {
            return Err(Error::Protocol(format!("bad chunk of attachment {id}")));
        }
        if chunk.chunk.is_empty() && (blob.len() as u64) < chunk.total {
            return Err(Error::Protocol(format!("empty chunk of attachment {id}")));
        }
        report.bytes_received += chunk.chunk.len() as u64;
        blob.extend_from_slice(&chunk.chunk);
        if blob.len() as u64 >= chunk.total {
            if blob.len() as u64 > chunk.total {
                return Err(Error::Protocol(format!("attachment {id} is longer than announced")));
            }
            return Ok(blob);
        }
    }
}

/// Uploads every blob the server lacks, then downloads the thumbnails this device lacks.
/// Cancelling stops between chunks; what is done stays done. A blob the server refuses for
/// the device's quota waits on the phone; the others (a thumbnail fits where its photo does
/// not) still go and come, and the refusal is returned at the end.
pub fn sync_attachments(store: &Store, transport: &dyn Transport, cancel: &AtomicBool) -> Result<AttachmentReport> {
    let credential = credential(store)?;
    let mut report = AttachmentReport::default();
    let mut held_back = std::collections::HashSet::new();
    let mut over_quota = None;
    loop {
        let pending: Vec<_> = store
            .pending_uploads(16 + held_back.len() as u32)?
            .into_iter()
            .filter(|p| !held_back.contains(&p.id))
            .collect();
        if pending.is_empty() {
            break;
        }
        for p in pending {
            match upload(transport, &credential, &p.id, &p.sealed, &mut report, cancel) {
                Ok(()) => {
                    store.mark_uploaded(&p.id)?;
                    report.uploaded += 1;
                }
                // The server takes a blob only once a household of this device's area that refers
                // to it has reached it: the next sync uploads it.
                Err(Error::Server { status: 404, .. }) => {
                    held_back.insert(p.id);
                }
                // Over the device's quota (or too large): this one waits, the rest go on.
                Err(e @ Error::Server { status: 413, .. }) => {
                    held_back.insert(p.id);
                    over_quota = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
    }
    let mut failed = std::collections::HashSet::new();
    loop {
        let missing: Vec<String> =
            store.missing_blobs(PhotoSize::Thumb, 64)?.into_iter().filter(|id| !failed.contains(id)).collect();
        if missing.is_empty() {
            break;
        }
        for id in missing {
            match download(transport, &credential, &id, &mut report, cancel) {
                Ok(blob) => {
                    store.accept_blob(&id, &blob, true)?;
                    report.downloaded += 1;
                }
                // Not uploaded yet by the device that took it: try again next time.
                Err(Error::Server { status: 404, .. }) => {
                    failed.insert(id);
                }
                Err(e) => return Err(e),
            }
        }
    }
    match over_quota {
        Some(refusal) => Err(refusal),
        None => Ok(report),
    }
}

/// Downloads one blob on demand (a full photo the user opens). Returns whether it was new.
pub fn fetch_blob(store: &Store, transport: &dyn Transport, id: &str, cancel: &AtomicBool) -> Result<bool> {
    if store.sealed_blob(id)?.is_some() {
        return Ok(false);
    }
    let credential = credential(store)?;
    let mut report = AttachmentReport::default();
    let blob = download(transport, &credential, id, &mut report, cancel)?;
    store.accept_blob(id, &blob, true)
}

//! The sync wire format, shared by the client and the server.
//!
//! Bodies are CBOR (`application/cbor`): compact, with native byte strings for
//! Automerge changes. See docs/SYNC-PROTOCOL.md.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest attachment chunk in one request or answer.
pub const BLOB_CHUNK_BYTES: usize = 256 * 1024;
/// Largest request or response body, in bytes.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Most documents pushed in one request.
pub const MAX_PUSH_DOCS: usize = 500;
/// Largest change set for one document in one request.
pub const MAX_DOC_CHANGE_BYTES: usize = 1024 * 1024;
/// Target size of one pull page.
pub const PULL_PAGE_BYTES: usize = 2 * 1024 * 1024;
/// The CBOR content type.
pub const CONTENT_TYPE: &str = "application/cbor";

/// What an enrolment QR code holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolmentCode {
    /// Protocol version.
    pub v: u32,
    /// The server's base URL.
    pub url: String,
    /// The area the device will serve.
    pub area: String,
    /// One-time token.
    pub token: String,
}

impl EnrolmentCode {
    /// The QR text: `DOORSTEP-ENROL:` and JSON.
    pub fn to_qr_text(&self) -> String {
        format!("DOORSTEP-ENROL:{}", serde_json::to_string(self).unwrap_or_default())
    }

    /// Reads the enrolment code from a photo (PNG or JPEG) of its QR code.
    pub fn from_image(image: &[u8]) -> Result<EnrolmentCode> {
        let texts = crate::qr::decode_image(image)?;
        let mut last = Error::InvalidArgument("no enrolment code in the image".into());
        for t in texts {
            match EnrolmentCode::parse(&t) {
                Ok(code) => return Ok(code),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Parses the QR text.
    pub fn parse(text: &str) -> Result<EnrolmentCode> {
        let json = text
            .trim()
            .strip_prefix("DOORSTEP-ENROL:")
            .ok_or_else(|| Error::InvalidArgument("not a Doorstep enrolment code".into()))?;
        let code: EnrolmentCode =
            serde_json::from_str(json).map_err(|e| Error::InvalidArgument(format!("bad enrolment code: {e}")))?;
        if code.v != PROTOCOL_VERSION {
            return Err(Error::InvalidArgument(format!("enrolment code version {} is not supported", code.v)));
        }
        crate::area::Area::parse(&code.area)?;
        check_server_url(&code.url)?;
        Ok(code)
    }
}

/// `POST /v1/enrol`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolRequest {
    /// Protocol version.
    pub protocol: u32,
    /// The one-time token from the QR code.
    pub token: String,
    /// The device's own id.
    pub device_id: String,
}

/// Answer to an enrolment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolResponse {
    /// Protocol version.
    pub protocol: u32,
    /// The long-lived device credential (bearer token).
    pub credential: String,
    /// Areas the device may read and write.
    pub areas: Vec<String>,
    /// The server's Ed25519 public key for verification slips, hex (absent from older servers).
    #[serde(default)]
    pub slip_key: Option<String>,
}

/// One document's new changes, pushed by a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocPush {
    /// Household id.
    pub doc_id: String,
    /// Its area.
    pub area: String,
    /// Automerge changes since the heads the server acknowledged.
    #[serde(with = "serde_bytes_vec")]
    pub changes: Vec<u8>,
}

/// `POST /v1/sync`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    /// Protocol version.
    pub protocol: u32,
    /// The last feed position the device committed.
    pub cursor: u64,
    /// The user (profile label) syncing, for the audit log.
    pub user: String,
    /// Dirty documents.
    pub push: Vec<DocPush>,
    /// The device's X25519 public key for offline bundles, hex (the server lists it in
    /// the area's directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_key: Option<String>,
    /// Sent by a device that takes a compact first sync, with `cursor` 0: the server answers
    /// with the whole saved documents of the device's areas instead of the feed's history.
    /// The position is the one the last answer gave (the default one to begin). Servers that
    /// predate it ignore it and replay the feed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotPosition>,
    /// Households whose pulled changes did not load on the device (quarantined): the server
    /// adds each one's whole saved document to this answer's pull, if it lies in the
    /// device's areas. At most [`MAX_RESEND_DOCS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resend: Vec<String>,
    /// Transfer requests this device made that have no outcome yet (sent again each sync
    /// until they have one; the server keeps the first copy). At most [`MAX_TRANSFER_ASKS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transfers: Vec<TransferAsk>,
}

impl SyncRequest {
    /// A request of this protocol version with the optional fields left out: no transfer
    /// key, no first-sync position, nothing to resend.
    pub fn new(cursor: u64, user: impl Into<String>, push: Vec<DocPush>) -> SyncRequest {
        SyncRequest {
            protocol: PROTOCOL_VERSION,
            cursor,
            user: user.into(),
            push,
            transfer_key: None,
            snapshot: None,
            resend: Vec::new(),
            transfers: Vec::new(),
        }
    }
}

/// Most households one request may ask to be sent again whole.
pub const MAX_RESEND_DOCS: usize = 100;

/// Most transfer requests one sync request may carry.
pub const MAX_TRANSFER_ASKS: usize = 100;

/// A device's request to move a household out of its areas, for an operator whose scope
/// covers both areas to approve or refuse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferAsk {
    /// The device's id for the request (a UUID it made).
    pub request_id: String,
    /// Household id.
    pub doc_id: String,
    /// The area the household would move to.
    pub to_area: String,
    /// Why, in the officer's words (at most [`MAX_TRANSFER_REASON_CHARS`]).
    pub reason: String,
}

/// Longest reason a transfer request may give.
pub const MAX_TRANSFER_REASON_CHARS: usize = 500;

/// Where a transfer request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferStatus {
    /// Waiting for an operator.
    Pending,
    /// Approved: the household moved.
    Approved,
    /// Refused: the household stays where it was.
    Refused,
}

impl TransferStatus {
    /// Its name on the wire and in stores.
    pub fn as_str(self) -> &'static str {
        match self {
            TransferStatus::Pending => "pending",
            TransferStatus::Approved => "approved",
            TransferStatus::Refused => "refused",
        }
    }

    /// Reads a name [`TransferStatus::as_str`] wrote.
    pub fn parse(text: &str) -> Option<TransferStatus> {
        match text {
            "pending" => Some(TransferStatus::Pending),
            "approved" => Some(TransferStatus::Approved),
            "refused" => Some(TransferStatus::Refused),
            _ => None,
        }
    }
}

/// The server's answer about one transfer request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferOutcome {
    /// The device's id for the request.
    pub request_id: String,
    /// Where it stands.
    pub status: TransferStatus,
    /// The operator's note, or why the server refused it outright.
    #[serde(default)]
    pub note: String,
}

/// A household that left the device's areas: the device removes its copy (after pushing
/// its own edits to it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocDeparture {
    /// Household id.
    pub doc_id: String,
    /// The area it moved to.
    pub moved_to: String,
}

/// How far a compact first sync has come: the device takes its areas' saved documents page
/// by page in (area, household id) order, then the feed after `mark`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPosition {
    /// The areas' last feed position when the first page was read (0 before it): every
    /// change at or before it is in the documents sent, later ones come from the feed.
    pub mark: u64,
    /// Area of the last document sent.
    pub after_area: String,
    /// Id of the last document sent.
    pub after_doc: String,
}

/// A device of the area, as other devices need it to exchange offline bundles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryEntry {
    /// Device id.
    pub device_id: String,
    /// Its area.
    pub area: String,
    /// Its X25519 public key, hex.
    pub transfer_key: String,
    /// Whether it was revoked: bundles from it are refused.
    pub revoked: bool,
}

/// The heads the server holds for one pushed document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocAck {
    /// Household id.
    pub doc_id: String,
    /// The heads, as concatenated 32-byte change hashes.
    #[serde(with = "serde_bytes_vec")]
    pub heads: Vec<u8>,
}

impl DocAck {
    /// Builds an acknowledgement from change hashes.
    pub fn new(doc_id: String, heads: &[automerge::ChangeHash]) -> DocAck {
        DocAck { doc_id, heads: heads.iter().flat_map(|h| h.0).collect() }
    }

    /// The change hashes; `None` if the bytes are not whole 32-byte hashes.
    pub fn hashes(&self) -> Option<Vec<automerge::ChangeHash>> {
        if !self.heads.len().is_multiple_of(32) {
            return None;
        }
        Some(self.heads.chunks(32).map(|c| automerge::ChangeHash(c.try_into().unwrap_or([0; 32]))).collect())
    }
}

/// One document's changes that the device lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocPull {
    /// Household id.
    pub doc_id: String,
    /// Its area.
    pub area: String,
    /// Automerge changes (one or more chunks, concatenated).
    #[serde(with = "serde_bytes_vec")]
    pub changes: Vec<u8>,
}

/// Answer to a sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResponse {
    /// Protocol version.
    pub protocol: u32,
    /// For each pushed document, the heads the server now holds.
    pub acked: Vec<DocAck>,
    /// Changes from other devices since the cursor.
    pub pull: Vec<DocPull>,
    /// Where the device's cursor goes once it has committed `pull`.
    pub next_cursor: u64,
    /// Whether more pull pages wait.
    pub more: bool,
    /// Pushed documents the server refused, each with its reason; the others were taken.
    /// (Absent from older servers, which refused the whole request instead.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<DocRefusal>,
    /// While a compact first sync has more pages: where it stands, for the next request.
    /// Absent once it is done; `next_cursor` is then its mark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotPosition>,
    /// Devices of the area tree with their bundle keys, revoked ones included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directory: Vec<DirectoryEntry>,
    /// Households of this page that moved out of the device's areas (in feed order with
    /// `pull`: a household is in one list or the other).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub departed: Vec<DocDeparture>,
    /// Where each transfer request of the request stands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transfers: Vec<TransferOutcome>,
}

/// `POST /v1/attachments/put`: one chunk of a sealed blob. A chunk at an
/// offset other than what the server holds is not stored; the answer says
/// where to go on (an empty chunk asks just that).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobPut {
    /// Protocol version.
    pub protocol: u32,
    /// Blob id (BLAKE3 of its plaintext).
    pub id: String,
    /// The sealed blob's whole size.
    pub total: u64,
    /// Where this chunk starts.
    pub offset: u64,
    /// The bytes.
    #[serde(with = "serde_bytes_vec")]
    pub chunk: Vec<u8>,
}

/// Answer to a [`BlobPut`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobPutAck {
    /// Protocol version.
    pub protocol: u32,
    /// Bytes the server holds.
    pub received: u64,
    /// Whether it holds the whole blob.
    pub complete: bool,
}

/// `POST /v1/attachments/get`: a range of a sealed blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobGet {
    /// Protocol version.
    pub protocol: u32,
    /// Blob id.
    pub id: String,
    /// First byte wanted.
    pub offset: u64,
    /// Most bytes wanted (the server sends at most [`BLOB_CHUNK_BYTES`]).
    pub max: u64,
}

/// Answer to a [`BlobGet`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobChunk {
    /// Protocol version.
    pub protocol: u32,
    /// The blob's whole size.
    pub total: u64,
    /// Where this chunk starts.
    pub offset: u64,
    /// The bytes.
    #[serde(with = "serde_bytes_vec")]
    pub chunk: Vec<u8>,
}

/// Error codes of a 4xx or 5xx answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not a valid request.
    Malformed,
    /// The body is over the size limit.
    TooLarge,
    /// The protocol version is not supported.
    UnsupportedVersion,
    /// No credential, or an unknown one.
    Unauthorized,
    /// This device was revoked: wipe local data.
    Revoked,
    /// The enrolment token is unknown or already used.
    TokenUsed,
    /// The enrolment token is older than the server's limit (72 hours unless configured).
    TokenExpired,
    /// A write outside the device's areas.
    ForbiddenArea,
    /// Automerge bytes that do not load, or not a household document.
    InvalidDocument,
    /// A change to a field that never changes (`household_id`, `schema`).
    ImmutableField,
    /// The household moved out of the device's areas after the device last synced: its
    /// edits from then on go to the new area's officers by other means (an offline bundle).
    MovedAway,
    /// Too many requests.
    RateLimited,
    /// The device's attachment storage quota is used up.
    QuotaExceeded,
    /// No such attachment (or not within the device's areas).
    NotFound,
    /// Something failed on the server.
    Internal,
}

/// A pushed document the server did not take, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocRefusal {
    /// Household id.
    pub doc_id: String,
    /// Why, for the program.
    pub code: ErrorCode,
    /// Why, for a person.
    pub message: String,
}

/// The body of an error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for the program.
    pub code: ErrorCode,
    /// What went wrong, for a person.
    pub message: String,
    /// With [`ErrorCode::Revoked`]: the server's signed statement ([`super::revocation`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<String>,
}

/// Encodes a message as CBOR.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail for these plain types.
    let _ = ciborium::into_writer(value, &mut out);
    out
}

/// Decodes a CBOR message, refusing bodies over [`MAX_BODY_BYTES`].
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    if bytes.len() > MAX_BODY_BYTES {
        return Err(Error::Protocol(format!("message of {} bytes is over the limit", bytes.len())));
    }
    ciborium::from_reader(bytes).map_err(|e| Error::Protocol(format!("malformed message: {e}")))
}

/// CBOR byte strings for `Vec<u8>` (serde would otherwise write an array of integers).
pub(crate) mod serde_bytes_vec {
    use serde::{Deserializer, Serializer};

    /// Writes a CBOR byte string.
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    /// Reads a CBOR byte string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        // `deserialize_byte_buf`: ciborium's `deserialize_bytes` refuses byte strings over its 4 KiB scratch buffer.
        d.deserialize_byte_buf(V)
    }
}

/// Refuses a server address a device must not talk to: anything but `https://`, except
/// `http://` to this machine's own loopback (a local demo, a test). Credentials and
/// residents' data never cross a network in clear text.
pub fn check_server_url(url: &str) -> Result<()> {
    let insecure = |why: &str| Error::InsecureUrl(format!("{why}: {}", url.chars().take(200).collect::<String>()));
    let lower = url.trim().to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Ok(());
    }
    let Some(rest) = lower.strip_prefix("http://") else {
        return Err(insecure("a server address starts with https://"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(insecure("a server address carries no user name"));
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback { Ok(()) } else { Err(insecure("http:// is allowed only to this machine (127.0.0.1, ::1, localhost)")) }
}

/// Whether `area` lies within `scope` (equal, or a sub-area: `scope.` prefix).
pub fn area_within(area: &str, scope: &str) -> bool {
    area == scope || (area.len() > scope.len() && area.starts_with(scope) && area.as_bytes()[scope.len()] == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_strings_of_any_size_round_trip() {
        // Regression: byte strings over 4 KiB (ciborium's scratch buffer) did not decode.
        for n in [0usize, 10, 4096, 4097, 100_000, 2 * 1024 * 1024] {
            let p = DocPush { doc_id: "a".into(), area: "b".into(), changes: vec![7; n] };
            assert_eq!(decode::<DocPush>(&encode(&p)).unwrap(), p, "{n} bytes");
        }
    }

    #[test]
    fn messages_round_trip_compactly() {
        let req = SyncRequest {
            protocol: PROTOCOL_VERSION,
            cursor: 7,
            user: "officer".into(),
            push: vec![DocPush { doc_id: "hh-1".into(), area: "01.001".into(), changes: vec![0xAB; 100] }],
            transfer_key: None,
            snapshot: None,
            resend: vec![],
            transfers: vec![],
        };
        let bytes = encode(&req);
        assert!(bytes.len() < 180, "byte strings stay bytes (an integer array would be ~250): {}", bytes.len());
        let ack = DocAck::new("hh-1".into(), &[automerge::ChangeHash([7; 32])]);
        assert_eq!(ack.hashes().unwrap(), vec![automerge::ChangeHash([7; 32])]);
        assert!(DocAck { doc_id: "x".into(), heads: vec![1, 2, 3] }.hashes().is_none());
        assert_eq!(decode::<SyncRequest>(&bytes).unwrap(), req);
    }

    #[test]
    fn hostile_messages_are_typed_errors() {
        assert!(matches!(decode::<SyncRequest>(b""), Err(Error::Protocol(_))));
        assert!(matches!(decode::<SyncRequest>(&[0xff; 64]), Err(Error::Protocol(_))));
        let bytes = encode(&SyncRequest {
            protocol: 1,
            cursor: 0,
            user: "u".into(),
            push: vec![],
            transfer_key: None,
            snapshot: None,
            resend: vec![],
            transfers: vec![],
        });
        assert!(matches!(decode::<SyncRequest>(&bytes[..bytes.len() - 1]), Err(Error::Protocol(_))));
        assert!(matches!(decode::<SyncRequest>(&vec![0u8; MAX_BODY_BYTES + 1]), Err(Error::Protocol(_))));
        // A CBOR array header claiming a huge length does not allocate it.
        assert!(matches!(
            decode::<SyncRequest>(&[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Err(Error::Protocol(_))
        ));
    }

    #[test]
    fn enrolment_codes() {
        let c = EnrolmentCode { v: 1, url: "http://127.0.0.1:1".into(), area: "01".into(), token: "t".into() };
        assert_eq!(EnrolmentCode::parse(&c.to_qr_text()).unwrap(), c);
        for (url, area) in [("http://10.0.0.5:8080", "01"), ("ftp://x", "01"), ("https://sync.example.vn", "01.%")] {
            let bad = EnrolmentCode { url: url.into(), area: area.into(), ..c.clone() };
            assert!(EnrolmentCode::parse(&bad.to_qr_text()).is_err(), "{url} {area}");
        }
        assert!(EnrolmentCode::parse("hello").is_err());
        assert!(EnrolmentCode::parse("DOORSTEP-ENROL:{}").is_err());
    }

    #[test]
    fn clear_text_addresses_are_refused_unless_loopback() {
        for ok in [
            "https://sync.example.vn",
            "HTTPS://x:443/a",
            "http://127.0.0.1:8080",
            "http://127.9.0.1",
            "http://[::1]:9/",
            "http://localhost:3000",
        ] {
            assert!(check_server_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.5:8080",
            "http://sync.example.vn",
            "http://localhost.evil.example",
            "http://127.0.0.1@evil.example/",
            "http://[::2]:80",
            "ws://127.0.0.1",
            "sync.example.vn",
            "",
        ] {
            assert!(matches!(check_server_url(bad), Err(Error::InsecureUrl(_))), "{bad}");
        }
    }

    #[test]
    fn areas_nest_by_dot() {
        assert!(area_within("01.001", "01.001"));
        assert!(area_within("01.001.00001", "01.001"));
        assert!(!area_within("01.0012", "01.001"));
        assert!(!area_within("01", "01.001"));
    }
}

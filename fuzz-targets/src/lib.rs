//! The bodies of Doorstep's fuzz targets, one function per target.
//!
//! Each takes arbitrary bytes, feeds them to one decoder that meets untrusted
//! input, and must return — a typed error is fine, a panic, a hang or an
//! unbounded allocation is a finding. `fuzz/` (cargo-fuzz, nightly) drives these
//! with libFuzzer; `tests/replay.rs` runs every committed corpus input through
//! them on stable, in CI. [`TARGETS`] lists them by the name of their corpus folder.

use doorstep_core::form::{Expr, FormDefinition, RowLookup, Scope, Value};
use doorstep_core::identity::ChipCardQr;
use doorstep_core::sync::protocol::{
    BlobChunk, BlobGet, BlobPut, DocPush, EnrolRequest, EnrolResponse, EnrolmentCode, ErrorBody, SyncRequest,
    SyncResponse, decode,
};
use doorstep_core::transfer::{FrameReceiver, bundle};

/// A target: its corpus folder's name and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, by corpus folder name.
pub const TARGETS: &[Target] = &[
    ("sync_protocol", sync_protocol),
    ("chip_qr", chip_qr),
    ("enrolment_code", enrolment_code),
    ("bundle", bundle_and_frames),
    ("slip", slip),
    ("form_expr", form_expr),
    ("form_definition", form_definition),
    ("photo", photo),
    ("server_merge", server_merge),
];

/// The key fuzzed slips are checked against (the seeds are signed with it).
pub fn slip_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7; 32])
}

/// The device key fuzzed bundles are opened with (the seeds are sealed to it).
pub fn bundle_key() -> x25519_dalek::StaticSecret {
    x25519_dalek::StaticSecret::from([9; 32])
}

/// The area a fuzzed push is made in.
pub const MERGE_SCOPE: &str = "01.001";
/// The document id a fuzzed push names.
pub const MERGE_DOC_ID: &str = "01.001.00001-000001";

/// Every request and answer of the sync protocol, decoded from the same bytes.
pub fn sync_protocol(data: &[u8]) {
    let _ = decode::<SyncRequest>(data);
    let _ = decode::<SyncResponse>(data);
    let _ = decode::<EnrolRequest>(data);
    let _ = decode::<EnrolResponse>(data);
    let _ = decode::<BlobPut>(data);
    let _ = decode::<BlobGet>(data);
    let _ = decode::<BlobChunk>(data);
    let _ = decode::<ErrorBody>(data);
}

/// The chip-card QR parser (the text a phone's camera reads off a CCCD card).
pub fn chip_qr(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ChipCardQr::parse(text);
    }
}

/// An enrolment QR code's text.
pub fn enrolment_code(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = EnrolmentCode::parse(text);
    }
}

/// A transfer bundle opened with the device key, and the same bytes read as QR frames (one a line).
pub fn bundle_and_frames(data: &[u8]) {
    let _ = bundle::open(data, &bundle_key());
    if let Ok(text) = std::str::from_utf8(data) {
        let mut receiver = FrameReceiver::new();
        for line in text.lines() {
            let _ = receiver.add_text(line);
        }
        let _ = receiver.missing();
        if receiver.is_complete() {
            let _ = receiver.bundle();
        }
    }
}

/// A verification slip's QR text, checked against the server's key.
pub fn slip(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = doorstep_core::slip::Slip::verify(text, slip_key().verifying_key().as_bytes());
    }
}

struct FixedScope;

impl Scope for FixedScope {
    fn current(&self) -> Value {
        Value::Str("Nguyễn Văn An".into())
    }
    fn field(&self, name: &str) -> Value {
        match name {
            "dob" => Value::Str("1990-05-17".into()),
            "age" => Value::Num(34.0),
            _ => Value::Null,
        }
    }
    fn rows(&self, _repeat: &str) -> Vec<RowLookup<'_>> {
        vec![Box::new(|_| Value::Str("x".into())), Box::new(|_| Value::Num(2.0))]
    }
    fn member_exists(&self, id: &str) -> bool {
        id == "m1"
    }
    fn today(&self) -> chrono::NaiveDate {
        chrono::NaiveDate::from_ymd_opt(2026, 12, 3).unwrap_or_default()
    }
}

/// A form expression, parsed and, when it parses, evaluated.
pub fn form_expr(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(expr) = Expr::parse(text)
    {
        let _ = expr.field_refs();
        let _ = expr.eval(&FixedScope).truthy();
    }
}

/// Called once by each cargo-fuzz binary: a panic that the product catches (Automerge's,
/// under `catch_unwind` where untrusted bytes are loaded) is not a finding, so libfuzzer-sys's
/// abort-on-any-panic hook is replaced by a silent one. A panic that escapes the target still
/// aborts the run: libfuzzer-sys aborts on an unwound test input.
pub fn quiet_caught_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}

/// A form definition (JSON).
pub fn form_definition(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = FormDefinition::from_json(text);
    }
}

/// A photo as the camera or gallery hands it over: decoded, then processed to what is stored.
pub fn photo(data: &[u8]) {
    let options = doorstep_core::photo::PhotoOptions { max_side: 64, thumb_side: 16, quality: 50, thumb_quality: 50 };
    let _ = doorstep_core::photo::process(data, options);
}

/// The server's merge of a device's untrusted Automerge bytes: into no stored copy, then into the
/// seed household's own stored copy (when the bytes start from it).
pub fn server_merge(data: &[u8]) {
    let push = DocPush { doc_id: MERGE_DOC_ID.into(), area: format!("{MERGE_SCOPE}.00001"), changes: data.to_vec() };
    if let Ok(mut first) =
        doorstep_sync_server::merge::merge_push(None, &push, doorstep_sync_server::merge::Bound::Scope(MERGE_SCOPE))
    {
        let stored = first.doc.save();
        let _ = doorstep_sync_server::merge::merge_push(
            Some(&stored),
            &push,
            doorstep_sync_server::merge::Bound::Scope(MERGE_SCOPE),
        );
    }
}

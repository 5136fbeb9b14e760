//! Writes the seed inputs of every fuzz target under `fuzz/corpus/<target>/`: valid
//! messages, codes, bundles, slips, forms, photos and documents, which libFuzzer then mutates.
//!
//! `cargo run -p doorstep-fuzz-targets --example seeds`

use std::path::{Path, PathBuf};

use doorstep_core::form::RESIDENCE_SURVEY_JSON;
use doorstep_core::record::{Editor, Household, HouseholdDoc};
use doorstep_core::sync::protocol::*;
use doorstep_core::transfer::{BundleBody, bundle, to_frames};
use doorstep_fuzz_targets::{MERGE_DOC_ID, bundle_key, slip_key};

const HOUSEHOLD: &str = r#"{"household_id": "01.001.00001-000001", "area": "01.001.00001", "address": "Số 50, Thôn Đông, xã Tân Lập", "head_member_id": "h000000-m0", "members": [{"full_name": "Hoàng Bích Hạnh", "dob": "1988-08-21", "sex": "F", "cccd": "025188635017", "phone": "0962979298", "occupation": "Buôn bán", "residence_status": "permanent", "relation": "head", "member_id": "h000000-m0"}, {"full_name": "Hoàng Bích Trang", "dob": "2017-07-24", "sex": "F", "cccd": null, "phone": null, "occupation": "Giáo viên", "residence_status": "temporary", "relation": "child", "member_id": "h000000-m3"}], "events": []}"#;

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let folder = dir.join(target);
    std::fs::create_dir_all(&folder).expect("corpus folder");
    std::fs::write(folder.join(name), bytes).expect("seed written");
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus"));
    let household: Household = serde_json::from_str(HOUSEHOLD).expect("household");
    let editor = Editor { user: "officer".into(), device: "dev-1".into() };
    let mut doc = HouseholdDoc::create(&household, &editor).expect("document");
    let changes = doc.save();

    let push = DocPush { doc_id: MERGE_DOC_ID.into(), area: household.area_code.clone(), changes: changes.clone() };
    let request = SyncRequest {
        protocol: PROTOCOL_VERSION,
        cursor: 3,
        user: "officer".into(),
        push: vec![push],
        transfer_key: None,
        snapshot: None,
        resend: vec![],
        transfers: vec![],
    };
    write(&dir, "sync_protocol", "sync_request", &encode(&request));
    let response = SyncResponse {
        protocol: PROTOCOL_VERSION,
        acked: vec![DocAck::new(MERGE_DOC_ID.into(), &doc.heads())],
        pull: vec![DocPull {
            doc_id: MERGE_DOC_ID.into(),
            area: household.area_code.clone(),
            changes: changes.clone(),
        }],
        next_cursor: 9,
        more: false,
        refused: vec![],
        snapshot: None,
        directory: vec![],
        departed: vec![],
        transfers: vec![],
    };
    write(&dir, "sync_protocol", "sync_response", &encode(&response));
    write(
        &dir,
        "sync_protocol",
        "enrol_request",
        &encode(&EnrolRequest { protocol: 1, token: "ab".repeat(32), device_id: "dev-1".into() }),
    );
    write(
        &dir,
        "sync_protocol",
        "enrol_response",
        &encode(&EnrolResponse {
            protocol: 1,
            credential: "cd".repeat(32),
            areas: vec!["01.001".into()],
            slip_key: Some("ef".repeat(32)),
        }),
    );
    write(
        &dir,
        "sync_protocol",
        "blob_put",
        &encode(&BlobPut { protocol: 1, id: "b".repeat(64), total: 10, offset: 0, chunk: vec![1; 10] }),
    );
    write(
        &dir,
        "sync_protocol",
        "blob_get",
        &encode(&BlobGet { protocol: 1, id: "b".repeat(64), offset: 0, max: 100 }),
    );
    write(
        &dir,
        "sync_protocol",
        "error",
        &encode(&ErrorBody {
            code: ErrorCode::Revoked,
            message: "revoked".into(),
            revocation: Some(
                doorstep_core::sync::revocation::Revocation { device_id: "dev-1".into(), revoked_at: 5 }
                    .sign(&slip_key()),
            ),
        }),
    );

    write(&dir, "chip_qr", "card", "001190012345||Nguyễn Thị Hồng Nhung|15031990|Nữ|Hà Nội|20042021\n".as_bytes());
    write(
        &dir,
        "chip_qr",
        "card_cmnd",
        "025188635017|123456789|Hoàng Bích Hạnh|21081988|Nữ|Thôn Đông, xã Tân Lập|01022022".as_bytes(),
    );

    let code =
        EnrolmentCode { v: 1, url: "https://doorstep.example".into(), area: "01.001".into(), token: "ab".repeat(32) };
    write(&dir, "enrolment_code", "code", code.to_qr_text().as_bytes());

    let sender = x25519_dalek::StaticSecret::from([5; 32]);
    let recipient = x25519_dalek::PublicKey::from(&bundle_key());
    let body = BundleBody { households: vec![], blobs: vec![] };
    let sealed = bundle::seal("dev-2", &sender, recipient.as_bytes(), &body, 1_700_000_000).expect("bundle");
    write(&dir, "bundle", "empty_bundle", &sealed);
    let frames = to_frames(&sealed, 120).expect("frames");
    write(&dir, "bundle", "frames", frames.join("\n").as_bytes());

    let slip = doorstep_core::slip::Slip::for_household(
        &household,
        &["ab".repeat(32)],
        chrono::NaiveDate::from_ymd_opt(2026, 12, 3).expect("date"),
    );
    write(&dir, "slip", "slip", slip.sign(&slip_key()).as_bytes());

    for (i, e) in [
        "string-length(.) >= 2 and string-length(.) <= 64",
        "count-value('members', 'relation', 'head') = 1",
        ". <= today() and . >= '1890-01-01'",
        "age(${dob})",
        "cccd-matches(., ${dob}, ${sex})",
        "if(${age} > 14, 'adult', concat('child ', ${age}))",
    ]
    .iter()
    .enumerate()
    {
        write(&dir, "form_expr", &format!("expr{i}"), e.as_bytes());
    }
    write(&dir, "form_definition", "residence_survey", RESIDENCE_SURVEY_JSON.as_bytes());

    write(&dir, "photo", "jpeg", &doorstep_core::photo::synthetic_jpeg(32, 24, 80));

    write(&dir, "server_merge", "whole_document", &changes);
    let mut later = household.clone();
    later.address = "Số 51, Thôn Đông".into();
    doc.update(&later, &editor).expect("update");
    let mut both = changes;
    both.extend_from_slice(&doc.save_incremental());
    write(&dir, "server_merge", "document_and_edit", &both);
}

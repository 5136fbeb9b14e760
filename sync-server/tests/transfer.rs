//! Offline transfer: device A hands households (with a photo) to device B by
//! an animated QR sequence read through a camera that misses frames; both
//! later sync and the server holds one copy. Bundles for another device,
//! altered bundles, and bundles from unknown or revoked devices are refused
//! and change nothing.

mod common;

use common::{AREA, Device, TestServer, household};
use doorstep_core::Error;
use doorstep_core::photo::{PhotoOptions, synthetic_jpeg};
use doorstep_core::store::{PhotoSize, Store};
use doorstep_core::transfer::{BundleSelection, FRAME_PAYLOAD_BYTES, FrameReceiver, TransferError, to_frames};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

/// What a store holds, to prove a refusal changed nothing.
fn state(store: &Store) -> Vec<String> {
    let mut out: Vec<String> = store
        .list_households(0, 1000)
        .unwrap()
        .into_iter()
        .map(|l| {
            let mut doc = store.open_household(&l.household_id).unwrap();
            format!("{} {:?}", l.household_id, doc.heads())
        })
        .collect();
    out.extend(store.pending_pushes(1000).unwrap().into_iter().map(|p| format!("dirty {}", p.doc_id)));
    out.extend(store.pending_uploads(1000).unwrap().into_iter().map(|p| format!("blob {}", p.id)));
    out
}

#[test]
fn households_cross_by_qr_frames_with_a_lossy_camera_and_reach_the_server_once() {
    let server = TestServer::start();
    let mut a = Device::enrolled(&server, "officer-a", AREA);
    let mut b = Device::enrolled(&server, "officer-b", AREA);
    // One sync each: the server's directory of the area's devices and their bundle keys.
    a.sync().unwrap();
    b.sync().unwrap();
    a.sync().unwrap();

    // A works offline: two households, one with a house photo.
    a.store.create_household(&household("hh-1", AREA, "Lê Thanh Vân", "080166796635")).unwrap();
    a.store.create_household(&household("hh-2", AREA, "Trần Minh Thắng", "011091603856")).unwrap();
    let photo = a.store.add_house_photo("hh-1", &synthetic_jpeg(640, 480, 90), PhotoOptions::default()).unwrap();
    let bundle = a.store.export_bundle(b.store.device_id(), &BundleSelection::DirtyInArea(AREA.into())).unwrap();

    // The sender's screen loops over the frames; the camera misses 20% of them each pass
    // and sees the rest out of order, some twice, until it has them all.
    let frames = to_frames(&bundle, FRAME_PAYLOAD_BYTES).unwrap();
    // Each pass the camera sees the screen at another distance (pixels per QR module).
    let images: Vec<Vec<Vec<u8>>> =
        frames.iter().map(|f| (3..=5).map(|px| doorstep_core::qr::encode_png(f, px).unwrap()).collect()).collect();
    let mut rng = StdRng::seed_from_u64(20);
    let mut rx = FrameReceiver::new();
    let mut passes = 0;
    while !rx.is_complete() {
        passes += 1;
        assert!(passes < 50, "never completed");
        let mut seen: Vec<usize> = (0..images.len()).filter(|_| rng.random_range(0..100) >= 20).collect();
        let repeats: Vec<usize> = seen.iter().copied().filter(|_| rng.random_range(0..4) == 0).collect();
        seen.extend(repeats);
        seen.shuffle(&mut rng);
        let mut unreadable = 0;
        for i in seen {
            // A frame the camera cannot read is missed, like a dropped one; a misread one is refused.
            match rx.add_image(&images[i][passes % 3]) {
                Ok(_) => {}
                Err(Error::Image(_)) => unreadable += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(unreadable * 10 <= images.len() + 10, "pass {passes}: {unreadable} unreadable frames");
    }
    assert!(passes >= 2 || images.len() < 5, "some frames were dropped in the first pass");
    let received = rx.bundle().unwrap();
    assert_eq!(received, bundle);

    let report = b.store.import_bundle(&received).unwrap();
    assert_eq!((report.households, report.changed, report.blobs_added), (2, 2, 2));
    assert_eq!(report.sender_device, a.store.device_id());
    assert_eq!(b.store.household("hh-2").unwrap().members[0].full_name, "Trần Minh Thắng");
    assert!(b.store.house_photo("hh-1", PhotoSize::Full).unwrap().is_some());
    // The same bundle twice changes nothing.
    let before = state(&b.store);
    let again = b.store.import_bundle(&received).unwrap();
    assert_eq!((again.changed, again.blobs_added), (0, 0));
    assert_eq!(state(&b.store), before);

    // B reaches the network first and pushes what it got; A's later push is nothing new.
    let rb = b.sync().unwrap();
    assert_eq!(rb.pushed, 2);
    b.sync_attachments().unwrap();
    let ra = a.sync().unwrap();
    assert_eq!(ra.pushed, 2);
    let up = a.sync_attachments().unwrap();
    assert_eq!(up.bytes_sent, 0, "the server already had the photo from B");
    let counts = server
        .runtime
        .block_on(server.storage.area_counts(doorstep_sync_server::storage::ProgressQuery {
            area: AREA.into(),
            since_day: 0,
            since_week: 0,
            since_month: 0,
            born_after: String::new(),
            born_until: String::new(),
        }))
        .unwrap();
    assert_eq!(counts.iter().map(|c| c.households).sum::<i64>(), 2, "one copy of each household");
    let audit = server.runtime.block_on(server.storage.audit(Some("hh-1".into()))).unwrap();
    assert_eq!(audit.len(), 1, "the second push of the same changes is not a new change: {audit:?}");
    for d in [&a, &b] {
        let (snapshot, heads) = server.runtime.block_on(server.storage.household("hh-1".into())).unwrap().unwrap();
        let mut doc = d.store.open_household("hh-1").unwrap();
        let mine: Vec<String> = doc.heads().iter().map(ToString::to_string).collect();
        assert_eq!(mine, heads);
        assert!(!snapshot.is_empty());
        assert!(d.store.pending_pushes(10).unwrap().is_empty());
    }
    let thumb = |d: &Device| d.store.house_photo("hh-1", PhotoSize::Thumb).unwrap();
    assert_eq!(thumb(&b), thumb(&a));
    assert!(b.store.blob(&photo.full.id).unwrap().is_some());
}

#[test]
fn foreign_altered_unknown_and_revoked_bundles_are_refused_and_change_nothing() {
    let server = TestServer::start();
    let mut a = Device::enrolled(&server, "officer-a", AREA);
    let mut b = Device::enrolled(&server, "officer-b", AREA);
    let mut c = Device::enrolled(&server, "officer-c", AREA);
    for d in [&mut a, &mut b, &mut c] {
        d.sync().unwrap();
    }
    for d in [&mut a, &mut b, &mut c] {
        d.sync().unwrap();
    }
    a.store.create_household(&household("hh-1", AREA, "Lê Thanh Vân", "080166796635")).unwrap();
    let to_b = a.store.export_bundle(b.store.device_id(), &BundleSelection::Households(vec!["hh-1".into()])).unwrap();
    let to_c = a.store.export_bundle(c.store.device_id(), &BundleSelection::Households(vec!["hh-1".into()])).unwrap();
    let before = state(&b.store);
    let refused = |b: &mut Device, bytes: &[u8]| -> TransferError {
        match b.store.import_bundle(bytes) {
            Err(Error::Transfer(e)) => e,
            other => panic!("{other:?}"),
        }
    };

    // Sealed to another device.
    assert_eq!(refused(&mut b, &to_c), TransferError::NotForThisDevice);
    // Altered in transit: a flipped byte in the body, or in the header.
    let mut altered = to_b.clone();
    let last = altered.len() - 5;
    altered[last] ^= 1;
    assert_eq!(refused(&mut b, &altered), TransferError::Tampered);
    for at in [14, 30, 60, 90] {
        let mut header_changed = to_b.clone();
        header_changed[at] ^= 1;
        assert!(matches!(b.store.import_bundle(&header_changed), Err(Error::Transfer(_))), "header byte {at}");
    }
    // Cut short.
    assert!(matches!(refused(&mut b, &to_b[..to_b.len() / 2]), TransferError::Tampered | TransferError::Malformed(_)));
    assert_eq!(state(&b.store), before);

    // A device the directory does not know (enrolled after B's last sync).
    let mut d = Device::enrolled(&server, "officer-d", AREA);
    d.sync().unwrap();
    d.sync().unwrap();
    d.store.create_household(&household("hh-9", AREA, "Đỗ Kim Tâm", "011165617775")).unwrap();
    let from_d = d.store.export_bundle(b.store.device_id(), &BundleSelection::Households(vec!["hh-9".into()])).unwrap();
    assert_eq!(refused(&mut b, &from_d), TransferError::UnknownSender(d.store.device_id().to_string()));
    assert_eq!(state(&b.store), before);

    // A revoked device: once B has synced the news, its bundles are refused.
    let a_id = a.store.device_id().to_string();
    assert!(server.runtime.block_on(server.storage.revoke_device(a_id.clone(), 0)).unwrap());
    b.sync().unwrap();
    assert_eq!(refused(&mut b, &to_b), TransferError::RevokedSender(a_id.clone()));
    assert_eq!(state(&b.store), before);
    // Nor does B send anything to it.
    b.store.create_household(&household("hh-b", AREA, "Trần Minh Thắng", "011091603856")).unwrap();
    match b.store.export_bundle(&a_id, &BundleSelection::Households(vec!["hh-b".into()])) {
        Err(Error::Transfer(TransferError::RevokedRecipient(id))) => assert_eq!(id, a_id),
        other => panic!("{other:?}"),
    }

    // And the genuine one from D is accepted once B knows D.
    b.import_from(&from_d);
}

trait ImportFrom {
    fn import_from(&mut self, bundle: &[u8]);
}

impl ImportFrom for Device {
    fn import_from(&mut self, bundle: &[u8]) {
        let report = self.store.import_bundle(bundle).unwrap();
        assert_eq!(report.changed, 1);
    }
}

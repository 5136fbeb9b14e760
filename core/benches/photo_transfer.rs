//! Figures for photos and offline transfer (a bench binary that prints them).
//!
//! - Processing one 12-megapixel JPEG (4000×3000): decode, orient, strip,
//!   downsize to 1600 px, thumbnail, seal; time and stored size.
//! - Transferring 10 households of the synthetic commune, no photos: bundle
//!   bytes and QR frames, and the time to render and to read the frames.
//!
//! `cargo bench -p doorstep-core --bench photo_transfer` (add `-- --test` for one quick pass).

mod support;

use std::time::{Duration, Instant};

use doorstep_core::attachment::seal_blob;
use doorstep_core::crypto::KdfParams;
use doorstep_core::photo::{PhotoOptions, process};
use doorstep_core::store::{Role, Store};
use doorstep_core::sync::protocol::DirectoryEntry;
use doorstep_core::transfer::{BundleSelection, FRAME_PAYLOAD_BYTES, FrameReceiver, to_frames};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A camera-like 12-megapixel picture: smooth light, texture, edges, sensor noise.
fn camera_jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let noise = ((x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(2_246_822_519)).rotate_left(11) >> 28) as i32;
        let wall = if (x / 180 + y / 240) % 2 == 0 { 40 } else { 0 };
        let sky = if y < h / 3 { 60 } else { 0 };
        let base = |c: i32| (c + noise * 3 + wall + sky).clamp(0, 255) as u8;
        image::Rgb([
            base((x * 160 / w) as i32 + 40),
            base((y * 120 / h) as i32 + 60),
            base(((x + y) * 90 / (w + h)) as i32 + 30),
        ])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 92).encode_image(&img).unwrap();
    out
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let runs = if quick { 1 } else { 7 };

    // Photos.
    let input = camera_jpeg(4000, 3000);
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let p = process(&input, PhotoOptions::default()).unwrap();
        let (_, full) = seal_blob(&p.full).unwrap();
        let (_, thumb) = seal_blob(&p.thumb).unwrap();
        times.push(t.elapsed());
        last = Some((p, full.len(), thumb.len()));
    }
    let (p, full, thumb) = last.unwrap();
    println!("photo: 12-megapixel JPEG (4000x3000, {} KB in)", input.len() / 1024);
    println!(
        "  process + seal: median {:.0} ms over {runs} run(s) (min {:.0} ms)",
        median(times.clone()).as_secs_f64() * 1e3,
        times.iter().min().unwrap().as_secs_f64() * 1e3
    );
    println!(
        "  stored: photo {}x{} {} KB sealed, thumbnail {}x{} {} KB sealed ({:.1}% of the input)",
        p.size.0,
        p.size.1,
        full / 1024,
        p.thumb_size.0,
        p.thumb_size.1,
        thumb / 1024,
        (full + thumb) as f64 * 100.0 / input.len() as f64
    );

    // Transfer of 10 households, no photos.
    let dir = tempfile::tempdir().unwrap();
    let open = |name: &str| {
        let mut s = Store::open(dir.path().join(format!("{name}.db"))).unwrap();
        s.create_profile("officer", Role::Officer, support::PIN, None, KdfParams::INSECURE_FOR_TESTS).unwrap();
        s.unlock("officer", support::PIN, None).unwrap();
        s.set_sync_value("areas", "[\"01.001.00001\"]").unwrap();
        s
    };
    let a = open("a");
    let mut b = open("b");
    let entry = |s: &Store| DirectoryEntry {
        device_id: s.device_id().to_string(),
        area: "01.001.00001".into(),
        transfer_key: hex::encode(s.transfer_key().unwrap()),
        revoked: false,
    };
    let directory = [entry(&a), entry(&b)];
    a.set_directory(&directory).unwrap();
    b.set_directory(&directory).unwrap();
    let mut a = a;
    let households = support::commune(10);
    for h in &households {
        a.create_household(h).unwrap();
    }
    let members: usize = households.iter().map(|h| h.members.len()).sum();
    let ids: Vec<String> = households.iter().map(|h| h.household_id.clone()).collect();
    let t = Instant::now();
    let bundle = a.export_bundle(b.device_id(), &BundleSelection::Households(ids)).unwrap();
    let export = t.elapsed();
    let frames = to_frames(&bundle, FRAME_PAYLOAD_BYTES).unwrap();
    let t = Instant::now();
    let images: Vec<Vec<u8>> = frames.iter().map(|f| doorstep_core::qr::encode_png(f, 3).unwrap()).collect();
    let render = t.elapsed();
    let t = Instant::now();
    let mut rx = FrameReceiver::new();
    for img in &images {
        rx.add_image(img).unwrap();
    }
    let read = t.elapsed();
    let report = b.import_bundle(&rx.bundle().unwrap()).unwrap();
    assert_eq!(report.changed, 10);
    println!("transfer: 10 households ({members} residents), no photos");
    println!(
        "  bundle {} bytes ({} per household); {} QR frames of at most {} bytes ({} characters of QR text)",
        bundle.len(),
        bundle.len() / 10,
        frames.len(),
        FRAME_PAYLOAD_BYTES,
        frames.iter().map(String::len).max().unwrap()
    );
    println!(
        "  export {:.1} ms; render frames {:.1} ms ({:.1} ms each); read frames from PNG {:.1} ms ({:.1} ms each)",
        export.as_secs_f64() * 1e3,
        render.as_secs_f64() * 1e3,
        render.as_secs_f64() * 1e3 / frames.len() as f64,
        read.as_secs_f64() * 1e3,
        read.as_secs_f64() * 1e3 / frames.len() as f64
    );
}

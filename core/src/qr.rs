//! QR codes: made as PNG (qrcode + image), read from camera frames and photos (rqrr over image).
//!
//! Used for enrolment codes, citizen receipts, offline transfer frames, and
//! the QR on chip CCCD cards.

use std::borrow::Cow;
use std::io::Cursor;

use image::{GrayImage, ImageFormat, ImageReader, Limits, imageops::FilterType};
use qrcode::{EcLevel, QrCode};

use crate::error::{Error, Result};
use crate::identity::ChipCardQr;

/// Widest or tallest image accepted, in pixels (a 12 MP photo is about 4000 × 3000).
pub const MAX_IMAGE_SIDE: u32 = 10_000;
/// Most memory image decoding may allocate.
pub const MAX_DECODE_BYTES: u64 = 512 * 1024 * 1024;
/// Longest side QR detection works on first; larger images are scaled down for it.
const DETECT_SIDE: u32 = 1600;

/// Renders `text` as a QR code PNG, `module_px` pixels per module, with a quiet zone.
pub fn encode_png(text: &str, module_px: u32) -> Result<Vec<u8>> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|e| Error::InvalidArgument(format!("cannot encode QR: {e}")))?;
    let img = code.render::<image::Luma<u8>>().module_dimensions(module_px.max(1), module_px.max(1)).build();
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png).map_err(|e| Error::Image(e.to_string()))?;
    Ok(out)
}

/// Decodes PNG or JPEG bytes into a grey image, within size limits.
pub fn decode_grey(bytes: &[u8]) -> Result<GrayImage> {
    let mut reader =
        ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| Error::Image(e.to_string()))?;
    if reader.format().is_none() {
        return Err(Error::Image("not a PNG or JPEG image".into()));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| Error::Image(e.to_string()))?;
    Ok(img.into_luma8())
}

fn detect(img: &GrayImage) -> Vec<String> {
    let mut prepared =
        rqrr::PreparedImage::prepare_from_greyscale(img.width() as usize, img.height() as usize, |x, y| {
            img.get_pixel(x as u32, y as u32).0[0]
        });
    prepared.detect_grids().into_iter().filter_map(|g| g.decode().ok().map(|(_, text)| text)).collect()
}

/// Finds and reads every QR code in an image. An image with none is [`Error::Image`].
///
/// The detector (rqrr, a port of quirc) fits its sampling grid from the finder pattern it takes
/// as the origin, and about one dense code in 500 comes out misread even from a perfect
/// rendering: the grid drifts and error correction gives up. A quarter turn or a half turn of
/// the same image puts another corner at the origin and reads it, as a change of scale often
/// does, so a failed image is tried again turned and rescaled, as an officer would turn the
/// card or move the camera. An image that reads at once costs nothing more.
pub fn decode_image(bytes: &[u8]) -> Result<Vec<String>> {
    let img = decode_grey(bytes)?;
    let (w, h) = img.dimensions();
    let scaled = |factor: f32| {
        let (sw, sh) = ((w as f32 * factor) as u32, (h as f32 * factor) as u32);
        (sw.max(sh) <= DETECT_SIDE * 2 && sw.min(sh) >= 21)
            .then(|| image::imageops::resize(&img, sw, sh, FilterType::Triangle))
    };
    // The image the detector works on first: a large photo is scaled down for it.
    let base = if w.max(h) > DETECT_SIDE {
        let scale = DETECT_SIDE as f32 / w.max(h) as f32;
        Cow::Owned(image::imageops::resize(
            &img,
            (w as f32 * scale) as u32,
            (h as f32 * scale) as u32,
            FilterType::Triangle,
        ))
    } else {
        Cow::Borrowed(&img)
    };
    let mut found = detect(&base);
    if found.is_empty() && w.max(h) > DETECT_SIDE {
        found = detect(&img);
    }
    let turns: [fn(&GrayImage) -> GrayImage; 3] =
        [image::imageops::rotate90, image::imageops::rotate180, image::imageops::rotate270];
    for turn in turns {
        if !found.is_empty() {
            break;
        }
        found = detect(&turn(&base));
    }
    for factor in [2.0f32, 1.5, 0.75] {
        if !found.is_empty() {
            break;
        }
        if let Some(view) = scaled(factor) {
            found = detect(&view);
        }
    }
    if found.is_empty() {
        return Err(Error::Image("no readable QR code in the image".into()));
    }
    Ok(found)
}

/// Reads a chip CCCD card's QR from a photo and parses it.
pub fn read_chip_card(bytes: &[u8]) -> Result<ChipCardQr> {
    let texts = decode_image(bytes)?;
    let mut last_err = None;
    for text in texts {
        match ChipCardQr::parse(&text) {
            Ok(card) => return Ok(card),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| Error::Image("no readable QR code in the image".into())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageEncoder, Luma};
    use rand::{RngExt, SeedableRng, rngs::StdRng};

    const CARD: &str =
        "001190012345|187654321|Nguyễn Thị Hồng Nhung|15031990|Nữ|Số 12, Thôn Đông, xã Tân Lập, Hà Nội|20042021";

    /// A photo-like frame: the code scaled by a non-integer factor, placed off-centre on a
    /// grey background, with additive noise.
    fn photo_of(text: &str, scale: f32, noise: i16, seed: u64) -> GrayImage {
        let png = encode_png(text, 3).unwrap();
        let code = image::load_from_memory(&png).unwrap().into_luma8();
        let size = (code.width() as f32 * scale) as u32;
        let code = image::imageops::resize(&code, size, size, FilterType::Triangle);
        let mut frame = GrayImage::from_pixel(size + 157, size + 93, Luma([180]));
        image::imageops::overlay(&mut frame, &code, 61, 37);
        let mut rng = StdRng::seed_from_u64(seed);
        for p in frame.pixels_mut() {
            let v = i16::from(p.0[0]) + rng.random_range(-noise..=noise);
            p.0[0] = v.clamp(0, 255) as u8;
        }
        frame
    }

    fn to_jpeg(img: &GrayImage, quality: u8) -> Vec<u8> {
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
            .write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::L8)
            .unwrap();
        out
    }

    fn to_png(img: &GrayImage) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png).unwrap();
        out
    }

    #[test]
    fn round_trips_text() {
        let png = encode_png("hello doorstep", 4).unwrap();
        assert_eq!(decode_image(&png).unwrap(), vec!["hello doorstep"]);
    }

    /// Signed slips (of the demo's household 01.002.00004-000002, with random keys) that rqrr
    /// 0.11 misreads from a perfect 4-pixel rendering held upright: the console test failed
    /// on one in CI, about one slip in 500.
    const MISREAD_UPRIGHT: &str = include_str!("../tests/data/qr_misread_upright.txt");

    #[test]
    fn codes_the_detector_misreads_upright_are_read_turned() {
        let texts: Vec<&str> = MISREAD_UPRIGHT.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(texts.len(), 6);
        let mut misread_upright = 0;
        for text in texts {
            let png = encode_png(text, 4).unwrap();
            if detect(&decode_grey(&png).unwrap()).is_empty() {
                misread_upright += 1;
            }
            assert_eq!(decode_image(&png).unwrap(), vec![text.to_string()]);
        }
        // While the detector still misreads them, they test the fallback; if an upgrade reads
        // them upright, this says so (and the turns may no longer be needed).
        assert_eq!(misread_upright, 6, "rqrr now reads some of these upright");
    }

    #[test]
    fn reads_a_card_from_scaled_noisy_png_and_jpeg_photos() {
        for (i, (scale, noise)) in [(1.0, 0), (1.7, 25), (2.3, 40), (3.1, 30)].into_iter().enumerate() {
            let frame = photo_of(CARD, scale, noise, i as u64);
            let card = read_chip_card(&to_png(&frame)).unwrap_or_else(|e| panic!("png scale {scale}: {e}"));
            assert_eq!(card.full_name, "Nguyễn Thị Hồng Nhung");
            let card = read_chip_card(&to_jpeg(&frame, 75)).unwrap_or_else(|e| panic!("jpeg scale {scale}: {e}"));
            assert_eq!(card.cccd.as_str(), "001190012345");
        }
    }

    #[test]
    fn large_photos_are_scanned_scaled_down() {
        let frame = photo_of(CARD, 12.0, 20, 9);
        assert!(frame.width() > DETECT_SIDE);
        assert_eq!(read_chip_card(&to_jpeg(&frame, 80)).unwrap().old_id.as_deref(), Some("187654321"));
    }

    #[test]
    fn bad_images_get_typed_errors() {
        let png = encode_png("x", 4).unwrap();
        assert!(matches!(decode_image(&png[..png.len() / 2]), Err(Error::Image(_))), "truncated");
        assert!(matches!(decode_image(b"definitely not an image"), Err(Error::Image(_))));
        assert!(matches!(decode_image(&[]), Err(Error::Image(_))));
        let blank = to_png(&GrayImage::from_pixel(200, 200, Luma([255])));
        assert!(matches!(decode_image(&blank), Err(Error::Image(_))), "no code");
        let too_wide = to_png(&GrayImage::from_pixel(MAX_IMAGE_SIDE + 1, 1, Luma([0])));
        assert!(matches!(decode_image(&too_wide), Err(Error::Image(_))), "over the size limit");
        let not_a_card = to_png(&photo_of("just some text", 2.0, 0, 1));
        assert!(matches!(read_chip_card(&not_a_card), Err(Error::MalformedQr(_))));
    }

    #[test]
    fn a_header_claiming_a_huge_image_is_refused_before_allocating() {
        // A valid 1x1 PNG whose IHDR is rewritten to 60000 x 60000 (CRC fixed), the classic bomb header.
        let mut png = to_png(&GrayImage::from_pixel(1, 1, Luma([0])));
        png[16..20].copy_from_slice(&60_000u32.to_be_bytes());
        png[20..24].copy_from_slice(&60_000u32.to_be_bytes());
        let crc = crc32fast::hash(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(decode_image(&png), Err(Error::Image(_))));
    }
}

//! Photos for `photo` fields: decode untrusted JPEG or PNG bytes within
//! limits, turn them upright, drop every byte of metadata (EXIF, GPS, maker
//! notes, ICC) by re-encoding from pixels, downsize to a bound, and make a
//! small thumbnail.
//!
//! Processing is deterministic: the same input and options give the same
//! bytes, so the same photo added twice is stored once (attachments are
//! content-addressed).

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

use crate::error::{Error, Result};

/// Largest photo file accepted, in bytes.
pub const MAX_INPUT_BYTES: usize = 30 * 1024 * 1024;
/// Largest width or height accepted before decoding (a 48-megapixel phone camera is 8000 wide).
pub const MAX_INPUT_SIDE: u32 = 12_000;
/// Most memory the decoder may allocate: refuses decompression bombs.
pub const MAX_DECODE_ALLOC: u64 = 512 * 1024 * 1024;

/// How photos are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhotoOptions {
    /// The long side of the stored photo, in pixels.
    pub max_side: u32,
    /// The long side of the thumbnail.
    pub thumb_side: u32,
    /// JPEG quality of the stored photo, 1–100.
    pub quality: u8,
    /// JPEG quality of the thumbnail.
    pub thumb_quality: u8,
}

impl Default for PhotoOptions {
    /// 1600 px at quality 80; 240 px thumbnails at 70.
    fn default() -> Self {
        PhotoOptions { max_side: 1600, thumb_side: 240, quality: 80, thumb_quality: 70 }
    }
}

/// A processed photo: JPEG bytes without metadata, and its thumbnail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessedPhoto {
    /// The stored photo, JPEG.
    pub full: Vec<u8>,
    /// Its width and height.
    pub size: (u32, u32),
    /// The thumbnail, JPEG.
    pub thumb: Vec<u8>,
    /// Its width and height.
    pub thumb_size: (u32, u32),
}

fn bad(why: impl std::fmt::Display) -> Error {
    Error::Image(why.to_string())
}

/// Decodes a JPEG or PNG within the limits, upright (EXIF orientation applied).
pub fn decode(bytes: &[u8]) -> Result<DynamicImage> {
    if bytes.is_empty() {
        return Err(bad("the photo is empty"));
    }
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(bad(format!("the photo is over {} MiB", MAX_INPUT_BYTES / (1024 * 1024))));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(bad)?;
    match reader.format() {
        Some(ImageFormat::Jpeg) if !jpeg_is_complete(bytes) => {
            return Err(bad("the JPEG is truncated: it has no end-of-image marker after its scan"));
        }
        Some(ImageFormat::Jpeg | ImageFormat::Png) => {}
        _ => return Err(bad("not a JPEG or PNG image")),
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_INPUT_SIDE);
    limits.max_image_height = Some(MAX_INPUT_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| bad(format!("unreadable photo: {e}")))?;
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| bad(format!("unreadable photo: {e}")))?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// Whether a JPEG has its end-of-image marker after its last scan. Decoders
/// fill a cut-off scan with grey instead of failing; a cut-off photo must be
/// refused, not stored half grey. (Data some phones append after the end
/// marker is allowed.)
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last_scan = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_scan {
        Some(at) => bytes[at..].windows(2).any(|w| w == [0xFF, 0xD9]),
        None => false,
    }
}

/// Scales `img` so that its long side is at most `side` (never up).
pub fn downsize(img: &DynamicImage, side: u32) -> DynamicImage {
    if img.width().max(img.height()) <= side {
        return img.clone();
    }
    // `resize` keeps the aspect ratio within the box. Triangle (bilinear, widened by the
    // scale factor) averages every source pixel: no aliasing, and fast.
    img.resize(side, side, FilterType::Triangle)
}

/// Encodes as baseline JPEG without any metadata.
pub fn encode_jpeg(img: &DynamicImage, quality: u8) -> Result<Vec<u8>> {
    let rgb = img.to_rgb8();
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100)).encode_image(&rgb).map_err(bad)?;
    Ok(out)
}

/// Processes a photo as a `photo` field stores it.
pub fn process(bytes: &[u8], options: PhotoOptions) -> Result<ProcessedPhoto> {
    if options.max_side == 0 || options.thumb_side == 0 {
        return Err(Error::InvalidArgument("photo sizes must be positive".into()));
    }
    let img = decode(bytes)?;
    let full = downsize(&img, options.max_side);
    let thumb = downsize(&full, options.thumb_side);
    Ok(ProcessedPhoto {
        full: encode_jpeg(&full, options.quality)?,
        size: (full.width(), full.height()),
        thumb: encode_jpeg(&thumb, options.thumb_quality)?,
        thumb_size: (thumb.width(), thumb.height()),
    })
}

/// A synthetic photo for tests and benchmarks: a gradient with detail, `w`×`h`, as JPEG.
pub fn synthetic_jpeg(w: u32, h: u32, quality: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let n = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) >> 27;
        image::Rgb([(x * 255 / w.max(1)) as u8, (y * 255 / h.max(1)) as u8, ((x + y) % 64 * 3 + n) as u8])
    });
    let mut out = Vec::new();
    let _ = JpegEncoder::new_with_quality(&mut out, quality).encode_image(&img);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JPEG with an EXIF block holding a GPS tag and orientation 6 (rotate 90° clockwise).
    fn jpeg_with_exif(w: u32, h: u32) -> Vec<u8> {
        let plain = synthetic_jpeg(w, h, 90);
        // TIFF header (little endian), IFD0 with Orientation=6 and a GPS IFD pointer, GPS IFD with a latitude ref.
        let mut tiff = vec![b'I', b'I', 42, 0, 8, 0, 0, 0];
        tiff.extend_from_slice(&2u16.to_le_bytes());
        tiff.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0]); // Orientation, SHORT, 1, 6
        tiff.extend_from_slice(&[0x25, 0x88, 4, 0, 1, 0, 0, 0, 38, 0, 0, 0]); // GPS IFD at 38
        tiff.extend_from_slice(&0u32.to_le_bytes());
        tiff.extend_from_slice(&1u16.to_le_bytes());
        tiff.extend_from_slice(&[0x01, 0x00, 2, 0, 2, 0, 0, 0, b'N', 0, 0, 0]); // GPSLatitudeRef "N"
        tiff.extend_from_slice(&0u32.to_le_bytes());
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&tiff);
        let mut out = plain[..2].to_vec(); // SOI
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&app1);
        out.extend_from_slice(&plain[2..]);
        out
    }

    #[test]
    fn photos_are_upright_downsized_stripped_and_deterministic() {
        let input = jpeg_with_exif(2400, 1200);
        assert!(input.windows(4).any(|w| w == b"Exif"));
        let p = process(&input, PhotoOptions::default()).unwrap();
        // Orientation 6 turns the 2400×1200 picture into a 1200×2400 one, then it is bounded to 1600.
        assert_eq!(p.size, (800, 1600));
        assert_eq!(p.thumb_size, (120, 240));
        assert!(!p.full.windows(4).any(|w| w == b"Exif"), "metadata stripped");
        assert!(!p.full.windows(2).any(|w| w == [0xFF, 0xE1]), "no APP1 segment at all");
        assert_eq!(image::guess_format(&p.full).unwrap(), ImageFormat::Jpeg);
        assert_eq!(process(&input, PhotoOptions::default()).unwrap(), p, "same input, same bytes");
    }

    #[test]
    fn small_photos_and_pngs_are_not_upscaled() {
        let img = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(300, 200, image::Rgba([10, 20, 30, 128])));
        let mut png = Vec::new();
        img.write_to(&mut Cursor::new(&mut png), ImageFormat::Png).unwrap();
        let p = process(&png, PhotoOptions::default()).unwrap();
        assert_eq!((p.size, p.thumb_size), ((300, 200), (240, 160)));
    }

    #[test]
    fn bad_bytes_get_a_typed_error() {
        let good = synthetic_jpeg(64, 48, 90);
        // A PNG that claims 100000×100000 pixels: a decompression bomb.
        let mut png = Vec::new();
        DynamicImage::new_rgb8(4, 4).write_to(&mut Cursor::new(&mut png), ImageFormat::Png).unwrap();
        png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let crc = crc32fast::hash(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec();
        for (name, bytes) in [
            ("empty", Vec::new()),
            ("text", b"hello, not an image".to_vec()),
            ("truncated", good[..good.len() / 2].to_vec()),
            ("header only", good[..20].to_vec()),
            ("bomb", png),
            ("gif", gif),
        ] {
            assert!(matches!(process(&bytes, PhotoOptions::default()), Err(Error::Image(_))), "{name}");
        }
    }
}

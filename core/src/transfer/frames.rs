//! A bundle as an animated sequence of QR codes, for two phones with no
//! network and no cable: the sender's screen loops over the frames, the
//! receiver's camera takes them in any order, ignores repeats, and keeps
//! looking until every frame is in.
//!
//! Frame text: `DSF1:<tag>:<index>:<count>:<crc32>:<payload>` where `tag` is
//! the first 8 hex digits of the bundle's BLAKE3 hash (frames of two bundles
//! never mix), `crc32` covers everything before it and the payload, and the
//! payload is base64url without padding.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::bundle::TransferError;
use crate::error::{Error, Result};

/// Bytes of bundle per frame: about 580 characters of QR text, a QR code a phone camera reads from a screen.
pub const FRAME_PAYLOAD_BYTES: usize = 420;
/// Most frames a bundle may have (about 4 MB).
pub const MAX_FRAMES: usize = 10_000;
const PREFIX: &str = "DSF1";

fn bad(why: impl Into<String>) -> Error {
    Error::Transfer(TransferError::BadFrame(why.into()))
}

fn tag_of(bundle: &[u8]) -> String {
    blake3::hash(bundle).to_hex()[..8].to_string()
}

/// Splits a bundle into QR frame texts.
pub fn to_frames(bundle: &[u8], payload_bytes: usize) -> Result<Vec<String>> {
    let size = payload_bytes.max(16);
    let count = bundle.len().div_ceil(size).max(1);
    if count > MAX_FRAMES {
        return Err(Error::InvalidArgument(format!(
            "the bundle needs {count} frames, over {MAX_FRAMES}: send it as a file"
        )));
    }
    let tag = tag_of(bundle);
    Ok((0..count)
        .map(|i| {
            let part = &bundle[i * size..((i + 1) * size).min(bundle.len())];
            let head = format!("{PREFIX}:{tag}:{i}:{count}:");
            let payload = URL_SAFE_NO_PAD.encode(part);
            let crc = crc32fast::hash(format!("{head}{payload}").as_bytes());
            format!("{head}{crc:08x}:{payload}")
        })
        .collect())
}

/// How far a receiver has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameProgress {
    /// Distinct frames received.
    pub received: usize,
    /// Frames in the bundle.
    pub total: usize,
    /// Whether the last frame added was new.
    pub new: bool,
}

/// Collects frames, in any order, until the bundle is whole.
#[derive(Debug, Default)]
pub struct FrameReceiver {
    tag: Option<String>,
    count: usize,
    parts: BTreeMap<usize, Vec<u8>>,
}

impl FrameReceiver {
    /// An empty receiver.
    pub fn new() -> FrameReceiver {
        FrameReceiver::default()
    }

    /// Adds one frame's text. A damaged frame, or one of another bundle, is refused
    /// with [`TransferError::BadFrame`] and changes nothing; a repeat is ignored.
    pub fn add_text(&mut self, text: &str) -> Result<FrameProgress> {
        let text = text.trim();
        let parts: Vec<&str> = text.splitn(6, ':').collect();
        let [PREFIX, tag, index, count, crc, payload] = parts.as_slice() else {
            return Err(bad("not a Doorstep bundle frame"));
        };
        let head_len = text.len() - payload.len() - crc.len() - 1;
        let expected = u32::from_str_radix(crc, 16).map_err(|_| bad("bad checksum field"))?;
        let actual = crc32fast::hash(format!("{}{payload}", &text[..head_len]).as_bytes());
        if expected != actual {
            return Err(bad("checksum mismatch: the frame was misread"));
        }
        let index: usize = index.parse().map_err(|_| bad("bad frame number"))?;
        let count: usize = count.parse().map_err(|_| bad("bad frame count"))?;
        if count == 0 || count > MAX_FRAMES || index >= count {
            return Err(bad("frame number out of range"));
        }
        match &self.tag {
            Some(t) if t != tag || self.count != count => {
                return Err(bad("this frame belongs to another bundle"));
            }
            _ => {}
        }
        let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| bad("bad payload"))?;
        self.tag = Some(tag.to_string());
        self.count = count;
        let new = !self.parts.contains_key(&index);
        if new {
            self.parts.insert(index, bytes);
        }
        Ok(self.progress(new))
    }

    /// Adds every frame found in a camera image (PNG or JPEG). Returns the progress,
    /// or the error of the last frame refused when none was taken.
    pub fn add_image(&mut self, image: &[u8]) -> Result<FrameProgress> {
        let texts = crate::qr::decode_image(image)?;
        let mut last = Err(bad("no bundle frame in the image"));
        for t in texts {
            match self.add_text(&t) {
                Ok(p) => last = Ok(p),
                Err(e) if last.is_err() => last = Err(e),
                Err(_) => {}
            }
        }
        last
    }

    fn progress(&self, new: bool) -> FrameProgress {
        FrameProgress { received: self.parts.len(), total: self.count, new }
    }

    /// Whether every frame is in.
    pub fn is_complete(&self) -> bool {
        self.count > 0 && self.parts.len() == self.count
    }

    /// Frames still missing, by number (to show the sender which to repeat).
    pub fn missing(&self) -> Vec<usize> {
        (0..self.count).filter(|i| !self.parts.contains_key(i)).collect()
    }

    /// The whole bundle, once complete and matching its tag.
    pub fn bundle(&self) -> Result<Vec<u8>> {
        if !self.is_complete() {
            return Err(Error::Transfer(TransferError::Malformed(format!(
                "{} of {} frames received",
                self.parts.len(),
                self.count
            ))));
        }
        let bytes: Vec<u8> = self.parts.values().flatten().copied().collect();
        if Some(tag_of(&bytes)) != self.tag {
            return Err(bad("the frames do not add up to their bundle"));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_arrive_in_any_order_with_repeats() {
        let bundle: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let frames = to_frames(&bundle, FRAME_PAYLOAD_BYTES).unwrap();
        assert_eq!(frames.len(), 5000usize.div_ceil(FRAME_PAYLOAD_BYTES));
        assert!(frames.iter().all(|f| f.len() < 620), "{}", frames[0].len());
        let mut rx = FrameReceiver::new();
        for i in (0..frames.len()).rev() {
            let p = rx.add_text(&frames[i]).unwrap();
            assert!(p.new);
            assert!(!rx.add_text(&frames[i]).unwrap().new, "a repeat is ignored");
        }
        assert!(rx.is_complete());
        assert_eq!(rx.bundle().unwrap(), bundle);
    }

    #[test]
    fn damaged_or_foreign_frames_are_refused_without_harm() {
        let frames = to_frames(&[1u8; 1000], 100).unwrap();
        let other = to_frames(&[2u8; 1000], 100).unwrap();
        let mut rx = FrameReceiver::new();
        rx.add_text(&frames[0]).unwrap();
        let mut damaged = frames[1].clone().into_bytes();
        let last = damaged.len() - 1;
        damaged[last] = if damaged[last] == b'A' { b'B' } else { b'A' };
        for bad_frame in [String::from_utf8(damaged).unwrap(), other[1].clone(), "hello".into(), "DSF1:x:0:1:0:".into()]
        {
            assert!(matches!(rx.add_text(&bad_frame), Err(Error::Transfer(TransferError::BadFrame(_)))), "{bad_frame}");
        }
        assert_eq!(rx.missing().len(), frames.len() - 1);
        assert!(rx.bundle().is_err());
    }
}

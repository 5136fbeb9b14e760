//! Photos and offline transfer, as the apps call them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use doorstep_core::photo::PhotoOptions;
use doorstep_core::record::PhotoField;
use doorstep_core::store::{PhotoSize, Store};
use doorstep_core::sync::HttpTransport;
use doorstep_core::transfer::{BundleSelection, FRAME_PAYLOAD_BYTES, FrameProgress, FrameReceiver, to_frames};

use crate::error::{DoorstepError, guard};
use crate::records::{AttachmentSyncRecord, FrameProgressRecord, ImportReportRecord, PeerRecord, PhotoRecord};
use crate::{DoorstepStore, runtime};

fn transport(s: &Store) -> doorstep_core::Result<HttpTransport> {
    let url =
        s.sync_value("server_url")?.ok_or_else(|| doorstep_core::Error::InvalidArgument("not enrolled".into()))?;
    HttpTransport::new(&url)
}

fn add_photo(
    s: &mut Store,
    household_id: &str,
    field: &PhotoField,
    image: &[u8],
    max_side: u32,
) -> doorstep_core::Result<PhotoRecord> {
    let photo = s.add_photo(household_id, field, image, PhotoOptions { max_side, ..PhotoOptions::default() })?;
    Ok(PhotoRecord { width: photo.width, height: photo.height, full_id: photo.full.id, thumb_id: photo.thumb.id })
}

fn photo(s: &Store, household_id: &str, field: &PhotoField, thumbnail: bool) -> doorstep_core::Result<Option<Vec<u8>>> {
    s.photo(household_id, field, if thumbnail { PhotoSize::Thumb } else { PhotoSize::Full })
}

fn fetch_photo(s: &Store, household_id: &str, field: &PhotoField) -> doorstep_core::Result<bool> {
    let household = s.household(household_id)?;
    let text =
        household.photo(field).ok_or_else(|| doorstep_core::Error::NotFound(format!("photo of {household_id}")))?;
    let photo = doorstep_core::attachment::PhotoRef::parse(text)?;
    doorstep_core::sync::fetch_blob(s, &transport(s)?, &photo.full.id, &AtomicBool::new(false))
}

#[uniffi::export]
impl DoorstepStore {
    /// Sets a household's house photo from JPEG or PNG bytes: metadata stripped, downsized
    /// to `max_side` pixels (1600 is the default elsewhere), thumbnail made, stored sealed.
    /// Bad image bytes give `InvalidInput` and leave the household as it was.
    pub fn add_house_photo(
        &self,
        household_id: String,
        image: Vec<u8>,
        max_side: u32,
    ) -> Result<PhotoRecord, DoorstepError> {
        self.with(|s| add_photo(s, &household_id, &PhotoField::House, &image, max_side))
    }

    /// Sets a resident's document photo (identity card, birth certificate…) from JPEG or PNG
    /// bytes, processed as `add_house_photo` does. A member the household lacks gives `NotFound`.
    pub fn add_document_photo(
        &self,
        household_id: String,
        member_id: String,
        image: Vec<u8>,
        max_side: u32,
    ) -> Result<PhotoRecord, DoorstepError> {
        self.with(|s| add_photo(s, &household_id, &PhotoField::MemberDocument(member_id), &image, max_side))
    }

    /// A resident's document photo (JPEG), or its thumbnail; `None` as for `house_photo`.
    pub fn document_photo(
        &self,
        household_id: String,
        member_id: String,
        thumbnail: bool,
    ) -> Result<Option<Vec<u8>>, DoorstepError> {
        self.with(|s| photo(s, &household_id, &PhotoField::MemberDocument(member_id), thumbnail))
    }

    /// Downloads a resident's full document photo from the server. Returns whether it was new.
    pub fn fetch_document_photo(&self, household_id: String, member_id: String) -> Result<bool, DoorstepError> {
        self.with(|s| fetch_photo(s, &household_id, &PhotoField::MemberDocument(member_id)))
    }

    /// A household's house photo (JPEG), or its thumbnail; `None` when it has none or this
    /// device has not downloaded it (see `fetch_house_photo`).
    pub fn house_photo(&self, household_id: String, thumbnail: bool) -> Result<Option<Vec<u8>>, DoorstepError> {
        self.with(|s| photo(s, &household_id, &PhotoField::House, thumbnail))
    }

    /// Downloads a household's full house photo from the server (photos come on demand).
    /// Returns whether it was new.
    pub fn fetch_house_photo(&self, household_id: String) -> Result<bool, DoorstepError> {
        self.with(|s| fetch_photo(s, &household_id, &PhotoField::House))
    }

    /// Uploads the photos the server lacks and downloads missing thumbnails, blocking.
    /// Run it after `sync`: records never wait on photos. A photo over the device's quota waits
    /// on the phone while the rest go; the quota refusal comes back at the end.
    pub fn sync_attachments_blocking(&self) -> Result<AttachmentSyncRecord, DoorstepError> {
        self.cancel.store(false, Ordering::SeqCst);
        self.with(|s| {
            let r = doorstep_core::sync::sync_attachments(s, &transport(s)?, &self.cancel)?;
            Ok(AttachmentSyncRecord {
                uploaded: r.uploaded as u64,
                downloaded: r.downloaded as u64,
                bytes_sent: r.bytes_sent,
                bytes_received: r.bytes_received,
            })
        })
    }

    /// The devices of this device's area it can exchange bundles with (from the last sync).
    pub fn bundle_peers(&self) -> Result<Vec<PeerRecord>, DoorstepError> {
        self.with(|s| {
            let me = s.device_id().to_string();
            Ok(s.directory()?
                .into_iter()
                .filter(|d| d.device_id != me)
                .map(|d| PeerRecord { device_id: d.device_id, area: d.area, revoked: d.revoked })
                .collect())
        })
    }

    /// Seals households (and their photos held here) to another device of the area: the
    /// given ones, or when `household_ids` is empty every household of `dirty_area` not yet
    /// acknowledged by the server.
    pub fn export_bundle(
        &self,
        recipient_device_id: String,
        household_ids: Vec<String>,
        dirty_area: Option<String>,
    ) -> Result<Vec<u8>, DoorstepError> {
        self.with(|s| {
            let selection = match (household_ids.is_empty(), dirty_area) {
                (false, _) => BundleSelection::Households(household_ids),
                (true, Some(area)) => BundleSelection::DirtyInArea(area),
                (true, None) => {
                    return Err(doorstep_core::Error::InvalidArgument("choose households or an area".into()));
                }
            };
            s.export_bundle(&recipient_device_id, &selection)
        })
    }

    /// Opens a bundle sealed to this device and merges it as a sync would. Importing the same
    /// bundle twice changes nothing; what it brought reaches the server at the next sync.
    pub fn import_bundle(&self, bundle: Vec<u8>) -> Result<ImportReportRecord, DoorstepError> {
        self.with(|s| {
            let r = s.import_bundle(&bundle)?;
            Ok(ImportReportRecord {
                sender_device: r.sender_device,
                households: r.households as u64,
                changed: r.changed as u64,
                blobs_added: r.blobs_added as u64,
            })
        })
    }
}

#[uniffi::export]
impl DoorstepStore {
    /// `sync_attachments_blocking` without blocking the caller (a suspend function in Kotlin).
    pub async fn sync_attachments(self: Arc<Self>) -> Result<AttachmentSyncRecord, DoorstepError> {
        let handle = runtime()?.spawn_blocking(move || self.sync_attachments_blocking());
        handle.await.map_err(|e| DoorstepError::Other { reason: format!("attachment sync failed: {e}") })?
    }
}

/// A bundle as the texts of its QR frames, for the sender's screen to loop over.
#[uniffi::export]
pub fn bundle_to_frames(bundle: Vec<u8>) -> Result<Vec<String>, DoorstepError> {
    guard(|| Ok(to_frames(&bundle, FRAME_PAYLOAD_BYTES)?))
}

/// Collects a bundle's QR frames from camera images or decoded texts, in any order.
#[derive(uniffi::Object, Default)]
pub struct BundleReceiver {
    frames: Mutex<FrameReceiver>,
}

fn progress(p: FrameProgress, complete: bool) -> FrameProgressRecord {
    FrameProgressRecord { received: p.received as u32, total: p.total as u32, complete }
}

impl BundleReceiver {
    fn with<T>(&self, f: impl FnOnce(&mut FrameReceiver) -> doorstep_core::Result<T>) -> Result<T, DoorstepError> {
        guard(|| {
            // A receiver holds no transaction: after a caught panic it is used as it is.
            let mut rx = self.frames.lock().unwrap_or_else(|poisoned| {
                self.frames.clear_poison();
                poisoned.into_inner()
            });
            f(&mut rx).map_err(DoorstepError::from)
        })
    }
}

#[uniffi::export]
impl BundleReceiver {
    /// An empty receiver.
    #[uniffi::constructor]
    pub fn new() -> Arc<BundleReceiver> {
        Arc::new(BundleReceiver::default())
    }

    /// Adds a frame's decoded text. Repeats are ignored; a damaged frame or one of another
    /// bundle gives `TransferRefused` and changes nothing.
    pub fn add_frame_text(&self, text: String) -> Result<FrameProgressRecord, DoorstepError> {
        self.with(|rx| {
            let p = rx.add_text(&text)?;
            Ok(progress(p, rx.is_complete()))
        })
    }

    /// Adds the frames found in a camera image (JPEG or PNG).
    pub fn add_frame_image(&self, image: Vec<u8>) -> Result<FrameProgressRecord, DoorstepError> {
        self.with(|rx| {
            let p = rx.add_image(&image)?;
            Ok(progress(p, rx.is_complete()))
        })
    }

    /// Frame numbers still missing.
    pub fn missing(&self) -> Result<Vec<u32>, DoorstepError> {
        self.with(|rx| Ok(rx.missing().into_iter().map(|i| i as u32).collect()))
    }

    /// The whole bundle, once every frame is in.
    pub fn bundle(&self) -> Result<Vec<u8>, DoorstepError> {
        self.with(|rx| rx.bundle())
    }
}

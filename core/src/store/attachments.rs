//! Photos of households and of residents' documents, kept as sealed
//! attachments beside the documents.

use rusqlite::{OptionalExtension, params};

use super::Store;
use super::households::Origin;
use crate::attachment::{BlobRef, MAX_BLOB_BYTES, PhotoRef, is_blob_id, open_blob, seal_blob};
use crate::crypto::Aad;
use crate::error::{Error, Result};
use crate::photo::{PhotoOptions, process};
use crate::record::PhotoField;

const KEY_TABLE: &str = "attachment";

/// Which rendition of a photo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhotoSize {
    /// The stored photo (downloaded on demand).
    Full,
    /// The thumbnail (downloaded eagerly).
    Thumb,
}

impl PhotoSize {
    fn kind(self) -> &'static str {
        match self {
            PhotoSize::Full => "full",
            PhotoSize::Thumb => "thumb",
        }
    }
}

/// A sealed blob the server does not have yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    /// Blob id.
    pub id: String,
    /// The sealed bytes, as they travel.
    pub sealed: Vec<u8>,
}

impl Store {
    /// Processes a photo (see [`crate::photo`]) and makes it the household's
    /// house photo, in one transaction (see [`Store::add_photo`]).
    pub fn add_house_photo(&mut self, household_id: &str, bytes: &[u8], options: PhotoOptions) -> Result<PhotoRef> {
        self.add_photo(household_id, &PhotoField::House, bytes, options)
    }

    /// Processes a photo (see [`crate::photo`]) and puts it in a photo field of
    /// the household, in one transaction. Bad image bytes are refused with
    /// [`Error::Image`], and a member the household lacks with [`Error::NotFound`],
    /// before anything is written: the household stays as it was.
    pub fn add_photo(
        &mut self,
        household_id: &str,
        field: &PhotoField,
        bytes: &[u8],
        options: PhotoOptions,
    ) -> Result<PhotoRef> {
        let mut doc = self.open_household(household_id)?;
        let mut household = doc.read();
        if let PhotoField::MemberDocument(id) = field
            && household.member(id).is_none()
        {
            return Err(Error::NotFound(format!("member {id}")));
        }
        let processed = process(bytes, options)?;
        let (full, full_sealed) = seal_blob(&processed.full)?;
        let (thumb, thumb_sealed) = seal_blob(&processed.thumb)?;
        let photo = PhotoRef { full, thumb, width: processed.size.0, height: processed.size.1 };
        household.set_photo(field, photo.to_field())?;
        let editor = self.editor()?;
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let result = (|| -> Result<()> {
            self.put_blob(&photo.full, PhotoSize::Full, Some(&full_sealed), false)?;
            self.put_blob(&photo.thumb, PhotoSize::Thumb, Some(&thumb_sealed), false)?;
            doc.update(&household, &editor)?;
            self.persist(&mut doc, Origin::Local)?;
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.conn.execute_batch("COMMIT")?;
                Ok(photo)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Records a blob: its key sealed under the data key, and its sealed bytes when held.
    /// A blob already held is kept; a blob known but not held is filled in.
    pub(crate) fn put_blob(&self, r: &BlobRef, size: PhotoSize, sealed: Option<&[u8]>, uploaded: bool) -> Result<()> {
        let sealed_key = self.session()?.sealer.seal(Aad { table: KEY_TABLE, doc_id: &r.id, chunk: "key" }, &r.key)?;
        self.conn.execute(
            "INSERT INTO attachment (id, kind, sealed_key, blob, uploaded, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (id) DO UPDATE SET blob = COALESCE(attachment.blob, excluded.blob),
                 uploaded = CASE WHEN attachment.blob IS NULL AND excluded.blob IS NOT NULL
                                 THEN excluded.uploaded ELSE attachment.uploaded END",
            params![r.id, size.kind(), sealed_key, sealed, uploaded, self.clock.now()],
        )?;
        Ok(())
    }

    /// Registers the photos a household refers to (house and documents), so that their thumbnails
    /// are fetched at the next attachment sync.
    pub(crate) fn register_photo_refs(&self, household: &crate::record::Household) -> Result<()> {
        for photo in household.photos().into_iter().filter_map(|p| PhotoRef::parse(p).ok()) {
            self.put_blob(&photo.full, PhotoSize::Full, None, true)?;
            self.put_blob(&photo.thumb, PhotoSize::Thumb, None, true)?;
        }
        Ok(())
    }

    fn blob_key(&self, id: &str) -> Result<Option<(BlobRef, Option<Vec<u8>>)>> {
        let row: Option<(Vec<u8>, Option<Vec<u8>>)> = self
            .conn
            .query_row("SELECT sealed_key, blob FROM attachment WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((sealed_key, blob)) = row else { return Ok(None) };
        let key = self.session()?.sealer.open(Aad { table: KEY_TABLE, doc_id: id, chunk: "key" }, &sealed_key)?;
        let key: [u8; 32] = key.as_slice().try_into().map_err(|_| Error::corrupt(format!("attachment key {id}")))?;
        Ok(Some((BlobRef { id: id.to_string(), key }, blob)))
    }

    /// A household's house photo, decrypted: `None` when the household has
    /// none or this device has not downloaded it yet.
    pub fn house_photo(&self, household_id: &str, size: PhotoSize) -> Result<Option<Vec<u8>>> {
        self.photo(household_id, &PhotoField::House, size)
    }

    /// A photo field's photo, decrypted: `None` when the field is empty or this
    /// device does not hold that rendition yet.
    pub fn photo(&self, household_id: &str, field: &PhotoField, size: PhotoSize) -> Result<Option<Vec<u8>>> {
        let household = self.household(household_id)?;
        let Some(text) = household.photo(field) else { return Ok(None) };
        let photo = PhotoRef::parse(text)?;
        let r = match size {
            PhotoSize::Full => &photo.full,
            PhotoSize::Thumb => &photo.thumb,
        };
        self.open_blob_unchecked(&r.id)
    }

    /// A blob's plaintext, when held. Helpers reach photos only through their own
    /// households ([`Store::photo`]).
    pub fn blob(&self, id: &str) -> Result<Option<Vec<u8>>> {
        if self.session()?.profile.role == super::Role::Helper {
            return Err(Error::NotPermitted("a helper opens photos only through its own households".into()));
        }
        self.open_blob_unchecked(id)
    }

    fn open_blob_unchecked(&self, id: &str) -> Result<Option<Vec<u8>>> {
        match self.blob_key(id)? {
            Some((r, Some(sealed))) => Ok(Some(open_blob(&r, &sealed)?)),
            _ => Ok(None),
        }
    }

    /// A blob's sealed bytes, when held (what uploads and bundles carry).
    pub fn sealed_blob(&self, id: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .query_row("SELECT blob FROM attachment WHERE id = ?1", [id], |r| r.get::<_, Option<Vec<u8>>>(0))
            .optional()?
            .flatten())
    }

    /// Stores sealed bytes received for a known blob, after checking they open
    /// to the plaintext the id names. Returns whether they were new.
    pub fn accept_blob(&self, id: &str, sealed: &[u8], uploaded: bool) -> Result<bool> {
        if sealed.len() > MAX_BLOB_BYTES {
            return Err(Error::Protocol(format!("attachment {id} is over the size limit")));
        }
        let Some((r, held)) = self.blob_key(id)? else {
            return Err(Error::NotFound(format!("attachment {id}")));
        };
        if held.is_some() {
            return Ok(false);
        }
        open_blob(&r, sealed)?;
        self.conn.execute(
            "UPDATE attachment SET blob = ?2, uploaded = ?3 WHERE id = ?1 AND blob IS NULL",
            params![id, sealed, uploaded],
        )?;
        Ok(true)
    }

    /// Sealed blobs the server does not have yet, oldest first.
    pub fn pending_uploads(&self, limit: u32) -> Result<Vec<PendingUpload>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, blob FROM attachment WHERE uploaded = 0 AND blob IS NOT NULL ORDER BY created_at, id LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit], |r| Ok(PendingUpload { id: r.get(0)?, sealed: r.get(1)? }))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Marks a blob as held by the server.
    pub fn mark_uploaded(&self, id: &str) -> Result<()> {
        self.conn.execute("UPDATE attachment SET uploaded = 1 WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Ids of known blobs of this size that this device does not hold.
    pub fn missing_blobs(&self, size: PhotoSize, limit: u32) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id FROM attachment WHERE kind = ?1 AND blob IS NULL ORDER BY created_at, id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![size.kind(), limit], |r| r.get::<_, String>(0))?;
        let ids: Vec<String> = rows.collect::<rusqlite::Result<_>>()?;
        Ok(ids.into_iter().filter(|id| is_blob_id(id)).collect())
    }
}

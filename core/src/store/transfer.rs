//! The store's side of offline transfer: the device's bundle key, the
//! directory of the area's devices, and exporting and importing bundles.

use rusqlite::OptionalExtension;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroize;

use super::Store;
use super::households::Origin;
use crate::attachment::PhotoRef;
use crate::error::{Error, Result};
use crate::record::{HouseholdDoc, check_id};
use crate::sync::protocol::{DirectoryEntry, area_within};
use crate::transfer::bundle::{self, BundleBody, BundledBlob, BundledHousehold};
use crate::transfer::{BundleSelection, ImportReport, TransferError};

const KEY_TRANSFER_SECRET: &str = "transfer_secret";
const KEY_DIRECTORY: &str = "directory";
const KEY_AREAS: &str = "areas";
/// Most households one bundle carries.
pub const MAX_BUNDLE_HOUSEHOLDS: usize = 5_000;

fn refused(e: TransferError) -> Error {
    Error::Transfer(e)
}

impl Store {
    fn transfer_secret(&self) -> Result<StaticSecret> {
        if let Some(mut hex_secret) = self.sync_secret(KEY_TRANSFER_SECRET)? {
            let bytes = hex::decode(&hex_secret).ok().and_then(|b| <[u8; 32]>::try_from(b).ok());
            hex_secret.zeroize();
            return bytes.map(StaticSecret::from).ok_or_else(|| Error::corrupt("the device's bundle key"));
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|_| Error::Random)?;
        let mut text = hex::encode(seed);
        self.set_sync_secret(KEY_TRANSFER_SECRET, &text)?;
        text.zeroize();
        let secret = StaticSecret::from(seed);
        seed.zeroize();
        Ok(secret)
    }

    /// This device's public key for offline bundles (made on first use, its secret sealed
    /// under the data key). Each sync registers it with the server's directory.
    pub fn transfer_key(&self) -> Result<[u8; 32]> {
        Ok(*PublicKey::from(&self.transfer_secret()?).as_bytes())
    }

    /// Replaces the directory of the area's devices (from a sync).
    pub fn set_directory(&self, entries: &[DirectoryEntry]) -> Result<()> {
        let json = serde_json::to_string(entries).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        self.set_sync_value(KEY_DIRECTORY, &json)
    }

    /// The directory of the area's devices, as the last sync brought it.
    pub fn directory(&self) -> Result<Vec<DirectoryEntry>> {
        Ok(self.sync_value(KEY_DIRECTORY)?.and_then(|j| serde_json::from_str(&j).ok()).unwrap_or_default())
    }

    fn my_areas(&self) -> Result<Vec<String>> {
        Ok(self.sync_value(KEY_AREAS)?.and_then(|a| serde_json::from_str(&a).ok()).unwrap_or_default())
    }

    fn bundled(&self, id: &str, body: &mut BundleBody) -> Result<()> {
        let mut doc = self.open_household(id)?;
        let household = doc.read();
        for photo in household.photos().into_iter().filter_map(|p| PhotoRef::parse(p).ok()) {
            for r in [&photo.thumb, &photo.full] {
                if let Some(sealed) = self.sealed_blob(&r.id)? {
                    body.blobs.push(BundledBlob { id: r.id.clone(), sealed });
                }
            }
        }
        body.households.push(BundledHousehold { doc_id: id.to_string(), area: household.area_code, doc: doc.save() });
        Ok(())
    }

    /// Seals the chosen households, with the photos this device holds, to another device of
    /// the directory. The bundle carries whole documents: the receiver may have none of them.
    pub fn export_bundle(&self, recipient_device: &str, selection: &BundleSelection) -> Result<Vec<u8>> {
        let recipient = self
            .directory()?
            .into_iter()
            .find(|d| d.device_id == recipient_device)
            .ok_or_else(|| refused(TransferError::UnknownRecipient(recipient_device.to_string())))?;
        if recipient.revoked {
            return Err(refused(TransferError::RevokedRecipient(recipient_device.to_string())));
        }
        let key: [u8; 32] = hex::decode(&recipient.transfer_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| refused(TransferError::UnknownRecipient(recipient_device.to_string())))?;
        let ids: Vec<String> = match selection {
            BundleSelection::Households(ids) => ids.clone(),
            BundleSelection::DirtyInArea(area) => {
                let mut stmt =
                    self.conn.prepare_cached("SELECT doc_id, area FROM doc_meta WHERE dirty = 1 ORDER BY doc_id")?;
                let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
                let mut ids = Vec::new();
                for row in rows {
                    let (id, a) = row?;
                    if area_within(&a, area) {
                        ids.push(id);
                    }
                }
                ids
            }
        };
        if ids.is_empty() {
            return Err(Error::InvalidArgument("no households to send".into()));
        }
        if ids.len() > MAX_BUNDLE_HOUSEHOLDS {
            return Err(Error::InvalidArgument(format!("at most {MAX_BUNDLE_HOUSEHOLDS} households in one bundle")));
        }
        let mut body = BundleBody::default();
        for id in &ids {
            self.bundled(id, &mut body)?;
        }
        bundle::seal(&self.device_id, &self.transfer_secret()?, &key, &body, self.clock.now())
    }

    /// Opens a bundle sealed to this device and merges it, in one transaction, as a sync would:
    /// through Automerge, so importing it twice changes nothing. Imported households are
    /// dirty, so the server gets them at the next sync (it dedupes by change hash).
    ///
    /// Refused with [`Error::Transfer`]: a bundle for another device, one altered or
    /// forged, one from a device missing from the directory or revoked. Refused with
    /// [`Error::NotPermitted`]: households outside this device's areas. Nothing changes then.
    pub fn import_bundle(&mut self, bytes: &[u8]) -> Result<ImportReport> {
        let (header, _, _) = bundle::read_header(bytes)?;
        let sender = self
            .directory()?
            .into_iter()
            .find(|d| d.device_id == header.sender_device)
            .ok_or_else(|| refused(TransferError::UnknownSender(header.sender_device.clone())))?;
        if sender.revoked {
            return Err(refused(TransferError::RevokedSender(sender.device_id)));
        }
        if hex::decode(&sender.transfer_key).ok().as_deref() != Some(header.sender_key.as_slice()) {
            return Err(refused(TransferError::Tampered));
        }
        let (header, body) = bundle::open(bytes, &self.transfer_secret()?)?;
        let areas = self.my_areas()?;
        for h in &body.households {
            check_id(&h.doc_id)?;
            if !areas.iter().any(|a| area_within(&h.area, a)) {
                return Err(Error::NotPermitted(format!("{} is outside this device's areas", h.doc_id)));
            }
        }
        let editor = self.editor()?;
        let mut report = ImportReport {
            sender_device: header.sender_device,
            households: body.households.len(),
            ..Default::default()
        };
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let result = (|| -> Result<()> {
            for h in &body.households {
                let mut doc = match self.meta_heads(&h.doc_id)? {
                    Some(_) => {
                        let mut doc = HouseholdDoc::load(&h.doc_id, &self.read_chunks(&h.doc_id)?, &editor)?;
                        doc.load_incremental(&h.doc)?;
                        doc
                    }
                    None => HouseholdDoc::load(&h.doc_id, &h.doc, &editor)?,
                };
                if !areas.iter().any(|a| area_within(&doc.read().area_code, a)) {
                    return Err(Error::NotPermitted(format!("{} is outside this device's areas", h.doc_id)));
                }
                if self.persist(&mut doc, Origin::Transfer)?.changed {
                    report.changed += 1;
                }
            }
            for b in &body.blobs {
                let known: Option<i64> =
                    self.conn.query_row("SELECT 1 FROM attachment WHERE id = ?1", [&b.id], |r| r.get(0)).optional()?;
                if known.is_some() && self.accept_blob(&b.id, &b.sealed, false)? {
                    report.blobs_added += 1;
                }
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.conn.execute_batch("COMMIT")?;
                Ok(report)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

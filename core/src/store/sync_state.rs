//! What the sync client keeps between runs: the cursor, the credential
//! (sealed), and per-document acknowledged heads.

use rusqlite::{OptionalExtension, params};

use super::Store;
use super::households::{Origin, heads_from_text, heads_to_text};
use crate::crypto::Aad;
use crate::error::{Error, Result};
use crate::record::HouseholdDoc;

/// One dirty document, ready to push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPush {
    /// Household id.
    pub doc_id: String,
    /// Area.
    pub area: String,
    /// Changes since the heads the server acknowledged.
    pub changes: Vec<u8>,
    /// The document's heads these changes reach: once the server acknowledges them, every
    /// change up to them is the server's (see [`Store::mark_synced_all`]).
    pub heads: Vec<automerge::ChangeHash>,
}

/// What applying a page of pulled documents did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteBatch {
    /// Documents that changed.
    pub changed: usize,
    /// Documents quarantined, with why.
    pub quarantined: Vec<(String, String)>,
    /// Quarantined changes that now loaded and were released.
    pub released: usize,
    /// Households removed because they left the device's areas.
    pub departed: usize,
}

impl Store {
    /// A plain sync setting (cursor, server URL).
    pub fn sync_value(&self, key: &str) -> Result<Option<String>> {
        Ok(self.conn.query_row("SELECT value FROM sync_state WHERE key = ?1", [key], |r| r.get(0)).optional()?)
    }

    /// Sets a plain sync setting.
    pub fn set_sync_value(&self, key: &str, value: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO sync_state (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    /// A secret sync setting (the device credential), sealed with the data key.
    pub fn sync_secret(&self, key: &str) -> Result<Option<String>> {
        let sealed: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT value FROM sync_state WHERE key = ?1", [format!("sealed:{key}")], |r| r.get(0))
            .optional()?;
        let Some(sealed) = sealed else { return Ok(None) };
        let plain = self.session()?.sealer.open(Aad { table: "sync_state", doc_id: "", chunk: key }, &sealed)?;
        String::from_utf8(plain.to_vec()).map(Some).map_err(|_| Error::corrupt(format!("sync secret {key}")))
    }

    /// Sets a secret sync setting.
    pub fn set_sync_secret(&self, key: &str, value: &str) -> Result<()> {
        let sealed =
            self.session()?.sealer.seal(Aad { table: "sync_state", doc_id: "", chunk: key }, value.as_bytes())?;
        self.conn.execute(
            "INSERT INTO sync_state (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![format!("sealed:{key}"), sealed],
        )?;
        Ok(())
    }

    /// Every dirty document's changes since the server's acknowledged heads, up to `limit` documents.
    pub fn pending_pushes(&self, limit: usize) -> Result<Vec<PendingPush>> {
        self.session()?;
        let rows: Vec<(String, String, String)> = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT doc_id, area, synced_heads FROM doc_meta WHERE dirty = 1 ORDER BY doc_id LIMIT ?1",
            )?;
            stmt.query_map([limit as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?
        };
        let editor = self.editor()?;
        let mut out = Vec::with_capacity(rows.len());
        for (doc_id, area, synced) in rows {
            let bytes = self.read_chunks(&doc_id)?;
            let mut doc = HouseholdDoc::load(&doc_id, &bytes, &editor)?;
            let known: Vec<_> = heads_from_text(&synced).into_iter().filter(|h| doc.has_change(h)).collect();
            let changes = doc.save_after(&known);
            out.push(PendingPush { doc_id, area, changes, heads: doc.heads() });
        }
        Ok(out)
    }

    /// Records, for every acknowledgement of one answer (`(doc_id, heads, pushed)`), that the
    /// server holds `heads` of a document and every change up to `pushed` (this device's heads
    /// when it built the push the server acknowledged); a document stays dirty only if it
    /// changed since. One transaction: one write to disk, not one a document.
    pub fn mark_synced_all(
        &mut self,
        acks: &[(&str, &[automerge::ChangeHash], &[automerge::ChangeHash])],
    ) -> Result<()> {
        if acks.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut update = tx.prepare_cached(
                "UPDATE doc_meta SET synced_heads = ?2, pushed_heads = ?3, dirty = (local_heads != ?2) WHERE doc_id = ?1",
            )?;
            for (doc_id, heads, pushed) in acks {
                let text = heads_to_text(heads);
                update.execute(params![doc_id, text, heads_to_text(pushed)])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Merges a page of documents received from the server and records the new
    /// cursor (sync values, key and value), all in one transaction: either all of it is
    /// committed or none. A document whose changes do not load is quarantined (see
    /// [`Store::quarantined`]) and the rest of the page goes in; changes that arrive for a
    /// quarantined document let its quarantined ones be tried again.
    ///
    /// `departed` names households that left this device's areas (id, the area they went
    /// to): each is removed in the same transaction, unless it holds edits the server has
    /// not acknowledged (then once they are, see [`Store::departing`]).
    pub fn apply_remote_batch(
        &mut self,
        pulls: &[(&str, &[u8])],
        departed: &[(&str, &str)],
        values: &[(&str, &str)],
    ) -> Result<RemoteBatch> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let result = (|| -> Result<RemoteBatch> {
            let mut batch = RemoteBatch::default();
            for (doc_id, moved_to) in departed {
                crate::record::check_id(doc_id)?;
                batch.departed += usize::from(self.depart(doc_id, moved_to)?);
            }
            // Households new here (a first sync's pages) are prepared on every core first.
            let mut new_here = Vec::new();
            for (i, (doc_id, _)) in pulls.iter().enumerate() {
                if crate::record::check_id(doc_id).is_ok() && self.meta_heads(doc_id)?.is_none() {
                    new_here.push(i);
                }
            }
            let fresh: Vec<(&str, &[u8])> = new_here.iter().map(|&i| pulls[i]).collect();
            let mut prepared = self.prepare_remote_new(&fresh)?.into_iter();
            let mut next_new = new_here.iter().peekable();
            for (i, (doc_id, changes)) in pulls.iter().enumerate() {
                let outcome = if next_new.peek() == Some(&&i) {
                    next_new.next();
                    match prepared.next() {
                        Some(Ok(p)) if self.meta_heads(doc_id)?.is_none() => self.insert_prepared(&p).map(|()| true),
                        // Named twice in the page: the first copy is in; merge this one.
                        Some(Ok(_)) => self.apply_remote(doc_id, changes),
                        Some(Err(e)) => Err(e),
                        None => Err(Error::InvalidArgument("a page of documents could not be read".into())),
                    }
                } else {
                    self.apply_remote(doc_id, changes)
                };
                match outcome {
                    Ok(changed) => {
                        batch.changed += usize::from(changed);
                        batch.released += self.retry_quarantined(doc_id)?;
                    }
                    Err(e) if e.is_per_document() => {
                        self.quarantine(doc_id, changes, &e)?;
                        batch.quarantined.push(((*doc_id).to_string(), e.to_string()));
                    }
                    Err(e) => return Err(e),
                }
            }
            for (key, value) in values {
                self.set_sync_value(key, value)?;
            }
            Ok(batch)
        })();
        match result {
            Ok(n) => {
                self.conn.execute_batch("COMMIT")?;
                Ok(n)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Merges changes received from the server. Idempotent: applying them twice changes nothing.
    pub fn apply_remote(&mut self, doc_id: &str, changes: &[u8]) -> Result<bool> {
        crate::record::check_id(doc_id)?;
        let editor = self.editor()?;
        match self.meta_heads(doc_id)? {
            Some(_) => {
                let bytes = self.read_chunks(doc_id)?;
                let mut doc = HouseholdDoc::load(doc_id, &bytes, &editor)?;
                doc.load_incremental(changes)?;
                Ok(self.persist(&mut doc, Origin::Remote)?.changed)
            }
            // New here (a first sync's whole documents): kept as received, not saved again.
            None => {
                let mut doc = HouseholdDoc::load(doc_id, changes, &editor)?;
                Ok(self.persist_saved(&mut doc, Origin::Remote, Some(changes))?.changed)
            }
        }
    }

    /// Deletes every household, profile and sync secret, then compacts the file.
    /// With `secure_delete` on, freed pages are zeroed. Used when the server revokes the device.
    pub fn wipe(&mut self) -> Result<()> {
        self.session = None;
        self.conn.execute_batch(
            "BEGIN IMMEDIATE;
             DELETE FROM blind_index; DELETE FROM doc_chunk; DELETE FROM doc_meta;
             DELETE FROM sync_state; DELETE FROM profile; DELETE FROM attachment; DELETE FROM quarantine;
             DELETE FROM transfer_request;
             COMMIT;
             VACUUM;
             PRAGMA wal_checkpoint(TRUNCATE);",
        )?;
        Ok(())
    }
}

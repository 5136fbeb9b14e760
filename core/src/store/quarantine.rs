//! Pulled changes that would not load, kept aside so that one document cannot block a sync.
//!
//! A page of pulled documents commits whole, with its cursor. A document in it whose changes
//! do not load (a tail of changes without its base, a malformed or foreign document) is
//! quarantined instead: sealed as received, with the error, and the rest of the page goes in.
//! It is tried again whenever changes of the same document arrive, such as the full save the
//! next sync asks the server for (`SyncRequest::resend`), and released once it loads.

use rusqlite::params;

use super::Store;
use crate::crypto::Aad;
use crate::error::{Error, Result};

const QUARANTINE_TABLE: &str = "quarantine";

/// A quarantined document, as a person reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedDoc {
    /// Household id.
    pub doc_id: String,
    /// Why its changes did not load.
    pub error: String,
    /// When they were received, Unix seconds (the first of them, if several).
    pub received_at: i64,
}

impl Error {
    /// Whether this failure belongs to one pulled document (its bytes), not to the store:
    /// such a document is quarantined, and the rest of its page is applied.
    pub(crate) fn is_per_document(&self) -> bool {
        matches!(self, Error::Corrupt { .. } | Error::InvalidArgument(_) | Error::ImmutableField(_))
    }
}

impl Store {
    /// Keeps a pulled document's changes that did not load, sealed, with the error.
    pub(crate) fn quarantine(&self, doc_id: &str, changes: &[u8], error: &Error) -> Result<()> {
        let s = self.session()?;
        let seq: i64 = self.conn.query_row(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM quarantine WHERE doc_id = ?1",
            [doc_id],
            |r| r.get(0),
        )?;
        let sealed = s.sealer.seal(Aad { table: QUARANTINE_TABLE, doc_id, chunk: &seq.to_string() }, changes)?;
        self.conn.execute(
            "INSERT INTO quarantine (doc_id, seq, sealed, error, received_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![doc_id, seq, sealed, error.to_string(), self.clock.now()],
        )?;
        Ok(())
    }

    /// Tries a document's quarantined changes again, oldest first; those that now load are
    /// merged and released. Returns how many were released.
    pub(crate) fn retry_quarantined(&mut self, doc_id: &str) -> Result<usize> {
        let rows: Vec<(i64, Vec<u8>)> = {
            let mut stmt =
                self.conn.prepare_cached("SELECT seq, sealed FROM quarantine WHERE doc_id = ?1 ORDER BY seq")?;
            stmt.query_map([doc_id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?
        };
        let mut released = 0;
        for (seq, sealed) in rows {
            let changes = self
                .session()?
                .sealer
                .open(Aad { table: QUARANTINE_TABLE, doc_id, chunk: &seq.to_string() }, &sealed)?;
            match self.apply_remote(doc_id, &changes) {
                Ok(_) => {
                    self.conn.execute("DELETE FROM quarantine WHERE doc_id = ?1 AND seq = ?2", params![doc_id, seq])?;
                    released += 1;
                }
                Err(e) if e.is_per_document() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(released)
    }

    /// The documents in quarantine, one entry each.
    pub fn quarantined(&self) -> Result<Vec<QuarantinedDoc>> {
        self.session()?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT doc_id, error, MIN(received_at) FROM quarantine GROUP BY doc_id ORDER BY doc_id")?;
        let rows =
            stmt.query_map([], |r| Ok(QuarantinedDoc { doc_id: r.get(0)?, error: r.get(1)?, received_at: r.get(2)? }))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

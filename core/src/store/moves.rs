//! Households that move between areas, on the device: a move within the device's areas
//! changes the household's area (the server tells the old area's devices and sends the
//! new area's the whole document); a move out of them is a transfer request, sent at each
//! sync until an operator decided it. A household that left the device's areas is removed
//! from the store once its own edits have reached the server.

use rusqlite::{OptionalExtension, params};

use super::households::heads_from_text;
use super::{Role, Store};
use crate::crypto::Aad;
use crate::error::{Error, Result};
use crate::sync::protocol::{MAX_TRANSFER_REASON_CHARS, TransferAsk, TransferOutcome, TransferStatus, area_within};

/// Where the device's copy of a departed household waits to be removed (its value is the
/// area it went to), while it holds edits the server has not acknowledged.
const DEPARTED_PREFIX: &str = "departed:";

/// What [`Store::move_household`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveOutcome {
    /// The household moved (within this device's areas); the next sync sends it.
    Moved,
    /// The area lies outside this device's areas: a transfer request waits for an operator.
    TransferRequested {
        /// The request's id.
        request_id: String,
    },
}

/// A transfer request this device made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRequest {
    /// Its id.
    pub request_id: String,
    /// Household id.
    pub household_id: String,
    /// The area asked for.
    pub to_area: String,
    /// Why, as the officer wrote it.
    pub reason: String,
    /// Where it stands, as of the last sync.
    pub status: TransferStatus,
    /// The operator's note (or the server's reason for refusing it outright).
    pub note: String,
    /// When it was made, Unix seconds.
    pub created_at: i64,
}

/// A resident's `residence_status` once moved out of a household (the record stays, with
/// its history; the new household holds the person's current record).
pub const MOVED_OUT: &str = "moved_out";

impl Store {
    /// Moves resident `member_id` of household `from` into household `to` (same commune or
    /// another one this device holds), as a life event on `date` (`YYYY-MM-DD`): "moved out"
    /// in `from`, where the record stays with [`MOVED_OUT`] status, and "moved in" in `to`,
    /// where a new record carries the person's identity (name, date of birth, sex, CCCD,
    /// phone, occupation) with `relation` to its head. Each record's `same_person_as` and
    /// each event's place name the other record, so the two are one person's history and
    /// never a duplicate candidate. Both households are saved in one transaction. Returns
    /// the new record's member id. Officers only.
    pub fn move_resident(
        &mut self,
        from: &str,
        member_id: &str,
        to: &str,
        date: &str,
        relation: Option<&str>,
    ) -> Result<String> {
        use crate::record::{LifeEvent, LifeEventKind, Member};
        if self.session()?.profile.role == Role::Helper {
            return Err(Error::NotPermitted("only an officer moves a resident".into()));
        }
        if from == to {
            return Err(Error::InvalidArgument("a resident moves to another household".into()));
        }
        chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
            .map_err(|_| Error::InvalidArgument(format!("bad date {date:?}: use YYYY-MM-DD")))?;
        let editor = self.editor()?;
        let mut from_doc = self.open_household(from)?;
        let mut to_doc = self.open_household(to)?;
        let (mut old, mut new) = (from_doc.read(), to_doc.read());
        let person = old
            .members
            .iter_mut()
            .find(|m| m.member_id == member_id)
            .ok_or_else(|| Error::NotFound(format!("resident {member_id} of household {from}")))?;
        if person.residence_status.as_deref() == Some(MOVED_OUT) {
            return Err(Error::InvalidArgument(format!("resident {member_id} already moved out of {from}")));
        }
        let new_id = crate::record::make_id("m")?;
        new.members.push(Member {
            member_id: new_id.clone(),
            full_name: person.full_name.clone(),
            dob: person.dob.clone(),
            sex: person.sex.clone(),
            cccd: person.cccd.clone(),
            relation: Some(relation.unwrap_or("other").to_string()),
            phone: person.phone.clone(),
            residence_status: Some("permanent".into()),
            occupation: person.occupation.clone(),
            same_person_as: Some(format!("{from}/{member_id}")),
            ..Member::default()
        });
        new.events.push(LifeEvent {
            kind: LifeEventKind::MovedIn,
            member_id: new_id.clone(),
            date: date.to_string(),
            place: Some(format!("{from}/{member_id}")),
            note: None,
        });
        person.residence_status = Some(MOVED_OUT.into());
        person.same_person_as = Some(format!("{to}/{new_id}"));
        old.events.push(LifeEvent {
            kind: LifeEventKind::MovedOut,
            member_id: member_id.to_string(),
            date: date.to_string(),
            place: Some(format!("{to}/{new_id}")),
            note: None,
        });
        from_doc.update(&old, &editor)?;
        to_doc.update(&new, &editor)?;
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        let saved = self.save_household(&mut from_doc).and_then(|_| self.save_household(&mut to_doc));
        match saved {
            Ok(_) => self.conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
        Ok(new_id)
    }

    /// The areas this device was enrolled for.
    pub(crate) fn enrolled_areas(&self) -> Result<Vec<String>> {
        self.sync_value("areas")?.and_then(|a| serde_json::from_str(&a).ok()).ok_or_else(|| {
            Error::InvalidArgument("not enrolled: a household moves between areas through the server".into())
        })
    }

    /// Moves household `id` to `to_area`. Within this device's areas it is a change to the
    /// household, sent at the next sync; outside them it is a transfer request (with
    /// `reason`) for an operator whose scope covers both areas. Officers only.
    pub fn move_household(&mut self, id: &str, to_area: &str, reason: &str) -> Result<MoveOutcome> {
        if self.session()?.profile.role == Role::Helper {
            return Err(Error::NotPermitted("only an officer moves a household".into()));
        }
        crate::area::Area::parse(to_area)?;
        if reason.chars().count() > MAX_TRANSFER_REASON_CHARS {
            return Err(Error::InvalidArgument(format!("a reason has at most {MAX_TRANSFER_REASON_CHARS} characters")));
        }
        let mut doc = self.open_household(id)?;
        let mut household = doc.read();
        if household.area_code == to_area {
            return Err(Error::InvalidArgument(format!("household {id} is already in {to_area}")));
        }
        let areas = self.enrolled_areas()?;
        if areas.iter().any(|a| area_within(to_area, a)) {
            household.area_code = to_area.to_string();
            doc.update(&household, &self.editor()?)?;
            self.save_household(&mut doc)?;
            return Ok(MoveOutcome::Moved);
        }
        if self.transfer_requests()?.iter().any(|r| r.household_id == id && r.status == TransferStatus::Pending) {
            return Err(Error::AlreadyExists(format!("a transfer request for household {id}")));
        }
        let request_id = crate::record::make_id("tr")?;
        let sealed = self
            .session()?
            .sealer
            .seal(Aad { table: "transfer_request", doc_id: id, chunk: &request_id }, reason.as_bytes())?;
        self.conn.execute(
            "INSERT INTO transfer_request (request_id, doc_id, to_area, reason, status, created_at)
             VALUES (?1, ?2, ?3, ?4, 'pending', ?5)",
            params![request_id, id, to_area, sealed, self.clock.now()],
        )?;
        Ok(MoveOutcome::TransferRequested { request_id })
    }

    /// This device's transfer requests, newest first.
    pub fn transfer_requests(&self) -> Result<Vec<TransferRequest>> {
        let s = self.session()?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT request_id, doc_id, to_area, reason, status, note, created_at FROM transfer_request
             ORDER BY created_at DESC, request_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Vec<u8>>(5)?,
                r.get::<_, i64>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (request_id, household_id, to_area, reason, status, note, created_at) = row?;
            let open = |chunk: &str, sealed: &[u8]| -> Result<String> {
                if sealed.is_empty() {
                    return Ok(String::new());
                }
                let plain = s.sealer.open(Aad { table: "transfer_request", doc_id: &household_id, chunk }, sealed)?;
                String::from_utf8(plain.to_vec()).map_err(|_| Error::corrupt(format!("transfer request {request_id}")))
            };
            let reason = open(&request_id, &reason)?;
            let note = open(&format!("{request_id}/note"), &note)?;
            let status = TransferStatus::parse(&status)
                .ok_or_else(|| Error::corrupt(format!("transfer request {request_id} status")))?;
            out.push(TransferRequest { request_id, household_id, to_area, reason, status, note, created_at });
        }
        Ok(out)
    }

    /// The requests still waiting for an outcome, as a sync sends them.
    pub(crate) fn transfer_asks(&self, limit: usize) -> Result<Vec<TransferAsk>> {
        Ok(self
            .transfer_requests()?
            .into_iter()
            .filter(|r| r.status == TransferStatus::Pending)
            .take(limit)
            .map(|r| TransferAsk {
                request_id: r.request_id,
                doc_id: r.household_id,
                to_area: r.to_area,
                reason: r.reason,
            })
            .collect())
    }

    /// Records where the server says this device's requests stand.
    pub(crate) fn record_transfer_outcomes(&self, outcomes: &[TransferOutcome]) -> Result<()> {
        let s = self.session()?;
        for o in outcomes.iter().filter(|o| o.status != TransferStatus::Pending) {
            let doc_id: Option<String> = self
                .conn
                .query_row("SELECT doc_id FROM transfer_request WHERE request_id = ?1", [&o.request_id], |r| r.get(0))
                .optional()?;
            let Some(doc_id) = doc_id else { continue };
            let chunk = format!("{}/note", o.request_id);
            let note =
                s.sealer.seal(Aad { table: "transfer_request", doc_id: &doc_id, chunk: &chunk }, o.note.as_bytes())?;
            self.conn.execute(
                "UPDATE transfer_request SET status = ?2, note = ?3, decided_at = ?4 WHERE request_id = ?1",
                params![o.request_id, o.status.as_str(), note, self.clock.now()],
            )?;
        }
        Ok(())
    }

    /// A household left this device's areas for `moved_to`: its document, summary and
    /// blind-index rows are removed, unless it holds edits the server has not acknowledged:
    /// then it is kept (and pushed) and removed by a later sync. Returns whether it went.
    pub(crate) fn depart(&mut self, doc_id: &str, moved_to: &str) -> Result<bool> {
        let meta: Option<(bool, String)> = self
            .conn
            .query_row(
                "SELECT dirty, synced_heads || ',' || pushed_heads FROM doc_meta WHERE doc_id = ?1",
                [doc_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let key = format!("{DEPARTED_PREFIX}{doc_id}");
        // Dirty also means "the server holds changes this copy lacks" (the move itself, which
        // never comes here): what counts is whether this copy holds changes the server lacks —
        // past both the server's heads it knows and its own heads at its acknowledged push.
        let unsent = match &meta {
            Some((true, synced)) => {
                let mut doc = crate::record::HouseholdDoc::load(doc_id, &self.read_chunks(doc_id)?, &self.editor()?)?;
                let known: Vec<_> = heads_from_text(synced).into_iter().filter(|h| doc.has_change(h)).collect();
                !doc.save_after(&known).is_empty()
            }
            _ => false,
        };
        if unsent {
            self.set_sync_value(&key, moved_to)?;
            return Ok(false);
        }
        // Chunks and blind-index rows go with their summary (ON DELETE CASCADE).
        self.conn.execute("DELETE FROM doc_meta WHERE doc_id = ?1", [doc_id])?;
        self.conn.execute("DELETE FROM quarantine WHERE doc_id = ?1", [doc_id])?;
        self.conn.execute("DELETE FROM sync_state WHERE key = ?1", [&key])?;
        Ok(meta.is_some())
    }

    /// Households that left this device's areas but still hold edits the server has not
    /// acknowledged: (household id, the area it went to).
    pub fn departing(&self) -> Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare_cached("SELECT key, value FROM sync_state WHERE key >= ?1 AND key < ?2")?;
        let rows = stmt.query_map(params![DEPARTED_PREFIX, "departed;"], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (key, to) = row?;
            out.push((key.trim_start_matches(DEPARTED_PREFIX).to_string(), to));
        }
        Ok(out)
    }

    /// Removes the departed households whose edits have now reached the server; returns how many.
    pub(crate) fn finish_departures(&mut self) -> Result<usize> {
        let mut gone = 0;
        for (doc_id, to) in self.departing()? {
            gone += usize::from(self.depart(&doc_id, &to)?);
        }
        Ok(gone)
    }
}

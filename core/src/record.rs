//! A household is one Automerge document, the unit of collaboration.
//!
//! Layout of the document:
//! ```text
//! { schema: "doorstep.household/1", household_id, area_code, address,
//!   head_member_id, house_photo, location: {lat, lon, accuracy},
//!   members: { <member_id>: { full_name, dob, sex, cccd, relation, phone,
//!                             residence_status, occupation, document_photo,
//!                             same_person_as, order } },
//!   events: [ { kind, member_id, date, place, note } ] }
//! ```
//! Scalars are strings, so every field merges and conflicts the same way.
//! [`Household`] is the plain, typed view; [`HouseholdDoc`] owns the document.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Author, AutoCommit, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, Value};
use serde::{Deserialize, Serialize};

use crate::crypto;

mod hydrated;
use crate::error::{Error, Result};
use crate::identity::ChipCardQr;
use crate::verification::{EditMark, Review, ReviewDecision, Verification, VerificationState};

const SCHEMA: &str = "doorstep.household/1";

/// The Automerge chunk types a device writes: a saved document (0), a change (1) and a
/// compressed change (2).
const CHUNK_TYPES: [u8; 3] = [0, 1, 2];

/// Walks the Automerge chunks in `bytes` (magic, checksum, type, LEB128 length, data) and
/// refuses any type other than a document or a change before Automerge decodes them.
/// Fuzzing found 71 bytes of another chunk type (Automerge's "bundle") that take its decoder
/// 12 s and 2.3 GB, and another that panics it; no device ever sends one.
fn check_chunk_types(id: &str, bytes: &[u8]) -> Result<()> {
    let bad = |what: &str| Error::corrupt(format!("household {id}: {what}"));
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest.len() < 9 || rest[..4] != [0x85, 0x6f, 0x4a, 0x83] {
            return Err(bad("not Automerge chunks"));
        }
        if !CHUNK_TYPES.contains(&rest[8]) {
            return Err(bad("an Automerge chunk of a kind devices do not send"));
        }
        let (mut len, mut shift, mut at) = (0u64, 0u32, 9usize);
        loop {
            let byte = *rest.get(at).ok_or_else(|| bad("a truncated chunk header"))?;
            if shift > 56 {
                return Err(bad("a chunk length out of range"));
            }
            len |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            at += 1;
            if byte & 0x80 == 0 {
                break;
            }
        }
        let end = usize::try_from(len).ok().and_then(|l| at.checked_add(l)).filter(|&e| e <= rest.len());
        rest = &rest[end.ok_or_else(|| bad("a chunk longer than the bytes"))?..];
    }
    Ok(())
}

/// The member fields that are plain strings, in form order.
pub const MEMBER_FIELDS: &[&str] = &[
    "full_name",
    "dob",
    "sex",
    "cccd",
    "relation",
    "phone",
    "residence_status",
    "occupation",
    "document_photo",
    "same_person_as",
];
const HOUSEHOLD_FIELDS: &[&str] = &["area_code", "address", "head_member_id", "house_photo"];

/// A location, as a geopoint field stores it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
    /// Accuracy in metres, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
}

/// One resident of a household. Field names match the residence survey.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Stable id, unique within the household.
    pub member_id: String,
    /// Full name, NFC.
    pub full_name: String,
    /// Date of birth, `YYYY-MM-DD`.
    #[serde(default)]
    pub dob: Option<String>,
    /// `M` or `F`.
    #[serde(default)]
    pub sex: Option<String>,
    /// 12-digit CCCD number.
    #[serde(default)]
    pub cccd: Option<String>,
    /// Relation to the head: head, spouse, child, parent, grandchild, sibling, other.
    #[serde(default)]
    pub relation: Option<String>,
    /// Phone number.
    #[serde(default)]
    pub phone: Option<String>,
    /// permanent, temporary or absent.
    #[serde(default)]
    pub residence_status: Option<String>,
    /// Occupation.
    #[serde(default)]
    pub occupation: Option<String>,
    /// A photo of an identity or civil document: the text of a
    /// [`crate::attachment::PhotoRef`] (set by [`crate::store::Store::add_photo`]).
    #[serde(default)]
    pub document_photo: Option<String>,
    /// Set by a data-centre operator who found this record and another to be one
    /// person: the other record, `<household_id>/<member_id>`. Both records and
    /// their histories stay; an undone merge clears it.
    #[serde(default)]
    pub same_person_as: Option<String>,
    /// Verified at the door (or found to need correction), by whom and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

impl Member {
    /// Prefills a member from a chip card's QR: name, date of birth, sex and CCCD.
    pub fn from_chip_card(card: &ChipCardQr, member_id: String) -> Member {
        Member {
            member_id,
            full_name: card.full_name.clone(),
            dob: Some(card.dob.format("%Y-%m-%d").to_string()),
            sex: Some(card.sex.code().to_string()),
            cccd: Some(card.cccd.as_str().to_string()),
            ..Member::default()
        }
    }

    fn get(&self, field: &str) -> Option<&str> {
        match field {
            "full_name" => Some(self.full_name.as_str()),
            "dob" => self.dob.as_deref(),
            "sex" => self.sex.as_deref(),
            "cccd" => self.cccd.as_deref(),
            "relation" => self.relation.as_deref(),
            "phone" => self.phone.as_deref(),
            "residence_status" => self.residence_status.as_deref(),
            "occupation" => self.occupation.as_deref(),
            "document_photo" => self.document_photo.as_deref(),
            "same_person_as" => self.same_person_as.as_deref(),
            _ => None,
        }
        .filter(|s| !s.is_empty())
    }

    fn set(&mut self, field: &str, value: Option<String>) {
        match field {
            "full_name" => self.full_name = value.unwrap_or_default(),
            "dob" => self.dob = value,
            "sex" => self.sex = value,
            "cccd" => self.cccd = value,
            "relation" => self.relation = value,
            "phone" => self.phone = value,
            "residence_status" => self.residence_status = value,
            "occupation" => self.occupation = value,
            "document_photo" => self.document_photo = value,
            "same_person_as" => self.same_person_as = value,
            _ => {}
        }
    }
}

/// What happened to a resident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LifeEventKind {
    /// Born into the household.
    Born,
    /// Moved in.
    MovedIn,
    /// Moved out.
    MovedOut,
    /// Died.
    Died,
}

impl LifeEventKind {
    /// The form's code.
    pub fn code(self) -> &'static str {
        match self {
            LifeEventKind::Born => "born",
            LifeEventKind::MovedIn => "moved_in",
            LifeEventKind::MovedOut => "moved_out",
            LifeEventKind::Died => "died",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Born, Self::MovedIn, Self::MovedOut, Self::Died].into_iter().find(|k| k.code() == s)
    }
}

/// A life event of one member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifeEvent {
    /// What happened.
    pub kind: LifeEventKind,
    /// To whom.
    pub member_id: String,
    /// When, `YYYY-MM-DD`.
    pub date: String,
    /// From or to where (moves).
    #[serde(default)]
    pub place: Option<String>,
    /// Free note.
    #[serde(default)]
    pub note: Option<String>,
}

/// The typed, plain view of a household. Serializes to the survey's answers.
///
/// Two households are equal when their values are: the latest edit's mark (`edited`) is
/// about the record, not part of it, and equality ignores it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Household {
    /// Document id.
    pub household_id: String,
    /// Opaque area code, province.district.commune or province.commune.
    #[serde(alias = "area")]
    pub area_code: String,
    /// Address.
    pub address: String,
    /// The head's member id.
    #[serde(default)]
    pub head_member_id: Option<String>,
    /// Location of the house.
    #[serde(default)]
    pub location: Option<GeoPoint>,
    /// Attachment id of the house photo.
    #[serde(default)]
    pub house_photo: Option<String>,
    /// Members, in the order they were added.
    #[serde(default)]
    pub members: Vec<Member>,
    /// Life events, oldest first.
    #[serde(default)]
    pub events: Vec<LifeEvent>,
    /// Verified at the door (or found to need correction), by whom and when
    /// ([`HouseholdDoc::verify`]; [`HouseholdDoc::update`] leaves it alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// An operator's latest decision ([`HouseholdDoc::review`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
    /// The latest edit ([`HouseholdDoc::update`] writes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited: Option<EditMark>,
}

impl PartialEq for Household {
    fn eq(&self, other: &Self) -> bool {
        self.household_id == other.household_id
            && self.area_code == other.area_code
            && self.address == other.address
            && self.head_member_id == other.head_member_id
            && self.location == other.location
            && self.house_photo == other.house_photo
            && self.members == other.members
            && self.events == other.events
            && self.verification == other.verification
            && self.review == other.review
    }
}

impl Household {
    /// The answers JSON the form validates.
    pub fn to_answers(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// A member by id.
    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.member_id == id)
    }

    /// The photo a photo field holds (the text of a `PhotoRef`), if any.
    pub fn photo(&self, field: &PhotoField) -> Option<&str> {
        match field {
            PhotoField::House => self.house_photo.as_deref(),
            PhotoField::MemberDocument(id) => self.member(id)?.document_photo.as_deref(),
        }
        .filter(|s| !s.is_empty())
    }

    /// Sets a photo field; [`Error::NotFound`] for a member the household does not have.
    pub fn set_photo(&mut self, field: &PhotoField, value: String) -> Result<()> {
        match field {
            PhotoField::House => self.house_photo = Some(value),
            PhotoField::MemberDocument(id) => {
                let member = self
                    .members
                    .iter_mut()
                    .find(|m| &m.member_id == id)
                    .ok_or_else(|| Error::NotFound(format!("member {id}")))?;
                member.document_photo = Some(value);
            }
        }
        Ok(())
    }

    /// Every photo the household refers to: the house photo and members' document photos.
    pub fn photos(&self) -> Vec<&str> {
        let members = self.members.iter().filter_map(|m| m.document_photo.as_deref());
        self.house_photo.as_deref().into_iter().chain(members).filter(|s| !s.is_empty()).collect()
    }

    fn root_field(&self, field: &str) -> Option<&str> {
        match field {
            "area_code" => Some(self.area_code.as_str()),
            "address" => Some(self.address.as_str()),
            "head_member_id" => self.head_member_id.as_deref(),
            "house_photo" => self.house_photo.as_deref(),
            _ => None,
        }
        .filter(|s| !s.is_empty())
    }
}

/// A photo field of the survey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhotoField {
    /// The household's `house_photo`.
    House,
    /// A member's `document_photo` (identity card, birth certificate…), by member id.
    MemberDocument(String),
}

/// Makes a fresh random id with a prefix: `hh-…` for households, `m-…` for members.
pub fn make_id(prefix: &str) -> Result<String> {
    let mut bytes = [0u8; 10];
    getrandom::fill(&mut bytes).map_err(|_| Error::Random)?;
    Ok(format!("{prefix}-{}", hex::encode(bytes)))
}

/// Ids travel in paths, AADs and SQL: keep them plain.
pub fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok { Ok(()) } else { Err(Error::InvalidArgument(format!("bad id {id:?}: use 1-64 of A-Z a-z 0-9 - _ ."))) }
}

/// Who makes a change: written into each change as its Automerge author.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Editor {
    /// The user (profile) name.
    pub user: String,
    /// The device id.
    pub device: String,
}

impl Editor {
    fn author(&self) -> Author<'static> {
        Author::from(format!("{}@{}", self.user, self.device).into_bytes())
    }
}

/// One of several concurrent values of a field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictValue {
    /// The value (`None` for a non-string value).
    pub value: Option<String>,
    /// Who wrote it: `user@device`, when recorded.
    pub author: Option<String>,
    /// When, in Unix seconds.
    pub time: i64,
    /// The change that wrote it, hex.
    pub change: String,
}

/// A field with concurrent values that Automerge kept side by side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// `address` or `members/<id>/<field>`.
    pub path: String,
    /// Each value; the first is the one shown until the conflict is resolved.
    pub values: Vec<ConflictValue>,
}

/// A household survey as an Automerge document.
#[derive(Debug)]
pub struct HouseholdDoc {
    doc: AutoCommit,
    id: String,
    /// Heads at the last save or load: `save_incremental` writes what came after.
    /// (Automerge's own incremental save starts from nothing after a load.)
    saved_heads: Vec<ChangeHash>,
}

fn as_string(v: &Value<'_>) -> Option<String> {
    v.as_str().map(str::to_owned)
}

impl HouseholdDoc {
    /// Starts a new document holding `household`, written by `editor`.
    pub fn create(household: &Household, editor: &Editor) -> Result<HouseholdDoc> {
        check_id(&household.household_id)?;
        for m in &household.members {
            check_id(&m.member_id)?;
        }
        let mut doc = AutoCommit::new().with_author(Some(editor.author()));
        // A new document has nothing to compare with: the whole tree is written in one
        // batch, without the reads an update makes (what `update` would write, in one change).
        doc.init_root_from_hydrate(&hydrated::new_root(household, SCHEMA, HOUSEHOLD_FIELDS))?;
        let mut this = HouseholdDoc { doc, id: household.household_id.clone(), saved_heads: Vec::new() };
        this.mark_edit(editor)?;
        this.commit();
        Ok(this)
    }

    /// Loads a document from saved bytes (a snapshot followed by increments).
    pub fn load(id: &str, bytes: &[u8], editor: &Editor) -> Result<HouseholdDoc> {
        check_chunk_types(id, bytes)?;
        // Automerge can panic on hostile bytes (fuzzing found one in its column decoder):
        // a panic is a corrupt document here, never an unwound caller.
        let doc = std::panic::catch_unwind(|| AutoCommit::load(bytes))
            .map_err(|_| Error::corrupt(format!("household {id}: Automerge failed on these bytes")))?
            .map_err(|e| match e {
                automerge::AutomergeError::MissingDeps => {
                    Error::corrupt(format!("household {id}: changes without their base"))
                }
                _ => Error::corrupt(format!("household {id}")),
            })?;
        let mut doc = doc;
        let saved_heads = doc.get_heads();
        let mut this = HouseholdDoc { doc, id: id.to_string(), saved_heads };
        this.doc.set_actor(ActorId::random());
        this.doc.set_author(Some(editor.author()));
        match this.doc.get(ROOT, "schema") {
            Ok(Some((v, _))) if v.as_str() == Some(SCHEMA) => {}
            _ => return Err(Error::corrupt(format!("household {id}: not a household document"))),
        }
        let stored_id = this.doc.get(ROOT, "household_id").ok().flatten().and_then(|(v, _)| as_string(&v));
        if stored_id.as_deref() != Some(id) {
            return Err(Error::corrupt(format!("household {id}: document belongs to {stored_id:?}")));
        }
        Ok(this)
    }

    /// The household id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn map(&self, parent: &ObjId, key: &str) -> Option<ObjId> {
        match self.doc.get(parent, key) {
            Ok(Some((Value::Object(_), id))) => Some(id),
            _ => None,
        }
    }

    fn string_at(&self, obj: &ObjId, key: &str) -> Option<String> {
        self.doc.get(obj, key).ok().flatten().and_then(|(v, _)| as_string(&v)).filter(|s| !s.is_empty())
    }

    fn put_if_changed(&mut self, obj: &ObjId, key: &str, value: Option<&str>) -> Result<()> {
        let current = self.string_at(obj, key);
        let multiple = self.doc.get_all(obj, key)?.len() > 1;
        if current.as_deref() == value && !multiple {
            return Ok(());
        }
        if current.as_deref() == value && multiple {
            // A save of what the screen showed must not silently settle a conflict.
            return Ok(());
        }
        match value {
            Some(v) => self.doc.put(obj, key, v)?,
            None => self.doc.delete(obj, key)?,
        }
        Ok(())
    }

    /// Reads the household, taking the winning value of any conflict.
    pub fn read(&self) -> Household {
        match self.doc.hydrate(ROOT, None) {
            Ok(automerge::hydrate::Value::Map(root)) => hydrated::household(&self.id, &root),
            _ => Household { household_id: self.id.clone(), ..Household::default() },
        }
    }

    /// Makes the document say what `household` says, writing only the fields that changed,
    /// so an edit of one field never conflicts with another device's edit of another.
    /// Members missing from `household` are removed; events are append-only, so new ones
    /// (beyond the document's) are appended. Returns whether anything changed.
    pub fn update(&mut self, household: &Household, editor: &Editor) -> Result<bool> {
        if household.household_id != self.id {
            return Err(Error::InvalidArgument("household id does not match the document".into()));
        }
        self.doc.set_author(Some(editor.author()));
        for field in HOUSEHOLD_FIELDS {
            self.put_if_changed(&ROOT, field, household.root_field(field))?;
        }
        let current = self.read();
        if current.location != household.location {
            match household.location {
                Some(loc) => {
                    let obj = self.doc.put_object(ROOT, "location", ObjType::Map)?;
                    self.doc.put(&obj, "lat", loc.lat)?;
                    self.doc.put(&obj, "lon", loc.lon)?;
                    if let Some(acc) = loc.accuracy {
                        self.doc.put(&obj, "accuracy", acc)?;
                    }
                }
                None => self.doc.delete(ROOT, "location")?,
            }
        }
        let members = match self.map(&ROOT, "members") {
            Some(m) => m,
            None => self.doc.put_object(ROOT, "members", ObjType::Map)?,
        };
        let existing: Vec<String> = self.doc.keys(&members).collect();
        let mut next_order = existing.len() as i64;
        for m in &household.members {
            check_id(&m.member_id)?;
            let obj = match self.map(&members, &m.member_id) {
                Some(obj) => obj,
                None => {
                    let obj = self.doc.put_object(&members, m.member_id.as_str(), ObjType::Map)?;
                    self.doc.put(&obj, "order", next_order)?;
                    next_order += 1;
                    obj
                }
            };
            for field in MEMBER_FIELDS {
                self.put_if_changed(&obj, field, m.get(field))?;
            }
        }
        for id in existing {
            if household.member(&id).is_none() {
                self.doc.delete(&members, id.as_str())?;
            }
        }
        let events = match self.map(&ROOT, "events") {
            Some(e) => e,
            None => self.doc.put_object(ROOT, "events", ObjType::List)?,
        };
        let have = self.doc.length(&events);
        for e in household.events.iter().skip(have) {
            let obj = self.doc.insert_object(&events, self.doc.length(&events), ObjType::Map)?;
            self.doc.put(&obj, "kind", e.kind.code())?;
            self.doc.put(&obj, "member_id", e.member_id.as_str())?;
            self.doc.put(&obj, "date", e.date.as_str())?;
            if let Some(p) = &e.place {
                self.doc.put(&obj, "place", p.as_str())?;
            }
            if let Some(n) = &e.note {
                self.doc.put(&obj, "note", n.as_str())?;
            }
        }
        if self.doc.pending_ops() > 0 {
            self.mark_edit(editor)?;
        }
        Ok(self.commit())
    }

    /// Records who edited, when, and on top of which verification and review.
    fn mark_edit(&mut self, editor: &Editor) -> Result<()> {
        let after_verification = self.verification_at(&ROOT).map(|v| v.id);
        let after_review = self.review_at().map(|r| r.id);
        let obj = self.doc.put_object(ROOT, "edited", ObjType::Map)?;
        self.doc.put(&obj, "at", chrono::Utc::now().timestamp())?;
        self.doc.put(&obj, "by", format!("{}@{}", editor.user, editor.device))?;
        if let Some(v) = after_verification {
            self.doc.put(&obj, "after_verification", v)?;
        }
        if let Some(r) = after_review {
            self.doc.put(&obj, "after_review", r)?;
        }
        Ok(())
    }

    /// Marks the household — or one resident, by `member` — as verified at the door or as
    /// needing correction, by `editor`, now. Marking the household verified marks each of
    /// its residents too. Returns the verification written.
    pub fn verify(
        &mut self,
        editor: &Editor,
        state: VerificationState,
        note: Option<&str>,
        member: Option<&str>,
    ) -> Result<Verification> {
        self.doc.set_author(Some(editor.author()));
        let verification = Verification {
            id: make_id("vf")?,
            state,
            by: editor.user.clone(),
            device: editor.device.clone(),
            at: chrono::Utc::now().timestamp(),
            note: note.map(str::trim).filter(|n| !n.is_empty()).map(str::to_string),
        };
        let members = self.map(&ROOT, "members");
        let mut targets: Vec<ObjId> = Vec::new();
        match member {
            Some(id) => {
                let obj = members
                    .as_ref()
                    .and_then(|m| self.map(m, id))
                    .ok_or_else(|| Error::NotFound(format!("member {id} of household {}", self.id)))?;
                targets.push(obj);
            }
            None => {
                targets.push(ROOT);
                if state == VerificationState::Verified
                    && let Some(m) = &members
                {
                    let ids: Vec<String> = self.doc.keys(m).collect();
                    targets.extend(ids.iter().filter_map(|id| self.map(m, id)));
                }
            }
        }
        for target in targets {
            let obj = self.doc.put_object(&target, "verification", ObjType::Map)?;
            self.doc.put(&obj, "id", verification.id.as_str())?;
            self.doc.put(&obj, "state", state.code())?;
            self.doc.put(&obj, "by", verification.by.as_str())?;
            self.doc.put(&obj, "device", verification.device.as_str())?;
            self.doc.put(&obj, "at", verification.at)?;
            if let Some(n) = &verification.note {
                self.doc.put(&obj, "note", n.as_str())?;
            }
        }
        self.commit();
        Ok(verification)
    }

    /// Records an operator's decision on the household, at `at` (Unix seconds). Returns it.
    pub fn review(
        &mut self,
        editor: &Editor,
        decision: ReviewDecision,
        comment: Option<&str>,
        at: i64,
    ) -> Result<Review> {
        self.doc.set_author(Some(editor.author()));
        let review = Review {
            id: make_id("rv")?,
            decision,
            by: editor.user.clone(),
            at,
            comment: comment.map(str::trim).filter(|c| !c.is_empty()).map(str::to_string),
        };
        let obj = self.doc.put_object(ROOT, "review", ObjType::Map)?;
        self.doc.put(&obj, "id", review.id.as_str())?;
        self.doc.put(&obj, "decision", decision.code())?;
        self.doc.put(&obj, "by", review.by.as_str())?;
        self.doc.put(&obj, "at", at)?;
        if let Some(c) = &review.comment {
            self.doc.put(&obj, "comment", c.as_str())?;
        }
        self.commit();
        Ok(review)
    }

    /// The hydrated map at `key` of `parent`.
    fn hydrated_map(&self, parent: &ObjId, key: &str) -> Option<automerge::hydrate::Map> {
        let obj = self.map(parent, key)?;
        match self.doc.hydrate(&obj, None) {
            Ok(automerge::hydrate::Value::Map(m)) => Some(m),
            _ => None,
        }
    }

    fn verification_at(&self, parent: &ObjId) -> Option<Verification> {
        hydrated::verification(&self.hydrated_map(parent, "verification")?)
    }

    fn review_at(&self) -> Option<Review> {
        hydrated::review(&self.hydrated_map(&ROOT, "review")?)
    }

    fn commit(&mut self) -> bool {
        let now = chrono::Utc::now().timestamp();
        self.doc.commit_with(CommitOptions::default().with_time(now)).is_some()
    }

    fn conflict_values(&mut self, obj: &ObjId, key: &str) -> Result<Vec<ConflictValue>> {
        let all: Vec<(Option<String>, ObjId)> =
            self.doc.get_all(obj, key)?.into_iter().map(|(v, op)| (as_string(&v), op)).collect();
        let mut out = Vec::with_capacity(all.len());
        for (value, op) in all {
            let hash = self.doc.hash_for_opid(&op);
            let meta = match hash {
                Some(h) => self.doc.get_change_meta_by_hash(&h).map(|m| m.into_owned()),
                None => None,
            };
            out.push(ConflictValue {
                value,
                author: meta
                    .as_ref()
                    .and_then(|m| m.author.as_ref())
                    .map(|a| String::from_utf8_lossy(a.as_bytes()).into_owned()),
                time: meta.as_ref().map_or(0, |m| m.timestamp),
                change: hash.map(|h| h.to_string()).unwrap_or_default(),
            });
        }
        // get_all lists the winner last; show it first.
        out.reverse();
        Ok(out)
    }

    /// Every field that holds concurrent values, with each value's author and time.
    /// One pass over each map finds the conflicted keys; only those are read in full.
    pub fn conflicts(&mut self) -> Result<Vec<Conflict>> {
        let conflicted = |doc: &AutoCommit, obj: &ObjId, fields: &[&str]| -> Vec<String> {
            doc.map_range(obj, ..)
                .filter(|item| item.conflict && fields.contains(&item.key.as_ref()))
                .map(|item| item.key.into_owned())
                .collect()
        };
        let mut out = Vec::new();
        for field in conflicted(&self.doc, &ROOT, HOUSEHOLD_FIELDS) {
            // Listed in the order of the fields, as a reader expects.
            let values = self.conflict_values(&ROOT, &field)?;
            out.push(Conflict { path: field, values });
        }
        out.sort_by_key(|c| HOUSEHOLD_FIELDS.iter().position(|f| *f == c.path));
        if let Some(members) = self.map(&ROOT, "members") {
            let member_objs: Vec<(String, ObjId)> = self
                .doc
                .map_range(&members, ..)
                .filter(|item| matches!(item.value, automerge::ValueRef::Object(ObjType::Map)))
                .map(|item| (item.key.to_string(), item.id()))
                .collect();
            for (id, obj) in member_objs {
                let mut fields = conflicted(&self.doc, &obj, MEMBER_FIELDS);
                fields.sort_by_key(|f| MEMBER_FIELDS.iter().position(|m| m == f));
                for field in fields {
                    let values = self.conflict_values(&obj, &field)?;
                    out.push(Conflict { path: format!("members/{id}/{field}"), values });
                }
            }
        }
        Ok(out)
    }

    /// Settles a conflict (or sets a field) by writing `value` over every concurrent value.
    pub fn resolve(&mut self, path: &str, value: Option<&str>, editor: &Editor) -> Result<()> {
        self.doc.set_author(Some(editor.author()));
        let parts: Vec<&str> = path.split('/').collect();
        let (obj, key) = match parts.as_slice() {
            [field] if HOUSEHOLD_FIELDS.contains(field) => (ROOT, *field),
            ["members", id, field] if MEMBER_FIELDS.contains(field) => {
                let members = self.map(&ROOT, "members").ok_or_else(|| Error::NotFound(path.into()))?;
                (self.map(&members, id).ok_or_else(|| Error::NotFound(format!("member {id}")))?, *field)
            }
            _ => return Err(Error::InvalidArgument(format!("unknown field path {path:?}"))),
        };
        match value {
            Some(v) => self.doc.put(&obj, key, v)?,
            None => self.doc.delete(&obj, key)?,
        }
        self.mark_edit(editor)?;
        self.commit();
        Ok(())
    }

    /// The document's current heads.
    pub fn heads(&mut self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// Checks the fields that never change: `schema` and `household_id` hold one value each,
    /// the ones the document was made with. A change that rewrites either (or writes a second,
    /// concurrent value) is refused with [`Error::ImmutableField`].
    pub fn check_immutable_fields(&self) -> Result<()> {
        for (key, want) in [("schema", SCHEMA), ("household_id", self.id.as_str())] {
            let values = self.doc.get_all(ROOT, key)?;
            if values.len() != 1 || values[0].0.as_str() != Some(want) {
                return Err(Error::ImmutableField(format!("{key} of household {}", self.id)));
            }
        }
        Ok(())
    }

    /// Whether the document holds this change.
    pub fn has_change(&mut self, hash: &ChangeHash) -> bool {
        self.doc.get_change_meta_by_hash(hash).is_some()
    }

    /// Merges another copy of the same household into this one.
    pub fn merge(&mut self, other: &mut HouseholdDoc) -> Result<()> {
        if other.id != self.id {
            return Err(Error::InvalidArgument("cannot merge two different households".into()));
        }
        self.doc.merge(&mut other.doc)?;
        Ok(())
    }

    /// The household as it read when the document's heads were `heads` (a past version).
    pub fn read_at(&mut self, heads: &[ChangeHash]) -> Result<Household> {
        let past = self.doc.fork_at(heads)?;
        Ok(HouseholdDoc { doc: past, id: self.id.clone(), saved_heads: Vec::new() }.read())
    }

    /// A copy that edits as a new actor (another device, in tests and transfers).
    pub fn fork(&mut self) -> HouseholdDoc {
        HouseholdDoc { doc: self.doc.fork(), id: self.id.clone(), saved_heads: Vec::new() }
    }

    /// Changes made or merged since the last save or load (empty when there are none).
    pub fn save_incremental(&mut self) -> Vec<u8> {
        let heads = self.doc.get_heads();
        if heads == self.saved_heads {
            return Vec::new();
        }
        let bytes = self.doc.save_after(&self.saved_heads);
        self.saved_heads = heads;
        bytes
    }

    /// The whole document, compacted.
    /// Saves the whole document without Automerge's own column compression: larger alone,
    /// but it compresses far better with its neighbours in one zstd stream.
    pub fn save_nocompress(&mut self) -> Vec<u8> {
        let bytes = self.doc.save_nocompress();
        self.saved_heads = self.doc.get_heads();
        bytes
    }

    /// Saves the whole document (compacted, Automerge's own compression).
    pub fn save(&mut self) -> Vec<u8> {
        let bytes = self.doc.save();
        self.saved_heads = self.doc.get_heads();
        bytes
    }

    /// Applies saved bytes or changes from elsewhere (idempotent).
    ///
    /// Unlike Automerge's own `load_incremental`, which skips a chunk it cannot
    /// parse, any malformed chunk makes the whole call fail and changes nothing.
    pub fn load_incremental(&mut self, bytes: &[u8]) -> Result<()> {
        check_chunk_types(&self.id, bytes)?;
        let strict = automerge::LoadOptions::new()
            .on_partial_load(automerge::OnPartialLoad::Error)
            .verification_mode(automerge::VerificationMode::DontCheck);
        // Changes that build on others fail with MissingDeps, but only after every chunk parsed.
        // (Under `catch_unwind`, as in `load`: a panic in Automerge is a corrupt input.)
        let panicked = || Error::corrupt(format!("household {}: Automerge failed on these bytes", self.id));
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            automerge::Automerge::load_with_options(bytes, strict)
        })) {
            Ok(Ok(_)) | Ok(Err(automerge::AutomergeError::MissingDeps)) => {}
            Ok(Err(_)) => return Err(Error::corrupt(format!("household {}: malformed changes", self.id))),
            Err(_) => return Err(panicked()),
        }
        let doc = &mut self.doc;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| doc.load_incremental(bytes)))
            .map_err(|_| panicked())?
            .map_err(|_| Error::corrupt(format!("household {}", self.id)))?;
        // Changes whose base this document lacks wait in Automerge's queue, and a save would
        // drop them: refuse them instead, so that the caller keeps them (see the quarantine).
        if !self.doc.get_missing_deps(&[]).is_empty() {
            return Err(Error::corrupt(format!("household {}: changes without their base", self.id)));
        }
        Ok(())
    }

    /// Changes since `heads` (for sync).
    pub fn save_after(&mut self, heads: &[ChangeHash]) -> Vec<u8> {
        self.doc.save_after(heads)
    }

    /// The keys this record contributes to the blind index.
    pub(crate) fn index_tokens(household: &Household, indexer: &crypto::BlindIndexer) -> Vec<crypto::IndexToken> {
        let mut tokens = Vec::new();
        for m in &household.members {
            if let Some(c) = m.cccd.as_deref().filter(|c| !c.is_empty()) {
                tokens.push(indexer.cccd(c));
            }
            tokens.extend(indexer.name_words(&m.full_name));
            if let Some(dob) = &m.dob {
                tokens.push(indexer.name_dob(&m.full_name, dob));
            }
        }
        tokens.sort();
        tokens.dedup();
        tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ed(user: &str) -> Editor {
        Editor { user: user.into(), device: "dev1".into() }
    }

    fn sample() -> Household {
        Household {
            household_id: "hh-1".into(),
            area_code: "01.001.00001".into(),
            address: "Số 12, Thôn Đông".into(),
            head_member_id: Some("m1".into()),
            location: Some(GeoPoint { lat: 21.0, lon: 105.8, accuracy: Some(5.0) }),
            house_photo: None,
            members: vec![
                Member {
                    member_id: "m1".into(),
                    full_name: "Lê Thanh Vân".into(),
                    dob: Some("1966-01-01".into()),
                    sex: Some("F".into()),
                    cccd: Some("080166796635".into()),
                    relation: Some("head".into()),
                    residence_status: Some("permanent".into()),
                    ..Member::default()
                },
                Member {
                    member_id: "m0".into(),
                    full_name: "Lê Ngọc Linh".into(),
                    dob: Some("2024-09-22".into()),
                    sex: Some("F".into()),
                    relation: Some("child".into()),
                    ..Member::default()
                },
            ],
            events: vec![LifeEvent {
                kind: LifeEventKind::Born,
                member_id: "m0".into(),
                date: "2024-09-22".into(),
                place: None,
                note: None,
            }],
            ..Household::default()
        }
    }

    #[test]
    fn round_trips_through_save_and_load() {
        let h = sample();
        let mut doc = HouseholdDoc::create(&h, &ed("a")).unwrap();
        assert_eq!(doc.read(), h, "members keep insertion order");
        let bytes = doc.save();
        let back = HouseholdDoc::load("hh-1", &bytes, &ed("b")).unwrap();
        assert_eq!(back.read(), h);
        assert!(matches!(HouseholdDoc::load("hh-2", &bytes, &ed("b")), Err(Error::Corrupt { .. })));
        assert!(matches!(HouseholdDoc::load("hh-1", b"garbage", &ed("b")), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn update_writes_only_changes() {
        let mut doc = HouseholdDoc::create(&sample(), &ed("a")).unwrap();
        assert!(!doc.update(&sample(), &ed("a")).unwrap(), "no change, no commit");
        let mut h = sample();
        h.members[0].phone = Some("0912345678".into());
        h.events.push(LifeEvent {
            kind: LifeEventKind::MovedOut,
            member_id: "m1".into(),
            date: "2026-01-01".into(),
            place: Some("Hà Nội".into()),
            note: None,
        });
        assert!(doc.update(&h, &ed("a")).unwrap());
        assert_eq!(doc.read(), h);
        h.members.remove(1);
        doc.update(&h, &ed("a")).unwrap();
        assert_eq!(doc.read().members.len(), 1);
    }

    #[test]
    fn concurrent_edits_of_different_fields_merge() {
        let mut a = HouseholdDoc::create(&sample(), &ed("alice")).unwrap();
        let mut b = a.fork();
        let mut ha = sample();
        ha.address = "Số 14, Thôn Đông".into();
        a.update(&ha, &ed("alice")).unwrap();
        let mut hb = sample();
        hb.members[1].full_name = "Lê Ngọc Linh Chi".into();
        hb.members.push(Member { member_id: "m9".into(), full_name: "Lê Văn Nam".into(), ..Member::default() });
        b.update(&hb, &ed("bob")).unwrap();
        a.merge(&mut b).unwrap();
        b.merge(&mut a).unwrap();
        let merged = a.read();
        assert_eq!(merged.address, "Số 14, Thôn Đông");
        assert_eq!(merged.members[1].full_name, "Lê Ngọc Linh Chi");
        assert_eq!(merged.members.len(), 3);
        assert!(a.conflicts().unwrap().is_empty());
        assert_eq!(a.heads(), b.heads());
        assert_eq!(b.read(), merged);
    }

    #[test]
    fn concurrent_edits_of_one_field_are_conflicts_with_authors() {
        let mut a = HouseholdDoc::create(&sample(), &ed("alice")).unwrap();
        let mut b = a.fork();
        let mut ha = sample();
        ha.members[0].full_name = "Lê Thanh Vân A".into();
        ha.address = "Địa chỉ A".into();
        a.update(&ha, &ed("alice")).unwrap();
        let mut hb = sample();
        hb.members[0].full_name = "Lê Thanh Vân B".into();
        hb.address = "Địa chỉ B".into();
        b.update(&hb, &ed("bob")).unwrap();
        a.merge(&mut b).unwrap();
        let conflicts = a.conflicts().unwrap();
        let paths: Vec<&str> = conflicts.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, vec!["address", "members/m1/full_name"]);
        let c = &conflicts[1];
        let mut values: Vec<(Option<&str>, Option<&str>)> =
            c.values.iter().map(|v| (v.value.as_deref(), v.author.as_deref())).collect();
        values.sort();
        assert_eq!(
            values,
            vec![(Some("Lê Thanh Vân A"), Some("alice@dev1")), (Some("Lê Thanh Vân B"), Some("bob@dev1"))]
        );
        assert!(c.values.iter().all(|v| v.time > 1_700_000_000 && v.change.len() == 64));
        assert_eq!(Some(a.read().members[0].full_name.clone()), c.values[0].value, "the first value is the shown one");

        // Saving the form unchanged does not settle it; resolving does, on both sides.
        let shown = a.read();
        a.update(&shown, &ed("alice")).unwrap();
        assert_eq!(a.conflicts().unwrap().len(), 2);
        a.resolve("members/m1/full_name", Some("Lê Thanh Vân"), &ed("operator")).unwrap();
        a.resolve("address", Some("Số 12"), &ed("operator")).unwrap();
        assert!(a.conflicts().unwrap().is_empty());
        b.merge(&mut a).unwrap();
        assert!(b.conflicts().unwrap().is_empty());
        assert_eq!(b.read().members[0].full_name, "Lê Thanh Vân");
        assert!(matches!(a.resolve("nope", None, &ed("x")), Err(Error::InvalidArgument(_))));
        assert!(matches!(a.resolve("members/zz/full_name", None, &ed("x")), Err(Error::NotFound(_))));
    }

    #[test]
    fn incremental_saves_load_concatenated() {
        let mut doc = HouseholdDoc::create(&sample(), &ed("a")).unwrap();
        let mut all = doc.save_incremental();
        let mut h = sample();
        h.address = "new".into();
        doc.update(&h, &ed("a")).unwrap();
        let inc = doc.save_incremental();
        assert!(!inc.is_empty() && inc.len() < all.len());
        assert!(doc.save_incremental().is_empty());
        all.extend_from_slice(&inc);
        assert_eq!(HouseholdDoc::load("hh-1", &all, &ed("a")).unwrap().read().address, "new");
    }

    #[test]
    fn chip_card_prefills_a_member_that_validates() {
        let card = ChipCardQr::parse("001190012345||Nguyễn Thị Hồng Nhung|15031990|Nữ|Hà Nội|20042021").unwrap();
        let m = Member::from_chip_card(&card, "m7".into());
        assert_eq!(
            (m.full_name.as_str(), m.dob.as_deref(), m.sex.as_deref(), m.cccd.as_deref()),
            ("Nguyễn Thị Hồng Nhung", Some("1990-03-15"), Some("F"), Some("001190012345"))
        );
        let mut h = sample();
        h.members[1].residence_status = Some("permanent".into());
        h.members.push(Member { relation: Some("other".into()), residence_status: Some("temporary".into()), ..m });
        let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        assert_eq!(crate::form::residence_survey().validate(&h.to_answers(), today), vec![]);
    }

    #[test]
    fn ids_are_checked() {
        let mut h = sample();
        h.household_id = "bad id/..".into();
        assert!(matches!(HouseholdDoc::create(&h, &ed("a")), Err(Error::InvalidArgument(_))));
        let id = make_id("hh").unwrap();
        assert!(check_id(&id).is_ok() && id.starts_with("hh-"));
    }

    #[test]
    fn only_document_and_change_chunks_reach_automerge() {
        let mut doc = HouseholdDoc::create(&sample(), &ed("a")).unwrap();
        let saved = doc.save();
        let heads = doc.heads();
        let mut h = doc.read();
        h.address = "Số 2".into();
        doc.update(&h, &ed("a")).unwrap();
        let mut both = saved.clone();
        both.extend_from_slice(&doc.save_after(&heads));
        assert!(check_chunk_types("h", &both).is_ok());
        assert!(HouseholdDoc::load(&sample().household_id, &both, &ed("b")).is_ok());
        // Another chunk type (Automerge's bundle), a truncated header, a length past the end.
        let mut other = saved.clone();
        other[8] = 3;
        assert!(check_chunk_types("h", &other).is_err());
        assert!(check_chunk_types("h", &saved[..10]).is_err());
        let mut long = saved[..9].to_vec();
        long.extend_from_slice(&[0xff, 0xff, 0x7f]);
        assert!(check_chunk_types("h", &long).is_err());
        assert!(
            check_chunk_types(
                "h",
                &[0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
            )
            .is_err()
        );
    }
}

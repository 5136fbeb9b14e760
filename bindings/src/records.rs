//! Plain records that cross the FFI, and their conversions from core types.

use doorstep_core::record::{GeoPoint, Household, LifeEvent, LifeEventKind, Member};
use doorstep_core::store::{HouseholdSummary, ProfileInfo, Role};

/// A profile's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ProfileRole {
    /// Police officer: everything.
    Officer,
    /// Village helper: registers households, cannot see others'.
    Helper,
}

impl From<ProfileRole> for Role {
    fn from(r: ProfileRole) -> Role {
        match r {
            ProfileRole::Officer => Role::Officer,
            ProfileRole::Helper => Role::Helper,
        }
    }
}

/// A profile on the device.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Profile {
    /// Random id.
    pub profile_id: String,
    /// Name on the unlock screen.
    pub label: String,
    /// Role.
    pub role: ProfileRole,
    /// Whether unlocking needs the platform secret.
    pub uses_platform_secret: bool,
}

impl From<ProfileInfo> for Profile {
    fn from(p: ProfileInfo) -> Profile {
        Profile {
            profile_id: p.profile_id,
            label: p.label,
            role: match p.role {
                Role::Officer => ProfileRole::Officer,
                Role::Helper => ProfileRole::Helper,
            },
            uses_platform_secret: p.uses_platform_secret,
        }
    }
}

/// One resident.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct MemberRecord {
    /// Stable id within the household.
    pub member_id: String,
    /// Full name.
    pub full_name: String,
    /// Date of birth, YYYY-MM-DD.
    pub dob: Option<String>,
    /// M or F.
    pub sex: Option<String>,
    /// 12-digit CCCD.
    pub cccd: Option<String>,
    /// Relation to the head.
    pub relation: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// permanent, temporary or absent.
    pub residence_status: Option<String>,
    /// Occupation.
    pub occupation: Option<String>,
    /// Photo of an identity or civil document (set with `addDocumentPhoto`).
    #[uniffi(default)]
    pub document_photo: Option<String>,
    /// Set by the data centre when it merged this record with another as one person:
    /// `<householdId>/<memberId>` of the other record. Read-only for the apps.
    #[uniffi(default)]
    pub same_person_as: Option<String>,
    /// Verified at the door, or found to need correction (read-only: set with `verifyHousehold`).
    #[uniffi(default)]
    pub verification: Option<VerificationRecord>,
}

/// A verification at the door: what the officer found, who, on which device, when.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct VerificationRecord {
    /// `verified` or `needs_correction`.
    pub state: String,
    /// The officer.
    pub by: String,
    /// The device id.
    pub device: String,
    /// When, Unix seconds.
    pub at: i64,
    /// What needs correcting.
    pub note: Option<String>,
}

impl From<doorstep_core::verification::Verification> for VerificationRecord {
    fn from(v: doorstep_core::verification::Verification) -> Self {
        VerificationRecord { state: v.state.code().to_string(), by: v.by, device: v.device, at: v.at, note: v.note }
    }
}

impl From<Member> for MemberRecord {
    fn from(m: Member) -> Self {
        MemberRecord {
            member_id: m.member_id,
            full_name: m.full_name,
            dob: m.dob,
            sex: m.sex,
            cccd: m.cccd,
            relation: m.relation,
            phone: m.phone,
            residence_status: m.residence_status,
            occupation: m.occupation,
            document_photo: m.document_photo,
            same_person_as: m.same_person_as,
            verification: m.verification.map(Into::into),
        }
    }
}

impl From<MemberRecord> for Member {
    fn from(m: MemberRecord) -> Self {
        Member {
            member_id: m.member_id,
            full_name: m.full_name,
            dob: m.dob,
            sex: m.sex,
            cccd: m.cccd,
            relation: m.relation,
            phone: m.phone,
            residence_status: m.residence_status,
            occupation: m.occupation,
            document_photo: m.document_photo,
            same_person_as: m.same_person_as,
            // Read-only: a verification is written with `verifyHousehold`, never by an edit.
            verification: None,
        }
    }
}

/// What happened to a resident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum LifeEventType {
    /// Born.
    Born,
    /// Moved in.
    MovedIn,
    /// Moved out.
    MovedOut,
    /// Died.
    Died,
}

/// A life event.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct LifeEventRecord {
    /// What happened.
    pub kind: LifeEventType,
    /// To whom.
    pub member_id: String,
    /// When, YYYY-MM-DD.
    pub date: String,
    /// From or to where.
    pub place: Option<String>,
    /// Note.
    pub note: Option<String>,
}

impl From<LifeEvent> for LifeEventRecord {
    fn from(e: LifeEvent) -> Self {
        LifeEventRecord {
            kind: match e.kind {
                LifeEventKind::Born => LifeEventType::Born,
                LifeEventKind::MovedIn => LifeEventType::MovedIn,
                LifeEventKind::MovedOut => LifeEventType::MovedOut,
                LifeEventKind::Died => LifeEventType::Died,
            },
            member_id: e.member_id,
            date: e.date,
            place: e.place,
            note: e.note,
        }
    }
}

impl From<LifeEventRecord> for LifeEvent {
    fn from(e: LifeEventRecord) -> Self {
        LifeEvent {
            kind: match e.kind {
                LifeEventType::Born => LifeEventKind::Born,
                LifeEventType::MovedIn => LifeEventKind::MovedIn,
                LifeEventType::MovedOut => LifeEventKind::MovedOut,
                LifeEventType::Died => LifeEventKind::Died,
            },
            member_id: e.member_id,
            date: e.date,
            place: e.place,
            note: e.note,
        }
    }
}

/// A location.
#[derive(Debug, Clone, Copy, PartialEq, uniffi::Record)]
pub struct Location {
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
    /// Accuracy in metres.
    pub accuracy: Option<f64>,
}

/// A household with its members and life events.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct HouseholdRecord {
    /// Id (empty when creating: one is made).
    pub household_id: String,
    /// Area code.
    pub area_code: String,
    /// Address.
    pub address: String,
    /// The head's member id.
    pub head_member_id: Option<String>,
    /// Location.
    pub location: Option<Location>,
    /// House photo attachment id.
    pub house_photo: Option<String>,
    /// Members.
    pub members: Vec<MemberRecord>,
    /// Life events, oldest first.
    pub events: Vec<LifeEventRecord>,
    /// Verified at the door, or found to need correction (read-only: `verifyHousehold`).
    #[uniffi(default)]
    pub verification: Option<VerificationRecord>,
    /// Whether it was edited after that verification.
    #[uniffi(default)]
    pub edited_after_verification: bool,
    /// Where it stands in the operators' review: `not_submitted`, `waiting`, `returned`
    /// (for correction: see `reviewComment`) or `approved` (read-only).
    #[uniffi(default = "not_submitted")]
    pub review_status: String,
    /// The operator's comment on the latest review (why it was returned).
    #[uniffi(default)]
    pub review_comment: Option<String>,
}

impl From<Household> for HouseholdRecord {
    fn from(h: Household) -> Self {
        let edited_after_verification = h.edited_after_verification();
        let review_status = h.review_status().code().to_string();
        HouseholdRecord {
            verification: h.verification.map(Into::into),
            edited_after_verification,
            review_status,
            review_comment: h.review.and_then(|r| r.comment),
            household_id: h.household_id,
            area_code: h.area_code,
            address: h.address,
            head_member_id: h.head_member_id,
            location: h.location.map(|l| Location { lat: l.lat, lon: l.lon, accuracy: l.accuracy }),
            house_photo: h.house_photo,
            members: h.members.into_iter().map(Into::into).collect(),
            events: h.events.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<HouseholdRecord> for Household {
    fn from(h: HouseholdRecord) -> Self {
        Household {
            household_id: h.household_id,
            area_code: h.area_code,
            address: h.address,
            head_member_id: h.head_member_id,
            location: h.location.map(|l| GeoPoint { lat: l.lat, lon: l.lon, accuracy: l.accuracy }),
            house_photo: h.house_photo,
            members: h.members.into_iter().map(Into::into).collect(),
            events: h.events.into_iter().map(Into::into).collect(),
            // Workflow marks are read-only: the document keeps its own.
            verification: None,
            review: None,
            edited: None,
        }
    }
}

/// A validation problem.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ValidationIssueRecord {
    /// Field path, such as `members[1].cccd`.
    pub path: String,
    /// Kind: Required, WrongType, NotAChoice, InvalidCccd, Constraint, TooFewRows, TooManyRows.
    pub kind: String,
    /// Message in Vietnamese.
    pub message_vi: String,
    /// Message in English.
    pub message_en: String,
}

impl From<doorstep_core::form::ValidationIssue> for ValidationIssueRecord {
    fn from(i: doorstep_core::form::ValidationIssue) -> Self {
        ValidationIssueRecord {
            path: i.path,
            kind: format!("{:?}", i.kind),
            message_vi: i.message.vi,
            message_en: i.message.en,
        }
    }
}

/// A row of a list or search result.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct HouseholdSummaryRecord {
    /// Id.
    pub household_id: String,
    /// Area code.
    pub area_code: String,
    /// Address (empty when corrupt).
    pub address: String,
    /// Head's name.
    pub head_name: Option<String>,
    /// Member names, in order.
    pub member_names: Vec<String>,
    /// Validation problems at the last save.
    pub issue_count: u32,
    /// Fields with concurrent values.
    pub conflict_count: u32,
    /// Last save, Unix seconds.
    pub updated_at: i64,
    /// Whether the stored summary failed its integrity check.
    pub corrupt: bool,
}

impl From<HouseholdSummary> for HouseholdSummaryRecord {
    fn from(s: HouseholdSummary) -> Self {
        HouseholdSummaryRecord {
            household_id: s.household_id,
            area_code: s.area_code,
            address: s.address,
            head_name: s.head_name,
            member_names: s.members.into_iter().map(|m| m.full_name).collect(),
            issue_count: s.issue_count,
            conflict_count: s.conflict_count,
            updated_at: s.updated_at,
            corrupt: false,
        }
    }
}

/// Households found by a search, with the members that matched.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SearchHitRecord {
    /// The household.
    pub household: HouseholdSummaryRecord,
    /// The matching members.
    pub member_ids: Vec<String>,
}

/// A possible duplicate found at entry.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct DuplicateRecord {
    /// Household of the other record.
    pub household_id: String,
    /// Member id of the other record.
    pub member_id: String,
    /// Its name.
    pub full_name: String,
    /// Match probability, 0 to 1 (the linkage model's, as the server's queue uses).
    pub score: f64,
    /// Why: each compared field's level and weight in bits, e.g. `date_of_birth: year_only (+10.2)`,
    /// then `rule: …` when a hard rule overrode the weights.
    pub reasons: Vec<String>,
}

/// One of several concurrent values.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ConflictValueRecord {
    /// The value.
    pub value: Option<String>,
    /// Who: user@device.
    pub author: Option<String>,
    /// When, Unix seconds.
    pub time: i64,
}

/// A field with concurrent values.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ConflictRecord {
    /// `address` or `members/<id>/<field>`.
    pub path: String,
    /// The values, the shown one first.
    pub values: Vec<ConflictValueRecord>,
}

/// What a save did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SaveResult {
    /// The household id.
    pub household_id: String,
    /// Validation problems (the household is saved anyway).
    pub issues: Vec<ValidationIssueRecord>,
    /// Whether anything was written.
    pub changed: bool,
}

/// Progress of a sync.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncProgressRecord {
    /// Households pushed.
    pub pushed: u64,
    /// Households pulled.
    pub pulled: u64,
    /// Requests made.
    pub round_trips: u64,
    /// Pulled households quarantined so far.
    pub quarantined: u64,
}

/// What a sync did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncReportRecord {
    /// Households pushed.
    pub pushed: u64,
    /// Households pulled.
    pub pulled: u64,
    /// Requests made.
    pub round_trips: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Households the server refused; they stay unsynced on the device, the rest went through.
    pub refused: Vec<RefusedHouseholdRecord>,
    /// Pulled households whose changes did not load, kept aside (household id, reason); the
    /// next sync asks the server for them whole.
    pub quarantined: Vec<RefusedHouseholdRecord>,
    /// Quarantined change sets that loaded in this sync and were let in.
    pub released: u64,
    /// Households removed from this device because they moved out of its areas.
    pub departed: u64,
    /// Households that moved out of this device's areas, kept until the server has the edits
    /// made here.
    pub departing: Vec<DepartingRecord>,
    /// Transfer requests an operator decided since the last sync.
    pub transfers_decided: Vec<TransferOutcomeRecord>,
}

/// A household that moved out of this device's areas and waits to be removed.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DepartingRecord {
    /// Household id.
    pub household_id: String,
    /// The area it moved to.
    pub to_area: String,
}

/// What moving a household did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct MoveResult {
    /// It moved (within this device's areas).
    pub moved: bool,
    /// Otherwise: the transfer request made for an operator to decide.
    pub transfer_request_id: Option<String>,
}

/// Where a transfer request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum TransferStatusRecord {
    /// Waiting for an operator.
    Pending,
    /// Approved: the household moved.
    Approved,
    /// Refused: it stays where it was.
    Refused,
}

impl From<doorstep_core::sync::protocol::TransferStatus> for TransferStatusRecord {
    fn from(s: doorstep_core::sync::protocol::TransferStatus) -> Self {
        use doorstep_core::sync::protocol::TransferStatus;
        match s {
            TransferStatus::Pending => TransferStatusRecord::Pending,
            TransferStatus::Approved => TransferStatusRecord::Approved,
            TransferStatus::Refused => TransferStatusRecord::Refused,
        }
    }
}

/// An operator's decision on a transfer request, as a sync brought it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TransferOutcomeRecord {
    /// The request's id.
    pub request_id: String,
    /// Where it stands.
    pub status: TransferStatusRecord,
    /// The operator's note.
    pub note: String,
}

impl From<doorstep_core::sync::protocol::TransferOutcome> for TransferOutcomeRecord {
    fn from(o: doorstep_core::sync::protocol::TransferOutcome) -> Self {
        TransferOutcomeRecord { request_id: o.request_id, status: o.status.into(), note: o.note }
    }
}

/// A transfer request this device made.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TransferRequestRecord {
    /// Its id.
    pub request_id: String,
    /// Household id.
    pub household_id: String,
    /// The area asked for.
    pub to_area: String,
    /// Why.
    pub reason: String,
    /// Where it stands.
    pub status: TransferStatusRecord,
    /// The operator's note.
    pub note: String,
    /// When it was made, Unix seconds.
    pub created_at: i64,
}

impl From<doorstep_core::store::TransferRequest> for TransferRequestRecord {
    fn from(r: doorstep_core::store::TransferRequest) -> Self {
        TransferRequestRecord {
            request_id: r.request_id,
            household_id: r.household_id,
            to_area: r.to_area,
            reason: r.reason,
            status: r.status.into(),
            note: r.note,
            created_at: r.created_at,
        }
    }
}

/// A household the server did not take in a sync, and why.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RefusedHouseholdRecord {
    /// Household id.
    pub household_id: String,
    /// The server's reason.
    pub reason: String,
}

/// A photo stored for a household field.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PhotoRecord {
    /// Width of the stored photo, pixels.
    pub width: u32,
    /// Its height.
    pub height: u32,
    /// Attachment id of the photo (BLAKE3 of its bytes).
    pub full_id: String,
    /// Attachment id of the thumbnail.
    pub thumb_id: String,
}

/// What an attachment sync did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AttachmentSyncRecord {
    /// Blobs uploaded.
    pub uploaded: u64,
    /// Blobs downloaded (thumbnails).
    pub downloaded: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Bytes received.
    pub bytes_received: u64,
}

/// A device of the area this device can exchange offline bundles with.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PeerRecord {
    /// Device id.
    pub device_id: String,
    /// Its area.
    pub area: String,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// What importing a bundle did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ImportReportRecord {
    /// The device that made it.
    pub sender_device: String,
    /// Households in it.
    pub households: u64,
    /// Households that changed here.
    pub changed: u64,
    /// Photo blobs added.
    pub blobs_added: u64,
}

/// How far a QR-frame receiver has got.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct FrameProgressRecord {
    /// Distinct frames received.
    pub received: u32,
    /// Frames in the bundle.
    pub total: u32,
    /// Whether the bundle is whole.
    pub complete: bool,
}

/// A resident as a verification slip shows them.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SlipMemberRecord {
    /// Full name.
    pub name: String,
    /// Year of birth.
    pub birth_year: Option<i32>,
    /// Last four digits of the CCCD number.
    pub cccd_last4: Option<String>,
}

/// What a verified household slip certifies.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SlipRecord {
    /// Household id.
    pub household_id: String,
    /// Area code.
    pub area: String,
    /// Address.
    pub address: String,
    /// Residents.
    pub members: Vec<SlipMemberRecord>,
    /// The document version certified.
    pub version: String,
    /// Day of issue, `YYYY-MM-DD`.
    pub issued_on: String,
}

impl From<doorstep_core::slip::Slip> for SlipRecord {
    fn from(s: doorstep_core::slip::Slip) -> Self {
        SlipRecord {
            household_id: s.household_id,
            area: s.area,
            address: s.address,
            members: s
                .members
                .into_iter()
                .map(|m| SlipMemberRecord { name: m.name, birth_year: m.birth_year, cccd_last4: m.cccd_last4 })
                .collect(),
            version: s.version,
            issued_on: s.issued_on,
        }
    }
}

//! Door-to-door verification ("đúng") and an operator's review of a household.
//!
//! Both live in the household's document, so they sync like any field: an officer marks a
//! household (or one resident) verified or needing correction on the phone; an operator
//! approves a household or returns it with a comment in the console. Whether an edit came
//! after a verification or a review is causal, not a matter of clocks: every edit records
//! the verification and review it was made on top of ([`EditMark`]).

use serde::{Deserialize, Serialize};

use crate::record::Household;

/// What an officer found at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationState {
    /// Checked with the family: it is right.
    Verified,
    /// Something is wrong and must be corrected.
    NeedsCorrection,
}

impl VerificationState {
    /// The stored code.
    pub fn code(self) -> &'static str {
        match self {
            VerificationState::Verified => "verified",
            VerificationState::NeedsCorrection => "needs_correction",
        }
    }

    /// The state a code names.
    pub fn parse(code: &str) -> Option<Self> {
        [Self::Verified, Self::NeedsCorrection].into_iter().find(|s| s.code() == code)
    }
}

/// A verification of a household or a resident: by which officer, on which device, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// Names this verification (edits made after it refer to it).
    pub id: String,
    /// What the officer found.
    pub state: VerificationState,
    /// The officer (profile) name.
    pub by: String,
    /// The device id.
    pub device: String,
    /// When, Unix seconds.
    pub at: i64,
    /// What needs correcting, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// An operator's decision on a household.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewDecision {
    /// Approved as it stands.
    Approved,
    /// Returned to the officer for correction, with a comment.
    Returned,
}

impl ReviewDecision {
    /// The stored code.
    pub fn code(self) -> &'static str {
        match self {
            ReviewDecision::Approved => "approved",
            ReviewDecision::Returned => "returned",
        }
    }

    /// The decision a code names.
    pub fn parse(code: &str) -> Option<Self> {
        [Self::Approved, Self::Returned].into_iter().find(|s| s.code() == code)
    }
}

/// An operator's review of a household.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// Names this review (edits made after it refer to it).
    pub id: String,
    /// The decision.
    pub decision: ReviewDecision,
    /// The operator.
    pub by: String,
    /// When, Unix seconds.
    pub at: i64,
    /// Why it was returned (Vietnamese or English text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// The household's latest edit: who, when, and on top of which verification and review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EditMark {
    /// When, Unix seconds.
    pub at: i64,
    /// `user@device`.
    pub by: String,
    /// The verification the editor's copy held, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_verification: Option<String>,
    /// The review the editor's copy held, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_review: Option<String>,
}

/// Where a household stands in the operators' review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewStatus {
    /// Not verified by an officer yet, and never reviewed.
    NotSubmitted,
    /// Waiting for an operator: verified, or edited since its last review.
    Waiting,
    /// Returned for correction, and not edited since.
    Returned,
    /// Approved, and not edited since.
    Approved,
}

impl ReviewStatus {
    /// The stored code.
    pub fn code(self) -> &'static str {
        match self {
            ReviewStatus::NotSubmitted => "not_submitted",
            ReviewStatus::Waiting => "waiting",
            ReviewStatus::Returned => "returned",
            ReviewStatus::Approved => "approved",
        }
    }

    /// The status a code names.
    pub fn parse(code: &str) -> Option<Self> {
        [Self::NotSubmitted, Self::Waiting, Self::Returned, Self::Approved].into_iter().find(|s| s.code() == code)
    }
}

impl Household {
    /// Whether the household was edited after its verification (the edit was made on a copy
    /// that held it).
    pub fn edited_after_verification(&self) -> bool {
        match (&self.verification, &self.edited) {
            (Some(v), Some(e)) => e.after_verification.as_deref() == Some(v.id.as_str()),
            _ => false,
        }
    }

    /// Where the household stands in the operators' review.
    pub fn review_status(&self) -> ReviewStatus {
        match &self.review {
            Some(r) if self.edited.as_ref().and_then(|e| e.after_review.as_deref()) == Some(r.id.as_str()) => {
                ReviewStatus::Waiting
            }
            Some(r) => match r.decision {
                ReviewDecision::Approved => ReviewStatus::Approved,
                ReviewDecision::Returned => ReviewStatus::Returned,
            },
            None if self.verification.is_some() => ReviewStatus::Waiting,
            None => ReviewStatus::NotSubmitted,
        }
    }

    /// The household without its workflow marks (verification, review, latest edit): what a
    /// registry's file says of it, and all it may change.
    pub fn without_workflow(&self) -> Household {
        let mut h = self.clone();
        h.verification = None;
        h.review = None;
        h.edited = None;
        for m in &mut h.members {
            m.verification = None;
        }
        h
    }

    /// Residents verified at the door.
    pub fn verified_residents(&self) -> usize {
        self.members
            .iter()
            .filter(|m| m.verification.as_ref().is_some_and(|v| v.state == VerificationState::Verified))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Editor, HouseholdDoc, Member};

    fn officer() -> Editor {
        Editor { user: "officer-a".into(), device: "phone-1".into() }
    }

    fn operator() -> Editor {
        Editor { user: "operator-b".into(), device: "server".into() }
    }

    fn doc() -> HouseholdDoc {
        let h = Household {
            household_id: "hh-1".into(),
            area_code: "01.001.00001".into(),
            address: "Số 1".into(),
            members: vec![
                Member { member_id: "m0".into(), full_name: "Lê Văn An".into(), ..Member::default() },
                Member { member_id: "m1".into(), full_name: "Lê Thị Bình".into(), ..Member::default() },
            ],
            ..Household::default()
        };
        HouseholdDoc::create(&h, &officer()).unwrap()
    }

    #[test]
    fn a_verified_household_waits_for_review_and_an_edit_after_it_shows() {
        let mut d = doc();
        assert_eq!(d.read().review_status(), ReviewStatus::NotSubmitted);
        let v = d.verify(&officer(), VerificationState::Verified, None, None).unwrap();
        let h = d.read();
        assert_eq!(h.verification.as_ref().map(|x| (&x.by, &x.device)), Some((&v.by, &v.device)));
        assert_eq!(h.verified_residents(), 2);
        assert!(!h.edited_after_verification());
        assert_eq!(h.review_status(), ReviewStatus::Waiting);
        let mut edited = h.clone();
        edited.address = "Số 2".into();
        d.update(&edited, &officer()).unwrap();
        assert!(d.read().edited_after_verification());
    }

    #[test]
    fn a_returned_household_goes_back_to_the_operator_once_fixed_on_the_phone() {
        let mut phone = doc();
        phone.verify(&officer(), VerificationState::Verified, None, None).unwrap();
        let mut server = phone.fork();
        server.review(&operator(), ReviewDecision::Returned, Some("Sai ngày sinh của m1"), 1_800_000_000).unwrap();
        // An edit made on the phone before it learned of the review does not answer it.
        let mut early = phone.read();
        early.address = "Số 3".into();
        phone.update(&early, &officer()).unwrap();
        phone.merge(&mut server).unwrap();
        let h = phone.read();
        assert_eq!(h.review_status(), ReviewStatus::Returned);
        assert_eq!(h.review.as_ref().and_then(|r| r.comment.as_deref()), Some("Sai ngày sinh của m1"));
        // The fix, made on a copy that holds the review, sends it back for review.
        let mut fixed = h.clone();
        fixed.members[1].dob = Some("1990-01-02".into());
        phone.update(&fixed, &officer()).unwrap();
        assert_eq!(phone.read().review_status(), ReviewStatus::Waiting);
        server.merge(&mut phone).unwrap();
        server.review(&operator(), ReviewDecision::Approved, None, 1_800_000_100).unwrap();
        assert_eq!(server.read().review_status(), ReviewStatus::Approved);
    }

    #[test]
    fn one_resident_can_need_correction_alone() {
        let mut d = doc();
        d.verify(&officer(), VerificationState::NeedsCorrection, Some("CCCD mờ"), Some("m1")).unwrap();
        let h = d.read();
        assert!(h.verification.is_none());
        assert_eq!(h.members[1].verification.as_ref().map(|v| v.state), Some(VerificationState::NeedsCorrection));
        assert_eq!(h.members[1].verification.as_ref().and_then(|v| v.note.as_deref()), Some("CCCD mờ"));
        assert!(d.verify(&officer(), VerificationState::Verified, None, Some("m9")).is_err());
    }
}

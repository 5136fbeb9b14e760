//! Sealed household summaries: what listing and search show without opening documents.

use serde::{Deserialize, Serialize};

use crate::record::Household;

/// One member as a list or search result shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSummary {
    /// Member id.
    pub member_id: String,
    /// Full name.
    pub full_name: String,
    /// Date of birth.
    pub dob: Option<String>,
    /// `M` or `F`.
    pub sex: Option<String>,
    /// CCCD number.
    pub cccd: Option<String>,
    /// Phone number (duplicate checks compare it; absent in summaries saved before it was kept).
    #[serde(default)]
    pub phone: Option<String>,
}

/// A household as a list or search result shows it. Stored sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HouseholdSummary {
    /// Household id.
    pub household_id: String,
    /// Area code.
    pub area_code: String,
    /// Address.
    pub address: String,
    /// The head's name, when the head is set.
    pub head_name: Option<String>,
    /// Members.
    pub members: Vec<MemberSummary>,
    /// Validation problems at the last save.
    pub issue_count: u32,
    /// Fields with concurrent values at the last save.
    pub conflict_count: u32,
    /// Last save, Unix seconds.
    pub updated_at: i64,
}

impl HouseholdSummary {
    pub(crate) fn of(h: &Household, issue_count: usize, conflict_count: usize, updated_at: i64) -> Self {
        HouseholdSummary {
            household_id: h.household_id.clone(),
            area_code: h.area_code.clone(),
            address: h.address.clone(),
            head_name: h.head_member_id.as_deref().and_then(|id| h.member(id)).map(|m| m.full_name.clone()),
            members: h
                .members
                .iter()
                .map(|m| MemberSummary {
                    member_id: m.member_id.clone(),
                    full_name: m.full_name.clone(),
                    dob: m.dob.clone(),
                    sex: m.sex.clone(),
                    cccd: m.cccd.clone(),
                    phone: m.phone.clone(),
                })
                .collect(),
            issue_count: issue_count as u32,
            conflict_count: conflict_count as u32,
            updated_at,
        }
    }
}

/// A row of the household list. `summary` is `None` when its sealed summary fails to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedHousehold {
    /// Household id.
    pub household_id: String,
    /// Area code.
    pub area_code: String,
    /// Last save, Unix seconds.
    pub updated_at: i64,
    /// The summary, or `None` when it is corrupt.
    pub summary: Option<HouseholdSummary>,
}

/// A household found by a search, with the members that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    /// The household.
    pub household: HouseholdSummary,
    /// Ids of the members that matched.
    pub member_ids: Vec<String>,
}

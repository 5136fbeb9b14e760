//! Why a row of the registry's file was not imported: a typed reason, in Vietnamese and English.

use doorstep_core::area::Area;
use doorstep_core::identity::Cccd;
use doorstep_core::record::{Household, check_id};
use doorstep_core::sync::protocol::area_within;

/// A row that was not imported, and why. Nothing of such a row is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowProblem {
    /// The line is not JSON / the CSV record does not read (the parser's words).
    Malformed(String),
    /// No household id.
    MissingHouseholdId,
    /// A household or member id with characters ids may not hold.
    BadId(String),
    /// The area code is missing or not an area code.
    BadArea(String),
    /// The household lies outside the import's area.
    OutsideArea(String),
    /// The household is stored in an area outside the import's.
    HeldElsewhere(String),
    /// A resident without a name.
    MissingName(String),
    /// Two residents with one member id.
    DuplicateMember(String),
    /// A CCCD that is not a CCCD number (member id, reason).
    BadCccd(String, String),
    /// A date that does not parse as YYYY-MM-DD (member id, text).
    BadDate(String, String),
    /// A sex other than M or F (member id, text).
    BadSex(String, String),
    /// Rows of one household that disagree on a household field (CSV).
    InconsistentHousehold(String),
}

impl RowProblem {
    /// A stable code for scripts.
    pub fn code(&self) -> &'static str {
        match self {
            RowProblem::Malformed(_) => "malformed",
            RowProblem::MissingHouseholdId => "missing_household_id",
            RowProblem::BadId(_) => "bad_id",
            RowProblem::BadArea(_) => "bad_area",
            RowProblem::OutsideArea(_) => "outside_area",
            RowProblem::HeldElsewhere(_) => "held_elsewhere",
            RowProblem::MissingName(_) => "missing_name",
            RowProblem::DuplicateMember(_) => "duplicate_member",
            RowProblem::BadCccd(..) => "bad_cccd",
            RowProblem::BadDate(..) => "bad_date",
            RowProblem::BadSex(..) => "bad_sex",
            RowProblem::InconsistentHousehold(_) => "inconsistent_household",
        }
    }

    /// The reason in Vietnamese.
    pub fn vi(&self) -> String {
        match self {
            RowProblem::Malformed(e) => format!("dòng không đọc được: {e}"),
            RowProblem::MissingHouseholdId => "thiếu mã hộ".into(),
            RowProblem::BadId(id) => format!("mã không hợp lệ: {id}"),
            RowProblem::BadArea(a) => format!("mã địa bàn không hợp lệ: {a}"),
            RowProblem::OutsideArea(a) => format!("hộ thuộc địa bàn {a}, ngoài địa bàn nhập"),
            RowProblem::HeldElsewhere(a) => format!("hộ đang thuộc địa bàn {a}, ngoài địa bàn nhập"),
            RowProblem::MissingName(m) => format!("nhân khẩu {m} thiếu họ tên"),
            RowProblem::DuplicateMember(m) => format!("mã nhân khẩu {m} lặp lại"),
            RowProblem::BadCccd(m, e) => format!("số CCCD của nhân khẩu {m} không hợp lệ: {e}"),
            RowProblem::BadDate(m, d) => format!("ngày sinh của nhân khẩu {m} không đúng dạng YYYY-MM-DD: {d}"),
            RowProblem::BadSex(m, s) => format!("giới tính của nhân khẩu {m} phải là M hoặc F: {s}"),
            RowProblem::InconsistentHousehold(f) => format!("các dòng của cùng một hộ khác nhau ở trường {f}"),
        }
    }

    /// The reason in English.
    pub fn en(&self) -> String {
        match self {
            RowProblem::Malformed(e) => format!("the row does not read: {e}"),
            RowProblem::MissingHouseholdId => "no household id".into(),
            RowProblem::BadId(id) => format!("not a usable id: {id}"),
            RowProblem::BadArea(a) => format!("not an area code: {a}"),
            RowProblem::OutsideArea(a) => format!("the household is in {a}, outside the import's area"),
            RowProblem::HeldElsewhere(a) => format!("the household is held in {a}, outside the import's area"),
            RowProblem::MissingName(m) => format!("resident {m} has no name"),
            RowProblem::DuplicateMember(m) => format!("member id {m} appears twice"),
            RowProblem::BadCccd(m, e) => format!("resident {m}'s CCCD is not valid: {e}"),
            RowProblem::BadDate(m, d) => format!("resident {m}'s date of birth is not YYYY-MM-DD: {d}"),
            RowProblem::BadSex(m, s) => format!("resident {m}'s sex must be M or F: {s}"),
            RowProblem::InconsistentHousehold(f) => format!("rows of one household differ in {f}"),
        }
    }
}

/// Checks a household read from the registry's file before anything of it is stored.
pub fn check_household(h: &Household, import_area: &str) -> Result<(), RowProblem> {
    if h.household_id.trim().is_empty() {
        return Err(RowProblem::MissingHouseholdId);
    }
    check_id(&h.household_id).map_err(|_| RowProblem::BadId(h.household_id.clone()))?;
    let area = Area::parse(&h.area_code).map_err(|_| RowProblem::BadArea(h.area_code.clone()))?;
    if area.as_str() != h.area_code {
        return Err(RowProblem::BadArea(h.area_code.clone()));
    }
    if !area_within(&h.area_code, import_area) {
        return Err(RowProblem::OutsideArea(h.area_code.clone()));
    }
    let mut seen = std::collections::HashSet::new();
    for m in &h.members {
        check_id(&m.member_id).map_err(|_| RowProblem::BadId(m.member_id.clone()))?;
        if !seen.insert(m.member_id.as_str()) {
            return Err(RowProblem::DuplicateMember(m.member_id.clone()));
        }
        if m.full_name.trim().is_empty() {
            return Err(RowProblem::MissingName(m.member_id.clone()));
        }
        if let Some(c) = &m.cccd {
            Cccd::parse(c).map_err(|e| RowProblem::BadCccd(m.member_id.clone(), e.to_string()))?;
        }
        if let Some(d) = &m.dob
            && chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_err()
        {
            return Err(RowProblem::BadDate(m.member_id.clone(), d.clone()));
        }
        if let Some(s) = &m.sex
            && !matches!(s.as_str(), "M" | "F")
        {
            return Err(RowProblem::BadSex(m.member_id.clone(), s.clone()));
        }
    }
    Ok(())
}
